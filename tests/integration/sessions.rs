//! `pg_tx` sessions through the tools against the real PostgreSQL (SPEC §4): honest commits,
//! rollbacks, TTL expiry, aborted transactions, savepoints, isolation, ownership, limits,
//! busy sessions, lost connections, and no state leaking to the connection's next user —
//! each outcome checked on the database through a side connection.

use std::time::{Duration, Instant};

use coldquery_core::Owner;
use coldquery_pg::PgOptions;
use coldquery_tests::harness::{TestDb, test_db};
use coldquery_tools::{Caller, ToolConfig, Tools};
use insta::assert_json_snapshot;
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::support::{
    ADVISORY_LOCKS, autocommit_write, begin, call, caller, code, count, options, sessionless_read, tools,
};

async fn setup(db: &TestDb, options: &PgOptions) -> (Client, Tools, coldquery_pg::Database, Caller) {
    let side = db.client().await;
    side.batch_execute("CREATE TABLE t (id int PRIMARY KEY, note text)").await.expect("fixture");
    let (tools, database) = tools(db, options, ToolConfig::default(), false).await;
    (side, tools, database, caller("alice"))
}

async fn tx(tools: &Tools, me: &Caller, action: &str, id: &str) -> Value {
    call(tools, me, "pg_tx", json!({"action": action, "session_id": id})).await
}

async fn write(tools: &Tools, me: &Caller, id: &str, sql: &str) -> Value {
    call(tools, me, "pg_query", json!({"action": "write", "sql": sql, "session_id": id})).await
}

/// A write in the session that must succeed.
async fn write_ok(tools: &Tools, me: &Caller, id: &str, sql: &str) {
    let out = write(tools, me, id, sql).await;
    assert_eq!(code(&out), "ok", "{sql}: {out}");
}

async fn read(tools: &Tools, me: &Caller, id: &str, sql: &str) -> Value {
    call(tools, me, "pg_query", json!({"action": "read", "sql": sql, "session_id": id})).await
}

async fn rows(side: &Client) -> i64 {
    count(side, "SELECT count(*) FROM t").await
}

async fn ids(side: &Client) -> Vec<i32> {
    side.query("SELECT id FROM t ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

/// The backend pid of a session's connection.
async fn session_pid(tools: &Tools, me: &Caller, id: &str) -> i32 {
    let out = read(tools, me, id, "SELECT pg_backend_pid() AS pid").await;
    i32::try_from(out["rows"][0]["pid"].as_i64().unwrap_or_else(|| panic!("{out}"))).unwrap()
}

#[tokio::test]
async fn begin_write_commit_is_visible_only_after_commit() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    let out = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
    assert_eq!(code(&out), "ok", "{out}");
    let id = out["session_id"].as_str().unwrap().to_owned();
    assert!(id.len() >= 32, "a session id carries at least 128 random bits: {id}");
    assert_eq!(out["isolation_level"], "read_committed");
    assert_eq!(out["read_only"], false);
    assert_eq!(out["transaction_state"], "idle");
    assert_eq!(out["session"]["expires_in_seconds"], 1800);
    assert_json_snapshot!("begin", out, {
        ".session_id" => "[id]", ".session.id" => "[id]", ".age_seconds" => "[s]", ".idle_seconds" => "[s]",
    });

    let out = write(&tools, &me, &id, "INSERT INTO t VALUES (1, 'one'), (2, 'two')").await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["rows_affected"], 2);
    assert_eq!(out["session"]["id"], id.as_str());
    assert_eq!(out["session"]["transaction_state"], "idle");
    assert!(out["session"]["expires_in_seconds"].as_u64().unwrap() > 1700);
    assert!(out["session"].get("warning").is_none(), "{out}");
    assert_json_snapshot!("write_in_session", out, {".duration_ms" => "[ms]", ".session.id" => "[id]"});
    assert_eq!(rows(&side).await, 0, "uncommitted rows are invisible to others");
    let sessionless = sessionless_read(&tools, &me, "SELECT count(*) AS n FROM t").await;
    assert_eq!(sessionless["rows"][0]["n"], 0, "and to sessionless reads");
    let inside = read(&tools, &me, &id, "SELECT count(*) AS n FROM t").await;
    assert_eq!(inside["rows"][0]["n"], 2, "{inside}");
    assert_eq!(inside["session"]["id"], id.as_str());
    let explained =
        call(&tools, &me, "pg_query", json!({"action": "explain", "sql": "SELECT * FROM t", "session_id": id})).await;
    assert_eq!(explained["session"]["id"], id.as_str(), "{explained}");

    let status = tx(&tools, &me, "status", &id).await;
    assert_eq!(status["statements"], 3, "{status}");
    let out = tx(&tools, &me, "commit", &id).await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["status"], "committed");
    assert_json_snapshot!("commit", out, {".session_id" => "[id]"});
    assert_eq!(ids(&side).await, [1, 2]);
    // The session is over.
    for action in ["commit", "rollback", "status"] {
        assert_eq!(code(&tx(&tools, &me, action, &id).await), "SESSION_NOT_FOUND", "{action}");
    }
    assert_eq!(code(&write(&tools, &me, &id, "DELETE FROM t").await), "SESSION_NOT_FOUND");
    assert_eq!(rows(&side).await, 2);
}

