//! The value and result model of SPEC §2: bind parameters going in, fields and rows coming out.

use serde::Serialize;
use serde_json::{Map, Value};

/// Appends `text` to `out` as a double-quoted element of a PostgreSQL array literal
/// (`a "b"` → `"a \"b\""`), which `array_in` reads back as the same text whatever it holds.
pub fn quote_array_element(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Parses JSON text that ColdQuery wrote from values it holds (a result's rows), without
/// serde_json's nesting limit of 128 levels: a `jsonb` value decoded from PostgreSQL may be 127
/// levels deep (it was parsed with that limit), inside array dimensions, and a result's rows add
/// two more. The depth is bounded by what was decoded, so this parse needs no limit of its own.
pub fn parse_own_json(text: &str) -> serde_json::Result<Value> {
    use serde::Deserialize;
    let mut input = serde_json::Deserializer::from_str(text);
    input.disable_recursion_limit();
    let value = Value::deserialize(&mut input)?;
    input.end()?;
    Ok(value)
}

/// A bind parameter. Values only ever travel as parameters, never inside SQL text.
///
/// Parameters are sent in PostgreSQL's text format with an unspecified type, so the server
/// infers each one's type from the statement, as `psql`'s `\bind` does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Param {
    /// SQL NULL.
    Null,
    /// A boolean (`true`/`false`).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text, sent as given.
    Text(String),
    /// A JSON array or object, sent as JSON text (for `json`/`jsonb` parameters).
    Json(Value),
}

impl Param {
    /// Converts a JSON argument into a parameter.
    pub fn from_json(value: &Value) -> Param {
        match value {
            Value::Null => Param::Null,
            Value::Bool(b) => Param::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Param::Int(i),
                None => Param::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Param::Text(s.clone()),
            Value::Array(_) | Value::Object(_) => Param::Json(value.clone()),
        }
    }

    /// A `text[]` parameter: the items as a PostgreSQL array literal (for `$n::text[]`).
    pub fn text_array<'a>(items: impl IntoIterator<Item = &'a str>) -> Param {
        let mut literal = String::from("{");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                literal.push(',');
            }
            quote_array_element(item, &mut literal);
        }
        literal.push('}');
        Param::Text(literal)
    }

    /// A JSON array as a PostgreSQL array literal (`[1, null, "a b"]` → `{"1",NULL,"a b"}`), for
    /// a parameter the server typed as an array; `None` for anything but a JSON array. Nested
    /// arrays are sub-arrays, except when the elements are `json`/`jsonb` (`json_elements`),
    /// where every element is a JSON value. Elements are quoted, so any element text survives.
    /// Text holding a JSON array (`--param '[1,2]'` from a terminal) counts as one: no array
    /// literal starts with `[` unless it is followed by dimensions and `=`, which JSON is not.
    pub fn array_literal(&self, json_elements: bool) -> Option<String> {
        fn push(items: &[Value], json_elements: bool, out: &mut String) {
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let text = match item {
                    Value::Null => {
                        out.push_str("NULL");
                        continue;
                    }
                    Value::Array(inner) if !json_elements => {
                        push(inner, json_elements, out);
                        continue;
                    }
                    Value::String(s) if !json_elements => s.clone(),
                    other => other.to_string(),
                };
                quote_array_element(&text, out);
            }
            out.push('}');
        }
        match self {
            Param::Json(Value::Array(items)) => {
                let mut out = String::new();
                push(items, json_elements, &mut out);
                Some(out)
            }
            Param::Text(text) if text.trim_start().starts_with('[') => match serde_json::from_str(text) {
                Ok(Value::Array(items)) => Param::Json(Value::Array(items)).array_literal(json_elements),
                _ => None,
            },
            _ => None,
        }
    }

    /// The text-format encoding sent to PostgreSQL; `None` is NULL.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Param::Null => None,
            Param::Bool(b) => Some(b.to_string()),
            Param::Int(i) => Some(i.to_string()),
            Param::Float(f) => Some(f.to_string()),
            Param::Text(s) => Some(s.clone()),
            Param::Json(v) => Some(v.to_string()),
        }
    }
}

