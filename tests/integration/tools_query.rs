//! `pg_query` through the tools against the real PostgreSQL: every action, the Default-Deny
//! gate, limits, formats, batches and argument errors — each checked on the database itself
//! through a side connection.

use std::time::{Duration, Instant};

use coldquery_tests::harness::{TestDb, test_db};
use coldquery_tools::{Caller, ToolConfig, Tools};
use insta::assert_json_snapshot;
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::support::{ADVISORY_LOCKS, autocommit_write, call, caller, code, count, options, sessionless_read, tools};

async fn setup(db: &TestDb) -> (Client, Tools, coldquery_pg::Database, Caller) {
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(8,2));
         INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 20) g;",
    )
    .await
    .expect("fixture");
    let (tools, database) = tools(db, &options(), ToolConfig::default(), false).await;
    (side, tools, database, caller("query"))
}

async fn items(side: &Client) -> i64 {
    count(side, "SELECT count(*) FROM items").await
}

fn error_of(out: &Value) -> &Value {
    &out["error"]
}

#[tokio::test]
async fn read_with_params_returns_typed_rows() {
    let db = test_db().await;
    let (_side, tools, _db, me) = setup(&db).await;
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({
            "action": "read",
            "sql": "SELECT id, name, price, price > $2 AS dear FROM items WHERE id <= $1 ORDER BY id",
            "params": [3, 3],
        }),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["row_count"], 3);
    assert_eq!(out["truncated"], false);
    assert_eq!(out["command"], "SELECT");
    assert_eq!(out["rows_affected"], Value::Null);
    assert_eq!(out["rows"][2], json!({"id": 3, "name": "item 3", "price": "4.50", "dear": true}));
    assert_json_snapshot!("read_with_params", out, {".duration_ms" => "[ms]"});
}

/// A capped read has the server execute its portal for `max_rows + 1` rows: the scan reads what
/// the result returns whatever the table's size, no CancelRequest stops it, and its pooled
/// connection stays (no reconnect).
#[tokio::test]
async fn capped_reads_scan_only_what_they_return_and_keep_their_connection() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS label FROM generate_series(1, 100000) g")
        .await
        .expect("fixture");
    let (tools, _database) = tools(&db, &options(), ToolConfig::default(), false).await;
    let me = caller("capped");
    let read = json!({"action": "read", "sql": "SELECT * FROM big", "max_rows": 10});
    let warm = call(&tools, &me, "pg_query", read.clone()).await;
    assert_eq!(warm["truncated"], true, "{warm}");
    let backend = "SELECT pg_backend_pid() AS pid";
    let pid = sessionless_read(&tools, &me, backend).await["rows"][0]["pid"].clone();
    let sessions = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()";
    let sessions_before = count(&side, sessions).await;
    let scanned = "SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'big'";
    // Statistics reach the shared view when the reading backend goes idle (at most about a
    // second later): wait until the warm-up read shows, then measure the next ones.
    let settled = |at_least: i64| {
        let side = &side;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let now = count(side, scanned).await;
                if now >= at_least || Instant::now() > deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return count(side, scanned).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let scanned_before = settled(1).await;
    const READS: i64 = 30;
    for _ in 0..READS {
        let out = call(&tools, &me, "pg_query", read.clone()).await;
        assert_eq!((out["row_count"].as_i64(), out["truncated"].as_bool()), (Some(10), Some(true)), "{out}");
    }
    let scanned_after = settled(scanned_before + READS * 11).await;
    let per_read = (scanned_after - scanned_before) / READS;
    coldquery_tests::figures::record(
        "capped_reads",
        json!({"reads": READS, "max_rows": 10, "table_rows": 100_000, "rows_scanned_per_read": per_read}),
    );
    assert!(per_read <= 11, "a capped read scanned {per_read} rows of 100 000");
    assert_eq!(count(&side, sessions).await, sessions_before, "a capped read reconnected");
    let out = sessionless_read(&tools, &me, backend).await;
    assert_eq!(out["rows"][0]["pid"], pid, "the pooled connection was replaced");
}

