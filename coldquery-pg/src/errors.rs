//! Mapping tokio-postgres errors into the core error model, keeping SQLSTATE, message, detail,
//! hint and position, and never a connection string or password.
//!
//! The kind comes from the SQLSTATE (and the severity, which PostgreSQL also sends untranslated)
//! and never from the message, which the server writes in its `lc_messages` language. What
//! ColdQuery did itself — its own deadline, its own cancel — is reported where it did it
//! (`run.rs`), not inferred here.

use coldquery_core::{Error, ErrorKind};
use tokio_postgres::error::{DbError, ErrorPosition, Severity};

/// Maps a driver error. `context` says what ColdQuery was doing, for errors without a
/// database message (e.g. "connecting to PostgreSQL").
pub(crate) fn map(err: &tokio_postgres::Error, context: &str) -> Error {
    if let Some(db) = err.as_db_error() {
        return map_db(db);
    }
    if err.is_closed() {
        return Error::new(ErrorKind::Unavailable, format!("the connection to PostgreSQL was lost while {context}"))
            .with_hint("retry the call; if it keeps failing, check that the server is up (pg_monitor health)");
    }
    // Errors without a server message: I/O, TLS, protocol. Their Display names the cause but
    // never the password (tokio-postgres does not include it).
    Error::new(ErrorKind::Unavailable, format!("PostgreSQL error while {context}: {err}"))
}

fn map_db(db: &DbError) -> Error {
    let code = db.code().code();
    let kind = match code {
        "25006" => ErrorKind::ReadOnlyViolation,
        "25P02" => ErrorKind::SessionAborted,
        // `query_canceled` that ColdQuery did not cause (its own deadline and cancel never get
        // here): another session's cancel, or a `statement_timeout` set on the server.
        "57014" => ErrorKind::Cancelled,
        // A protocol violation the server answers with an ERROR (a FATAL one ends the
        // connection) refused one message: the only one a caller can cause is a Bind with more
        // or fewer values than the statement has placeholders.
        "08P01" if db.parsed_severity() == Some(Severity::Error) => ErrorKind::InvalidArgument,
        c if c.starts_with("08") || c.starts_with("57P") || c == "53300" => ErrorKind::Unavailable,
        _ => ErrorKind::DatabaseError,
    };
    let mut err = Error::new(kind, db.message().to_owned()).with_sqlstate(code);
    if let Some(detail) = db.detail() {
        err = err.with_detail(detail);
    }
    if let Some(hint) = db.hint() {
        err = err.with_hint(hint);
    } else if let Some(hint) = default_hint(code, kind) {
        err = err.with_hint(hint);
    }
    if let Some(ErrorPosition::Original(pos)) = db.position() {
        err = err.with_position(*pos);
    }
    err
}

fn default_hint(code: &str, kind: ErrorKind) -> Option<&'static str> {
    Some(match code {
        "25006" => "this ran in a read-only transaction; use pg_query write with session_id or autocommit: true",
        "25P02" => "the transaction failed earlier; call pg_tx rollback (or rollback_to a savepoint) and start again",
        "42601" => "fix the SQL syntax near the reported position",
        "42P01" => "the table does not exist; list tables with pg_schema list",
        "42703" => "the column does not exist; see the table's columns with pg_schema describe",
        "40001" | "40P01" => "the transaction conflicted with another one; retry it from the start",
        "57014" => {
            "PostgreSQL cancelled the statement (another session's cancel, or a statement_timeout set on the server); run it again if you still need the result"
        }
        "08P01" if kind == ErrorKind::InvalidArgument => {
            "give one value in 'params' for each placeholder ($1, $2, ...) of the statement"
        }
        _ => return None,
    })
}

/// True for errors after which the connection cannot be trusted (closed, or the server ended
/// the session).
pub(crate) fn is_fatal(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P") || code == "25P03"
        }
        None => true,
    }
}
