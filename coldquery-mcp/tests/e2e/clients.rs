//! Clients that misbehave: a stdio client that stops reading, HTTP clients that hang
//! up mid-response, a flood of connections over the cap, malformed JSON-RPC of every kind over
//! both transports, and SIGTERM with calls in flight. Each checks the server's memory, file
//! descriptors and PostgreSQL's view, and that the next good request is served.

use std::time::{Duration, Instant};

use coldquery_tests::figures;
use coldquery_tests::harness::{TestDb, test_db};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    ALICE, HttpServer, RawStdio, backends, call, code, count, create_items, eventually, modern_call, open_fds,
    raw_post, rss_kib,
};

/// A read whose result fills the default byte cap (1 MiB of row data, ~2 MiB of JSON).
fn big_read() -> Value {
    json!({"action": "read", "sql": "SELECT repeat('x', 10000) AS x FROM generate_series(1, 400)", "max_rows": 400})
}

fn tools_call(id: u64, arguments: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "pg_query", "arguments": arguments}})
        .to_string()
        .into_bytes()
}

/// A stdio client that writes requests with large results but stops reading stdout: the server
/// stops reading ahead (memory stays bounded), its database connections are released, and it
/// answers everything once the client reads again; a client that then goes away ends it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_client_that_stops_reading_costs_bounded_memory() {
    const CALLS: u64 = 120;
    let db = test_db().await;
    let side = db.client().await;
    let mut server = RawStdio::start(&db, &[]);
    server.initialize().await;
    let pid = server.pid();
    // Warm up with two large answers read normally, then take the baseline.
    for id in [1000, 1001] {
        server.send_line(&tools_call(id, big_read())).await;
        let (answer, _) = server.until_id(&json!(id), Duration::from_secs(30)).await;
        assert_eq!(answer["result"]["structuredContent"]["truncated"], true, "the byte cap applies");
    }
    let rss_before = rss_kib(pid);
    let fds_before = open_fds(pid);

    // The client writes CALLS requests of 1 KiB each (more than a pipe holds) and reads nothing.
    let padded = {
        let mut read = big_read();
        read["sql"] = json!(format!("{} -- {}", read["sql"].as_str().unwrap(), "p".repeat(1024)));
        read
    };
    let mut stdin = server.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        for id in 1..=CALLS {
            stdin.write_all(&tools_call(id, padded.clone())).await.expect("stdin is writable");
            stdin.write_all(b"\n").await.expect("stdin is writable");
        }
        stdin.flush().await.expect("stdin flushes");
        stdin
    });
    let mut rss_peak = rss_before;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rss_peak = rss_peak.max(rss_kib(pid));
    }
    let growth_mib = rss_peak.saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 150, "memory grew by {growth_mib} MiB while {CALLS} large answers were unread");
    assert!(!writer.is_finished(), "the server stopped reading requests ahead of its unread answers");
    let stalled = backends(&side, &db).await;
    assert!(
        !stalled.contains_key("idle in transaction") && !stalled.contains_key("active"),
        "no database connection is held while the client does not read: {stalled:?}"
    );

    // The client reads again: every answer arrives, complete, and the server serves on.
    let started = Instant::now();
    let mut answered = 0;
    while answered < CALLS {
        let message = server.next(Duration::from_secs(30)).await.expect("the answers keep coming");
        if message.get("id").and_then(Value::as_u64).is_some_and(|id| (1..=CALLS).contains(&id)) {
            assert_eq!(message["result"]["structuredContent"]["truncated"], true, "a full answer");
            answered += 1;
        }
    }
    let drained_in = started.elapsed();
    server.stdin = Some(tokio::time::timeout(Duration::from_secs(10), writer).await.expect("writer ends").unwrap());
    server.ping("after-stall", Duration::from_secs(10)).await;
    let rss_after = rss_kib(pid);

    // Stalled again, then the client goes away: the server exits with status 0.
    let mut stdin = server.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        for id in 2000..2040u64 {
            if stdin.write_all(&tools_call(id, big_read())).await.is_err() || stdin.write_all(b"\n").await.is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    writer.abort();
    drop(server.stdout.take());
    let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait())
        .await
        .expect("the server exits within 15 s of its client going away")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        eventually(Duration::from_secs(5), || async { backends(&side, &db).await.is_empty() }).await,
        "no backend is left"
    );
    figures::record(
        "clients_stdio_stops_reading",
        json!({"unread_calls": CALLS, "rss_kib_before": rss_before, "rss_kib_peak_stalled": rss_peak,
               "rss_kib_after": rss_after, "fds_before": fds_before,
               "drain_ms": drained_in.as_millis() as u64}),
    );
}