/// The read function guard is prepared once per pooled connection and run again, not parsed
/// and planned for every read; nothing else accumulates.
#[tokio::test]
async fn the_read_guard_is_prepared_once_per_connection() {
    let db = test_db().await;
    let (_side, tools, _db, me) = setup(&db).await;
    // The first read of a connection prepares the guard while the statement is parsed: a
    // statement the server refuses still reports its own error, not the aborted transaction.
    let missing = sessionless_read(&tools, &me, "SELECT * FROM no_such_table").await;
    assert_eq!(code(&missing), "DATABASE_ERROR", "{missing}");
    assert_eq!(missing["error"]["sqlstate"], "42P01", "{missing}");
    let prepared = json!({"action": "read", "sql": "SELECT count(*) FILTER (WHERE statement LIKE '%WITH RECURSIVE ' || 'rels%') AS guards,
               count(*) AS statements FROM pg_prepared_statements WHERE NOT from_sql"});
    let first = call(&tools, &me, "pg_query", prepared.clone()).await;
    assert_eq!(first["rows"][0]["guards"], 1, "{first}");
    for n in 0..20 {
        let out = call(
            &tools,
            &me,
            "pg_query",
            json!({"action": "read", "sql": "SELECT name FROM items WHERE id = $1", "params": [n % 20 + 1]}),
        )
        .await;
        assert_eq!(out["row_count"], 1, "{out}");
    }
    let after = call(&tools, &me, "pg_query", prepared).await;
    assert_eq!(after["rows"][0], first["rows"][0], "{first} then {after}");
}

/// A read's protocol statement is closed when its connection is next used (its Close travels
/// with that use's first message), before anything of the next caller runs: no read ever sees
/// another read's statement, whoever made it, on the one pooled connection there is.
#[tokio::test]
async fn a_reads_statement_is_gone_before_the_next_read_runs() {
    let db = test_db().await;
    let _side = db.client().await;
    let one = coldquery_pg::PgOptions { pool_size: 1, ..options() };
    let (tools, _database) = tools(&db, &one, ToolConfig::default(), false).await;
    let (alice, bob) = (caller("alice"), caller("bob"));
    let seen = json!({"action": "read", "sql": "SELECT statement, pg_backend_pid() AS pid FROM pg_prepared_statements
        WHERE NOT from_sql AND statement NOT LIKE '%WITH RECURSIVE ' || 'rels%' ORDER BY statement"});
    let mut pids = std::collections::BTreeSet::new();
    for n in 0..5 {
        let secret = format!("SELECT 'alice secret {n}' AS marker");
        let out = call(&tools, &alice, "pg_query", json!({"action": "read", "sql": secret})).await;
        assert_eq!(out["row_count"], 1, "{out}");
        let out = call(&tools, &bob, "pg_query", seen.clone()).await;
        assert_eq!(code(&out), "ok", "{out}");
        let statements: Vec<&str> =
            out["rows"].as_array().unwrap().iter().filter_map(|r| r["statement"].as_str()).collect();
        assert!(!statements.iter().any(|s| s.contains("alice secret")), "bob saw alice's statement: {statements:?}");
        // Bob's own statement is the only one there (but for ColdQuery's read guard).
        assert_eq!(statements.len(), 1, "another statement stayed prepared: {statements:?}");
        assert!(statements[0].contains("pg_prepared_statements"), "{statements:?}");
        pids.insert(out["rows"][0]["pid"].to_string());
    }
    assert_eq!(pids.len(), 1, "the reads did not share the one pooled connection: {pids:?}");
}

#[tokio::test]
async fn read_is_capped_at_max_rows_while_fetching() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT id FROM items ORDER BY id", "max_rows": 5}),
    )
    .await;
    assert_eq!(out["row_count"], 5, "{out}");
    assert_eq!(out["truncated"], true);
    assert!(out["hint"].as_str().unwrap().contains("aggregate"), "{out}");
    assert_eq!(out["rows"][4]["id"], 5);
    // A huge series stops early: the server stops at the cap, it does not run to the end (a
    // set-returning function in the select list streams; in FROM it would be materialised first).
    let started = Instant::now();
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT generate_series(1, 100000000) AS g", "max_rows": 10}),
    )
    .await;
    assert_eq!(out["row_count"], 10, "{out}");
    assert_eq!(out["truncated"], true);
    assert!(started.elapsed() < Duration::from_secs(10), "the capped read took {:?}", started.elapsed());
    // Over the ceiling is an argument error naming it.
    let out = call(&tools, &me, "pg_query", json!({"action": "read", "sql": "SELECT 1", "max_rows": 10_001})).await;
    assert_eq!(code(&out), "INVALID_ARGUMENT");
    assert!(error_of(&out)["message"].as_str().unwrap().contains("10000"), "{out}");
    // Nothing is left running or open.
    let busy = count(
        &side,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
         AND pid <> pg_backend_pid() AND (state = 'active' OR state LIKE 'idle in transaction%')",
    )
    .await;
    assert_eq!(busy, 0);
}

#[tokio::test]
async fn read_formats_change_the_text_only() {
    let db = test_db().await;
    let (_side, tools, _db, me) = setup(&db).await;
    let sql = "SELECT id, name FROM items WHERE id IN (1, 2) ORDER BY id";
    let md = tools.call(&me, "pg_query", json!({"action": "read", "sql": sql, "format": "markdown"})).await.unwrap();
    assert_eq!(
        md.clone().value().expect("the read succeeds")["rows"][0],
        json!({"id": 1, "name": "item 1"}),
        "structured content stays JSON"
    );
    let text = md.text();
    assert!(text.contains("| id | name |"), "{text}");
    assert!(text.contains("| 2 | item 2 |"), "{text}");
    let csv = tools.call(&me, "pg_query", json!({"action": "read", "sql": sql, "format": "csv"})).await.unwrap();
    assert_eq!(csv.text().lines().collect::<Vec<_>>(), ["id,name", "1,item 1", "2,item 2"]);
    let json_text = tools.call(&me, "pg_query", json!({"action": "read", "sql": sql})).await.unwrap();
    let parsed: Value = serde_json::from_str(&json_text.text()).unwrap();
    assert_eq!(parsed["rows"], json_text.into_json()["rows"]);
    let bad = call(&tools, &me, "pg_query", json!({"action": "read", "sql": sql, "format": "xml"})).await;
    assert_eq!(code(&bad), "INVALID_ARGUMENT");
    assert!(error_of(&bad)["message"].as_str().unwrap().contains("markdown"), "{bad}");
}

/// A `jsonb` value as deep as the decoder takes (127 levels), in a row and in a 2-dimensional
/// array, comes back whole as values, as markdown and as text: the rows' JSON text is parsed back
/// without serde_json's nesting limit.
#[tokio::test]
async fn deep_json_values_come_back_whole() {
    let db = test_db().await;
    let (_side, tools, _db, me) = setup(&db).await;
    let sql = "SELECT (repeat('[', 126) || '1' || repeat(']', 126))::jsonb AS j, \
               ARRAY[ARRAY[(repeat('[', 120) || repeat(']', 120))::jsonb]] AS a";
    let mut deep = json!(1);
    for _ in 0..126 {
        deep = json!([deep]);
    }
    let mut shallower = json!([]);
    for _ in 0..119 {
        shallower = json!([shallower]);
    }
    let expected = json!({"j": deep, "a": [[shallower]]});
    for format in ["json", "markdown"] {
        let output =
            tools.call(&me, "pg_query", json!({"action": "read", "sql": sql, "format": format})).await.unwrap();
        let value = output.clone().value().expect("the read succeeds");
        assert_eq!(value["rows"][0], expected, "{format}");
        if format == "json" {
            let text: Value = coldquery_core::parse_own_json(&output.text()).unwrap();
            assert_eq!(text["rows"][0], expected);
        } else {
            assert!(output.text().starts_with("| j | a |"), "{}", output.text());
        }
    }
}

#[tokio::test]
async fn read_timeout_cancels_the_statement_on_the_server() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let started = Instant::now();
    let out =
        call(&tools, &me, "pg_query", json!({"action": "read", "sql": "SELECT pg_sleep(30)", "timeout_ms": 300})).await;
    assert_eq!(code(&out), "TIMEOUT", "{out}");
    assert_eq!(error_of(&out)["sqlstate"], "57014");
    assert!(error_of(&out)["hint"].as_str().unwrap().contains("timeout_ms"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let sleeping = count(
        &side,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'",
    )
    .await;
    assert_eq!(sleeping, 0, "the backend still runs the timed-out statement");
    // The next call is prompt.
    let started = Instant::now();
    let out = sessionless_read(&tools, &me, "SELECT 1 AS one").await;
    assert_eq!(out["rows"][0]["one"], 1);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn cancelling_the_caller_cancels_the_statement() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let token = me.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel();
    });
    let started = Instant::now();
    let out = sessionless_read(&tools, &me, "SELECT pg_sleep(30)").await;
    assert_eq!(code(&out), "CANCELLED", "{out}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let sleeping = count(
        &side,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'",
    )
    .await;
    assert_eq!(sleeping, 0);
}