#[tokio::test]
async fn rollback_leaves_nothing() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    let id = begin(&tools, &me, json!({})).await;
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (1, 'x')").await;
    write_ok(&tools, &me, &id, "CREATE TABLE u (a int)").await;
    let out = tx(&tools, &me, "rollback", &id).await;
    assert_eq!(out["status"], "rolled_back", "{out}");
    assert_eq!(out["statements"], 2);
    assert_eq!(rows(&side).await, 0);
    assert_eq!(count(&side, "SELECT count(*) FROM pg_tables WHERE tablename = 'u'").await, 0);
    assert_eq!(code(&tx(&tools, &me, "status", &id).await), "SESSION_NOT_FOUND");
    // Closing an owner's sessions (client disconnect) rolls them back too.
    let a = begin(&tools, &me, json!({})).await;
    let b = begin(&tools, &me, json!({})).await;
    write_ok(&tools, &me, &a, "INSERT INTO t VALUES (10, 'a')").await;
    write_ok(&tools, &me, &b, "INSERT INTO t VALUES (11, 'b')").await;
    let other = caller("bob");
    let theirs = begin(&tools, &other, json!({})).await;
    assert_eq!(tools.sessions().close_owner(&Owner::new("alice")).await, 2);
    assert_eq!(rows(&side).await, 0);
    assert_eq!(code(&tx(&tools, &me, "status", &a).await), "SESSION_NOT_FOUND");
    assert_eq!(tx(&tools, &other, "status", &theirs).await["transaction_state"], "idle", "bob's session is untouched");
    let idle_in_tx = count(
        &side,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .await;
    assert_eq!(idle_in_tx, 1, "only bob's session holds a transaction");
    assert_eq!(tools.sessions().close_all().await, 1);
}

#[tokio::test]
async fn ttl_expiry_rolls_back_and_releases_locks() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &PgOptions { session_ttl: Duration::from_secs(1), ..options() }).await;
    side.batch_execute("INSERT INTO t VALUES (1, 'before')").await.unwrap();
    let id = begin(&tools, &me, json!({})).await;
    let out = write(&tools, &me, &id, "UPDATE t SET note = 'during' WHERE id = 1").await;
    assert_eq!(code(&out), "ok", "{out}");
    // Close to expiry, results warn.
    assert!(out["session"]["warning"].as_str().unwrap().contains("commit soon"), "{out}");
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (2, 'new')").await;
    // Every use renews: calls spaced under the TTL keep it alive.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(code(&read(&tools, &me, &id, "SELECT 1").await), "ok");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for action in ["status", "commit", "rollback"] {
        assert_eq!(code(&tx(&tools, &me, action, &id).await), "SESSION_NOT_FOUND", "{action}");
    }
    let out = read(&tools, &me, &id, "SELECT 1").await;
    assert_eq!(code(&out), "SESSION_NOT_FOUND");
    let listed = call(&tools, &me, "pg_tx", json!({"action": "list"})).await;
    assert_eq!(listed["count"], 0, "{listed}");
    assert_eq!(ids(&side).await, [1]);
    // The row lock is gone: a side update goes ahead at once.
    side.batch_execute("SET lock_timeout = '2s'; UPDATE t SET note = 'after' WHERE id = 1")
        .await
        .expect("lock released");
    let idle_in_tx = count(
        &side,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .await;
    assert_eq!(idle_in_tx, 0);
}

#[tokio::test]
async fn a_failed_statement_aborts_and_commit_reports_the_rollback() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    let id = begin(&tools, &me, json!({})).await;
    assert_eq!(code(&write(&tools, &me, &id, "INSERT INTO t VALUES (1, 'kept?')").await), "ok");
    let out = write(&tools, &me, &id, "INSERT INTO t VALUES (1, 'duplicate')").await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert_eq!(out["error"]["sqlstate"], "23505");
    assert!(out["error"]["hint"].as_str().unwrap().contains("aborted"), "{out}");
    let status = tx(&tools, &me, "status", &id).await;
    assert_eq!(status["transaction_state"], "aborted", "{status}");
    // Further statements are refused without being sent.
    let out = read(&tools, &me, &id, "SELECT 1").await;
    assert_eq!(code(&out), "SESSION_ABORTED", "{out}");
    assert!(out["error"]["hint"].as_str().unwrap().contains("rollback"), "{out}");
    assert_json_snapshot!("session_aborted", out);
    let out = call(&tools, &me, "pg_tx", json!({"action": "savepoint", "session_id": id, "name": "late"})).await;
    assert_eq!(code(&out), "SESSION_ABORTED", "{out}");
    let out = tx(&tools, &me, "commit", &id).await;
    assert_eq!(code(&out), "COMMIT_FAILED", "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("rolled back"), "{out}");
    assert_json_snapshot!("commit_failed_after_error", out);
    assert_eq!(rows(&side).await, 0, "nothing was committed");
    assert_eq!(code(&tx(&tools, &me, "status", &id).await), "SESSION_NOT_FOUND");
}

