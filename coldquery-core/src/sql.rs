//! SQL text whose origin shows in its type (after sqlx's `SqlStr`).
//!
//! There are exactly three ways to get a [`Sql`]:
//! - [`Sql::catalog`]: a fixed `&'static str` written in ColdQuery's source;
//! - [`SqlBuilder`]: static fragments, sanitized [`Ident`]s and `$n` placeholders — values
//!   never appear in the text;
//! - [`Sql::caller`]: a caller's statement, wrapped as [`CallerSql`].
//!
//! There is deliberately no `From<String>`: a `format!` of caller input cannot become SQL.

use std::borrow::Cow;

use crate::{Error, ErrorKind, Ident, QualifiedName};

/// The largest caller statement accepted, in bytes. Larger input is refused before parsing.
pub const MAX_SQL_BYTES: usize = 1024 * 1024;

/// Where a piece of SQL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Fixed SQL from ColdQuery's source.
    Catalog,
    /// Built from static fragments, identifiers and placeholders.
    Built,
    /// Contains a caller's statement.
    Caller,
}

/// A statement ready to send, with its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    text: Cow<'static, str>,
    origin: Origin,
}

impl Sql {
    /// Fixed SQL written in ColdQuery's source.
    pub const fn catalog(text: &'static str) -> Sql {
        Sql { text: Cow::Borrowed(text), origin: Origin::Catalog }
    }

    /// A caller's statement, as validated by [`CallerSql::new`].
    pub fn caller(sql: CallerSql) -> Sql {
        Sql { text: Cow::Owned(sql.text), origin: Origin::Caller }
    }

    /// The text to send.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where it came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// A caller's SQL statement: non-empty, at most [`MAX_SQL_BYTES`], without NUL.
///
/// Being a `CallerSql` says nothing about what the statement does; the tools layer classifies
/// it with PostgreSQL's grammar before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerSql {
    text: String,
    name: &'static str,
}

impl CallerSql {
    /// Validates the caller's text given in parameter `sql`.
    pub fn new(text: impl Into<String>) -> Result<CallerSql, Error> {
        CallerSql::named(text, "parameter 'sql'")
    }

    /// Validates caller text that errors about it call `name` (e.g. `parameter 'definition'`).
    pub fn named(text: impl Into<String>, name: &'static str) -> Result<CallerSql, Error> {
        let text = text.into();
        if text.trim().is_empty() {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("{name} is empty")));
        }
        if text.len() > MAX_SQL_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{name} is {} bytes; the limit is {MAX_SQL_BYTES} bytes", text.len()),
            ));
        }
        if text.contains('\0') {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{name} contains a NUL character, which PostgreSQL cannot accept"),
            ));
        }
        Ok(CallerSql { text, name })
    }

    /// What errors about the text call it, e.g. `parameter 'sql'`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The statement text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Builds SQL from static fragments, identifiers and placeholders only.
#[derive(Debug, Clone)]
pub struct SqlBuilder {
    text: String,
    origin: Origin,
}

impl SqlBuilder {
    /// Starts with a static fragment.
    pub fn new(start: &'static str) -> SqlBuilder {
        SqlBuilder { text: start.to_owned(), origin: Origin::Built }
    }

    /// Appends a static fragment.
    pub fn push(&mut self, fragment: &'static str) -> &mut SqlBuilder {
        self.text.push_str(fragment);
        self
    }

    /// Appends a quoted identifier.
    pub fn ident(&mut self, ident: &Ident) -> &mut SqlBuilder {
        crate::ident::push_quoted(&mut self.text, ident.as_str());
        self
    }

    /// Appends a possibly schema-qualified name, each part quoted.
    pub fn name(&mut self, name: &QualifiedName) -> &mut SqlBuilder {
        if let Some(schema) = &name.schema {
            self.ident(schema);
            self.text.push('.');
        }
        self.ident(&name.name)
    }

    /// Appends the placeholder `$n` (1-based).
    pub fn placeholder(&mut self, n: usize) -> &mut SqlBuilder {
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }

    /// Appends a caller's statement (for wrappers such as `EXPLAIN (...) <statement>`);
    /// the result is marked as caller SQL.
    pub fn caller(&mut self, sql: &CallerSql) -> &mut SqlBuilder {
        self.text.push_str(sql.as_str());
        self.origin = Origin::Caller;
        self
    }

    /// Appends a finished statement (for wrappers such as `EXPLAIN (...) <statement>`); the
    /// result is marked as caller SQL when the statement is.
    pub fn sql(&mut self, sql: &Sql) -> &mut SqlBuilder {
        self.text.push_str(sql.text());
        if sql.origin() == Origin::Caller {
            self.origin = Origin::Caller;
        }
        self
    }

    /// The finished statement.
    pub fn build(&self) -> Sql {
        Sql { text: Cow::Owned(self.text.clone()), origin: self.origin }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_quotes_identifiers_and_numbers_placeholders() {
        let name = QualifiedName::parse(r#"public.t"x"#).unwrap();
        let sql = SqlBuilder::new("SELECT * FROM ").name(&name).push(" WHERE id = ").placeholder(1).build();
        assert_eq!(sql.text(), r#"SELECT * FROM "public"."t""x" WHERE id = $1"#);
        assert_eq!(sql.origin(), Origin::Built);
    }

    #[test]
    fn caller_sql_is_validated() {
        assert_eq!(CallerSql::new("  ").unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(CallerSql::new("SELECT 1\0").unwrap_err().kind(), ErrorKind::InvalidArgument);
        let huge = "x".repeat(MAX_SQL_BYTES + 1);
        assert_eq!(CallerSql::new(huge).unwrap_err().kind(), ErrorKind::InvalidArgument);
        let sql = SqlBuilder::new("EXPLAIN ").caller(&CallerSql::new("SELECT 1").unwrap()).build();
        assert_eq!(sql.origin(), Origin::Caller);
    }
}
