//! How a transaction starts ([`TxOptions`]: isolation, read-only, deferrable, what a failure
//! does, the lock timeout): the options of a session's `BEGIN` ([`crate::SessionStore::begin`])
//! and of an atomic batch ([`crate::Executor::batch`]).

use serde::Serialize;

/// Transaction isolation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// `READ COMMITTED` (PostgreSQL's default).
    #[default]
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
    /// `READ UNCOMMITTED` (behaves as READ COMMITTED in PostgreSQL).
    ReadUncommitted,
}

impl Isolation {
    /// The valid spellings, for error messages.
    pub const CHOICES: &'static str = "read_committed, repeatable_read, serializable, read_uncommitted";

    /// Parses `read_committed` or the SQL spelling `READ COMMITTED` (any case).
    pub fn parse(text: &str) -> Option<Isolation> {
        let norm: String =
            text.trim().chars().map(|c| if c == ' ' || c == '-' { '_' } else { c.to_ascii_lowercase() }).collect();
        match norm.as_str() {
            "read_committed" => Some(Isolation::ReadCommitted),
            "repeatable_read" => Some(Isolation::RepeatableRead),
            "serializable" => Some(Isolation::Serializable),
            "read_uncommitted" => Some(Isolation::ReadUncommitted),
            _ => None,
        }
    }
}

/// What a failed statement does to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The transaction is aborted; only rollback is possible (PostgreSQL's behaviour).
    #[default]
    Abort,
    /// Each statement runs under a savepoint, so a failure undoes only that statement.
    RollbackStatement,
}

/// How a transaction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TxOptions {
    /// Isolation level.
    pub isolation: Isolation,
    /// `READ ONLY`.
    pub read_only: bool,
    /// `DEFERRABLE` (only meaningful with serializable read-only).
    pub deferrable: bool,
    /// Behaviour after a failed statement.
    pub on_error: OnError,
    /// How long a statement of the transaction may wait for a lock (PostgreSQL's
    /// `lock_timeout`, transaction-local); `None` keeps the server's setting.
    #[serde(skip)]
    pub lock_timeout: Option<std::time::Duration>,
}