#[tokio::test]
async fn commit_failing_in_postgresql_is_commit_failed() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    side.batch_execute(
        "CREATE TABLE d (a int, CONSTRAINT d_a UNIQUE (a) DEFERRABLE INITIALLY DEFERRED);
         INSERT INTO d VALUES (1);",
    )
    .await
    .unwrap();
    let id = begin(&tools, &me, json!({})).await;
    assert_eq!(code(&write(&tools, &me, &id, "INSERT INTO t VALUES (1, 'x')").await), "ok");
    // The deferred check only fails at COMMIT.
    assert_eq!(code(&write(&tools, &me, &id, "INSERT INTO d VALUES (1)").await), "ok");
    let out = tx(&tools, &me, "commit", &id).await;
    assert_eq!(code(&out), "COMMIT_FAILED", "{out}");
    assert_eq!(out["error"]["sqlstate"], "23505", "{out}");
    assert!(out["error"]["message"].as_str().unwrap().starts_with("nothing was committed"), "{out}");
    assert_eq!(rows(&side).await, 0);
    assert_eq!(count(&side, "SELECT count(*) FROM d").await, 1);

    // Serializable write skew: the second commit fails, never reported committed.
    side.batch_execute("INSERT INTO t VALUES (1, 'on'), (2, 'on')").await.unwrap();
    let a = begin(&tools, &me, json!({"isolation_level": "serializable"})).await;
    let b = begin(&tools, &me, json!({"isolation_level": "SERIALIZABLE"})).await;
    for (id, row) in [(&a, 1), (&b, 2)] {
        let out = read(&tools, &me, id, "SELECT count(*) AS n FROM t WHERE note = 'on'").await;
        assert_eq!(out["rows"][0]["n"], 2, "{out}");
        let out = call(
            &tools,
            &me,
            "pg_query",
            json!({
                "action": "write", "sql": "UPDATE t SET note = 'off' WHERE id = $1", "params": [row], "session_id": id,
            }),
        )
        .await;
        assert_eq!(code(&out), "ok", "{out}");
    }
    assert_eq!(tx(&tools, &me, "commit", &a).await["status"], "committed");
    let out = tx(&tools, &me, "commit", &b).await;
    assert_eq!(code(&out), "COMMIT_FAILED", "{out}");
    assert_eq!(out["error"]["sqlstate"], "40001", "{out}");
    assert_eq!(count(&side, "SELECT count(*) FROM t WHERE note = 'off'").await, 1);
}

#[tokio::test]
async fn rollback_statement_keeps_the_transaction_usable() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    let id = begin(&tools, &me, json!({"on_error": "rollback_statement"})).await;
    assert_eq!(tx(&tools, &me, "status", &id).await["on_error"], "rollback_statement");
    assert_eq!(code(&write(&tools, &me, &id, "INSERT INTO t VALUES (1, 'a')").await), "ok");
    let out = write(&tools, &me, &id, "INSERT INTO t VALUES (1, 'duplicate'), (2, 'lost with it')").await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert!(out["error"]["hint"].as_str().unwrap().contains("still usable"), "{out}");
    assert_eq!(tx(&tools, &me, "status", &id).await["transaction_state"], "idle");
    // A timeout is undone the same way.
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({
            "action": "read", "sql": "SELECT pg_sleep(10)", "session_id": id, "timeout_ms": 200,
        }),
    )
    .await;
    assert_eq!(code(&out), "TIMEOUT", "{out}");
    assert_eq!(code(&write(&tools, &me, &id, "INSERT INTO t VALUES (3, 'c')").await), "ok");
    let inside = read(&tools, &me, &id, "SELECT count(*) AS n FROM t").await;
    assert_eq!(inside["rows"][0]["n"], 2);
    assert_eq!(tx(&tools, &me, "commit", &id).await["status"], "committed");
    assert_eq!(ids(&side).await, [1, 3]);
}

#[tokio::test]
async fn savepoints_create_release_and_roll_back() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    let id = begin(&tools, &me, json!({})).await;
    let sp = |action: &str, name: &str| json!({"action": action, "session_id": id, "name": name});
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (1, 'a')").await;
    let out = call(&tools, &me, "pg_tx", sp("savepoint", "before_two")).await;
    assert_eq!(out["status"], "created", "{out}");
    assert_eq!(out["session"]["id"], id.as_str());
    assert_json_snapshot!("savepoint", out, {".session.id" => "[id]"});
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (2, 'b')").await;
    let out = call(&tools, &me, "pg_tx", sp("rollback_to", "before_two")).await;
    assert_eq!(out["status"], "rolled_back_to", "{out}");
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (3, 'c')").await;
    // rollback_to recovers an aborted transaction.
    call(&tools, &me, "pg_tx", sp("savepoint", "Mixed Case")).await;
    assert_eq!(code(&write(&tools, &me, &id, "INSERT INTO t VALUES (3, 'dup')").await), "DATABASE_ERROR");
    assert_eq!(code(&read(&tools, &me, &id, "SELECT 1").await), "SESSION_ABORTED");
    let out = call(&tools, &me, "pg_tx", sp("rollback_to", "Mixed Case")).await;
    assert_eq!(out["status"], "rolled_back_to", "{out}");
    assert_eq!(out["session"]["transaction_state"], "idle", "{out}");
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (4, 'd')").await;
    let out = call(&tools, &me, "pg_tx", sp("release", "before_two")).await;
    assert_eq!(out["status"], "released", "{out}");
    // Releasing before_two also released the later "Mixed Case", as in PostgreSQL.
    for (action, name) in
        [("release", "Mixed Case"), ("rollback_to", "before_two"), ("rollback_to", "nope"), ("release", "mixed case")]
    {
        let out = call(&tools, &me, "pg_tx", sp(action, name)).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{action} {name}: {out}");
        assert!(out["error"]["message"].as_str().unwrap().contains("no savepoint named"), "{out}");
    }
    assert_eq!(tx(&tools, &me, "status", &id).await["transaction_state"], "idle", "unknown names were not sent");
    // A name is an identifier, quoted: it cannot smuggle SQL.
    let out = call(&tools, &me, "pg_tx", sp("savepoint", "x\"; COMMIT; --")).await;
    assert_eq!(code(&out), "ok", "a quoted identifier: {out}");
    assert_eq!(rows(&side).await, 0, "nothing is committed by a savepoint name");
    for bad in ["", "a\u{0000}b", &"n".repeat(64)] {
        let out = call(&tools, &me, "pg_tx", sp("savepoint", bad)).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{bad:?}: {out}");
    }
    // ColdQuery's own savepoints' names: a caller's would be rolled back or released in their
    // place.
    for (action, name) in
        [("savepoint", "coldquery_statement"), ("savepoint", "coldquery_guard"), ("rollback_to", "coldquery_preview")]
    {
        let out = call(&tools, &me, "pg_tx", sp(action, name)).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{action} {name}: {out}");
        assert!(out["error"]["message"].as_str().unwrap().contains("reserved"), "{out}");
    }
    let out = call(&tools, &me, "pg_tx", json!({"action": "savepoint", "session_id": id})).await;
    assert_eq!(code(&out), "INVALID_ARGUMENT");
    assert!(out["error"]["message"].as_str().unwrap().contains("'name'"), "{out}");
    assert_eq!(tx(&tools, &me, "commit", &id).await["status"], "committed");
    assert_eq!(ids(&side).await, [1, 3, 4]);
}

