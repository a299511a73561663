//! Fuzzing the JSON-RPC entry, as proptest so that it runs in CI: arbitrary and
//! mutated messages go into the real server (`ColdQueryServer` behind the stdio transport,
//! `coldquery_mcp::stdio::Bounded`) over an in-memory pipe, with the tools over the fakes. After
//! each case a `ping` must be answered within 5 s (no hang, no lost server), every line the
//! server writes must be a JSON-RPC message, every error one of JSON-RPC's codes, and nothing
//! may panic. Seeds: `coldquery-mcp/tests/fuzz-corpus/*.jsonl`. `PROPTEST_CASES` raises the
//! case count (2000 by default, 7 to 17 s in a debug build).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use coldquery_core::DefaultDeny;
use coldquery_mcp::lines::Lines;
use coldquery_mcp::metrics::Metrics;
use coldquery_mcp::stdio::Bounded;
use coldquery_mcp::{Channel, ColdQueryServer};
use coldquery_tests::fakes::{FakeExecutor, FakeSessions};
use coldquery_tools::{ToolConfig, Tools};
use proptest::prelude::*;
use rmcp::ServiceExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// JSON-RPC's error codes and MCP's (resource not found, missing client capability,
/// unsupported protocol version) that a malformed message may get; never -32603 (internal).
const CODES: &[i64] = &[-32700, -32600, -32601, -32602, -32002, -32021, -32022];

/// The seed corpus: every line of every `*.jsonl` file.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("the corpus folder exists")
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        files.sort();
        let lines: Vec<Vec<u8>> = files
            .iter()
            .flat_map(|path| {
                std::fs::read(path).unwrap().split(|b| *b == b'\n').map(<[u8]>::to_vec).collect::<Vec<_>>()
            })
            .filter(|line| !line.is_empty())
            .collect();
        assert!(lines.len() >= 40, "the corpus has its seeds: {}", lines.len());
        lines
    })
}

/// Panics anywhere in the process since the hook was installed.
fn panics() -> &'static AtomicUsize {
    static PANICS: OnceLock<AtomicUsize> = OnceLock::new();
    PANICS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.get().expect("set").fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
        AtomicUsize::new(0)
    })
}

/// One seed, mutated a few times.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus().len();
    (0..seeds, 0..seeds, prop::collection::vec((0..5u8, any::<usize>(), any::<u8>()), 0..6)).prop_map(
        |(first, second, edits)| {
            let mut bytes = corpus()[first].clone();
            for (kind, at, byte) in edits {
                let at = if bytes.is_empty() { 0 } else { at % bytes.len() };
                match kind {
                    0 if !bytes.is_empty() => bytes[at] ^= 1 << (byte % 8),
                    1 => bytes.insert(at, byte),
                    2 => bytes.truncate(at),
                    3 => {
                        let other = &corpus()[second];
                        let from = if other.is_empty() { 0 } else { usize::from(byte) % other.len() };
                        bytes.splice(at..at, other[from..].iter().copied());
                    }
                    _ if !bytes.is_empty() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            bytes
        },
    )
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,16}".prop_map(Value::String),
        prop::sample::select(&["pg_query", "pg_tx", "read", "begin", "SELECT 1", "postgres://schema/public/t"][..])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(
                    &["name", "arguments", "action", "sql", "params", "uri", "session_id", "_meta", "x"][..]
                ),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A message from JSON-RPC's grammar with any part wrong.
fn generated() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        Just(None),
        any::<i64>().prop_map(|n| Some(json!(n))),
        "[a-z0-9]{0,12}".prop_map(|s| Some(json!(s))),
        json_value().prop_map(Some),
    ];
    let method = prop_oneof![
        prop::sample::select(
            &[
                "initialize",
                "ping",
                "tools/list",
                "tools/call",
                "resources/list",
                "resources/read",
                "resources/templates/list",
                "prompts/list",
                "prompts/get",
                "completion/complete",
                "logging/setLevel",
                "server/discover",
                "notifications/initialized",
                "notifications/cancelled",
                "notifications/nope",
            ][..]
        )
        .prop_map(|m| json!(m)),
        ".{0,12}".prop_map(|s| json!(s)),
        json_value(),
    ];
    let version = prop_oneof![Just(Some(json!("2.0"))), Just(None), json_value().prop_map(Some)];
    (version, id, prop::option::of(method), prop::option::of(json_value())).prop_map(|(version, id, method, params)| {
        let mut message = serde_json::Map::new();
        for (key, value) in [("jsonrpc", version), ("id", id), ("method", method), ("params", params)] {
            if let Some(value) = value {
                message.insert(key.to_owned(), value);
            }
        }
        Value::Object(message).to_string().into_bytes()
    })
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => mutated(),
        4 => generated(),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// The legacy handshake's first message.
const INITIALIZE: &[u8] = br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"fuzz","version":"0"}}}"#;

