//! Starting while the database is down: like PgBouncer, the server starts and
//! listens, `/health` answers 200, `/ready` 503, tool calls `UNAVAILABLE` with a hint, and it
//! recovers by itself when the database comes up — no restart. On a cluster of the test's own.

use std::sync::Arc;
use std::time::Duration;

use coldquery_tests::harness::{PgCluster, StopMode, test_db_at};
use serde_json::json;

use crate::support::{ALICE, HttpServer, call, call_raw, code, eventually, stdio_client_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_while_the_database_is_down_and_recovers_by_itself() {
    let cluster = Arc::new(tokio::task::spawn_blocking(PgCluster::start).await.unwrap().expect("own cluster starts"));
    let db = test_db_at(&cluster.admin_url()).await;
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop(StopMode::Fast)).await.unwrap().expect("the cluster stops");

    // A short acquire timeout: a call waits that long for a connection before UNAVAILABLE.
    let server = HttpServer::start(&db, &["--acquire-timeout", "2s"]).await;
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let (http, base) = (http.clone(), server.base.clone());
        async move { http.get(format!("{base}{path}")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    assert_eq!(status("/health").await, 200, "liveness does not need the database");
    assert_eq!(status("/ready").await, 503, "readiness reports the database down");
    let client = server.client(ALICE).await;
    let read = || json!({"action": "read", "sql": "SELECT 1 AS one"});
    let out = call(&client, "pg_query", read()).await;
    assert_eq!(code(&out), "UNAVAILABLE", "{out}");
    assert!(out["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()), "a hint says what to do: {out}");
    assert!(out["error"]["message"].as_str().is_some_and(|m| m.contains("unreachable")), "the cause: {out}");
    let health = call_raw(&client, "pg_monitor", json!({"action": "health"})).await;
    let health = health.structured_content.expect("structured content");
    assert_eq!(health["status"], "down", "{health}");
    assert!(health["error"]["message"].as_str().is_some(), "the reason is given: {health}");
    // stdio starts as well, and answers with UNAVAILABLE.
    let stdio = stdio_client_with(&db, &[("COLDQUERY_ACQUIRE_TIMEOUT", "2s")]).await;
    assert_eq!(code(&call(&stdio, "pg_query", read()).await), "UNAVAILABLE");

    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.start_again()).await.unwrap().expect("the cluster starts again");
    let ready = eventually(Duration::from_secs(20), || async { status("/ready").await == 200 }).await;
    assert!(ready, "/ready turns 200 once the database is up");
    let out = call(&client, "pg_query", read()).await;
    assert_eq!(out["rows"][0]["one"], 1, "tool calls recover without a restart: {out}");
    let out = call(&stdio, "pg_query", read()).await;
    assert_eq!(out["rows"][0]["one"], 1, "stdio recovers too: {out}");
    stdio.cancel().await.ok();
    client.cancel().await.ok();
    assert!(server.terminate().await.success());
}
