//! The measuring side of `cargo xtask bench` (SPEC §8): it creates the benchmark tables, then
//! times the same work done by the raw driver (tokio-postgres in-process), by the tools library
//! in-process (`Tools::call` over coldquery-pg), by the real `coldquery-mcp` binary over stdio
//! with rmcp's client, and over streamable HTTP with one keep-alive connection and with 16; and,
//! through the same stdio client, by the Node reference server of issue 13
//! (`@modelcontextprotocol/server-postgres`: a `query` tool whose result is the rows as
//! pretty-printed JSON text, all of them). It writes raw measurements as JSON; the xtask adds
//! pgbench, computes ratios and prints the table. It is not a test: nothing here asserts a time.
//!
//! ```sh
//! bench_client --database-url URL --server target/release/coldquery-mcp --pg-log DIR/postgres.log \
//!     --node PATH/bin/node --node-reference PATH/server-postgres/dist/index.js \
//!     --out measurements.json [--smoke]
//! bench_client floor-server   # internal: a trivial MCP server over stdio, the client's floor
//! bench_client floor-http-server ADDR   # internal: the same server over rmcp's streamable HTTP
//! ```
//!
//! Variants of one scenario run interleaved, in rounds of a few calls each, so that a noisy
//! (shared) machine slows them alike and their ratios stay meaningful within one run.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coldquery_core::{DefaultDeny, Owner};
use coldquery_pg::{Database, PgConfig, PgOptions};
use coldquery_tools::{Caller, ToolConfig, Tools};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{Peer, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::process::Command;
use tokio::sync::Mutex;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// What one call returned: rows and whether the result was cut short.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    rows: u64,
    truncated: bool,
}

type Call = Pin<Box<dyn Future<Output = Result<Outcome, String>>>>;

/// One way of doing a scenario's work, called repeatedly.
struct Variant {
    name: &'static str,
    label: &'static str,
    op: Box<dyn FnMut() -> Call>,
}

fn variant<F, Fut>(name: &'static str, label: &'static str, mut f: F) -> Variant
where
    F: FnMut() -> Fut + 'static,
    Fut: Future<Output = Result<Outcome, String>> + 'static,
{
    Variant { name, label, op: Box::new(move || Box::pin(f())) }
}

/// How long a scenario runs: each variant is called until it has `calls` timed calls or the
/// scenario has spent `budget` (and then at least `min_calls`), after `warmup` untimed calls.
#[derive(Debug, Clone, Copy)]
struct Plan {
    warmup: usize,
    batch: usize,
    calls: usize,
    min_calls: usize,
    budget: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Smoke,
}

impl Mode {
    fn plan(self, calls: usize, budget_s: u64) -> Plan {
        match self {
            Mode::Full => Plan { warmup: 10, batch: 10, calls, min_calls: 20, budget: Duration::from_secs(budget_s) },
            Mode::Smoke => Plan { warmup: 0, batch: 2, calls: 2, min_calls: 2, budget: Duration::from_secs(30) },
        }
    }
}

struct Options {
    mode: Mode,
    database_url: String,
    server: PathBuf,
    node: NodeReference,
    pg_log: Option<PathBuf>,
    out: PathBuf,
}

/// The Node reference server: `node SCRIPT DATABASE_URL`.
struct NodeReference {
    node: PathBuf,
    script: PathBuf,
}

