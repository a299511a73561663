//! Shared helpers: spawning the binary, MCP clients over stdio and HTTP, tool calls, and
//! polling PostgreSQL from a side connection.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use coldquery_tests::harness::TestDb;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_coldquery-mcp");

/// An MCP client with the default (legacy `initialize`) lifecycle.
pub(crate) type Client = RunningService<RoleClient, ()>;

/// An MCP client on the 2026-07-28 lifecycle (`server/discover`, no session).
pub(crate) type ModernClient = RunningService<RoleClient, ClientConfig>;

/// The binary with a clean environment: only PATH, HOME, a quiet log level, and `env`.
pub(crate) fn command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.env_clear();
    for name in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    command.env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    command.kill_on_drop(true);
    command
}

/// A stdio client of a server serving `db`, with extra environment.
pub(crate) async fn stdio_client_with(db: &TestDb, env: &[(&str, &str)]) -> Client {
    let mut all = vec![("DATABASE_URL", db.url.as_str())];
    all.extend_from_slice(env);
    let command = command(&all);
    let (transport, _stderr) =
        TokioChildProcess::builder(command).stderr(Stdio::inherit()).spawn().expect("the binary starts");
    ().serve(transport).await.expect("the MCP handshake succeeds over stdio")
}

/// A stdio client of a server serving `db`.
pub(crate) async fn stdio_client(db: &TestDb) -> Client {
    stdio_client_with(db, &[]).await
}

/// `value` as tool arguments.
pub(crate) fn args(value: Value) -> rmcp::model::JsonObject {
    value.as_object().cloned().expect("arguments are an object")
}

/// Calls a tool and returns the MCP result.
pub(crate) async fn call_raw<S: rmcp::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    tool: &'static str,
    arguments: Value,
) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool} is answered: {e}"))
}

/// Calls a tool and returns its structured content, checking that the text content is the
/// same JSON and that `isError` matches the presence of an error body.
pub(crate) async fn call<S: rmcp::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    tool: &'static str,
    arguments: Value,
) -> Value {
    let result = call_raw(client, tool, arguments).await;
    let value = result.structured_content.clone().expect("results carry structuredContent");
    let is_error = value.get("error").is_some();
    assert_eq!(result.is_error, Some(is_error), "isError matches the body: {value}");
    value
}

/// The error code of a result, or "ok".
pub(crate) fn code(value: &Value) -> &str {
    value["error"]["code"].as_str().unwrap_or("ok")
}

/// Polls `probe` until it returns true or `within` passes; returns the last answer.
pub(crate) async fn eventually<F, Fut>(within: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A count from the side connection.
pub(crate) async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// Creates the table the tests write to.
pub(crate) async fn create_items(side: &tokio_postgres::Client) {
    side.batch_execute("CREATE TABLE e2e_items (id int PRIMARY KEY, name text NOT NULL)")
        .await
        .expect("e2e_items is created");
}

/// A token file for two principals, `alice` and `bob`.
pub(crate) struct TokenFile {
    pub(crate) path: PathBuf,
}

pub(crate) const ALICE: &str = "alice-token-0123456789";
pub(crate) const BOB: &str = "bob-token-9876543210";

impl TokenFile {
    pub(crate) fn new() -> TokenFile {
        let path = std::env::temp_dir().join(format!(
            "coldquery-e2e-tokens-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::write(&path, format!("# e2e principals\nalice {ALICE}\nbob   {BOB}\n")).unwrap();
        TokenFile { path }
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The binary serving HTTP on a free loopback port.
pub(crate) struct HttpServer {
    pub(crate) child: Child,
    pub(crate) base: String,
    _tokens: TokenFile,
}

impl HttpServer {
    /// Starts the server for `db` with alice's and bob's tokens and waits until it listens.
    pub(crate) async fn start(db: &TestDb, extra: &[&str]) -> HttpServer {
        let tokens = TokenFile::new();
        let token_path = tokens.path.display().to_string();
        let mut command = command(&[
            ("DATABASE_URL", db.url.as_str()),
            ("COLDQUERY_AUTH_TOKEN_FILE", &token_path),
            ("RUST_LOG", "warn,coldquery_mcp=info"),
        ]);
        command.args(["--transport", "http", "--listen", "127.0.0.1:0"]).args(extra);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("stderr is readable") {
                eprintln!("[server] {line}");
                if let Some(rest) = line.split("address=").nth(1) {
                    return rest.split_whitespace().next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .expect("the server listens within 30 s")
        .expect("the server logs its address");
        // Keep draining the log so the server never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[server] {line}");
            }
        });
        HttpServer { child, base: format!("http://{address}"), _tokens: tokens }
    }

    pub(crate) fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// A legacy (initialize + Mcp-Session-Id) client with `token`.
    pub(crate) async fn client(&self, token: &str) -> Client {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.mcp_url()).auth_header(token.to_owned()),
        );
        ().serve(transport).await.expect("the MCP handshake succeeds over HTTP")
    }

    /// A 2026-07-28 (stateless) client with `token`.
    pub(crate) async fn modern_client(&self, token: &str) -> ModernClient {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.mcp_url()).auth_header(token.to_owned()),
        );
        modern_info()
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] },
            )
            .await
            .expect("server/discover succeeds over HTTP")
    }

    /// Sends SIGTERM and returns the exit status.
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("the server runs");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM works");
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("the server exits within 15 s of SIGTERM")
            .expect("the exit status is readable")
    }
}

