//! A tool's successful result as the tools hand it to the adapters: a tree of JSON values, or,
//! for a statement's result, the object's other fields and its rows as JSON text.
//!
//! The rows of a read are most of a large result. As a tree each row is an ordered map of its
//! columns (about 1.5 KB for 10 columns, measured with heaptrack), built, serialized once and
//! freed; as text they are written once, as they are taken from the executor's result, and a
//! wire that writes JSON (stdio) copies the text into its line. Whoever wants the tree
//! ([`Body::into_value`]) parses the rows then.

use serde_json::{Map, Value};

/// A successful result: always a JSON object for the tools' results.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// Any JSON value.
    Value(Value),
    /// An object whose `rows` member is `rows`, the compact JSON text of an array. `object` holds
    /// the other members, and `rows` as a `null` placeholder where it goes, so the members keep
    /// their order.
    Rows { object: Map<String, Value>, rows: String },
}

/// The key of the rows in [`Body::Rows`].
const ROWS: &str = "rows";

impl From<Value> for Body {
    fn from(value: Value) -> Body {
        Body::Value(value)
    }
}

impl Body {
    /// A member of the object other than its rows, without building the rows' values.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        if key == ROWS {
            return None;
        }
        match self {
            Body::Value(value) => value.get(key),
            Body::Rows { object, .. } => object.get(key),
        }
    }

    /// Sets a member of the object (not its rows), last if it is new.
    pub(crate) fn insert(&mut self, key: &str, member: Value) {
        match self {
            Body::Value(Value::Object(object)) | Body::Rows { object, .. } => {
                object.insert(key.to_owned(), member);
            }
            Body::Value(_) => {}
        }
    }

    /// The tree of values (the rows parsed from their text).
    pub(crate) fn into_value(self) -> Value {
        match self {
            Body::Value(value) => value,
            Body::Rows { mut object, rows } => {
                // The text is serde_json's own output (`RowsWriter`), as deep as the values it
                // was written from: it parses.
                let rows = coldquery_core::parse_own_json(&rows).unwrap_or(Value::Null);
                if let Some(slot) = object.get_mut(ROWS) {
                    *slot = rows;
                }
                Value::Object(object)
            }
        }
    }

    /// The compact JSON text, exactly as `serde_json` writes [`Body::into_value`]'s value.
    pub(crate) fn to_json_string(&self) -> String {
        match self {
            Body::Value(value) => value.to_string(),
            Body::Rows { object, rows } => {
                // The members before the rows and after them are written first, so the text is
                // allocated once, at its size.
                let (mut head, mut tail) = (vec![b'{'], Vec::new());
                let mut part = &mut head;
                for (i, (key, member)) in object.iter().enumerate() {
                    if i > 0 {
                        part.push(b',');
                    }
                    // Writing to a Vec cannot fail, nor can serializing a string or a Value.
                    let _ = serde_json::to_writer(&mut *part, key);
                    part.push(b':');
                    if key == ROWS {
                        part = &mut tail;
                    } else {
                        let _ = serde_json::to_writer(&mut *part, member);
                    }
                }
                tail.push(b'}');
                let mut out = Vec::with_capacity(head.len() + rows.len() + tail.len());
                out.extend_from_slice(&head);
                out.extend_from_slice(rows.as_bytes());
                out.extend_from_slice(&tail);
                // Only whole UTF-8 texts were written.
                String::from_utf8(out).unwrap_or_default()
            }
        }
    }
}

/// Two bodies are equal when their JSON is.
impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        match (self, other) {
            (Body::Value(a), Body::Value(b)) => a == b,
            _ => self.clone().into_value() == other.clone().into_value(),
        }
    }
}

/// Writes rows as the compact JSON text of an array of objects keyed by column name, one row at a
/// time, and tells what each row costs.
#[derive(Debug)]
pub(crate) struct RowsWriter {
    /// Each key as JSON, with its colon.
    keys: Vec<Vec<u8>>,
    out: Vec<u8>,
    rows: usize,
}

/// What one row added to the text: its bytes, and its quotes and backslashes (each costs one
/// more byte where the text is escaped into a JSON string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowCost {
    pub(crate) bytes: usize,
    pub(crate) escapes: usize,
}

impl RowsWriter {
    /// A writer for rows with these keys, in column order.
    pub(crate) fn new(keys: &[String], capacity: usize) -> RowsWriter {
        let keys = keys
            .iter()
            .map(|key| {
                let mut json = serde_json::to_vec(key).unwrap_or_default();
                json.push(b':');
                json
            })
            .collect();
        let mut out = Vec::with_capacity(capacity);
        out.push(b'[');
        RowsWriter { keys, out, rows: 0 }
    }

