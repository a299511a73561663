//! The read-only escape corpus (SPEC §3) against a real PostgreSQL:
//! every way we know to change data or server state through `pg_query read` is refused with
//! the expected code, or is harmless; afterwards a side connection shows that nothing changed
//! (rows, sequence, relations, large objects, advisory locks, other backends, settings, files).
//!
//! ColdQuery connects as the superuser here: the worst case, where the classifier and the
//! read-only transaction are the only gates.

use std::path::PathBuf;
use std::time::Duration;

use coldquery_pg::PgOptions;
use coldquery_tests::harness::TestDb;
use coldquery_tools::{Caller, ToolConfig, Tools};
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::support::{begin, call, caller, code, options, sessionless_read, tools};

/// Where a case is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Refused before anything is sent.
    Classifier,
    /// Reaches PostgreSQL, which refuses it or where it is harmless.
    Server,
}

#[derive(Debug, Clone)]
struct Case {
    sql: String,
    params: Vec<Value>,
    code: &'static str,
    gate: Gate,
}

const NA: &str = "STATEMENT_NOT_ALLOWED";
const RO: &str = "READ_ONLY_VIOLATION";

fn refused(code: &'static str, sql: impl Into<String>) -> Case {
    Case { sql: sql.into(), params: Vec::new(), code, gate: Gate::Classifier }
}

fn server(code: &'static str, sql: impl Into<String>) -> Case {
    Case { sql: sql.into(), params: Vec::new(), code, gate: Gate::Server }
}

/// Files a successful escape would create on the server's machine.
fn marker(db: &TestDb, what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}_{what}", db.name))
}

