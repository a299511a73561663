//! Beginning a transaction on a pooled connection: `BEGIN`, the pin and the statement's guard
//! in one round trip, and a connection that a transaction pooler moved to another server
//! process replaced. Sessionless reads, batches, streams and sessions all begin here.

use std::time::Duration;

use coldquery_core::{Guard, Isolation, Limits, Result, Sql, TxOptions};
use postgres_types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use crate::errors;
use crate::manager::{Manager, PgConn, Prepared};
use crate::step::{no_answer, within};

/// A pooled connection.
pub(crate) type Pooled = bb8::PooledConnection<'static, Manager>;

/// How many pooled connections a transaction may try before it runs on one whose server
/// process changed since its last transaction (only behind a transaction pooler).
pub(crate) const MOVED_RETRIES: usize = 8;

/// Run right after `BEGIN`: takes the snapshot (so `SET TRANSACTION READ WRITE` can no longer
/// flip a read-only transaction), sets the server-side backstop `$1` to `$2` for the
/// transaction, pins `standard_conforming_strings` to the value the classifier parses with
/// (whatever the database's or role's default), sets the transaction's `lock_timeout` when
/// `$3` is not null, and returns the server process id (see [`PgConn::moved_to`]).
const PIN: &str = "SELECT set_config($1, $2, true), \
     set_config('standard_conforming_strings', 'on', true), pg_backend_pid(), \
     set_config('lock_timeout', coalesce($3, current_setting('lock_timeout')), true)";

/// What [`PIN`] sets for a transaction.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// `statement_timeout` for a call's transaction, `idle_in_transaction_session_timeout`
    /// for a session's.
    backstop_setting: &'static str,
    backstop: String,
    lock_timeout: Option<String>,
}

impl Setup {
    /// For a call's own transaction: a statement timeout a second beyond the call's deadline.
    pub(crate) fn call(limits: &Limits) -> Setup {
        Setup {
            backstop_setting: "statement_timeout",
            backstop: format!("{}ms", limits.timeout.as_millis() + 1000),
            lock_timeout: limits.lock_timeout.map(|t| format!("{}ms", t.as_millis())),
        }
    }

    /// For a session: the server ends it when it stays idle in its transaction beyond `idle`.
    pub(crate) fn session(idle: Duration, lock_timeout: Option<Duration>) -> Setup {
        Setup {
            backstop_setting: "idle_in_transaction_session_timeout",
            backstop: format!("{}ms", idle.as_millis()),
            lock_timeout: lock_timeout.map(|t| format!("{}ms", t.as_millis())),
        }
    }

    /// Sends the pin; its row carries the server process id.
    pub(crate) async fn send(&self, client: &Client) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        let setting = self.backstop_setting;
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&setting, Type::TEXT), (&self.backstop, Type::TEXT), (&self.lock_timeout, Type::TEXT)];
        client.query_typed(PIN, &params).await
    }

    /// The server process id in the pin's answer.
    pub(crate) fn backend(rows: &[Row]) -> Option<i32> {
        rows.first().and_then(|row| row.try_get::<_, i32>(2).ok())
    }
}

/// `BEGIN` with the session's options, from static fragments only.
pub(crate) fn begin_sql(options: &TxOptions) -> Sql {
    let mut sql = coldquery_core::SqlBuilder::new("BEGIN ISOLATION LEVEL ");
    sql.push(match options.isolation {
        Isolation::ReadCommitted => "READ COMMITTED",
        Isolation::RepeatableRead => "REPEATABLE READ",
        Isolation::Serializable => "SERIALIZABLE",
        Isolation::ReadUncommitted => "READ UNCOMMITTED",
    });
    sql.push(if options.read_only { " READ ONLY" } else { " READ WRITE" });
    if options.deferrable {
        sql.push(" DEFERRABLE");
    }
    sql.build()
}

/// A connection from `acquire` with `begin_sql`, `pin` and `guard` begun on it. A connection
/// whose server process changed since its last transaction (a transaction pooler moved it) is
/// rolled back and discarded, and another one tried: its cached type-lookup statements may not
/// exist on the new server process. Fresh connections have none, so the retries end quickly.
pub(crate) async fn begin<A, F>(
    acquire: A,
    begin_sql: &str,
    pin: &Setup,
    guard: Option<&Guard>,
    step: Duration,
) -> Result<Pooled>
where
    A: Fn() -> F,
    F: Future<Output = Result<Pooled>>,
{
    let mut attempt = 1;
    loop {
        let mut conn = acquire().await?;
        let moved = begin_on(&mut conn, begin_sql, pin, guard, step).await?;
        if !moved || attempt == MOVED_RETRIES {
            return Ok(conn);
        }
        conn.poison();
        let _ = within(step, conn.client.batch_execute("ROLLBACK")).await;
        attempt += 1;
    }
}

/// `BEGIN ...`, the pin and the guard, pipelined (one round trip). Returns true if the
/// transaction runs in another server process than the connection's last one. A guard that
/// refuses leaves the transaction aborted (a statement pipelined after it could not run
/// either); it is rolled back here.
async fn begin_on(
    conn: &mut PgConn,
    begin_sql: &str,
    pin: &Setup,
    guard: Option<&Guard>,
    step: Duration,
) -> Result<bool> {
    let checked = async {
        match guard {
            Some(guard) => check(&conn.client, &conn.prepared, guard).await,
            None => Ok(()),
        }
    };
    let started =
        within(step, async { tokio::join!(conn.client.batch_execute(begin_sql), pin.send(&conn.client), checked) })
            .await;
    let Some((began, pinned, checked)) = started else {
        conn.poison();
        return Err(no_answer(step, "starting a transaction"));
    };
    let moved = match began.and(pinned) {
        Ok(rows) => Setup::backend(&rows).is_some_and(|pid| conn.moved_to(pid)),
        Err(e) => {
            conn.poison();
            return Err(errors::map(&e, "starting a transaction"));
        }
    };
    if let Err(err) = checked {
        if !matches!(within(step, conn.client.batch_execute("ROLLBACK")).await, Some(Ok(()))) {
            conn.poison();
        }
        return Err(err);
    }
    Ok(moved)
}

/// Runs a guard (prepared once per connection, see [`Prepared`]); its refusal becomes
/// `STATEMENT_NOT_ALLOWED`, any other failure is reported as it is (the transaction is aborted
/// either way).
pub(crate) async fn check(client: &Client, prepared: &Prepared, guard: &Guard) -> Result<()> {
    // Guards take text parameters (their SQL casts them, e.g. `$1::text[]`).
    let params: Vec<Option<String>> = guard.check.params.iter().map(coldquery_core::Param::to_text).collect();
    let sql = guard.check.sql.text();
    let statement = match prepared.get(sql) {
        Some(statement) => statement,
        None => {
            let types = vec![Type::TEXT; params.len()];
            let statement =
                client.prepare_typed(sql, &types).await.map_err(|e| errors::map(&e, "checking the statement"))?;
            prepared.put(sql, statement.clone());
            statement
        }
    };
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    match client.query(&statement, &refs).await {
        Ok(_) => Ok(()),
        Err(e) => {
            if e.code().is_some_and(|c| c.code() == "26000") {
                // Gone from the server process (a transaction pooler moved the connection).
                prepared.clear();
            }
            let err = errors::map(&e, "checking the statement");
            Err(guard.refusal(&err).unwrap_or(err))
        }
    }
}
