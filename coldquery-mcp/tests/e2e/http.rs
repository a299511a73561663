//! The streamable HTTP transport: bearer tokens, Origin validation, sessions bound to their
//! principal (and legacy MCP session), both protocol eras, operations endpoints, shutdown.

use std::time::Duration;

use coldquery_tests::harness::test_db;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ALICE, BOB, HttpServer, call, code, count, create_items, eventually};

fn initialize_body() -> serde_json::Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
}

/// A POST to the server's /mcp with the content type and accept headers a client sends.
fn mcp_post(server: &HttpServer) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(server.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

async fn post_initialize(server: &HttpServer, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = mcp_post(server).body(initialize_body().to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the server answers")
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_with_a_challenge() {
    let db = test_db().await;
    let server = HttpServer::start(&db, &[]).await;

    let missing = post_initialize(&server, &[]).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let challenge = missing.headers().get("www-authenticate").expect("a challenge").to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let wrong = post_initialize(&server, &[("authorization", "Bearer alice-token-01234567890")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("www-authenticate").unwrap().to_str().unwrap().contains("invalid_token"));
    let basic = post_initialize(&server, &[("authorization", &format!("Basic {ALICE}"))]).await;
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    let right = post_initialize(&server, &[("authorization", &format!("Bearer {ALICE}"))]).await;
    assert_eq!(right.status(), StatusCode::OK);

    // Alice's MCP session id is no use to Bob: it is bound to the principal that created it.
    let session = right.headers().get("mcp-session-id").expect("a legacy session").to_str().unwrap().to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let hijack = mcp_post(&server)
        .bearer_auth(BOB)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(list)
        .send()
        .await
        .unwrap();
    assert_eq!(hijack.status(), StatusCode::NOT_FOUND);

    // rmcp's client gets no session without a token either.
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(server.mcp_url());
    use rmcp::ServiceExt;
    assert!(().serve(transport).await.is_err(), "an MCP client without a token cannot connect");

    // /health and /ready need no token; /metrics does.
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{}/health", server.base)).send().await.unwrap().status(), StatusCode::OK);
    let ready = http.get(format!("{}/ready", server.base)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = http.get(format!("{}/metrics", server.base)).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::UNAUTHORIZED);
    assert!(metrics.headers().contains_key("www-authenticate"));
    server.terminate().await;
}

#[tokio::test]
async fn foreign_origins_get_403() {
    let db = test_db().await;
    let server =
        HttpServer::start(&db, &["--allowed-origins", "https://app.example.com:443", "--max-request-bytes", "4KiB"])
            .await;
    let bearer = format!("Bearer {ALICE}");

    let foreign = post_initialize(&server, &[("authorization", &bearer), ("origin", "https://evil.example")]).await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let rebinding =
        post_initialize(&server, &[("authorization", &bearer), ("origin", "http://evil.example:8080")]).await;
    assert_eq!(rebinding.status(), StatusCode::FORBIDDEN);
    let local = post_initialize(&server, &[("authorization", &bearer), ("origin", "http://localhost:6274")]).await;
    assert_eq!(local.status(), StatusCode::OK);
    let configured =
        post_initialize(&server, &[("authorization", &bearer), ("origin", "https://app.example.com")]).await;
    assert_eq!(configured.status(), StatusCode::OK);
    // The Host allow-list defaults to loopback names.
    let host = post_initialize(&server, &[("authorization", &bearer), ("host", "evil.example")]).await;
    assert_eq!(host.status(), StatusCode::FORBIDDEN);

    // Bodies over --max-request-bytes are refused.
    let mut huge = initialize_body();
    huge["params"]["clientInfo"]["name"] = json!("x".repeat(8192));
    let too_large = mcp_post(&server).bearer_auth(ALICE).body(huge.to_string()).send().await.unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    server.terminate().await;
}

#[tokio::test]
async fn sessions_belong_to_the_principal_that_opened_them() {
    let db = test_db().await;
    let side = db.client().await;
    create_items(&side).await;
    let server = HttpServer::start(&db, &[]).await;
    let alice = server.client(ALICE).await;
    let bob = server.client(BOB).await;
    let bob_modern = server.modern_client(BOB).await;

    let begin = call(&alice, "pg_tx", json!({"action": "begin"})).await;
    let session = begin["session_id"].as_str().unwrap().to_owned();
    let write = call(
        &alice,
        "pg_query",
        json!({"action": "write", "sql": "INSERT INTO e2e_items VALUES (1, 'alice')", "session_id": session}),
    )
    .await;
    assert_eq!(write["rows_affected"], 1, "{write}");

    for (tool, arguments) in [
        ("pg_tx", json!({"action": "status", "session_id": session})),
        ("pg_tx", json!({"action": "commit", "session_id": session})),
        ("pg_query", json!({"action": "read", "sql": "SELECT * FROM e2e_items", "session_id": session})),
        ("pg_query", json!({"action": "write", "sql": "DELETE FROM e2e_items WHERE id = 1", "session_id": session})),
    ] {
        let legacy = call(&bob, tool, arguments.clone()).await;
        assert_eq!(code(&legacy), "SESSION_NOT_FOUND", "bob (legacy) {arguments}: {legacy}");
        let modern = call(&bob_modern, tool, arguments.clone()).await;
        assert_eq!(code(&modern), "SESSION_NOT_FOUND", "bob (2026-07-28) {arguments}: {modern}");
    }
    let listed = call(&bob, "pg_tx", json!({"action": "list"})).await;
    assert_eq!(listed["count"], 0, "{listed}");

    // Alice's session is untouched and commits.
    let commit = call(&alice, "pg_tx", json!({"action": "commit", "session_id": session})).await;
    assert_eq!(code(&commit), "ok", "{commit}");
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items WHERE name = 'alice'").await, 1);

    // Stateless 2026-07-28 calls work too, and all calls are in the metrics.
    let read =
        call(&bob_modern, "pg_query", json!({"action": "read", "sql": "SELECT count(*) AS n FROM e2e_items"})).await;
    assert_eq!(read["rows"], json!([{"n": 1}]));
    let metrics =
        reqwest::Client::new().get(format!("{}/metrics", server.base)).bearer_auth(ALICE).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    for needle in [
        "coldquery_tool_calls_total{tool=\"pg_tx\",action=\"status\",outcome=\"SESSION_NOT_FOUND\"} 2",
        "coldquery_tool_calls_total{tool=\"pg_tx\",action=\"commit\",outcome=\"ok\"} 1",
        "coldquery_tool_call_duration_seconds_count{tool=\"pg_query\"}",
        "coldquery_pool_size ",
        "coldquery_sessions_open 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    server.terminate().await;
}

#[tokio::test]
async fn deleting_a_legacy_session_and_sigterm_roll_back() {
    let db = test_db().await;
    let side = db.client().await;
    create_items(&side).await;
    let server = HttpServer::start(&db, &[]).await;

    // A legacy client that ends its MCP session (DELETE) loses its open transaction.
    let alice = server.client(ALICE).await;
    let begin = call(&alice, "pg_tx", json!({"action": "begin"})).await;
    let session = begin["session_id"].as_str().unwrap().to_owned();
    call(
        &alice,
        "pg_query",
        json!({"action": "write", "sql": "INSERT INTO e2e_items VALUES (1, 'a')", "session_id": session}),
    )
    .await;
    let in_transaction =
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()";
    assert_eq!(count(&side, in_transaction).await, 1);
    alice.cancel().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async { count(&side, in_transaction).await == 0 }).await,
        "the DELETE of the MCP session rolled back its transaction"
    );

    // SIGTERM rolls back every open session and exits with status 0.
    let bob = server.client(BOB).await;
    let begin = call(&bob, "pg_tx", json!({"action": "begin"})).await;
    let session = begin["session_id"].as_str().unwrap().to_owned();
    call(
        &bob,
        "pg_query",
        json!({"action": "write", "sql": "INSERT INTO e2e_items VALUES (2, 'b')", "session_id": session}),
    )
    .await;
    assert_eq!(count(&side, in_transaction).await, 1);
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0));
    assert!(
        eventually(Duration::from_secs(5), || async { count(&side, in_transaction).await == 0 }).await,
        "no transaction is left open after SIGTERM"
    );
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 0);
}