/// The client info of a 2026-07-28 client.
pub(crate) fn modern_info() -> ClientConfig {
    ClientConfig::new(ClientCapabilities::default(), Implementation::new("coldquery-e2e", "0"))
}

/// A process's resident memory in KiB (`VmRSS` of /proc/<pid>/status).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// A process's open file descriptors (entries of /proc/<pid>/fd).
pub(crate) fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|entries| entries.count()).unwrap_or(0)
}

/// ColdQuery's connections to `db` as PostgreSQL sees them, by state (`active`, `idle`,
/// `idle in transaction`, ...), the side connection excluded.
pub(crate) async fn backends(side: &tokio_postgres::Client, db: &TestDb) -> std::collections::BTreeMap<String, i64> {
    let rows = side
        .query(
            "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'coldquery' AND pid <> pg_backend_pid() GROUP BY 1",
            &[&db.name],
        )
        .await
        .expect("pg_stat_activity is readable");
    rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1))).collect()
}

/// The `_meta` a 2026-07-28 request carries.
pub(crate) fn modern_meta() -> Value {
    serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
    })
}

/// A 2026-07-28 `tools/call` as a JSON-RPC body.
pub(crate) fn modern_call(id: u64, tool: &str, arguments: Value) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": modern_meta()}})
}

/// The raw HTTP/1.1 request of a 2026-07-28 `tools/call` (body `body`) with alice's token.
pub(crate) fn raw_post(host: &str, body: &str, tool: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ALICE}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\n\
         Mcp-Name: {tool}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The stdio binary driven line by line, for tests that misbehave on purpose.
pub(crate) struct RawStdio {
    pub(crate) child: Child,
    pub(crate) stdin: Option<tokio::process::ChildStdin>,
    pub(crate) stdout: Option<tokio::io::Lines<BufReader<tokio::process::ChildStdout>>>,
}

impl RawStdio {
    /// Starts the server for `db` with piped stdin and stdout; does not initialize.
    pub(crate) fn start(db: &TestDb, env: &[(&str, &str)]) -> RawStdio {
        let mut all = vec![("DATABASE_URL", db.url.as_str())];
        all.extend_from_slice(env);
        let mut command = command(&all);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().expect("the binary starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(|out| BufReader::with_capacity(1 << 20, out).lines());
        RawStdio { child, stdin, stdout }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the server runs")
    }

    /// Writes one line (a newline is added).
    pub(crate) async fn send_line(&mut self, line: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().expect("stdin is open");
        tokio::time::timeout(Duration::from_secs(10), async {
            stdin.write_all(line).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        })
        .await
        .expect("the server reads its stdin within 10 s")
        .expect("stdin is writable");
    }

    /// The next line on stdout as JSON, within `within`.
    pub(crate) async fn next(&mut self, within: Duration) -> Option<Value> {
        let stdout = self.stdout.as_mut().expect("stdout is open");
        let line = tokio::time::timeout(within, stdout.next_line()).await.ok()?.ok()??;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout carries JSON lines ({e}): {line}")))
    }

    /// Reads until the response to `id` arrives (within `within`); returns it and what came before it.
    pub(crate) async fn until_id(&mut self, id: &Value, within: Duration) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + within;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.next(left).await.unwrap_or_else(|| panic!("no answer to id {id} within {within:?}"));
            if message.get("id") == Some(id) {
                return (message, before);
            }
            before.push(message);
        }
    }

    /// The legacy handshake: initialize, its answer, notifications/initialized.
    pub(crate) async fn initialize(&mut self) {
        let init = serde_json::json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
        self.send_line(init.to_string().as_bytes()).await;
        let (answer, _) = self.until_id(&serde_json::json!("init"), Duration::from_secs(30)).await;
        assert!(answer.get("result").is_some(), "initialize succeeds: {answer}");
        self.send_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    }

    /// Sends a ping with `id` and waits for its answer: the server still serves.
    pub(crate) async fn ping(&mut self, id: &str, within: Duration) -> Vec<Value> {
        let ping = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "ping"});
        self.send_line(ping.to_string().as_bytes()).await;
        let (answer, before) = self.until_id(&serde_json::json!(id), within).await;
        assert!(answer.get("result").is_some(), "ping is answered: {answer}");
        before
    }
}
