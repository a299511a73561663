//! `pg_admin` against a real PostgreSQL: maintenance through the Default-Deny gate, table
//! statistics, transaction-local settings, and signalling a backend on a side connection.

use std::time::{Duration, Instant};

use coldquery_tests::harness::test_db;
use coldquery_tools::ToolConfig;
use serde_json::{Value, json};

use crate::support::{begin, call, caller, code, count, options, tools};

async fn admin(t: &coldquery_tools::Tools, args: Value) -> Value {
    call(t, &caller("alice"), "pg_admin", args).await
}

#[tokio::test]
async fn vacuum_runs_with_autocommit_and_is_refused_in_a_session() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE SCHEMA \"My Schema\";
         CREATE TABLE \"My Schema\".\"Big\"\"Table\" (id int) WITH (autovacuum_enabled = false);
         INSERT INTO \"My Schema\".\"Big\"\"Table\" SELECT generate_series(1, 2000);
         DELETE FROM \"My Schema\".\"Big\"\"Table\" WHERE id % 2 = 0;",
    )
    .await
    .unwrap();
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;

    let denied = admin(&t, json!({"action": "vacuum", "table": "Big\"Table", "schema": "My Schema"})).await;
    assert_eq!(code(&denied), "WRITE_DENIED");

    let id = begin(&t, &caller("alice"), json!({})).await;
    let refused =
        admin(&t, json!({"action": "vacuum", "table": "Big\"Table", "schema": "My Schema", "session_id": id})).await;
    assert_eq!(code(&refused), "STATEMENT_NOT_ALLOWED", "{refused}");
    // The refusal sent nothing, so the session is still usable.
    let status = call(&t, &caller("alice"), "pg_tx", json!({"action": "status", "session_id": id})).await;
    assert_eq!(status["transaction_state"], "idle", "{status}");

    let out = admin(
        &t,
        json!({"action": "vacuum", "table": "Big\"Table", "schema": "My Schema", "analyze": true, "verbose": true,
               "autocommit": true}),
    )
    .await;
    assert_eq!(out["status"], "done", "{out}");
    assert_eq!(out["statement"], r#"VACUUM (VERBOSE, ANALYZE) "My Schema"."Big""Table""#);
    let vacuums =
        count(&side, "SELECT vacuum_count + analyze_count FROM pg_stat_user_tables WHERE relname = 'Big\"Table'").await;
    assert!(vacuums >= 2, "VACUUM (ANALYZE) ran: {vacuums}");

    let full = admin(
        &t,
        json!({"action": "vacuum", "table": "\"My Schema\".\"Big\"\"Table\"", "full": true, "autocommit": true}),
    )
    .await;
    assert_eq!(full["status"], "done", "{full}");
    let whole = admin(&t, json!({"action": "vacuum", "autocommit": true})).await;
    assert_eq!(whole["status"], "done", "{whole}");

    let missing = admin(&t, json!({"action": "vacuum", "table": "nope", "autocommit": true})).await;
    assert_eq!(code(&missing), "DATABASE_ERROR");
    assert_eq!(missing["error"]["sqlstate"], "42P01");
}

#[tokio::test]
async fn analyze_in_a_session_commits_with_it_and_reindex_rebuilds() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text);
         CREATE INDEX items_name_idx ON items (name);
         INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;

    let id = begin(&t, &caller("alice"), json!({})).await;
    let out = admin(&t, json!({"action": "analyze", "table": "items", "session_id": id})).await;
    assert_eq!(out["ran_in"], "session", "{out}");
    assert_eq!(out["session"]["id"], id.as_str());
    let committed = call(&t, &caller("alice"), "pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(committed["status"], "committed", "{committed}");
    assert_eq!(count(&side, "SELECT reltuples::bigint FROM pg_class WHERE relname = 'items'").await, 100);

    let before = count(&side, "SELECT relfilenode::int8 FROM pg_class WHERE relname = 'items_name_idx'").await;
    let out = admin(
        &t,
        json!({"action": "reindex", "target": "index", "name": "items_name_idx", "concurrently": true,
                              "autocommit": true}),
    )
    .await;
    assert_eq!(out["status"], "done", "{out}");
    let after = count(&side, "SELECT relfilenode::int8 FROM pg_class WHERE relname = 'items_name_idx'").await;
    assert_ne!(before, after, "REINDEX CONCURRENTLY built a new index file");

    for args in [
        json!({"action": "reindex", "target": "table", "name": "public.items", "autocommit": true}),
        json!({"action": "reindex", "target": "schema", "name": "public", "autocommit": true}),
    ] {
        let out = admin(&t, args.clone()).await;
        assert_eq!(out["status"], "done", "{args}: {out}");
    }
    let id = begin(&t, &caller("alice"), json!({})).await;
    let refused = admin(&t, json!({"action": "reindex", "target": "schema", "name": "public", "session_id": id})).await;
    assert_eq!(code(&refused), "STATEMENT_NOT_ALLOWED");
    let in_session =
        admin(&t, json!({"action": "reindex", "target": "table", "name": "items", "session_id": id})).await;
    assert_eq!(in_session["ran_in"], "session", "{in_session}");
}

