//! The [`Executor`] seam: running one statement on a pooled connection, read-only or
//! autocommit, or an atomic batch. Sessions are the [`crate::SessionStore`]'s business.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use serde_json::Value;

use crate::{Field, Param, QueryResult, Result, Sql, TxOptions};

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
    /// A check that must pass first, in the same transaction (see [`Guard`]).
    pub guard: Option<Box<Guard>>,
    /// What the statement could leave on its connection (see [`Footprint`]).
    pub footprint: Footprint,
    /// On the sessionless path, a statement that affects more rows than this is rolled back
    /// instead of committed, with an error of kind [`crate::ErrorKind::WriteDenied`] (the
    /// tools set it for writes that need a confirmation once they touch many rows).
    pub affected_cap: Option<u64>,
}

/// The names of the functions a statement may call, so that the connection it ran on can be
/// judged afterwards: one that ran a function whose state no reset clears (a random seed, a
/// backup in progress, another connection held open, anything a non-built-in function might
/// do) is closed instead of being reused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Function names, unqualified.
    pub functions: Vec<String>,
    /// The functions called are not known (more than could be remembered): no connection the
    /// work ran on passes as clean.
    pub unknown: bool,
}

impl Footprint {
    /// The footprint of work whose calls are not known.
    pub fn unknown() -> Footprint {
        Footprint { functions: Vec::new(), unknown: true }
    }

    /// The footprint of several statements.
    pub fn union<'a>(footprints: impl IntoIterator<Item = &'a Footprint>) -> Footprint {
        let mut unknown = false;
        let mut functions: Vec<String> = footprints
            .into_iter()
            .flat_map(|f| {
                unknown |= f.unknown;
                f.functions.iter().cloned()
            })
            .collect();
        functions.sort();
        functions.dedup();
        Footprint { functions, unknown }
    }
}

impl Statement {
    /// A statement without parameters.
    pub fn new(sql: Sql) -> Statement {
        Statement { sql, params: Vec::new(), guard: None, footprint: Footprint::default(), affected_cap: None }
    }

    /// A statement with parameters.
    pub fn with_params(sql: Sql, params: Vec<Param>) -> Statement {
        Statement { sql, params, guard: None, footprint: Footprint::default(), affected_cap: None }
    }

    /// The same statement with the functions it may call.
    pub fn with_footprint(mut self, footprint: Footprint) -> Statement {
        self.footprint = footprint;
        self
    }

    /// The same statement, rolled back instead of committed when it affects more than `cap`
    /// rows (see [`Statement::affected_cap`]).
    pub fn with_affected_cap(mut self, cap: Option<u64>) -> Statement {
        self.affected_cap = cap;
        self
    }

    /// The same statement, run only if `guard` passes first.
    pub fn guarded(mut self, guard: Option<Guard>) -> Statement {
        self.guard = guard.map(Box::new);
        self
    }
}

/// A catalog query the server evaluates in the statement's own transaction, right before the
/// statement, so that what it checks (the read function policy, the grammar settings) is
/// judged on exactly the catalog and settings the statement will run with. It refuses by
/// casting `GUARD_REFUSAL || reason || GUARD_REFUSAL_END` to an integer, which raises
/// `invalid_text_representation` (22P02); executors report that as
/// [`crate::ErrorKind::StatementNotAllowed`] with [`Guard::hint`], and the statement does not run.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// The check (catalog SQL and its parameters).
    pub check: Statement,
    /// The hint of a refusal.
    pub hint: &'static str,
}

/// The marker in a guard's error message that precedes the refusal's reason.
pub const GUARD_REFUSAL: &str = "coldquery-refused: ";

/// The marker in a guard's error message that follows the refusal's reason.
pub const GUARD_REFUSAL_END: &str = " :coldquery-refused";

