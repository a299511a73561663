//! The identifier sanitizer: the only way a caller-supplied name (table, schema, savepoint,
//! column) reaches SQL text.
//!
//! An [`Ident`] is any non-empty string of at most 63 bytes (PostgreSQL's `NAMEDATALEN - 1`)
//! without NUL. It is always written quoted, with embedded `"` doubled, so it can never be read
//! as a keyword, an operator or a second identifier. Longer names are rejected rather than
//! silently truncated the way PostgreSQL would truncate them.

use std::fmt;

/// PostgreSQL's identifier limit in bytes (`NAMEDATALEN - 1`).
pub const MAX_IDENT_BYTES: usize = 63;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// The empty string.
    #[error("identifier is empty")]
    Empty,
    /// More than 63 bytes.
    #[error("identifier is {0} bytes long; PostgreSQL identifiers are at most 63 bytes")]
    TooLong(usize),
    /// Contains a NUL character.
    #[error("identifier contains a NUL character")]
    Nul,
    /// A qualified name with too many or empty parts, or bad quoting.
    #[error("malformed qualified name: {0}")]
    Malformed(&'static str),
}

/// A validated SQL identifier; its `Display` is the quoted form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Validates `name` as an identifier (exactly as given: no case folding, no trimming).
    pub fn new(name: &str) -> Result<Ident, IdentError> {
        if name.is_empty() {
            return Err(IdentError::Empty);
        }
        if name.len() > MAX_IDENT_BYTES {
            return Err(IdentError::TooLong(name.len()));
        }
        if name.contains('\0') {
            return Err(IdentError::Nul);
        }
        Ok(Ident(name.to_owned()))
    }

    /// The identifier as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quoted form: `"` + name with `"` doubled + `"`.
    pub fn quoted(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 2);
        push_quoted(&mut out, &self.0);
        out
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

pub(crate) fn push_quoted(out: &mut String, name: &str) {
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

fn parse_quoted(s: &str) -> Result<(Ident, &str), IdentError> {
    let body = s.strip_prefix('"').ok_or(IdentError::Malformed("a quoted identifier must start with '\"'"))?;
    let mut name = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if body[i + 1..].starts_with('"') {
                name.push('"');
                chars.next();
            } else {
                return Ok((Ident::new(&name)?, &body[i + 1..]));
            }
        } else {
            name.push(c);
        }
    }
    Err(IdentError::Malformed("unterminated quoted identifier"))
}

/// A possibly schema-qualified name such as `public.users`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    /// The schema, if given; otherwise the name resolves through `search_path`.
    pub schema: Option<Ident>,
    /// The object's name.
    pub name: Ident,
}

impl QualifiedName {
    /// Parses `name`, `schema.name`, or either part in double quotes (`"My Schema"."a.b"`).
    /// Unquoted parts are taken literally (no case folding); a part containing `.` must be quoted.
    pub fn parse(text: &str) -> Result<QualifiedName, IdentError> {
        let mut parts = Vec::new();
        let mut rest = text;
        loop {
            let (part, after) = if rest.starts_with('"') {
                parse_quoted(rest)?
            } else {
                let end = rest.find('.').unwrap_or(rest.len());
                (Ident::new(&rest[..end])?, &rest[end..])
            };
            parts.push(part);
            if after.is_empty() {
                break;
            }
            rest = after.strip_prefix('.').ok_or(IdentError::Malformed("expected '.' between name parts"))?;
        }
        match parts.len() {
            1 => Ok(QualifiedName { schema: None, name: parts.remove(0) }),
            2 => {
                let name = parts.pop().expect("two parts");
                Ok(QualifiedName { schema: parts.pop(), name })
            }
            _ => Err(IdentError::Malformed("at most two parts: schema.name")),
        }
    }