#[tokio::test]
async fn read_committed_and_repeatable_read_see_different_snapshots() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    side.batch_execute("INSERT INTO t VALUES (1, 'old')").await.unwrap();
    let rc = begin(&tools, &me, json!({"isolation_level": "read_committed"})).await;
    let rr = begin(&tools, &me, json!({"isolation_level": "REPEATABLE READ"})).await;
    assert_eq!(tx(&tools, &me, "status", &rr).await["isolation_level"], "repeatable_read");
    let n = |out: Value| out["rows"][0]["n"].as_i64().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(n(read(&tools, &me, &rc, "SELECT count(*) AS n FROM t").await), 1);
    assert_eq!(n(read(&tools, &me, &rr, "SELECT count(*) AS n FROM t").await), 1);
    side.batch_execute("INSERT INTO t VALUES (2, 'new'); UPDATE t SET note = 'changed' WHERE id = 1").await.unwrap();
    assert_eq!(n(read(&tools, &me, &rc, "SELECT count(*) AS n FROM t").await), 2, "read committed sees the commit");
    assert_eq!(n(read(&tools, &me, &rr, "SELECT count(*) AS n FROM t").await), 1, "repeatable read keeps its snapshot");
    let note = read(&tools, &me, &rr, "SELECT note FROM t WHERE id = 1").await;
    assert_eq!(note["rows"][0]["note"], "old");
    // Sessions do not see each other's uncommitted work.
    write_ok(&tools, &me, &rc, "INSERT INTO t VALUES (3, 'rc')").await;
    assert_eq!(n(read(&tools, &me, &rr, "SELECT count(*) AS n FROM t WHERE id = 3").await), 0);
    let out = write(&tools, &me, &rr, "UPDATE t SET note = 'rr' WHERE id = 1").await;
    assert_eq!(code(&out), "DATABASE_ERROR", "a repeatable-read update of a changed row fails: {out}");
    assert_eq!(out["error"]["sqlstate"], "40001");
    assert_eq!(tx(&tools, &me, "commit", &rc).await["status"], "committed");
    assert_eq!(code(&tx(&tools, &me, "commit", &rr).await), "COMMIT_FAILED");
    assert_eq!(ids(&side).await, [1, 2, 3]);
    assert_eq!(count(&side, "SELECT count(*) FROM t WHERE note = 'rr'").await, 0);
}

#[tokio::test]
async fn session_state_does_not_leak_to_the_next_user() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &PgOptions { max_sessions: 1, ..options() }).await;
    let other = caller("bob");
    for end in ["commit", "rollback"] {
        let id = begin(&tools, &me, json!({})).await;
        let pid = session_pid(&tools, &me, &id).await;
        for sql in [
            "SET search_path = evil, public",
            "SET work_mem = '64kB'",
            "SELECT set_config('coldquery.test', 'leaked', false)",
            "SET application_name = 'leaky'",
            "CREATE TEMP TABLE scratch (a int)",
            "SELECT pg_advisory_lock(4242)",
            "SELECT pg_advisory_lock_shared(4343)",
            "CREATE TEMP SEQUENCE tseq",
        ] {
            let out = write(&tools, &me, &id, sql).await;
            assert_eq!(code(&out), "ok", "{sql}: {out}");
        }
        let locks = count(&side, ADVISORY_LOCKS).await;
        assert_eq!(locks, 2, "the session holds its advisory locks");
        let out = tx(&tools, &me, end, &id).await;
        assert_eq!(code(&out), "ok", "{end}: {out}");

        // The next session (another caller) gets the same connection, clean.
        let next = begin(&tools, &other, json!({})).await;
        assert_eq!(session_pid(&tools, &other, &next).await, pid, "the connection is reused after a clean {end}");
        let out = read(
            &tools,
            &other,
            &next,
            "SELECT current_setting('search_path') AS search_path, current_setting('work_mem') AS work_mem,
                    coalesce(current_setting('coldquery.test', true), '') AS custom,
                    current_setting('application_name') AS app,
                    to_regclass('scratch') IS NULL AS no_temp_table,
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks,
                    (SELECT count(*) FROM pg_prepared_statements WHERE from_sql) AS prepared,
                    (SELECT count(*) FROM pg_listening_channels()) AS listening",
        )
        .await;
        let row = &out["rows"][0];
        assert_eq!(row["search_path"], "\"$user\", public", "{end}: {out}");
        assert_eq!(row["work_mem"], "4MB", "{end}: {out}");
        assert_eq!(row["custom"], "", "{end}: {out}");
        assert_eq!(row["app"], "coldquery", "{end}: {out}");
        assert_eq!(row["no_temp_table"], true, "{end}: {out}");
        assert_eq!(row["locks"], 0, "{end}: {out}");
        assert_eq!(row["prepared"], 0, "{end}: {out}");
        assert_eq!(row["listening"], 0, "{end}: {out}");
        let out = read(&tools, &other, &next, "SELECT currval('tseq')").await;
        assert_ne!(code(&out), "ok", "the temp sequence is gone: {out}");
        assert_eq!(tx(&tools, &other, "rollback", &next).await["status"], "rolled_back");
        assert_eq!(count(&side, ADVISORY_LOCKS).await, 0, "{end}");
    }
    // The sessionless pool was never touched by any of it.
    let out = sessionless_read(&tools, &me, "SELECT current_setting('search_path') AS p").await;
    assert_eq!(out["rows"][0]["p"], "\"$user\", public");
}

