//! What each tool returns, as types: the source of every tool's `outputSchema` ([`schema_of`])
//! and a typed view an embedding program can deserialize a result into.
//!
//! The tools build their results as JSON values once (the MCP SDK carries structured content as
//! a `serde_json::Value`, so a typed value would only be converted into one); these types say
//! which fields a result may have and of what type. Every field may be absent (which ones an
//! action returns is in docs/tools.md); a nullable one is an `Option`. `pg_query` and `pg_tx`
//! results have exactly these fields. `pg_schema`, `pg_admin` and `pg_monitor` return catalog
//! columns besides (a described object's attributes, a table's statistics, a setting, a
//! check's figures), kept in `more`. Every type also has `error`, the body of an error result,
//! so that everything a tool sends as structured content conforms to its schema. In debug builds every result is checked against its tool's
//! schema as it is returned ([`violation`]), so every test of a tool checks the schema too.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A column: its name and PostgreSQL type name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Column {
    /// The column name.
    pub name: String,
    /// `int4`, `text`, `_int4` (an array), `hstore`...
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The session a call ran in, and when it expires.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct SessionRef {
    /// The session id.
    pub id: String,
    /// `idle`, `in_transaction`, `aborted`...
    pub transaction_state: String,
    /// Seconds of inactivity left before it is rolled back.
    pub expires_in_seconds: u64,
    /// Said when it expires soon.
    pub warning: String,
}

/// The body of an error result (`isError: true`, SPEC §2), the same for every tool.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ErrorBody {
    /// `INVALID_ARGUMENT`, `WRITE_DENIED`, `DATABASE_ERROR`...
    pub code: String,
    /// What happened and what to do next.
    pub message: String,
    /// A hint.
    pub hint: String,
    /// PostgreSQL's SQLSTATE.
    pub sqlstate: String,
    /// PostgreSQL's detail.
    pub detail: String,
    /// Where in the statement (1-based character).
    pub position: u64,
    /// Which operation of a batch failed (0-based).
    pub operation_index: u64,
}

/// One statement's result (SPEC §2): rows and what the statement did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct StatementOutput {
    /// The columns.
    pub fields: Vec<Column>,
    /// The rows, as objects keyed by column name.
    pub rows: Vec<Map<String, Value>>,
    /// How many rows are in `rows`.
    pub row_count: u64,
    /// True when a limit cut the rows.
    pub truncated: bool,
    /// Which limit: `max_rows` or `max_result_bytes`.
    pub truncated_by: String,
    /// What to do next.
    pub hint: String,
    /// The command tag: `SELECT`, `INSERT`...
    pub command: String,
    /// Rows inserted, updated or deleted; null for other commands.
    pub rows_affected: Option<u64>,
    /// Time in the database.
    pub duration_ms: f64,
}

/// A write tried and rolled back (`preview: true`), and the token that confirms it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PreviewOutput {
    /// True: this is a preview.
    pub preview: bool,
    /// Whether the write was run (and rolled back); false when it cannot run in a transaction.
    pub executed: bool,
    /// True when it was run and rolled back.
    pub rolled_back: bool,
    /// Why it was not run.
    pub reason: String,
    /// The command tags, when it was not run.
    pub commands: Vec<String>,
    /// What makes it destructive, per statement.
    pub destructive: Vec<String>,
    /// Per statement: command, rows_affected, destructive, plan.
    pub statements: Vec<Map<String, Value>>,
    /// The locks it took: relation and mode.
    pub locks: Vec<Map<String, Value>>,
    /// The objects it would create, alter and drop (or why they were not compared).
    pub objects: Value,
    /// Why running it needs the token, or null when it does not.
    pub needs_confirmation: Option<String>,
    /// The token, its expiry, and how to use it.
    pub confirm: Map<String, Value>,
}

