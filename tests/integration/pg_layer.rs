//! The PostgreSQL layer on its own (issue: foundation): one statement over the extended
//! protocol, read-only reads that cannot be flipped, capped fetching, real cancellation,
//! lossless rendering, error mapping, and configuration errors.

use std::time::{Duration, Instant};

use coldquery_core::{Access, CancellationToken, ErrorKind, Executor, Ident, Limits, Sql, SqlBuilder, Statement};
use coldquery_pg::{Database, PgConfig, PgOptions};
use coldquery_tests::harness::test_db;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::support::{connect, count, limits, options, run, run_caller};

#[tokio::test]
async fn multi_statement_is_refused_by_the_protocol_and_the_table_survives() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1)").await.unwrap();
    let cq = connect(&db, &options()).await;
    for access in [Access::ReadOnly, Access::Autocommit] {
        for sql in ["SELECT 1; DROP TABLE t", "SELECT 1; COMMIT; DROP TABLE t"] {
            let err = run_caller(&cq, access, sql, &Limits::default()).await.unwrap_err();
            assert_eq!(err.sqlstate(), Some("42601"), "{access:?} {sql}: {err}");
        }
    }
    assert_eq!(count(&side, "SELECT count(*) FROM t").await, 1);
}

#[tokio::test]
async fn set_transaction_read_write_cannot_turn_a_read_into_a_write() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE t (a int)").await.unwrap();
    let cq = connect(&db, &options()).await;
    let err = run(&cq, Access::ReadOnly, "SET TRANSACTION READ WRITE").await.unwrap_err();
    // The snapshot pinned right after BEGIN makes PostgreSQL refuse the switch.
    assert_eq!(err.sqlstate(), Some("25001"), "{err}");
    let err = run(&cq, Access::ReadOnly, "INSERT INTO t VALUES (1)").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnlyViolation);
    assert_eq!(err.sqlstate(), Some("25006"));
    let err = run(&cq, Access::ReadOnly, "WITH d AS (INSERT INTO t VALUES (2) RETURNING a) SELECT * FROM d")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnlyViolation);
    assert_eq!(count(&side, "SELECT count(*) FROM t").await, 0);
}

#[tokio::test]
async fn reads_always_roll_back_session_state() {
    let db = test_db().await;
    let cq = connect(&db, &PgOptions { pool_size: 1, ..options() }).await;
    run(&cq, Access::ReadOnly, "SELECT set_config('search_path', 'evil', false)").await.unwrap();
    let after = run(&cq, Access::ReadOnly, "SHOW search_path").await.unwrap();
    assert_eq!(after.rows[0][0], serde_json::json!("\"$user\", public"));
}

#[tokio::test]
async fn errors_carry_sqlstate_and_position() {
    let db = test_db().await;
    let cq = connect(&db, &options()).await;
    let err = run(&cq, Access::ReadOnly, "SELEC 1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DatabaseError);
    assert_eq!(err.sqlstate(), Some("42601"));
    assert_eq!(err.position(), Some(1));
    let err = run(&cq, Access::ReadOnly, "SELECT nope FROM pg_class").await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("42703"));
    assert_eq!(err.position(), Some(8));
    assert!(err.message().contains("nope"), "{err}");
    // The pooled connection is fine afterwards.
    assert_eq!(run(&cq, Access::ReadOnly, "SELECT 1").await.unwrap().rows.len(), 1);
}

