//! The [`Executor`] seam: running one statement on a pooled connection, read-only or
//! autocommit, or an atomic batch. Sessions are the [`crate::SessionStore`]'s business.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{Param, QueryResult, Result, Sql, TxOptions};

/// How a sessionless statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Inside `BEGIN READ ONLY` pinned by a snapshot, always rolled back.
    ReadOnly,
    /// As one implicit transaction that commits on its own (the caller said `autocommit: true`).
    Autocommit,
}

/// One statement and its bind parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL text with its provenance.
    pub sql: Sql,
    /// Values for `$1`, `$2`...
    pub params: Vec<Param>,
}

impl Statement {
    /// A statement without parameters.
    pub fn new(sql: Sql) -> Statement {
        Statement { sql, params: Vec::new() }
    }

    /// A statement with parameters.
    pub fn with_params(sql: Sql, params: Vec<Param>) -> Statement {
        Statement { sql, params }
    }
}

/// Caps on one call: rows and bytes fetched, and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many rows are returned; fetching stops at `max_rows + 1`.
    pub max_rows: usize,
    /// At most about this many bytes of row data are fetched.
    pub max_bytes: usize,
    /// The statement is cancelled on the server after this long.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_rows: 500, max_bytes: 1024 * 1024, timeout: Duration::from_secs(30) }
    }
}

/// A snapshot of the shared pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct PoolStatus {
    /// Configured maximum connections.
    pub size: u32,
    /// Connections open now.
    pub connections: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Connections lent out.
    pub in_use: u32,
    /// Calls waiting for a connection right now.
    pub waiting: u32,
}

/// Runs statements on the shared pool. Implemented over PostgreSQL by `coldquery-pg` and by
/// fakes in tests.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs one statement with the given access, honouring `limits` while fetching.
    /// Cancelling `cancel` cancels the statement on the server.
    async fn run(
        &self,
        access: Access,
        statement: &Statement,
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<QueryResult>;

    /// Runs `statements` in one transaction: all commit, or none. A failure carries the
    /// failing statement's index ([`crate::Error::operation_index`]).
    async fn batch(
        &self,
        statements: &[Statement],
        options: &TxOptions,
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<Vec<QueryResult>>;

    /// The shared pool's state.
    fn pool_status(&self) -> PoolStatus;
}
