//! A throwaway local PostgreSQL for `--ephemeral` (SPEC §5): `initdb` and `postgres` from
//! `PATH` (or Debian's newest `/usr/lib/postgresql/<version>/bin`) in a temporary directory, on a free port of 127.0.0.1, with a small demo schema —
//! the embedded default a newcomer runs first. Both binaries use it.
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
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::local::{
    POSTGRES_WATCHDOG, as_server_user, find_pg_binary, free_port, is_root, log_tail, pg_stat_statements_installed,
    startup_failure, user_exists,
};

/// The database holding the demo schema.
pub const DEMO_DATABASE: &str = "demo";

/// The superuser the cluster is initialised with.
pub const SUPERUSER: &str = "postgres";

/// How long a starting server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many free ports are tried when another process takes the probed one first.
const PORT_ATTEMPTS: usize = 5;

/// The demo schema: a small shop with keys, foreign keys, indexes, checks, comments, a view
/// and deterministic rows (20 customers, 12 products, 40 orders, 120 order items).
pub const DEMO_SQL: &str = r#"
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    country char(2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE customers IS 'People who place orders.';
COMMENT ON COLUMN customers.country IS 'ISO 3166-1 alpha-2 country code.';

CREATE TABLE products (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    stock integer NOT NULL DEFAULT 0 CHECK (stock >= 0),
    tags text[] NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE products IS 'What the shop sells.';
COMMENT ON COLUMN products.price IS 'Current unit price in EUR.';

CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    placed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_placed_at_idx ON orders (placed_at);
COMMENT ON TABLE orders IS 'One order per checkout.';

CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX order_items_product_id_idx ON order_items (product_id);
COMMENT ON TABLE order_items IS 'The lines of an order, with the price paid.';

CREATE VIEW order_totals AS
SELECT o.id AS order_id, c.name AS customer, o.status, o.placed_at,
       sum(i.quantity * i.unit_price) AS total
FROM orders o
JOIN customers c ON c.id = o.customer_id
JOIN order_items i ON i.order_id = o.id
GROUP BY o.id, c.name;
COMMENT ON VIEW order_totals IS 'Each order with its customer and total.';

INSERT INTO customers (email, name, country, created_at)
SELECT format('customer%s@example.com', n),
       (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'John', 'Margaret', 'Ken'])[1 + (n - 1) % 10]
       || ' ' ||
       (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'McCarthy', 'Hamilton', 'Thompson'])[1 + (n * 3) % 10],
       (ARRAY['GB', 'US', 'DE', 'FR', 'JP'])[1 + n % 5],
       timestamptz '2024-01-01 09:00:00+00' + n * interval '3 days'
FROM generate_series(1, 20) AS n;

INSERT INTO products (sku, name, price, stock, tags) VALUES
    ('KB-001', 'Mechanical keyboard', 89.00, 25, '{hardware,input}'),
    ('MS-002', 'Wireless mouse', 29.50, 60, '{hardware,input}'),
    ('MN-003', '27-inch monitor', 249.99, 8, '{hardware,display}'),
    ('HD-004', 'USB-C hub', 39.90, 40, '{hardware}'),
    ('CB-005', 'Braided cable', 9.99, 200, '{accessory}'),
    ('ST-006', 'Laptop stand', 45.00, 15, '{accessory,ergonomics}'),
    ('HP-007', 'Headphones', 119.00, 12, '{audio}'),
    ('WC-008', 'Webcam', 69.00, 0, '{video}'),
    ('MP-009', 'Mouse pad', 12.00, 80, '{accessory}'),
    ('LP-010', 'Desk lamp', 34.75, 22, '{office}'),
    ('CH-011', 'Office chair', 299.00, 5, '{office,ergonomics}'),
    ('NB-012', 'Notebook', 4.50, 500, '{office,paper}');

INSERT INTO orders (customer_id, status, placed_at)
SELECT 1 + (n * 7) % 20,
       (ARRAY['pending', 'paid', 'shipped', 'shipped', 'cancelled'])[1 + n % 5],
       timestamptz '2025-01-01 10:00:00+00' + n * interval '1 day 3 hours'
FROM generate_series(1, 40) AS n;

INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT o.id, p.id, 1 + (o.id + k) % 4, p.price
FROM orders o
CROSS JOIN generate_series(0, 2) AS k
JOIN products p ON p.id = 1 + (o.id * 3 + k * 5) % 12;

