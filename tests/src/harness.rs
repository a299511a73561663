//! The PostgreSQL harness: a real server for integration tests, one fresh database per test.
//!
//! - With `COLDQUERY_TEST_DATABASE_URL` set, that server is used (the URL must be a superuser,
//!   or at least a role that may create databases and roles).
//! - Otherwise the harness starts a throwaway cluster once per test process: `initdb` and
//!   `postgres` from `PATH`, in a temporary directory, on a free port of 127.0.0.1, as the
//!   `postgres` OS user when running as root (PostgreSQL refuses to run as root).
//! - A fixture database, `coldquery_fixture`, is built once per server (extensions `hstore`,
//!   `citext` and, when available, `pg_stat_statements`; roles `coldquery_ro` and
//!   `coldquery_rw`). Each [`test_db`] clones it with `CREATE DATABASE ... TEMPLATE` and drops the
//!   clone when the [`TestDb`] is dropped.
//!
//! PostgreSQL missing is a panic, never a silent skip (with or without `CI`).
//!
//! Teardown needs neither `unsafe` nor static destructors: the server runs under a small shell
//! watchdog whose stdin is a pipe held by the test process. When the test process exits, the pipe
//! closes, the watchdog stops PostgreSQL (fast shutdown) and deletes the temporary directory.
//! The watchdog also takes commands on that pipe, which is how [`PgCluster::stop`] and
//! [`PgCluster::start_again`] restart a cluster for fault tests.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use coldquery_pg::cluster::local::{
    self, Watchdog, as_server_user, base_settings, find_on_path, find_pg_binary, free_port, is_root, log_tail,
    startup_failure,
};
use tokio_postgres::{Client, NoTls};

/// The environment variable naming an existing server to test against (a superuser URL).
pub const DATABASE_URL_ENV: &str = "COLDQUERY_TEST_DATABASE_URL";

/// The template every test database is cloned from.
pub const FIXTURE_DB: &str = "coldquery_fixture";

/// A login role without superuser, with `SELECT` on the fixture's `public` tables (by default
/// privileges on tables the superuser creates there).
pub const RO_ROLE: &str = "coldquery_ro";

/// A login role without superuser, with `CREATE` on `public` and DML on the fixture's `public`
/// tables (by default privileges on tables and sequences the superuser creates there).
pub const RW_ROLE: &str = "coldquery_rw";

/// A login role without privileges that, on the harness's own cluster, must authenticate with
/// its password (`scram-sha-256`), for authentication tests: see [`password_url`].
pub const PASSWORD_ROLE: &str = "coldquery_pw";

/// The password of [`RO_ROLE`], [`RW_ROLE`] and [`PASSWORD_ROLE`]. The harness's own cluster
/// trusts every other local connection, so only [`PASSWORD_ROLE`] actually checks it.
pub const ROLE_PASSWORD: &str = "coldquery-test";

/// Bump when the fixture's contents change: an older fixture is dropped and rebuilt.
const FIXTURE_VERSION: &str = "coldquery test fixture v1";

/// Serialises fixture builds and clones across test processes sharing one server.
const LOCK_SQL: &str = "SELECT pg_advisory_lock(4851208151652106834)";
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock(4851208151652106834)";

/// How long a starting server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The server used by [`test_db`], set up once per process.
#[derive(Debug)]
struct Server {
    admin_url: String,
    /// The harness's own cluster, owned here so that it runs as long as the process (dropping
    /// it stops the server); `None` with `COLDQUERY_TEST_DATABASE_URL`.
    _cluster: Option<PgCluster>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// A database of its own for one test, cloned from the fixture; dropped (`WITH (FORCE)`) when
/// this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// libpq URI of the new database, as the superuser (`postgres` on the harness's cluster).
    pub url: String,
    /// The database's name, `cq_t_` and 16 hex digits.
    pub name: String,
    /// libpq URI of the server's admin database, as the superuser.
    pub admin_url: String,
}

impl TestDb {
    /// A side connection to this database as the superuser. The connection task is spawned on
    /// the current tokio runtime. Panics when the server cannot be reached.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// The URI of this database as `role` (with [`ROLE_PASSWORD`]), e.g. [`RO_ROLE`].
    pub fn url_as(&self, role: &str) -> String {
        edit_url(&self.url, None, Some((role, ROLE_PASSWORD)))
    }

    /// A side connection to this database as `role`. Panics when it cannot connect.
    pub async fn client_as(&self, role: &str) -> Client {
        connect(&self.url_as(role)).await
    }

