//! Start-up and shutdown: connect the database, build the tools, serve one transport until
//! the client goes away (stdin EOF) or a signal arrives, then roll back every open session and
//! close the pool.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use coldquery_core::CancellationToken;
use coldquery_pg::cluster::ephemeral::Ephemeral;
use coldquery_pg::{Database, PgConfig};
use coldquery_tools::Tools;
use rmcp::ServiceExt;

use coldquery_config::DatabaseSource;

use crate::config::{Config, ConfigError, Transport};
use crate::http;
use crate::metrics::Metrics;
use crate::server::{Channel, ColdQueryServer};

/// How long an HTTP shutdown waits for open requests before it stops waiting.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Why the server stopped with an error.
#[derive(Debug)]
pub enum RunError {
    /// A setting that cannot be used (exit status 2).
    Config(ConfigError),
    /// The database cannot be reached or started (exit status 1).
    Database(String),
    /// The transport failed (exit status 1).
    Transport(String),
}

impl RunError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => 2,
            RunError::Database(_) | RunError::Transport(_) => 1,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Config(e) => e.fmt(f),
            RunError::Database(e) => write!(f, "database: {e}"),
            RunError::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<ConfigError> for RunError {
    fn from(e: ConfigError) -> RunError {
        RunError::Config(e)
    }
}

/// A token cancelled at SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => tracing::info!("SIGINT received: shutting down"),
            _ = terminate => tracing::info!("SIGTERM received: shutting down"),
        }
        cancel.cancel();
    });
    token
}

/// The database the configuration names. The ephemeral cluster, if any, must outlive the
/// returned database (it is removed when dropped).
async fn connect(config: &Config) -> Result<(Database, Option<Ephemeral>), RunError> {
    let (pg, ephemeral) = match &config.options.database {
        DatabaseSource::Url(url) => {
            let env = |name: &str| std::env::var(name).ok();
            let pg = PgConfig::from_env_and_url(url.as_deref(), &env).map_err(|e| {
                let setting = if url.is_some() { "--database-url (DATABASE_URL)" } else { "PG* variables" };
                ConfigError { setting: setting.to_owned(), message: e.to_string() }
            })?;
            (pg, None)
        }
        DatabaseSource::Ephemeral => {
            tracing::info!("starting a throwaway PostgreSQL (--ephemeral)");
            let ephemeral = Ephemeral::start().await.map_err(RunError::Database)?;
            let pg = PgConfig::from_env_and_url(Some(ephemeral.url()), &|_| None)
                .map_err(|e| RunError::Database(format!("the ephemeral cluster's URL: {e}")))?;
            tracing::info!(port = ephemeral.port(), "ephemeral PostgreSQL is up, with the demo schema");
            (pg, Some(ephemeral))
        }
    };
    let reads = config.options.reads.as_ref();
    tracing::info!(database = %pg.redacted(), reads = reads.map(|r| r.redacted().to_string()), "connecting");
    let database = Database::connect_with_reads(&pg, reads, &config.options.pg).await.map_err(|e| {
        let mut message = e.message().to_owned();
        if let Some(hint) = e.hint() {
            message.push_str(&format!(" ({hint})"));
        }
        RunError::Database(message)
    })?;
    Ok((database, ephemeral))
}

/// The stdio wire (a JSON line per message, 16 MiB at most) over [`stdio_streams`].
fn stdio_transport() -> impl rmcp::transport::Transport<rmcp::RoleServer> {
    let (stdin, stdout) = stdio_streams();
    crate::lines::Lines::new(stdin, stdout)
}

type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// Standard input and output. When they are pipes or Unix sockets — as when an MCP client starts
/// the server (Node's `child_process`, through libuv, gives its children socket pairs) — they
/// are read and written by the runtime's own event loop; tokio's `stdin()`/`stdout()` would hand
/// every read and write to a blocking thread and back, a thread wake-up each way per message.
/// Anything else (a terminal, a file) keeps tokio's.
fn stdio_streams() -> (Reader, Writer) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let stdin = on_event_loop(
        std::io::stdin().as_fd(),
        |s| Box::new(s) as Reader,
        |fd| pipe::Receiver::from_owned_fd(fd).map(|p| Box::new(p) as Reader),
    );
    let stdout = on_event_loop(
        std::io::stdout().as_fd(),
        |s| Box::new(s) as Writer,
        |fd| pipe::Sender::from_owned_fd(fd).map(|p| Box::new(p) as Writer),
    );
    (stdin.unwrap_or_else(|| Box::new(tokio::io::stdin())), stdout.unwrap_or_else(|| Box::new(tokio::io::stdout())))
}

/// `fd` on the runtime's event loop: a Unix socket as a stream, anything else through `pipe`;
/// `None` when it cannot be (a terminal, a file).
fn on_event_loop<T>(
    fd: std::os::fd::BorrowedFd<'_>,
    socket_stream: impl FnOnce(tokio::net::UnixStream) -> T,
    pipe: impl FnOnce(std::os::fd::OwnedFd) -> std::io::Result<T>,
) -> Option<T> {
    let fd = fd.try_clone_to_owned().ok()?;
    if socket(&fd) { unix_stream(fd).map(socket_stream) } else { pipe(fd).ok() }
}

/// Whether `fd` is a socket.
fn socket(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fd.try_clone().map(std::fs::File::from).and_then(|file| file.metadata()).is_ok_and(|m| m.file_type().is_socket())
}

/// A Unix stream socket on the runtime's event loop (non-blocking).
fn unix_stream(fd: std::os::fd::OwnedFd) -> Option<tokio::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(stream).ok()
}