#[tokio::test]
async fn write_without_consent_is_denied_and_nothing_is_sent() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    for args in [
        json!({"action": "write", "sql": "DELETE FROM items"}),
        json!({"action": "write", "sql": "DELETE FROM items", "autocommit": false}),
        json!({"action": "write", "sql": "DROP TABLE items"}),
        json!({"action": "write", "sql": "UPDATE items SET name = $1", "params": ["x"]}),
    ] {
        let out = call(&tools, &me, "pg_query", args.clone()).await;
        assert_eq!(code(&out), "WRITE_DENIED", "{args}: {out}");
        let hint = error_of(&out)["hint"].as_str().unwrap();
        assert!(hint.contains("session_id") && hint.contains("autocommit: true"), "{out}");
    }
    let out = call(&tools, &me, "pg_query", json!({"action": "write", "sql": "DELETE FROM items"})).await;
    assert_json_snapshot!("write_denied", out);
    assert_eq!(items(&side).await, 20);
    let names = count(&side, "SELECT count(*) FROM items WHERE name LIKE 'item %'").await;
    assert_eq!(names, 20);
    // A read that writes is a read-only violation, pointing at write.
    let out = sessionless_read(&tools, &me, "DELETE FROM items").await;
    assert_eq!(code(&out), "READ_ONLY_VIOLATION", "{out}");
    assert!(error_of(&out)["hint"].as_str().unwrap().contains("write"), "{out}");
    assert_eq!(items(&side).await, 20);
}

