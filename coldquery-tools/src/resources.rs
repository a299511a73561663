//! MCP resources as data (SPEC §4): each resource is a read of one tool action, so its JSON is
//! exactly what that action returns.

use coldquery_core::{Error, Result};
use serde::Serialize;
use serde_json::{Value, json};

/// A resource with a fixed URI.
#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    /// Its URI.
    pub uri: &'static str,
    /// A short name.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// Always `application/json`.
    pub mime_type: &'static str,
}

/// A resource template (RFC 6570 level 1).
#[derive(Debug, Clone, Serialize)]
pub struct ResourceTemplate {
    /// Its URI template.
    pub uri_template: &'static str,
    /// A short name.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// Always `application/json`.
    pub mime_type: &'static str,
}

const JSON: &str = "application/json";

/// The resources with fixed URIs.
pub fn resources() -> Vec<Resource> {
    vec![
        Resource {
            uri: "postgres://schema/tables",
            name: "tables",
            description: "The user tables of the database (schema, name, estimated rows, comment), as pg_schema list returns them.",
            mime_type: JSON,
        },
        Resource {
            uri: "postgres://monitor/health",
            name: "health",
            description: "Server health: status, version, uptime, recovery, pool and sessions, as pg_monitor health returns it.",
            mime_type: JSON,
        },
        Resource {
            uri: "postgres://monitor/activity",
            name: "activity",
            description: "Active backends (pid, user, state, wait event, durations, query), as pg_monitor activity returns them.",
            mime_type: JSON,
        },
    ]
}

/// The resource templates.
pub fn resource_templates() -> Vec<ResourceTemplate> {
    vec![ResourceTemplate {
        uri_template: "postgres://schema/{schema}/{table}",
        name: "table",
        description: "One table described: columns, keys, foreign keys, indexes, constraints, triggers, policies, sizes — as pg_schema describe returns it.",
        mime_type: JSON,
    }]
}

/// Why a resource could not be read; the adapter maps each case to its protocol's error.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceError {
    /// No resource has this URI, or the object it names does not exist.
    NotFound(Error),
    /// The URI has a resource's shape but a malformed part (a bad %-escape, not UTF-8).
    BadUri(Error),
    /// Reading it failed (the database, a timeout, a cancel, a bug).
    Failed(Error),
}

impl ResourceError {
    /// The tools' error behind it.
    pub fn error(&self) -> &Error {
        match self {
            ResourceError::NotFound(error) | ResourceError::BadUri(error) | ResourceError::Failed(error) => error,
        }
    }
}

/// The tool call that produces the resource at `uri`.
pub(crate) fn call_for(uri: &str) -> Result<(&'static str, Value), ResourceError> {
    match uri {
        "postgres://schema/tables" => Ok(("pg_schema", json!({"action": "list", "target": "tables", "limit": 1000}))),
        "postgres://monitor/health" => Ok(("pg_monitor", json!({"action": "health"}))),
        "postgres://monitor/activity" => Ok(("pg_monitor", json!({"action": "activity"}))),
        other => {
            let parts = other.strip_prefix("postgres://schema/").map(|rest| rest.split('/').collect::<Vec<_>>());
            match parts.as_deref() {
                Some([schema, table]) if !schema.is_empty() && !table.is_empty() => {
                    let schema = percent_decode(schema).map_err(ResourceError::BadUri)?;
                    let table = percent_decode(table).map_err(ResourceError::BadUri)?;
                    Ok(("pg_schema", json!({"action": "describe", "schema": schema, "name": table})))
                }
                _ => Err(ResourceError::NotFound(Error::invalid(format!(
                    "unknown resource '{other}'; the resources are postgres://schema/tables, postgres://schema/{{schema}}/{{table}}, postgres://monitor/health and postgres://monitor/activity"
                )))),
            }
        }
    }
}

/// The `pg_schema list` call that completes `argument` of the table template, and the item key
/// holding the names. `%` and `_` in the prefix are escaped so they match themselves.
pub(crate) fn completion_call(
    template: &str,
    argument: &str,
    prefix: &str,
    schema: Option<&str>,
) -> Option<(Value, &'static str)> {
    if template != "postgres://schema/{schema}/{table}" {
        return None;
    }
    let escaped: String =
        prefix.chars().flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] }).collect();
    let pattern = format!("{escaped}%");
    match argument {
        "schema" => Some((json!({"action": "list", "target": "schemas", "pattern": pattern, "limit": 100}), "name")),
        "table" => {
            let mut args = json!({"action": "list", "target": "tables", "pattern": pattern, "limit": 100});
            if let Some(schema) = schema.filter(|s| !s.is_empty()) {
                args["schema"] = json!(schema);
            }
            Some((args, "name"))
        }
        _ => None,
    }
}

/// Decodes `%XX` escapes (names with spaces or slashes are percent-encoded in URIs).
fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(Error::invalid(format!("resource URI part '{text}' has a malformed %-escape")));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid(format!("resource URI part '{text}' is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_map_to_tool_calls() {
        assert_eq!(call_for("postgres://monitor/health").unwrap().0, "pg_monitor");
        let (tool, args) = call_for("postgres://schema/my%20schema/Orders").unwrap();
        assert_eq!(tool, "pg_schema");
        assert_eq!(args["schema"], "my schema");
        assert_eq!(args["name"], "Orders");
        assert!(matches!(call_for("postgres://schema/a/b/c"), Err(ResourceError::NotFound(_))));
        assert!(matches!(call_for("postgres://schema/a/%zz"), Err(ResourceError::BadUri(_))));
        assert!(matches!(call_for("http://x"), Err(ResourceError::NotFound(_))));
    }

    #[test]
    fn completions_list_schemas_and_tables_by_prefix() {
        let (args, key) =
            completion_call("postgres://schema/{schema}/{table}", "table", "ord_", Some("public")).unwrap();
        assert_eq!(key, "name");
        assert_eq!(args["pattern"], "ord\\_%");
        assert_eq!(args["schema"], "public");
        let (args, _) = completion_call("postgres://schema/{schema}/{table}", "schema", "pu", None).unwrap();
        assert_eq!(args["target"], "schemas");
        assert!(completion_call("postgres://other/{x}", "x", "", None).is_none());
    }
}