#[tokio::test]
async fn stats_show_busy_tables_and_index_usage() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE hot (id int PRIMARY KEY, v text);
         CREATE TABLE cold (id int);
         INSERT INTO hot SELECT g, 'v' FROM generate_series(1, 50) g;
         SET enable_seqscan = off;
         SELECT * FROM hot WHERE id = 1; SELECT * FROM hot WHERE id = 2; SELECT count(*) FROM hot;",
    )
    .await
    .unwrap();
    drop(side); // Statistics are flushed when a backend exits.
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let busiest = loop {
        let out = admin(&t, json!({"action": "stats", "schema": "public"})).await;
        let first_scans = out["tables"][0]["scans"].as_i64().unwrap_or(0);
        if (out["tables"][0]["table"] == "hot" && first_scans > 0) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(busiest["tables"][0]["table"], "hot", "{busiest}");
    assert_eq!(busiest["tables"][0]["inserted"], 50);
    let names: Vec<&str> = busiest["tables"].as_array().unwrap().iter().filter_map(|r| r["table"].as_str()).collect();
    assert!(names.contains(&"cold"), "{names:?}");

    let limited = admin(&t, json!({"action": "stats", "limit": 1})).await;
    assert_eq!(limited["count"], 1);
    assert_eq!(limited["truncated"], true);

    let one = admin(&t, json!({"action": "stats", "table": "hot"})).await;
    assert_eq!(one["schema"], "public", "{one}");
    assert_eq!(one["live_tuples"], 50);
    let index = &one["indexes"][0];
    assert_eq!(index["index"], "hot_pkey");
    assert_eq!(index["primary"], true);
    assert!(index["scans"].as_i64().unwrap() >= 2, "{index}");
    assert!(index["definition"].as_str().unwrap().starts_with("CREATE UNIQUE INDEX hot_pkey"));

    let missing = admin(&t, json!({"action": "stats", "table": "nope", "schema": "public"})).await;
    assert_eq!(code(&missing), "DATABASE_ERROR");
}

