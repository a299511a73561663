//! The container, run on this machine without a Docker engine: `coldquery-mcp` started exactly
//! as the image starts it — the Dockerfile's ENTRYPOINT, CMD, ENV and numeric USER (when the
//! tests run as root; otherwise as the current, non-root user), an otherwise empty environment,
//! a token file mounted as docker-compose.deploy.yml mounts its secret, no writable directory but
//! the audit log's — against a database initialised with the demo schema
//! (`coldquery-pg/src/cluster/demo-schema.sql`) and `deploy/init-agent-role.sql` as the
//! development stack initialises it, connecting as that least-privilege role. The image's
//! HEALTHCHECK command is run the same way.
//!
//! The binary is `COLDQUERY_TEST_CONTAINER_BINARY` when set (`cargo xtask ci` sets it to the release
//! build, the one the image holds), else this test profile's `coldquery-mcp`. Only the port of
//! `COLDQUERY_LISTEN` is changed (to a free one), since other tests and programs share this
//! machine's network; the address stays `0.0.0.0`, as in the container.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use coldquery_pg::cluster::local::is_root;
use coldquery_tests::harness::{ROLE_PASSWORD, TestDb, test_db};
use reqwest::StatusCode;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientServiceExt, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{BIN, Client, ModernClient, call, code, eventually, modern_info};

/// The role of `deploy/init-agent-role.sql` and its (development) password.
const AGENT: &str = "coldquery_agent";
const AGENT_PASSWORD: &str = "agent-password-change-me";

/// The principal and token in the mounted token file.
const PRINCIPAL: &str = "agent";
const TOKEN: &str = "container-token-0123456789abcdef";

/// The uid the image runs as when the tests can switch to it (they run as root in CI).
fn container_uid(image: &Image) -> Option<u32> {
    if !is_root() {
        return None;
    }
    let user = image.user.as_deref().expect("the image has a USER");
    Some(user.split(':').next().unwrap().parse().expect("the image's USER is numeric"))
}

/// What the Dockerfile's final stage says about running the container.
#[derive(Debug, Default)]
struct Image {
    env: Vec<(String, String)>,
    user: Option<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
}

impl Image {
    /// Reads the Dockerfile at the workspace root (xtask's deploy-check validates it in full;
    /// this reads just what is needed to run it).
    fn from_dockerfile() -> Image {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut image = Image::default();
        let mut logical = String::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if let Some(part) = line.strip_suffix('\\') {
                logical.push_str(part);
                logical.push(' ');
                continue;
            }
            logical.push_str(line);
            let instruction = std::mem::take(&mut logical);
            let (keyword, rest) = instruction.split_once(' ').unwrap_or((&instruction, ""));
            let rest = rest.trim();
            match keyword {
                "FROM" => image = Image::default(),
                "ENV" => image.env.extend(rest.split_whitespace().map(|pair| {
                    let (k, v) = pair.split_once('=').expect("ENV KEY=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })),
                "USER" => image.user = Some(rest.to_owned()),
                "ENTRYPOINT" => image.entrypoint = json_array(rest),
                "CMD" => image.cmd = json_array(rest),
                "HEALTHCHECK" => image.healthcheck = json_array(rest.split_once("CMD").expect("HEALTHCHECK CMD").1),
                _ => {}
            }
        }
        image
    }

    fn env(&self, name: &str) -> &str {
        self.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }
}

fn json_array(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text} is not a JSON array of strings: {e}"))
}

/// The container's filesystem as far as the process sees it: the binary at the ENTRYPOINT's
/// path, a token file like a compose secret, an audit directory like the volume. Nothing else
/// is writable by the container's user.
struct Rootfs {
    dir: PathBuf,
    tokens: PathBuf,
    audit: PathBuf,
}

impl Rootfs {
    fn new(image: &Image, uid: Option<u32>) -> Rootfs {
        let dir = std::env::temp_dir().join(format!(
            "coldquery-container-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        let entrypoint = image.entrypoint.first().expect("an ENTRYPOINT");
        let binary = dir.join(entrypoint.trim_start_matches('/'));
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        let source =
            std::env::var_os("COLDQUERY_TEST_CONTAINER_BINARY").map_or_else(|| PathBuf::from(BIN), PathBuf::from);
        eprintln!("[container] binary under test: {}", source.display());
        std::fs::copy(&source, &binary).unwrap_or_else(|e| panic!("copying {}: {e}", source.display()));
        let tokens = dir.join("run/secrets/coldquery_tokens");
        std::fs::create_dir_all(tokens.parent().unwrap()).unwrap();
        std::fs::write(&tokens, format!("# principal token\n{PRINCIPAL} {TOKEN}\n")).unwrap();
        let audit = dir.join("var/log/coldquery");
        std::fs::create_dir_all(&audit).unwrap();
        // Readable and executable by anyone, writable by no one but root: as the image's layers.
        let dirs = binary.ancestors().skip(1).take_while(|d| d.starts_with(&dir)).map(Path::to_path_buf);
        let mounts = [dir.join("run"), dir.join("run/secrets"), dir.join("var"), dir.join("var/log")];
        for path in dirs.chain(mounts).chain([binary.clone()]) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // The secret is the container user's alone (docs/DEPLOYMENT.md: chown 65532, mode 0400).
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o750)).unwrap();
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&tokens, Some(uid), Some(uid)).unwrap();
            std::os::unix::fs::chown(&audit, Some(uid), Some(uid)).unwrap();
        }
        Rootfs { dir, tokens, audit }
    }