/// The corpus. `victims` selects the side backends of this database by application name.
fn corpus(db: &TestDb) -> Vec<Case> {
    let victims = "FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cq_victim'";
    let copy_file = marker(db, "copy").display().to_string();
    let lo_file = marker(db, "lo").display().to_string();
    let mut cases = vec![
        // Several statements, transaction control.
        refused(NA, "COMMIT; DROP TABLE t"),
        refused(NA, "SELECT 1; COMMIT; DROP TABLE t"),
        refused(NA, "SELECT 1;COMMIT;DROP TABLE t;"),
        refused(NA, "ROLLBACK; DELETE FROM t"),
        refused(NA, "COMMIT"),
        refused(NA, "ROLLBACK"),
        refused(NA, "BEGIN"),
        refused(NA, "START TRANSACTION READ WRITE"),
        refused(NA, "END"),
        refused(NA, "ABORT"),
        refused(NA, "SAVEPOINT x"),
        refused(NA, "RELEASE SAVEPOINT x"),
        refused(NA, "PREPARE TRANSACTION 'x'"),
        refused(NA, "COMMIT PREPARED 'x'"),
        // Flipping the transaction to read-write, then writing.
        refused(NA, "SET TRANSACTION READ WRITE"),
        refused(NA, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ WRITE"),
        refused(NA, "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
        refused(NA, "SET default_transaction_read_only = off"),
        refused(NA, "SET LOCAL transaction_read_only = off"),
        refused(RO, "INSERT INTO t VALUES (9)"),
        refused(RO, "UPDATE t SET a = 0"),
        refused(RO, "DELETE FROM t"),
        refused(RO, "MERGE INTO t USING (SELECT 1 AS a) s ON t.a = s.a WHEN MATCHED THEN DELETE"),
        refused(RO, "TRUNCATE t"),
        refused(RO, "DROP TABLE t"),
        refused(RO, "ALTER TABLE t ADD COLUMN b int"),
        refused(RO, "CREATE TABLE t4 (a int)"),
        refused(RO, "CREATE TEMP TABLE x (a int)"),
        refused(RO, "GRANT ALL ON t TO PUBLIC"),
        refused(RO, "VACUUM t"),
        refused(RO, "ANALYZE t"),
        // Data-modifying CTEs, at any depth.
        refused(RO, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
        refused(RO, "WITH x AS (SELECT 1), d AS (INSERT INTO t VALUES (5) RETURNING a) SELECT * FROM d"),
        refused(RO, "WITH u AS (UPDATE t SET a = a + 100 RETURNING a) SELECT count(*) FROM u"),
        refused(RO, "SELECT * FROM (WITH d AS (DELETE FROM t RETURNING a) SELECT a FROM d) s"),
        refused(RO, "SELECT (WITH d AS (DELETE FROM t RETURNING a) SELECT count(*) FROM d)"),
        // SELECT … INTO, CREATE TABLE AS.
        refused(RO, "SELECT * INTO t2 FROM t"),
        refused(RO, "SELECT a INTO TEMP t2 FROM t"),
        refused(RO, "CREATE TABLE t3 AS SELECT * FROM t"),
        refused(RO, "CREATE MATERIALIZED VIEW mv AS SELECT * FROM t"),
        // Row locks.
        refused(RO, "SELECT * FROM t FOR UPDATE"),
        refused(RO, "SELECT * FROM t FOR SHARE"),
        refused(RO, "SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED"),
        refused(RO, "SELECT * FROM (SELECT * FROM t FOR UPDATE) s"),
        refused(NA, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"),
        // Settings.
        refused(NA, "SELECT set_config('search_path', 'evil', false)"),
        refused(NA, "SELECT * FROM set_config('work_mem', '64kB', false)"),
        refused(NA, "SELECT pg_catalog.set_config('search_path', 'evil', false)"),
        refused(NA, "SELECT \"pg_catalog\".\"set_config\"('search_path', 'evil', false)"),
        refused(NA, "SELECT * FROM (SELECT set_config('search_path', 'evil', false)) s"),
        refused(NA, "SET search_path = evil"),
        refused(NA, "SET LOCAL search_path = evil"),
        refused(NA, "RESET ALL"),
        refused(NA, "SET ROLE NONE"),
        refused(NA, "SET SESSION AUTHORIZATION DEFAULT"),
        refused(NA, "ALTER SYSTEM SET work_mem = '1MB'"),
        refused(NA, "SELECT pg_reload_conf()"),
        refused(NA, "SELECT * FROM pg_reload_conf()"),
        // Built-ins that run their text argument as SQL, out of the parser's sight.
        refused(
            NA,
            "SELECT * FROM ts_stat('SELECT to_tsvector(pg_terminate_backend(pid)::text) FROM pg_stat_activity')",
        ),
        refused(NA, "SELECT ts_rewrite('a'::tsquery, 'SELECT pg_advisory_lock(7)::text::tsquery, ''b''::tsquery')"),
        refused(NA, "SELECT database_to_xml(true, true, '')"),
        // Signalling other backends: in the select list, in FROM, quoted, qualified, nested.
        refused(NA, format!("SELECT pg_terminate_backend(pid) {victims}")),
        refused(NA, format!("SELECT pg_cancel_backend(pid) {victims}")),
        refused(NA, format!("SELECT \"pg_terminate_backend\"(pid) {victims}")),
        refused(NA, format!("SELECT pg_catalog.pg_terminate_backend(pid) {victims}")),
        refused(NA, format!("SELECT PG_CATALOG.PG_CANCEL_BACKEND(pid) {victims}")),
        refused(NA, format!("SELECT s.* FROM (SELECT pid {victims}) v, pg_terminate_backend(v.pid) s")),
        refused(NA, format!("SELECT * FROM t WHERE a IN (SELECT pg_cancel_backend(pid)::int {victims})")),
        refused(NA, format!("WITH k AS (SELECT pg_terminate_backend(pid) {victims}) SELECT * FROM k")),
        refused(NA, format!("SELECT EXISTS (SELECT pg_terminate_backend(pid) {victims})")),
        refused(NA, format!("SELECT CASE WHEN true THEN pg_terminate_backend(pid) END {victims}")),
        refused(NA, format!("SELECT pid {victims} ORDER BY pg_cancel_backend(pid)")),
        refused(NA, "SELECT pg_terminate_backend(pg_backend_pid())"),
        // Advisory locks (they survive ROLLBACK).
        refused(NA, "SELECT pg_advisory_lock(42)"),
        refused(NA, "SELECT * FROM pg_advisory_lock(42)"),
        refused(NA, "SELECT pg_try_advisory_lock(42)"),
        refused(NA, "SELECT pg_advisory_lock_shared(42)"),
        refused(NA, "SELECT pg_advisory_xact_lock(42)"),
        refused(NA, "WITH l AS (SELECT pg_advisory_lock(42)) SELECT * FROM l"),
        refused(NA, "SELECT \"pg_advisory_lock\"(42)"),
        // Files, large objects, other connections.
        refused(NA, "SELECT pg_read_file('PG_VERSION')"),
        refused(NA, "SELECT * FROM pg_read_file('/etc/passwd')"),
        refused(NA, "SELECT pg_read_binary_file('PG_VERSION')"),
        refused(NA, "SELECT pg_ls_dir('.')"),
        refused(NA, "SELECT * FROM pg_stat_file('PG_VERSION')"),
        refused(NA, format!("SELECT lo_export(lo_from_bytea(0, 'x'), '{lo_file}')")),
        refused(NA, "SELECT lo_import('/etc/hostname')"),
        refused(NA, "SELECT lo_from_bytea(0, 'x')"),
        refused(NA, "SELECT dblink_exec('dbname=postgres', 'DROP TABLE t')"),
        refused(NA, "SELECT * FROM dblink('dbname=postgres', 'DELETE FROM t RETURNING a') AS d(a int)"),
        refused(NA, "SELECT public.dblink_connect('x', 'dbname=postgres')"),
        refused(NA, "SELECT query_to_xml('DELETE FROM t RETURNING a', true, false, '')"),
        refused(NA, "SELECT pg_switch_wal()"),
        refused(NA, "SELECT pg_notify('ch', 'x')"),
        refused(NA, "SELECT txid_current()"),
        // Sequences.
        refused(NA, "SELECT nextval('s')"),
        refused(NA, "SELECT * FROM nextval('s')"),
        refused(NA, "SELECT setval('s', 100)"),
        refused(NA, "SELECT pg_catalog.nextval('s')"),
        refused(NA, "SELECT PG_CATALOG.NEXTVAL('s')"),
        refused(NA, "SELECT (SELECT nextval('s'))"),
        refused(NA, "SELECT ARRAY(SELECT nextval('s') FROM generate_series(1, 3))"),
        refused(NA, "SELECT * FROM t, LATERAL (SELECT nextval('s')) x"),
        refused(NA, "VALUES (nextval('s'))"),
        refused(NA, "SELECT coalesce(NULL, nextval('s'))"),
        refused(NA, "SELECT a FROM t ORDER BY nextval('s')"),
        refused(NA, "SELECT count(*) FILTER (WHERE nextval('s') > 0) FROM t"),
        refused(NA, "SELECT a FROM t GROUP BY a HAVING max(nextval('s')) > 0"),
        refused(NA, "SELECT 1 WHERE EXISTS (SELECT 1 FROM t WHERE a = nextval('s'))"),
        // COPY.
        refused(NA, format!("COPY (SELECT 1) TO PROGRAM 'touch {copy_file}'")),
        refused(NA, format!("COPY t TO '{copy_file}'")),
        refused(NA, "COPY t FROM PROGRAM 'echo 7'"),
        refused(NA, "COPY t TO STDOUT"),
        refused(NA, "COPY t FROM STDIN"),
        // Code and state that outlive the call.
        refused(NA, "DO $$BEGIN DELETE FROM t; END$$"),
        refused(NA, "DO LANGUAGE plpgsql $body$ BEGIN EXECUTE 'DROP TABLE t'; END $body$"),
        refused(RO, "CALL p()"),
        refused(NA, "PREPARE q AS DELETE FROM t"),
        refused(NA, "EXECUTE q"),
        refused(NA, "DEALLOCATE ALL"),
        refused(NA, "LISTEN ch"),
        refused(NA, "NOTIFY ch, 'x'"),
        refused(NA, "UNLISTEN *"),
        refused(NA, "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t"),
        refused(NA, "DISCARD ALL"),
        refused(NA, "LOAD 'plpgsql'"),
        refused(NA, "CHECKPOINT"),
        // EXPLAIN ANALYZE executes the statement.
        refused(RO, "EXPLAIN ANALYZE DELETE FROM t"),
        refused(RO, "EXPLAIN (ANALYZE) INSERT INTO t VALUES (9)"),
        refused(RO, "EXPLAIN (ANALYZE true, FORMAT JSON) UPDATE t SET a = 0"),
        refused(RO, "EXPLAIN (ANALYZE on) WITH d AS (DELETE FROM t RETURNING a) SELECT * FROM d"),
        refused(RO, "EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE"),
        refused(RO, "EXPLAIN ANALYZE CREATE TABLE t5 AS SELECT 1"),
        refused(NA, "EXPLAIN ANALYZE SELECT nextval('s')"),
        refused(NA, "EXPLAIN (FORMAT JSON) INSERT INTO t SELECT nextval('s')::int"),
        // Comments and dollar quotes do not hide a second statement or the real one.
        refused(RO, "/* COMMIT; */ DELETE FROM t"),
        refused(RO, "/* /* nested */ SELECT 1; */ DELETE FROM t"),
        refused(RO, "-- SELECT 1\nDELETE FROM t"),
        refused(NA, "SELECT 1 /* ; */; DROP TABLE t"),
        refused(NA, "SELECT 1 -- x\n; DROP TABLE t"),
        refused(NA, "SELECT $a$ $b$;$b$ $a$; DROP TABLE t"),
        refused(NA, "SELECT $x$'$x$; DELETE FROM t; --"),
        refused(NA, "SELECT E'\\\\'; DELETE FROM t; --'"),
        refused(NA, "SELECT 'a'; DELETE FROM t; --'"),
        refused(NA, "SELECT /* $$ */ nextval('s') /* $$ */"),
        refused(NA, "SELECT nextval/**/('s')"),
        refused(NA, "SELECT\tnextval\n(\n's'\n)"),
        // Harmless: one statement whose text merely looks dangerous.
        server("ok", "SELECT 1 -- ; DROP TABLE t"),
        server("ok", "SELECT 1 /* ; DROP TABLE t */"),
        server("ok", "SELECT 1; -- DROP TABLE t"),
        server("ok", "SELECT $$; DROP TABLE t; $$"),
        server("ok", "SELECT $a$ $b$;DROP TABLE t;$b$ $a$"),
        server("ok", "SELECT 'a'';DELETE FROM t;--'"),
        server("ok", "SELECT E'\\';DELETE FROM t;--'"),
        server("ok", "SELECT 'nextval(''s'')', 'pg_terminate_backend(1)'"),
        server("ok", "SELECT * FROM U&\"\\0074\""),
        server("ok", "EXPLAIN DELETE FROM t"),
        server("ok", "EXPLAIN (ANALYZE false) DELETE FROM t"),
        server("ok", "SELECT last_value FROM s"),
        server("ok", "SHOW search_path"),
        // Reach the server and are stopped there, before they run: user-defined functions are
        // refused unless --allow-functions names them (the read-only transaction would stop
        // the first two as well).
        server(NA, "SELECT f_writes()"),
        server(NA, "SELECT * FROM f_writes()"),
        server(NA, "SELECT f_nextval()"),
        // Case matters for quoted names: this is not nextval, and does not exist.
        server("DATABASE_ERROR", "SELECT \"NEXTVAL\"('s')"),
    ];
    // The same with bind parameters.
    cases.push(Case {
        sql: "SELECT pg_terminate_backend($1::int)".into(),
        params: vec![json!(1)],
        code: NA,
        gate: Gate::Classifier,
    });
    cases.push(Case {
        sql: "SELECT set_config($1, $2, false)".into(),
        params: vec![json!("search_path"), json!("evil")],
        code: NA,
        gate: Gate::Classifier,
    });
    cases
}

/// What a side connection sees; must not change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    rows: String,
    sequence: String,
    relations: String,
    large_objects: i64,
    advisory_locks: i64,
    victims: i64,
    prepared_xacts: i64,
}

async fn observe(side: &Client) -> Observed {
    let text = |sql: &'static str| async move {
        side.query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, Option<String>>(0)
            .unwrap_or_default()
    };
    let number = |sql: &'static str| async move {
        side.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get::<_, i64>(0)
    };
    Observed {
        rows: text("SELECT string_agg(a::text, ',' ORDER BY a) FROM t").await,
        sequence: text("SELECT last_value::text || '/' || is_called::text FROM s").await,
        relations: text(
            "SELECT string_agg(n.nspname || '.' || c.relname, ',' ORDER BY n.nspname, c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
        )
        .await,
        large_objects: number("SELECT count(*) FROM pg_largeobject_metadata").await,
        advisory_locks: number(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .await,
        victims: number(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cq_victim'",
        )
        .await,
        prepared_xacts: number("SELECT count(*) FROM pg_prepared_xacts").await,
    }
}

async fn setup(side: &Client) {
    side.batch_execute(
        "CREATE TABLE t (a int PRIMARY KEY);
         INSERT INTO t VALUES (1), (2), (3);
         CREATE SEQUENCE s;
         SELECT nextval('s');
         CREATE PROCEDURE p() LANGUAGE sql AS $$ INSERT INTO t VALUES (100) $$;
         CREATE FUNCTION f_writes() RETURNS int LANGUAGE sql AS $$ INSERT INTO t VALUES (200) RETURNING a $$;
         CREATE FUNCTION f_nextval() RETURNS bigint LANGUAGE sql AS $$ SELECT nextval('s') $$;",
    )
    .await
    .expect("escape fixture");
}

/// A side backend that must survive: it runs a long `pg_sleep` the whole time, so a
/// `pg_cancel_backend` would end it early and a `pg_terminate_backend` would close it.
async fn victim(db: &TestDb) -> (Client, tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>) {
    let busy = db.client().await;
    busy.batch_execute("SET application_name = 'cq_victim'").await.unwrap();
    let idle = db.client().await;
    idle.batch_execute("SET application_name = 'cq_victim'").await.unwrap();
    let sleeper = tokio::spawn(async move { busy.batch_execute("SELECT pg_sleep(600)").await });
    (idle, sleeper)
}

fn read_args(case: &Case, session_id: Option<&str>) -> Value {
    let mut args = json!({"action": "read", "sql": case.sql});
    if !case.params.is_empty() {
        args["params"] = json!(case.params);
    }
    if let Some(id) = session_id {
        args["session_id"] = json!(id);
    }
    args
}

fn check(case: &Case, out: &Value, path: &str, failures: &mut Vec<String>) {
    let got = code(out);
    if got != case.code {
        failures.push(format!("{path}: {:?} → {got} (expected {}): {out}", case.sql, case.code));
    }
}

async fn assert_unchanged(side: &Client, before: &Observed, db: &TestDb, what: &str) {
    assert_eq!(&observe(side).await, before, "{what}: a side connection sees a change");
    for file in ["copy", "lo"] {
        assert!(!marker(db, file).exists(), "{what}: {} was written", marker(db, file).display());
    }
}

/// Every pooled/session connection ColdQuery used still has the default settings and no SQL-level
/// prepared statements or cursors that outlive a transaction (a read's own protocol-level portal
/// is listed too, but is not holdable).
async fn assert_settings_default(tools: &Tools, me: &Caller, session_id: Option<&str>) {
    let mut args = json!({
        "action": "read",
        "sql": "SELECT current_setting('search_path') AS search_path, current_setting('work_mem') AS work_mem,
                current_setting('default_transaction_read_only') AS ro,
                (SELECT count(*) FROM pg_listening_channels()) AS listening,
                (SELECT count(*) FROM pg_prepared_statements WHERE from_sql) AS prepared,
                (SELECT count(*) FROM pg_cursors WHERE is_holdable) AS cursors",
    });
    if let Some(id) = session_id {
        args["session_id"] = json!(id);
    }
    let out = call(tools, me, "pg_query", args).await;
    assert_eq!(code(&out), "ok", "{out}");
    let row = &out["rows"][0];
    assert_eq!(row["search_path"], "\"$user\", public", "{out}");
    assert_eq!(row["work_mem"], "4MB", "{out}");
    assert_eq!(row["ro"], "off", "{out}");
    assert_eq!(row["listening"], 0, "{out}");
    assert_eq!(row["prepared"], 0, "{out}");
    assert_eq!(row["cursors"], 0, "{out}");
}

#[tokio::test]
async fn read_escape_corpus_is_refused_and_changes_nothing() {
    let db = coldquery_tests::harness::test_db().await;
    let side = db.client().await;
    setup(&side).await;
    let (idle_victim, sleeper) = victim(&db).await;
    // One pooled connection and one session connection: every call reuses the same backend,
    // so state left behind by one case would be seen by the settings check.
    let (tools, _db) =
        tools(&db, &PgOptions { pool_size: 1, max_sessions: 1, ..options() }, ToolConfig::default(), false).await;
    let me = caller("escape");
    let before = observe(&side).await;
    assert_eq!(before.victims, 2);
    let cases = corpus(&db);
    let mut failures = Vec::new();

    // Sessionless reads.
    for case in &cases {
        let out = call(&tools, &me, "pg_query", read_args(case, None)).await;
        check(case, &out, "read", &mut failures);
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    assert_unchanged(&side, &before, &db, "after sessionless reads").await;
    assert_settings_default(&tools, &me, None).await;

    // Reads in a read-only session: the same answers, and the session survives the refusals.
    for case in &cases {
        let id = begin(&tools, &me, json!({"read_only": true})).await;
        let out = call(&tools, &me, "pg_query", read_args(case, Some(&id))).await;
        check(case, &out, "read in a read-only session", &mut failures);
        let status = call(&tools, &me, "pg_tx", json!({"action": "status", "session_id": id})).await;
        if case.gate == Gate::Classifier && (status["statements"] != 0 || status["transaction_state"] != "idle") {
            failures.push(format!("read-only session: {:?} reached the session: {status}", case.sql));
        }
        let end = call(&tools, &me, "pg_tx", json!({"action": "rollback", "session_id": id})).await;
        assert_eq!(end["status"], "rolled_back", "{end}");
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));

    // Reads in a read-write session: what the classifier refuses is refused before sending,
    // so the transaction stays open and usable.
    let id = begin(&tools, &me, json!({})).await;
    for case in cases.iter().filter(|c| c.gate == Gate::Classifier) {
        let out = call(&tools, &me, "pg_query", read_args(case, Some(&id))).await;
        check(case, &out, "read in a read-write session", &mut failures);
    }
    let status = call(&tools, &me, "pg_tx", json!({"action": "status", "session_id": id})).await;
    assert_eq!(status["statements"], 0, "nothing may reach the session: {status}");
    assert_eq!(status["transaction_state"], "idle", "{status}");
    assert_settings_default(&tools, &me, Some(&id)).await;
    let end = call(&tools, &me, "pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(end["status"], "committed", "{end}");
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));

    assert_unchanged(&side, &before, &db, "after session reads").await;
    // The victims: the idle one answers, the busy one is still sleeping (not cancelled).
    idle_victim.query_one("SELECT 1", &[]).await.expect("the idle victim backend is alive");
    assert!(!sleeper.is_finished(), "the sleeping victim was cancelled or terminated: {:?}", sleeper.await);
    side.batch_execute(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'cq_victim' AND state = 'active'",
    )
    .await
    .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), sleeper).await.expect("cancel reaches the victim");
    let err = ended.unwrap().expect_err("the victim's sleep was cancelled by the test itself");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"));
}

