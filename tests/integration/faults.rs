//! Fault tests on a cluster of their own (so stopping it disturbs no other test): a server
//! restart. Sessionless calls recover on fresh connections; a session whose connection died
//! with the server is reported lost and its commit never claims success.

use std::sync::Arc;
use std::time::Duration;

use coldquery_tests::harness::{PgCluster, test_db_at};
use coldquery_tools::ToolConfig;
use serde_json::json;

use crate::support::{call, caller, code, options, tools};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_loses_sessions_honestly_and_the_pool_recovers() {
    let cluster = Arc::new(tokio::task::spawn_blocking(PgCluster::start).await.unwrap().expect("own cluster starts"));
    let db = test_db_at(&cluster.admin_url()).await;
    db.client().await.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").await.unwrap();
    let (tools, _database) = tools(&db, &options(), ToolConfig::default(), false).await;
    let me = caller("restart");

    let read = json!({"action": "read", "sql": "SELECT count(*) AS n FROM t"});
    assert_eq!(code(&call(&tools, &me, "pg_query", read.clone()).await), "ok");
    let begun = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
    let id = begun["session_id"].as_str().unwrap().to_owned();
    let wrote =
        call(&tools, &me, "pg_query", json!({"action": "write", "sql": "INSERT INTO t VALUES (1)", "session_id": id}))
            .await;
    assert_eq!(code(&wrote), "ok", "{wrote}");

    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart()).await.unwrap().expect("the cluster restarts");

    // The session's connection died with the server: never "committed", and the row is absent.
    let committed = call(&tools, &me, "pg_tx", json!({"action": "commit", "session_id": id})).await;
    eprintln!("commit after the restart: {committed}");
    assert_ne!(code(&committed), "ok", "a commit after the server restarted cannot succeed: {committed}");
    assert!(
        ["COMMIT_FAILED", "COMMIT_OUTCOME_UNKNOWN", "SESSION_NOT_FOUND"].contains(&code(&committed).as_str()),
        "{committed}"
    );
    // Sessionless calls recover: a stale pooled connection may fail one call, never more.
    let mut recovered = false;
    for _ in 0..3 {
        let out = call(&tools, &me, "pg_query", read.clone()).await;
        eprintln!("read after the restart: {}", code(&out));
        if code(&out) == "ok" {
            assert_eq!(out["rows"][0]["n"], 0, "the uncommitted row is gone");
            recovered = true;
            break;
        }
        assert_eq!(code(&out), "UNAVAILABLE", "{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "reads work again after the restart");
    // A new session works on a fresh connection.
    let begun = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
    assert_eq!(code(&begun), "ok", "{begun}");
}
