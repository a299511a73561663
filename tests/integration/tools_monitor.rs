//! `pg_monitor` against a real PostgreSQL: every action's catalog SQL runs on the server, and
//! the conditions each reports (a sleeping backend, a real blocking pair, an invalid and a
//! duplicate index) are created on side connections first.

use std::time::{Duration, Instant};

use coldquery_tests::harness::test_db;
use coldquery_tools::ToolConfig;
use serde_json::{Value, json};

use crate::support::{call, caller, code, count, options, tools};

async fn monitor(t: &coldquery_tools::Tools, args: Value) -> Value {
    call(t, &caller("alice"), "pg_monitor", args).await
}

/// Polls `action` until `done` holds for its output (or 10 s pass), and returns the output.
async fn poll(t: &coldquery_tools::Tools, args: Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = monitor(t, args.clone()).await;
        if done(&out) || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pids(rows: &Value, key: &str) -> Vec<i64> {
    rows.as_array().map(|rows| rows.iter().filter_map(|r| r[key].as_i64()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn health_reports_the_server_and_deep_checks_all_run() {
    let db = test_db().await;
    let side = db.client().await;
    // An invalid index (a failed CREATE UNIQUE INDEX CONCURRENTLY) and two identical indexes.
    side.batch_execute(
        "CREATE TABLE dup (a int, b int);
         INSERT INTO dup VALUES (1, 1), (1, 2);
         CREATE INDEX dup_a_1 ON dup (a);
         CREATE INDEX dup_a_2 ON dup (a);",
    )
    .await
    .unwrap();
    assert!(side.batch_execute("CREATE UNIQUE INDEX CONCURRENTLY dup_a_unique ON dup (a)").await.is_err());
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;

    let basic = monitor(&t, json!({"action": "health"})).await;
    assert_eq!(basic["status"], "ok", "{basic}");
    assert_eq!(basic["database"], db.name.as_str());
    assert_eq!(basic["in_recovery"], false);
    let version_num = count(&side, "SELECT current_setting('server_version_num')::int8").await;
    assert_eq!(basic["server_version_num"], version_num);
    assert!(basic["uptime_seconds"].as_i64().unwrap() >= 0);
    assert_eq!(basic["pool"]["size"], options().pool_size);
    assert_eq!(basic["sessions"], json!({"open": 0, "max": 3}));
    assert!(basic.get("checks").is_none());

    let deep = monitor(&t, json!({"action": "health", "deep": true})).await;
    let checks = deep["checks"].as_array().unwrap_or_else(|| panic!("no checks: {deep}"));
    assert_eq!(checks.len(), 13);
    for check in checks {
        let status = check["status"].as_str().unwrap();
        assert!(["ok", "warn", "critical"].contains(&status), "{check}");
        let detail = check["detail"].as_str().unwrap();
        assert!(!detail.contains("could not run"), "every check's SQL runs on PostgreSQL: {check}");
    }
    let check = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name}")).clone();
    let invalid = check("invalid_indexes");
    assert_eq!(invalid["status"], "warn", "{invalid}");
    assert_eq!(invalid["items"][0]["index"], "dup_a_unique");
    let duplicate = check("duplicate_indexes");
    assert_eq!(duplicate["status"], "warn", "{duplicate}");
    assert_eq!(duplicate["items"][0]["indexes"], json!(["dup_a_1", "dup_a_2"]));
    assert_eq!(check("xid_wraparound")["status"], "ok");
    assert_eq!(check("replication")["status"], "ok");
    assert_eq!(check("role_posture")["status"], "warn", "the tests connect as the superuser");
    // blocked_queries and the backend checks are server-wide: other tests' backends count too.
    assert!(check("connection_utilization")["value"].as_f64().unwrap() > 0.0);
    let summary = &deep["summary"];
    let total = ["ok", "warn", "critical"].iter().map(|k| summary[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(total, 13);
}

#[tokio::test]
async fn health_is_down_when_the_server_is_unreachable() {
    let db = test_db().await;
    let fail_fast = coldquery_pg::PgOptions { acquire_timeout: Duration::from_secs(1), ..options() };
    let (t, database) = tools(&db, &fail_fast, ToolConfig::default(), false).await;
    assert_eq!(monitor(&t, json!({"action": "health"})).await["status"], "ok");
    // Terminate every connection of ColdQuery's pool and forbid new ones (from the admin
    // database: a database cannot forbid connections to itself).
    let side = coldquery_tests::harness::connect(&db.admin_url).await;
    side.batch_execute(&format!("ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false", db.name)).await.unwrap();
    side.batch_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ))
    .await
    .unwrap();
    let out = poll(&t, json!({"action": "health"}), |out| {
        // A connection killed mid-use may first report its own error; then nothing connects.
        out["status"] == "down" && out["error"]["code"] == "UNAVAILABLE"
    })
    .await;
    assert_eq!(out["status"], "down", "{out}");
    assert_eq!(out["error"]["code"], "UNAVAILABLE", "{out}");
    assert!(out["pool"].is_object());
    side.batch_execute(&format!("ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true", db.name)).await.unwrap();
    let back = poll(&t, json!({"action": "health"}), |out| out["status"] == "ok").await;
    assert_eq!(back["status"], "ok", "health recovers with the server: {back}");
    drop(database);
}

#[tokio::test]
async fn activity_shows_other_backends_but_not_our_own() {
    let db = test_db().await;
    let sleeper = db.client().await;
    let idle = db.client().await;
    let sleeper_pid: i32 = sleeper.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let idle_pid: i32 = idle.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;
    let sleeping = tokio::spawn(async move { sleeper.query("SELECT pg_sleep(2)", &[]).await.map(|_| ()) });

    let out =
        poll(&t, json!({"action": "activity"}), |out| pids(&out["backends"], "pid").contains(&i64::from(sleeper_pid)))
            .await;
    let backends = &out["backends"];
    let sleeping_row = backends.as_array().unwrap().iter().find(|r| r["pid"] == sleeper_pid).expect("the sleeper");
    assert_eq!(sleeping_row["state"], "active");
    assert_eq!(sleeping_row["query"], "SELECT pg_sleep(2)");
    assert_eq!(sleeping_row["wait_event"], "PgSleep");
    assert!(sleeping_row["query_ms"].as_i64().unwrap() >= 0);
    assert!(!pids(backends, "pid").contains(&i64::from(idle_pid)), "idle backends are left out by default");
    for row in backends.as_array().unwrap() {
        assert!(!row["query"].as_str().unwrap_or("").contains("FROM pg_stat_activity a"), "our own backend: {row}");
    }

    let with_idle = monitor(&t, json!({"action": "activity", "include_idle": true})).await;
    assert!(pids(&with_idle["backends"], "pid").contains(&i64::from(idle_pid)), "{with_idle}");
    let slow_only = monitor(&t, json!({"action": "activity", "min_duration_ms": 600_000})).await;
    assert!(!pids(&slow_only["backends"], "pid").contains(&i64::from(sleeper_pid)), "{slow_only}");
    let one = monitor(&t, json!({"action": "activity", "include_idle": true, "limit": 1})).await;
    assert_eq!(one["count"], 1);
    assert_eq!(one["truncated"], true);
    sleeping.await.unwrap().unwrap();
}

#[tokio::test]
async fn connections_count_by_state_database_and_user() {
    let db = test_db().await;
    let side = db.client().await;
    let max: String = side.query_one("SHOW max_connections", &[]).await.unwrap().get(0);
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;
    let out = monitor(&t, json!({"action": "connections"})).await;
    assert_eq!(out["max_connections"].to_string(), max, "{out}");
    let total = out["total"].as_i64().unwrap();
    assert!(total >= 2, "the side connection and ColdQuery's own: {out}");
    assert!(out["by_database"][db.name.as_str()].as_i64().unwrap() >= 2, "{out}");
    let by_state: i64 = out["by_state"].as_object().unwrap().values().filter_map(Value::as_i64).sum();
    assert_eq!(by_state, total);
    let expected = (1000.0 * total as f64 / max.parse::<f64>().unwrap()).round() / 10.0;
    assert_eq!(out["utilization_percent"].as_f64().unwrap(), expected);
}

#[tokio::test]
async fn locks_show_a_real_blocking_pair() {
    let db = test_db().await;
    let setup = db.client().await;
    setup
        .batch_execute("CREATE TABLE accounts (id int PRIMARY KEY, n int); INSERT INTO accounts VALUES (1, 0)")
        .await
        .unwrap();
    let holder = db.client().await;
    let waiter = db.client().await;
    let holder_pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let waiter_pid: i32 = waiter.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    holder.batch_execute("BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let waiting = tokio::spawn(async move { waiter.batch_execute("UPDATE accounts SET n = n + 1").await });
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;

    let out =
        poll(&t, json!({"action": "locks"}), |out| pids(&out["waits"], "waiting_pid").contains(&i64::from(waiter_pid)))
            .await;
    let wait = out["waits"].as_array().unwrap().iter().find(|w| w["waiting_pid"] == waiter_pid).expect("the waiter");
    assert_eq!(wait["blocked_by"], json!([holder_pid]), "{wait}");
    assert_eq!(wait["relation"], "accounts");
    assert_eq!(wait["waiting_mode"], "RowExclusiveLock");
    assert_eq!(wait["waiting_query"], "UPDATE accounts SET n = n + 1");
    assert!(wait["wait_seconds"].as_f64().unwrap() >= 0.0);
    let blocker = &wait["blockers"][0];
    assert_eq!(blocker["pid"], holder_pid);
    assert_eq!(blocker["state"], "idle in transaction");
    assert_eq!(blocker["modes"], json!(["AccessExclusiveLock"]));
    assert_eq!(wait["database"], db.name.as_str());
    // Locks are server-wide: other tests' blocking pairs may show up too.
    let roots = out["root_blockers"].as_array().unwrap();
    assert!(roots.contains(&json!(holder_pid)), "{out}");
    assert!(!roots.contains(&json!(waiter_pid)), "a waiting backend is not a root: {out}");

    let all = monitor(&t, json!({"action": "locks", "blocking_only": false})).await;
    let held = all["locks"].as_array().unwrap().iter().any(|l| {
        l["pid"] == holder_pid
            && l["mode"] == "AccessExclusiveLock"
            && l["granted"] == true
            && l["relation"] == "accounts"
    });
    assert!(held, "{all}");
    let awaited = all["locks"].as_array().unwrap().iter().any(|l| l["pid"] == waiter_pid && l["granted"] == false);
    assert!(awaited, "{all}");

    let deep = monitor(&t, json!({"action": "health", "deep": true})).await;
    let blocked = deep["checks"].as_array().unwrap().iter().find(|c| c["name"] == "blocked_queries").unwrap();
    assert_eq!(blocked["status"], "warn", "{blocked}");
    assert_eq!(blocked["items"][0]["pid"], waiter_pid);

    holder.batch_execute("ROLLBACK").await.unwrap();
    waiting.await.unwrap().unwrap();
    let after = poll(&t, json!({"action": "locks"}), |out| {
        !pids(&out["waits"], "waiting_pid").contains(&i64::from(waiter_pid))
    })
    .await;
    assert!(!pids(&after["waits"], "waiting_pid").contains(&i64::from(waiter_pid)), "{after}");
}

#[tokio::test]
async fn size_lists_the_database_and_its_largest_relations() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g;
         CREATE TABLE small (id int);",
    )
    .await
    .unwrap();
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;
    let out = monitor(&t, json!({"action": "size", "database": db.name, "limit": 5})).await;
    assert_eq!(out["databases"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["databases"][0]["database"], db.name.as_str());
    assert_eq!(out["databases"][0]["current"], true);
    let db_bytes = count(&side, "SELECT pg_database_size(current_database())").await;
    assert!((out["databases"][0]["bytes"].as_i64().unwrap() - db_bytes).abs() < 1024 * 1024);
    assert_eq!(out["tables"][0]["table"], "big", "{out}");
    // Autovacuum may add the visibility map meanwhile, so compare with the heap alone.
    let heap_bytes = count(&side, "SELECT pg_relation_size('big')").await;
    assert!(out["tables"][0]["total_bytes"].as_i64().unwrap() > heap_bytes, "{out}");
    assert!(out["tables"][0]["index_bytes"].as_i64().unwrap() > 0);
    assert_eq!(out["indexes"][0]["index"], "big_pkey");

    let all = monitor(&t, json!({"action": "size"})).await;
    assert!(all["databases"].as_array().unwrap().len() >= 2, "{all}");
    let none = monitor(&t, json!({"action": "size", "database": "no_such_db"})).await;
    assert_eq!(none["databases"], json!([]));
}

#[tokio::test]
async fn top_queries_works_or_says_how_to_enable_pg_stat_statements() {
    let db = test_db().await;
    let side = db.client().await;
    let installed = count(&side, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'").await > 0;
    let preloaded: String = side.query_one("SHOW shared_preload_libraries", &[]).await.unwrap().get(0);
    let (t, _db) = tools(&db, &options(), ToolConfig::default(), false).await;
    for _ in 0..3 {
        side.query("SELECT count(*) FROM pg_class", &[]).await.unwrap();
    }
    let out = monitor(&t, json!({"action": "top_queries", "order_by": "calls", "limit": 5})).await;
    let available = installed && preloaded.contains("pg_stat_statements");
    // The harness preloads pg_stat_statements when the contrib files are installed, as they are
    // on CI machines: there the working branch must run, not only the error branch.
    if std::env::var_os("CI").is_some() {
        assert!(available, "under CI the test cluster must have pg_stat_statements (postgresql-contrib)");
    }
    if available {
        let queries = out["queries"].as_array().unwrap_or_else(|| panic!("{out}"));
        assert!(!queries.is_empty());
        let calls: Vec<i64> = queries.iter().map(|q| q["calls"].as_i64().unwrap()).collect();
        assert!(calls.windows(2).all(|w| w[0] >= w[1]), "ordered by calls: {calls:?}");
        for order_by in ["total_time", "mean_time"] {
            let out = monitor(&t, json!({"action": "top_queries", "order_by": order_by})).await;
            assert_eq!(code(&out), "ok", "{out}");
        }
        // Without the extension in this database, the error says how to enable it.
        side.batch_execute("DROP EXTENSION pg_stat_statements").await.unwrap();
        let out = monitor(&t, json!({"action": "top_queries"})).await;
        assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{out}");
        assert!(out["error"]["hint"].as_str().unwrap().contains("CREATE EXTENSION pg_stat_statements"), "{out}");
    } else {
        assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{out}");
        let hint = out["error"]["hint"].as_str().unwrap();
        assert!(hint.contains("shared_preload_libraries"), "{hint}");
        assert!(hint.contains("CREATE EXTENSION pg_stat_statements"), "{hint}");
    }
}