#[tokio::test]
async fn write_with_autocommit_persists_and_returns_rows() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({
            "action": "write",
            "sql": "INSERT INTO items (id, name, price) VALUES ($1, $2, $3), ($4, $5, NULL) RETURNING id, name, price",
            "params": [21, "twenty-one", "9.99", 22, "twenty-two"],
            "autocommit": true,
        }),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["command"], "INSERT");
    assert_eq!(out["rows_affected"], 2);
    assert_eq!(
        out["rows"],
        json!([
            {"id": 21, "name": "twenty-one", "price": "9.99"},
            {"id": 22, "name": "twenty-two", "price": null},
        ])
    );
    assert!(out.get("session").is_none(), "{out}");
    assert_json_snapshot!("write_autocommit_returning", out, {".duration_ms" => "[ms]"});
    assert_eq!(items(&side).await, 22);
    let out = call(&tools, &me, "pg_query", json!({
        "action": "write", "sql": "UPDATE items SET price = price * 2 WHERE id <= $1", "params": [5], "autocommit": true,
    }))
    .await;
    assert_eq!(out["command"], "UPDATE");
    assert_eq!(out["rows_affected"], 5);
    assert_eq!(out["rows"], json!([]));
    assert_eq!(count(&side, "SELECT (price * 100)::bigint FROM items WHERE id = 5").await, 1500);
    let out = autocommit_write(&tools, &me, "DELETE FROM items WHERE id > 20").await;
    assert_eq!(out["rows_affected"], 2);
    assert_eq!(items(&side).await, 20);
    // RETURNING is capped by max_rows, but the write completes.
    let out = call(&tools, &me, "pg_query", json!({
        "action": "write", "sql": "UPDATE items SET name = upper(name) RETURNING id", "autocommit": true, "max_rows": 3,
    }))
    .await;
    assert_eq!(out["row_count"], 3, "{out}");
    assert_eq!(out["truncated"], true);
    assert_eq!(count(&side, "SELECT count(*) FROM items WHERE name LIKE 'ITEM %'").await, 20);
    // DDL with autocommit.
    let out = autocommit_write(&tools, &me, "CREATE TABLE extra (a int)").await;
    assert_eq!(out["command"], "CREATE TABLE", "{out}");
    assert_eq!(count(&side, "SELECT count(*) FROM pg_tables WHERE tablename = 'extra'").await, 1);
}

#[tokio::test]
async fn write_refuses_transaction_control_and_session_state_on_the_pool() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    for sql in [
        "COMMIT",
        "BEGIN",
        "ROLLBACK",
        "SAVEPOINT a",
        "DELETE FROM items; COMMIT",
        "DO $$BEGIN DELETE FROM items; END$$",
    ] {
        let out = autocommit_write(&tools, &me, sql).await;
        assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{sql}: {out}");
    }
    for sql in ["SET search_path = evil", "SELECT pg_advisory_lock(1)", "CREATE TEMP TABLE tt (a int)"] {
        let out = autocommit_write(&tools, &me, sql).await;
        assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{sql}: {out}");
        assert!(error_of(&out)["hint"].as_str().unwrap().contains("session"), "{out}");
    }
    for sql in ["COPY items TO PROGRAM 'cat'", "COPY items FROM STDIN"] {
        let out = autocommit_write(&tools, &me, sql).await;
        assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{sql}: {out}");
    }
    assert_eq!(items(&side).await, 20);
    assert_eq!(count(&side, ADVISORY_LOCKS).await, 0);
}