#[tokio::test]
async fn settings_set_in_a_session_is_visible_there_only_and_gone_after_rollback() {
    let db = test_db().await;
    let side = db.client().await;
    let default_work_mem: String = side.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;

    let listed = admin(&t, json!({"action": "settings", "pattern": "work_mem"})).await;
    let names: Vec<&str> = listed["settings"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(names.contains(&"work_mem") && names.contains(&"maintenance_work_mem"), "{names:?}");
    let by_category = admin(&t, json!({"action": "settings", "category": "autovacuum", "pattern": "%naptime"})).await;
    assert_eq!(by_category["count"], 1, "{by_category}");
    assert_eq!(by_category["settings"][0]["name"], "autovacuum_naptime");

    let got = admin(&t, json!({"action": "settings", "name": "work_mem"})).await;
    assert_eq!(got["setting"], default_work_mem.as_str(), "{got}");
    assert_eq!(got["unit"], "kB");

    let without = admin(&t, json!({"action": "settings", "name": "work_mem", "value": "77MB"})).await;
    assert_eq!(code(&without), "INVALID_ARGUMENT");

    let id = begin(&t, &caller("alice"), json!({})).await;
    let set = admin(&t, json!({"action": "settings", "name": "work_mem", "value": "77MB", "session_id": id})).await;
    assert_eq!(set["setting"], "77MB", "{set}");
    let inside = admin(&t, json!({"action": "settings", "name": "work_mem", "session_id": id})).await;
    assert_eq!(inside["setting"], "77MB");
    let outside = admin(&t, json!({"action": "settings", "name": "work_mem"})).await;
    assert_eq!(outside["setting"], default_work_mem.as_str());

    // A dotted custom setting can be set and read back within the session.
    let custom =
        admin(&t, json!({"action": "settings", "name": "coldquery.test", "value": 42, "session_id": id})).await;
    assert_eq!(custom["setting"], "42", "{custom}");
    let custom = admin(&t, json!({"action": "settings", "name": "coldquery.test", "session_id": id})).await;
    assert_eq!(custom["setting"], "42");

    let rolled = call(&t, &caller("alice"), "pg_tx", json!({"action": "rollback", "session_id": id})).await;
    assert_eq!(rolled["status"], "rolled_back");
    let id = begin(&t, &caller("alice"), json!({})).await;
    let after = admin(&t, json!({"action": "settings", "name": "work_mem", "session_id": id})).await;
    assert_eq!(after["setting"], default_work_mem.as_str(), "the setting reverted with the rollback");

    let bad_value =
        admin(&t, json!({"action": "settings", "name": "work_mem", "value": "lots", "session_id": id})).await;
    assert_eq!(code(&bad_value), "DATABASE_ERROR");
    assert_eq!(bad_value["error"]["sqlstate"], "22023");

    let unknown = admin(&t, json!({"action": "settings", "name": "no_such_setting"})).await;
    assert_eq!(code(&unknown), "DATABASE_ERROR");
    let preloaded: String = side.query_one("SHOW shared_preload_libraries", &[]).await.unwrap().get(0);
    let track = admin(&t, json!({"action": "settings", "name": "pg_stat_statements.track"})).await;
    if preloaded.contains("pg_stat_statements") {
        assert_eq!(track["setting"], "top", "{track}");
    } else {
        assert_eq!(track["error"]["sqlstate"], "42704", "{track}");
    }
}

#[tokio::test]
async fn settings_set_is_refused_in_read_only_mode() {
    let db = test_db().await;
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), true).await;
    let id = begin(&t, &caller("alice"), json!({})).await;
    let out = admin(&t, json!({"action": "settings", "name": "work_mem", "value": "8MB", "session_id": id})).await;
    assert_eq!(code(&out), "WRITE_DENIED");
    let read = admin(&t, json!({"action": "settings", "name": "work_mem", "session_id": id})).await;
    assert_eq!(code(&read), "ok", "reads still work: {read}");
}

#[tokio::test]
async fn terminate_cancels_a_query_on_a_side_connection_and_terminates_another() {
    let db = test_db().await;
    let sleeper = db.client().await;
    let victim = db.client().await;
    let sleeper_pid: i32 = sleeper.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let victim_pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;

    let denied = admin(&t, json!({"action": "terminate", "pid": sleeper_pid})).await;
    assert_eq!(code(&denied), "WRITE_DENIED");

    let sleeping = tokio::spawn(async move {
        let started = Instant::now();
        let outcome = sleeper.query("SELECT pg_sleep(60)", &[]).await;
        (outcome.map(|_| ()).map_err(|e| e.code().map(|c| c.code().to_owned())), started.elapsed())
    });
    // Wait until the sleep is running, so the cancel has a query to stop.
    let observer = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(
        &observer,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {sleeper_pid} AND state = 'active'"),
    )
    .await
        == 0
    {
        assert!(Instant::now() < deadline, "the sleep never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = admin(&t, json!({"action": "terminate", "pid": sleeper_pid, "autocommit": true})).await;
    assert_eq!(out["signalled"], true, "{out}");
    assert_eq!(out["mode"], "cancel");
    assert_eq!(out["backend"]["query"], "SELECT pg_sleep(60)");
    let (outcome, elapsed) = tokio::time::timeout(Duration::from_secs(10), sleeping).await.unwrap().unwrap();
    assert_eq!(outcome, Err(Some("57014".to_owned())), "the query was cancelled");
    assert!(elapsed < Duration::from_secs(30));

    let out =
        admin(&t, json!({"action": "terminate", "pid": victim_pid, "mode": "terminate", "autocommit": true})).await;
    assert_eq!(out["signalled"], true, "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&observer, &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {victim_pid}")).await > 0 {
        assert!(Instant::now() < deadline, "the backend never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(victim.query("SELECT 1", &[]).await.is_err(), "the victim's connection is gone");

    let gone = admin(&t, json!({"action": "terminate", "pid": victim_pid, "autocommit": true})).await;
    assert_eq!(code(&gone), "INVALID_ARGUMENT", "{gone}");
}