ANALYZE;
"#;

/// A running throwaway PostgreSQL with the demo schema. Stopped and deleted by
/// [`Ephemeral::stop`], on drop, or when this process exits.
pub struct Ephemeral {
    dir: PathBuf,
    port: u16,
    url: String,
    watchdog: Option<Watchdog>,
}

struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
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

impl Drop for Ephemeral {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.finish();
        }
    }
}

impl Watchdog {
    fn command(&mut self, line: &str, reply: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the postgres watchdog is closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the postgres watchdog: {e}"))?;
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).map_err(|e| format!("reading from the postgres watchdog: {e}"))?;
        if answer.trim() == reply {
            Ok(())
        } else {
            Err(format!("the postgres watchdog answered {answer:?} to {line:?}"))
        }
    }

    /// Closes the pipe (the watchdog stops postgres and deletes the directory) and waits.
    fn finish(mut self) -> Result<(), String> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|e| format!("waiting for the postgres watchdog: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("the postgres watchdog exited with {status}")) }
    }
}

/// Creates the directory, runs `initdb`, writes the configuration and starts the watchdog.
fn prepare() -> Result<(PathBuf, Watchdog), String> {
    let initdb = find_pg_binary("initdb").ok_or_else(|| missing("initdb"))?;
    let postgres = find_pg_binary("postgres").ok_or_else(|| missing("postgres"))?;
    let as_root = is_root();
    if as_root && !user_exists(SUPERUSER) {
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
            .arg(SUPERUSER)
            .arg(dir)
            .status()
            .map_err(|e| format!("chown {SUPERUSER} {}: {e}", dir.display()))?;
        if !status.success() {
            return Err(format!("chown {SUPERUSER} {} failed: {status}", dir.display()));
        }
    }
    let data = dir.join("data");
    let output = as_server_user(as_root, initdb)
        .args(["-A", "trust", "--nosync", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "-D"])
        .arg(&data)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // Only the private socket directory and the loopback address; never another interface.
    let hba = data.join("pg_hba.conf");
    std::fs::write(&hba, "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        .map_err(|e| format!("writing {}: {e}", hba.display()))?;

    let mut settings = vec![
        "listen_addresses=127.0.0.1".to_owned(),
        format!("unix_socket_directories={}", dir.display()),
        "unix_socket_permissions=0700".to_owned(),
        "fsync=off".to_owned(),
        "synchronous_commit=off".to_owned(),
        "full_page_writes=off".to_owned(),
        "shared_buffers=32MB".to_owned(),
        "timezone=UTC".to_owned(),
        "logging_collector=off".to_owned(),
        // Start-up failures are read from the log's text (`local::startup_failure`, a port
        // taken): the cluster is ColdQuery's own, and its log speaks English whatever the
        // environment's locale.
        "lc_messages=C".to_owned(),
    ];
    if pg_stat_statements_installed(postgres) {
        settings.push("shared_preload_libraries=pg_stat_statements".to_owned());
    }
    let mut command = as_server_user(as_root, Path::new("sh"));
    command.arg("-c").arg(POSTGRES_WATCHDOG).arg("sh").arg(dir).arg(postgres).arg("-D").arg(&data);
    for setting in &settings {
        command.arg("-c").arg(setting);
    }
    let mut child = command
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: a terminal's Ctrl-C must not kill the watchdog before it
        // has cleaned up.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the postgres watchdog: {e}"))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the postgres watchdog has no stdin/stdout pipe".to_owned());
    };
    Ok(Watchdog { child, stdin: Some(stdin), stdout: BufReader::new(stdout) })
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

    /// `deploy/demo-schema.sql` (what the development stack loads), below its leading comment
    /// lines, is [`DEMO_SQL`] exactly.
    #[test]
    fn the_deployment_demo_schema_is_this_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo-schema.sql");
        let text = std::fs::read_to_string(&path).expect("deploy/demo-schema.sql is readable");
        let body: String = text.split_inclusive('\n').skip_while(|line| line.starts_with("--")).collect();
        assert!(
            body == DEMO_SQL.trim_start_matches('\n'),
            "deploy/demo-schema.sql differs from coldquery_pg::ephemeral::DEMO_SQL: copy it again (keep the comment lines on top)"
        );
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