#[tokio::test]
async fn vacuum_runs_with_autocommit_and_is_refused_in_a_session() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let out = autocommit_write(&tools, &me, "VACUUM (ANALYZE) items").await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["command"], "VACUUM");
    let vacuumed = count(
        &side,
        "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'items' AND (last_vacuum IS NOT NULL OR vacuum_count > 0)",
    )
    .await;
    // The statistics collector may lag a little; poll briefly.
    let mut vacuumed = vacuumed;
    for _ in 0..20 {
        if vacuumed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        side.batch_execute("SELECT pg_stat_clear_snapshot()").await.unwrap();
        vacuumed =
            count(&side, "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'items' AND vacuum_count > 0").await;
    }
    assert_eq!(vacuumed, 1, "VACUUM did not run");
    // Without consent it is denied; in a session it cannot run.
    let out = call(&tools, &me, "pg_query", json!({"action": "write", "sql": "VACUUM items"})).await;
    assert_eq!(code(&out), "WRITE_DENIED", "{out}");
    let id = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    for sql in ["VACUUM items", "CREATE INDEX CONCURRENTLY items_name ON items (name)"] {
        let out = call(&tools, &me, "pg_query", json!({"action": "write", "sql": sql, "session_id": id})).await;
        assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{sql}: {out}");
        assert!(error_of(&out)["hint"].as_str().unwrap().contains("autocommit: true"), "{out}");
    }
    let out = call(&tools, &me, "pg_query", json!({"action": "write", "sql": "VACUUM items", "session_id": id})).await;
    assert_json_snapshot!("vacuum_in_session", out);
    // The session was not touched: still usable and idle.
    let status = call(&tools, &me, "pg_tx", json!({"action": "status", "session_id": id})).await;
    assert_eq!(status["transaction_state"], "idle", "{status}");
    assert_eq!(status["statements"], 0, "{status}");
    let out = call(&tools, &me, "pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(out["status"], "committed", "{out}");
    assert_eq!(count(&side, "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_name'").await, 0);
}

#[tokio::test]
async fn explain_formats_and_analyze() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "explain", "sql": "SELECT * FROM items WHERE id = $1", "params": [3]}),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert!(out["plan"].is_array(), "{out}");
    assert!(out["summary"]["total_cost"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out["summary"]["node"].is_string(), "{out}");
    assert_eq!(out["summary"]["actual_rows"], Value::Null, "no ANALYZE, no actual rows: {out}");

    let out =
        call(&tools, &me, "pg_query", json!({"action": "explain", "sql": "SELECT * FROM items", "format": "text"}))
            .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert!(out["plan"].as_str().unwrap().contains("Seq Scan on items"), "{out}");
    assert!(out["summary"]["total_cost"].as_f64().is_some(), "{out}");
    assert!(out["summary"]["estimated_rows"].as_u64().is_some(), "{out}");

    let out = call(&tools, &me, "pg_query", json!({"action": "explain", "sql": "SELECT count(*) FROM items", "analyze": true, "buffers": true, "verbose": true})).await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["summary"]["actual_rows"], 1, "{out}");
    assert!(out["summary"]["execution_time_ms"].as_f64().is_some(), "{out}");
    assert!(out["plan"][0]["Plan"].get("Shared Hit Blocks").is_some(), "BUFFERS was asked for: {out}");

    // Plain EXPLAIN of DML plans without executing.
    let out = call(&tools, &me, "pg_query", json!({"action": "explain", "sql": "DELETE FROM items"})).await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["summary"]["node"], "ModifyTable", "{out}");
    assert_eq!(items(&side).await, 20);

    // ANALYZE of DML executes it: refused without a session, with a hint to use one.
    let out =
        call(&tools, &me, "pg_query", json!({"action": "explain", "sql": "DELETE FROM items", "analyze": true})).await;
    assert_eq!(code(&out), "WRITE_DENIED", "{out}");
    assert!(error_of(&out)["hint"].as_str().unwrap().contains("pg_tx begin"), "{out}");
    assert_eq!(items(&side).await, 20);

    // In a session it runs there, and a rollback undoes it.
    let id = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "explain", "sql": "DELETE FROM items WHERE id <= 5", "analyze": true, "session_id": id}),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["session"]["id"], id.as_str());
    let inside = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT count(*) AS n FROM items", "session_id": id}),
    )
    .await;
    assert_eq!(inside["rows"][0]["n"], 15, "{inside}");
    assert_eq!(items(&side).await, 20, "uncommitted work is invisible outside");
    let out = call(&tools, &me, "pg_tx", json!({"action": "rollback", "session_id": id})).await;
    assert_eq!(out["status"], "rolled_back");
    assert_eq!(items(&side).await, 20);

    // Argument errors.
    let out = call(&tools, &me, "pg_query", json!({"action": "explain", "sql": "EXPLAIN SELECT 1"})).await;
    assert_eq!(code(&out), "INVALID_ARGUMENT", "{out}");
    let out = call(&tools, &me, "pg_query", json!({"action": "explain", "sql": "SELECT 1", "format": "yaml"})).await;
    assert_eq!(code(&out), "INVALID_ARGUMENT", "{out}");
    let out = call(&tools, &me, "pg_query", json!({"action": "explain", "sql": "VACUUM items"})).await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{out}");
}