/// What `pg_query` returns: a statement's result (read, write), a plan (explain), a batch's
/// results (transaction), or a preview (write, transaction).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct QueryOutput {
    /// read, write.
    #[serde(flatten)]
    pub statement: StatementOutput,
    /// explain: the plan (JSON, or text lines).
    pub plan: Value,
    /// explain: total cost, estimated/actual rows, times.
    pub summary: Map<String, Value>,
    /// transaction: each operation's result.
    pub results: Vec<StatementOutput>,
    /// transaction: true when it committed.
    pub committed: bool,
    /// transaction: its isolation level.
    pub isolation_level: String,
    /// transaction: whether it was read only.
    pub read_only: bool,
    /// With `preview: true`.
    #[serde(flatten)]
    pub preview: PreviewOutput,
    /// The session it ran in.
    pub session: SessionRef,
    /// An error result's body (`isError: true`); absent otherwise.
    pub error: Option<ErrorBody>,
}

/// A session as `pg_tx` shows it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct SessionDetails {
    /// The session id to pass to the other tools.
    pub session_id: String,
    /// `idle`, `in_transaction`, `aborted`...
    pub transaction_state: String,
    /// Seconds since begin.
    pub age_seconds: u64,
    /// Seconds since its last call.
    pub idle_seconds: u64,
    /// Seconds of inactivity left before it is rolled back.
    pub expires_in_seconds: u64,
    /// `read_committed`, `repeatable_read` or `serializable`.
    pub isolation_level: String,
    /// A READ ONLY transaction.
    pub read_only: bool,
    /// DEFERRABLE.
    pub deferrable: bool,
    /// `abort` or `rollback_statement`.
    pub on_error: String,
    /// Statements run in it.
    pub statements: u64,
}

/// What `pg_tx` returns: a session (begin, status), its end (commit, rollback), a savepoint, or
/// the caller's sessions (list).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct TxOutput {
    /// begin, status: the session; commit, rollback: its id and statements.
    #[serde(flatten)]
    pub details: SessionDetails,
    /// begin: the role it acts as.
    pub role: String,
    /// begin, status, savepoints: the session.
    pub session: SessionRef,
    /// begin: what to do next.
    pub next: String,
    /// commit, rollback, savepoints: `committed`, `rolled_back`, `created`...
    pub status: String,
    /// The savepoint.
    pub savepoint: String,
    /// list: the caller's sessions.
    pub sessions: Vec<SessionDetails>,
    /// list: how many.
    pub count: u64,
    /// list: the server's limit.
    pub max_sessions: u64,
    /// An error result's body (`isError: true`); absent otherwise.
    pub error: Option<ErrorBody>,
}

/// What `pg_schema` returns: a page of objects (list), an object's description (describe: its
/// catalog attributes besides these), a DDL statement run, or a preview.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SchemaOutput {
    /// list, describe: the kind of object.
    pub target: String,
    /// list: the objects.
    pub items: Vec<Map<String, Value>>,
    /// list: how many match.
    pub total: u64,
    /// list: more than this page; describe: a section was cut.
    pub truncated: bool,
    /// list: the page size.
    pub limit: u64,
    /// list: the page's start.
    pub offset: u64,
    /// list: the offset of the next page.
    pub next_offset: u64,
    /// What to do next.
    pub hint: String,
    /// describe: the object's schema.
    pub schema: String,
    /// describe: its name.
    pub name: String,
    /// create, alter, drop: the statement run.
    pub statement: String,
    /// create, alter, drop: its command tag.
    pub command: String,
    /// With `preview: true`.
    #[serde(flatten)]
    pub preview: PreviewOutput,
    /// The session it ran in.
    pub session: SessionRef,
    /// An error result's body (`isError: true`); absent otherwise.
    pub error: Option<ErrorBody>,
    /// describe: the object's attributes (columns, keys, indexes, policies...).
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

