//! Making a connection fit for its next user after a session or an autocommit statement: the
//! reset that clears what can be cleared, and the check that closes the connection when the
//! work done on it may have left state that no reset clears.

use std::time::Duration;

use coldquery_core::{Footprint, Param};
use futures_util::StreamExt;
use postgres_types::{ToSql, Type};

use crate::manager::PgConn;
use crate::step::within;

/// Everything that makes a connection fit for its next owner, short of `DISCARD ALL` (which
/// would also drop tokio-postgres's own cached statements), then the connection's own
/// settings again (`RESET ALL` restores the database's and role's defaults). [`RESEED`]
/// follows it.
const RESET_SQL: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES";

/// `random()` seeded anew from PostgreSQL's own strong randomness (`gen_random_uuid`, 48 of its
/// random bits): `setseed`, called by the work or by any function it ran without naming it (a
/// trigger, a column default), would otherwise hand the connection's next owner a sequence
/// known in advance. The seed is computed by the server: a value written into the SQL would be
/// readable by anyone who can read `pg_stat_activity.query`. Its types and operators are named
/// with their schema, the operators given exactly their operand types: an operator of the same name that
/// a user created in a schema on the search path for those types would otherwise be chosen over
/// a built-in one that needs a cast (and run as ColdQuery's role). Before PostgreSQL 13 there is
/// no `gen_random_uuid`: the reset then fails and the connection is closed instead of reused.
const RESEED: &str = "SELECT pg_catalog.setseed(('x'::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.substr(\
     pg_catalog.replace(pg_catalog.gen_random_uuid()::pg_catalog.text, '-', ''), 1, 12))::pg_catalog.bit(48)\
     ::pg_catalog.int8::pg_catalog.numeric OPERATOR(pg_catalog./) 140737488355328::pg_catalog.numeric \
     OPERATOR(pg_catalog.-) 1::pg_catalog.numeric)";

/// Sent just before COMMIT, in the same message ([`end_and_reset`]).
const COMMIT_PROBE: &str = "SELECT 1";

/// The last statement of every reset message: no SQL-level prepared statement is left (no
/// reset drops one: `DEALLOCATE ALL` would drop the driver's own statements too).
const NO_SQL_PREPARED: &str = "SELECT count(*) = 0 FROM pg_catalog.pg_prepared_statements WHERE from_sql";

/// True when no function the work called (`$1`) is one whose state outlives a reset: a function
/// that is not built-in (it could open a dblink connection, load a library, anything) or a
/// built-in of `$2`.
const NO_UNRESETTABLE_CALL: &str = "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE proname = ANY($1::text[]) \
     AND (oid >= 16384 OR proname = ANY($2::text[])))";

/// Built-in functions whose effect outlives `RESET ALL` and the `DISCARD`s: a backup in
/// progress, a replication origin set up for the session. (The random seed is reset:
/// [`RESEED`].)
pub(crate) const UNRESETTABLE: &[&str] = &["pg_backup_start", "pg_start_backup", "pg_replication_origin_session_setup"];

/// What a reset message ([`RESET_SQL`], [`RESEED`], the connection's set-up, [`NO_SQL_PREPARED`],
/// after `end` if any) came to.
struct Outcome {
    /// Statements of the message that completed; the first is `end`'s.
    completed: usize,
    /// The error that stopped the message, if one did.
    error: Option<tokio_postgres::Error>,
    /// Whether the last statement found no SQL-level prepared statement.
    no_sql_prepared: bool,
}

/// Sends one simple-query message: `end` (if any), the reset, the reseed, the set-up and the
/// prepared-statement check.
async fn reset_message(client: &tokio_postgres::Client, end: Option<&str>) -> Outcome {
    let setup = crate::manager::CONNECTION_SETUP;
    let body = format!("{RESET_SQL}; {RESEED}; {setup}; {NO_SQL_PREPARED}");
    let sql = match end {
        Some(end) => format!("{end}; {body}"),
        None => body,
    };
    let mut outcome = Outcome { completed: 0, error: None, no_sql_prepared: false };
    let stream = match client.simple_query_raw(&sql).await {
        Ok(stream) => stream,
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    };
    futures_util::pin_mut!(stream);
    while let Some(message) = stream.next().await {
        match message {
            Ok(tokio_postgres::SimpleQueryMessage::CommandComplete(_)) => outcome.completed += 1,
            // The set-up's row comes first; the check's is the last one.
            Ok(tokio_postgres::SimpleQueryMessage::Row(row)) => outcome.no_sql_prepared = row.get(0) == Some("t"),
            Ok(_) => {}
            Err(e) => {
                outcome.error = Some(e);
                break;
            }
        }
    }
    outcome
}

/// What the footprint alone says of the functions the work called: no function (clean), or
/// calls not known (not clean); `None` when the catalog must be asked.
fn calls_verdict(footprint: &Footprint) -> Option<bool> {
    if footprint.unknown {
        Some(false)
    } else if footprint.functions.is_empty() {
        Some(true)
    } else {
        None
    }
}

