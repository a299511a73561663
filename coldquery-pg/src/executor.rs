//! [`PgExecutor`]: the sessionless path over the shared pool — read-only transactions that
//! always roll back, autocommit statements, and atomic batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coldquery_core::{
    Access, CancellationToken, Error, ErrorKind, Executor, Limits, PoolStatus, QueryResult, Result, RowSink, Statement,
    Streamed, TxOptions,
};

use crate::begin::{self, Setup};
use crate::errors;
use crate::manager::PgConn;
use crate::pool::Shared;
use crate::reset::Ended;
use crate::run::{self, Protocol, Read};
use crate::step::{no_answer, within};

/// The [`Executor`] over PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgExecutor {
    pub(crate) shared: Arc<Shared>,
    /// The pool reads use when they have a connection of their own (`--read-database-url`).
    pub(crate) reads: Option<Arc<Shared>>,
}

#[async_trait]
impl Executor for PgExecutor {
    async fn run(
        &self,
        access: Access,
        statement: &Statement,
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<QueryResult> {
        let started = Instant::now();
        if access == Access::ReadOnly {
            return self.read(statement, limits, cancel, started).await;
        }
        // A lock timeout is set for a transaction: the statement runs in one of its own,
        // committed as any autocommit statement is.
        if limits.lock_timeout.is_some() || statement.affected_cap.is_some() {
            let mut results = self
                .transaction(std::slice::from_ref(statement), &TxOptions::default(), limits, cancel, End::Commit)
                .await
                .map_err(Error::without_operation_index)?;
            let mut result = results.pop().unwrap_or_default();
            result.duration_ms = elapsed_ms(started);
            return Ok(result);
        }
        let step = self.shared.step;
        let mut conn = self.shared.acquire().await?;
        let fetched = match run::fetch(&mut conn, &self.shared.tls, statement, limits, cancel, Protocol::Unnamed).await
        {
            Ok(fetched) => {
                crate::reset::reset(&mut conn, &statement.footprint, step).await;
                fetched
            }
            Err(err) => {
                if err.sqlstate() == Some(STALE_TYPE_LOOKUP) {
                    conn.poison();
                }
                if !conn.is_poisoned() {
                    crate::reset::reset(&mut conn, &statement.footprint, step).await;
                }
                return Err(autocommit_failure(err, conn.is_poisoned()));
            }
        };
        let mut result = run::render(&conn.client, fetched, step, run::Rendering::Outside).await;
        result.duration_ms = elapsed_ms(started);
        Ok(result)
    }

    async fn batch(
        &self,
        statements: &[Statement],
        options: &TxOptions,
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<Vec<QueryResult>> {
        let end = if options.read_only { End::Rollback } else { End::Commit };
        self.transaction(statements, options, limits, cancel, end).await.map_err(|err| match err.operation_index() {
            Some(index) => {
                let message =
                    format!("operation {index} failed and the whole batch was rolled back: {}", err.message());
                err.with_message(message)
            }
            None => err,
        })
    }

    async fn preview(
        &self,
        statements: &[Statement],
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<Vec<QueryResult>> {
        self.transaction(statements, &TxOptions::default(), limits, cancel, End::Rollback).await
    }

    async fn stream(
        &self,
        statement: &Statement,
        timeout: std::time::Duration,
        sink: &mut dyn RowSink,
        cancel: &CancellationToken,
    ) -> Result<Streamed> {
        let started = Instant::now();
        // No row cap and no byte budget: the sink bounds memory. The timeout is the read's.
        let limits = Limits { max_rows: usize::MAX, max_bytes: usize::MAX, timeout, lock_timeout: None };
        let pool = self.pool(true);
        let step = pool.step;
        let mut conn = begin::begin(
            || pool.acquire(),
            "BEGIN READ ONLY",
            &Setup::call(&limits),
            statement.guard.as_deref(),
            pool.step,
        )
        .await?;
        let streamed = run::stream(&mut conn, &pool.tls, pool, statement, &limits, cancel, sink).await;
        // Always ROLLBACK, as a read does; a poisoned connection is closed instead.
        let (fields, rows) = match streamed {
            Ok(streamed) => streamed,
            Err(err) => {
                if !conn.is_poisoned() {
                    let _ = finish(&mut conn, "ROLLBACK", step).await;
                }
                return Err(err);
            }
        };
        if !conn.is_poisoned() {
            finish(&mut conn, "ROLLBACK", step).await?;
        }
        Ok(Streamed { fields, rows, duration_ms: elapsed_ms(started) })
    }

    fn pool_status(&self) -> PoolStatus {
        self.shared.pool_status()
    }
}

/// How a sessionless transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Commit,
    Rollback,
}

impl PgExecutor {
    /// Runs `statements` in one transaction that ends as `end` says (see [`Executor::batch`]
    /// and [`Executor::preview`]).
    async fn transaction(
        &self,
        statements: &[Statement],
        options: &TxOptions,
        limits: &Limits,
        cancel: &CancellationToken,
        end: End,
    ) -> Result<Vec<QueryResult>> {
        let step = self.pool(options.read_only).step;
        let pool = self.pool(options.read_only);
        let mut conn =
            begin::begin(|| pool.acquire(), begin::begin_sql(options).text(), &Setup::call(limits), None, pool.step)
                .await?;
        let mut results = Vec::with_capacity(statements.len());
        for (index, statement) in statements.iter().enumerate() {
            let started = Instant::now();
            let fetched = match statement.guard.as_deref() {
                Some(guard) => match within(step, begin::check(&conn.client, &conn.prepared, guard)).await {
                    Some(checked) => checked,
                    None => {
                        conn.poison();
                        Err(no_answer(step, "checking the statement"))
                    }
                },
                None => Ok(()),
            };
            let fetched = match fetched {
                Ok(()) => {
                    run::fetch(
                        &mut conn,
                        &self.pool(options.read_only).tls,
                        statement,
                        limits,
                        cancel,
                        Protocol::Prepared { prelude: None },
                    )
                    .await
                }
                Err(err) => Err(err),
            };
            // A statement that touched more rows than its cap is not committed.
            let fetched = fetched.and_then(|fetched| match (statement.affected_cap, fetched.rows_affected) {
                (Some(cap), Some(affected)) if affected > cap && end == End::Commit => Err(Error::new(
                    ErrorKind::WriteDenied,
                    format!("the statement affected {affected} rows, more than {cap}; it was rolled back and nothing was committed"),
                )),
                _ => Ok(fetched),
            });
            match fetched {
                Ok(fetched) => {
                    let mut result = run::render(&conn.client, fetched, step, run::Rendering::InTransaction).await;
                    result.duration_ms = elapsed_ms(started);
                    results.push(result);
                }
                Err(err) => {
                    // A connection that fails to roll back is discarded, which rolls back too:
                    // either way the operation's own error is the one to report.
                    if !conn.is_poisoned() {
                        if options.read_only {
                            let _ = finish(&mut conn, "ROLLBACK", step).await;
                        } else {
                            // The operations so far (a preview's, or a failed batch's) may have
                            // left session state (SET, an advisory lock): ROLLBACK and the reset
                            // in one message.
                            let footprint =
                                coldquery_core::Footprint::union(statements[..=index].iter().map(|s| &s.footprint));
                            if let Ended::Failed(_) =
                                crate::reset::end_and_reset(&mut conn, "ROLLBACK", &footprint, step).await
                            {
                                conn.poison();
                            }
                        }
                    }
                    return Err(err.with_operation_index(index));
                }
            }
        }
        if end == End::Rollback {
            // A read-only batch has nothing to commit, and reads always end in ROLLBACK so that
            // nothing done inside (say, a transaction-local setting) could outlive them. A
            // preview's writes are undone by the ROLLBACK; what a rollback keeps (a
            // session-level advisory lock, say) is cleared by the reset in the same message.
            if options.read_only {
                finish(&mut conn, "ROLLBACK", step).await?;
            } else {
                let footprint = coldquery_core::Footprint::union(statements.iter().map(|s| &s.footprint));
                match crate::reset::end_and_reset(&mut conn, "ROLLBACK", &footprint, step).await {
                    Ended::Done => {}
                    Ended::NoAnswer => return Err(no_answer(step, "rolling back")),
                    Ended::Failed(e) => {
                        conn.poison();
                        return Err(errors::map(&e, "rolling back"));
                    }
                }
            }
            return Ok(results);
        }
        // COMMIT and the reset in one message (see `reset::end_and_reset`).
        let footprint = coldquery_core::Footprint::union(statements.iter().map(|s| &s.footprint));
        match crate::reset::end_and_reset(&mut conn, "COMMIT", &footprint, step).await {
            Ended::Done => Ok(results),
            Ended::NoAnswer => Err(no_answer(step, "committing")
                .with_kind(ErrorKind::CommitOutcomeUnknown)
                .with_message(format!(
                    "PostgreSQL did not acknowledge COMMIT within {} ms; whether it committed is unknown",
                    step.as_millis()
                ))
                .with_hint("check the data before retrying")),
            Ended::Failed(e) if errors::is_fatal(&e) => Err(errors::map(&e, "committing")
                .with_kind(ErrorKind::CommitOutcomeUnknown)
                .with_message("the connection was lost during COMMIT; whether it committed is unknown")
                .with_hint("check the data before retrying")),
            Ended::Failed(e) => Err(errors::map(&e, "committing")
                .with_kind(ErrorKind::CommitFailed)
                .with_hint("PostgreSQL rolled the transaction back; nothing was committed")),
        }
    }

    /// A sessionless read ([`run::read`]) on a connection of the read pool; a connection that a
    /// transaction pooler moved to another server process is discarded and another one tried
    /// (see [`PgExecutor::begin`]).
    async fn read(
        &self,
        statement: &Statement,
        limits: &Limits,
        cancel: &CancellationToken,
        started: Instant,
    ) -> Result<QueryResult> {
        let pool = self.pool(true);
        let mut attempt = 1;
        loop {
            let mut conn = pool.acquire().await?;
            let report_moved = attempt < begin::MOVED_RETRIES;
            match run::read(&mut conn, &pool.tls, statement, limits, cancel, report_moved, pool.step).await? {
                Read::Moved => attempt += 1,
                Read::Fetched(fetched, _) => {
                    let mut result = run::render(&conn.client, fetched, pool.step, run::Rendering::Outside).await;
                    result.duration_ms = elapsed_ms(started);
                    return Ok(result);
                }
            }
        }
    }

    /// The pool for reads (their own, if configured) or for everything else.
    fn pool(&self, reading: bool) -> &Shared {
        match (&self.reads, reading) {
            (Some(reads), true) => reads,
            _ => &self.shared,
        }
    }
}

/// Ends the transaction within `step`; a connection that cannot end it cleanly is discarded.
async fn finish(conn: &mut PgConn, sql: &'static str, step: Duration) -> Result<()> {
    match within(step, conn.client.batch_execute(sql)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => {
            conn.poison();
            Err(errors::map(&e, "ending the transaction"))
        }
        None => {
            conn.poison();
            Err(no_answer(step, "ending the transaction"))
        }
    }
}

pub(crate) fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// `invalid_sql_statement_name`: caller SQL never uses named prepared statements (the tools
/// refuse PREPARE/EXECUTE), so on the autocommit path this comes from tokio-postgres looking up
/// a result column's type with its cached statement after the statement ran — behind a
/// transaction pooler that moved the connection (see `PgConn::moved_to`).
const STALE_TYPE_LOOKUP: &str = "26000";

/// An autocommit statement commits on its own: if its connection was lost, or a cancel could
/// not be confirmed, or its result could not be decoded after it ran, it may have committed or
/// not, and saying "retry" could apply it twice.
fn autocommit_failure(err: Error, poisoned: bool) -> Error {
    let lost = err.kind() == ErrorKind::Unavailable
        && err.sqlstate().is_none_or(|s| s.starts_with("08") || s.starts_with("57P"));
    let unconfirmed = matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Cancelled) && poisoned;
    let undecodable = err.sqlstate() == Some(STALE_TYPE_LOOKUP);
    if lost || unconfirmed || undecodable {
        let message = format!("{}; the statement may or may not have committed", err.message());
        return err
            .with_kind(ErrorKind::CommitOutcomeUnknown)
            .with_message(message)
            .with_hint("check the data with a read before running it again");
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocommit_failures_that_may_have_committed_say_so() {
        let unknown = |err: Error, poisoned: bool| autocommit_failure(err, poisoned).kind();
        let lost = Error::new(ErrorKind::Unavailable, "the connection to PostgreSQL was lost while running");
        assert_eq!(unknown(lost, true), ErrorKind::CommitOutcomeUnknown);
        let terminated = Error::new(ErrorKind::Unavailable, "terminating connection").with_sqlstate("57P01");
        assert_eq!(unknown(terminated, true), ErrorKind::CommitOutcomeUnknown);
        let stale =
            Error::new(ErrorKind::DatabaseError, "prepared statement \"s6\" does not exist").with_sqlstate("26000");
        assert_eq!(unknown(stale, true), ErrorKind::CommitOutcomeUnknown);
        let unconfirmed = Error::new(ErrorKind::Timeout, "timed out");
        assert_eq!(unknown(unconfirmed.clone(), true), ErrorKind::CommitOutcomeUnknown);
        // A cancel the server confirmed rolled the statement back: the timeout is the truth.
        assert_eq!(unknown(unconfirmed, false), ErrorKind::Timeout);
        let duplicate = Error::new(ErrorKind::DatabaseError, "duplicate key value").with_sqlstate("23505");
        assert_eq!(unknown(duplicate, false), ErrorKind::DatabaseError);
        let too_many = Error::new(ErrorKind::Unavailable, "too many connections").with_sqlstate("53300");
        assert_eq!(unknown(too_many, false), ErrorKind::Unavailable, "refused before running");
    }
}
