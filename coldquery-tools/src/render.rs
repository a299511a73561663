//! The text rendering of a result (`format`: json, markdown, csv). Structured content is
//! always JSON; this only shapes the text content a client shows.

use serde_json::Value;

/// How the text content of a result is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextFormat {
    /// The structured result as JSON (default).
    #[default]
    Json,
    /// Rows as a Markdown table.
    Markdown,
    /// Rows as CSV (RFC 4180).
    Csv,
}

impl TextFormat {
    /// Parses `json`, `markdown` or `csv`.
    pub fn parse(text: &str) -> Option<TextFormat> {
        match text {
            "json" => Some(TextFormat::Json),
            "markdown" | "md" => Some(TextFormat::Markdown),
            "csv" => Some(TextFormat::Csv),
            _ => None,
        }
    }
}

/// Renders a tool's structured output. Tables (`fields` + `rows`, or a list under another key)
/// become Markdown or CSV; anything else stays JSON.
pub fn render_text(output: &Value, format: TextFormat) -> String {
    // The table is looked for only when a table is asked for: it copies every row.
    let table = if format == TextFormat::Json { None } else { table_of(output) };
    match (format, table) {
        (TextFormat::Markdown, Some((columns, rows))) => {
            let mut out = markdown(&columns, &rows);
            if output.get("truncated") == Some(&Value::Bool(true)) {
                out.push_str("\n_truncated: more rows exist; aggregate or page_\n");
            }
            out
        }
        (TextFormat::Csv, Some((columns, rows))) => csv(&columns, &rows),
        // Compact: the same JSON as the structured content, in as few tokens as possible.
        _ => output.to_string(),
    }
}

/// Finds the table in an output: `rows` with `fields`, or the first array of objects.
pub fn table_of(output: &Value) -> Option<(Vec<String>, Vec<Vec<Value>>)> {
    let rows = output.get("rows").and_then(Value::as_array).or_else(|| {
        output.as_object()?.values().find_map(|v| {
            let array = v.as_array()?;
            array.first()?.as_object()?;
            Some(array)
        })
    })?;
    let columns: Vec<String> = match output.get("fields").and_then(Value::as_array) {
        Some(fields) => {
            // Row objects use de-duplicated keys; take them from the first row when present.
            match rows.first().and_then(Value::as_object) {
                Some(first) if first.len() == fields.len() => first.keys().cloned().collect(),
                _ => fields.iter().filter_map(|f| f["name"].as_str().map(str::to_owned)).collect(),
            }
        }
        None => rows.first()?.as_object()?.keys().cloned().collect(),
    };
    let cells =
        rows.iter().map(|row| columns.iter().map(|c| row.get(c).cloned().unwrap_or(Value::Null)).collect()).collect();
    Some((columns, cells))
}

/// A cell as plain text: strings unquoted, NULL empty, JSON compact.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn markdown(columns: &[String], rows: &[Vec<Value>]) -> String {
    let esc = |s: String| s.replace('|', "\\|").replace('\n', "<br>");
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", columns.iter().map(|c| esc(c.clone())).collect::<Vec<_>>().join(" | ")));
    out.push_str(&format!("|{}\n", " --- |".repeat(columns.len())));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.iter().map(|v| esc(cell(v))).collect::<Vec<_>>().join(" | ")));
    }
    out
}

fn csv(columns: &[String], rows: &[Vec<Value>]) -> String {
    let field = |s: String| {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
    };
    let mut out = String::new();
    out.push_str(&columns.iter().map(|c| field(c.clone())).collect::<Vec<_>>().join(","));
    out.push_str("\r\n");
    for row in rows {
        out.push_str(&row.iter().map(|v| field(cell(v))).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_and_markdown_escape() {
        let out = json!({
            "fields": [{"name": "a", "type": "text"}, {"name": "b", "type": "int4"}],
            "rows": [{"a": "x,\"y\"", "b": 1}, {"a": "p|q", "b": null}],
        });
        assert_eq!(render_text(&out, TextFormat::Csv), "a,b\r\n\"x,\"\"y\"\"\",1\r\np|q,\r\n");
        assert_eq!(
            render_text(&out, TextFormat::Markdown),
            "| a | b |\n| --- | --- |\n| x,\"y\" | 1 |\n| p\\|q |  |\n"
        );
    }
}