/// HTTP clients that hang up mid-response — while the statement runs, and after reading the
/// first bytes of a large answer — cost nothing: the statement is cancelled, connections go
/// back to the pool idle, descriptors and memory return to their baseline, the next call is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_clients_that_hang_up_mid_response_leave_nothing_behind() {
    const HANGUPS: usize = 30;
    let db = test_db().await;
    let side = db.client().await;
    let server = HttpServer::start(&db, &[]).await;
    let pid = server.child.id().unwrap();
    let host = server.base.trim_start_matches("http://").to_owned();
    let alice = server.modern_client(ALICE).await;
    assert_eq!(code(&call(&alice, "pg_query", big_read()).await), "ok");
    let (rss_before, fds_before) = (rss_kib(pid), open_fds(pid));

    // Hang up while the statement runs: it is cancelled on the server.
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(31)%' AND pid <> pg_backend_pid() AND datname = current_database()";
    let slow = modern_call(
        1,
        "pg_query",
        json!({"action": "read", "sql": "SELECT repeat('x', 10000) AS x FROM generate_series(1, 400), pg_sleep(31)", "max_rows": 400}),
    )
    .to_string();
    let mut socket = tokio::net::TcpStream::connect(&host).await.unwrap();
    socket.write_all(raw_post(&host, &slow, "pg_query").as_bytes()).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || async { count(&side, sleeping).await == 1 }).await);
    drop(socket);
    let cancelled = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async { count(&side, sleeping).await == 0 }).await,
        "the statement is cancelled once its client hangs up"
    );
    let cancel_ms = cancelled.elapsed().as_millis() as u64;

    // Hang up after the first bytes of a large answer, many times over.
    let body = modern_call(2, "pg_query", big_read()).to_string();
    for _ in 0..HANGUPS {
        let mut socket = tokio::net::TcpStream::connect(&host).await.unwrap();
        socket.write_all(raw_post(&host, &body, "pg_query").as_bytes()).await.unwrap();
        let mut first = vec![0u8; 16 * 1024];
        let read = tokio::time::timeout(Duration::from_secs(20), socket.read(&mut first)).await;
        assert!(matches!(read, Ok(Ok(n)) if n > 0), "the answer starts");
        drop(socket);
    }
    let out = call(&alice, "pg_query", json!({"action": "read", "sql": "SELECT 1 AS one"})).await;
    assert_eq!(out["rows"], json!([{"one": 1}]), "the next call is served");
    let settled = eventually(Duration::from_secs(10), || async {
        let states = backends(&side, &db).await;
        !states.contains_key("active") && !states.contains_key("idle in transaction")
    })
    .await;
    assert!(settled, "every connection is back in the pool, idle: {:?}", backends(&side, &db).await);
    let fds_back = eventually(Duration::from_secs(10), || async { open_fds(pid) <= fds_before + 2 }).await;
    let (rss_after, fds_after) = (rss_kib(pid), open_fds(pid));
    assert!(fds_back, "descriptors return to the baseline: {fds_before} before, {fds_after} after");
    let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 64, "memory grew by {growth_mib} MiB after {HANGUPS} hang-ups");
    alice.cancel().await.ok();
    assert_eq!(server.terminate().await.code(), Some(0));
    figures::record(
        "clients_http_hang_up",
        json!({"hangups_mid_answer": HANGUPS, "cancel_after_hangup_ms": cancel_ms, "rss_kib_before": rss_before,
               "rss_kib_after": rss_after, "fds_before": fds_before, "fds_after": fds_after}),
    );
}

