//! `pg_monitor` over the fakes: every action's output and the SQL it issues (all read-only),
//! health's thresholds and its `down` status, and argument errors.

use coldquery_core::{Error, ErrorKind, PoolStatus, QueryResult};
use serde_json::{Value, json};

use crate::support::{Fixture, call_json, code, result};

/// Calls pg_monitor and returns its output with every statement sent.
async fn check(fixture: &Fixture, args: Value) -> Value {
    let output = fixture.call("pg_monitor", args).await;
    let calls = fixture.executor.take_calls();
    for call in &calls {
        assert_eq!(call.access(), Some(coldquery_core::Access::ReadOnly), "pg_monitor only reads: {}", call.sql);
    }
    json!({"output": output, "sql": calls.iter().map(call_json).collect::<Vec<_>>()})
}

fn health_row() -> QueryResult {
    result(
        &[
            ("server_version", "text"),
            ("server_version_num", "int4"),
            ("database", "name"),
            ("server_time", "timestamptz"),
            ("started_at", "timestamptz"),
            ("uptime_seconds", "int8"),
            ("in_recovery", "bool"),
        ],
        vec![vec![
            json!("15.8"),
            json!(150008),
            json!("shop"),
            json!("2024-05-01T12:00:00+00:00"),
            json!("2024-05-01T11:00:00+00:00"),
            json!(3600),
            json!(false),
        ]],
    )
}

#[tokio::test]
async fn health_reports_server_pool_and_sessions() {
    let fixture = Fixture::new();
    fixture.executor.set_pool_status(PoolStatus { size: 8, connections: 3, idle: 2, in_use: 1, waiting: 0 });
    fixture.call("pg_tx", json!({"action": "begin"})).await;
    fixture.executor.push_result(health_row());
    let out = check(&fixture, json!({"action": "health"})).await;
    assert_eq!(out["output"]["status"], "ok");
    assert_eq!(out["output"]["sessions"], json!({"open": 1, "max": 3}));
    assert!(out["output"].get("checks").is_none());
    insta::assert_json_snapshot!("health_basic", out);
}

#[tokio::test]
async fn health_is_down_when_the_database_is_unreachable() {
    let fixture = Fixture::new();
    fixture.executor.push_error(
        Error::new(ErrorKind::Unavailable, "could not connect to the database: connection refused")
            .with_hint("check that PostgreSQL is running"),
    );
    let output =
        fixture.tools.call(&fixture.caller, "pg_monitor", json!({"action": "health", "deep": true})).await.unwrap();
    let out = output.value().expect("down is a result, not a failure");
    assert_eq!(out["status"], "down");
    assert_eq!(out["error"]["code"], "UNAVAILABLE");
    assert_eq!(fixture.executor.sql().len(), 1, "no checks run against a database that is down");
    insta::assert_json_snapshot!("health_down", out);
}