#[tokio::test]
async fn wrong_parameter_count_and_nul_parameters_are_clear_errors() {
    let db = test_db().await;
    let cq = connect(&db, &PgOptions { pool_size: 1, ..options() }).await;
    let text = |value: &str| coldquery_core::Param::Text(value.into());
    // Both paths: a prepared statement in a read-only transaction, and one unnamed statement.
    for access in [Access::ReadOnly, Access::Autocommit] {
        let go = |statement: Statement| {
            let executor = cq.executor.clone();
            async move { executor.run(access, &statement, &Limits::default(), &CancellationToken::new()).await }
        };
        let err = go(Statement::new(Sql::catalog("SELECT $1::int + $2::int"))).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{access:?}: {err}");
        assert!(err.message().contains('2'), "{access:?}: the message gives the count: {err}");
        let err = go(Statement::with_params(Sql::catalog("SELECT $1::text"), vec![text("a\0b")])).await.unwrap_err();
        assert_eq!(err.sqlstate(), Some("22021"), "{access:?}: {err}");
        assert!(err.message().contains("0x00"), "{access:?}: {err}");
        let err =
            go(Statement::with_params(Sql::catalog("SELECT $1::int"), vec![text("not a number")])).await.unwrap_err();
        assert_eq!(err.sqlstate(), Some("22P02"), "{access:?}: {err}");
        assert!(err.message().contains("not a number"), "{access:?}: {err}");
        // The single pooled connection (or its replacement) is fine afterwards.
        assert_eq!(run(&cq, access, "SELECT 1").await.unwrap().rows.len(), 1);
    }
}

