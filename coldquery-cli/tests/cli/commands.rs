//! Every subcommand's happy path against a real database: the command runs, exits 0, prints
//! what the tool returned, and (for writes) the change is visible on a side connection.

use coldquery_tests::harness::test_db;

use crate::support::{count, create_table, run};

#[tokio::test]
async fn query_read_binds_params_and_prints_a_table() {
    let db = test_db().await;
    let out =
        run(&db, &["query", "read", "SELECT $1::int + 1 AS two, $2::text AS word", "--param", "1", "--param", "x y"])
            .await
            .expect(0);
    assert_eq!(out.stdout, " two | word\n-----+------\n   2 | x y\n(1 row)\n");
    assert_eq!(out.stderr, "");

    let out = run(
        &db,
        &[
            "--format",
            "json",
            "query",
            "read",
            "SELECT $1::jsonb AS doc, $2::int IS NULL AS missing",
            "--params-json",
            r#"[{"a": [1, 2]}, null]"#,
        ],
    )
    .await
    .expect(0);
    let value = out.json();
    assert_eq!(value["rows"][0]["doc"], serde_json::json!({"a": [1, 2]}));
    assert_eq!(value["rows"][0]["missing"], true);

    let out =
        run(&db, &["--format", "json", "query", "read", "SELECT g FROM generate_series(1, 10) g", "--max-rows", "3"])
            .await
            .expect(0);
    assert_eq!(out.json()["row_count"], 3);
    assert_eq!(out.json()["truncated"], true);
}

#[tokio::test]
async fn query_write_with_autocommit_commits() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let out = run(
        &db,
        &[
            "query",
            "write",
            "INSERT INTO notes VALUES ($1, $2), (2, 'b')",
            "--param",
            "1",
            "--param",
            "a",
            "--autocommit",
        ],
    )
    .await
    .expect(0);
    assert_eq!(out.stdout, "INSERT 0 2\n");
    assert_eq!(count(&db, "notes").await, 2);

    let out = run(&db, &["query", "write", "UPDATE notes SET note = 'z' RETURNING id", "--autocommit"]).await.expect(0);
    assert_eq!(out.stdout, " id\n----\n  1\n  2\n(2 rows)\n");
}

#[tokio::test]
async fn query_explain_shows_the_plan() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let out = run(&db, &["--format", "json", "query", "explain", "SELECT * FROM notes WHERE id = $1", "--param", "1"])
        .await
        .expect(0);
    let value = out.json();
    assert!(value["plan"].is_array(), "{value}");
    assert!(value["summary"]["total_cost"].is_number(), "{value}");

    let out = run(&db, &["query", "explain", "SELECT 1", "--analyze", "--plan-format", "text"]).await.expect(0);
    assert!(out.stdout.contains("Result"), "{}", out.stdout);
    assert!(out.stdout.contains("actual time"), "{}", out.stdout);

    // For people the plan is text, line by line as psql shows it, and the summary a notice.
    let out = run(&db, &["query", "explain", "SELECT * FROM notes WHERE id = 1"]).await.expect(0);
    assert!(
        out.stdout.starts_with("Index Scan using notes_pkey on notes") || out.stdout.starts_with("Bitmap Heap Scan"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\n  "), "an indented plan, not one cell: {}", out.stdout);
    assert!(out.stderr.starts_with("summary: "), "{}", out.stderr);

    // In CSV, as psql --csv shows EXPLAIN: a QUERY PLAN header and a row per line.
    let out =
        run(&db, &["--csv", "query", "explain", "SELECT * FROM notes WHERE id > 1 AND note <> 'x'"]).await.expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "QUERY PLAN", "{}", out.stdout);
    assert!(lines.len() > 2 && !out.stdout.contains("Node Type"), "a row per plan line: {}", out.stdout);
    assert!(lines[2..].iter().any(|l| l.starts_with("\"  ") || l.starts_with("  ")), "{}", out.stdout);
}

#[tokio::test]
async fn query_transaction_commits_all_or_nothing() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    run(
        &db,
        &[
            "query",
            "transaction",
            "INSERT INTO notes VALUES (1, 'a')",
            "INSERT INTO notes VALUES (2, 'b')",
            "--autocommit",
        ],
    )
    .await
    .expect(0);
    assert_eq!(count(&db, "notes").await, 2);

    let out = run(
        &db,
        &[
            "query",
            "transaction",
            "--autocommit",
            "--operations",
            r#"[{"sql": "INSERT INTO notes VALUES ($1, 'c')", "params": [3]},
                             {"sql": "INSERT INTO notes VALUES ($1, 'd')", "params": [1]}]"#,
        ],
    )
    .await
    .expect(1);
    assert!(out.stderr.contains("operation_index: 1"), "{}", out.stderr);
    assert_eq!(count(&db, "notes").await, 2, "the failed batch left nothing behind");
}