/// What `pg_admin` returns: a maintenance statement run, table statistics, settings, or a
/// signalled backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AdminOutput {
    /// vacuum, analyze, reindex: `completed`; settings: `set`.
    pub status: String,
    /// vacuum, analyze, reindex: the statement run.
    pub statement: String,
    /// vacuum, analyze, reindex: `autocommit` or `session`.
    pub ran_in: String,
    /// Time in the database.
    pub duration_ms: f64,
    /// stats: the tables.
    pub tables: Vec<Map<String, Value>>,
    /// stats: a table's indexes.
    pub indexes: Vec<Map<String, Value>>,
    /// settings: the settings.
    pub settings: Vec<Map<String, Value>>,
    /// How many rows.
    pub count: u64,
    /// True when a limit cut the rows.
    pub truncated: bool,
    /// A remark on the result.
    pub note: String,
    /// The session it ran in.
    pub session: SessionRef,
    /// terminate: the backend.
    pub pid: i64,
    /// terminate: `cancel` or `terminate`.
    pub mode: String,
    /// terminate: whether the signal was sent.
    pub signalled: bool,
    /// terminate: what the backend was doing.
    pub backend: Map<String, Value>,
    /// An error result's body (`isError: true`); absent otherwise.
    pub error: Option<ErrorBody>,
    /// stats of one table, a setting: its catalog columns.
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

/// What `pg_monitor` returns: health, activity, connections, locks, sizes or top queries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MonitorOutput {
    /// health: `ok`, `degraded` or `unavailable`.
    pub status: String,
    /// health: the server, pool and sessions; with deep, the checks and their summary.
    pub checks: Vec<Map<String, Value>>,
    /// activity: the backends.
    pub backends: Vec<Map<String, Value>>,
    /// locks: the waits.
    pub waits: Vec<Map<String, Value>>,
    /// size: the databases.
    pub databases: Vec<Map<String, Value>>,
    /// size: the largest tables.
    pub tables: Vec<Map<String, Value>>,
    /// size: the largest indexes.
    pub indexes: Vec<Map<String, Value>>,
    /// top_queries: the statements.
    pub queries: Vec<Map<String, Value>>,
    /// How many rows.
    pub count: u64,
    /// True when a limit cut the rows.
    pub truncated: bool,
    /// A remark on the result.
    pub note: String,
    /// An error result's body (`isError: true`); absent otherwise.
    pub error: Option<ErrorBody>,
    /// Each action's figures (health's server version, uptime, pool; connections by state...).
    #[serde(flatten)]
    pub more: Map<String, Value>,
}

/// The `outputSchema` of a type, as sent: root `type: object`, subschemas inlined, without
/// descriptions (they are in docs/tools.md; the wire is paid for on every session).
pub fn schema_of<T: JsonSchema>() -> Value {
    let mut value = documented::<T>();
    compact(&mut value);
    value
}

/// A documented schema in its wire form ([`schema_of`]).
pub fn compacted(mut schema: Value) -> Value {
    compact(&mut schema);
    schema
}

/// The schema of a type with its fields' descriptions (docs/tools.md's result fields).
pub fn documented<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut value = serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("type".into(), json!("object"));
    }
    value
}

/// Removes what a program validating a result does not need: titles, descriptions, defaults,
/// number formats, the zero minimum of unsigned numbers, and `additionalProperties: true`.
fn compact(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for key in ["title", "description", "default"] {
                object.remove(key);
            }
            // Any field is allowed where none is denied.
            if object.get("additionalProperties") == Some(&Value::Bool(true)) {
                object.remove("additionalProperties");
            }
            drop_number_format(object);
            // A `properties` map may name a field `format` or `default`: its values are schemas.
            object.values_mut().for_each(compact);
        }
        Value::Array(items) => items.iter_mut().for_each(compact),
        _ => {}
    }
}

/// Drops the format (`uint64`, `double`...) and the zero minimum of unsigned numbers from the
/// schema of a number: bytes, not meaning (a value out of range is refused when it is read).
/// Only in a schema of a number: a `properties` map may have a field named `format`.
pub(crate) fn drop_number_format(object: &mut Map<String, Value>) {
    let numeric = |t: &Value| matches!(t.as_str(), Some("integer" | "number"));
    let is_number = match object.get("type") {
        Some(Value::Array(types)) => types.iter().any(numeric),
        Some(t) => numeric(t),
        None => false,
    };
    if is_number {
        object.remove("format");
        if object.get("minimum") == Some(&json!(0)) {
            object.remove("minimum");
        }
    }
}