/// Runs one case: a fresh server over the fakes, optionally initialized, then `messages`, then a
/// ping that must be answered. Returns what went wrong, if anything.
async fn run_case(initialize: bool, messages: &[Vec<u8>]) -> Result<(), String> {
    let tools = Tools::new(
        Arc::new(FakeExecutor::new()),
        Arc::new(FakeSessions::new(3)),
        Arc::new(DefaultDeny { read_only: false }),
        ToolConfig::default(),
    );
    let server = ColdQueryServer::new(tools, Arc::new(Metrics::default()), Channel::Stdio, false);
    let (client, server_end) = tokio::io::duplex(1 << 20);
    let (read, write) = tokio::io::split(server_end);
    let serving = tokio::spawn(async move {
        let transport = Bounded::new(Lines::new(read, write));
        if let Ok(service) = server.serve(transport).await {
            let _ = service.waiting().await;
        }
    });
    let (client_read, mut client_write) = tokio::io::split(client);
    let mut lines = BufReader::new(client_read).lines();
    let mut input = Vec::new();
    if initialize {
        input.extend_from_slice(INITIALIZE);
        input.push(b'\n');
        input.extend_from_slice(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        input.push(b'\n');
    }
    for message in messages {
        input.extend_from_slice(message);
        input.push(b'\n');
    }
    input.extend_from_slice(br#"{"jsonrpc":"2.0","id":"probe","method":"ping"}"#);
    input.push(b'\n');
    let writing = tokio::spawn(async move {
        let _ = client_write.write_all(&input).await;
        client_write
    });
    // Every line the server writes, until the probe's answer; then stdin closes and the server
    // drains the answers still running and closes its output: those lines are checked too.
    let check = |line: &str| -> Result<bool, String> {
        let message: Value =
            serde_json::from_str(line).map_err(|e| format!("a line that is not JSON ({e}): {line}"))?;
        if line.contains("\\u0000coldquery") {
            return Err(format!("the stdio wire's marker was written: {line}"));
        }
        if message["jsonrpc"] != "2.0" {
            return Err(format!("not a JSON-RPC 2.0 message: {line}"));
        }
        if let Some(code) = message.get("error").map(|e| e["code"].as_i64()) {
            match code {
                Some(code) if CODES.contains(&code) => {}
                _ => return Err(format!("an error code outside JSON-RPC's: {line}")),
            }
        }
        if message["id"] == "init" && message.get("result").is_none() {
            return Err(format!("initialize failed: {line}"));
        }
        // Answered: with a result, or with one of the errors above (after a 2026-07-28
        // request, rmcp wants `_meta` on the ping too).
        Ok(message["id"] == "probe")
    };
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let Some(line) = lines.next_line().await.map_err(|e| format!("stdout: {e}"))? else {
                return Err("the server closed its output before answering the probe".to_owned());
            };
            if check(&line)? {
                break;
            }
        }
        if let Ok(mut input) = writing.await {
            let _ = input.shutdown().await;
        }
        while let Some(line) = lines.next_line().await.map_err(|e| format!("stdout: {e}"))? {
            check(&line)?;
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|_| Err("no answer to the probe, or no end of output after stdin closed, within 5 s".to_owned()));
    drop(lines);
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    outcome
}

/// A failed `initialize` (an unsupported protocol version, say) ends the connection, as the
/// MCP lifecycle has it: a case that sends one first is not expected to get its probe answered.
fn ends_the_connection(initialize: bool, messages: &[Vec<u8>]) -> bool {
    !initialize
        && messages.iter().any(|m| {
            serde_json::from_slice::<Value>(m)
                .is_ok_and(|v| v.get("method").and_then(Value::as_str) == Some("initialize"))
        })
}

/// Panics while `run` ran (other tests of this binary only panic when they fail).
fn without_panics<T>(run: impl FnOnce() -> T) -> (T, usize) {
    let before = panics().load(Ordering::SeqCst);
    let value = run();
    (value, panics().load(Ordering::SeqCst) - before)
}

/// Every seed alone after initialize, then arbitrary or mutated message sequences before or
/// after initialize: the server answers a ping afterwards, writes only JSON-RPC, uses only
/// JSON-RPC's error codes, and nothing panics.
#[test]
fn any_json_rpc_input_gets_clear_answers_and_the_server_serves_on() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = std::time::Instant::now();
    for seed in corpus() {
        let (outcome, panicked) = without_panics(|| runtime.block_on(run_case(true, std::slice::from_ref(seed))));
        assert!(outcome.is_ok() && panicked == 0, "{outcome:?} ({panicked} panics): {}", String::from_utf8_lossy(seed));
    }
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000);
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (any::<bool>(), prop::collection::vec(message(), 1..6));
    let sequences = AtomicUsize::new(0);
    let result = runner.run(&strategy, |(initialize, messages)| {
        sequences.fetch_add(1, Ordering::Relaxed);
        let (outcome, panicked) = without_panics(|| runtime.block_on(run_case(initialize, &messages)));
        let shown: Vec<String> =
            messages.iter().map(|m| String::from_utf8_lossy(m).chars().take(300).collect()).collect();
        if !ends_the_connection(initialize, &messages) {
            prop_assert!(outcome.is_ok(), "{:?} after {shown:?} (initialized: {initialize})", outcome);
        }
        prop_assert_eq!(panicked, 0, "a panic while serving {:?}", shown);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    coldquery_tests::figures::record(
        "fuzz_json_rpc_entry",
        json!({"seeds": corpus().len(), "sequences": sequences.load(Ordering::Relaxed), "seconds": started.elapsed().as_secs_f64()}),
    );
}