#[tokio::test]
async fn sessions_are_bound_to_their_owner() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    let id = begin(&tools, &me, json!({})).await;
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (1, 'alice')").await;
    let bob = caller("bob");
    let unknown = tx(&tools, &bob, "status", "cqs_00000000000000000000000000000000").await;
    assert_eq!(code(&unknown), "SESSION_NOT_FOUND");
    let attempts = [
        json!({"action": "status", "session_id": id}),
        json!({"action": "commit", "session_id": id}),
        json!({"action": "rollback", "session_id": id}),
        json!({"action": "savepoint", "session_id": id, "name": "b"}),
        json!({"action": "rollback_to", "session_id": id, "name": "b"}),
    ];
    for args in attempts {
        let out = call(&tools, &bob, "pg_tx", args.clone()).await;
        assert_eq!(out, unknown, "{args}: another owner's session looks exactly like an unknown one");
    }
    for args in [
        json!({"action": "read", "sql": "SELECT * FROM t", "session_id": id}),
        json!({"action": "write", "sql": "DELETE FROM t", "session_id": id}),
        json!({"action": "explain", "sql": "SELECT 1", "session_id": id}),
    ] {
        let out = call(&tools, &bob, "pg_query", args.clone()).await;
        assert_eq!(out, unknown, "{args}");
    }
    let listed = call(&tools, &bob, "pg_tx", json!({"action": "list"})).await;
    assert_eq!(listed["count"], 0, "{listed}");
    assert_eq!(listed["sessions"], json!([]));
    assert_json_snapshot!("session_not_found", unknown);
    // Alice's session is intact.
    let status = tx(&tools, &me, "status", &id).await;
    assert_eq!(status["transaction_state"], "idle", "{status}");
    assert_eq!(tx(&tools, &me, "commit", &id).await["status"], "committed");
    assert_eq!(ids(&side).await, [1]);
}

#[tokio::test]
async fn the_session_limit_never_starves_sessionless_calls() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(begin(&tools, &me, json!({})).await);
    }
    let out = call(&tools, &caller("bob"), "pg_tx", json!({"action": "begin"})).await;
    assert_eq!(code(&out), "SESSION_LIMIT", "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains('3'), "{out}");
    assert_json_snapshot!("session_limit", out);
    // Sessionless calls still work, several at once.
    let reads = (0..6).map(|i| {
        let (tools, me) = (tools.clone(), me.clone());
        tokio::spawn(async move {
            call(&tools, &me, "pg_query", json!({"action": "read", "sql": "SELECT $1::int AS i", "params": [i]})).await
        })
    });
    for (i, handle) in reads.enumerate() {
        assert_eq!(handle.await.unwrap()["rows"][0]["i"], i as i64);
    }
    let out = autocommit_write(&tools, &me, "INSERT INTO t VALUES (1, 'auto')").await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(rows(&side).await, 1);
    let listed = call(&tools, &me, "pg_tx", json!({"action": "list"})).await;
    assert_eq!(listed["count"], 3);
    assert_eq!(listed["max_sessions"], 3);
    // Ending one frees a slot.
    tx(&tools, &me, "rollback", &open.pop().unwrap()).await;
    let again = begin(&tools, &me, json!({})).await;
    open.push(again);
    assert_eq!(code(&call(&tools, &me, "pg_tx", json!({"action": "begin"})).await), "SESSION_LIMIT");
    for id in open {
        assert_eq!(tx(&tools, &me, "rollback", &id).await["status"], "rolled_back");
    }
}

#[tokio::test]
async fn a_concurrent_call_on_a_busy_session_is_session_busy() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &PgOptions { busy_wait: Duration::from_millis(200), ..options() }).await;
    let id = begin(&tools, &me, json!({})).await;
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (1, 'x')").await;
    let slow = {
        let (tools, me, id) = (tools.clone(), me.clone(), id.clone());
        tokio::spawn(async move { read(&tools, &me, &id, "SELECT pg_sleep(1.5) AS slept").await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(
        &side,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(1.5)%' AND state = 'active'",
    )
    .await
        == 0
    {
        assert!(Instant::now() < deadline, "the slow call never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tx(&tools, &me, "status", &id).await;
    assert_eq!(status["transaction_state"], "active", "{status}");
    let out = read(&tools, &me, &id, "SELECT 1").await;
    assert_eq!(code(&out), "SESSION_BUSY", "{out}");
    assert_json_snapshot!("session_busy", out);
    assert_eq!(code(&tx(&tools, &me, "commit", &id).await), "SESSION_BUSY");
    let out = slow.await.unwrap();
    assert_eq!(code(&out), "ok", "{out}");
    // Once free, the session carries on and commits everything.
    assert_eq!(tx(&tools, &me, "status", &id).await["transaction_state"], "idle");
    assert_eq!(tx(&tools, &me, "commit", &id).await["status"], "committed");
    assert_eq!(rows(&side).await, 1);
}

#[tokio::test]
async fn cancel_and_timeout_abort_the_session_transaction() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    let id = begin(&tools, &me, json!({})).await;
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (1, 'x')").await;
    // The same owner, with a call of its own to cancel.
    let cancelled = caller("alice");
    let token = cancelled.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel();
    });
    let started = Instant::now();
    let out = read(&tools, &cancelled, &id, "SELECT pg_sleep(30)").await;
    assert_eq!(code(&out), "CANCELLED", "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        count(
            &side,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'"
        )
        .await,
        0,
        "the server stopped the statement"
    );
    assert_eq!(tx(&tools, &me, "status", &id).await["transaction_state"], "aborted");
    assert_eq!(code(&read(&tools, &me, &id, "SELECT 1").await), "SESSION_ABORTED");
    assert_eq!(tx(&tools, &me, "rollback", &id).await["status"], "rolled_back");

    let id = begin(&tools, &me, json!({})).await;
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (2, 'y')").await;
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT pg_sleep(30)", "session_id": id, "timeout_ms": 200}),
    )
    .await;
    assert_eq!(code(&out), "TIMEOUT", "{out}");
    let out = tx(&tools, &me, "commit", &id).await;
    assert_eq!(code(&out), "COMMIT_FAILED", "{out}");
    assert_eq!(rows(&side).await, 0);
}