/// More connections than the server's cap (1024) at once: the ones over the cap are closed on
/// arrival, every request gets an answer or a closed connection (no hang), and once the flood
/// ends descriptors return to the baseline and requests are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_over_the_cap_is_refused_cleanly() {
    const FLOOD: usize = 1300;
    const CAP: usize = 1024;
    let db = test_db().await;
    let server = HttpServer::start(&db, &[]).await;
    let pid = server.child.id().unwrap();
    let host = server.base.trim_start_matches("http://").to_owned();
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{}/health", server.base)).send().await.unwrap().status(), 200);
    let (rss_before, fds_before) = (rss_kib(pid), open_fds(pid));

    // FLOOD idle connections, held open.
    let mut held = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        held.push(tokio::net::TcpStream::connect(&host).await.expect("the kernel accepts the connection"));
    }
    // Those over the cap are closed by the server at once; the others stay open.
    let mut probes = tokio::task::JoinSet::new();
    for mut socket in held {
        probes.spawn(async move {
            let mut byte = [0u8; 1];
            match tokio::time::timeout(Duration::from_secs(1), socket.read(&mut byte)).await {
                Ok(Ok(0) | Err(_)) => None,
                Ok(Ok(_)) => panic!("the server sent bytes to a client that sent none"),
                Err(_) => Some(socket),
            }
        });
    }
    let mut closed = 0;
    let mut open = Vec::new();
    while let Some(probe) = probes.join_next().await {
        match probe.expect("the probe does not panic") {
            Some(socket) => open.push(socket),
            None => closed += 1,
        }
    }
    let fds_flooded = open_fds(pid);
    assert!(closed >= FLOOD - CAP, "{closed} of {FLOOD} connections were refused; the cap is {CAP}");
    assert!(fds_flooded <= fds_before + CAP + 8, "open descriptors stay within the cap: {fds_flooded}");
    // Requests on the open ones are answered.
    let mut answered = 0;
    for socket in open.iter_mut().take(50) {
        socket.write_all(format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut head)).await;
        if matches!(read, Ok(Ok(_))) && head.starts_with(b"HTTP/1.1 200") {
            answered += 1;
        }
    }
    assert_eq!(answered, 50, "connections inside the cap are served during the flood");
    let rss_flooded = rss_kib(pid);
    drop(open);

    // After the flood: descriptors back to the baseline, and clients served.
    let settled = eventually(Duration::from_secs(15), || async { open_fds(pid) <= fds_before + 2 }).await;
    let fds_after = open_fds(pid);
    assert!(settled, "descriptors return to the baseline: {fds_before} before, {fds_after} after");
    let alice = server.modern_client(ALICE).await;
    let out = call(&alice, "pg_query", json!({"action": "read", "sql": "SELECT 1 AS one"})).await;
    assert_eq!(out["rows"], json!([{"one": 1}]));
    alice.cancel().await.ok();
    let rss_after = rss_kib(pid);
    assert_eq!(server.terminate().await.code(), Some(0));
    figures::record(
        "clients_connection_flood",
        json!({"connections": FLOOD, "cap": CAP, "refused": closed, "fds_before": fds_before,
               "fds_flooded": fds_flooded, "fds_after": fds_after, "rss_kib_before": rss_before,
               "rss_kib_flooded": rss_flooded, "rss_kib_after": rss_after}),
    );
}

/// What the server does with one malformed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No answer (unparsable input has no id to answer; rmcp ignores it, as the other SDKs do).
    Ignored,
    /// A JSON-RPC error with this code.
    Error(i64),
    /// A result (the message was valid after all).
    Result,
}

