//! The pools: [`Shared`] is one bb8 pool of connections with what every call on it needs (how to
//! cancel, the step timeout, why connecting last failed), and [`connect`] checks the server is
//! reachable and builds a shared pool and a session pool for one [`PgConfig`].

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coldquery_core::{Error, ErrorKind, PoolStatus, Result};

use crate::cancel::Canceller;
use crate::config::PgConfig;
use crate::errors;
use crate::manager::{self, Manager};
use crate::options::PgOptions;

/// One pool of connections and what every call on it needs.
pub(crate) struct Shared {
    /// How to send CancelRequests (TLS set-up and server address), for the statements run on
    /// this pool's connections.
    pub(crate) tls: Canceller,
    pool: bb8::Pool<Manager>,
    acquire_timeout: Duration,
    /// The bound of every step that has no deadline of its own ([`PgConfig::step_timeout`]).
    pub(crate) step: Duration,
    /// Calls waiting in [`Shared::acquire`] now (bb8 reports no such gauge).
    waiting: AtomicU32,
    /// Why the pool's last attempt to connect failed, and when (bb8 hands connect errors to
    /// an error sink, not to the waiting caller).
    last_connect_error: LastConnectError,
}

/// The pool's last connect error: a caller that timed out waiting for a connection is told
/// the cause ("connection refused", "the database system is starting up") rather than only
/// that none became free.
#[derive(Debug, Clone, Default)]
struct LastConnectError(Arc<Mutex<Option<(Instant, String)>>>);

impl bb8::ErrorSink<manager::ConnectError> for LastConnectError {
    fn sink(&self, error: manager::ConnectError) {
        let cause = error.to_error("connecting").message().to_owned();
        if let Ok(mut last) = self.0.lock() {
            *last = Some((Instant::now(), cause));
        }
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<manager::ConnectError>> {
        Box::new(self.clone())
    }
}

impl LastConnectError {
    /// The cause, if the last failure is recent (within `window`).
    fn recent(&self, window: Duration) -> Option<String> {
        let last = self.0.lock().ok()?;
        last.as_ref().filter(|(at, _)| at.elapsed() <= window).map(|(_, cause)| cause.clone())
    }
}

/// Counts a waiter for as long as it lives, so a cancelled wait is uncounted too.
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn start(counter: &'a AtomicU32) -> Waiting<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) async fn acquire(&self) -> Result<bb8::PooledConnection<'static, Manager>> {
        let _waiting = Waiting::start(&self.waiting);
        self.get(&self.pool).await
    }

    pub(crate) async fn get(&self, pool: &bb8::Pool<Manager>) -> Result<bb8::PooledConnection<'static, Manager>> {
        let mut conn = pool.get_owned().await.map_err(|e| match e {
            bb8::RunError::User(e) => e.to_error("connecting to PostgreSQL"),
            bb8::RunError::TimedOut => match self.last_connect_error.recent(self.acquire_timeout * 2) {
                Some(cause) => Error::new(
                    ErrorKind::Unavailable,
                    format!("PostgreSQL is unreachable: {cause}"),
                )
                .with_hint("the database is down or not reachable from here; calls work again by themselves once it is back (check /ready or pg_monitor health)"),
                None => Error::new(
                    ErrorKind::Unavailable,
                    format!("no database connection became free within {} ms", self.acquire_timeout.as_millis()),
                )
                .with_hint("the server is busy or PostgreSQL is unreachable; retry shortly"),
            },
        })?;
        conn.close_leftover();
        Ok(conn)
    }

    pub(crate) fn pool_status(&self) -> PoolStatus {
        let state = self.pool.state();
        PoolStatus {
            size: self.pool.config().max_size,
            connections: state.connections,
            idle: state.idle_connections,
            in_use: state.connections.saturating_sub(state.idle_connections),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

/// True when the server could not be reached at all, or is not accepting connections yet
/// (as opposed to refusing these credentials or settings).
fn unreachable(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        Some(code) => matches!(code.code(), "57P03" | "53300"),
        None => error.as_db_error().is_none(),
    }
}

/// Checks the server is reachable with `config`'s credentials (so a wrong password or an
/// unreachable host is reported as such, not as a pool timeout), then builds the shared pool
/// and a session pool for it.
pub(crate) async fn connect(
    config: &PgConfig,
    options: &PgOptions,
    setting: &str,
) -> Result<(Arc<Shared>, bb8::Pool<Manager>)> {
    let mut config = config.clone();
    config.set_fallback_application_name(&options.application_name);
    let mut pg = config.pg().clone();
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(options.acquire_timeout);
    }
    let step = config.step_timeout();
    // tokio-postgres's connect_timeout covers the TCP connect only: the start-up exchange (TLS,
    // authentication, the set-up query) is bounded here, so a peer that accepts and then goes
    // silent cannot hold a pool slot forever.
    let connect_limit = pg.get_connect_timeout().copied().unwrap_or(options.acquire_timeout) + step;
    let tls = config.tls_connector().map_err(|e| Error::new(ErrorKind::InvalidArgument, e.to_string()))?;
    let manager = {
        let (pg, tls) = (pg.clone(), tls.clone());
        move || Manager::new(pg.clone(), tls.clone(), connect_limit)
    };
    // One direct connection first, for an honest error message.
    match tokio::time::timeout(connect_limit, pg.connect(tls.clone())).await {
        Ok(Ok((client, connection))) => {
            drop(client);
            drop(connection);
        }
        // Unreachable (refused, no route, timed out, starting up): serve anyway if asked to.
        Ok(Err(e)) if options.start_while_down && unreachable(&e) => {
            tracing::warn!(
                database = %config.redacted(),
                error = %e,
                "PostgreSQL is not reachable; serving anyway: calls answer UNAVAILABLE until it is"
            );
        }
        Err(_) if options.start_while_down => {
            tracing::warn!(
                database = %config.redacted(),
                "PostgreSQL did not answer the start-up in time; serving anyway: calls answer UNAVAILABLE until it does"
            );
        }
        Ok(Err(e)) => {
            let err = errors::map(&e, &format!("connecting to PostgreSQL ({})", config.redacted()));
            return Err(err.with_hint(format!("check the host, port, user, password and sslmode ({setting})")));
        }
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "connecting to PostgreSQL ({}): no answer within {} ms",
                    config.redacted(),
                    connect_limit.as_millis()
                ),
            )
            .with_hint(format!("check the host, port and network path ({setting})")));
        }
    }
    let last_connect_error = LastConnectError::default();
    let build = |size: u32| {
        bb8::Pool::builder()
            .error_sink(Box::new(last_connect_error.clone()))
            .max_size(size)
            .min_idle(Some(0))
            .connection_timeout(options.acquire_timeout)
            .test_on_check_out(true)
            .retry_connection(false)
            .build_unchecked(manager())
    };
    let shared = Arc::new(Shared {
        tls: Canceller::new(tls, &pg, step),
        pool: build(options.pool_size.max(1)),
        acquire_timeout: options.acquire_timeout,
        step,
        waiting: AtomicU32::new(0),
        last_connect_error: last_connect_error.clone(),
    });
    Ok((shared, build(u32::try_from(options.max_sessions.max(1)).unwrap_or(u32::MAX))))
}
