//! A throwaway local PostgreSQL for `--ephemeral` (SPEC §5): `initdb` and `postgres` from
//! `PATH` (or Debian's newest `/usr/lib/postgresql/<version>/bin`) in a temporary directory, on a
//! free port of 127.0.0.1, with a small demo schema (`demo-schema.sql`) — the embedded default a
//! newcomer runs first. Both binaries use it.
//!
//! It is not a way to run a real database: `fsync` is off, authentication is `trust` (on the
//! loopback address and the private socket directory only) and everything is deleted on exit.
//!
//! Clean-up never depends on destructors alone. The server runs under a small shell watchdog
//! whose stdin is a pipe held by this process; when the pipe closes — [`Ephemeral::stop`], drop,
//! or this process dying in any way, `SIGKILL` included — the watchdog stops PostgreSQL (fast
//! shutdown) and deletes the directory. The watchdog has a process group of its own, so a
//! Ctrl-C at the terminal reaches this process (which then closes the pipe) but not the server.
//! When running as root, `initdb`, the watchdog and `postgres` run as the unprivileged
//! `postgres` OS user through `runuser` (PostgreSQL refuses to run as root).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use super::local::{
    self, SERVER_USER, SUPERUSER, Watchdog, base_settings, find_pg_binary, free_port, is_root, log_tail,
    startup_failure, user_exists,
};

/// The database holding the demo schema.
pub const DEMO_DATABASE: &str = "demo";

/// How long a starting server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many free ports are tried when another process takes the probed one first.
const PORT_ATTEMPTS: usize = 5;

/// The demo schema: a small shop with keys, foreign keys, indexes, checks, comments, a view
/// and deterministic rows (20 customers, 12 products, 40 orders, 120 order items). The one copy
/// is `demo-schema.sql` beside this file, which the development stack (`docker-compose.yml`)
/// also loads.
pub const DEMO_SQL: &str = include_str!("demo-schema.sql");

/// A running throwaway PostgreSQL with the demo schema. Stopped and deleted by
/// [`Ephemeral::stop`], on drop, or when this process exits.
pub struct Ephemeral {
    dir: PathBuf,
    port: u16,
    url: String,
    watchdog: Option<Watchdog>,
}

impl fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ephemeral")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("running", &self.watchdog.is_some())
            .finish()
    }
}

impl Ephemeral {
    /// Creates the cluster, starts it on a free loopback port, waits until it accepts
    /// connections and loads the demo schema into [`DEMO_DATABASE`]. The error says what
    /// failed (a missing binary, initdb's or the server's own message).
    pub async fn start() -> Result<Ephemeral, String> {
        let (dir, watchdog) = tokio::task::spawn_blocking(prepare)
            .await
            .map_err(|e| format!("preparing the ephemeral PostgreSQL: {e}"))??;
        let mut ephemeral = Ephemeral { dir, port: 0, url: String::new(), watchdog: Some(watchdog) };
        let started = ephemeral.start_server().await;
        let loaded = match started {
            Ok(()) => ephemeral.load_demo().await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(()) => Ok(ephemeral),
            Err(e) => {
                let _ = ephemeral.stop().await;
                Err(e)
            }
        }
    }