#[tokio::test]
async fn forced_reads_cannot_leave_state_on_the_pooled_connection() {
    // Statements the classifier lets through but that touch session state in PostgreSQL:
    // each runs in a transaction that is rolled back, so the next read sees defaults. The
    // writing function is allowed here, so that the read-only transaction is what stops it.
    let db = coldquery_tests::harness::test_db().await;
    let side = db.client().await;
    setup(&side).await;
    let mut config = ToolConfig::default();
    config.functions.allow_functions("public.f_writes").unwrap();
    let (tools, _db) = tools(&db, &PgOptions { pool_size: 1, ..options() }, config, false).await;
    let me = caller("escape");
    let before = observe(&side).await;
    let pid = sessionless_read(&tools, &me, "SELECT pg_backend_pid() AS pid").await;
    let pid = pid["rows"][0]["pid"].clone();
    for (sql, expected) in [
        ("SELECT current_setting('search_path')", "ok"),
        ("SELECT f_writes()", "READ_ONLY_VIOLATION"),
        ("SELECT 1/0", "DATABASE_ERROR"),
        ("SELECT pg_sleep(0.01)", "ok"),
    ] {
        let out = sessionless_read(&tools, &me, sql).await;
        assert_eq!(code(&out), expected, "{sql}: {out}");
    }
    // A timeout cancels the statement; the connection is still clean (or replaced).
    let out =
        call(&tools, &me, "pg_query", json!({"action": "read", "sql": "SELECT pg_sleep(5)", "timeout_ms": 200})).await;
    assert_eq!(code(&out), "TIMEOUT", "{out}");
    assert_settings_default(&tools, &me, None).await;
    let again = sessionless_read(&tools, &me, "SELECT pg_backend_pid() AS pid").await;
    assert_eq!(code(&again), "ok");
    // The connection is the same backend (a cancelled statement does not need a new one).
    assert_eq!(again["rows"][0]["pid"], pid, "the pooled connection was replaced after a clean cancel");
    let idle_in_tx: i64 = side
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(idle_in_tx, 0, "a read left a transaction open");
    assert_unchanged(&side, &before, &db, "after forced reads").await;
}
