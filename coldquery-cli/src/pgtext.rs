//! Values in PostgreSQL's text format, as psql prints them and `COPY … FROM` reads them back:
//! arrays as `{a,"b c",NULL}`, booleans as `t`/`f`, timestamps with a space, JSON with
//! PostgreSQL's spacing. The tools return values as JSON (SPEC §2); the column's type name
//! (`fields[].type`) says which text form a JSON value stands for.

use coldquery_core::quote_array_element;
use serde_json::Value;

/// The text form of `value`, a value of PostgreSQL type `type_name`; `None` for SQL NULL.
pub(crate) fn text(value: &Value, type_name: &str) -> Option<String> {
    if value.is_null() {
        return None;
    }
    if type_name == "json" || type_name == "jsonb" {
        let mut out = String::new();
        json(value, &mut out);
        return Some(out);
    }
    Some(match value {
        Value::Null => return None,
        Value::Bool(true) => "t".to_owned(),
        Value::Bool(false) => "f".to_owned(),
        Value::Number(n) if type_name == "float4" => match n.as_f64() {
            // float4 values arrive widened to f64; print the float4 PostgreSQL would.
            #[allow(clippy::cast_possible_truncation)]
            Some(f) => (f as f32).to_string(),
            None => n.to_string(),
        },
        Value::Number(n) => n.to_string(),
        Value::String(s) => match type_name {
            "timestamp" | "timestamptz" | "_timestamp" | "_timestamptz" => timestamp(s),
            _ => s.clone(),
        },
        Value::Array(items) => {
            let element = type_name.strip_prefix('_').unwrap_or(type_name);
            let mut out = String::new();
            array(items, element, &mut out);
            out
        }
        Value::Object(_) => {
            let mut out = String::new();
            json(value, &mut out);
            out
        }
    })
}

/// `2026-01-02T03:04:05.6Z` → `2026-01-02 03:04:05.6+00`, PostgreSQL's ISO output.
fn timestamp(iso: &str) -> String {
    let Some((date, time)) = iso.split_once('T') else {
        return iso.to_owned();
    };
    let time = if let Some(utc) = time.strip_suffix('Z') {
        format!("{utc}+00")
    } else if let Some(zone_at) = time.rfind(['+', '-']) {
        // `+02:00` → `+02`, as PostgreSQL prints whole-hour offsets.
        let (clock, zone) = time.split_at(zone_at);
        format!("{clock}{}", zone.strip_suffix(":00").unwrap_or(zone))
    } else {
        time.to_owned()
    };
    format!("{date} {time}")
}

/// An array literal: `{1,2}`, `{{1,2},{3,4}}`, `{"a b",NULL,""}`.
fn array(items: &[Value], element: &str, out: &mut String) {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Array(inner) if element != "json" && element != "jsonb" => array(inner, element, out),
            _ => match text(item, element) {
                None => out.push_str("NULL"),
                Some(text) => array_element(&text, out),
            },
        }
    }
    out.push('}');
}

/// One element, double-quoted when array_out would quote it.
fn array_element(text: &str, out: &mut String) {
    let needs_quotes = text.is_empty()
        || text.eq_ignore_ascii_case("NULL")
        || text.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace() || c == '\x0b');
    if needs_quotes {
        quote_array_element(text, out);
    } else {
        out.push_str(text);
    }
}

/// JSON as PostgreSQL's jsonb output writes it: `{"a": 1, "b": [1, 2]}`.
fn json(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                json(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// One CSV field as PostgreSQL's `COPY … CSV` writes it: NULL as `null` unquoted, and any
/// value that could be read back as something else (empty, the NULL string, `\.`, or holding a
/// comma, quote or line break) in double quotes.
pub(crate) fn csv_field(value: Option<&str>, null: &str, out: &mut String) {
    let Some(text) = value else {
        out.push_str(null);
        return;
    };
    let needs_quotes = text.is_empty() || text == null || text == "\\." || text.contains([',', '"', '\n', '\r']);
    if !needs_quotes {
        out.push_str(text);
        return;
    }
    out.push('"');
    out.push_str(&text.replace('"', "\"\""));
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_take_postgresqls_text_form() {
        let cases = [
            (json!(null), "text", None),
            (json!(""), "text", Some("")),
            (json!(true), "bool", Some("t")),
            (json!(1.5), "float8", Some("1.5")),
            (json!(0.10000000149011612), "float4", Some("0.1")),
            (json!("1.50"), "numeric", Some("1.50")),
            (json!("2026-12-03T14:15:54.237784Z"), "timestamptz", Some("2026-12-03 14:15:54.237784+00")),
            (json!("2026-12-03T14:15:54+05:30"), "timestamptz", Some("2026-12-03 14:15:54+05:30")),
            (json!("2026-12-03T14:15:54-02:00"), "timestamptz", Some("2026-12-03 14:15:54-02")),
            (json!("2026-12-03T14:15:54"), "timestamp", Some("2026-12-03 14:15:54")),
            (json!("infinity"), "timestamp", Some("infinity")),
            (json!(["a", "b c", null, "", "NULL", "q\"\\"]), "_text", Some(r#"{a,"b c",NULL,"","NULL","q\"\\"}"#)),
            (json!([[1, 2], [3, 4]]), "_int4", Some("{{1,2},{3,4}}")),
            (json!([]), "_int4", Some("{}")),
            (json!(["\\x00ff"]), "_bytea", Some(r#"{"\\x00ff"}"#)),
            (json!([true, false]), "_bool", Some("{t,f}")),
            (json!({"a": [1, 2], "b": {"c": "x, y"}}), "jsonb", Some(r#"{"a": [1, 2], "b": {"c": "x, y"}}"#)),
            (json!("just a string"), "jsonb", Some(r#""just a string""#)),
            (json!([{"k": 1}]), "_jsonb", Some(r#"{"{\"k\": 1}"}"#)),
            (json!(["2026-01-01T00:00:00Z"]), "_timestamptz", Some(r#"{"2026-01-01 00:00:00+00"}"#)),
        ];
        for (value, type_name, expected) in cases {
            assert_eq!(text(&value, type_name).as_deref(), expected, "{value} as {type_name}");
        }
    }

    #[test]
    fn csv_tells_null_from_the_empty_string() {
        let field = |value: Option<&str>, null: &str| {
            let mut out = String::new();
            csv_field(value, null, &mut out);
            out
        };
        assert_eq!(field(None, ""), "");
        assert_eq!(field(Some(""), ""), "\"\"");
        assert_eq!(field(Some("a,b"), ""), "\"a,b\"");
        assert_eq!(field(Some("say \"hi\""), ""), "\"say \"\"hi\"\"\"");
        assert_eq!(field(Some("line\nbreak"), ""), "\"line\nbreak\"");
        assert_eq!(field(Some("\\."), ""), "\"\\.\"");
        assert_eq!(field(None, "NULL"), "NULL");
        assert_eq!(field(Some("NULL"), "NULL"), "\"NULL\"");
        assert_eq!(field(Some("plain"), ""), "plain");
    }
}