#[tokio::test]
async fn transaction_batch_commits_atomically() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({
            "action": "transaction",
            "autocommit": true,
            "isolation_level": "SERIALIZABLE",
            "operations": [
                {"sql": "INSERT INTO items VALUES ($1, $2, 1) RETURNING id", "params": [100, "hundred"]},
                {"sql": "UPDATE items SET price = 0 WHERE id = $1", "params": [100]},
                {"sql": "SELECT count(*) AS n FROM items"},
            ],
        }),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["committed"], true);
    assert_eq!(out["isolation_level"], "serializable");
    assert_eq!(out["results"][0]["rows"], json!([{"id": 100}]));
    assert_eq!(out["results"][1]["rows_affected"], 1);
    assert_eq!(out["results"][2]["rows"][0]["n"], 21);
    assert_json_snapshot!("transaction_committed", out, {".results[].duration_ms" => "[ms]"});
    assert_eq!(count(&side, "SELECT count(*) FROM items WHERE id = 100 AND price = 0").await, 1);

    // A failing operation rolls everything back and names its index.
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({
            "action": "transaction",
            "autocommit": true,
            "operations": [
                {"sql": "INSERT INTO items VALUES (101, 'a', 1)"},
                {"sql": "DELETE FROM items WHERE id <= 10"},
                {"sql": "INSERT INTO items VALUES (100, 'duplicate', 1)"},
                {"sql": "INSERT INTO items VALUES (102, 'c', 1)"},
            ],
        }),
    )
    .await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert_eq!(error_of(&out)["operation_index"], 2, "{out}");
    assert_eq!(error_of(&out)["sqlstate"], "23505", "{out}");
    assert_json_snapshot!("transaction_failed", out);
    assert_eq!(items(&side).await, 21, "nothing of the failed batch was committed");
    assert_eq!(count(&side, "SELECT count(*) FROM items WHERE id IN (101, 102)").await, 0);

    // A refused operation is found before anything is sent.
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({
            "action": "transaction", "autocommit": true,
            "operations": [{"sql": "DELETE FROM items"}, {"sql": "COMMIT"}],
        }),
    )
    .await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{out}");
    assert_eq!(error_of(&out)["operation_index"], 1, "{out}");
    assert_eq!(items(&side).await, 21);

    // Without autocommit a writing batch is denied.
    let out =
        call(&tools, &me, "pg_query", json!({"action": "transaction", "operations": [{"sql": "DELETE FROM items"}]}))
            .await;
    assert_eq!(code(&out), "WRITE_DENIED", "{out}");
    assert_eq!(items(&side).await, 21);
}

#[tokio::test]
async fn read_only_transaction_batch_needs_no_consent_and_cannot_write() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let out = call(&tools, &me, "pg_query", json!({
        "action": "transaction", "read_only": true, "isolation_level": "repeatable_read",
        "operations": [{"sql": "SELECT count(*) AS n FROM items"}, {"sql": "SELECT max(id) AS m FROM items WHERE id < $1", "params": [10]}],
    }))
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["committed"], false);
    assert_eq!(out["read_only"], true);
    assert_eq!(out["results"][0]["rows"][0]["n"], 20);
    assert_eq!(out["results"][1]["rows"][0]["m"], 9);
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({
            "action": "transaction", "read_only": true,
            "operations": [{"sql": "SELECT 1"}, {"sql": "DELETE FROM items"}],
        }),
    )
    .await;
    assert_eq!(code(&out), "READ_ONLY_VIOLATION", "{out}");
    assert_eq!(error_of(&out)["operation_index"], 1);
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({
            "action": "transaction", "read_only": true,
            "operations": [{"sql": "SELECT nextval('x')"}],
        }),
    )
    .await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{out}");
    assert_eq!(items(&side).await, 20);
}