#[tokio::test]
async fn timed_out_statement_is_cancelled_on_the_server_and_the_connection_is_reusable() {
    let db = test_db().await;
    let side = db.client().await;
    // One connection, so the next read must reuse the one that timed out.
    let cq = connect(&db, &PgOptions { pool_size: 1, ..options() }).await;
    let started = Instant::now();
    let err = run_caller(&cq, Access::ReadOnly, "SELECT pg_sleep(30)", &limits(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let gone = Instant::now();
    loop {
        let active = count(
            &side,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()",
        )
        .await;
        if active == 0 {
            break;
        }
        assert!(gone.elapsed() < Duration::from_secs(1), "pg_sleep still running on the server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next = Instant::now();
    assert_eq!(run(&cq, Access::ReadOnly, "SELECT 1").await.unwrap().rows.len(), 1);
    // Without a real cancel the next statement would queue behind the 30 s sleep.
    assert!(next.elapsed() < Duration::from_secs(5), "next call waited {:?}", next.elapsed());
}

#[tokio::test]
async fn cancelling_the_call_cancels_the_server_statement() {
    let db = test_db().await;
    let cq = connect(&db, &PgOptions { pool_size: 1, ..options() }).await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let statement = Statement::new(Sql::catalog("SELECT pg_sleep(30)"));
    let err =
        cq.executor.run(Access::ReadOnly, &statement, &limits(Duration::from_secs(60)), &cancel).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let next = Instant::now();
    assert_eq!(run(&cq, Access::ReadOnly, "SELECT 1").await.unwrap().rows.len(), 1);
    assert!(next.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_capped_read_stops_fetching_early() {
    let db = test_db().await;
    let cq = connect(&db, &PgOptions { pool_size: 1, ..options() }).await;
    // Each row costs 20 ms on the server: fetching all 100 000 would take over half an hour,
    // so returning within the 60 s timeout proves the server stopped at max_rows + 1.
    let capped = Limits { max_rows: 5, max_bytes: 1 << 20, timeout: Duration::from_secs(60), lock_timeout: None };
    let result =
        run_caller(&cq, Access::ReadOnly, "SELECT g, pg_sleep(0.02) FROM generate_series(1, 100000) g", &capped)
            .await
            .unwrap();
    assert_eq!(result.rows.len(), 5);
    assert!(result.truncated);
    assert_eq!(result.rows[4][0], serde_json::json!(5));
    // The byte budget stops a result of huge rows the same way.
    let budget =
        Limits { max_rows: 1000, max_bytes: 3 * 1024 * 1024, timeout: Duration::from_secs(60), lock_timeout: None };
    let result =
        run_caller(&cq, Access::ReadOnly, "SELECT repeat('x', 1000000) FROM generate_series(1, 1000)", &budget)
            .await
            .unwrap();
    assert!(result.truncated);
    assert!((1..=3).contains(&result.rows.len()), "{} rows", result.rows.len());
    // And the single connection is immediately usable again.
    assert_eq!(run(&cq, Access::ReadOnly, "SELECT 1").await.unwrap().rows.len(), 1);
}

#[tokio::test]
async fn a_capped_read_of_a_million_rows_returns_the_cap() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 1000000) g")
        .await
        .unwrap();
    let cq = connect(&db, &PgOptions { pool_size: 1, ..options() }).await;
    // No parallel workers: the scan reads the heap in insertion order, so rows beyond the
    // first 2 000 each cost 10 ms. Reading the whole table would take hours; returning
    // within the 60 s timeout proves the fetch stopped at the cap and the scan was cancelled.
    side.batch_execute("ALTER TABLE big SET (parallel_workers = 0)").await.unwrap();
    let capped = Limits { max_rows: 1000, max_bytes: 1 << 20, timeout: Duration::from_secs(60), lock_timeout: None };
    let started = Instant::now();
    let result = run_caller(
        &cq,
        Access::ReadOnly,
        "SELECT id, h, CASE WHEN id > 2000 THEN pg_sleep(0.01) END AS slow FROM big",
        &capped,
    )
    .await
    .unwrap();
    assert_eq!(result.rows.len(), 1000);
    assert!(result.truncated);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert_eq!(
        count(&side, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FROM big%' AND state = 'active' AND pid <> pg_backend_pid()").await,
        0,
        "the scan is no longer running on the server"
    );
    let result = run_caller(&cq, Access::ReadOnly, "SELECT * FROM big", &capped).await.unwrap();
    assert_eq!(result.rows.len(), 1000);
    assert!(result.truncated);
    let small = run_caller(&cq, Access::ReadOnly, "SELECT * FROM big WHERE id <= 1000", &capped).await.unwrap();
    assert_eq!(small.rows.len(), 1000);
    assert!(!small.truncated);
}

#[tokio::test]
async fn a_killed_connection_is_a_clear_error_and_the_pool_recovers() {
    let db = test_db().await;
    let side = db.client().await;
    let cq = connect(&db, &PgOptions { pool_size: 1, application_name: "cq-killed".into(), ..options() }).await;
    let executor = cq.executor.clone();
    let running = tokio::spawn(async move {
        let statement = Statement::new(Sql::catalog("SELECT pg_sleep(30)"));
        executor.run(Access::ReadOnly, &statement, &limits(Duration::from_secs(60)), &CancellationToken::new()).await
    });
    let waiting = Instant::now();
    let active = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cq-killed' AND query LIKE '%pg_sleep(30)%' AND state = 'active'";
    while count(&side, active).await == 0 {
        assert!(waiting.elapsed() < Duration::from_secs(10), "the statement never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = count(
        &side,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cq-killed') k",
    )
    .await;
    assert_eq!(killed, 1);
    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(err.sqlstate(), Some("57P01"), "{err}");
    assert!(err.message().contains("terminating connection"), "{err}");
    // The dead connection was discarded: the single-connection pool serves the next call.
    assert_eq!(run(&cq, Access::ReadOnly, "SELECT 1").await.unwrap().rows.len(), 1);
    // A connection killed while idle in the pool is noticed on checkout or on first use.
    count(&side, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cq-killed') k").await;
    let first = run(&cq, Access::ReadOnly, "SELECT 1").await;
    if let Err(err) = &first {
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }
    assert_eq!(run(&cq, Access::ReadOnly, "SELECT 1").await.unwrap().rows.len(), 1);
}

#[tokio::test]
async fn autocommit_writes_commit_and_report_rows_affected() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE t (a int)").await.unwrap();
    let cq = connect(&db, &options()).await;
    let result = run(&cq, Access::Autocommit, "INSERT INTO t SELECT generate_series(1, 3)").await.unwrap();
    assert_eq!(result.rows_affected, Some(3));
    assert_eq!(count(&side, "SELECT count(*) FROM t").await, 3);
    // VACUUM cannot run in a transaction block: the autocommit path sends it alone.
    run(&cq, Access::Autocommit, "VACUUM t").await.unwrap();
    // A RETURNING beyond the cap is drained, not cancelled: the write completes.
    let capped = Limits { max_rows: 2, ..Limits::default() };
    let result = run_caller(&cq, Access::Autocommit, "UPDATE t SET a = a + 10 RETURNING a", &capped).await.unwrap();
    assert!(result.truncated);
    assert_eq!(result.rows.len(), 2);
    assert_eq!(count(&side, "SELECT count(*) FROM t WHERE a > 10").await, 3);
}

#[tokio::test]
async fn every_type_renders() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(include_str!("type_matrix.sql")).await.unwrap();
    let cq = connect(&db, &options()).await;
    let result = run(&cq, Access::ReadOnly, "SELECT * FROM type_matrix ORDER BY id").await.unwrap();
    let rendered = serde_json::json!({ "fields": result.fields, "rows": result.rows_as_objects() });
    insta::assert_json_snapshot!("type_matrix", rendered);
}

#[tokio::test]
async fn identifier_oracle_the_server_reads_back_the_original_name() {
    let db = test_db().await;
    let cq = connect(&db, &options()).await;
    let mut names: Vec<String> =
        ["users", "Users", "select", "a\"b", "t\"; DROP TABLE x; --", "a b", "ß", "日本語", "a\nb", "$1", "x'y", "\\"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut runner = TestRunner::deterministic();
    // At most 15 characters (60 bytes): every generated name is a valid identifier.
    let strategy = proptest::string::string_regex("\\PC{1,15}").unwrap();
    for _ in 0..100 {
        names.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for name in names {
        let ident = Ident::new(&name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let sql = SqlBuilder::new("SELECT 1 AS ").ident(&ident).build();
        let result = cq
            .executor
            .run(Access::ReadOnly, &Statement::new(sql), &Limits::default(), &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(result.fields.len(), 1);
        assert_eq!(result.fields[0].name, name);
    }
}

#[tokio::test]
async fn configuration_errors_name_the_problem_and_hide_the_password() {
    let env = |_: &str| None;
    let bad = ["postgres://u:s3cr3t-pw@localhost:notaport/db", "postgres://u:s3cr3t-pw@localhost/db?sslmode=bogus"];
    for (url, names) in bad.iter().zip(["port", "sslmode"]) {
        let err = PgConfig::from_env_and_url(Some(url), &env).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert!(err.to_string().contains(names), "{err}");
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }
    let err = PgConfig::from_env_and_url(Some("postgres://u:s3cr3t-pw@localhost/db?sslmode=bogus"), &env).unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
    assert!(err.to_string().contains("verify-full"), "the valid choices are listed: {err}");
    // A URL that is not a URL at all.
    let err = PgConfig::from_env_and_url(Some("mysql://u:s3cr3t-pw@localhost/db"), &env).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("s3cr3t-pw"), "{err:?}");
    assert!(err.to_string().contains("scheme"), "{err}");
    // Unreachable server: nothing listens on port 1.
    let config =
        PgConfig::from_env_and_url(Some("postgres://u:s3cr3t-pw@127.0.0.1:1/db?connect_timeout=5"), &env).unwrap();
    let err = Database::connect(&config, &PgOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let text = format!("{err} {:?}", err.hint());
    assert!(!text.contains("s3cr3t-pw"), "{text}");
    assert!(text.to_lowercase().contains("refused") || text.contains("connect"), "{text}");
}

#[tokio::test]
async fn a_wrong_password_is_reported_without_the_password() {
    let db = test_db().await;
    let url = coldquery_tests::harness::password_url(&db, "wrong-pa55word");
    let config = PgConfig::from_env_and_url(Some(&url), &|_| None).unwrap();
    let err = Database::connect(&config, &PgOptions::default()).await.unwrap_err();
    let text = format!("{err} {:?} {:?}", err.hint(), err.detail());
    assert!(!text.contains("wrong-pa55word"), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert_eq!(err.sqlstate(), Some("28P01"));
}