    /// A side connection in an open transaction that has read `table`, so it holds a lock an
    /// `ALTER TABLE` or `LOCK TABLE` waits for until it ends (`ROLLBACK` on the connection, or
    /// dropping it); and that connection's backend pid.
    pub async fn blocker(&self, table: &str) -> (Client, i32) {
        let blocker = self.client().await;
        blocker
            .batch_execute(&format!("BEGIN; SELECT * FROM {}", quote_ident(table)))
            .await
            .expect("the blocker reads");
        let pid = blocker.query_one("SELECT pg_backend_pid()", &[]).await.expect("the blocker's pid").get(0);
        (blocker, pid)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let drop_sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&self.name));
        // On its own thread and runtime: Drop may run inside (or outside) any runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok((client, task)) = try_connect(&admin_url).await {
                    let _ = client.batch_execute(&drop_sql).await;
                    drop(client);
                    let _ = task.await;
                }
            });
        })
        .join();
    }
}

/// The URI of `db` as [`PASSWORD_ROLE`] with `password` (percent-encoded as needed). On the
/// harness's own cluster that role must authenticate, so a wrong password fails with SQLSTATE
/// `28P01`; [`ROLE_PASSWORD`] is the right one.
pub fn password_url(db: &TestDb, password: &str) -> String {
    edit_url(&db.url, None, Some((PASSWORD_ROLE, password)))
}

/// A fresh database for one test, cloned from the fixture template on the server in use
/// (starting the harness's cluster on first use). Panics when no PostgreSQL is available.
pub async fn test_db() -> TestDb {
    let admin_url = match tokio::task::spawn_blocking(|| server().admin_url.clone()).await {
        Ok(url) => url,
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("starting the PostgreSQL harness failed: {err}"),
        },
    };
    create_test_db(&admin_url).await.unwrap_or_else(|err| panic!("{err}"))
}

/// A fresh database on the server at `admin_url` (a superuser URL), building that server's
/// fixture first if needed. For tests that run their own [`PgCluster`].
pub async fn test_db_at(admin_url: &str) -> TestDb {
    ensure_fixture(admin_url).await.unwrap_or_else(|err| panic!("{err}"));
    create_test_db(admin_url).await.unwrap_or_else(|err| panic!("{err}"))
}

/// The admin URL (superuser, admin database) of the server in use: the value of
/// `COLDQUERY_TEST_DATABASE_URL` when set, else the harness's cluster once [`test_db`] has
/// started it; `None` before that. Never starts anything.
pub fn server_url() -> Option<String> {
    if let Some(Ok(server)) = SERVER.get() {
        return Some(server.admin_url.clone());
    }
    std::env::var(DATABASE_URL_ENV).ok().filter(|url| !url.trim().is_empty())
}

/// A side connection to `url`, its connection task spawned on the current tokio runtime.
/// Panics when it cannot connect.
pub async fn connect(url: &str) -> Client {
    match try_connect(url).await {
        Ok((client, _task)) => client,
        Err(err) => panic!("cannot connect to {}: {err}", redact(url)),
    }
}

/// `name` as a quoted SQL identifier (`"` doubled), for the harness's own generated names.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn server() -> &'static Server {
    match SERVER.get_or_init(init_server) {
        Ok(server) => server,
        Err(message) => panic!("{message}"),
    }
}

fn init_server() -> Result<Server, String> {
    let (admin_url, cluster) = match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => (url, None),
        _ => {
            let cluster = PgCluster::start().map_err(|err| unavailable(&err))?;
            (cluster.admin_url(), Some(cluster))
        }
    };
    let url = admin_url.clone();
    block_on_own_thread(move || async move { ensure_fixture(&url).await }).map_err(|err| unavailable(&err))?;
    Ok(Server { admin_url, _cluster: cluster })
}

fn unavailable(reason: &str) -> String {
    let ci = if std::env::var_os("CI").is_some() {
        "CI is set, and PostgreSQL tests must never be skipped there"
    } else {
        "these tests need PostgreSQL and are never skipped"
    };
    format!(
        "no PostgreSQL available for the tests ({ci}): {reason}\n\
         Install PostgreSQL (Debian: apt-get install postgresql postgresql-contrib) or put \
         initdb and postgres on PATH, or set \
         {DATABASE_URL_ENV} to a superuser URL."
    )
}

