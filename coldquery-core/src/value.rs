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

/// The size of a JSON value's compact serialization (what `serde_json::to_string` writes),
/// computed by walking the value instead of writing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonSize {
    /// Bytes of the serialization.
    pub bytes: usize,
    /// Of those, the double quotes and backslashes: the bytes a JSON string holding the
    /// serialization escapes again (each becomes two).
    pub escapes: usize,
}

impl JsonSize {
    /// The size of `value` serialized compactly.
    pub fn of(value: &Value) -> JsonSize {
        let mut size = JsonSize::default();
        size.add(value);
        size
    }

    fn add(&mut self, value: &Value) {
        match value {
            Value::Null => self.bytes += 4,
            Value::Bool(true) => self.bytes += 4,
            Value::Bool(false) => self.bytes += 5,
            Value::Number(n) => self.bytes += number_len(n),
            Value::String(s) => self.add_str(s),
            Value::Array(items) => {
                self.bytes += 2 + items.len().saturating_sub(1);
                for item in items {
                    self.add(item);
                }
            }
            Value::Object(map) => {
                // Braces, a colon per entry, a comma between entries.
                self.bytes += 2 + map.len() + map.len().saturating_sub(1);
                for (key, item) in map {
                    self.add_str(key);
                    self.add(item);
                }
            }
        }
    }

    /// A string as serde_json escapes it: `"` and `\` with a backslash, the control
    /// characters as `\b \t \n \f \r` or `\u00XX`, everything else as is.
    fn add_str(&mut self, s: &str) {
        let mut bytes = 2 + s.len();
        let mut escapes = 2;
        for &b in s.as_bytes() {
            match b {
                b'"' | b'\\' => {
                    bytes += 1;
                    escapes += 2;
                }
                0x08 | 0x09 | 0x0a | 0x0c | 0x0d => {
                    bytes += 1;
                    escapes += 1;
                }
                0x00..=0x1f => {
                    bytes += 5;
                    escapes += 1;
                }
                _ => {}
            }
        }
        self.bytes += bytes;
        self.escapes += escapes;
    }
}

/// The length of a number as serde_json writes it (integers in full, floats in their
/// shortest form), written to a counter.
fn number_len(n: &serde_json::Number) -> usize {
    if let Some(u) = n.as_u64() {
        return digits(u);
    }
    if let Some(i) = n.as_i64() {
        return 1 + digits(i.unsigned_abs());
    }
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a number to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, n);
    count.0
}

fn digits(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
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

    fn measured(value: &Value) -> JsonSize {
        let text = serde_json::to_string(value).unwrap();
        JsonSize { bytes: text.len(), escapes: text.bytes().filter(|b| matches!(b, b'"' | b'\\')).count() }
    }

    #[test]
    fn json_size_of_every_kind_of_value() {
        let cases = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.1),
            json!(-1.5e300),
            json!(1e-7),
            json!(""),
            json!("a \"quoted\" \\ back\u{8}\t\n\u{c}\r\u{0}\u{1f}\u{7f} é ☃ 🦀"),
            json!([]),
            json!({}),
            json!([1, "two", [null], {"k": {"\"": [true, 2.5]}}]),
        ];
        for value in cases {
            assert_eq!(JsonSize::of(&value), measured(&value), "{value}");
        }
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x20\"\\\\a]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((any::<String>(), inner), 0..8)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn json_size_is_the_serialized_size(value in any_json()) {
            proptest::prop_assert_eq!(JsonSize::of(&value), measured(&value));
        }
    }

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