/// True when no function the work called (`footprint`) leaves state that no reset clears. The
/// catalog is asked only when the work called functions (bound as parameters, never in a
/// simple-query message).
async fn no_unresettable_call(conn: &PgConn, footprint: &Footprint) -> bool {
    if let Some(verdict) = calls_verdict(footprint) {
        return verdict;
    }
    let functions = Param::text_array(footprint.functions.iter().map(String::as_str)).to_text();
    let unresettable = Param::text_array(UNRESETTABLE.iter().copied()).to_text();
    let params: [(&(dyn ToSql + Sync), Type); 2] = [(&functions, Type::TEXT), (&unresettable, Type::TEXT)];
    match conn.client.query_typed(NO_UNRESETTABLE_CALL, &params).await {
        Ok(rows) => rows.first().and_then(|row| row.try_get::<_, bool>(0).ok()).unwrap_or(false),
        Err(_) => false,
    }
}

/// Cleans a connection whose transaction has ended; poisons it (so the pool closes it) if that
/// cannot be proven within `step`. The reset and the checks go out together (one round trip).
pub(crate) async fn reset(conn: &mut PgConn, footprint: &Footprint, step: Duration) {
    let clean = async {
        let (outcome, calls) = tokio::join!(reset_message(&conn.client, None), no_unresettable_call(conn, footprint));
        outcome.error.is_none() && outcome.no_sql_prepared && calls
    };
    if within(step, clean).await != Some(true) {
        conn.poison();
    }
}

/// How a transaction ended by [`end_and_reset`].
#[derive(Debug)]
pub(crate) enum Ended {
    /// It ended as asked (COMMIT committed, ROLLBACK rolled back); the connection is clean, or
    /// poisoned when that could not be proven.
    Done,
    /// The COMMIT or ROLLBACK itself failed (for a COMMIT: PostgreSQL rolled back, or the
    /// connection was lost and the outcome is unknown when the error is fatal). A connection
    /// that is still usable has been reset, as [`reset`] does.
    Failed(tokio_postgres::Error),
    /// No answer within the step timeout: the outcome is unknown; the connection is poisoned.
    NoAnswer,
}

/// Ends the transaction with `end` (`COMMIT` or `ROLLBACK`) and cleans the connection in the
/// **same simple-query message**: `COMMIT; CLOSE ALL; …; DISCARD SEQUENCES; <reseed>; <set-up>;
/// <check>`.
///
/// One message has one ReadyForQuery, and a transaction pooler (PgBouncer in transaction mode)
/// hands the server connection back only at a ReadyForQuery outside a transaction: so the
/// reset runs on the very server connection the transaction ran on, even behind the pooler.
/// Sent as separate messages, the reset would clean whatever server connection the pooler
/// picked next, and the session's `SET`s, temporary tables and advisory locks would stay on
/// its own for the pooler's next client. After an aborted transaction the `ROLLBACK` ends it
/// and the reset still runs (statements after it run in the message's implicit transaction).
///
/// The outcome of `end` is read from the command completions: the first belongs to `end`, so
/// an error before it is the COMMIT's (or ROLLBACK's) own, and one after it is the reset's.
pub(crate) async fn end_and_reset(
    conn: &mut PgConn,
    end: &'static str,
    footprint: &Footprint,
    step: Duration,
) -> Ended {
    // Before COMMIT, in its message: a transaction that something aborted unnoticed fails the
    // probe (and the message stops there), where COMMIT would answer ROLLBACK without an error
    // and be taken for a commit.
    let probed = end == "COMMIT";
    let head = if probed { format!("{COMMIT_PROBE}; {end}") } else { end.to_owned() };
    let ended = reset_message(&conn.client, Some(&head));
    // The check of the functions called (when there were any) goes out behind the message
    // without waiting for its answer; it counts only when the message succeeded, and one that
    // gets no answer poisons the connection without making the outcome of `end` unknown.
    let (ended, calls) = tokio::join!(within(step, ended), within(step, no_unresettable_call(conn, footprint)));
    let Some(Outcome { completed, error, no_sql_prepared }) = ended else {
        conn.poison();
        return Ended::NoAnswer;
    };
    match error {
        // The probe failed: COMMIT was not run, and the aborted transaction is still open.
        // Closing the connection ends it.
        Some(e) if probed && completed == 0 => {
            conn.poison();
            Ended::Failed(e)
        }
        // `end` itself failed; the rest of the message was skipped.
        Some(e) if completed == usize::from(probed) => {
            if crate::errors::is_fatal(&e) {
                conn.poison();
            } else {
                reset(conn, footprint, step).await;
            }
            Ended::Failed(e)
        }
        // `end` succeeded, the reset did not.
        Some(_) => {
            conn.poison();
            Ended::Done
        }
        None => {
            if !no_sql_prepared || calls != Some(true) {
                conn.poison();
            }
            Ended::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use coldquery_core::Footprint;

    #[test]
    fn the_catalog_is_asked_only_about_known_calls() {
        let called =
            |names: &[&str]| Footprint { functions: names.iter().map(|n| (*n).to_owned()).collect(), unknown: false };
        assert_eq!(super::calls_verdict(&called(&[])), Some(true), "no call: clean");
        assert_eq!(super::calls_verdict(&called(&["lower"])), None, "a call: the catalog decides");
        assert_eq!(super::calls_verdict(&Footprint::unknown()), Some(false), "calls not known: never clean");
        let union = Footprint::union([&called(&["lower"]), &Footprint::unknown()]);
        assert_eq!(super::calls_verdict(&union), Some(false), "a union with unknown calls stays unknown");
    }
}