/// Where `value` breaks `schema`, for the subset of JSON Schema [`schema_of`] produces (`type`,
/// `properties`, `additionalProperties`, `items`, `required`, `enum`); `None` when it conforms.
pub fn violation(schema: &Value, value: &Value, path: &str) -> Option<String> {
    let type_name = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let fits = |t: &&str| *t == type_name || (*t == "number" && type_name == "integer");
    if !allowed.is_empty() && !allowed.iter().any(fits) {
        return Some(format!("{path}: {type_name}, the schema says {allowed:?}"));
    }
    if let Some(choices) = schema["enum"].as_array()
        && !choices.contains(value)
    {
        return Some(format!("{path}: {value} is not one of {choices:?}"));
    }
    if let Value::Object(object) = value {
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return Some(format!("{path}: '{name}' is required"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, field) in object {
            let path = format!("{path}.{name}");
            match properties.and_then(|p| p.get(name)).or_else(|| schema.get("additionalProperties")) {
                Some(Value::Bool(false)) => return Some(format!("{path}: not in the schema")),
                Some(field_schema) => {
                    if let Some(broken) = violation(field_schema, field, &path) {
                        return Some(broken);
                    }
                }
                None => {}
            }
        }
    }
    if let (Some(items), Value::Array(array)) = (schema.get("items"), value) {
        return array.iter().enumerate().find_map(|(i, v)| violation(items, v, &format!("{path}[{i}]")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_of_another_shape_is_caught() {
        let schema = schema_of::<QueryOutput>();
        let good = json!({"fields": [{"name": "a", "type": "int4"}], "rows": [{"a": 1}], "row_count": 1,
            "truncated": false, "command": "SELECT", "rows_affected": null, "duration_ms": 0.4});
        assert_eq!(violation(&schema, &good, "r"), None, "{schema}");
        for bad in [
            json!({"rows": 1}),
            json!({"row_count": -1.5}),
            json!({"rows_affected": "3"}),
            json!({"fields": [{"name": "a"}]}),
            json!({"fields": [{"name": "a", "type": "int4", "more": 1}]}),
            json!({"unheard_of": true}),
            json!({"session": {"id": 3}}),
            json!({"results": [{"rows": {}}]}),
        ] {
            assert!(violation(&schema, &bad, "r").is_some(), "{bad} passed {schema}");
        }
        // The open tools take catalog columns besides their own fields, of any type.
        let schema = schema_of::<SchemaOutput>();
        assert_eq!(violation(&schema, &json!({"name": "t", "columns": [], "row_estimate": 3}), "r"), None);
        assert!(violation(&schema, &json!({"name": 3}), "r").is_some());
    }

    /// Every error body — each kind, with every optional part — conforms to every tool's schema.
    #[test]
    fn error_results_conform_to_every_tools_schema() {
        use coldquery_core::{Error, ErrorKind};
        let schemas = [
            schema_of::<QueryOutput>(),
            schema_of::<TxOutput>(),
            schema_of::<SchemaOutput>(),
            schema_of::<AdminOutput>(),
            schema_of::<MonitorOutput>(),
        ];
        for kind in ErrorKind::ALL {
            let bare = Error::new(kind, "m");
            let full = Error::new(kind, "m")
                .with_hint("h")
                .with_sqlstate("42P01")
                .with_detail("d")
                .with_position(3)
                .with_operation_index(1);
            for body in [bare.to_json(), full.to_json()] {
                for schema in &schemas {
                    assert_eq!(violation(schema, &body, "r"), None, "{body} against {schema}");
                }
            }
        }
        let mut unknown = Error::new(ErrorKind::Internal, "m").to_json();
        unknown["error"]["extra"] = json!(1);
        assert!(violation(&schemas[0], &unknown, "r").is_some());
    }

    #[test]
    fn schemas_are_flat_objects_without_references() {
        for schema in [
            schema_of::<QueryOutput>(),
            schema_of::<TxOutput>(),
            schema_of::<SchemaOutput>(),
            schema_of::<AdminOutput>(),
            schema_of::<MonitorOutput>(),
        ] {
            assert_eq!(schema["type"], "object");
            let text = schema.to_string();
            for word in ["$ref", "$defs", "allOf", "description"] {
                assert!(!text.contains(word), "{word} in {text}");
            }
        }
    }
}