fn parse_options() -> BoxResult<Options> {
    let mut args = std::env::args().skip(1);
    let (mut mode, mut database_url, mut server, mut pg_log, mut out) = (Mode::Full, None, None, None, None);
    let (mut node, mut node_script) = (None, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--smoke" => mode = Mode::Smoke,
            "--database-url" => database_url = Some(value()?),
            "--server" => server = Some(PathBuf::from(value()?)),
            "--pg-log" => pg_log = Some(PathBuf::from(value()?)),
            "--node" => node = Some(PathBuf::from(value()?)),
            "--node-reference" => node_script = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(Options {
        mode,
        database_url: database_url.ok_or("--database-url is required")?,
        server: server.ok_or("--server is required")?,
        node: NodeReference {
            node: node.ok_or("--node is required")?,
            script: node_script.ok_or("--node-reference is required")?,
        },
        pg_log,
        out: out.ok_or("--out is required")?,
    })
}

fn main() -> BoxResult<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("floor-server") => return floor_server(),
        Some("floor-http-server") => return floor_http_server(&args.next().ok_or("floor-http-server needs ADDR")?),
        _ => {}
    }
    let options = parse_options()?;
    // One thread: the client side should cost as little as it can and never compete with
    // itself; the server under test runs in its own process.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(measure(&options))?;
    std::fs::write(&options.out, serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tables

/// Rows of the "large" capped-read table: a million in a full run, a few thousand in a smoke.
fn large_rows(mode: Mode) -> u64 {
    match mode {
        Mode::Full => 1_000_000,
        Mode::Smoke => 5_000,
    }
}

async fn create_tables(side: &tokio_postgres::Client, mode: Mode) -> BoxResult<()> {
    let large = large_rows(mode);
    side.batch_execute(&format!(
        "DROP TABLE IF EXISTS bench_1k, bench_1m, bench_100k, bench_10k_10, bench_writes;
         CREATE TABLE bench_1k (id int PRIMARY KEY, label text NOT NULL, score float8 NOT NULL);
         INSERT INTO bench_1k SELECT n, md5(n::text), n / 7.0 FROM generate_series(1, 1000) AS n;
         CREATE TABLE bench_1m (id int PRIMARY KEY, label text NOT NULL, score float8 NOT NULL);
         INSERT INTO bench_1m SELECT n, md5(n::text), n / 7.0 FROM generate_series(1, {large}) AS n;
         CREATE TABLE bench_100k (id int PRIMARY KEY, label text NOT NULL, score float8 NOT NULL);
         INSERT INTO bench_100k SELECT n, left(md5(n::text), 10), n / 7.0 FROM generate_series(1, 100000) AS n;
         CREATE TABLE bench_10k_10 (id int PRIMARY KEY, a int, b int, c int, d int, e bigint,
             f float8, g float8, h text, i text);
         INSERT INTO bench_10k_10 SELECT n, n % 7, n % 101, n * 3, -n, n::bigint * 1000003,
             n / 3.0, sqrt(n), left(md5(n::text), 8), 'row ' || n FROM generate_series(1, 10000) AS n;
         CREATE TABLE bench_writes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int NOT NULL);"
    ))
    .await?;
    // VACUUM and ALTER SYSTEM refuse to run in the implicit transaction of a multi-statement
    // message: one message each.
    side.batch_execute("VACUUM ANALYZE bench_1k, bench_1m, bench_100k, bench_10k_10").await?;
    // Every connection, CancelRequests included, becomes a "connection received" log line:
    // that is how the capped reads' extra connections are counted.
    side.batch_execute("ALTER SYSTEM SET log_connections = on").await?;
    side.batch_execute("SELECT pg_reload_conf()").await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Clients of the three ways in

async fn raw_client(url: &str) -> BoxResult<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

type Mcp = RunningService<RoleClient, ()>;

/// The byte budget of every measured result: the whole response message of a 10 000 × 10 read
/// (two copies of rows as JSON objects) is about 3 MB, over the 1 MiB default, and the
/// scenarios measure reading all of it.
const RESULT_BUDGET: usize = 16 * 1024 * 1024;

/// A program with a clean environment (only PATH and HOME), killed when dropped.
fn clean_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for name in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    command.kill_on_drop(true);
    command
}

/// The binary with a clean environment: only PATH, HOME, `DATABASE_URL` and the result budget,
/// so the default log level and the other settings are the ones measured.
fn server_command(server: &Path, url: &str) -> Command {
    let mut command = clean_command(server);
    command.env("DATABASE_URL", url);
    command.env("COLDQUERY_MAX_RESULT_BYTES", RESULT_BUDGET.to_string());
    command
}

/// The server's log file, appended to.
fn log_file(log: &Path) -> BoxResult<Stdio> {
    Ok(Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(log)?))
}

/// A stdio client of a fresh server process; returns it with the server's pid.
async fn stdio_client(server: &Path, url: &str, log: &Path) -> BoxResult<(Mcp, u32)> {
    let command = server_command(server, url);
    let (transport, _) = TokioChildProcess::builder(command).stderr(log_file(log)?).spawn()?;
    let pid = transport.id().ok_or("the server has no pid")?;
    let client = ().serve(transport).await?;
    Ok((client, pid))
}

/// A stdio client of a fresh Node reference server (`node SCRIPT URL`, the database URL as its
/// argument, a clean environment); returns it with the server's pid.
async fn node_client(node: &NodeReference, url: &str, log: &Path) -> BoxResult<(Mcp, u32)> {
    let mut command = clean_command(&node.node);
    command.arg(&node.script).arg(url);
    let (transport, _) = TokioChildProcess::builder(command).stderr(log_file(log)?).spawn()?;
    let pid = transport.id().ok_or("the Node server has no pid")?;
    let client = ().serve(transport).await?;
    Ok((client, pid))
}

/// Stops a Node reference server: once it has connected, it does not exit when its stdin closes
/// (its pool keeps the idle connection open), and rmcp's client waits 3 s before signalling it.
async fn stop_node(client: Mcp, pid: u32) -> BoxResult<()> {
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
    client.cancel().await?;
    Ok(())
}

/// A trivial MCP server over stdio (this program with `floor-server`): what rmcp's client and
/// a process boundary cost without any database work.
async fn floor_client() -> BoxResult<Mcp> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("floor-server").kill_on_drop(true);
    let (transport, _) = TokioChildProcess::builder(command).stderr(Stdio::inherit()).spawn()?;
    Ok(().serve(transport).await?)
}

struct HttpServer {
    child: tokio::process::Child,
    url: String,
}

async fn http_server(server: &Path, url: &str, log: &Path) -> BoxResult<HttpServer> {
    let listen = free_address()?;
    let mut command = server_command(server, url);
    command.args(["--transport", "http", "--listen", &listen]).stdin(Stdio::null()).stdout(Stdio::null());
    command.stderr(log_file(log)?);
    let child = command.spawn()?;
    answering(child, &listen, "/health").await
}