    /// A program of the image (an ENTRYPOINT or HEALTHCHECK path) on this filesystem.
    fn program(&self, path: &str) -> PathBuf {
        self.dir.join(path.trim_start_matches('/'))
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One container: the environment it gets and the user it runs as.
struct Container<'a> {
    image: &'a Image,
    rootfs: &'a Rootfs,
    uid: Option<u32>,
    env: Vec<(String, String)>,
    listen_port: u16,
}

impl<'a> Container<'a> {
    fn new(image: &'a Image, rootfs: &'a Rootfs, uid: Option<u32>, database_url: &str) -> Container<'a> {
        let listen = image.env("COLDQUERY_LISTEN");
        assert!(listen.starts_with("0.0.0.0:"), "the image listens on 0.0.0.0, not {listen}");
        let listen_port = coldquery_pg::cluster::local::free_port().unwrap();
        let mut env: Vec<(String, String)> = image.env.clone();
        env.retain(|(k, _)| k != "COLDQUERY_LISTEN");
        env.push(("COLDQUERY_LISTEN".into(), format!("0.0.0.0:{listen_port}")));
        // What docker adds (PATH, HOME of a user without one) and what docker-compose.deploy.yml
        // sets besides the image's ENV: the database, the mounted token file, the audit log.
        env.push(("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()));
        env.push(("HOME".into(), "/nonexistent".into()));
        env.push(("DATABASE_URL".into(), database_url.to_owned()));
        env.push(("COLDQUERY_AUTH_TOKEN_FILE".into(), rootfs.tokens.display().to_string()));
        env.push(("COLDQUERY_AUDIT_LOG".into(), rootfs.audit.join("audit.jsonl").display().to_string()));
        env.push(("RUST_LOG".into(), "info".into()));
        Container { image, rootfs, uid, env, listen_port }
    }

    /// `program args` as the container runs it: its user, its environment only, cwd `/`.
    fn command(&self, program: &str, args: &[String]) -> Command {
        let mut command = Command::new(self.rootfs.program(program));
        command.args(args).env_clear().envs(self.env.iter().map(|(k, v)| (k, v))).current_dir("/");
        if let Some(uid) = self.uid {
            command.uid(uid).gid(uid);
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    /// Starts the server with the image's ENTRYPOINT and CMD; its JSON log lines are echoed.
    fn start(&self) -> (Child, tokio::task::JoinHandle<Vec<String>>) {
        let (program, entry_args) = self.image.entrypoint.split_first().unwrap();
        let args: Vec<String> = entry_args.iter().chain(&self.image.cmd).cloned().collect();
        let mut command = self.command(program, &args);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("the container's entrypoint starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[container] {line}");
                seen.push(line);
            }
            seen
        });
        (child, log)
    }

    /// Runs the image's HEALTHCHECK command (plus `extra` arguments) as the container would.
    async fn healthcheck(&self, extra: &[&str]) -> ExitStatus {
        let (program, args) = self.image.healthcheck.split_first().expect("the image has a HEALTHCHECK");
        let args: Vec<String> = args.iter().cloned().chain(extra.iter().map(|s| s.to_string())).collect();
        let mut command = self.command(program, &args);
        command.stdout(Stdio::null()).stderr(Stdio::inherit());
        tokio::time::timeout(Duration::from_secs(10), command.status())
            .await
            .expect("the health check ends within 10 s")
            .expect("the health check runs")
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.listen_port)
    }