#[tokio::test]
async fn schema_subcommands_list_describe_and_change() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let client = db.client().await;
    client.batch_execute("CREATE VIEW note_view AS SELECT id FROM notes").await.unwrap();

    let out = run(&db, &["--format", "json", "schema", "list", "--target", "views"]).await.expect(0);
    assert!(out.stdout.contains("note_view"), "{}", out.stdout);
    let out = run(&db, &["schema", "describe", "notes"]).await.expect(0);
    assert!(out.stdout.contains("notes_pkey"), "{}", out.stdout);
    assert!(out.stdout.contains("note"), "{}", out.stdout);

    run(&db, &["schema", "create", "--sql", "CREATE TABLE made_here (id int)", "--autocommit"]).await.expect(0);
    run(&db, &["schema", "alter", "--sql", "ALTER TABLE made_here ADD COLUMN extra text", "--autocommit"])
        .await
        .expect(0);
    assert_eq!(count(&db, "made_here").await, 0);
    run(&db, &["schema", "drop", "--target", "table", "--name", "made_here", "--if-exists", "--autocommit"])
        .await
        .expect(0);
    let gone = client.query_opt("SELECT 1 FROM pg_class WHERE relname = 'made_here'", &[]).await.unwrap();
    assert!(gone.is_none(), "the table was dropped");
}

#[tokio::test]
async fn admin_subcommands_run_maintenance() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    run(&db, &["admin", "vacuum", "--table", "notes", "--autocommit"]).await.expect(0);
    run(&db, &["admin", "analyze", "--table", "notes", "--autocommit"]).await.expect(0);
    run(&db, &["admin", "reindex", "--target", "table", "--name", "notes", "--autocommit"]).await.expect(0);
    let out = run(&db, &["--format", "json", "admin", "stats", "--table", "notes"]).await.expect(0);
    assert!(out.stdout.contains("notes"), "{}", out.stdout);
    let out = run(&db, &["--format", "json", "admin", "settings", "--name", "work_mem"]).await.expect(0);
    assert!(out.stdout.contains("work_mem"), "{}", out.stdout);

    // Cancel the (idle) query of a side connection: the call itself succeeds.
    let side = db.client().await;
    let pid: i32 = side.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    run(&db, &["admin", "terminate", &pid.to_string(), "--mode", "cancel", "--autocommit"]).await.expect(0);
    side.simple_query("SELECT 1").await.expect("a cancel leaves the connection alive");
}

#[tokio::test]
async fn monitor_subcommands_observe_the_server() {
    let db = test_db().await;
    let out = run(&db, &["monitor", "health", "--deep"]).await.expect(0);
    assert!(out.stdout.starts_with("status"), "{}", out.stdout);
    assert!(out.stdout.contains("checks:"), "{}", out.stdout);
    for args in [
        &["monitor", "activity", "--include-idle"][..],
        &["monitor", "connections"],
        &["monitor", "locks", "--blocking-only", "false"],
        &["monitor", "size", "--limit", "3"],
    ] {
        let mut argv = vec!["--format", "json"];
        argv.extend_from_slice(args);
        let out = run(&db, &argv).await.expect(0);
        assert!(out.json().is_object(), "{args:?}: {}", out.stdout);
    }

    // top-queries works when pg_stat_statements is installed, and says how to enable it otherwise.
    let client = db.client().await;
    let installed = client
        .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'", &[])
        .await
        .unwrap()
        .is_some();
    let out = run(&db, &["monitor", "top-queries", "--limit", "2"]).await;
    if installed {
        out.expect(0);
    } else {
        let out = out.expect(1);
        assert!(out.stderr.contains("pg_stat_statements"), "{}", out.stderr);
    }
}