async fn create_test_db(admin_url: &str) -> Result<TestDb, String> {
    let name = format!("cq_t_{}", random_hex(8));
    let (admin, task) =
        try_connect(admin_url).await.map_err(|err| format!("cannot connect to {}: {err}", redact(admin_url)))?;
    admin.batch_execute(LOCK_SQL).await.map_err(|err| format!("advisory lock: {err}"))?;
    let created = admin
        .batch_execute(&format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(&name), quote_ident(FIXTURE_DB)))
        .await;
    let _ = admin.batch_execute(UNLOCK_SQL).await;
    drop(admin);
    let _ = task.await;
    created.map_err(|err| format!("CREATE DATABASE {name} TEMPLATE {FIXTURE_DB}: {}", db_error(&err)))?;
    Ok(TestDb { url: edit_url(admin_url, Some(&name), None), name, admin_url: admin_url.to_owned() })
}

/// Builds the fixture database and the roles on the server at `admin_url` unless this
/// fixture version is already there. Serialised across processes by an advisory lock.
async fn ensure_fixture(admin_url: &str) -> Result<(), String> {
    let (admin, task) =
        try_connect(admin_url).await.map_err(|err| format!("cannot connect to {}: {err}", redact(admin_url)))?;
    admin.batch_execute(LOCK_SQL).await.map_err(|err| format!("advisory lock: {err}"))?;
    let result = build_fixture(&admin, admin_url).await;
    let _ = admin.batch_execute(UNLOCK_SQL).await;
    drop(admin);
    let _ = task.await;
    result
}

async fn build_fixture(admin: &Client, admin_url: &str) -> Result<(), String> {
    for role in [RO_ROLE, RW_ROLE, PASSWORD_ROLE] {
        let exists = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(|err| db_error(&err))?
            .is_some();
        if !exists {
            let sql = format!("CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD '{ROLE_PASSWORD}'", quote_ident(role));
            if let Err(err) = admin.batch_execute(&sql).await
                && err.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT)
            {
                return Err(format!("CREATE ROLE {role}: {}", db_error(&err)));
            }
        }
    }

    let fixture = quote_ident(FIXTURE_DB);
    let existing: Option<Option<String>> = admin
        .query_opt("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", &[&FIXTURE_DB])
        .await
        .map_err(|err| db_error(&err))?
        .map(|row| row.get(0));
    match existing {
        Some(Some(version)) if version == FIXTURE_VERSION => return Ok(()),
        Some(_) => {
            // An older or half-built fixture: rebuild it.
            let _ = admin.batch_execute(&format!("ALTER DATABASE {fixture} IS_TEMPLATE false")).await;
            admin
                .batch_execute(&format!("DROP DATABASE {fixture} WITH (FORCE)"))
                .await
                .map_err(|err| format!("dropping the old {FIXTURE_DB}: {}", db_error(&err)))?;
        }
        None => {}
    }
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {fixture} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .await
        .map_err(|err| format!("CREATE DATABASE {FIXTURE_DB}: {}", db_error(&err)))?;

    let fixture_url = edit_url(admin_url, Some(FIXTURE_DB), None);
    let (db, task) = try_connect(&fixture_url).await.map_err(|err| format!("cannot connect to {FIXTURE_DB}: {err}"))?;
    let setup = setup_fixture(&db).await;
    drop(db);
    let _ = task.await;
    setup?;

    // No connection may ever stay open to a template that is being cloned.
    let _ = admin.batch_execute(&format!("ALTER DATABASE {fixture} ALLOW_CONNECTIONS false")).await;
    let _ = admin.batch_execute(&format!("ALTER DATABASE {fixture} IS_TEMPLATE true")).await;
    admin
        .batch_execute(&format!("COMMENT ON DATABASE {fixture} IS '{FIXTURE_VERSION}'"))
        .await
        .map_err(|err| format!("COMMENT ON DATABASE {FIXTURE_DB}: {}", db_error(&err)))?;
    Ok(())
}

async fn setup_fixture(db: &Client) -> Result<(), String> {
    for extension in ["hstore", "citext"] {
        db.batch_execute(&format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(extension)))
            .await
            .map_err(|err| format!("CREATE EXTENSION {extension}: {}", db_error(&err)))?;
    }
    let statements_available = db
        .query_opt("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'", &[])
        .await
        .map_err(|err| db_error(&err))?
        .is_some();
    if statements_available {
        // Best effort: a non-superuser owner may not create it.
        let _ = db.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await;
    }
    let ro = quote_ident(RO_ROLE);
    let rw = quote_ident(RW_ROLE);
    db.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA public TO {ro}, {rw};
         GRANT CREATE ON SCHEMA public TO {rw};
         ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {ro};
         ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO {ro};
         ALTER DEFAULT PRIVILEGES IN SCHEMA public
             GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO {rw};
         ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {rw};"
    ))
    .await
    .map_err(|err| format!("fixture grants: {}", db_error(&err)))
}