/// Serves MCP over stdin/stdout until stdin closes or `shutdown` is cancelled.
pub async fn serve_stdio(server: ColdQueryServer, shutdown: CancellationToken) -> Result<(), RunError> {
    let service = tokio::select! {
        service = server.serve_with_ct(crate::stdio::Bounded::new(stdio_transport()), shutdown.child_token()) => service,
        () = shutdown.cancelled() => return Ok(()),
    };
    match service {
        Ok(service) => {
            let reason = service.waiting().await.map_err(|e| RunError::Transport(e.to_string()))?;
            tracing::info!(?reason, "stdio client gone");
        }
        // A client that closes stdin before the handshake has simply gone away.
        Err(error) => tracing::info!(%error, "stdio session ended before it started"),
    }
    Ok(())
}

/// Serves MCP over streamable HTTP until `shutdown` is cancelled. Then it stops accepting
/// connections, cancels the calls still running (`calls`) and waits for them to answer, and
/// only then ends the MCP sessions: rmcp drops the handlers of an ended session, and a dropped
/// call would leave its statement running on the server.
pub async fn serve_http(
    server: ColdQueryServer,
    metrics: Arc<Metrics>,
    config: &Config,
    shutdown: CancellationToken,
    calls: CancellationToken,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| RunError::Transport(format!("cannot listen on {}: {e}", config.http.listen)))?;
    let address = listener.local_addr().map_err(|e| RunError::Transport(e.to_string()))?;
    tracing::info!(%address, "listening: MCP at /mcp, /health, /ready, /metrics");
    let in_flight = server.in_flight();
    let sessions_end = CancellationToken::new();
    let app = http::router(server, metrics, &config.http, sessions_end.clone());
    let serving = tokio::spawn(accept_loop(listener, app, shutdown.clone()));
    shutdown.cancelled().await;
    end_calls(&calls, &in_flight).await;
    sessions_end.cancel();
    match tokio::time::timeout(HTTP_DRAIN, serving).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RunError::Transport(e.to_string())),
        Err(_) => tracing::warn!("open HTTP requests did not finish within {} s; closing them", HTTP_DRAIN.as_secs()),
    }
    Ok(())
}

/// How long a stopping server waits for the calls it cancelled to answer.
const CALLS_DRAIN: Duration = Duration::from_secs(5);

/// Cancels the calls still running and waits (at most [`CALLS_DRAIN`]) until each has
/// cancelled its statement on the server and answered.
async fn end_calls(calls: &CancellationToken, in_flight: &crate::server::InFlight) {
    calls.cancel();
    if tokio::time::timeout(CALLS_DRAIN, in_flight.idle()).await.is_err() {
        tracing::warn!("calls still running {} s after they were cancelled; stopping anyway", CALLS_DRAIN.as_secs());
    }
}

/// A client must send its request headers within this time, or its connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more are closed on arrival.
const MAX_CONNECTIONS: usize = 1024;

/// Accepts connections until `shutdown`, then waits for open ones to finish. Unlike
/// `axum::serve`, it bounds how long a client may take to send its headers (slowloris) and
/// how many connections are open at once.
async fn accept_loop(listener: tokio::net::TcpListener, app: axum::Router, shutdown: CancellationToken) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(limit = MAX_CONNECTIONS, "too many open HTTP connections; closing a new one");
            continue;
        };
        // Responses are small writes: with Nagle's algorithm the last one of a response waits
        // for the client's delayed ACK (about 40 ms per call on a keep-alive connection).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Warns at start when reads run as a role PostgreSQL would let do more than read.
async fn report_posture(tools: &Tools) {
    let caller = coldquery_tools::Caller::new(coldquery_core::Owner::new("coldquery-mcp:start"), "coldquery-mcp");
    match tools.role_posture(&caller).await {
        Ok(None) => {
            tracing::info!("reads run as a role without superuser, replication, signalling or server-file rights")
        }
        Ok(Some(warning)) => tracing::warn!("{warning}"),
        Err(error) => tracing::warn!(error = %error.message(), "could not check the role's rights"),
    }
}

/// Runs the server with `config` until the client goes away or `shutdown` is cancelled; then
/// rolls back every open session, cancels running statements and closes the pool.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    tracing::info!(config = %config.summary(), version = env!("CARGO_PKG_VERSION"), "coldquery-mcp starting");
    let audit = config.options.open_audit()?;
    let (database, ephemeral) = connect(&config).await?;
    let tools = config.options.tools(&database, audit).with_layout(config.tool_layout);
    // In the background: with the database down it would wait out the acquire timeout, and the
    // server must listen (and answer /health) meanwhile.
    tokio::spawn({
        let tools = tools.clone();
        async move { report_posture(&tools).await }
    });
    let metrics = Arc::new(Metrics::default());
    // Calls still running when the server stops are cancelled through this token.
    let calls = CancellationToken::new();
    let channel = match config.transport {
        Transport::Stdio => Channel::Stdio,
        Transport::Http => Channel::Http,
    };
    let server = ColdQueryServer::new(tools.clone(), metrics.clone(), channel, config.options.read_only)
        .with_shutdown(calls.clone());
    let in_flight = server.in_flight();
    let served = match config.transport {
        Transport::Stdio => serve_stdio(server, shutdown.clone()).await,
        Transport::Http => serve_http(server, metrics, &config, shutdown.clone(), calls.clone()).await,
    };
    end_calls(&calls, &in_flight).await;
    let closed = tools.sessions().close_all().await;
    tracing::info!(rolled_back = closed, "open sessions rolled back; closing the pool");
    drop(tools);
    drop(database);
    if let Some(ephemeral) = ephemeral
        && let Err(error) = ephemeral.stop().await
    {
        tracing::warn!(%error, "could not stop the ephemeral PostgreSQL cleanly");
    }
    served
}
