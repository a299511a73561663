//! Printing results: aligned tables for people, JSON / CSV / Markdown for scripts. The CSV and
//! Markdown forms are the tools' own ([`coldquery_tools::render_text`]); the table form is the
//! only rendering that lives here.

use coldquery_tools::{TextFormat, cell, render_text, table_of};
use serde_json::{Map, Value};

use crate::cli::Format;

/// A tool's successful result in the chosen format, ending in a newline.
pub(crate) fn render(value: &Value, format: Format) -> String {
    let mut out = match format {
        Format::Table => table(value),
        Format::Json => render_text(value, TextFormat::Json),
        Format::Csv => render_text(value, TextFormat::Csv),
        Format::Markdown => render_text(value, TextFormat::Markdown),
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The people's form: a query result as a grid with a row count; any other result as
/// `key: value` lines, with each list of objects as a grid of its own.
pub(crate) fn table(value: &Value) -> String {
    let Some(object) = value.as_object() else {
        return cell(value);
    };
    if object.contains_key("fields") && object.contains_key("rows") {
        return query_result(object);
    }
    let mut lines = Vec::new();
    let mut grids = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in object {
        match value {
            Value::Array(items) if items.first().is_some_and(Value::is_object) => {
                grids.push(format!("{key}:\n{}", rows_grid(value)));
            }
            Value::Array(items) if items.is_empty() => pairs.push((key.clone(), "(none)".to_owned())),
            Value::Array(items) => {
                pairs.push((key.clone(), items.iter().map(cell).collect::<Vec<_>>().join(", ")));
            }
            Value::Object(inner) => flatten(key, inner, &mut pairs),
            other => pairs.push((key.clone(), cell(other))),
        }
    }
    let width = pairs.iter().map(|(key, _)| key.chars().count()).max().unwrap_or(0);
    for (key, text) in &pairs {
        lines.push(format!("{key:<width$}  {}", one_line(text)).trim_end().to_owned());
    }
    let mut out = lines.join("\n");
    for grid in grids {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&grid);
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// `a.b: value` pairs for one level of nesting; deeper values stay compact JSON.
fn flatten(prefix: &str, object: &Map<String, Value>, pairs: &mut Vec<(String, String)>) {
    if object.is_empty() {
        pairs.push((prefix.to_owned(), "{}".to_owned()));
    }
    for (key, value) in object {
        pairs.push((format!("{prefix}.{key}"), cell(value)));
    }
}

fn query_result(object: &Map<String, Value>) -> String {
    let value = Value::Object(object.clone());
    let has_columns = object.get("fields").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let mut out = String::new();
    if has_columns {
        out.push_str(&rows_grid(&value));
    } else {
        // A statement without a result set (INSERT without RETURNING, DDL...): its tag.
        let command = object.get("command").and_then(Value::as_str).unwrap_or("OK");
        match object.get("rows_affected").and_then(Value::as_u64) {
            Some(n) => out.push_str(&format!("{command} {n}\n")),
            None => out.push_str(&format!("{command}\n")),
        }
    }
    if object.get("truncated") == Some(&Value::Bool(true)) {
        out.push_str("(truncated: more rows exist; aggregate, filter or page)\n");
    }
    if let Some(session) = object.get("session").and_then(Value::as_object) {
        out.push_str(&session_line(session));
    }
    out
}

/// `session <id>: <state>, expires in N s` and the warning, if any.
pub(crate) fn session_line(session: &Map<String, Value>) -> String {
    let mut out = format!(
        "session {}: {}, expires in {} s\n",
        session.get("id").map(cell).unwrap_or_default(),
        session.get("transaction_state").map(cell).unwrap_or_default(),
        session.get("expires_in_seconds").map(cell).unwrap_or_default(),
    );
    if let Some(warning) = session.get("warning").and_then(Value::as_str) {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

/// PostgreSQL's number types, right-aligned in a grid.
const NUMERIC_TYPES: [&str; 8] = ["int2", "int4", "int8", "float4", "float8", "numeric", "oid", "money"];

/// The table found in `value` as an aligned grid (psql style) with a row count.
fn rows_grid(value: &Value) -> String {
    let (columns, rows) = match table_of(value) {
        Some(table) => table,
        None => match value {
            // A bare array of objects.
            Value::Array(_) => match table_of(&serde_json::json!({ "rows": value })) {
                Some(table) => table,
                None => return String::new(),
            },
            _ => return String::new(),
        },
    };
    let texts: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|v| one_line(&cell(v))).collect()).collect();
    // Numbers are right-aligned, as psql does: by column type when the result says (numeric
    // values arrive as strings, to stay exact), else by value.
    let types: Vec<&str> = value
        .get("fields")
        .and_then(Value::as_array)
        .filter(|fields| fields.len() == columns.len())
        .map(|fields| fields.iter().map(|f| f["type"].as_str().unwrap_or_default()).collect())
        .unwrap_or_default();
    let numeric: Vec<bool> = (0..columns.len())
        .map(|i| match types.get(i) {
            Some(t) => NUMERIC_TYPES.contains(t),
            None => !rows.is_empty() && rows.iter().all(|row| matches!(row[i], Value::Number(_) | Value::Null)),
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            texts.iter().map(|row| row[i].chars().count()).chain([name.chars().count()]).max().unwrap_or(0)
        })
        .collect();
    let pad = |text: &str, i: usize, right: bool| {
        let fill = " ".repeat(widths[i] - text.chars().count());
        if right { format!("{fill}{text}") } else { format!("{text}{fill}") }
    };
    let line = |cells: Vec<String>| format!(" {} ", cells.join(" | ")).trim_end().to_owned();
    let mut out = String::new();
    out.push_str(&line(columns.iter().enumerate().map(|(i, c)| pad(c, i, false)).collect()));
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    out.push('\n');
    for row in &texts {
        out.push_str(&line(row.iter().enumerate().map(|(i, t)| pad(t, i, numeric[i])).collect()));
        out.push('\n');
    }
    let n = rows.len();
    out.push_str(&format!("({n} {})\n", if n == 1 { "row" } else { "rows" }));
    out
}

/// Control characters shown escaped, so one value stays on one line of the grid.
fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r', '\t']) {
        return text.to_owned();
    }
    text.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r").replace('\t', "\\t")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_results_are_grids_with_a_row_count() {
        let value = json!({
            "fields": [{"name": "id", "type": "int4"}, {"name": "name", "type": "text"}],
            "rows": [{"id": 1, "name": "Ada"}, {"id": 10, "name": null}],
            "row_count": 2, "truncated": true, "command": "SELECT", "rows_affected": null, "duration_ms": 0.1,
            "session": {"id": "abc", "transaction_state": "idle", "expires_in_seconds": 1799}
        });
        assert_eq!(
            table(&value),
            concat!(
                " id | name\n",
                "----+------\n",
                "  1 | Ada\n",
                " 10 |\n",
                "(2 rows)\n",
                "(truncated: more rows exist; aggregate, filter or page)\n",
                "session abc: idle, expires in 1799 s\n",
            )
        );
    }

    #[test]
    fn statements_without_rows_show_their_tag() {
        let value = json!({"fields": [], "rows": [], "row_count": 0, "truncated": false,
                           "command": "INSERT", "rows_affected": 3, "duration_ms": 1.0});
        assert_eq!(table(&value), "INSERT 3\n");
    }

    #[test]
    fn other_results_are_key_value_lines_and_grids() {
        let value = json!({
            "status": "ok", "pool": {"size": 15, "idle": 1}, "tags": ["a", "b"], "none": [],
            "checks": [{"name": "cache", "status": "ok", "detail": "line 1\nline 2"}]
        });
        assert_eq!(
            table(&value),
            concat!(
                "status     ok\n",
                "pool.size  15\n",
                "pool.idle  1\n",
                "tags       a, b\n",
                "none       (none)\n",
                "\n",
                "checks:\n",
                " name  | status | detail\n",
                "-------+--------+----------------\n",
                " cache | ok     | line 1\\nline 2\n",
                "(1 row)\n",
            )
        );
    }
}