#[tokio::test]
async fn argument_errors_are_invalid_argument_tool_results() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let cases = [
        (json!({"action": "nuke", "sql": "SELECT 1"}), "read"),
        (json!({"sql": "SELECT 1"}), "action"),
        (json!({"action": "read", "sql": "SELECT 1", "bogus": 1}), "bogus"),
        (json!({"action": "read"}), "sql"),
        (json!({"action": "write", "autocommit": true}), "sql"),
        (json!({"action": "read", "sql": "SELECT $1", "params": {"a": 1}}), "params"),
        (json!({"action": "read", "sql": "SELECT $1", "params": "1"}), "params"),
        (json!({"action": "read", "sql": 42}), "sql"),
        (json!({"action": "read", "sql": "SELECT 1", "max_rows": -1}), "max_rows"),
        (json!({"action": "read", "sql": "SELECT 1", "max_rows": 0}), "max_rows"),
        (json!({"action": "read", "sql": "SELECT 1", "timeout_ms": 0}), "timeout_ms"),
        (json!({"action": "read", "sql": "SELECT 1", "autocommit": true}), "autocommit"),
        (json!({"action": "write", "sql": "DELETE FROM items", "autocommit": "yes"}), "autocommit"),
        (json!({"action": "write", "sql": "DELETE FROM items", "autocommit": true, "session_id": "x"}), "session_id"),
        (json!({"action": "transaction"}), "operations"),
        (json!({"action": "transaction", "operations": [], "autocommit": true}), "operations"),
        (json!({"action": "transaction", "operations": [{"sql": "SELECT 1", "x": 1}]}), "x"),
        (
            json!({"action": "transaction", "operations": [{"sql": "SELECT 1"}], "isolation_level": "chaos"}),
            "isolation_level",
        ),
        (json!({"action": "read", "sql": ""}), "sql"),
        (json!({"action": "read", "sql": "  -- only a comment"}), "sql"),
        (json!({"action": "read", "sql": "SELECT 1 \u{0000}"}), "NUL"),
    ];
    for (args, names) in &cases {
        let out = call(&tools, &me, "pg_query", args.clone()).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{args}: {out}");
        let message = error_of(&out)["message"].as_str().unwrap();
        assert!(message.contains(names), "{args}: the message should name {names}: {message}");
    }
    let out = call(&tools, &me, "pg_query", json!({"action": "nuke"})).await;
    for action in ["read", "write", "explain", "transaction"] {
        assert!(error_of(&out)["message"].as_str().unwrap().contains(action), "{out}");
    }
    assert_json_snapshot!("unknown_action", out);
    // More than 1 MiB of SQL is refused before parsing.
    let huge = format!("SELECT 1 -- {}", "x".repeat(1024 * 1024));
    let out = sessionless_read(&tools, &me, &huge).await;
    assert_eq!(code(&out), "INVALID_ARGUMENT", "{}", error_of(&out));
    assert!(error_of(&out)["message"].as_str().unwrap().contains("1048576"), "{}", error_of(&out));
    // An unknown tool is not a tool result.
    assert!(tools.call(&me, "pg_nope", json!({"action": "read"})).await.is_err());
    assert_eq!(items(&side).await, 20);
}