    /// The libpq URI of the demo database, as the superuser, without TLS.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory (data directory `data/`, `postgres.log`, the socket); gone
    /// after [`Ephemeral::stop`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (fast shutdown: open transactions are rolled back) and deletes the
    /// directory, waiting until both are done.
    pub async fn stop(mut self) -> Result<(), String> {
        let Some(watchdog) = self.watchdog.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || watchdog.finish())
            .await
            .map_err(|e| format!("stopping the ephemeral PostgreSQL: {e}"))?
    }

    async fn start_server(&mut self) -> Result<(), String> {
        let log = self.dir.join("postgres.log");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            self.command(format!("start {port}"), "started").await?;
            let url = url_for(port, "postgres");
            match wait_ready(&url, &log, offset).await {
                Ok(()) => {
                    self.port = port;
                    self.url = url_for(port, DEMO_DATABASE);
                    return Ok(());
                }
                Err(e) => {
                    self.command("stop INT".to_owned(), "stopped").await?;
                    let bind_failure =
                        e.contains("could not bind") || e.contains("could not create any TCP/IP sockets");
                    last = format!("{e}\n--- tail of {} ---\n{}", log.display(), log_tail(&log, 30));
                    if !bind_failure {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    async fn load_demo(&self) -> Result<(), String> {
        let admin = connect(&url_for(self.port, "postgres")).await?;
        admin
            .batch_execute("CREATE DATABASE demo")
            .await
            .map_err(|e| format!("CREATE DATABASE demo: {}", db_error(&e)))?;
        drop(admin);
        let demo = connect(&self.url).await?;
        demo.batch_execute(DEMO_SQL).await.map_err(|e| format!("loading the demo schema: {}", db_error(&e)))?;
        // Best effort: only when the server preloads it (see `prepare`). In a schema of its own
        // (one message: one implicit transaction), so `public` holds the demo objects only.
        let _ =
            demo.batch_execute("CREATE SCHEMA extensions; CREATE EXTENSION pg_stat_statements SCHEMA extensions").await;
        Ok(())
    }

    async fn command(&mut self, line: String, reply: &'static str) -> Result<(), String> {
        let Some(mut watchdog) = self.watchdog.take() else {
            return Err("the ephemeral PostgreSQL is stopped".to_owned());
        };
        let (watchdog, result) = tokio::task::spawn_blocking(move || {
            let result = watchdog.command(&line, reply);
            (watchdog, result)
        })
        .await
        .map_err(|e| format!("talking to the postgres watchdog: {e}"))?;
        self.watchdog = Some(watchdog);
        result
    }
}

/// Creates the directory, runs `initdb`, writes the configuration and starts the watchdog.
fn prepare() -> Result<(PathBuf, Watchdog), String> {
    let initdb = find_pg_binary("initdb").ok_or_else(|| missing("initdb"))?;
    let postgres = find_pg_binary("postgres").ok_or_else(|| missing("postgres"))?;
    let as_root = is_root();
    if as_root && !user_exists(SERVER_USER) {
        return Err("running as root, the ephemeral PostgreSQL needs an unprivileged `postgres` OS user \
             (PostgreSQL refuses to run as root); create one, e.g. `useradd --system postgres`"
            .to_owned());
    }
    let dir = std::env::temp_dir().join(format!("coldquery-ephemeral-{}-{}", std::process::id(), random_hex()?));
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    match prepare_in(&dir, &initdb, &postgres, as_root) {
        Ok(watchdog) => Ok((dir, watchdog)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

fn prepare_in(dir: &Path, initdb: &Path, postgres: &Path, as_root: bool) -> Result<Watchdog, String> {
    if as_root {
        let status = Command::new("chown")
            .arg(SERVER_USER)
            .arg(dir)
            .status()
            .map_err(|e| format!("chown {SERVER_USER} {}: {e}", dir.display()))?;
        if !status.success() {
            return Err(format!("chown {SERVER_USER} {} failed: {status}", dir.display()));
        }
    }
    let data = local::initdb(as_root, initdb, dir)?;
    // Only the private socket directory and the loopback address; never another interface.
    let hba = data.join("pg_hba.conf");
    std::fs::write(&hba, "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        .map_err(|e| format!("writing {}: {e}", hba.display()))?;
    let mut settings = base_settings(dir, postgres);
    settings.push("unix_socket_permissions=0700".to_owned());
    Watchdog::spawn(as_root, dir, postgres, &data, &settings)
}

fn missing(binary: &str) -> String {
    format!(
        "`{binary}` is not on PATH (nor in /usr/lib/postgresql/<version>/bin): --ephemeral runs \
         PostgreSQL's initdb and postgres (Debian: install the postgresql package)"
    )
}

/// The libpq URI of `dbname` on the loopback port, as the superuser, without TLS.
fn url_for(port: u16, dbname: &str) -> String {
    format!("postgresql://{SUPERUSER}@127.0.0.1:{port}/{dbname}?sslmode=disable")
}

/// Polls until the server runs `SELECT 1`, the log shows a startup failure, or
/// [`READY_TIMEOUT`] passes.
async fn wait_ready(url: &str, log: &Path, offset: u64) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match connect(url).await {
            Ok(client) => match client.simple_query("SELECT 1").await {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        if let Some(line) = startup_failure(log, offset) {
            return Err(format!("postgres failed to start: {line}"));
        }
        if Instant::now() > deadline {
            return Err(format!("postgres did not accept connections within {READY_TIMEOUT:?} (last error: {last})"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects without TLS (a 5 s timeout) and drives the connection on a spawned task.
async fn connect(url: &str) -> Result<Client, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await.map_err(|e| db_error(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn db_error(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| format!("no OS randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_point_at_the_loopback_address_without_tls() {
        assert_eq!(url_for(5433, DEMO_DATABASE), "postgresql://postgres@127.0.0.1:5433/demo?sslmode=disable");
    }

    #[test]
    fn startup_failures_are_found_after_the_offset_only() {
        let dir = std::env::temp_dir().join(format!("coldquery-ephemeral-test-{}", random_hex().unwrap()));
        std::fs::create_dir(&dir).unwrap();
        let log = dir.join("postgres.log");
        let old = "FATAL:  could not bind IPv4 address \"127.0.0.1\": Address already in use\n";
        std::fs::write(&log, old).unwrap();
        assert!(startup_failure(&log, 0).unwrap().contains("could not bind"));
        assert_eq!(startup_failure(&log, old.len() as u64), None);
        let mut text = old.to_owned();
        text.push_str("FATAL:  the database system is starting up\nLOG:  database system is ready\n");
        std::fs::write(&log, &text).unwrap();
        assert_eq!(startup_failure(&log, old.len() as u64), None, "a client's start-up FATAL is no failure");
        assert_eq!(log_tail(&log, 1), "LOG:  database system is ready");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Starts a real server (initdb + postgres from PATH), reads the demo data through the
    /// crate's own [`crate::Database`], and checks that `stop` removes everything.
    #[tokio::test]
    async fn starts_serves_the_demo_schema_and_cleans_up() {
        let ephemeral = Ephemeral::start().await.expect("the ephemeral PostgreSQL starts");
        let dir = ephemeral.dir().to_path_buf();
        assert!(dir.join("data/PG_VERSION").is_file());
        assert!(ephemeral.url().starts_with("postgresql://postgres@127.0.0.1:"), "{}", ephemeral.url());
        assert!(ephemeral.port() > 0);

        let client = connect(ephemeral.url()).await.unwrap();
        let counts = client
            .query_one(
                "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM products), \
                        (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items), \
                        (SELECT count(*) FROM order_totals)",
                &[],
            )
            .await
            .unwrap();
        let counts: Vec<i64> = (0..5).map(|i| counts.get(i)).collect();
        assert_eq!(counts, [20, 12, 40, 120, 40]);
        let comment: Option<String> =
            client.query_one("SELECT obj_description('customers'::regclass)", &[]).await.unwrap().get(0);
        assert_eq!(comment.as_deref(), Some("People who place orders."));
        let foreign_keys: i64 =
            client.query_one("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", &[]).await.unwrap().get(0);
        assert_eq!(foreign_keys, 3);
        let public_views: i64 =
            client.query_one("SELECT count(*) FROM pg_views WHERE schemaname = 'public'", &[]).await.unwrap().get(0);
        assert_eq!(public_views, 1, "public holds the demo's one view only");
        let listen: String = client.query_one("SHOW listen_addresses", &[]).await.unwrap().get(0);
        assert_eq!(listen, "127.0.0.1");

        // The same URL works through the crate's own configuration and pools.
        let config = crate::PgConfig::from_env_and_url(Some(ephemeral.url()), &|_| None).unwrap();
        let database = crate::Database::connect(&config, &crate::PgOptions::default()).await.unwrap();
        drop(database);
        drop(client);

        ephemeral.stop().await.unwrap();
        assert!(!dir.exists(), "stop deletes {}", dir.display());
    }

    #[tokio::test]
    async fn dropping_it_also_cleans_up() {
        let ephemeral = Ephemeral::start().await.expect("the ephemeral PostgreSQL starts");
        let dir = ephemeral.dir().to_path_buf();
        let url = ephemeral.url().to_owned();
        tokio::task::spawn_blocking(move || drop(ephemeral)).await.unwrap();
        assert!(!dir.exists(), "drop deletes {}", dir.display());
        assert!(connect(&url).await.is_err(), "the server is gone");
    }

    #[test]
    fn random_names_differ() {
        let a = random_hex().unwrap();
        assert_eq!(a.len(), 12);
        assert_ne!(a, random_hex().unwrap());
    }
}