#[tokio::test]
async fn a_client_going_away_cancels_its_statement() {
    let db = test_db().await;
    let side = db.client().await;
    let server = HttpServer::start(&db, &[]).await;
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(61)%' AND pid <> pg_backend_pid()";

    // A 2026-07-28 request whose client hangs up: the closed stream cancels the statement.
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "pg_query",
        "arguments": {"action": "read", "sql": "SELECT pg_sleep(61)", "timeout_ms": 120000},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
        }
    }});
    let request = mcp_post(&server)
        .bearer_auth(ALICE)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "pg_query")
        .body(body.to_string())
        .send();
    let pending = tokio::spawn(request);
    assert!(
        eventually(Duration::from_secs(10), || async { count(&side, sleeping).await == 1 }).await,
        "the statement runs on the server"
    );
    pending.abort();
    assert!(
        eventually(Duration::from_secs(5), || async { count(&side, sleeping).await == 0 }).await,
        "the backend stops running the statement once the HTTP client is gone"
    );

    // A legacy client cancels with notifications/cancelled.
    let alice = server.client(ALICE).await;
    let params = rmcp::model::CallToolRequestParams::new("pg_query").with_arguments(crate::support::args(
        json!({"action": "read", "sql": "SELECT pg_sleep(61)", "timeout_ms": 120000}),
    ));
    let handle = alice
        .send_cancellable_request(
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(params)),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || async { count(&side, sleeping).await == 1 }).await);
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async { count(&side, sleeping).await == 0 }).await,
        "notifications/cancelled over HTTP cancels the statement"
    );
    let after = call(&alice, "pg_query", json!({"action": "read", "sql": "SELECT 1 AS one"})).await;
    assert_eq!(after["rows"], json!([{"one": 1}]));
    server.terminate().await;
}

/// A client that never finishes its request headers (slowloris) is disconnected after the
/// header timeout, and meanwhile other clients are served.
#[tokio::test]
async fn slow_clients_are_cut_off_and_do_not_block_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let db = test_db().await;
    let server = HttpServer::start(&db, &[]).await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    // Another client is served while the slow one dawdles.
    let health = reqwest::get(format!("{}/health", server.base)).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // The server closes the slow connection (EOF or reset) within the header timeout plus slack.
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow connection was still open after 20 s");
    server.terminate().await;
}