#[tokio::test]
async fn call_runs_any_tool_with_json_arguments() {
    let db = test_db().await;
    let out =
        run(&db, &["--format", "json", "call", "pg_query", r#"{"action": "read", "sql": "SELECT 41 + 1 AS answer"}"#])
            .await
            .expect(0);
    assert_eq!(out.json()["rows"][0]["answer"], 42);

    let out = crate::support::run_stdin(&db, &["call", "pg_tx", "-"], r#"{"action": "list"}"#).await.expect(0);
    assert!(out.stdout.contains("count"), "{}", out.stdout);
}

#[tokio::test]
async fn tools_lists_every_tool_and_its_schema() {
    let out = crate::support::run_with(&["--format", "json", "tools"], &[], None).await.expect(0);
    let specs = out.json();
    let names: Vec<&str> = specs.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, coldquery_tools::TOOLS.iter().map(|t| t.name).collect::<Vec<_>>());
    for spec in specs.as_array().unwrap() {
        assert_eq!(spec["input_schema"]["type"], "object", "{spec}");
    }
    let out = crate::support::run_with(&["tools", "pg_query"], &[], None).await.expect(0);
    assert!(out.stdout.contains("parameters:"), "{}", out.stdout);
    assert!(out.stdout.contains("session_id"), "{}", out.stdout);
}

#[tokio::test]
async fn read_only_mode_refuses_writes_from_flag_and_environment() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let write = ["query", "write", "INSERT INTO notes VALUES (1, 'a')", "--autocommit"];
    let mut args = vec!["--read-only"];
    args.extend_from_slice(&write);
    let out = run(&db, &args).await.expect(1);
    assert!(out.stderr.contains("error[WRITE_DENIED]"), "{}", out.stderr);
    assert!(out.stderr.contains("read-only"), "{}", out.stderr);

    let env = [("DATABASE_URL", db.url.as_str()), ("COLDQUERY_READ_ONLY", "true")];
    crate::support::run_with(&write, &env, None).await.expect(1);
    assert_eq!(count(&db, "notes").await, 0);

    let env = [("DATABASE_URL", db.url.as_str()), ("COLDQUERY_READ_ONLY", "false")];
    crate::support::run_with(&write, &env, None).await.expect(0);
    assert_eq!(count(&db, "notes").await, 1);
}

#[tokio::test]
async fn audit_log_records_writes() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let path = std::env::temp_dir().join(format!("coldquery-cli-audit-{}.jsonl", db.name));
    let path_text = path.to_string_lossy().into_owned();
    let env = [("DATABASE_URL", db.url.as_str()), ("COLDQUERY_AUDIT_LOG", path_text.as_str())];
    crate::support::run_with(
        &["query", "write", "INSERT INTO notes VALUES ($1, 'secret')", "--param", "7", "--autocommit"],
        &env,
        None,
    )
    .await
    .expect(0);
    crate::support::run_with(&["query", "write", "DELETE FROM notes"], &env, None).await.expect(1);
    let log = std::fs::read_to_string(&path).expect("the audit log was written");
    let _ = std::fs::remove_file(&path);
    let records: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2, "{log}");
    assert_eq!(records[0]["decision"], "allowed");
    assert_eq!(records[0]["rows_affected"], 1);
    assert_eq!(records[1]["decision"], "denied");
    assert!(!log.contains("\"7\""), "parameters are never recorded: {log}");
}

/// A JSON array given for an array parameter — as `--param` text or in `--params-json` — is
/// the array, for a read and for an autocommit write (checked from a side connection).
#[tokio::test]
async fn json_arrays_given_as_array_parameters_round_trip() {
    let db = test_db().await;
    let client = db.client().await;
    client.batch_execute("CREATE TABLE tagged (id int, nums int[], tags text[])").await.unwrap();
    let sql = "SELECT $1::int[] AS nums, $2::text[] AS tags";
    let out = run(&db, &["-At", "query", "read", sql, "--param", "[1,2,3]", "--param", r#"["x","y z",null]"#])
        .await
        .expect(0);
    assert_eq!(out.stdout, "{1,2,3}|{x,\"y z\",NULL}\n");
    let out = run(&db, &["--format", "json", "query", "read", sql, "--params-json", r#"[[[1,2],[3,4]], ["a,b", ""]]"#])
        .await
        .expect(0);
    assert_eq!(out.json()["rows"][0], serde_json::json!({"nums": [[1, 2], [3, 4]], "tags": ["a,b", ""]}));

    let insert = "INSERT INTO tagged VALUES ($1, $2, $3)";
    let out =
        run(&db, &["query", "write", insert, "--autocommit", "--params-json", r#"[1, [7, 8], ["q\"x", "NULL"]]"#])
            .await
            .expect(0);
    assert_eq!(out.stdout, "INSERT 0 1\n");
    let out = run(&db, &["query", "write", insert, "--autocommit", "--param", "2", "--param", "[9]", "--param", "[]"])
        .await
        .expect(0);
    assert_eq!(out.stdout, "INSERT 0 1\n");
    let rows: Vec<(i32, String, String)> = client
        .query("SELECT id, nums::text, tags::text FROM tagged ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [(1, "{7,8}".to_owned(), r#"{"q\"x","NULL"}"#.to_owned()), (2, "{9}".to_owned(), "{}".to_owned())]
    );
}

/// `monitor health --deep` is a probe: exit 1, naming the failing check, when the server is
/// degraded (here a sequence at 95% of its range), 0 once it is fixed.
#[tokio::test]
async fn monitor_health_deep_exits_1_when_degraded() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE SEQUENCE nearly_full MAXVALUE 100; SELECT setval('nearly_full', 95)").await.unwrap();
    let out = run(&db, &["monitor", "health", "--deep"]).await.expect(1);
    assert!(out.stdout.starts_with("status"), "the report is still printed: {}", out.stdout);
    assert!(
        out.stderr.contains("coldquery: the server's health is degraded")
            && out.stderr.contains("sequences (critical)"),
        "{}",
        out.stderr
    );
    side.batch_execute("DROP SEQUENCE nearly_full").await.unwrap();
    let out = run(&db, &["--format", "json", "monitor", "health", "--deep"]).await.expect(0);
    assert_ne!(out.json()["status"], "degraded", "{}", out.stdout);
}