/// How [`PgCluster::stop`] shuts the server down (the signals of `pg_ctl stop -m ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Waits for clients to disconnect (SIGTERM).
    Smart,
    /// Disconnects clients and rolls back their transactions, then a clean shutdown (SIGINT).
    Fast,
    /// Kills every backend without a checkpoint, like a crash; the next start recovers (SIGQUIT).
    Immediate,
}

impl StopMode {
    fn signal(self) -> &'static str {
        match self {
            StopMode::Smart => "TERM",
            StopMode::Fast => "INT",
            StopMode::Immediate => "QUIT",
        }
    }
}

/// A throwaway PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only.
///
/// The shared cluster behind [`test_db`] is one of these; fault tests that stop or restart the
/// server start their own with [`PgCluster::start`] and get databases with [`test_db_at`].
/// Dropping it stops the server and deletes the directory (as does the test process exiting).
/// The methods block; from async code run them under `tokio::task::spawn_blocking`.
pub struct PgCluster {
    dir: PathBuf,
    state: Mutex<ClusterState>,
}

/// The server's watchdog (dropping it stops the server and deletes the directory), its port,
/// and whether it runs.
#[derive(Debug)]
struct ClusterState {
    watchdog: Watchdog,
    port: u16,
    running: bool,
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster").field("dir", &self.dir).field("port", &self.port()).finish()
    }
}