/// Malformed JSON-RPC of every kind, with what stdio does with it.
fn malformed() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    let nested = |depth: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":50,"method":"tools/call","params":{{"name":"pg_query","arguments":{{"action":"read","sql":"SELECT 1","params":{}{}}}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes()
    };
    let huge_string_id = format!(r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#, "7".repeat(1 << 20)).into_bytes();
    vec![
        ("not JSON", b"hello, server".to_vec(), Outcome::Ignored),
        ("truncated", br#"{"jsonrpc":"2.0","id":1,"method":"tools/li"#.to_vec(), Outcome::Ignored),
        ("empty object", b"{}".to_vec(), Outcome::Error(-32600)),
        ("null", b"null".to_vec(), Outcome::Error(-32600)),
        ("a number", b"42".to_vec(), Outcome::Error(-32600)),
        ("id is an object", br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.to_vec(), Outcome::Error(-32600)),
        ("id is a boolean", br#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#.to_vec(), Outcome::Error(-32600)),
        ("id is a float", br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.to_vec(), Outcome::Error(-32600)),
        ("id is a huge number", br#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#.to_vec(), Outcome::Error(-32600)),
        ("id is a 1 MiB string", huge_string_id, Outcome::Result),
        ("method is a number", br#"{"jsonrpc":"2.0","id":2,"method":42}"#.to_vec(), Outcome::Error(-32600)),
        ("method missing", br#"{"jsonrpc":"2.0","id":3,"params":{}}"#.to_vec(), Outcome::Error(-32600)),
        ("params is a string", br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":"x"}"#.to_vec(), Outcome::Error(-32600)),
        ("params is an array", br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":[1,2]}"#.to_vec(), Outcome::Error(-32600)),
        ("tool name is a number", br#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":7}}"#.to_vec(), Outcome::Error(-32602)),
        ("arguments is a list", br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"pg_query","arguments":[]}}"#.to_vec(), Outcome::Error(-32602)),
        ("unknown tool", br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"pg_nope","arguments":{}}}"#.to_vec(), Outcome::Error(-32602)),
        ("nested 100 000 levels", nested(100_000), Outcome::Ignored),
        ("nested 100 levels", nested(100), Outcome::Result),
        ("a NUL byte", b"{\"jsonrpc\":\"2.0\",\"id\":9,\0\"method\":\"ping\"}".to_vec(), Outcome::Ignored),
        ("an escaped NUL in the method", br#"{"jsonrpc":"2.0","id":10,"method":"pi\u0000ng"}"#.to_vec(), Outcome::Error(-32601)),
        ("an escaped NUL in the SQL", br#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"pg_query","arguments":{"action":"read","sql":"SELECT 1\u0000"}}}"#.to_vec(), Outcome::Result),
        ("invalid UTF-8", b"{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"\xff\xfe\"}".to_vec(), Outcome::Ignored),
        ("a lone surrogate", br#"{"jsonrpc":"2.0","id":13,"method":"\ud800"}"#.to_vec(), Outcome::Ignored),
        ("a batch", br#"[{"jsonrpc":"2.0","id":14,"method":"ping"}]"#.to_vec(), Outcome::Error(-32600)),
        ("an empty batch", b"[]".to_vec(), Outcome::Error(-32600)),
        ("unknown method", br#"{"jsonrpc":"2.0","id":15,"method":"nope/nope","params":{}}"#.to_vec(), Outcome::Error(-32601)),
        ("a notification method with an id", br#"{"jsonrpc":"2.0","id":16,"method":"notifications/initialized"}"#.to_vec(), Outcome::Error(-32601)),
        ("jsonrpc 1.0", br#"{"jsonrpc":"1.0","id":17,"method":"ping"}"#.to_vec(), Outcome::Error(-32600)),
        ("jsonrpc missing", br#"{"id":18,"method":"ping"}"#.to_vec(), Outcome::Error(-32600)),
        ("an unknown notification", br#"{"jsonrpc":"2.0","method":"notifications/nope"}"#.to_vec(), Outcome::Ignored),
        ("a response nobody asked for", br#"{"jsonrpc":"2.0","id":19,"result":{}}"#.to_vec(), Outcome::Ignored),
        ("a cancel of an unknown request", br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":999}}"#.to_vec(), Outcome::Ignored),
    ]
}

/// What came back for one malformed message on stdio: nothing, one error, or one result.
fn stdio_outcome(before: &[Value]) -> Outcome {
    match before {
        [] => Outcome::Ignored,
        [one] if one.get("error").is_some() => Outcome::Error(one["error"]["code"].as_i64().unwrap_or(0)),
        [one] if one.get("result").is_some() => Outcome::Result,
        more => panic!("one malformed message got several answers: {more:?}"),
    }
}

/// Malformed JSON-RPC over stdio: each message gets a JSON-RPC error or is ignored as
/// documented, never a crash or a hang, and a ping right after it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_rpc_over_stdio_gets_clear_errors() {
    let db = test_db().await;
    // Before initialize: a request and a notification.
    let mut early = RawStdio::start(&db, &[]);
    early.send_line(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
    early.send_line(br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#).await;
    let before = early.ping("early", Duration::from_secs(30)).await;
    eprintln!("before initialize: {before:?}");
    early.initialize().await;
    drop(early);

    let mut server = RawStdio::start(&db, &[]);
    server.initialize().await;
    let mut seen = Vec::new();
    for (index, (name, line, expected)) in malformed().into_iter().enumerate() {
        server.send_line(&line).await;
        let mut before = server.ping(&format!("after-{index}"), Duration::from_secs(10)).await;
        // A request that reaches a handler may be answered after the ping.
        let id = serde_json::from_slice::<Value>(&line).ok().and_then(|v| v.get("id").cloned());
        if let Some(id) = id.filter(|id| id.is_string() || id.is_u64())
            && matches!(expected, Outcome::Result | Outcome::Error(-32601 | -32602))
            && !before.iter().any(|m| m.get("id") == Some(&id))
        {
            let (answer, more) = server.until_id(&id, Duration::from_secs(10)).await;
            before.extend(more);
            before.push(answer);
        }
        let outcome = stdio_outcome(&before);
        eprintln!(
            "{name}: {outcome:?} {}",
            serde_json::to_string(&before).unwrap().chars().take(300).collect::<String>()
        );
        seen.push((name, outcome, expected));
    }
    let mut tally = std::collections::BTreeMap::new();
    for (_, outcome, _) in &seen {
        *tally.entry(format!("{outcome:?}")).or_insert(0) += 1;
    }
    figures::record("clients_malformed_stdio", json!({"cases": seen.len(), "outcomes": tally}));
    let wrong: Vec<_> = seen.iter().filter(|(_, outcome, expected)| outcome != expected).collect();
    assert!(wrong.is_empty(), "unexpected outcomes (name, seen, expected): {wrong:?}");
    let out = server_read(&mut server).await;
    assert_eq!(out["result"]["structuredContent"]["rows"], json!([{"one": 1}]));
    drop(server.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait()).await.expect("exits").unwrap();
    assert_eq!(status.code(), Some(0));
}

async fn server_read(server: &mut RawStdio) -> Value {
    server.send_line(&tools_call(77, json!({"action": "read", "sql": "SELECT 1 AS one"}))).await;
    server.until_id(&json!(77), Duration::from_secs(10)).await.0
}

/// Malformed JSON-RPC over HTTP: a 4xx with a JSON-RPC error body (or 202 for what is not a
/// request), never a 5xx, a crash or a hang, and the next good request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_rpc_over_http_gets_clear_errors() {
    let db = test_db().await;
    let server = HttpServer::start(&db, &[]).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let good = modern_call(99, "pg_query", json!({"action": "read", "sql": "SELECT 1 AS one"})).to_string();
    // The legacy era: an MCP session to send the malformed messages in.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    // A POST to /mcp as alice, with the content type and accept headers a client sends.
    let mcp_post = || {
        http.post(server.mcp_url())
            .bearer_auth(ALICE)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
    };
    let initialized = mcp_post().body(init.to_string()).send().await.unwrap();
    let session = initialized.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let post = |body: Vec<u8>, modern: bool| {
        let request = mcp_post();
        let request = if modern {
            request.header("mcp-protocol-version", "2026-07-28")
        } else {
            request.header("mcp-protocol-version", "2025-11-25").header("mcp-session-id", session.as_str())
        };
        request.body(body).send()
    };
    let mut statuses = std::collections::BTreeMap::new();
    for modern in [true, false] {
        for (name, body, _) in malformed() {
            let response = post(body, modern).await.unwrap_or_else(|e| panic!("{name}: the server answers: {e}"));
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            eprintln!(
                "{} {name}: {status} {}",
                if modern { "2026" } else { "2025" },
                text.chars().take(200).collect::<String>()
            );
            assert!(status < 500, "{name}: {status} {text}");
            if status == 400 {
                let error: Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: a JSON body ({e}): {text}"));
                assert!(error["error"]["code"].as_i64().is_some(), "{name}: a JSON-RPC error: {text}");
            }
            *statuses.entry(status.to_string()).or_insert(0) += 1;
            let answer = mcp_post()
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "pg_query")
                .body(good.clone())
                .send()
                .await
                .expect("the next request is answered");
            let status = answer.status();
            let text = answer.text().await.unwrap();
            assert!(
                status == 200 && text.contains("\"one\":1"),
                "{name}: the next good request is served: {status} {text}"
            );
        }
    }
    assert_eq!(server.terminate().await.code(), Some(0));
    figures::record(
        "clients_malformed_http",
        json!({"cases_per_era": malformed().len(), "eras": 2, "statuses": statuses}),
    );
}

/// SIGTERM to `pid`.
fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -TERM works");
}

/// The test's own statement (tests run in parallel on one cluster, each in its own database).
const SLEEPING: &str = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(62)%' AND pid <> pg_backend_pid() AND datname = current_database()";

/// SIGTERM over stdio with a read running and a session holding an uncommitted write: the
/// statement is cancelled on the server, the session rolled back, and the process exits 0
/// within 10 s, leaving no backend behind.
/// What a server stopped by SIGTERM leaves: the running statement was cancelled before the
/// exit, no backend is left, and the session's uncommitted write was rolled back.
async fn assert_stopped_cleanly(side: &tokio_postgres::Client, db: &TestDb) {
    assert_eq!(count(side, SLEEPING).await, 0, "the running statement was cancelled before the exit");
    assert!(
        eventually(Duration::from_secs(3), || async { backends(side, db).await.is_empty() }).await,
        "no backend is left: {:?}",
        backends(side, db).await
    );
    assert_eq!(count(side, "SELECT count(*) FROM e2e_items").await, 0, "the session was rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_over_stdio_cancels_calls_in_flight_and_rolls_back() {
    let db = test_db().await;
    let side = db.client().await;
    create_items(&side).await;
    let mut server = RawStdio::start(&db, &[]);
    server.initialize().await;
    let begin = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "pg_tx", "arguments": {"action": "begin"}}});
    server.send_line(begin.to_string().as_bytes()).await;
    let (begun, _) = server.until_id(&json!(1), Duration::from_secs(10)).await;
    let session = begun["result"]["structuredContent"]["session_id"].as_str().expect("a session").to_owned();
    let write =
        json!({"action": "write", "sql": "INSERT INTO e2e_items VALUES (1, 'uncommitted')", "session_id": session});
    server.send_line(&tools_call(2, write)).await;
    let (written, _) = server.until_id(&json!(2), Duration::from_secs(10)).await;
    assert_eq!(written["result"]["structuredContent"]["rows_affected"], 1, "{written}");
    server
        .send_line(&tools_call(3, json!({"action": "read", "sql": "SELECT pg_sleep(62)", "timeout_ms": 120000})))
        .await;
    assert!(eventually(Duration::from_secs(10), || async { count(&side, SLEEPING).await == 1 }).await);

    let started = Instant::now();
    sigterm(server.pid());
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("the server exits within 10 s of SIGTERM")
        .unwrap();
    let exit_ms = started.elapsed().as_millis() as u64;
    assert_eq!(status.code(), Some(0));
    assert_stopped_cleanly(&side, &db).await;
    figures::record("clients_sigterm_stdio", json!({"exit_ms": exit_ms}));
}

/// SIGTERM over HTTP with a read running and a session holding an uncommitted write: the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_over_http_cancels_calls_in_flight_and_rolls_back() {
    let db = test_db().await;
    let side = db.client().await;
    create_items(&side).await;
    let server = HttpServer::start(&db, &[]).await;
    let alice = server.client(ALICE).await;
    let begin = call(&alice, "pg_tx", json!({"action": "begin"})).await;
    let session = begin["session_id"].as_str().unwrap().to_owned();
    let write =
        json!({"action": "write", "sql": "INSERT INTO e2e_items VALUES (1, 'uncommitted')", "session_id": session});
    assert_eq!(call(&alice, "pg_query", write).await["rows_affected"], 1);
    let host = server.base.trim_start_matches("http://").to_owned();
    let body =
        modern_call(3, "pg_query", json!({"action": "read", "sql": "SELECT pg_sleep(62)", "timeout_ms": 120000}))
            .to_string();
    let mut socket = tokio::net::TcpStream::connect(&host).await.unwrap();
    socket.write_all(raw_post(&host, &body, "pg_query").as_bytes()).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || async { count(&side, SLEEPING).await == 1 }).await);

    let started = Instant::now();
    let status = server.terminate().await;
    let exit_ms = started.elapsed().as_millis() as u64;
    assert_eq!(status.code(), Some(0));
    assert!(exit_ms < 10_000, "the server exits within 10 s of SIGTERM, took {exit_ms} ms");
    assert_stopped_cleanly(&side, &db).await;
    // The client whose call was in flight got an answer or a closed connection, not a hang.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the in-flight client's connection is closed");
    figures::record("clients_sigterm_http", json!({"exit_ms": exit_ms}));
}
