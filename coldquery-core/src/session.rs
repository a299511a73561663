//! The [`SessionStore`] seam: transactions that live across tool calls (SPEC §4, `pg_tx`).
//!
//! A session is a dedicated connection with an open transaction, bound to the [`Owner`] that
//! began it. Every operation names the owner; a session of another owner is indistinguishable
//! from one that does not exist.

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{Error, Ident, Limits, QueryResult, Result, Statement, TxOptions};

/// Who is calling: the stdio client, or an HTTP principal (and its legacy MCP session).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// An owner with the given stable key.
    pub fn new(key: impl Into<String>) -> Owner {
        Owner(key.into())
    }

    /// The owner's key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A session handle: at least 128 random bits, minted by the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// Wraps a handle received from a caller (it is looked up, never trusted).
    pub fn new(id: impl Into<String>) -> SessionId {
        SessionId(id.into())
    }

    /// The handle's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state of a session's transaction as callers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// Open and waiting for the next call.
    Idle,
    /// Running a call now.
    Active,
    /// A statement failed; only `rollback` (or `rollback_to` a savepoint) is possible.
    Aborted,
}

/// A session as reported to its owner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    /// The handle.
    pub id: SessionId,
    /// Transaction state.
    pub transaction_state: TxState,
    /// Seconds until the idle TTL rolls it back.
    pub expires_in_seconds: u64,
    /// Seconds since `begin`.
    pub age_seconds: u64,
    /// Seconds since the last call.
    pub idle_seconds: u64,
    /// How it was begun.
    pub options: TxOptions,
    /// Statements run so far.
    pub statements: u64,
}

/// How a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// COMMIT, reported honestly.
    Commit,
    /// ROLLBACK.
    Rollback,
}

/// Savepoint operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavepointOp {
    /// `SAVEPOINT name`.
    Create,
    /// `RELEASE SAVEPOINT name`.
    Release,
    /// `ROLLBACK TO SAVEPOINT name` (also recovers an aborted transaction).
    RollbackTo,
}

/// Open transactions, each on its own connection, bound to its owner.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Opens a session: a dedicated connection, `BEGIN ...`, a snapshot pinned.
    async fn begin(&self, owner: &Owner, options: &TxOptions) -> Result<SessionInfo>;

    /// Runs one statement inside the session.
    async fn run(
        &self,
        owner: &Owner,
        id: &SessionId,
        statement: &Statement,
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<(QueryResult, SessionInfo)>;

    /// Commits or rolls back and closes the session. A COMMIT that PostgreSQL turned into a
    /// rollback is [`crate::ErrorKind::CommitFailed`]; a COMMIT whose connection died is
    /// [`crate::ErrorKind::CommitOutcomeUnknown`].
    async fn end(&self, owner: &Owner, id: &SessionId, end: SessionEnd) -> Result<SessionInfo>;

    /// Creates, releases or rolls back to a savepoint.
    async fn savepoint(&self, owner: &Owner, id: &SessionId, op: SavepointOp, name: &Ident) -> Result<SessionInfo>;

    /// Runs `statements` in the session under a savepoint that is rolled back and released
    /// whatever they did — a preview of a write — holding the session for the whole sequence,
    /// so no other call can see or commit what the preview did. A failure carries the failing
    /// statement's index; the session is as it was unless its connection was lost.
    async fn preview(
        &self,
        owner: &Owner,
        id: &SessionId,
        statements: &[Statement],
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<Vec<QueryResult>>;

    /// One of the owner's sessions.
    async fn status(&self, owner: &Owner, id: &SessionId) -> Result<SessionInfo>;

    /// The owner's sessions (never another owner's).
    async fn list(&self, owner: &Owner) -> Vec<SessionInfo>;

    /// Rolls back every session of `owner` (client disconnect); returns how many.
    async fn close_owner(&self, owner: &Owner) -> usize;

    /// Rolls back every session (server shutdown); returns how many.
    async fn close_all(&self) -> usize;

    /// (open sessions, maximum sessions).
    fn counts(&self) -> (usize, usize);

    /// The owner of the session whose transaction runs in server process `pid`, if any (so one
    /// caller cannot signal another caller's session backend).
    fn backend_owner(&self, pid: i32) -> Option<Owner>;
}

/// Releasing or rolling back to a savepoint the session does not have: refused before anything
/// is sent (PostgreSQL would abort the transaction).
pub fn unknown_savepoint(name: &Ident) -> Error {
    Error::invalid(format!("no savepoint named {} in this session", name.as_str()))
        .with_hint("create it first with pg_tx savepoint; names are case-sensitive")
}

/// `commit` of a session whose transaction failed earlier: PostgreSQL rolls it back.
pub fn commit_failed_after_error() -> Error {
    Error::new(
        crate::ErrorKind::CommitFailed,
        "nothing was committed: an earlier statement failed, so the transaction was rolled back",
    )
    .with_hint("begin a new session and redo the work without the failing statement")
}

/// The one answer for every session that cannot be used by this caller.
pub fn session_not_found() -> Error {
    Error::new(
        crate::ErrorKind::SessionNotFound,
        "no open session with this session_id for this caller (it may have been committed, rolled back or expired)",
    )
    .with_hint("call pg_tx with action 'list' to see your sessions, or 'begin' to open one")
}
