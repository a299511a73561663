//! ColdQuery killed (SIGKILL) mid-transaction and mid-query: the real binary serves
//! an idle session with an uncommitted row, a session statement and an autocommit write that
//! are both still running (`pg_sleep`), and a heavy sessionless read; then it is killed with
//! `kill -9`. From a side connection: every one of its backends is gone within a bound, and
//! nothing it had not committed is visible.
//!
//! The kernel closes a killed process's sockets, so an idle backend reads end-of-file at once;
//! a backend busy with a statement only notices at its next read or write, or at the next
//! `client_connection_check_interval` tick (2 s, set by ColdQuery on every connection).

use std::time::{Duration, Instant};

use coldquery_tests::figures;
use coldquery_tests::harness::test_db;
use serde_json::json;

use crate::support::{ALICE, HttpServer, call, code, count, eventually};

/// ColdQuery's backends in this database, by state.
const BACKENDS: &str = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
     AND application_name = 'coldquery'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coldquery_killed_mid_transaction_and_mid_query_leaves_no_backend_and_nothing_uncommitted() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE killed (id int PRIMARY KEY)").await.unwrap();
    let server = HttpServer::start(&db, &[]).await;
    let client = std::sync::Arc::new(server.client(ALICE).await);

    // An idle session holding an uncommitted row.
    let begun = call(&client, "pg_tx", json!({"action": "begin"})).await;
    let idle = begun["session_id"].as_str().expect("a session id").to_owned();
    let wrote = call(
        &client,
        "pg_query",
        json!({"action": "write", "sql": "INSERT INTO killed VALUES (1)", "session_id": idle}),
    )
    .await;
    assert_eq!(code(&wrote), "ok", "{wrote}");

    // A session statement, an autocommit write and a heavy read, all still running.
    let begun = call(&client, "pg_tx", json!({"action": "begin"})).await;
    let busy = begun["session_id"].as_str().expect("a session id").to_owned();
    let in_flight = [
        json!({"action": "write", "sql": "INSERT INTO killed SELECT 2 FROM pg_sleep(60)", "session_id": busy}),
        json!({"action": "write", "sql": "INSERT INTO killed SELECT 3 FROM pg_sleep(60)", "autocommit": true, "timeout_ms": 60000}),
        json!({"action": "read", "sql": "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b", "timeout_ms": 60000}),
    ];
    for args in in_flight {
        let client = client.clone();
        tokio::spawn(async move {
            // The call dies with the server; its outcome is not what this test checks.
            let _ = client
                .call_tool(
                    rmcp::model::CallToolRequestParams::new("pg_query").with_arguments(crate::support::args(args)),
                )
                .await;
        });
    }
    let running = eventually(Duration::from_secs(10), || async {
        count(&side, &format!("{BACKENDS} AND state = 'active'")).await == 3
            && count(&side, &format!("{BACKENDS} AND state = 'idle in transaction'")).await == 1
    })
    .await;
    assert!(running, "three statements run and one session idles in its transaction");
    let before = count(&side, BACKENDS).await;

    let pid = server.child.id().expect("the server runs");
    let killed = Instant::now();
    let status = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -KILL works");

    // The idle session's backend reads end-of-file at once.
    let mut idle_gone = None;
    let mut all_gone = None;
    while killed.elapsed() < Duration::from_secs(10) && all_gone.is_none() {
        if idle_gone.is_none() && count(&side, &format!("{BACKENDS} AND state = 'idle in transaction'")).await == 0 {
            idle_gone = Some(killed.elapsed());
        }
        if count(&side, BACKENDS).await == 0 {
            all_gone = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idle_gone = idle_gone.expect("the idle-in-transaction backend ends");
    let all_gone = all_gone.expect("every backend of the killed ColdQuery ends within 10 s");
    eprintln!("after SIGKILL: the idle-in-transaction backend ended in {idle_gone:?}, all {before} in {all_gone:?}");
    assert!(idle_gone < Duration::from_secs(1), "end-of-file is immediate: {idle_gone:?}");
    // client_connection_check_interval (2 s) plus scheduling.
    assert!(all_gone < Duration::from_secs(4), "running statements end within the check interval: {all_gone:?}");
    assert_eq!(count(&side, "SELECT count(*) FROM killed").await, 0, "nothing uncommitted is visible");
    assert_eq!(
        count(
            &side,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'killed'"
        )
        .await,
        0,
        "no lock is left behind"
    );
    figures::record(
        "coldquery_killed",
        json!({
            "backends_before_kill": before,
            "idle_in_transaction_gone_ms": idle_gone.as_millis(),
            "all_backends_gone_ms": all_gone.as_millis(),
            "rows_visible_after": 0,
            "client_connection_check_interval_ms": 2000,
        }),
    );
}