#[tokio::test]
async fn deep_health_judges_each_check() {
    let fixture = Fixture::new();
    fixture.executor.push_result(health_row());
    // connection_utilization: 92 of 97 slots → critical.
    fixture.executor.push_result(result(
        &[("total", "int4"), ("max_connections", "int4"), ("superuser_reserved_connections", "int4")],
        vec![vec![json!(92), json!(100), json!(3)]],
    ));
    // cache_hit_ratio: 90% → warn.
    fixture.executor.push_result(result(&[("hits", "int8"), ("reads", "int8")], vec![vec![json!(9000), json!(1000)]]));
    // invalid_indexes: one → warn.
    fixture.executor.push_result(result(
        &[("schema", "name"), ("table", "name"), ("index", "name")],
        vec![vec![json!("public"), json!("orders"), json!("orders_ccnew")]],
    ));
    // duplicate_indexes: none.
    fixture.executor.push_result(QueryResult::default());
    // unused_indexes: the check fails → warn, with the reason.
    fixture
        .executor
        .push_error(Error::new(ErrorKind::DatabaseError, "permission denied for view pg_stat_user_indexes"));
    // dead_tuples: ratio 0.3 → warn.
    fixture.executor.push_result(result(
        &[("schema", "name"), ("table", "name"), ("dead_ratio", "float8")],
        vec![vec![json!("public"), json!("events"), json!(0.3)]],
    ));
    // xid_wraparound: 200M → ok.
    fixture.executor.push_result(result(
        &[("database", "name"), ("xid_age", "int8")],
        vec![vec![json!("shop"), json!(200_000_000)]],
    ));
    // sequences: 95% used → critical.
    fixture.executor.push_result(result(
        &[("schema", "name"), ("sequence", "name"), ("used_ratio", "float8")],
        vec![vec![json!("public"), json!("orders_id_seq"), json!(0.95)]],
    ));
    // long_running_queries: 90 s → ok but listed.
    fixture.executor.push_result(result(
        &[("pid", "int4"), ("query_seconds", "float8"), ("query", "text")],
        vec![vec![json!(77), json!(90.0), json!("SELECT count(*) FROM events")]],
    ));
    // idle_in_transaction: 10 min → warn.
    fixture
        .executor
        .push_result(result(&[("pid", "int4"), ("idle_seconds", "float8")], vec![vec![json!(78), json!(600.0)]]));
    // blocked_queries: one waiting 12 s → warn.
    fixture.executor.push_result(result(
        &[("pid", "int4"), ("blocked_by", "_int4"), ("wait_seconds", "float8")],
        vec![vec![json!(79), json!([78]), json!(12.0)]],
    ));
    // replication: an inactive slot → warn.
    fixture.executor.push_result(result(
        &[
            ("kind", "text"),
            ("name", "text"),
            ("state", "text"),
            ("lag_seconds", "float8"),
            ("retained_bytes", "int8"),
            ("active", "bool"),
        ],
        vec![vec![json!("slot"), json!("old_slot"), json!("inactive"), Value::Null, json!(4096), json!(false)]],
    ));
    let out = check(&fixture, json!({"action": "health", "deep": true})).await;
    assert_eq!(fixture.executor.pending(), 0, "every check ran");
    let output = &out["output"];
    assert_eq!(output["status"], "degraded");
    let status =
        |name: &str| output["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["status"].clone();
    assert_eq!(status("connection_utilization"), "critical");
    assert_eq!(status("cache_hit_ratio"), "warn");
    assert_eq!(status("duplicate_indexes"), "ok");
    assert_eq!(status("unused_indexes"), "warn");
    assert_eq!(status("xid_wraparound"), "ok");
    assert_eq!(status("sequences"), "critical");
    assert_eq!(status("long_running_queries"), "ok");
    assert_eq!(output["summary"], json!({"ok": 4, "warn": 7, "critical": 2}));
    insta::assert_json_snapshot!("health_deep", out);
}

#[tokio::test]
async fn deep_health_on_a_quiet_database_is_ok() {
    let fixture = Fixture::new();
    fixture.executor.push_result(health_row());
    // Every check answers with no rows (the fake's default).
    let out = fixture.call("pg_monitor", json!({"action": "health", "deep": true})).await;
    assert_eq!(out["status"], "ok");
    assert_eq!(out["summary"], json!({"ok": 13, "warn": 0, "critical": 0}));
    assert_eq!(fixture.executor.sql().len(), 14);
}

#[tokio::test]
async fn activity_excludes_idle_by_default_and_passes_filters_as_parameters() {
    let fixture = Fixture::new();
    fixture.executor.push_result(result(
        &[
            ("pid", "int4"),
            ("user", "name"),
            ("state", "text"),
            ("query_ms", "int8"),
            ("blocked_by", "_int4"),
            ("query", "text"),
        ],
        vec![vec![json!(101), json!("app"), json!("active"), json!(2500), json!([]), json!("SELECT pg_sleep(5)")]],
    ));
    let out = check(&fixture, json!({"action": "activity"})).await;
    assert_eq!(out["sql"][0]["params"], json!([false, null]));
    assert_eq!(out["sql"][0]["max_rows"], 50);
    insta::assert_json_snapshot!("activity", out);

    let out =
        check(&fixture, json!({"action": "activity", "include_idle": true, "min_duration_ms": 1000, "limit": 5})).await;
    assert_eq!(out["sql"][0]["params"], json!([true, 1000]));
    assert_eq!(out["sql"][0]["max_rows"], 5);
}

#[tokio::test]
async fn connections_counts_and_utilization() {
    let fixture = Fixture::new();
    fixture.executor.push_result(result(
        &[
            ("total", "int4"),
            ("max_connections", "int4"),
            ("superuser_reserved_connections", "int4"),
            ("by_state", "json"),
            ("by_database", "json"),
            ("by_user", "json"),
        ],
        vec![vec![
            json!(8),
            json!(100),
            json!(3),
            json!({"active": 2, "idle": 6}),
            json!({"shop": 8}),
            json!({"app": 7, "postgres": 1}),
        ]],
    ));
    let out = check(&fixture, json!({"action": "connections"})).await;
    // Against the slots ordinary roles can use: 8 of 100 - 3 reserved, as in deep health.
    assert_eq!(out["output"]["utilization_percent"], 8.2);
    insta::assert_json_snapshot!("connections", out);
}

#[tokio::test]
async fn locks_show_who_blocks_whom() {
    let fixture = Fixture::new();
    fixture.executor.push_result(result(
        &[("waiting_pid", "int4"), ("blocked_by", "_int4"), ("waiting_mode", "text"), ("relation", "text"),
          ("wait_seconds", "float8"), ("waiting_query", "text"), ("blockers", "json")],
        vec![
            vec![json!(300), json!([200]), json!("RowExclusiveLock"), json!("accounts"), json!(4.5),
                 json!("UPDATE accounts SET n = 1"),
                 json!([{"pid": 200, "state": "idle in transaction", "modes": ["AccessExclusiveLock"], "query": "LOCK accounts"}])],
            vec![json!(301), json!([300]), json!("RowExclusiveLock"), json!("accounts"), json!(1.0),
                 json!("UPDATE accounts SET n = 2"), json!([{"pid": 300}])],
        ],
    ));
    let out = check(&fixture, json!({"action": "locks"})).await;
    assert_eq!(out["output"]["root_blockers"], json!([200]), "300 is itself waiting");
    insta::assert_json_snapshot!("locks_blocking", out);

    let out = check(&fixture, json!({"action": "locks", "blocking_only": false, "limit": 20})).await;
    assert!(out["sql"][0]["sql"].as_str().unwrap().contains("FROM pg_locks l"));
    assert_eq!(out["output"]["locks"], json!([]));
    assert_eq!(out["sql"][0]["max_rows"], 20);
}

#[tokio::test]
async fn size_lists_databases_tables_and_indexes() {
    let fixture = Fixture::new();
    fixture.executor.push_result(result(
        &[("database", "name"), ("bytes", "int8"), ("size", "text"), ("current", "bool")],
        vec![vec![json!("shop"), json!(8_000_000), json!("7813 kB"), json!(true)]],
    ));
    fixture.executor.push_result(result(
        &[("schema", "name"), ("table", "name"), ("total_bytes", "int8"), ("total_size", "text")],
        vec![vec![json!("public"), json!("orders"), json!(65536), json!("64 kB")]],
    ));
    fixture.executor.push_result(result(
        &[("schema", "name"), ("index", "name"), ("table", "name"), ("bytes", "int8"), ("size", "text")],
        vec![vec![json!("public"), json!("orders_pkey"), json!("orders"), json!(16384), json!("16 kB")]],
    ));
    let out = check(&fixture, json!({"action": "size", "database": "shop", "limit": 3})).await;
    assert_eq!(out["sql"][0]["params"], json!(["shop"]));
    insta::assert_json_snapshot!("size", out);
}

#[tokio::test]
async fn top_queries_orders_by_fixed_fragments() {
    let fixture = Fixture::new();
    let extension = || {
        result(
            &[("version", "text"), ("schema", "name"), ("supported", "bool")],
            vec![vec![json!("1.10"), json!("public"), json!(true)]],
        )
    };
    fixture.executor.push_result(extension());
    fixture.executor.push_result(result(
        &[
            ("queryid", "text"),
            ("calls", "int8"),
            ("total_time_ms", "float8"),
            ("mean_time_ms", "float8"),
            ("query", "text"),
        ],
        vec![vec![json!("-123"), json!(10), json!(50.5), json!(5.05), json!("SELECT * FROM orders WHERE id = $1")]],
    ));
    let out = check(&fixture, json!({"action": "top_queries"})).await;
    assert_eq!(out["sql"][1]["origin"], "Built");
    assert!(out["sql"][1]["sql"].as_str().unwrap().ends_with("ORDER BY s.total_exec_time DESC, s.queryid"));
    insta::assert_json_snapshot!("top_queries", out);

    for (order_by, fragment) in [("mean_time", "s.mean_exec_time DESC"), ("calls", "s.calls DESC")] {
        fixture.executor.push_result(extension());
        let out = check(&fixture, json!({"action": "top_queries", "order_by": order_by, "limit": 3})).await;
        assert!(out["sql"][1]["sql"].as_str().unwrap().contains(fragment), "{order_by}");
        assert_eq!(out["sql"][1]["max_rows"], 3);
    }
    let out =
        fixture.call("pg_monitor", json!({"action": "top_queries", "order_by": "total_time; DROP TABLE x"})).await;
    assert_eq!(code(&out), "INVALID_ARGUMENT");
}

#[tokio::test]
async fn top_queries_without_the_extension_says_how_to_enable_it() {
    let fixture = Fixture::new();
    let out = check(&fixture, json!({"action": "top_queries"})).await;
    assert_eq!(code(&out["output"]), "STATEMENT_NOT_ALLOWED");
    let hint = out["output"]["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("shared_preload_libraries") && hint.contains("CREATE EXTENSION pg_stat_statements"));
    assert_eq!(out["sql"].as_array().unwrap().len(), 1, "only the extension lookup ran");
    insta::assert_json_snapshot!("top_queries_missing_extension", out["output"]);

    // Installed but not preloaded: PostgreSQL's 55000 gets the same advice.
    fixture.executor.push_result(result(
        &[("version", "text"), ("schema", "name"), ("supported", "bool")],
        vec![vec![json!("1.10"), json!("public"), json!(true)]],
    ));
    fixture.executor.push_error(
        Error::new(ErrorKind::DatabaseError, "pg_stat_statements must be loaded via shared_preload_libraries")
            .with_sqlstate("55000"),
    );
    let out = fixture.call("pg_monitor", json!({"action": "top_queries"})).await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED");
    assert!(out["error"]["hint"].as_str().unwrap().contains("shared_preload_libraries"));
}

#[tokio::test]
async fn invalid_arguments_name_the_parameter() {
    let fixture = Fixture::new();
    let cases = [
        ("unknown_action", json!({"action": "vacuum"})),
        ("unknown_parameter", json!({"action": "activity", "session_id": "s"})),
        ("deep_for_activity", json!({"action": "activity", "deep": true})),
        ("limit_for_connections", json!({"action": "connections", "limit": 3})),
        ("order_by_for_size", json!({"action": "size", "order_by": "calls"})),
        ("unknown_order_by", json!({"action": "top_queries", "order_by": "rows"})),
        ("limit_zero", json!({"action": "activity", "limit": 0})),
        ("negative_duration", json!({"action": "activity", "min_duration_ms": -5})),
        ("empty_database", json!({"action": "size", "database": ""})),
        ("missing_action", json!({})),
    ];
    let mut messages = serde_json::Map::new();
    for (name, args) in cases {
        let out = fixture.call("pg_monitor", args.clone()).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{name}: {out}");
        messages.insert(name.to_owned(), out["error"]["message"].clone());
    }
    assert!(fixture.executor.sql().is_empty());
    insta::assert_json_snapshot!("invalid_arguments", messages);
}