#[tokio::test]
async fn database_errors_carry_sqlstate_and_leave_the_pool_usable() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db).await;
    let out = sessionless_read(&tools, &me, "SELEC 1").await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert_eq!(error_of(&out)["sqlstate"], "42601");
    assert_json_snapshot!("syntax_error", out);
    let out = autocommit_write(&tools, &me, "INSERT INTO items VALUES (").await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert_eq!(error_of(&out)["sqlstate"], "42601");
    // Wrong parameter types are PostgreSQL's errors, with their SQLSTATE.
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT * FROM items WHERE id = $1", "params": ["abc"]}),
    )
    .await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert_eq!(error_of(&out)["sqlstate"], "22P02", "{out}");
    let out = call(&tools, &me, "pg_query", json!({"action": "write", "sql": "UPDATE items SET price = $1 WHERE id = 1", "params": [true], "autocommit": true})).await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert_eq!(error_of(&out)["sqlstate"], "22P02", "{out}");
    let out = sessionless_read(&tools, &me, "SELECT missing FROM items").await;
    assert_eq!(error_of(&out)["sqlstate"], "42703");
    assert_eq!(error_of(&out)["position"], 8);
    let out = sessionless_read(&tools, &me, "SELECT * FROM nowhere").await;
    assert_eq!(error_of(&out)["sqlstate"], "42P01");
    assert!(error_of(&out)["hint"].as_str().unwrap().contains("pg_schema"), "{out}");
    // Parameter count mismatch, and a NUL byte inside a parameter.
    let out =
        call(&tools, &me, "pg_query", json!({"action": "read", "sql": "SELECT $1::int + $2::int", "params": [1]}))
            .await;
    assert_eq!(code(&out), "INVALID_ARGUMENT", "{out}");
    assert!(error_of(&out)["message"].as_str().unwrap().contains("params"), "{out}");
    let out =
        call(&tools, &me, "pg_query", json!({"action": "read", "sql": "SELECT $1::text", "params": ["a\u{0000}b"]}))
            .await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert_eq!(error_of(&out)["sqlstate"], "22021", "{out}");
    // Constraint violations on write.
    let out = autocommit_write(&tools, &me, "INSERT INTO items VALUES (1, 'dup', 1)").await;
    assert_eq!(error_of(&out)["sqlstate"], "23505", "{out}");
    assert!(error_of(&out)["detail"].as_str().unwrap().contains("(id)=(1)"), "{out}");
    let out = autocommit_write(&tools, &me, "INSERT INTO items (id) VALUES (50)").await;
    assert_eq!(error_of(&out)["sqlstate"], "23502", "{out}");
    // The pool is fine, and nothing is left open.
    let out = sessionless_read(&tools, &me, "SELECT count(*) AS n FROM items").await;
    assert_eq!(out["rows"][0]["n"], 20);
    let open = count(
        &side,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .await;
    assert_eq!(open, 0);
    assert_eq!(items(&side).await, 20);
}

#[tokio::test]
async fn pool_exhaustion_is_unavailable_not_a_hang() {
    let db = test_db().await;
    let side = db.client().await;
    let options = coldquery_pg::PgOptions { pool_size: 1, acquire_timeout: Duration::from_millis(300), ..options() };
    let (tools, _database) = tools(&db, &options, ToolConfig::default(), false).await;
    let me = caller("query");
    let busy = {
        let (tools, me) = (tools.clone(), me.clone());
        tokio::spawn(async move { sessionless_read(&tools, &me, "SELECT pg_sleep(2)").await })
    };
    // Wait until the sleeper holds the only pooled connection.
    for _ in 0..50 {
        if count(&side, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(2)%' AND state = 'active'").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let out = sessionless_read(&tools, &me, "SELECT 1").await;
    assert_eq!(code(&out), "UNAVAILABLE", "{out}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // Sessions have their own connections: begin still works while the pool is exhausted.
    let begun = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
    assert_eq!(code(&begun), "ok", "{begun}");
    let out = busy.await.unwrap();
    assert_eq!(code(&out), "ok", "{out}");
    let out = sessionless_read(&tools, &me, "SELECT 1 AS one").await;
    assert_eq!(out["rows"][0]["one"], 1, "the pool recovers");
    let id = begun["session_id"].as_str().unwrap();
    assert_eq!(
        call(&tools, &me, "pg_tx", json!({"action": "rollback", "session_id": id})).await["status"],
        "rolled_back"
    );
}

/// Syntax errors are found before anything is sent, yet carry the position PostgreSQL itself
/// reports (the server is the oracle: `prepare` parses without executing).
#[tokio::test]
async fn syntax_error_positions_match_the_server() {
    let db = test_db().await;
    let side = db.client().await;
    let (tools, _database) = tools(&db, &options(), ToolConfig::default(), false).await;
    let me = caller("syntax");
    for sql in [
        "SELEC 1",
        "SELECT 1 FROM pg_class WHERE oid = = 1",
        "SELECT (1 + 2",
        "SELECT 'é' || 'è' FROM FROM pg_class",
        "SELECT 1,\n  2 3",
        "WITH x AS (SELECT 1) SELEC * FROM x",
    ] {
        let server = side.prepare(sql).await.expect_err("invalid SQL");
        let server = server.as_db_error().expect("a server error");
        let expected = match server.position() {
            Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
            other => panic!("{sql}: unexpected position {other:?}"),
        };
        let out = sessionless_read(&tools, &me, sql).await;
        assert_eq!(out["error"]["sqlstate"], "42601", "{sql}: {out}");
        assert_eq!(out["error"]["position"].as_u64().map(|p| p as u32), expected, "{sql}: {out}");
    }
}