/// A result column: its name and PostgreSQL type name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// The column name.
    pub name: String,
    /// The type name as PostgreSQL spells it (`int4`, `text`, `_int4`, `hstore`...).
    #[serde(rename = "type")]
    pub type_name: String,
}

/// What a statement returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// The result columns (empty for statements that return no rows).
    pub fields: Vec<Field>,
    /// Rows in column order, each value already rendered as SPEC §2 says.
    pub rows: Vec<Vec<Value>>,
    /// True when `max_rows` or the byte budget stopped the fetch early.
    pub truncated: bool,
    /// Rows inserted, updated, deleted or merged, for DML; `None` for queries.
    pub rows_affected: Option<u64>,
    /// Wall-clock time of the statement in milliseconds.
    pub duration_ms: f64,
}

impl QueryResult {
    /// Rows as JSON objects keyed by column name. A repeated column name gets a `_2`, `_3`...
    /// suffix so no value is lost.
    pub fn rows_as_objects(&self) -> Vec<Value> {
        self.clone().into_objects()
    }

    /// [`QueryResult::rows_as_objects`], moving the values instead of copying them.
    pub fn into_objects(self) -> Vec<Value> {
        // Each row starts as a copy of one object with the keys in place, and its values go in
        // by position: the keys are hashed once, not once per row.
        let template: Map<String, Value> = self.keys().into_iter().map(|key| (key, Value::Null)).collect();
        self.rows
            .into_iter()
            .map(|row| {
                // `clone` would size the entries to the template's hash table (14 for 10
                // columns): cloned into a map made for the columns, they take what they need.
                let mut object = Map::with_capacity(template.len());
                object.clone_from(&template);
                for ((_, slot), value) in object.iter_mut().zip(row) {
                    *slot = value;
                }
                Value::Object(object)
            })
            .collect()
    }

    /// The object keys of [`QueryResult::rows_as_objects`], in column order.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let mut key = field.name.clone();
            let mut n = 1;
            while keys.contains(&key) {
                n += 1;
                key = format!("{}_{n}", field.name);
            }
            keys.push(key);
        }
        keys
    }

    /// The first column of the first row, if any.
    pub fn scalar(&self) -> Option<&Value> {
        self.rows.first().and_then(|row| row.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_from_json() {
        assert_eq!(Param::from_json(&json!(1)).to_text().as_deref(), Some("1"));
        let array = Param::from_json(&json!([1, null, "a \"b\"", ["x", "y\\"], {"k": 1}, true]));
        assert_eq!(
            array.array_literal(false).as_deref(),
            Some(r#"{"1",NULL,"a \"b\"",{"x","y\\"},"{\"k\":1}","true"}"#)
        );
        assert_eq!(
            Param::from_json(&json!([[1], {"a": null}])).array_literal(true).as_deref(),
            Some(r#"{"[1]","{\"a\":null}"}"#)
        );
        assert_eq!(Param::from_json(&json!({"a": 1})).array_literal(false), None);
        assert_eq!(Param::from_json(&json!("{1}")).array_literal(false), None);
        assert_eq!(Param::from_json(&json!("[1:2]={1,2}")).array_literal(false), None);
        assert_eq!(Param::from_json(&json!(" [1, \"a\"]")).array_literal(false).as_deref(), Some(r#"{"1","a"}"#));
        assert_eq!(Param::from_json(&json!(1.5)).to_text().as_deref(), Some("1.5"));
        assert_eq!(Param::from_json(&json!(null)).to_text(), None);
        assert_eq!(Param::from_json(&json!(true)).to_text().as_deref(), Some("true"));
        assert_eq!(Param::from_json(&json!({"a": [1]})).to_text().as_deref(), Some(r#"{"a":[1]}"#));
    }

    #[test]
    fn duplicate_column_names_keep_every_value() {
        let result = QueryResult {
            fields: vec![
                Field { name: "a".into(), type_name: "int4".into() },
                Field { name: "a".into(), type_name: "int4".into() },
            ],
            rows: vec![vec![json!(1), json!(2)]],
            ..QueryResult::default()
        };
        assert_eq!(result.rows_as_objects(), vec![json!({"a": 1, "a_2": 2})]);
    }
}