    /// Uses `schema` when the name itself has none.
    #[must_use]
    pub fn or_schema(mut self, schema: Option<Ident>) -> QualifiedName {
        if self.schema.is_none() {
            self.schema = schema;
        }
        self
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{schema}.")?;
        }
        write!(f, "{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Parses one quoted identifier back: the oracle that [`Ident::quoted`] is reversible.
    fn from_quoted(quoted: &str) -> Result<Ident, IdentError> {
        let (ident, rest) = parse_quoted(quoted)?;
        if !rest.is_empty() {
            return Err(IdentError::Malformed("text after the closing quote"));
        }
        Ok(ident)
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(Ident::new("users").unwrap().quoted(), r#""users""#);
        assert_eq!(Ident::new(r#"a"b"#).unwrap().quoted(), r#""a""b""#);
        assert_eq!(Ident::new(r#"t"; DROP TABLE x; --"#).unwrap().quoted(), r#""t""; DROP TABLE x; --""#);
    }

    #[test]
    fn rejects_empty_nul_and_long() {
        assert_eq!(Ident::new(""), Err(IdentError::Empty));
        assert_eq!(Ident::new("a\0b"), Err(IdentError::Nul));
        assert_eq!(Ident::new(&"x".repeat(64)), Err(IdentError::TooLong(64)));
        assert!(Ident::new(&"x".repeat(63)).is_ok());
        // 32 two-byte characters are 64 bytes: the limit is in bytes, not characters.
        assert_eq!(Ident::new(&"ß".repeat(32)), Err(IdentError::TooLong(64)));
    }

    #[test]
    fn qualified_names_parse() {
        let q = QualifiedName::parse("public.users").unwrap();
        assert_eq!(q.to_string(), r#""public"."users""#);
        let q = QualifiedName::parse(r#""My Schema"."a.b""#).unwrap();
        assert_eq!(q.schema.unwrap().as_str(), "My Schema");
        assert_eq!(q.name.as_str(), "a.b");
        assert!(QualifiedName::parse("a.b.c").is_err());
        assert!(QualifiedName::parse("a.").is_err());
        assert!(QualifiedName::parse(r#""unterminated"#).is_err());
        assert!(QualifiedName::parse(r#""a"x"#).is_err());
    }

    /// Injection payloads that must come out as exactly one quoted identifier.
    const PAYLOADS: &[&str] =
        &[r#"t"; DROP TABLE x; --"#, r#"""#, r#"a""b"#, "a\nb", "x' OR '1'='1", "/* */ x", "$$ x $$", r#"\"#, "ß"];

    #[test]
    fn injection_payloads_are_one_quoted_identifier() {
        for payload in PAYLOADS {
            let quoted = Ident::new(payload).unwrap().quoted();
            assert_inert(&quoted);
            assert_eq!(from_quoted(&quoted).unwrap().as_str(), *payload);
        }
    }

    /// A quoted identifier is inert when it starts and ends with `"` and every `"` inside
    /// comes in a pair: the lexer can only see one identifier token.
    fn assert_inert(quoted: &str) {
        assert!(quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'));
        let inner = &quoted[1..quoted.len() - 1];
        assert_eq!(inner.replace(r#""""#, "").matches('"').count(), 0, "{quoted}");
    }

    proptest! {
        #[test]
        fn new_is_total(s in any::<String>()) {
            let _ = Ident::new(&s);
            let _ = QualifiedName::parse(&s);
        }

        #[test]
        // At most 15 characters of at most 4 bytes each: always within the 63-byte limit, so
        // every generated name is accepted and checked.
        fn accepted_names_round_trip(s in "[^\\x00]{1,15}") {
            let ident = Ident::new(&s).unwrap();
            let quoted = ident.quoted();
            let back = from_quoted(&quoted).unwrap();
            prop_assert_eq!(back.as_str(), s.as_str());
            let q = QualifiedName { schema: Some(ident.clone()), name: ident };
            prop_assert_eq!(QualifiedName::parse(&q.to_string()).unwrap(), q);
        }

        #[test]
        fn byte_limit_is_exact(s in any::<String>()) {
            let ok = Ident::new(&s).is_ok();
            prop_assert_eq!(ok, !s.is_empty() && s.len() <= MAX_IDENT_BYTES && !s.contains('\0'));
        }

        #[test]
        fn quoted_form_is_inert(s in "[\"';\\\\$a-z \\n-]{1,40}") {
            let quoted = Ident::new(&s).unwrap().quoted();
            assert_inert(&quoted);
        }
    }
}