impl Guard {
    /// The refusal a guard raised, if `error` is one: the reason as a `STATEMENT_NOT_ALLOWED`.
    ///
    /// Plain SQL can raise no text of its own but an input value the server cannot read, so
    /// the reason travels in the message. The decision is the SQLSTATE and ColdQuery's own
    /// markers around the value: the server's words around it (and its quotation marks, `"…"`
    /// in English, `»…«` in German) depend on `lc_messages` and are not read.
    pub fn refusal(&self, error: &crate::Error) -> Option<crate::Error> {
        if error.sqlstate() != Some("22P02") {
            return None;
        }
        let message = error.message();
        let start = message.find(GUARD_REFUSAL)? + GUARD_REFUSAL.len();
        let end = message.rfind(GUARD_REFUSAL_END).filter(|end| *end >= start)?;
        Some(crate::Error::new(crate::ErrorKind::StatementNotAllowed, &message[start..end]).with_hint(self.hint))
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
    /// How long a write may wait for a lock before it fails (PostgreSQL's `lock_timeout`, set
    /// for its transaction only); `None` keeps the server's setting. An autocommit statement
    /// with a lock timeout runs in an explicit transaction, so it must be one that can.
    pub lock_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_rows: 500, max_bytes: 1024 * 1024, timeout: Duration::from_secs(30), lock_timeout: None }
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

/// Receives the rows of a streamed read ([`Executor::stream`]) in order, as they arrive.
///
/// Values are rendered exactly as in [`QueryResult::rows`]. An error from the sink stops the
/// stream: the statement is cancelled on the server and the sink's error is returned.
pub trait RowSink: Send {
    /// The result columns, once, before the first row (also when no row follows).
    fn columns(&mut self, fields: &[Field]) -> Result<()>;
    /// One row, in column order.
    fn row(&mut self, values: Vec<Value>) -> Result<()>;
}

/// What a streamed read sent to its sink.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Streamed {
    /// The result columns.
    pub fields: Vec<Field>,
    /// Rows handed to the sink.
    pub rows: u64,
    /// Wall-clock time of the whole read in milliseconds.
    pub duration_ms: f64,
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

    /// Runs `statements` in one transaction that always ends in `ROLLBACK`, whatever they did:
    /// a preview of a write. Each statement's guard applies as in [`Executor::batch`]; the
    /// connection is left as clean as after an autocommit statement. A failure carries the
    /// failing statement's index.
    async fn preview(
        &self,
        statements: &[Statement],
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<Vec<QueryResult>>;

    /// Runs one read exactly as [`Executor::run`] with [`Access::ReadOnly`] does (the guard
    /// first, a `READ ONLY` transaction that is rolled back, `timeout`, cancellation), but
    /// hands the rows to `sink` as they arrive instead of collecting them: there is no row cap
    /// and no byte budget, and memory is bounded by the sink, not by the result's size.
    async fn stream(
        &self,
        statement: &Statement,
        timeout: Duration,
        sink: &mut dyn RowSink,
        cancel: &CancellationToken,
    ) -> Result<Streamed>;

    /// The shared pool's state.
    fn pool_status(&self) -> PoolStatus;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, ErrorKind, Sql};

    #[test]
    fn a_guard_refusal_is_read_from_its_markers_in_any_language() {
        let guard = Guard { check: Statement::new(Sql::catalog("SELECT 1")), hint: "the hint" };
        let reason = "function public.\"f »x«\"() is a user-defined function that is not in --allow-functions";
        let raised = |message: String| Error::new(ErrorKind::DatabaseError, message).with_sqlstate("22P02");
        let value = format!("{GUARD_REFUSAL}{reason}{GUARD_REFUSAL_END}");
        for message in [
            format!("invalid input syntax for type integer: \"{value}\""),
            format!("ungültige Eingabesyntax für Typ integer: »{value}«"),
            format!("syntaxe en entrée invalide pour le type integer : « {value} »"),
            format!("\"integer\"型の入力構文が不正です: \"{value}\""),
        ] {
            let refusal = guard.refusal(&raised(message.clone())).expect(&message);
            assert_eq!(refusal.kind(), ErrorKind::StatementNotAllowed);
            assert_eq!(refusal.message(), reason, "{message}");
            assert_eq!(refusal.hint(), Some("the hint"));
        }
        // Only the refusal's own SQLSTATE and markers make a refusal.
        let other = Error::new(ErrorKind::DatabaseError, format!("x: \"{value}\"")).with_sqlstate("42883");
        assert!(guard.refusal(&other).is_none());
        assert!(guard.refusal(&raised(format!("x: \"{GUARD_REFUSAL}{reason}\""))).is_none());
    }
}
