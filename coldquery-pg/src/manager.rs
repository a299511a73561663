//! The bb8 connection manager: bb8-postgres underneath, plus a per-connection set-up and a
//! "poisoned" flag so ColdQuery can throw away a connection it cannot prove clean: bb8 has no
//! public way to discard a connection, so a poisoned one reports itself broken (`has_broken`)
//! and bb8 drops it instead of putting it back in the pool.

use crate::tls::PgTls;
use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::Client;

/// A pooled connection.
#[derive(Debug)]
pub(crate) struct PgConn {
    pub(crate) client: Client,
    poisoned: bool,
    /// The server process of this connection's last transaction. Behind a transaction pooler
    /// (PgBouncer) it can change between transactions.
    backend: Option<i32>,
    /// ColdQuery's own catalog statements prepared on this connection.
    pub(crate) prepared: Prepared,
    /// The statement and portal of the connection's last sessionless read, not yet closed.
    pub(crate) leftover: Leftover,
}

/// The protocol-level statement and portal of a connection's last read. Dropping them sends
/// their Close messages; dropped when the read ends, the Close costs a write and a read of its
/// own (measured: 5 of the 17 system calls of a `SELECT 1` over stdio were that Close going
/// out and its answer coming back). Kept here instead, they are dropped when the connection is
/// next taken from the pool ([`PgConn::close_leftover`], before anything else is sent on it),
/// and their Close travels in the same write as that use's first message. No caller statement
/// can meet them: the portal ended with its transaction, and the statement is closed on the
/// server before the next use's first statement runs (the server handles a connection's
/// messages in order).
#[derive(Default)]
pub(crate) struct Leftover(Option<(tokio_postgres::Statement, tokio_postgres::Portal)>);

impl std::fmt::Debug for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Leftover(kept)" } else { "Leftover(none)" })
    }
}

impl Leftover {
    /// Keeps `statement` and `portal` until the connection's next use (closing what was kept).
    pub(crate) fn keep(&mut self, statement: tokio_postgres::Statement, portal: tokio_postgres::Portal) {
        self.0 = Some((statement, portal));
    }
}

/// ColdQuery's own catalog statements (the read function guard) prepared on a connection, by
/// SQL text: a guard run again is not planned again (after five runs PostgreSQL keeps a generic
/// plan: measured, the guard of a one-table read takes 0.3 ms instead of 1.8 ms). Only the
/// fixed catalog SQL of guards is kept, so the map stays as small as that set. They are
/// protocol-level statements (not `from_sql`), which no caller statement can see or run.
#[derive(Debug, Default)]
pub(crate) struct Prepared(std::sync::Mutex<std::collections::HashMap<String, tokio_postgres::Statement>>);

impl Prepared {
    pub(crate) fn get(&self, sql: &str) -> Option<tokio_postgres::Statement> {
        self.0.lock().ok()?.get(sql).cloned()
    }

    pub(crate) fn put(&self, sql: &str, statement: tokio_postgres::Statement) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(sql.to_owned(), statement);
        }
    }

    /// Forgets every statement (they may not exist on the server process the connection now
    /// talks to, behind a transaction pooler).
    pub(crate) fn clear(&self) {
        if let Ok(mut map) = self.0.lock() {
            map.clear();
        }
    }
}

impl PgConn {
    /// Closes the statement and portal of the connection's last read: their Close messages go
    /// out ahead of whatever is sent next.
    pub(crate) fn close_leftover(&mut self) {
        self.leftover.0 = None;
    }

    /// Marks the connection for discarding when it goes back to the pool.
    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    /// True once the connection is marked for discarding.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The server process of this connection's last transaction, if known.
    pub(crate) fn backend(&self) -> Option<i32> {
        self.backend
    }

    /// Records that the current transaction runs in server process `pid`; true if that is not
    /// the process of the previous transaction. tokio-postgres keeps the named statements it
    /// uses to look up types per client connection, so a connection whose transactions move
    /// between server processes may meet "prepared statement does not exist".
    pub(crate) fn moved_to(&mut self, pid: i32) -> bool {
        let moved = self.backend.is_some_and(|previous| previous != pid);
        self.backend = Some(pid);
        if moved {
            self.prepared.clear();
        }
        moved
    }
}

/// Why a new connection could not be made.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The driver's error (refused, authentication, the server's own error).
    Pg(tokio_postgres::Error),
    /// The start-up got no answer within this bound (a peer that accepted and went silent).
    NoAnswer(std::time::Duration),
}

impl ConnectError {
    /// The error in the core model.
    pub(crate) fn to_error(&self, context: &str) -> coldquery_core::Error {
        match self {
            ConnectError::Pg(e) => crate::errors::map(e, context),
            ConnectError::NoAnswer(limit) => coldquery_core::Error::new(
                coldquery_core::ErrorKind::Unavailable,
                format!("PostgreSQL did not answer within {} ms while {context}", limit.as_millis()),
            ),
        }
    }
}

/// Makes connections for both the shared pool and the session pool.
pub(crate) struct Manager {
    inner: PostgresConnectionManager<PgTls>,
    /// The bound of the whole start-up: connect, TLS, authentication, set-up query.
    limit: std::time::Duration,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Manager")
    }
}

impl Manager {
    pub(crate) fn new(config: tokio_postgres::Config, tls: PgTls, limit: std::time::Duration) -> Manager {
        Manager { inner: PostgresConnectionManager::new(config, tls), limit }
    }
}

/// Settings applied to every new connection, with `set_config` so the statement works the
/// same through PgBouncer (no startup `options`, which PgBouncer refuses).
/// `client_connection_check_interval` (14+) makes a backend stop within about 2 s if ColdQuery
/// dies mid-query; the server-side keepalives and `tcp_user_timeout` (12+) make it notice
/// within about 30 s that ColdQuery's host went away silently (the same figures as ColdQuery's
/// own defaults); `standard_conforming_strings` is the grammar the classifier parses with,
/// whatever the database or role default is.
pub(crate) const CONNECTION_SETUP: &str = "SELECT set_config('standard_conforming_strings', 'on', false), \
     (SELECT set_config('client_connection_check_interval', '2s', false) \
       WHERE current_setting('server_version_num')::int >= 140000), \
     (SELECT set_config('tcp_keepalives_idle', '15', false) || set_config('tcp_keepalives_interval', '5', false) \
        || set_config('tcp_keepalives_count', '3', false) || set_config('tcp_user_timeout', '30000', false) \
       WHERE current_setting('server_version_num')::int >= 120000)";

impl ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ConnectError;

    async fn connect(&self) -> Result<PgConn, ConnectError> {
        let connect = async {
            let client = self.inner.connect().await?;
            client.query_typed(CONNECTION_SETUP, &[]).await?;
            Ok(PgConn {
                client,
                poisoned: false,
                backend: None,
                prepared: Prepared::default(),
                leftover: Leftover::default(),
            })
        };
        match tokio::time::timeout(self.limit, connect).await {
            Ok(result) => result.map_err(ConnectError::Pg),
            // A peer that accepted the connection and then went silent.
            Err(_) => Err(ConnectError::NoAnswer(self.limit)),
        }
    }

    /// No I/O: a closed connection is invalid; anything subtler is found by the next
    /// statement, whose failure poisons the connection.
    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), ConnectError> {
        if conn.client.is_closed() {
            // Run a trivial query to obtain the driver's "connection closed" error value.
            conn.client.query_typed("SELECT 1", &[]).await.map_err(ConnectError::Pg)?;
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.poisoned || conn.client.is_closed()
    }
}
