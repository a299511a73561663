//! The error model shared by every layer: a closed set of codes (SPEC §2) plus what
//! PostgreSQL said (SQLSTATE, detail, hint, position).

use std::fmt;

use serde::Serialize;
use serde_json::{Value, json};

/// Result alias used throughout ColdQuery.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The closed set of error codes a caller can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    /// Bad, unknown or missing parameters, or an unknown action.
    InvalidArgument,
    /// A write without `session_id` or `autocommit: true`, or any write in read-only mode.
    WriteDenied,
    /// A read whose statement would write.
    ReadOnlyViolation,
    /// A statement this tool never runs (several statements, transaction control, denied functions...).
    StatementNotAllowed,
    /// A session id that is unknown, closed, expired or owned by another caller.
    SessionNotFound,
    /// Too many open sessions.
    SessionLimit,
    /// The session is running another call.
    SessionBusy,
    /// The session's transaction failed and must be rolled back.
    SessionAborted,
    /// The statement ran longer than ColdQuery's timeout and was cancelled.
    Timeout,
    /// The caller cancelled the call, or PostgreSQL cancelled the statement for a reason of its
    /// own (SQLSTATE 57014 that ColdQuery did not cause: another session's cancel, a
    /// `statement_timeout` set on the server; the message says which).
    Cancelled,
    /// COMMIT did not commit: PostgreSQL rolled the transaction back.
    CommitFailed,
    /// The connection died during COMMIT; whether it committed is unknown.
    CommitOutcomeUnknown,
    /// PostgreSQL reported an error.
    DatabaseError,
    /// The database cannot be reached or no connection is free.
    Unavailable,
    /// A bug in ColdQuery.
    Internal,
}

impl ErrorKind {
    /// Every kind, in SPEC order.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::InvalidArgument,
        ErrorKind::WriteDenied,
        ErrorKind::ReadOnlyViolation,
        ErrorKind::StatementNotAllowed,
        ErrorKind::SessionNotFound,
        ErrorKind::SessionLimit,
        ErrorKind::SessionBusy,
        ErrorKind::SessionAborted,
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::CommitFailed,
        ErrorKind::CommitOutcomeUnknown,
        ErrorKind::DatabaseError,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The wire code, e.g. `WRITE_DENIED`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::WriteDenied => "WRITE_DENIED",
            ErrorKind::ReadOnlyViolation => "READ_ONLY_VIOLATION",
            ErrorKind::StatementNotAllowed => "STATEMENT_NOT_ALLOWED",
            ErrorKind::SessionNotFound => "SESSION_NOT_FOUND",
            ErrorKind::SessionLimit => "SESSION_LIMIT",
            ErrorKind::SessionBusy => "SESSION_BUSY",
            ErrorKind::SessionAborted => "SESSION_ABORTED",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Cancelled => "CANCELLED",
            ErrorKind::CommitFailed => "COMMIT_FAILED",
            ErrorKind::CommitOutcomeUnknown => "COMMIT_OUTCOME_UNKNOWN",
            ErrorKind::DatabaseError => "DATABASE_ERROR",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::Internal => "INTERNAL",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// An error a caller can act on: a code, a message saying what to do next, and, when
/// PostgreSQL produced it, the server's own diagnostics. Boxed, so `Result<T, Error>` stays
/// one pointer wide on the happy path.
#[derive(Debug, Clone, PartialEq)]
pub struct Error(Box<Inner>);

#[derive(Debug, Clone, PartialEq)]
struct Inner {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    sqlstate: Option<String>,
    detail: Option<String>,
    position: Option<u32>,
    operation_index: Option<usize>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.kind, self.0.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            hint: None,
            sqlstate: None,
            detail: None,
            position: None,
            operation_index: None,
        }))
    }

    /// Shorthand for an [`ErrorKind::InvalidArgument`] error.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for an [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// Adds a hint saying how to recover.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.0.hint = Some(hint.into());
        self
    }

    /// Adds PostgreSQL's SQLSTATE.
    #[must_use]
    pub fn with_sqlstate(mut self, sqlstate: impl Into<String>) -> Error {
        self.0.sqlstate = Some(sqlstate.into());
        self
    }

    /// Adds PostgreSQL's detail line.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Error {
        self.0.detail = Some(detail.into());
        self
    }

    /// Adds the 1-based character position in the statement where the error was found.
    #[must_use]
    pub fn with_position(mut self, position: u32) -> Error {
        self.0.position = Some(position);
        self
    }

    /// Marks which operation of a batch failed (0-based).
    #[must_use]
    pub fn with_operation_index(mut self, index: usize) -> Error {
        self.0.operation_index = Some(index);
        self
    }

    /// The same error without an operation index (when the statement that failed was the
    /// caller's only one).
    #[must_use]
    pub fn without_operation_index(mut self) -> Error {
        self.0.operation_index = None;
        self
    }

    /// Replaces the kind, keeping everything else.
    #[must_use]
    pub fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.0.kind = kind;
        self
    }

    /// Replaces the message, keeping everything else.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Error {
        self.0.message = message.into();
        self
    }

    /// The error's code.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }

    /// PostgreSQL's SQLSTATE, if the database produced this error.
    pub fn sqlstate(&self) -> Option<&str> {
        self.0.sqlstate.as_deref()
    }

    /// PostgreSQL's detail, if any.
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// The error position in the statement (1-based characters), if any.
    pub fn position(&self) -> Option<u32> {
        self.0.position
    }

    /// The failing operation of a batch, if any.
    pub fn operation_index(&self) -> Option<usize> {
        self.0.operation_index
    }

    /// The wire body of SPEC §2: `{"error": {"code", "message", "hint"?, ...}}`.
    pub fn to_json(&self) -> Value {
        let mut body = serde_json::Map::new();
        body.insert("code".into(), json!(self.0.kind.code()));
        body.insert("message".into(), json!(self.0.message));
        if let Some(hint) = &self.0.hint {
            body.insert("hint".into(), json!(hint));
        }
        if let Some(sqlstate) = &self.0.sqlstate {
            body.insert("sqlstate".into(), json!(sqlstate));
        }
        if let Some(detail) = &self.0.detail {
            body.insert("detail".into(), json!(detail));
        }
        if let Some(position) = self.0.position {
            body.insert("position".into(), json!(position));
        }
        if let Some(index) = self.0.operation_index {
            body.insert("operation_index".into(), json!(index));
        }
        json!({ "error": Value::Object(body) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_screaming_snake() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            let code = kind.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(code.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(code));
        }
    }

    #[test]
    fn wire_body_omits_absent_fields() {
        let err = Error::new(ErrorKind::DatabaseError, "syntax error").with_sqlstate("42601").with_position(8);
        assert_eq!(
            err.to_json(),
            json!({"error": {"code": "DATABASE_ERROR", "message": "syntax error", "sqlstate": "42601", "position": 8}})
        );
    }
}
