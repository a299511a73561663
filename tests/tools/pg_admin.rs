//! `pg_admin` over the fakes: every action's output and the SQL it issues (quoting visible),
//! the Default-Deny gate (denied maintenance sends nothing), and argument errors.

use coldquery_core::{Error, ErrorKind, QueryResult};
use coldquery_tests::fakes::SessionEvent;
use coldquery_tools::ToolConfig;
use serde_json::{Value, json};

use crate::support::{Fixture, call_json, code, result};

/// Calls pg_admin and returns its output with every statement sent, on the pool and in sessions.
async fn check(fixture: &Fixture, args: Value) -> Value {
    let output = fixture.call("pg_admin", args).await;
    let pool: Vec<Value> = fixture.executor.take_calls().iter().map(call_json).collect();
    let session: Vec<Value> = fixture
        .sessions
        .events("sess-1")
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::Run { sql, params } => Some(json!({"sql": sql, "params": params})),
            _ => None,
        })
        .collect();
    json!({"output": output, "pool_sql": pool, "session_sql": session})
}

async fn begin(fixture: &Fixture) -> String {
    let begun = fixture.call("pg_tx", json!({"action": "begin"})).await;
    begun["session_id"].as_str().expect("a session id").to_owned()
}

#[tokio::test]
async fn vacuum_builds_a_quoted_statement_and_runs_it_with_autocommit() {
    let fixture = Fixture::new();
    let out = check(
        &fixture,
        json!({"action": "vacuum", "table": "Order\"s", "schema": "my schema", "full": true, "verbose": true,
               "analyze": true, "autocommit": true}),
    )
    .await;
    assert_eq!(out["pool_sql"][0]["sql"], r#"VACUUM (FULL, VERBOSE, ANALYZE) "my schema"."Order""s""#);
    insta::assert_json_snapshot!("vacuum_full_verbose_analyze", out);

    let out = check(&fixture, json!({"action": "vacuum", "autocommit": true})).await;
    insta::assert_json_snapshot!("vacuum_whole_database", out);

    let out = check(&fixture, json!({"action": "vacuum", "table": "public.t", "autocommit": true})).await;
    assert_eq!(out["pool_sql"][0]["sql"], r#"VACUUM "public"."t""#);
}

#[tokio::test]
async fn maintenance_without_consent_is_denied_and_nothing_is_sent() {
    let fixture = Fixture::new();
    let cases = [
        json!({"action": "vacuum", "table": "t"}),
        json!({"action": "vacuum", "table": "t", "autocommit": false}),
        json!({"action": "analyze", "table": "t"}),
        json!({"action": "reindex", "target": "table", "name": "t"}),
        json!({"action": "terminate", "pid": 4242}),
    ];
    for args in cases {
        let out = fixture.call("pg_admin", args.clone()).await;
        assert_eq!(code(&out), "WRITE_DENIED", "{args}");
        assert!(out["error"]["hint"].as_str().unwrap().contains("autocommit: true"), "{out}");
    }
    assert!(fixture.executor.sql().is_empty(), "a denied call sends nothing");
    let denied = fixture.call("pg_admin", json!({"action": "vacuum", "table": "t"})).await;
    insta::assert_json_snapshot!("vacuum_denied", denied);
}

#[tokio::test]
async fn vacuum_and_concurrent_reindex_are_refused_in_a_session() {
    let fixture = Fixture::new();
    let id = begin(&fixture).await;
    for args in [
        json!({"action": "vacuum", "table": "t", "session_id": id}),
        json!({"action": "reindex", "target": "index", "name": "i", "concurrently": true, "session_id": id}),
        json!({"action": "reindex", "target": "schema", "name": "public", "session_id": id}),
        json!({"action": "terminate", "pid": 10, "session_id": id}),
    ] {
        let out = fixture.call("pg_admin", args.clone()).await;
        assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{args}");
        assert!(out["error"]["hint"].as_str().unwrap().contains("autocommit: true"));
    }
    assert!(fixture.executor.sql().is_empty());
    assert!(fixture.sessions.statements(&id).is_empty());
    let out = fixture.call("pg_admin", json!({"action": "vacuum", "table": "t", "session_id": id})).await;
    insta::assert_json_snapshot!("vacuum_in_session_refused", out);
}

#[tokio::test]
async fn analyze_runs_in_a_session_or_with_autocommit() {
    let fixture = Fixture::new();
    let id = begin(&fixture).await;
    let out = check(&fixture, json!({"action": "analyze", "table": "users", "verbose": true, "session_id": id})).await;
    assert_eq!(out["session_sql"][0]["sql"], r#"ANALYZE (VERBOSE) "users""#);
    assert_eq!(out["pool_sql"], json!([]));
    insta::assert_json_snapshot!("analyze_in_session", out);

    let fixture = Fixture::new();
    let out = check(&fixture, json!({"action": "analyze", "autocommit": true})).await;
    insta::assert_json_snapshot!("analyze_whole_database", out);
}

#[tokio::test]
async fn reindex_targets() {
    let fixture = Fixture::new();
    let out = check(
        &fixture,
        json!({"action": "reindex", "target": "index", "name": "users_email_idx", "schema": "app",
               "concurrently": true, "autocommit": true}),
    )
    .await;
    insta::assert_json_snapshot!("reindex_index_concurrently", out);
    let expected = [
        (json!({"target": "table", "name": "public.Users"}), r#"REINDEX TABLE "public"."Users""#),
        (json!({"target": "schema", "name": "app", "verbose": true}), r#"REINDEX (VERBOSE) SCHEMA "app""#),
        (json!({"target": "table", "name": "t\"; DROP TABLE x; --"}), r#"REINDEX TABLE "t""; DROP TABLE x; --""#),
    ];
    for (mut args, sql) in expected {
        args["action"] = json!("reindex");
        args["autocommit"] = json!(true);
        let out = check(&fixture, args).await;
        assert_eq!(out["pool_sql"][0]["sql"], sql);
        assert_eq!(out["output"]["statement"], sql);
    }
    // Not concurrently, a table reindex may join a session.
    let id = begin(&fixture).await;
    let out = check(&fixture, json!({"action": "reindex", "target": "table", "name": "t", "session_id": id})).await;
    assert_eq!(out["output"]["ran_in"], "session");
    assert_eq!(out["session_sql"][0]["sql"], r#"REINDEX TABLE "t""#);
}

#[tokio::test]
async fn stats_of_the_busiest_tables_and_of_one_table() {
    let fixture = Fixture::new();
    fixture.executor.push_result(result(
        &[
            ("schema", "name"),
            ("table", "name"),
            ("scans", "int8"),
            ("live_tuples", "int8"),
            ("dead_tuples", "int8"),
            ("dead_ratio", "float8"),
            ("last_autovacuum", "timestamptz"),
        ],
        vec![
            vec![
                json!("public"),
                json!("orders"),
                json!(1200),
                json!(5000),
                json!(250),
                json!(0.0476),
                json!("2024-05-01T10:00:00+00:00"),
            ],
            vec![json!("public"), json!("users"), json!(40), json!(10), json!(0), json!(0.0), Value::Null],
        ],
    ));
    let out = check(&fixture, json!({"action": "stats", "schema": "public", "limit": 5})).await;
    assert_eq!(out["pool_sql"][0]["mode"], "Run(ReadOnly)");
    assert_eq!(out["pool_sql"][0]["params"], json!(["public"]));
    insta::assert_json_snapshot!("stats_busiest", out);

    fixture.executor.push_result(result(
        &[("schema", "name"), ("table", "name"), ("live_tuples", "int8"), ("dead_tuples", "int8"), ("indexes", "json")],
        vec![vec![
            json!("app"),
            json!("Orders"),
            json!(10),
            json!(2),
            json!([{"index": "orders_pkey", "scans": 7, "unique": true, "primary": true, "valid": true}]),
        ]],
    ));
    let out = check(&fixture, json!({"action": "stats", "table": "app.Orders"})).await;
    assert_eq!(out["pool_sql"][0]["params"], json!(["app", "Orders"]));
    insta::assert_json_snapshot!("stats_table", out);

    // Without a schema the table resolves through search_path (NULL schema).
    let out = check(&fixture, json!({"action": "stats", "table": "missing"})).await;
    assert_eq!(out["pool_sql"][0]["params"], json!([null, "missing"]));
    assert_eq!(code(&out["output"]), "DATABASE_ERROR");
    assert_eq!(out["output"]["error"]["sqlstate"], "42P01");
}

#[tokio::test]
async fn settings_list_and_get() {
    let fixture = Fixture::new();
    fixture.executor.push_result(result(
        &[("name", "text"), ("setting", "text"), ("unit", "text"), ("category", "text")],
        vec![vec![json!("autovacuum_naptime"), json!("60"), json!("s"), json!("Autovacuum")]],
    ));
    let out = check(&fixture, json!({"action": "settings", "category": "autovacuum", "pattern": "%nap%"})).await;
    assert_eq!(out["pool_sql"][0]["params"], json!(["autovacuum", "%nap%"]));
    insta::assert_json_snapshot!("settings_list", out);

    fixture.executor.push_result(result(
        &[("name", "text"), ("setting", "text"), ("category", "text")],
        vec![vec![json!("pg_stat_statements.track"), json!("top"), json!("Customized Options")]],
    ));
    let out = check(&fixture, json!({"action": "settings", "name": "pg_stat_statements.track"})).await;
    assert_eq!(out["output"]["setting"], "top");
    insta::assert_json_snapshot!("settings_get_dotted", out);

    fixture
        .executor
        .push_result(result(&[("name", "text"), ("setting", "text")], vec![vec![json!("nope.x"), Value::Null]]));
    let out = check(&fixture, json!({"action": "settings", "name": "nope.x"})).await;
    assert_eq!(code(&out["output"]), "DATABASE_ERROR");
    assert_eq!(out["output"]["error"]["sqlstate"], "42704");
}

#[tokio::test]
async fn settings_set_only_in_a_session_and_with_values_as_parameters() {
    let fixture = Fixture::new();
    let out = fixture.call("pg_admin", json!({"action": "settings", "name": "work_mem", "value": "64MB"})).await;
    assert_eq!(code(&out), "INVALID_ARGUMENT");
    assert!(out["error"]["message"].as_str().unwrap().contains("session_id"));
    insta::assert_json_snapshot!("settings_set_without_session", out);
    assert!(fixture.executor.sql().is_empty());

    let id = begin(&fixture).await;
    fixture.sessions.push_result(result(&[("setting", "text")], vec![vec![json!("64MB")]]));
    let out = check(
        &fixture,
        json!({"action": "settings", "name": "work_mem", "value": "64MB'); DROP TABLE x; --", "session_id": id}),
    )
    .await;
    assert_eq!(out["session_sql"][0]["params"], json!(["work_mem", "64MB'); DROP TABLE x; --"]));
    assert_eq!(out["pool_sql"], json!([]));
    insta::assert_json_snapshot!("settings_set_in_session", out);

    // Numbers and booleans are sent as their text form.
    let out =
        check(&fixture, json!({"action": "settings", "name": "enable_seqscan", "value": false, "session_id": id}))
            .await;
    assert_eq!(out["session_sql"][1]["params"], json!(["enable_seqscan", "off"]));

    let out = fixture
        .call("pg_admin", json!({"action": "settings", "name": "Client_Encoding", "value": "LATIN1", "session_id": id}))
        .await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED");
    for bad in ["work mem", "a.b.c", "x;y", "", ".x"] {
        let out =
            fixture.call("pg_admin", json!({"action": "settings", "name": bad, "value": "1", "session_id": id})).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{bad}");
    }
    assert_eq!(fixture.sessions.statements(&id).len(), 2);
}

#[tokio::test]
async fn settings_set_is_refused_in_read_only_mode() {
    let fixture = Fixture::with(ToolConfig::default(), true);
    let id = begin(&fixture).await;
    let out = fixture
        .call("pg_admin", json!({"action": "settings", "name": "work_mem", "value": "1MB", "session_id": id}))
        .await;
    assert_eq!(code(&out), "WRITE_DENIED");
    let out = fixture.call("pg_admin", json!({"action": "vacuum", "autocommit": true})).await;
    assert_eq!(code(&out), "WRITE_DENIED");
    assert!(fixture.sessions.statements(&id).is_empty());
    assert!(fixture.executor.sql().is_empty());
}

fn backend_row(found: bool, own: bool, signalled: Option<bool>) -> QueryResult {
    result(
        &[
            ("pid", "int4"),
            ("found", "bool"),
            ("own", "bool"),
            ("user", "name"),
            ("database", "name"),
            ("application", "text"),
            ("backend_type", "text"),
            ("state", "text"),
            ("query", "text"),
            ("signalled", "bool"),
        ],
        vec![vec![
            json!(4242),
            json!(found),
            json!(own),
            json!("app"),
            json!("shop"),
            json!("psql"),
            json!("client backend"),
            json!("active"),
            json!("SELECT pg_sleep(60)"),
            json!(signalled),
        ]],
    )
}

#[tokio::test]
async fn terminate_cancels_by_default_and_terminates_on_request() {
    let fixture = Fixture::new();
    fixture.executor.push_result(backend_row(true, false, Some(true)));
    let out = check(&fixture, json!({"action": "terminate", "pid": 4242, "autocommit": true})).await;
    assert_eq!(out["pool_sql"][0]["mode"], "Run(Autocommit)");
    assert_eq!(out["pool_sql"][0]["params"], json!([4242]));
    assert!(out["pool_sql"][0]["sql"].as_str().unwrap().contains("pg_cancel_backend(p.pid)"));
    insta::assert_json_snapshot!("terminate_cancel", out);

    fixture.executor.push_result(backend_row(true, false, Some(true)));
    let out =
        check(&fixture, json!({"action": "terminate", "pid": 4242, "mode": "terminate", "autocommit": true})).await;
    assert!(out["pool_sql"][0]["sql"].as_str().unwrap().contains("pg_terminate_backend(p.pid)"));
    assert_eq!(out["output"]["mode"], "terminate");
    assert_eq!(out["output"]["signalled"], true);

    fixture.executor.push_result(backend_row(false, false, None));
    let out = check(&fixture, json!({"action": "terminate", "pid": 4242, "autocommit": true})).await;
    assert_eq!(code(&out["output"]), "INVALID_ARGUMENT");
    assert!(out["output"]["error"]["message"].as_str().unwrap().contains("no server process"));

    fixture.executor.push_result(backend_row(true, true, None));
    let out = check(&fixture, json!({"action": "terminate", "pid": 4242, "autocommit": true})).await;
    assert_eq!(code(&out["output"]), "INVALID_ARGUMENT");

    fixture
        .executor
        .push_error(Error::new(ErrorKind::DatabaseError, "permission denied to cancel query").with_sqlstate("42501"));
    let out = check(&fixture, json!({"action": "terminate", "pid": 4242, "autocommit": true})).await;
    assert_eq!(code(&out["output"]), "DATABASE_ERROR");
}

#[tokio::test]
async fn invalid_arguments_name_the_parameter() {
    let fixture = Fixture::new();
    let cases = [
        ("unknown_action", json!({"action": "explode"})),
        ("unknown_parameter", json!({"action": "stats", "tabel": "t"})),
        ("schema_without_table", json!({"action": "vacuum", "schema": "s", "autocommit": true})),
        ("parameter_of_another_action", json!({"action": "vacuum", "pid": 1, "autocommit": true})),
        ("reindex_missing_target", json!({"action": "reindex", "name": "t", "autocommit": true})),
        ("reindex_unknown_target", json!({"action": "reindex", "target": "database", "name": "t", "autocommit": true})),
        ("reindex_missing_name", json!({"action": "reindex", "target": "table", "autocommit": true})),
        ("terminate_missing_pid", json!({"action": "terminate", "autocommit": true})),
        ("terminate_bad_pid", json!({"action": "terminate", "pid": -3, "autocommit": true})),
        ("terminate_unknown_mode", json!({"action": "terminate", "pid": 3, "mode": "kill", "autocommit": true})),
        ("table_schema_twice", json!({"action": "stats", "table": "a.t", "schema": "b"})),
        ("identifier_too_long", json!({"action": "stats", "table": "x".repeat(64)})),
        ("limit_zero", json!({"action": "stats", "limit": 0})),
        ("limit_above_ceiling", json!({"action": "settings", "limit": 1_000_000})),
        ("value_without_name", json!({"action": "settings", "value": "1"})),
        ("both_session_and_autocommit", json!({"action": "analyze", "session_id": "s", "autocommit": true})),
    ];
    let mut messages = serde_json::Map::new();
    for (name, args) in cases {
        let out = fixture.call("pg_admin", args.clone()).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{name}: {out}");
        messages.insert(name.to_owned(), out["error"]["message"].clone());
    }
    assert!(fixture.executor.sql().is_empty());
    insta::assert_json_snapshot!("invalid_arguments", messages);
}

/// One caller cannot signal the backend of another caller's session (it could end their
/// transaction); its own session's backend, or any other process, is fair game.
#[tokio::test]
async fn terminate_refuses_another_callers_session_backend() {
    use coldquery_core::Owner;
    use coldquery_tests::fakes::FakeSessions;
    use coldquery_tools::Caller;

    let fixture = crate::support::Fixture::new();
    let bob = Caller::new(Owner::new("bob"), "bob");
    let begun = fixture.tools.call(&bob, "pg_tx", serde_json::json!({"action": "begin"})).await.unwrap().into_json();
    let id = begun["session_id"].as_str().unwrap();
    let n: i32 = id.trim_start_matches("sess-").parse().unwrap();
    let bobs_backend = FakeSessions::BACKEND_PID_BASE + n;
    let out = fixture
        .call("pg_admin", serde_json::json!({"action": "terminate", "pid": bobs_backend, "autocommit": true}))
        .await;
    assert_eq!(crate::support::code(&out), "STATEMENT_NOT_ALLOWED", "{out}");
    assert!(fixture.executor.sql().is_empty(), "nothing was sent");
    assert!(fixture.sessions.is_open(id));
    let own = fixture
        .tools
        .call(&bob, "pg_admin", serde_json::json!({"action": "terminate", "pid": bobs_backend, "autocommit": true}))
        .await
        .unwrap();
    assert_ne!(own.error().map(|e| e.kind()), Some(ErrorKind::StatementNotAllowed), "{own:?}");
}
