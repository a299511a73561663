//! Making a connection fit for its next user after a session or an autocommit statement: the
//! reset that clears what can be cleared, and the check that closes the connection when the
//! work done on it may have left state that no reset clears.

use coldquery_core::{Footprint, Param};
use postgres_types::{ToSql, Type};

use crate::manager::PgConn;

/// Everything that makes a connection fit for its next owner, short of `DISCARD ALL` (which
/// would also drop tokio-postgres's own cached statements), then the connection's own
/// settings again (`RESET ALL` restores the database's and role's defaults).
const RESET_SQL: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES";

/// True when the connection may be reused: no SQL-level prepared statement is left, and no
/// function the work called (`$1`) is one whose state outlives a reset: a function that is not
/// built-in (it could open a dblink connection, load a library, anything) or a built-in of
/// `$2`.
const REUSABLE: &str = "SELECT (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql) = 0 \
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE proname = ANY($1::text[]) \
                     AND (oid >= 16384 OR proname = ANY($2::text[])))";

/// Built-in functions whose effect outlives `RESET ALL` and the `DISCARD`s: the random seed
/// the next user would inherit, a backup in progress, a replication origin set up for the
/// session.
const UNRESETTABLE: &[&str] = &["setseed", "pg_backup_start", "pg_start_backup", "pg_replication_origin_session_setup"];

/// Cleans a connection whose transaction has ended; poisons it (so the pool closes it) if that
/// cannot be proven within `step`.
pub(crate) async fn reset(conn: &mut PgConn, footprint: &Footprint, step: std::time::Duration) {
    let functions = Param::text_array(footprint.functions.iter().map(String::as_str)).to_text();
    let unresettable = Param::text_array(UNRESETTABLE.iter().copied()).to_text();
    let params: [(&(dyn ToSql + Sync), Type); 2] = [(&functions, Type::TEXT), (&unresettable, Type::TEXT)];
    let clean = async {
        conn.client.batch_execute(RESET_SQL).await.ok()?;
        let (setup, reusable) = tokio::join!(
            conn.client.query_typed(crate::manager::CONNECTION_SETUP, &[]),
            conn.client.query_typed(REUSABLE, &params)
        );
        setup.ok()?;
        reusable.ok()?.first()?.try_get::<_, bool>(0).ok()?.then_some(())
    };
    if crate::within(step, clean).await.flatten().is_none() {
        conn.poison();
    }
}