#[tokio::test]
async fn a_killed_backend_loses_the_session_without_reconnecting() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &PgOptions { max_sessions: 1, ..options() }).await;
    let kill = |pid: i32| {
        let side = &side;
        async move {
            side.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while count(side, &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")).await > 0 {
                assert!(Instant::now() < deadline, "backend {pid} did not exit");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // Killed while idle, then a statement: lost, and the session is closed.
    let id = begin(&tools, &me, json!({})).await;
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (1, 'x')").await;
    let pid = session_pid(&tools, &me, &id).await;
    kill(pid).await;
    let out = write(&tools, &me, &id, "INSERT INTO t VALUES (2, 'y')").await;
    assert!(matches!(code(&out).as_str(), "UNAVAILABLE" | "SESSION_ABORTED"), "{out}");
    assert!(out["error"].to_string().contains("lost"), "{out}");
    let out = tx(&tools, &me, "commit", &id).await;
    assert_ne!(code(&out), "ok", "never committed: {out}");
    assert_eq!(rows(&side).await, 0);

    // Killed while idle, then commit: a clear failure, never "committed".
    let id = begin(&tools, &me, json!({})).await;
    let pid2 = session_pid(&tools, &me, &id).await;
    assert_ne!(pid2, pid, "a new connection, not the dead one");
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (3, 'z')").await;
    kill(pid2).await;
    let out = tx(&tools, &me, "commit", &id).await;
    assert_eq!(code(&out), "COMMIT_FAILED", "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("nothing was committed"), "{out}");
    assert_json_snapshot!("commit_after_kill", out);
    assert_eq!(rows(&side).await, 0);

    // Killed during COMMIT (a deferred trigger sleeps): the outcome is unknown.
    side.batch_execute(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
             FOR EACH ROW EXECUTE FUNCTION slow();",
    )
    .await
    .unwrap();
    let id = begin(&tools, &me, json!({})).await;
    let pid3 = session_pid(&tools, &me, &id).await;
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (4, 'w')").await;
    let committing = {
        let (tools, me, id) = (tools.clone(), me.clone(), id.clone());
        tokio::spawn(async move { tx(&tools, &me, "commit", &id).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(
        &side,
        // COMMIT goes after its probe and before the connection's reset, in one message (see
        // reset::end_and_reset).
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid3} AND query LIKE 'SELECT 1; COMMIT;%' AND state = 'active'"
        ),
    )
    .await
        == 0
    {
        assert!(Instant::now() < deadline, "COMMIT never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(pid3).await;
    let out = committing.await.unwrap();
    assert_eq!(code(&out), "COMMIT_OUTCOME_UNKNOWN", "{out}");
    assert_json_snapshot!("commit_outcome_unknown", out);
    assert_eq!(rows(&side).await, 0, "the server rolled the COMMIT back");
    side.batch_execute("DROP TRIGGER slow_commit ON t").await.unwrap();

    // No transparent reconnect, but the next begin works and its slot is free.
    let id = begin(&tools, &me, json!({})).await;
    assert_eq!(code(&write(&tools, &me, &id, "INSERT INTO t VALUES (5, 'v')").await), "ok");
    assert_eq!(tx(&tools, &me, "commit", &id).await["status"], "committed");
    assert_eq!(ids(&side).await, [5]);
}

#[tokio::test]
async fn list_and_status_describe_the_callers_sessions() {
    let db = test_db().await;
    let (_side, tools, _db, me) = setup(&db, &options()).await;
    let a = begin(&tools, &me, json!({})).await;
    let b = begin(
        &tools,
        &me,
        json!({"isolation_level": "serializable", "read_only": true, "deferrable": true, "on_error": "rollback_statement"}),
    )
    .await;
    write_ok(&tools, &me, &a, "INSERT INTO t VALUES (1, 'x')").await;
    let status = tx(&tools, &me, "status", &b).await;
    assert_json_snapshot!("status", status, {
        ".session_id" => "[id]", ".session.id" => "[id]", ".age_seconds" => "[s]", ".idle_seconds" => "[s]",
        ".expires_in_seconds" => "[s]", ".session.expires_in_seconds" => "[s]",
    });
    assert_eq!(status["isolation_level"], "serializable");
    assert_eq!(status["read_only"], true);
    assert_eq!(status["deferrable"], true);
    let listed = call(&tools, &me, "pg_tx", json!({"action": "list"})).await;
    assert_eq!(listed["count"], 2, "{listed}");
    let mut seen: Vec<&str> =
        listed["sessions"].as_array().unwrap().iter().map(|s| s["session_id"].as_str().unwrap()).collect();
    seen.sort_unstable();
    let mut expected = vec![a.as_str(), b.as_str()];
    expected.sort_unstable();
    assert_eq!(seen, expected);
    let first = listed["sessions"].as_array().unwrap().iter().find(|s| s["session_id"] == a.as_str()).unwrap();
    assert_eq!(first["statements"], 1);
    assert_eq!(first["transaction_state"], "idle");
    for key in ["age_seconds", "idle_seconds", "expires_in_seconds", "isolation_level", "read_only", "on_error"] {
        assert!(first.get(key).is_some(), "list shows {key}: {first}");
    }
    // Argument errors of pg_tx.
    for (args, names) in [
        (json!({"action": "commit"}), "session_id"),
        (json!({"action": "status"}), "session_id"),
        (json!({"action": "list", "session_id": a}), "session_id"),
        (json!({"action": "begin", "isolation_level": "chaos"}), "isolation_level"),
        (json!({"action": "begin", "on_error": "ignore"}), "on_error"),
        (json!({"action": "begin", "name": "x"}), "name"),
        (json!({"action": "commit", "session_id": a, "read_only": true}), "read_only"),
        (json!({"action": "fly"}), "begin"),
        (json!({"action": "begin", "typo": 1}), "typo"),
        (json!({"action": "status", "session_id": 5}), "session_id"),
    ] {
        let out = call(&tools, &me, "pg_tx", args.clone()).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{args}: {out}");
        assert!(out["error"]["message"].as_str().unwrap().contains(names), "{args}: {out}");
    }
    assert_eq!(call(&tools, &me, "pg_tx", json!({"action": "list"})).await["count"], 2, "argument errors open nothing");
    tx(&tools, &me, "rollback", &a).await;
    tx(&tools, &me, "rollback", &b).await;
}

#[tokio::test]
async fn a_read_only_session_refuses_writes() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    side.batch_execute("CREATE SEQUENCE s").await.unwrap();
    let id = begin(&tools, &me, json!({"read_only": true})).await;
    assert_eq!(code(&read(&tools, &me, &id, "SELECT count(*) FROM t").await), "ok");
    let out = write(&tools, &me, &id, "INSERT INTO t VALUES (1, 'x')").await;
    assert_eq!(code(&out), "READ_ONLY_VIOLATION", "{out}");
    assert_eq!(out["error"]["sqlstate"], "25006");
    assert_eq!(tx(&tools, &me, "rollback", &id).await["status"], "rolled_back");
    // The transaction cannot be flipped to read-write, by any spelling.
    for flip in [
        "SET TRANSACTION READ WRITE",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET transaction_read_only = off",
        "SET default_transaction_read_only = off",
    ] {
        let id = begin(&tools, &me, json!({"read_only": true})).await;
        let out = write(&tools, &me, &id, flip).await;
        let then = write(&tools, &me, &id, "INSERT INTO t VALUES (2, 'y')").await;
        assert_ne!(code(&then), "ok", "{flip} made the session writable: {out} / {then}");
        let out = tx(&tools, &me, "commit", &id).await;
        assert!(code(&out) == "ok" || code(&out) == "COMMIT_FAILED", "{out}");
    }
    let id = begin(&tools, &me, json!({"read_only": true})).await;
    let out = read(&tools, &me, &id, "SELECT nextval('s')").await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{out}");
    let out = write(&tools, &me, &id, "SELECT nextval('s')").await;
    assert_eq!(code(&out), "READ_ONLY_VIOLATION", "{out}");
    tx(&tools, &me, "rollback", &id).await;
    assert_eq!(rows(&side).await, 0);
    assert_eq!(count(&side, "SELECT count(*) FROM s WHERE is_called").await, 0);

    // In --read-only server mode every session is read-only and writes are denied up front.
    let (ro_tools, _ro_db) = crate::support::tools(&db, &options(), ToolConfig::default(), true).await;
    let out = call(&ro_tools, &me, "pg_tx", json!({"action": "begin"})).await;
    assert_eq!(out["read_only"], true, "{out}");
    let id = out["session_id"].as_str().unwrap().to_owned();
    let out = write(&ro_tools, &me, &id, "INSERT INTO t VALUES (3, 'z')").await;
    assert_eq!(code(&out), "WRITE_DENIED", "{out}");
    assert_eq!(tx(&ro_tools, &me, "status", &id).await["statements"], 0, "nothing was sent");
    tx(&ro_tools, &me, "rollback", &id).await;
    assert_eq!(rows(&side).await, 0);
}

/// A mistake caught before the statement runs (a wrong number of parameters) does not abort
/// the session: the work done so far still commits.
#[tokio::test]
async fn a_parameter_count_mistake_does_not_abort_the_session() {
    let db = test_db().await;
    let (side, tools, _database, me) = setup(&db, &options()).await;
    let id = begin(&tools, &me, json!({})).await;
    assert_eq!(code(&write(&tools, &me, &id, "INSERT INTO t VALUES (1, 'kept')").await), "ok");
    let wrong = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": "INSERT INTO t VALUES ($1, $2)", "params": [2], "session_id": id}),
    )
    .await;
    assert_eq!(code(&wrong), "INVALID_ARGUMENT", "{wrong}");
    let status = tx(&tools, &me, "status", &id).await;
    assert_eq!(status["transaction_state"], "idle", "{status}");
    assert_eq!(tx(&tools, &me, "commit", &id).await["status"], "committed");
    assert_eq!(ids(&side).await, vec![1]);
}

/// Another caller cannot signal the server process of someone else's session.
#[tokio::test]
async fn another_caller_cannot_terminate_a_session_backend() {
    let db = test_db().await;
    let (side, tools, _database, me) = setup(&db, &options()).await;
    let id = begin(&tools, &me, json!({})).await;
    assert_eq!(code(&write(&tools, &me, &id, "INSERT INTO t VALUES (1, 'mine')").await), "ok");
    let pid = session_pid(&tools, &me, &id).await;
    let mallory = caller("mallory");
    let out = call(
        &tools,
        &mallory,
        "pg_admin",
        json!({"action": "terminate", "pid": pid, "mode": "terminate", "autocommit": true}),
    )
    .await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{out}");
    assert_eq!(tx(&tools, &me, "commit", &id).await["status"], "committed");
    assert_eq!(ids(&side).await, vec![1]);
}

/// Load: twelve callers with sessions and sessionless reads at once, 600 to 960 calls in all.
/// Afterwards every session is gone, no backend is left idle in a transaction, and ColdQuery
/// holds no more connections than its two pools allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_leave_no_leaked_connections_or_transactions() {
    let db = test_db().await;
    let opts = PgOptions { max_sessions: 6, pool_size: 8, ..options() };
    let (side, tools, _database, _me) = setup(&db, &opts).await;
    let mut tasks = Vec::new();
    for task in 0..12i64 {
        let tools = tools.clone();
        tasks.push(tokio::spawn(async move {
            let me = caller(&format!("load-{task}"));
            let mut committed = 0;
            for round in 0..10i64 {
                for i in 0..5i64 {
                    let out = call(
                        &tools,
                        &me,
                        "pg_query",
                        json!({"action": "read", "sql": "SELECT $1::int AS n", "params": [i]}),
                    )
                    .await;
                    assert_eq!(out["rows"][0]["n"], i, "{out}");
                }
                // Sessions compete for 6 slots: SESSION_LIMIT is an answer, not a failure.
                let begun = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
                if code(&begun) == "SESSION_LIMIT" {
                    continue;
                }
                let id = begun["session_id"].as_str().unwrap_or_else(|| panic!("{begun}")).to_owned();
                let key = task * 1000 + round;
                let out = write(&tools, &me, &id, &format!("INSERT INTO t VALUES ({key}, 'load')")).await;
                assert_eq!(code(&out), "ok", "{out}");
                let end = if round % 2 == 0 { "commit" } else { "rollback" };
                let out = tx(&tools, &me, end, &id).await;
                assert_eq!(code(&out), "ok", "{out}");
                committed += i64::from(end == "commit");
            }
            committed
        }));
    }
    let mut committed = 0;
    for task in tasks {
        committed += task.await.unwrap();
    }
    assert!(committed > 0, "some sessions ran");
    assert_eq!(rows(&side).await, committed, "exactly the committed sessions' rows");
    assert_eq!(tools.sessions().counts().0, 0, "no session left open");
    let ours = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    assert!(count(&side, ours).await <= i64::from(opts.pool_size) + opts.max_sessions as i64);
    let stuck = format!("{ours} AND state LIKE 'idle in transaction%'");
    assert_eq!(count(&side, &stuck).await, 0, "no backend left inside a transaction");
}

/// A value the server cannot render (`pg_node_tree` has no binary input, so ColdQuery's request
/// to render it as text fails) keeps its bytes, in hex; inside a transaction that failure is
/// undone, and the transaction goes on as the statement left it: an autocommit write commits,
/// a session commits, and the values after it are still rendered.
#[tokio::test]
async fn a_value_the_server_cannot_render_leaves_the_transaction_as_the_statement_left_it() {
    let db = test_db().await;
    let (side, tools, _db, me) = setup(&db, &options()).await;
    side.batch_execute("CREATE TABLE with_default (id int, d int DEFAULT 5)").await.unwrap();
    let tree = "(SELECT adbin FROM pg_attrdef LIMIT 1)";
    let unrendered = |out: &Value, column: &str| {
        let value = out["rows"][0][column].as_str().unwrap_or_else(|| panic!("{out}"));
        assert!(value.starts_with("\\x7b"), "the tree's bytes, in hex: {out}");
    };

    // An autocommit write whose RETURNING has one: reported committed, and committed.
    let sql = format!("INSERT INTO t VALUES (1, 'a') RETURNING id, {tree} AS tree, interval '1 day' AS later");
    let out = autocommit_write(&tools, &me, &sql).await;
    assert_eq!(code(&out), "ok", "{out}");
    unrendered(&out, "tree");
    assert_eq!(out["rows"][0]["later"], "1 day", "rendered after the failure: {out}");
    assert_eq!(ids(&side).await, [1], "the autocommit write said it committed: {out}");

    // A batch with autocommit: the statements after it run, and all commit.
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "transaction", "autocommit": true, "operations": [
            {"sql": format!("SELECT {tree} AS tree")},
            {"sql": "INSERT INTO t VALUES (2, 'b')"},
        ]}),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(ids(&side).await, [1, 2]);

    // A session: read one, then write and commit.
    let id = begin(&tools, &me, json!({})).await;
    let out = read(&tools, &me, &id, &format!("SELECT {tree} AS tree, interval '2 days' AS later")).await;
    assert_eq!(code(&out), "ok", "{out}");
    unrendered(&out, "tree");
    assert_eq!(out["rows"][0]["later"], "2 days", "{out}");
    assert_eq!(out["session"]["transaction_state"], "idle", "{out}");
    write_ok(&tools, &me, &id, "INSERT INTO t VALUES (3, 'c')").await;
    assert_eq!(tx(&tools, &me, "commit", &id).await["status"], "committed");
    assert_eq!(ids(&side).await, [1, 2, 3]);
}