    async fn client(&self) -> Client {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", self.base())).auth_header(TOKEN.to_owned()),
        );
        ().serve(transport).await.expect("the MCP handshake succeeds with the mounted token")
    }

    async fn modern_client(&self) -> ModernClient {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", self.base())).auth_header(TOKEN.to_owned()),
        );
        modern_info()
            .serve_with_lifecycle(
                transport,
                rmcp::ClientLifecycleMode::Discover {
                    preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .expect("server/discover succeeds with the mounted token")
    }

    async fn wait_healthy(&self) {
        let healthy = eventually(Duration::from_secs(30), || async {
            reqwest::get(format!("{}/health", self.base())).await.is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
        assert!(healthy, "the container answers /health within 30 s");
    }
}

/// A database initialised as the development stack's PostgreSQL initialises `app`: the demo
/// schema, then the least-privilege role, run by the superuser from the files
/// `docker-compose.yml` mounts.
async fn dev_stack_database() -> (TestDb, String) {
    let db = test_db().await;
    let side = db.client().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for script in ["coldquery-pg/src/cluster/demo-schema.sql", "deploy/init-agent-role.sql"] {
        let sql = std::fs::read_to_string(root.join(script)).unwrap();
        side.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{script}: {e}"));
    }
    let url = db.url_as(AGENT).replace(ROLE_PASSWORD, AGENT_PASSWORD);
    (db, url)
}

async fn terminate(mut child: Child) -> ExitStatus {
    let pid = child.id().expect("the container runs");
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the container stops within 15 s of SIGTERM (docker stop's default is 10 s; compose gives 15 s)")
        .unwrap()
}

/// Files the container's user owns under `dir`, outside the containers' own filesystems (where
/// the tests gave it the token file and the audit directory).
fn files_owned_by(uid: u32, dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if entry.file_name().to_string_lossy().starts_with("coldquery-container-") {
                continue;
            }
            if meta.uid() == uid {
                found.push(path.clone());
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test]
async fn the_image_configuration_serves_with_a_token_as_a_non_root_user() {
    let image = Image::from_dockerfile();
    let uid = container_uid(&image);
    let rootfs = Rootfs::new(&image, uid);
    let (_db, url) = dev_stack_database().await;
    let container = Container::new(&image, &rootfs, uid, &url);

    // Nothing listens yet: the health command says unhealthy.
    assert_eq!(container.healthcheck(&[]).await.code(), Some(1), "unhealthy before the server starts");

    let (child, log) = container.start();
    let pid = child.id().unwrap();
    container.wait_healthy().await;
    if let Some(uid) = uid {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_owned();
        assert!(line.split_whitespace().skip(1).all(|id| id == uid.to_string()), "runs as uid {uid}: {line}");
    }

    // The image's HEALTHCHECK, and the readiness probe, as the container runs them.
    assert!(container.healthcheck(&[]).await.success(), "the image's HEALTHCHECK passes");
    assert!(container.healthcheck(&["--probe", "ready"]).await.success(), "the database is reachable");
    let http = reqwest::Client::new();
    let health = http.get(format!("{}/health", container.base())).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let ready = http.get(format!("{}/ready", container.base())).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // /mcp needs the mounted token.
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let anonymous = http
        .post(format!("{}/mcp", container.base()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));

    // Tool calls with it, as the least-privilege role: reads, the writes it was granted, and
    // PostgreSQL's refusal of the ones it was not.
    let client = container.client().await;
    let read = call(&client, "pg_query", json!({"action": "read", "sql": "SELECT count(*) AS n FROM customers"})).await;
    assert_eq!(read["rows"][0]["n"], 20, "{read}");
    let denied = call(&client, "pg_query", json!({"action": "write", "sql": "DELETE FROM orders WHERE id = 1"})).await;
    assert_eq!(code(&denied), "WRITE_DENIED", "{denied}");
    let insert = call(
        &client,
        "pg_query",
        json!({"action": "write", "autocommit": true,
               "sql": "INSERT INTO orders (customer_id, status) VALUES (1, 'pending') RETURNING id"}),
    )
    .await;
    assert_eq!(insert["rows_affected"], 1, "the role may write orders: {insert}");
    let customers = call(
        &client,
        "pg_query",
        json!({"action": "write", "autocommit": true, "sql": "DELETE FROM customers WHERE id = 20"}),
    )
    .await;
    assert_eq!(code(&customers), "DATABASE_ERROR", "{customers}");
    assert_eq!(customers["error"]["sqlstate"], "42501", "the role may not write customers: {customers}");
    let health = call(&client, "pg_monitor", json!({"action": "health"})).await;
    assert_eq!(health["status"], "ok", "{health}");
    if let Some(kib) = rss_kib(pid) {
        eprintln!("[container] resident memory after a few calls: {} KiB", kib);
    }
    client.cancel().await.unwrap();

    // SIGTERM (docker stop) ends it cleanly.
    let status = terminate(child).await;
    assert!(status.success(), "exit status 0 after SIGTERM, got {status}");
    let log = log.await.unwrap();
    assert!(!log.is_empty(), "the server logs");
    for line in &log {
        let parsed: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("COLDQUERY_LOG_FORMAT=json: {e}: {line}"));
        assert!(parsed.get("level").is_some(), "{line}");
    }
    assert!(!log.iter().any(|l| l.contains(TOKEN) || l.contains(AGENT_PASSWORD)), "no secret is logged");

    // It wrote only where the image lets it: the audit log (the insert and the denial).
    let audit = std::fs::read_to_string(rootfs.audit.join("audit.jsonl")).expect("the audit log was written");
    assert!(audit.lines().count() >= 2, "{audit}");
    assert!(audit.contains(PRINCIPAL), "the audit log names the principal: {audit}");
    if let Some(uid) = uid {
        for dir in [std::env::temp_dir(), PathBuf::from("/var/tmp"), PathBuf::from("/dev/shm")] {
            let written = files_owned_by(uid, &dir);
            assert!(written.is_empty(), "the container user wrote outside its audit volume: {written:?}");
        }
    }
}

/// Two replicas behind a load balancer that does not route by session: a `session_id` works
/// only on the instance that opened it; any other answers `SESSION_NOT_FOUND` (the same answer
/// as for an unknown id), for both protocol eras.
#[tokio::test]
async fn a_session_lives_on_the_instance_that_opened_it() {
    let image = Image::from_dockerfile();
    let uid = container_uid(&image);
    let rootfs = Rootfs::new(&image, uid);
    let (_db, url) = dev_stack_database().await;
    let first = Container::new(&image, &rootfs, uid, &url);
    let second = Container::new(&image, &rootfs, uid, &url);
    let (first_child, _first_log) = first.start();
    let (second_child, _second_log) = second.start();
    first.wait_healthy().await;
    second.wait_healthy().await;

    let legacy_owner = first.client().await;
    let legacy_other = second.client().await;
    let begin = call(&legacy_owner, "pg_tx", json!({"action": "begin"})).await;
    let session = begin["session_id"].as_str().expect("a session id").to_owned();
    let elsewhere = call(&legacy_other, "pg_tx", json!({"action": "status", "session_id": session})).await;
    assert_eq!(code(&elsewhere), "SESSION_NOT_FOUND", "{elsewhere}");
    let status = call(&legacy_owner, "pg_tx", json!({"action": "status", "session_id": session})).await;
    assert_eq!(code(&status), "ok", "{status}");

    let modern_owner = first.modern_client().await;
    let modern_other = second.modern_client().await;
    let begin = call(&modern_owner, "pg_tx", json!({"action": "begin"})).await;
    let session = begin["session_id"].as_str().expect("a session id").to_owned();
    let elsewhere = call(
        &modern_other,
        "pg_query",
        json!({"action": "write", "session_id": session, "sql": "DELETE FROM orders WHERE id = 1"}),
    )
    .await;
    assert_eq!(code(&elsewhere), "SESSION_NOT_FOUND", "{elsewhere}");
    let rollback = call(&modern_owner, "pg_tx", json!({"action": "rollback", "session_id": session})).await;
    assert_eq!(code(&rollback), "ok", "{rollback}");

    // A legacy client's MCP session (Mcp-Session-Id) is also only known where it was created:
    // without sticky routing its next request gets 404, and it must initialize again.
    let http = reqwest::Client::new();
    let mcp_post = |base: String, body: Value| {
        http.post(format!("{base}/mcp"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string())
    };
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let created = mcp_post(first.base(), initialize).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let mcp_session = created.headers().get("mcp-session-id").expect("a legacy session").to_str().unwrap().to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let elsewhere = mcp_post(second.base(), list)
        .header("mcp-session-id", &mcp_session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND, "another instance does not know the MCP session");

    for client in [legacy_owner, legacy_other] {
        client.cancel().await.unwrap();
    }
    assert!(terminate(first_child).await.success());
    assert!(terminate(second_child).await.success());
}