impl PgCluster {
    /// Runs `initdb` and starts `postgres` on a free port (as the `postgres` OS user when
    /// running as root), waiting until it accepts connections. Blocks.
    pub fn start() -> Result<PgCluster, String> {
        let initdb =
            find_pg_binary("initdb").ok_or("initdb is not on PATH (nor in /usr/lib/postgresql/<major>/bin)")?;
        let postgres =
            find_pg_binary("postgres").ok_or("postgres is not on PATH (nor in /usr/lib/postgresql/<major>/bin)")?;
        let as_root = is_root();
        let dir = private_dir("coldquery-pg", as_root)?;
        let cleanup = |message: String| {
            let _ = std::fs::remove_dir_all(&dir);
            message
        };
        let data = local::initdb(as_root, &initdb, &dir).map_err(cleanup)?;

        // PASSWORD_ROLE must authenticate (first matching line wins); everyone else is trusted.
        let hba = data.join("pg_hba.conf");
        let trusted =
            std::fs::read_to_string(&hba).map_err(|err| cleanup(format!("reading {}: {err}", hba.display())))?;
        let strict = format!(
            "local all {PASSWORD_ROLE} scram-sha-256\n\
             host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n\
             host all {PASSWORD_ROLE} ::1/128 scram-sha-256\n{trusted}"
        );
        std::fs::write(&hba, strict).map_err(|err| cleanup(format!("writing {}: {err}", hba.display())))?;

        let mut settings = base_settings(&dir, &postgres);
        settings.push("max_connections=300".to_owned());
        let watchdog = Watchdog::spawn(as_root, &dir, &postgres, &data, &settings).map_err(cleanup)?;
        let cluster = PgCluster { dir, state: Mutex::new(ClusterState { watchdog, port: 0, running: false }) };
        // The port is free when probed but may be taken before postgres binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            cluster.lock().port = port;
            match cluster.start_again() {
                Ok(()) => return Ok(cluster),
                Err(err) => {
                    let bind_failure =
                        err.contains("could not bind") || err.contains("could not create any TCP/IP sockets");
                    last = err;
                    if !bind_failure {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// The superuser's URI for the `postgres` database.
    pub fn admin_url(&self) -> String {
        self.url_for("postgres")
    }

    /// The superuser's URI for database `dbname`.
    pub fn url_for(&self, dbname: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{dbname}", self.port())
    }

    /// The TCP port (kept across restarts).
    pub fn port(&self) -> u16 {
        self.lock().port
    }

    /// The temporary directory: `data/` (the data directory), `postgres.log`, the socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server log (all starts appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// Stops the server and waits until its postmaster has exited. Blocks.
    pub fn stop(&self, mode: StopMode) -> Result<(), String> {
        let mut state = self.lock();
        state.watchdog.command(&format!("stop {}", mode.signal()), "stopped")?;
        state.running = false;
        Ok(())
    }

    /// Starts the (stopped) server again on the same port and waits until it accepts
    /// connections (after crash recovery, following [`StopMode::Immediate`]). Blocks.
    pub fn start_again(&self) -> Result<(), String> {
        let log = self.log_path();
        let offset = std::fs::metadata(&log).map(|meta| meta.len()).unwrap_or(0);
        let url = {
            let mut state = self.lock();
            if state.running {
                return Err("the cluster is already running".to_owned());
            }
            let port = state.port;
            state.watchdog.command(&format!("start {port}"), "started")?;
            state.running = true;
            format!("postgresql://postgres@127.0.0.1:{port}/postgres")
        };
        let failure_log = log.clone();
        let result = wait_ready("postgres", url, "SELECT 1", move || startup_failure(&failure_log, offset));
        if let Err(err) = result {
            let _ = self.stop(StopMode::Immediate);
            return Err(format!("{err}\n--- tail of {} ---\n{}", log.display(), log_tail(&log, 40)));
        }
        Ok(())
    }

    /// A fast stop followed by [`PgCluster::start_again`]. Blocks.
    pub fn restart(&self) -> Result<(), String> {
        self.stop(StopMode::Fast)?;
        self.start_again()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where Debian's package installs PgBouncer (its `sbin` is often not on a user's `PATH`).
const PGBOUNCER_DEBIAN: &str = "/usr/sbin/pgbouncer";

/// The PgBouncer watchdog: starts `pgbouncer` in the background, waits for its stdin to close,
/// then stops it (SIGINT: immediate shutdown) and deletes the directory. `$1` is the directory,
/// the rest the pgbouncer command.
const PGBOUNCER_WATCHDOG: &str = r#"dir=$1
shift
"$@" >>"$dir/pgbouncer.out" 2>&1 &
pid=$!
echo started
while read -r _; do :; done
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir"
"#;

/// The `pgbouncer` program: on `PATH`, else Debian's `/usr/sbin/pgbouncer`.
pub fn pgbouncer_program() -> Option<PathBuf> {
    find_on_path("pgbouncer").or_else(|| Some(PathBuf::from(PGBOUNCER_DEBIAN)).filter(|path| path.is_file()))
}

/// A PgBouncer in **transaction pooling** mode in front of the server of `db`, for the
/// sessionless path's compatibility tests (SPEC §9).
///
/// `None` when `pgbouncer` is not installed and `CI` is not set (the caller says so on stderr);
/// with `CI` set a missing PgBouncer panics, since CI must never skip. Panics when it cannot
/// start. The PgBouncer stops when the returned value is dropped (or the test process exits).
pub async fn pgbouncer_for(db: &TestDb) -> Option<PgBouncer> {
    let Some(program) = pgbouncer_program() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "pgbouncer is not installed, and CI is set, where the PgBouncer tests must never be \
                 skipped: install it (Debian: apt-get install pgbouncer; `cargo xtask ci` does)"
            );
        }
        return None;
    };
    let url = db.url.clone();
    let started = tokio::task::spawn_blocking(move || PgBouncer::start(&program, &url)).await;
    match started {
        Ok(Ok(bouncer)) => Some(bouncer),
        Ok(Err(err)) => panic!("starting PgBouncer failed: {err}"),
        Err(err) => panic!("starting PgBouncer failed: {err}"),
    }
}

/// The server connections a [`PgBouncer`] opens at most per database and user
/// (`default_pool_size`).
pub const PGBOUNCER_POOL_SIZE: usize = 4;

/// A throwaway PgBouncer (`pool_mode = transaction`, `auth_type = trust`) listening on a free
/// port of 127.0.0.1, forwarding every database name to one PostgreSQL server. Run as the
/// `postgres` OS user when running as root (PgBouncer refuses root). Dropping it stops it.
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    user: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncer").field("dir", &self.dir).field("port", &self.port).finish_non_exhaustive()
    }
}