fn free_address() -> BoxResult<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(format!("127.0.0.1:{port}"))
}

/// Waits until `child`, listening on `listen`, answers a GET of `probe` (any status).
async fn answering(child: tokio::process::Child, listen: &str, probe: &str) -> BoxResult<HttpServer> {
    let probe = format!("http://{listen}{probe}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http.get(&probe).send().await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("nothing answered {probe} within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(HttpServer { child, url: format!("http://{listen}/mcp") })
}

/// The floor server over streamable HTTP (this program with `floor-http-server`): what rmcp's
/// HTTP client and server cost per call without any database work.
async fn floor_http() -> BoxResult<HttpServer> {
    let listen = free_address()?;
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["floor-http-server", &listen]).stdin(Stdio::null()).stdout(Stdio::null()).kill_on_drop(true);
    answering(command.spawn()?, &listen, "/mcp").await
}

/// An MCP client over streamable HTTP: rmcp's reqwest client, one keep-alive connection.
async fn http_client(url: &str) -> BoxResult<Mcp> {
    Ok(().serve(StreamableHttpClientTransport::from_uri(url.to_owned())).await?)
}

// ---------------------------------------------------------------------------------------------
// Operations

fn outcome_of(value: &Value) -> Result<Outcome, String> {
    Ok(Outcome {
        rows: value.get("row_count").and_then(Value::as_u64).unwrap_or(0),
        truncated: value.get("truncated").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// A library call's result, or its error as the MCP variant reports it.
fn library_value(output: coldquery_tools::ToolOutput) -> Result<Value, String> {
    output.value().map_err(|error| format!("tool error: {}", error.to_json()["error"]))
}

fn arguments(value: Value) -> rmcp::model::JsonObject {
    value.as_object().cloned().unwrap_or_default()
}

async fn mcp_call(peer: &Peer<RoleClient>, tool: &'static str, args: &Value) -> Result<Value, String> {
    let result: CallToolResult = peer
        .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments(args.clone())))
        .await
        .map_err(|e| format!("tools/call {tool}: {e}"))?;
    let value = result.structured_content.unwrap_or(Value::Null);
    if result.is_error == Some(true) {
        return Err(format!("tool error: {}", value.get("error").unwrap_or(&value)));
    }
    Ok(value)
}

fn mcp_read(name: &'static str, label: &'static str, peer: &Peer<RoleClient>, args: Value) -> Variant {
    let peer = peer.clone();
    variant(name, label, move || {
        let (peer, args) = (peer.clone(), args.clone());
        async move {
            let value = mcp_call(&peer, "pg_query", &args).await?;
            outcome_of(&value)
        }
    })
}

/// A `query` call to the Node reference server. Its result is only text, the rows as a
/// pretty-printed JSON array; they are parsed here (as rmcp parses ColdQuery's structured rows).
async fn node_call(peer: &Peer<RoleClient>, sql: &str) -> Result<Outcome, String> {
    let result: CallToolResult = peer
        .call_tool(CallToolRequestParams::new("query").with_arguments(arguments(json!({"sql": sql}))))
        .await
        .map_err(|e| format!("tools/call query: {e}"))?;
    let text = result.content.first().and_then(|c| c.as_text()).map(|t| t.text.as_str()).unwrap_or_default();
    if result.is_error == Some(true) {
        return Err(format!("tool error: {text}"));
    }
    let rows: Value = serde_json::from_str(text).map_err(|e| format!("the result's text is not JSON: {e}"))?;
    let rows = rows.as_array().ok_or("the result's text is not a JSON array of rows")?;
    Ok(Outcome { rows: rows.len() as u64, truncated: false })
}

fn node_read(peer: &Peer<RoleClient>, sql: &'static str) -> Variant {
    let peer = peer.clone();
    variant("node_stdio", "Node reference server over stdio (all rows, JSON text)", move || {
        let peer = peer.clone();
        async move { node_call(&peer, sql).await }
    })
}

fn library_read(tools: &Tools, caller: &Caller, args: Value) -> Variant {
    let (tools, caller) = (tools.clone(), caller.clone());
    variant("library", "library (Tools::call)", move || {
        let (tools, caller, args) = (tools.clone(), caller.clone(), args.clone());
        async move {
            let output = tools.call(&caller, "pg_query", args).await.map_err(|e| e.to_string())?;
            // The result as `Tools::call` gives it: the rows stay JSON text (the tree of values
            // is built only when asked for, by `ToolOutput::value`).
            if let Some(error) = output.error() {
                return Err(format!("tool error: {}", error.to_json()["error"]));
            }
            Ok(Outcome {
                rows: output.member("row_count").and_then(Value::as_u64).unwrap_or(0),
                truncated: output.member("truncated").and_then(Value::as_bool).unwrap_or(false),
            })
        }
    })
}

type Raw = Arc<Mutex<tokio_postgres::Client>>;

/// The fair raw sequence of a read: BEGIN READ ONLY, the query, ROLLBACK; with a cap, the
/// rows come from a portal with a row count (what a server that stops early would do).
fn raw_tx_read(raw: &Raw, sql: &'static str, cap: Option<i32>) -> Variant {
    let raw = raw.clone();
    variant("raw_tx", "raw: BEGIN READ ONLY / query / ROLLBACK", move || {
        let raw = raw.clone();
        async move {
            let mut client = raw.lock().await;
            let tx = client.build_transaction().read_only(true).start().await.map_err(|e| e.to_string())?;
            let outcome = match cap {
                None => {
                    let rows = tx.query(sql, &[]).await.map_err(|e| e.to_string())?;
                    Outcome { rows: rows.len() as u64, truncated: false }
                }
                Some(cap) => {
                    let portal = tx.bind(sql, &[]).await.map_err(|e| e.to_string())?;
                    let rows = tx.query_portal(&portal, cap).await.map_err(|e| e.to_string())?;
                    Outcome { rows: rows.len() as u64, truncated: rows.len() as i64 >= i64::from(cap) }
                }
            };
            tx.rollback().await.map_err(|e| e.to_string())?;
            Ok(outcome)
        }
    })
}

/// A plain `query` (Parse/Describe, then Bind/Execute), no transaction; a capped read is the
/// same SQL with a LIMIT.
fn raw_plain_read(raw: &Raw, sql: &'static str) -> Variant {
    let raw = raw.clone();
    variant("raw_plain", "raw: query", move || {
        let raw = raw.clone();
        async move {
            let client = raw.lock().await;
            let rows = client.query(sql, &[]).await.map_err(|e| e.to_string())?;
            Ok(Outcome { rows: rows.len() as u64, truncated: false })
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Timing

#[derive(Debug, Default)]
struct Samples {
    micros: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
    last: Outcome,
}

impl Samples {
    fn record(&mut self, started: Instant, result: Result<Outcome, String>) {
        match result {
            Ok(outcome) => {
                self.micros.push(started.elapsed().as_secs_f64() * 1e6);
                self.last = outcome;
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn summary(&self) -> Value {
        let mut sorted = self.micros.clone();
        sorted.sort_by(f64::total_cmp);
        let total: f64 = sorted.iter().sum();
        let mean = if sorted.is_empty() { 0.0 } else { total / sorted.len() as f64 };
        json!({
            "calls": sorted.len(),
            "errors": self.errors,
            "first_error": self.first_error,
            "p50_us": percentile(&sorted, 0.50),
            "p99_us": percentile(&sorted, 0.99),
            "mean_us": round(mean),
            "calls_per_s": if mean > 0.0 { round(1e6 / mean) } else { 0.0 },
            "rows": self.last.rows,
            "truncated": self.last.truncated,
        })
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    round(sorted[rank - 1])
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs the variants interleaved (see the module docs) and summarises each.
async fn scenario(name: &str, title: &str, plan: Plan, mut variants: Vec<Variant>) -> Value {
    eprintln!("bench: {title}");
    let mut samples: Vec<Samples> = variants.iter().map(|_| Samples::default()).collect();
    for v in &mut variants {
        for _ in 0..plan.warmup {
            let _ = (v.op)().await;
        }
    }
    let started = Instant::now();
    loop {
        let done = samples.iter().all(|s| s.micros.len() + s.errors as usize >= plan.calls);
        let out_of_time = started.elapsed() > plan.budget
            && samples.iter().all(|s| s.micros.len() + s.errors as usize >= plan.min_calls);
        if done || out_of_time {
            break;
        }
        for (v, s) in variants.iter_mut().zip(&mut samples) {
            for _ in 0..plan.batch {
                let call_started = Instant::now();
                let result = (v.op)().await;
                s.record(call_started, result);
            }
        }
    }
    let variants: Vec<Value> = variants
        .iter()
        .zip(&samples)
        .map(|(v, s)| {
            let mut summary = s.summary();
            summary["name"] = json!(v.name);
            summary["label"] = json!(v.label);
            summary
        })
        .collect();
    json!({"name": name, "title": title, "variants": variants})
}

// ---------------------------------------------------------------------------------------------
// Process measurements

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User plus system CPU time of a process so far, in microseconds (from `/proc/<pid>/stat`,
/// in clock ticks of 10 ms).
fn cpu_us(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10_000.0)
}

/// "connection received" lines in the PostgreSQL log so far.
fn connections_logged(log: Option<&Path>) -> Option<u64> {
    let text = std::fs::read(log?).ok()?;
    let needle = b"connection received";
    Some(text.windows(needle.len()).filter(|w| w == needle).count() as u64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() { 0.0 } else { round(values[values.len() / 2]) }
}

/// Start-up times of fresh server processes: spawn to a completed `initialize`, and to the
/// first `SELECT 1` answered.
#[derive(Debug, Default)]
struct Startups {
    initialize_ms: Vec<f64>,
    first_select1_ms: Vec<f64>,
}

impl Startups {
    fn push(&mut self, initialized: Duration, answered: Duration) {
        self.initialize_ms.push(initialized.as_secs_f64() * 1e3);
        self.first_select1_ms.push(answered.as_secs_f64() * 1e3);
    }

    fn summary(&self) -> Value {
        let samples = |values: &[f64]| values.iter().map(|x| round(*x)).collect::<Vec<_>>();
        json!({
            "samples_ms": samples(&self.initialize_ms),
            "median_ms": median(self.initialize_ms.clone()),
            "first_select1_samples_ms": samples(&self.first_select1_ms),
            "first_select1_median_ms": median(self.first_select1_ms.clone()),
        })
    }
}

/// A call's rows, checked: the memory and start-up runs time nothing, but must have read what
/// they should.
fn expect_rows(outcome: Outcome, rows: u64, what: &str) -> BoxResult<()> {
    if outcome.rows != rows {
        return Err(format!("{what}: {} rows, expected {rows}", outcome.rows).into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run

const SELECT_1: &str = "SELECT 1";
const READ_10K: &str = "SELECT * FROM bench_10k_10";
const READ_100K: &str = "SELECT * FROM bench_100k";
const READ_100K_LIMIT_500: &str = "SELECT * FROM bench_100k LIMIT 500";
const READ_100K_LIMIT_10000: &str = "SELECT * FROM bench_100k LIMIT 10000";
const READ_1K: &str = "SELECT * FROM bench_1k";
const READ_1K_LIMIT_500: &str = "SELECT * FROM bench_1k LIMIT 500";
const READ_1M: &str = "SELECT * FROM bench_1m";
const READ_1M_LIMIT_500: &str = "SELECT * FROM bench_1m LIMIT 500";
const INSERT: &str = "INSERT INTO bench_writes (v) VALUES ($1)";

async fn measure(options: &Options) -> BoxResult<Value> {
    let mode = options.mode;
    let url = options.database_url.as_str();
    let log_dir = options.out.parent().map(Path::to_path_buf).unwrap_or_default();
    let stdio_log = log_dir.join("server-stdio.log");
    let node_log = log_dir.join("server-node.log");
    let http_log = log_dir.join("server-http.log");
    let pg_log = options.pg_log.as_deref();

    let side = raw_client(url).await?;
    eprintln!("bench: creating tables ({} rows in bench_1m)", large_rows(mode));
    let setup_started = Instant::now();
    create_tables(&side, mode).await?;
    eprintln!("bench: tables ready in {:.1?}", setup_started.elapsed());

    let raw: Raw = Arc::new(Mutex::new(raw_client(url).await?));
    let config = PgConfig::from_env_and_url(Some(url), &|_| None)?;
    let database = Database::connect(&config, &PgOptions::default()).await?;
    let tools = Tools::new(
        database.executor,
        database.sessions,
        Arc::new(DefaultDeny { read_only: false }),
        ToolConfig { max_result_bytes: RESULT_BUDGET, ..ToolConfig::default() },
    );
    let caller = Caller::new(Owner::new("bench"), "bench");

    // Start-up to a completed `initialize`, and to the first `SELECT 1` answered (the Node server
    // connects to PostgreSQL at its first call), each in a fresh process, the two servers in turn.
    let startup_samples = if mode == Mode::Full { 10 } else { 1 };
    let repeat = if mode == Mode::Full { 3 } else { 1 };
    let (mut startups, mut node_startups) = (Startups::default(), Startups::default());
    for _ in 0..startup_samples {
        let started = Instant::now();
        let (client, _) = stdio_client(&options.server, url, &stdio_log).await?;
        let initialized = started.elapsed();
        mcp_call(client.peer(), "pg_query", &json!({"action": "read", "sql": SELECT_1})).await?;
        startups.push(initialized, started.elapsed());
        client.cancel().await?;

        let started = Instant::now();
        let (client, pid) = node_client(&options.node, url, &node_log).await?;
        let initialized = started.elapsed();
        expect_rows(node_call(client.peer(), SELECT_1).await?, 1, "the Node server's first SELECT 1")?;
        node_startups.push(initialized, started.elapsed());
        stop_node(client, pid).await?;
    }
    let startup = startups.summary();

    // Memory: a fresh stdio server, idle, then after the 100 000-row read at the ceiling, then
    // after the 10 000 x 10 read.
    let memory = {
        let (client, pid) = stdio_client(&options.server, url, &stdio_log).await?;
        let peer = client.peer().clone();
        mcp_call(&peer, "pg_query", &json!({"action": "read", "sql": SELECT_1})).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (idle, _) = memory_kib(pid);
        for _ in 0..repeat {
            mcp_call(&peer, "pg_query", &json!({"action": "read", "sql": READ_100K, "max_rows": 10000})).await?;
        }
        let (after_100k, peak_100k) = memory_kib(pid);
        for _ in 0..repeat {
            mcp_call(&peer, "pg_query", &json!({"action": "read", "sql": READ_10K, "max_rows": 10000})).await?;
        }
        let (after_10k, peak_10k) = memory_kib(pid);
        client.cancel().await?;
        json!({
            "idle_rss_kib": idle,
            "after_100k_rss_kib": after_100k,
            "peak_after_100k_kib": peak_100k,
            "after_10k_rss_kib": after_10k,
            "peak_after_10k_kib": peak_10k,
        })
    };

    // The same for the Node server, the same reads in the same order: as it has no row cap, the
    // 100 000-row table with LIMIT 10000 (ColdQuery's 10 000 rows at its ceiling); then, once, the
    // whole 100 000-row table, what it answers to the SQL ColdQuery caps.
    let memory_node = {
        let (client, pid) = node_client(&options.node, url, &node_log).await?;
        let peer = client.peer().clone();
        expect_rows(node_call(&peer, SELECT_1).await?, 1, "SELECT 1")?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (idle, _) = memory_kib(pid);
        for _ in 0..repeat {
            expect_rows(node_call(&peer, READ_100K_LIMIT_10000).await?, 10_000, READ_100K_LIMIT_10000)?;
        }
        let (after_100k, peak_100k) = memory_kib(pid);
        for _ in 0..repeat {
            expect_rows(node_call(&peer, READ_10K).await?, 10_000, READ_10K)?;
        }
        let (after_10k, peak_10k) = memory_kib(pid);
        expect_rows(node_call(&peer, READ_100K).await?, 100_000, READ_100K)?;
        let (after_100k_all, peak_100k_all) = memory_kib(pid);
        stop_node(client, pid).await?;
        json!({
            "idle_rss_kib": idle,
            "after_100k_limit_10000_rss_kib": after_100k,
            "peak_after_100k_limit_10000_kib": peak_100k,
            "after_10k_rss_kib": after_10k,
            "peak_after_10k_kib": peak_10k,
            "after_100k_all_rows_rss_kib": after_100k_all,
            "peak_after_100k_all_rows_kib": peak_100k_all,
        })
    };

    let (stdio, stdio_pid) = stdio_client(&options.server, url, &stdio_log).await?;
    let stdio_peer = stdio.peer().clone();
    let (node, node_pid) = node_client(&options.node, url, &node_log).await?;
    let node_peer = node.peer().clone();
    let floor = floor_client().await?;
    let floor_peer = floor.peer().clone();
    let mut floor_http = floor_http().await?;
    let floor_http_client = http_client(&floor_http.url).await?;
    let floor_http_peer = floor_http_client.peer().clone();
    let mut http = http_server(&options.server, url, &http_log).await?;
    let http_pid = http.child.id().ok_or("the HTTP server has no pid")?;
    let (http_idle_rss, _) = memory_kib(http_pid);
    let http_client_1 = http_client(&http.url).await?;
    let http_peer = http_client_1.peer().clone();

    let mut scenarios = Vec::new();
    let read = |sql: &str, max_rows: Option<u64>| match max_rows {
        Some(n) => json!({"action": "read", "sql": sql, "max_rows": n}),
        None => json!({"action": "read", "sql": sql}),
    };

    // SELECT 1, and the client's floor: the same call answered without a database.
    {
        let args = read(SELECT_1, None);
        let floor_peer = floor_peer.clone();
        let floor = variant("floor_stdio", "MCP client floor (trivial stdio server)", move || {
            let peer = floor_peer.clone();
            async move { mcp_call(&peer, "noop", &json!({})).await.map(|_| Outcome { rows: 1, truncated: false }) }
        });
        let floor_http = variant("floor_http", "MCP client floor over HTTP (trivial rmcp HTTP server)", move || {
            let peer = floor_http_peer.clone();
            async move { mcp_call(&peer, "noop", &json!({})).await.map(|_| Outcome { rows: 1, truncated: false }) }
        });
        let (cpu_before, node_cpu_before) = (cpu_us(stdio_pid), cpu_us(node_pid));
        let mut select1 = scenario(
            "select1",
            "SELECT 1",
            mode.plan(3000, 25),
            vec![
                raw_tx_read(&raw, SELECT_1, None),
                raw_plain_read(&raw, SELECT_1),
                library_read(&tools, &caller, args.clone()),
                mcp_read("stdio", "coldquery-mcp over stdio", &stdio_peer, args.clone()),
                node_read(&node_peer, SELECT_1),
                mcp_read("http", "coldquery-mcp over HTTP, one keep-alive connection", &http_peer, args),
                floor,
                floor_http,
            ],
        )
        .await;
        // Each server does nothing but these calls meanwhile: its CPU time over their number.
        let per_call = |name: &str, pid: u32, before: Option<f64>| {
            let calls = select1["variants"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == name))
                .and_then(|v| v["calls"].as_u64())
                .unwrap_or(0)
                + mode.plan(3000, 25).warmup as u64;
            json!(before.zip(cpu_us(pid)).filter(|_| calls > 0).map(|(b, a)| round((a - b) / calls as f64)))
        };
        let (stdio_cpu, node_cpu) =
            (per_call("stdio", stdio_pid, cpu_before), per_call("node_stdio", node_pid, node_cpu_before));
        select1["stdio_server_cpu_us_per_call"] = stdio_cpu;
        select1["node_server_cpu_us_per_call"] = node_cpu;
        scenarios.push(select1);
    }

    scenarios.push(
        scenario(
            "read_10k_10",
            "10 000 rows x 10 columns (max_rows 10000)",
            mode.plan(60, 25),
            vec![
                raw_tx_read(&raw, READ_10K, None),
                raw_plain_read(&raw, READ_10K),
                library_read(&tools, &caller, read(READ_10K, Some(10000))),
                mcp_read("stdio", "coldquery-mcp over stdio", &stdio_peer, read(READ_10K, Some(10000))),
                node_read(&node_peer, READ_10K),
                mcp_read(
                    "http",
                    "coldquery-mcp over HTTP, one keep-alive connection",
                    &http_peer,
                    read(READ_10K, Some(10000)),
                ),
            ],
        )
        .await,
    );

    scenarios.push(
        scenario(
            "read_100k_default_cap",
            "100 000-row table, default cap (500 rows)",
            mode.plan(300, 15),
            vec![
                raw_tx_read(&raw, READ_100K, Some(500)),
                raw_plain_read(&raw, READ_100K_LIMIT_500),
                library_read(&tools, &caller, read(READ_100K, None)),
                mcp_read("stdio", "coldquery-mcp over stdio", &stdio_peer, read(READ_100K, None)),
            ],
        )
        .await,
    );

    scenarios.push(
        scenario(
            "read_100k_ceiling",
            "100 000-row table, cap at the ceiling (max_rows 10000)",
            mode.plan(60, 20),
            vec![
                raw_tx_read(&raw, READ_100K, Some(10000)),
                raw_plain_read(&raw, READ_100K_LIMIT_10000),
                library_read(&tools, &caller, read(READ_100K, Some(10000))),
                mcp_read("stdio", "coldquery-mcp over stdio", &stdio_peer, read(READ_100K, Some(10000))),
            ],
        )
        .await,
    );

    let mut capped_connections = serde_json::Map::new();
    for (name, title, sql, limited) in [
        ("capped_1k", "capped read (max_rows 500), 1 000-row table", READ_1K, READ_1K_LIMIT_500),
        ("capped_1m", "capped read (max_rows 500), large table", READ_1M, READ_1M_LIMIT_500),
    ] {
        let before = connections_logged(pg_log);
        let mut result = scenario(
            name,
            title,
            mode.plan(300, 15),
            vec![
                raw_tx_read(&raw, sql, Some(500)),
                raw_plain_read(&raw, limited),
                library_read(&tools, &caller, read(sql, Some(500))),
                mcp_read("stdio", "coldquery-mcp over stdio", &stdio_peer, read(sql, Some(500))),
            ],
        )
        .await;
        let after = connections_logged(pg_log);
        result["table_rows"] = json!(if name == "capped_1k" { 1000 } else { large_rows(mode) });
        capped_connections.insert(name.to_owned(), json!(after.zip(before).map(|(a, b)| a - b)));
        scenarios.push(result);
    }

    // Extra connections over many capped reads on the 1 000-row table, over stdio alone.
    let connections = {
        let reads = if mode == Mode::Full { 1000 } else { 20 };
        let before = connections_logged(pg_log);
        let args = read(READ_1K, Some(500));
        for _ in 0..reads {
            mcp_call(&stdio_peer, "pg_query", &args).await?;
        }
        // A backend logs its connection as it starts; give the last ones a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = connections_logged(pg_log);
        json!({
            "capped_reads_stdio_1k": reads,
            "connections_during_capped_reads_stdio_1k": after.zip(before).map(|(a, b)| a - b),
            "connections_during_scenarios": capped_connections,
        })
    };

    {
        let raw = raw.clone();
        let raw_cycle = variant("raw_tx", "raw: BEGIN / INSERT / COMMIT", move || {
            let raw = raw.clone();
            async move {
                let mut client = raw.lock().await;
                let tx = client.transaction().await.map_err(|e| e.to_string())?;
                let n = tx.execute(INSERT, &[&1i32]).await.map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())?;
                Ok(Outcome { rows: n, truncated: false })
            }
        });
        let (lib_tools, lib_caller) = (tools.clone(), caller.clone());
        let library_cycle = variant("library", "library (Tools::call)", move || {
            let (tools, caller) = (lib_tools.clone(), lib_caller.clone());
            async move {
                let call = |tool: &'static str, args: Value| {
                    let (tools, caller) = (&tools, &caller);
                    async move {
                        let output = tools.call(caller, tool, args).await.map_err(|e| e.to_string())?;
                        let value = library_value(output)?;
                        outcome_of(&value)?;
                        Ok::<Value, String>(value)
                    }
                };
                let begun = call("pg_tx", json!({"action": "begin"})).await?;
                let session = begun["session_id"].as_str().ok_or("begin returned no session_id")?.to_owned();
                let written =
                    call("pg_query", json!({"action": "write", "sql": INSERT, "params": [1], "session_id": session}))
                        .await?;
                call("pg_tx", json!({"action": "commit", "session_id": session})).await?;
                Ok(Outcome { rows: written["rows_affected"].as_u64().unwrap_or(1), truncated: false })
            }
        });
        let peer = stdio_peer.clone();
        let stdio_cycle = variant("stdio", "coldquery-mcp over stdio", move || {
            let peer = peer.clone();
            async move {
                let begun = mcp_call(&peer, "pg_tx", &json!({"action": "begin"})).await?;
                let session = begun["session_id"].as_str().ok_or("begin returned no session_id")?.to_owned();
                let written = mcp_call(
                    &peer,
                    "pg_query",
                    &json!({"action": "write", "sql": INSERT, "params": [1], "session_id": session}),
                )
                .await?;
                mcp_call(&peer, "pg_tx", &json!({"action": "commit", "session_id": session})).await?;
                Ok(Outcome { rows: written["rows_affected"].as_u64().unwrap_or(1), truncated: false })
            }
        });
        scenarios.push(
            scenario(
                "write_cycle",
                "begin / write / commit",
                mode.plan(500, 15),
                vec![raw_cycle, library_cycle, stdio_cycle],
            )
            .await,
        );
    }

    // HTTP: 16 clients, each its own keep-alive connection.
    let (http_rss_before, _) = memory_kib(http_pid);
    let concurrent = http_concurrent(&http.url, mode).await?;
    let (http_rss_after, http_peak) = memory_kib(http_pid);

    drop(http_client_1);
    stdio.cancel().await?;
    stop_node(node, node_pid).await?;
    floor.cancel().await?;
    drop(floor_http_client);
    let _ = floor_http.child.start_kill();
    let _ = floor_http.child.wait().await;
    let _ = http.child.start_kill();
    let _ = http.child.wait().await;

    Ok(json!({
        "mode": if mode == Mode::Full { "full" } else { "smoke" },
        "scenarios": scenarios,
        "http_concurrent": concurrent,
        "startup": startup,
        "startup_node": node_startups.summary(),
        "memory_stdio": memory,
        "memory_node": memory_node,
        "memory_http": {
            "idle_rss_kib": http_idle_rss,
            "before_16_clients_rss_kib": http_rss_before,
            "after_16_clients_rss_kib": http_rss_after,
            "peak_kib": http_peak,
        },
        "connections": connections,
    }))
}

/// 16 HTTP clients, each on its own connection, calling `SELECT 1` as fast as they can.
async fn http_concurrent(url: &str, mode: Mode) -> BoxResult<Value> {
    const CLIENTS: usize = 16;
    eprintln!("bench: {CLIENTS} concurrent HTTP clients");
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(http_client(url).await?);
    }
    let (duration, per_client) = match mode {
        Mode::Full => (Duration::from_secs(8), usize::MAX),
        Mode::Smoke => (Duration::from_secs(30), 3),
    };
    let args = json!({"action": "read", "sql": SELECT_1});
    // Warm every connection and session first.
    for client in &clients {
        mcp_call(client.peer(), "pg_query", &args).await?;
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in &clients {
        let (peer, args) = (client.peer().clone(), args.clone());
        tasks.spawn(async move {
            let mut samples = Samples::default();
            let mut n = 0;
            while n < per_client && started.elapsed() < duration {
                let call_started = Instant::now();
                let result = mcp_call(&peer, "pg_query", &args).await.and_then(|v| outcome_of(&v));
                samples.record(call_started, result);
                n += 1;
            }
            (samples.micros, samples.errors, samples.first_error)
        });
    }
    let mut all = Samples::default();
    while let Some(joined) = tasks.join_next().await {
        let (micros, errors, first_error) = joined?;
        all.micros.extend(micros);
        all.errors += errors;
        if all.first_error.is_none() {
            all.first_error = first_error;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut summary = all.summary();
    // Rows are checked per call above; the merged samples keep no last outcome.
    if let Some(fields) = summary.as_object_mut() {
        fields.remove("rows");
        fields.remove("truncated");
    }
    summary["clients"] = json!(CLIENTS);
    summary["seconds"] = json!(round(elapsed));
    summary["calls_per_s"] = json!(round(all.micros.len() as f64 / elapsed));
    for client in clients {
        let _ = client.cancel().await;
    }
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// The floor server

/// Answers `noop` with a result shaped like a one-row read, and nothing else.
#[derive(Debug, Clone)]
struct Floor;

impl ServerHandler for Floor {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("bench-floor", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = arguments(json!({"type": "object", "properties": {}}));
        Ok(ListToolsResult::with_all_items(vec![Tool::new("noop", "Answers at once.", Arc::new(schema))]))
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let value = json!({"columns": [{"name": "?column?", "type": "int4"}], "rows": [{"?column?": 1}],
            "row_count": 1, "truncated": false});
        let mut result = CallToolResult::structured(value.clone());
        result.content = vec![rmcp::model::ContentBlock::text(value.to_string())];
        Ok(result.into())
    }
}

/// The floor server behind rmcp's streamable HTTP service, served as `coldquery-mcp` serves it:
/// a multi-threaded runtime, MCP sessions, `TCP_NODELAY` on accepted sockets.
fn floor_http_server(listen: &str) -> BoxResult<()> {
    use axum::serve::ListenerExt;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let manager = Arc::new(LocalSessionManager::default());
        let service = StreamableHttpService::new(|| Ok(Floor), manager, StreamableHttpServerConfig::default());
        let router = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind(listen).await?.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router).await?;
        Ok(())
    })
}

fn floor_server() -> BoxResult<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let service = Floor.serve(rmcp::transport::stdio()).await?;
        service.waiting().await?;
        Ok(())
    })
}