    /// Appends a row (a missing value is `null`, values past the keys are left out) and returns
    /// what the row's object costs, without the comma before it.
    pub(crate) fn push(&mut self, values: Vec<Value>) -> (RowCost, usize) {
        let mark = self.out.len();
        if self.rows > 0 {
            self.out.push(b',');
        }
        let start = self.out.len();
        self.out.push(b'{');
        let mut values = values.into_iter();
        for (i, key) in self.keys.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(key);
            // Writing to a Vec cannot fail, nor can serializing a Value.
            let _ = serde_json::to_writer(&mut self.out, &values.next().unwrap_or(Value::Null));
        }
        self.out.push(b'}');
        self.rows += 1;
        let row = &self.out[start..];
        let escapes = row.iter().filter(|&&b| b == b'"' || b == b'\\').count();
        (RowCost { bytes: row.len(), escapes }, mark)
    }

    /// Takes back the last row pushed (`mark` is what [`RowsWriter::push`] returned with it).
    pub(crate) fn pop(&mut self, mark: usize) {
        self.out.truncate(mark);
        self.rows -= 1;
    }

    /// Makes room for `bytes` more of text.
    pub(crate) fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    /// The rows written.
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// The JSON text of the array.
    pub(crate) fn finish(mut self) -> String {
        self.out.push(b']');
        // Room reserved for rows that did not come (the first row was larger than the rest, or
        // the budget cut the rows) is given back.
        if self.out.capacity() - self.out.len() > self.out.len() / 2 + 4096 {
            self.out.shrink_to_fit();
        }
        // Only whole UTF-8 texts were written.
        String::from_utf8(self.out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_text_is_what_serde_json_writes_for_the_tree() {
        let keys = vec!["a".to_owned(), "b \"q\"".to_owned(), "a_2".to_owned()];
        let mut writer = RowsWriter::new(&keys, 0);
        let rows = [
            vec![json!(1), json!("x\"y\\z\n\u{1}é"), json!(null)],
            vec![json!([1, {"k": 2.5}]), json!(true)],
            vec![json!(-1), json!(u64::MAX), json!({"n": null}), json!("extra")],
        ];
        let mut tree = Vec::new();
        for row in rows {
            let object: Map<String, Value> =
                keys.iter().cloned().zip(row.iter().cloned().chain(std::iter::repeat(Value::Null))).collect();
            let object = Value::Object(object);
            let expected = object.to_string();
            let (cost, _) = writer.push(row);
            assert_eq!(cost.bytes, expected.len());
            assert_eq!(cost.escapes, expected.bytes().filter(|b| matches!(b, b'"' | b'\\')).count());
            tree.push(object);
        }
        let mut object = Map::new();
        object.insert("fields".into(), json!([]));
        object.insert("rows".into(), Value::Null);
        object.insert("row_count".into(), json!(3));
        let body = Body::Rows { object, rows: writer.finish() };
        let expected = json!({"fields": [], "rows": tree, "row_count": 3});
        assert_eq!(body.to_json_string(), expected.to_string());
        assert_eq!(body.get("row_count"), Some(&json!(3)));
        assert_eq!(body.get("rows"), None);
        assert_eq!(body.clone().into_value(), expected);
        assert_eq!(body, Body::Value(expected.clone()));
        assert_eq!(Body::Value(expected).get("rows"), None, "the rows are not a member, whatever the body");
    }

    /// A value as deep as a `jsonb` value decoded from PostgreSQL can be (127 levels, inside
    /// array dimensions) comes back from the rows' text whole.
    #[test]
    fn deep_values_come_back_from_the_text() {
        let mut deep = json!("bottom");
        for _ in 0..133 {
            deep = json!([deep]);
        }
        let mut writer = RowsWriter::new(&["j".to_owned()], 0);
        writer.push(vec![deep.clone()]);
        let mut object = Map::new();
        object.insert("rows".into(), Value::Null);
        let body = Body::Rows { object, rows: writer.finish() };
        assert_eq!(body.clone().into_value(), json!({"rows": [{"j": deep}]}));
        assert_eq!(body.to_json_string(), json!({"rows": [{"j": deep}]}).to_string());
    }

    #[test]
    fn a_row_taken_back_leaves_the_text_as_before_it() {
        let keys = vec!["a".to_owned()];
        let mut writer = RowsWriter::new(&keys, 0);
        let (_, mark) = writer.push(vec![json!(1)]);
        assert_eq!(mark, 1);
        let (_, mark) = writer.push(vec![json!(2)]);
        writer.pop(mark);
        assert_eq!(writer.len(), 1);
        assert_eq!(writer.finish(), r#"[{"a":1}]"#);
        let mut empty = RowsWriter::new(&keys, 0);
        let (_, mark) = empty.push(vec![json!(1)]);
        empty.pop(mark);
        assert_eq!(empty.finish(), "[]");
    }

    #[test]
    fn members_are_set_in_place_or_last() {
        let mut object = Map::new();
        object.insert("rows".into(), Value::Null);
        object.insert("truncated".into(), json!(false));
        let mut body = Body::Rows { object, rows: "[]".into() };
        body.insert("session", json!({"id": "s"}));
        body.insert("truncated", json!(true));
        assert_eq!(body.to_json_string(), r#"{"rows":[],"truncated":true,"session":{"id":"s"}}"#);
    }
}