impl PgBouncer {
    /// Starts `program` in front of the server of `upstream_url` (a libpq URI; its user, and
    /// password if any, are the ones PgBouncer logs in with) and waits until it accepts
    /// connections. Blocks.
    pub fn start(program: &Path, upstream_url: &str) -> Result<PgBouncer, String> {
        let upstream: tokio_postgres::Config =
            upstream_url.parse().map_err(|err| format!("cannot parse {}: {err}", redact(upstream_url)))?;
        let host = match upstream.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "127.0.0.1".to_owned(),
        };
        let port = upstream.get_ports().first().copied().unwrap_or(5432);
        let user = upstream.get_user().unwrap_or("postgres").to_owned();
        let password = upstream.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
        // The port is free when probed but may be taken before pgbouncer binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            match PgBouncer::start_once(program, &host, port, &user, &password) {
                Ok(bouncer) => return Ok(bouncer),
                Err(err) => {
                    let retry = err.contains("Address already in use");
                    last = err;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn start_once(program: &Path, host: &str, port: u16, user: &str, password: &str) -> Result<PgBouncer, String> {
        let as_root = is_root();
        let dir = private_dir("coldquery-pgbouncer", as_root)?;
        let listen_port = match free_port() {
            Ok(listen_port) => listen_port,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(err);
            }
        };
        let quoted = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
        let userlist = dir.join("userlist.txt");
        let ini = dir.join("pgbouncer.ini");
        // auth_type = trust still needs the user in auth_file; the password there is what
        // PgBouncer logs in to PostgreSQL with.
        let written = std::fs::write(&userlist, format!("{} {}\n", quoted(user), quoted(password))).and_then(|()| {
            std::fs::write(
                &ini,
                format!(
                    "[databases]\n\
                     * = host={host} port={port}\n\
                     [pgbouncer]\n\
                     listen_addr = 127.0.0.1\n\
                     listen_port = {listen_port}\n\
                     unix_socket_dir =\n\
                     auth_type = trust\n\
                     auth_file = {userlist}\n\
                     admin_users = {admin}\n\
                     pool_mode = transaction\n\
                     default_pool_size = {PGBOUNCER_POOL_SIZE}\n\
                     max_client_conn = 200\n\
                     server_round_robin = 1\n\
                     logfile = {log}\n",
                    userlist = userlist.display(),
                    admin = user,
                    log = dir.join("pgbouncer.log").display(),
                ),
            )
        });
        if let Err(err) = written {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("writing the pgbouncer configuration in {}: {err}", dir.display()));
        }
        if as_root {
            // The log is created by pgbouncer itself, as the postgres user, in its own directory.
            let _ = Command::new("chown").arg("-R").arg("postgres").arg(&dir).status();
        }
        let mut command = as_server_user(as_root, Path::new("sh"));
        command.arg("-c").arg(PGBOUNCER_WATCHDOG).arg("sh").arg(&dir).arg(program).arg(&ini);
        let spawned =
            command.current_dir(&dir).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("starting the pgbouncer watchdog: {err}"));
            }
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // From here on, dropping `bouncer` stops pgbouncer and deletes the directory.
        let bouncer = PgBouncer { dir, port: listen_port, user: user.to_owned(), child, stdin };
        let mut answer = String::new();
        if let Some(stdout) = stdout {
            let _ = BufReader::new(stdout).read_line(&mut answer);
        }
        if answer.trim() != "started" {
            return Err(format!("the pgbouncer watchdog answered {answer:?}"));
        }
        match bouncer.wait_ready() {
            Ok(()) => Ok(bouncer),
            Err(err) => {
                Err(format!("{err}\n--- tail of {} ---\n{}", bouncer.log_path().display(), bouncer.log_tail(20)))
            }
        }
    }

    /// The port PgBouncer listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URI of database `dbname` through this PgBouncer.
    pub fn url_for(&self, dbname: &str) -> String {
        format!("postgresql://{}@127.0.0.1:{}/{dbname}", percent_encode(&self.user), self.port)
    }

    /// PgBouncer's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("pgbouncer.log")
    }

    /// The last `lines` lines of PgBouncer's log (and of its stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        format!("{}\n{}", log_tail(&self.log_path(), lines), log_tail(&self.dir.join("pgbouncer.out"), lines))
    }

    fn wait_ready(&self) -> Result<(), String> {
        let (out, log) = (self.dir.join("pgbouncer.out"), self.log_path());
        // The admin console answers SHOW commands over the simple protocol only.
        wait_ready("pgbouncer", self.url_for("pgbouncer"), "SHOW VERSION", move || {
            let output =
                std::fs::read_to_string(&out).unwrap_or_default() + &std::fs::read_to_string(&log).unwrap_or_default();
            output.lines().find(|line| line.contains("FATAL") || line.contains("ERROR")).map(str::to_owned)
        })
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Closing stdin tells the watchdog to stop PgBouncer and delete the directory.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Polls until the server `what` at `url` answers `probe` (over the simple protocol), `failed`
/// finds a startup failure in its logs, or [`READY_TIMEOUT`] passes.
fn wait_ready(
    what: &'static str,
    url: String,
    probe: &'static str,
    failed: impl Fn() -> Option<String> + Send + 'static,
) -> Result<(), String> {
    block_on_own_thread(move || async move {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last = match try_connect(&url).await {
                Ok((client, task)) => match client.simple_query(probe).await {
                    Ok(_) => {
                        drop(client);
                        let _ = task.await;
                        return Ok(());
                    }
                    Err(err) => err.to_string(),
                },
                Err(err) => err.to_string(),
            };
            if let Some(line) = failed() {
                return Err(format!("{what} failed to start: {line}"));
            }
            if Instant::now() > deadline {
                return Err(format!("{what} did not accept connections within {READY_TIMEOUT:?} (last error: {last})"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Runs the future made by `make` on a new thread with its own current-thread runtime, so it
/// works from sync code, from inside any runtime, and across per-test runtimes.
fn block_on_own_thread<T, F, Fut>(make: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime for the harness");
        runtime.block_on(make())
    });
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Connects with a 10 s timeout and spawns the connection task on the current runtime.
async fn try_connect(url: &str) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(NoTls).await?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

/// A database error with PostgreSQL's own message and SQLSTATE.
fn db_error(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

/// Replaces the database and/or the user and password of a libpq URI (`postgres://` or
/// `postgresql://`) or key/value connection string. The new values must not need
/// percent-encoding (the harness's names and password do not).
fn edit_url(url: &str, dbname: Option<&str>, user: Option<(&str, &str)>) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        let mut out = url.trim_end().to_owned();
        if let Some((user, password)) = user {
            out.push_str(&format!(" user='{user}' password='{password}'"));
        }
        if let Some(dbname) = dbname {
            out.push_str(&format!(" dbname='{dbname}'"));
        }
        return out;
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, remainder) = rest.split_at(authority_end);
    let (path, query) = match remainder.find('?') {
        Some(at) => remainder.split_at(at),
        None => (remainder, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let authority = match user {
        Some((user, password)) => {
            format!("{}:{}@{host}", percent_encode(user), percent_encode(password))
        }
        None => authority.to_owned(),
    };
    let path = match dbname {
        Some(dbname) => format!("/{dbname}"),
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}{query}")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `url` with any URI password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(connection string)".to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, remainder) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let password = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{password}@{host}{remainder}")
        }
        None => url.to_owned(),
    }
}

/// `2 * bytes` random hex digits (std's randomly keyed SipHash, a counter and the clock).
fn random_hex(bytes: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u32(std::process::id());
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
        hasher.write_u128(nanos);
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(bytes * 2);
    out
}

/// A new, empty temporary directory (`<prefix>-<pid>-<random>`) owned by the user the server
/// will run as. As root that is the `postgres` OS user, who must be able to reach the
/// directory: when `TMPDIR` is not reachable for it (say under `/root`), `/tmp` is used instead.
fn private_dir(prefix: &str, as_root: bool) -> Result<PathBuf, String> {
    if as_root {
        let known = Command::new("id")
            .args(["-u", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !known {
            return Err("running as root, the harness starts servers as the `postgres` OS user, \
                        but there is no such user (create it: useradd --system postgres)"
                .to_owned());
        }
    }
    let mut bases = vec![std::env::temp_dir()];
    if as_root && bases[0] != Path::new("/tmp") {
        bases.push(PathBuf::from("/tmp"));
    }
    let mut last = String::new();
    for base in bases {
        let dir = base.join(format!("{prefix}-{}-{}", std::process::id(), random_hex(6)));
        std::fs::create_dir(&dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
        if !as_root {
            return Ok(dir);
        }
        let owned = Command::new("chown")
            .arg("postgres")
            .arg(&dir)
            .status()
            .map_err(|err| format!("chown postgres {}: {err}", dir.display()))
            .and_then(|status| {
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("chown postgres {} failed: {status}", dir.display()))
                }
            });
        if let Err(err) = owned {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err);
        }
        let reachable = Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if reachable {
            return Ok(dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
        last = format!(
            "the `postgres` OS user cannot write to {} (are its parent directories searchable?)",
            dir.display()
        );
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn test_db_is_a_fresh_clone_of_the_fixture() {
        let db = test_db().await;
        assert!(db.name.starts_with("cq_t_") && db.name.len() == 21, "{}", db.name);
        let client = db.client().await;
        let row = client.query_one("SELECT current_database()", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), db.name);
        let extensions: Vec<String> = client
            .query("SELECT extname::text FROM pg_extension ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(extensions.iter().any(|e| e == "hstore"), "{extensions:?}");
        assert!(extensions.iter().any(|e| e == "citext"), "{extensions:?}");
        let value: String = client.query_one("SELECT ('a=>1'::hstore -> 'a')", &[]).await.unwrap().get(0);
        assert_eq!(value, "1");

        // The roles exist and can log in to the clone.
        for role in [RO_ROLE, RW_ROLE, PASSWORD_ROLE] {
            let as_role = db.client_as(role).await;
            let row = as_role.query_one("SELECT current_user::text", &[]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), role);
        }

        // PASSWORD_ROLE checks its password on the harness's own cluster.
        if std::env::var(DATABASE_URL_ENV).is_err() {
            let wrong = try_connect(&password_url(&db, "wrong-pa55word")).await;
            let Err(error) = wrong else {
                panic!("a wrong password was accepted");
            };
            let code = error.code().map(|code| code.code().to_owned());
            assert_eq!(code.as_deref(), Some("28P01"), "{error}");
            let (right, _task) =
                try_connect(&password_url(&db, ROLE_PASSWORD)).await.expect("the right password is accepted");
            right.simple_query("SELECT 1").await.unwrap();
        }

        // A second database is a different, independent clone.
        let other = test_db().await;
        assert_ne!(other.name, db.name);
        client.batch_execute("CREATE TABLE only_here (id int)").await.unwrap();
        let other_client = other.client().await;
        let found = other_client.query_opt("SELECT 1 FROM pg_class WHERE relname = 'only_here'", &[]).await.unwrap();
        assert!(found.is_none());

        // Dropping a TestDb drops its database.
        let name = other.name.clone();
        drop(other_client);
        drop(other);
        let gone = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap();
        assert!(gone.is_none(), "{name} was not dropped");
        assert!(server_url().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_test_dbs_work_across_runtimes() {
        let dbs = futures_join(4).await;
        let mut names: Vec<&str> = dbs.iter().map(|db| db.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 4);
    }

    async fn futures_join(n: usize) -> Vec<TestDb> {
        let handles: Vec<_> = (0..n).map(|_| tokio::spawn(test_db())).collect();
        let mut dbs = Vec::new();
        for handle in handles {
            dbs.push(handle.await.unwrap());
        }
        dbs
    }

    #[tokio::test]
    async fn own_cluster_survives_restart_and_crash() {
        let cluster = tokio::task::spawn_blocking(|| Arc::new(PgCluster::start().unwrap())).await.unwrap();
        let dir = cluster.dir().to_path_buf();
        assert!(dir.join("data/PG_VERSION").is_file());
        let db = test_db_at(&cluster.admin_url()).await;
        let client = db.client().await;
        client.batch_execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)").await.unwrap();

        let port = cluster.port();
        let handle = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || handle.restart()).await.unwrap().unwrap();
        assert_eq!(cluster.port(), port);
        assert!(client.simple_query("SELECT 1").await.is_err(), "old connections die");

        let handle = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || {
            handle.stop(StopMode::Immediate)?;
            handle.start_again()
        })
        .await
        .unwrap()
        .unwrap();
        let client = db.client().await;
        let kept: i32 = client.query_one("SELECT id FROM kept", &[]).await.unwrap().get(0);
        assert_eq!(kept, 1);
        assert!(cluster.log_tail(200).contains("database system was interrupted"));

        drop(client);
        drop(db);
        tokio::task::spawn_blocking(move || drop(cluster)).await.unwrap();
        assert!(!dir.exists(), "dropping the cluster deletes its directory");
    }

    #[test]
    fn urls_are_edited_and_redacted() {
        assert_eq!(
            edit_url("postgresql://postgres@127.0.0.1:5432/postgres", Some("x"), None),
            "postgresql://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            edit_url("postgres://u:p@h:1/db?sslmode=disable", Some("x"), Some(("r", "pw"))),
            "postgres://r:pw@h:1/x?sslmode=disable"
        );
        assert_eq!(edit_url("postgres://h", Some("x"), None), "postgres://h/x");
        assert_eq!(edit_url("host=h user=u", Some("x"), None), "host=h user=u dbname='x'");
        assert_eq!(edit_url("postgres://h/db", None, Some(("r", "p@ss:w/rd"))), "postgres://r:p%40ss%3Aw%2Frd@h/db");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let hex = random_hex(8);
        assert_eq!(hex.len(), 16);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(random_hex(8), hex);
    }
}
