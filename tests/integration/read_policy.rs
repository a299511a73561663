//! The classes of read escapes closed by design, each checked from a side
//! connection: every syntactic way PostgreSQL calls a function (attribute notation on
//! literals, columns, subqueries and subscripts; column references over functions in FROM;
//! operators, casts, views and policies backed by functions), SQL hidden in text arguments of
//! contrib functions, the grammar-settings trick, state left on pooled connections by
//! autocommit statements, batches and sessions, `explain` without `analyze`, and statements
//! built to exhaust the classifier.
//!
//! ColdQuery connects as the superuser: the worst case, where the policy is the only gate for
//! what a read-only transaction does not stop.

use std::time::{Duration, Instant};

use coldquery_pg::PgOptions;
use coldquery_tests::harness::TestDb;
use coldquery_tools::{Caller, ToolConfig, Tools};
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::support::{ADVISORY_LOCKS, autocommit_write, begin, call, caller, code, options, sessionless_read, tools};

const NA: &str = "STATEMENT_NOT_ALLOWED";

/// The contrib extensions whose functions destroy data, touch files, reach other servers or
/// run SQL given as text, plus objects whose code runs when they are read.
async fn setup(side: &Client) {
    side.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS dblink;
         CREATE EXTENSION IF NOT EXISTS tablefunc;
         CREATE EXTENSION IF NOT EXISTS xml2;
         CREATE EXTENSION IF NOT EXISTS pg_surgery;
         CREATE EXTENSION IF NOT EXISTS pg_visibility;
         CREATE EXTENSION IF NOT EXISTS adminpack;
         CREATE EXTENSION IF NOT EXISTS pg_prewarm;
         CREATE EXTENSION IF NOT EXISTS hstore;
         CREATE TABLE t (a int PRIMARY KEY);
         INSERT INTO t VALUES (1), (2), (3);
         CREATE TABLE shadow (v text);
         INSERT INTO shadow VALUES ('real');
         -- Functions with effects, reachable through attribute notation, operators, casts,
         -- views and policies.
         CREATE FUNCTION lock_it(t) RETURNS bigint LANGUAGE sql AS $$ SELECT CASE WHEN pg_advisory_lock(($1).a) IS NULL THEN 1::bigint END $$;
         CREATE FUNCTION lock_op(int, int) RETURNS bool LANGUAGE sql AS $$ SELECT pg_advisory_lock($1 + $2) IS NULL $$;
         CREATE OPERATOR @@@ (LEFTARG = int, RIGHTARG = int, FUNCTION = lock_op);
         CREATE TYPE mood AS ENUM ('calm');
         CREATE FUNCTION lock_cast(int) RETURNS mood LANGUAGE sql AS $$ SELECT CASE WHEN pg_advisory_lock($1) IS NULL THEN 'calm'::mood ELSE 'calm'::mood END $$;
         CREATE CAST (int AS mood) WITH FUNCTION lock_cast(int);
         CREATE VIEW v_lock AS SELECT pg_advisory_lock(77) IS NULL AS locked;
         CREATE VIEW v_over_view AS SELECT * FROM v_lock;
         CREATE FUNCTION set_work_mem() RETURNS text LANGUAGE sql AS $$ SELECT set_config('work_mem', '64kB', false) $$;",
    )
    .await
    .expect("read policy fixture");
}

/// What a successful escape would change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    rows: String,
    advisory_locks: i64,
    victims: i64,
    slots: i64,
    dblink_backends: i64,
}

async fn observe(side: &Client) -> Observed {
    let number = |sql: &'static str| async move {
        side.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get::<_, i64>(0)
    };
    Observed {
        rows: side
            .query_one("SELECT string_agg(a::text, ',' ORDER BY a) FROM t", &[])
            .await
            .unwrap()
            .get::<_, Option<String>>(0)
            .unwrap_or_default(),
        advisory_locks: number(ADVISORY_LOCKS).await,
        victims: number(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cq_victim'",
        )
        .await,
        slots: number("SELECT count(*) FROM pg_replication_slots").await,
        dblink_backends: number("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dblink'").await,
    }
}

/// The corpus of this module: every case is refused with `STATEMENT_NOT_ALLOWED`.
fn corpus(db: &TestDb) -> Vec<String> {
    let victims = "FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cq_victim'";
    let conn = db.url.replace('\'', "''");
    let file = std::env::temp_dir().join(format!("{}_adminpack", db.name)).display().to_string();
    let mut cases: Vec<String> = vec![
        // Attribute notation: `x.f` is `f(x)`, on columns, literals, subqueries, subscripts.
        format!("SELECT (pid).pg_terminate_backend {victims}"),
        format!("SELECT (pid).pg_catalog.pg_cancel_backend {victims}"),
        format!("SELECT a.pid.pg_terminate_backend FROM (SELECT pid {victims}) a"),
        "SELECT (42::bigint).pg_advisory_lock".into(),
        "SELECT ((SELECT 42::bigint)).pg_advisory_lock".into(),
        "SELECT (x[1]).pg_advisory_lock FROM (SELECT ARRAY[42::bigint] AS x) q".into(),
        "SELECT (0.5::float8).setseed".into(),
        "SELECT ('s'::regclass).nextval".into(),
        "SELECT (t).lock_it FROM t".into(),
        "SELECT t.lock_it FROM t".into(),
        // A column name over a function in FROM resolves to a call of that name.
        format!("SELECT v.pg_cancel_backend FROM (SELECT pid {victims}) a, LATERAL abs(a.pid) v"),
        "SELECT x.pg_advisory_lock FROM abs(42::bigint) AS x".into(),
        // Operators, casts and views whose functions have effects.
        "SELECT 1 @@@ 2".into(),
        "SELECT 1 OPERATOR(public.@@@) 2".into(),
        "SELECT 5::mood".into(),
        "SELECT CAST(5 AS mood)".into(),
        "SELECT * FROM v_lock".into(),
        "SELECT * FROM v_over_view".into(),
        // Replication slots, index maintenance, statistics, seeds, backups.
        "SELECT pg_create_physical_replication_slot('cq_escape')".into(),
        "SELECT * FROM pg_create_logical_replication_slot('cq_escape', 'test_decoding')".into(),
        "SELECT pg_copy_physical_replication_slot('a', 'b')".into(),
        "SELECT pg_replication_slot_advance('a', '0/0')".into(),
        "SELECT * FROM pg_logical_slot_get_changes('a', NULL, NULL)".into(),
        "SELECT brin_summarize_new_values('t_pkey')".into(),
        "SELECT gin_clean_pending_list('t_pkey')".into(),
        "SELECT pg_stat_reset()".into(),
        "SELECT setseed(0.5)".into(),
        "SELECT pg_backup_start('x')".into(),
        // Contrib functions that destroy data or run SQL given as text.
        "SELECT * FROM crosstab('DELETE FROM t RETURNING a::text, a::text, a::text') AS c(r text, x text)".into(),
        "SELECT * FROM xpath_table('a', 'b', 't; DELETE FROM t', 'x', 'true') AS x(a text, b text)".into(),
        "SELECT heap_force_kill('t'::regclass, ARRAY['(0,1)']::tid[])".into(),
        "SELECT pg_truncate_visibility_map('t')".into(),
        format!("SELECT pg_file_write('{file}', 'x', false)"),
        "SELECT pg_prewarm('t')".into(),
        format!("SELECT dblink_connect('cq', '{conn}')"),
        format!("SELECT * FROM dblink('{conn}', 'DELETE FROM t RETURNING a') AS d(a int)"),
        format!("SELECT (('{conn}')::text).dblink_connect"),
    ];
    cases.retain(|c| !c.is_empty());
    cases
}

async fn victim(db: &TestDb) -> Client {
    let idle = db.client().await;
    idle.batch_execute("SET application_name = 'cq_victim'").await.unwrap();
    idle
}

fn read(sql: &str, session_id: Option<&str>) -> Value {
    let mut args = json!({"action": "read", "sql": sql});
    if let Some(id) = session_id {
        args["session_id"] = json!(id);
    }
    args
}

async fn backend_pid(tools: &Tools, me: &Caller) -> i64 {
    let out = call(tools, me, "pg_query", read("SELECT pg_backend_pid() AS pid", None)).await;
    out["rows"][0]["pid"].as_i64().unwrap_or_else(|| panic!("{out}"))
}

#[tokio::test]
async fn function_calls_in_every_syntactic_form_are_refused_and_change_nothing() {
    let db = coldquery_tests::harness::test_db().await;
    let side = db.client().await;
    setup(&side).await;
    side.batch_execute("CREATE SEQUENCE s").await.unwrap();
    let _victim = victim(&db).await;
    let (tools, _db) =
        tools(&db, &PgOptions { pool_size: 1, max_sessions: 1, ..options() }, ToolConfig::default(), false).await;
    let me = caller("policy");
    let before = observe(&side).await;
    assert_eq!(before.victims, 1);
    let cases = corpus(&db);
    let mut failures = Vec::new();
    for sql in &cases {
        for (path, args) in [
            ("read", read(sql, None)),
            ("explain", json!({"action": "explain", "sql": sql})),
            ("read-only batch", json!({"action": "transaction", "read_only": true, "operations": [{"sql": sql}]})),
        ] {
            let out = call(&tools, &me, "pg_query", args).await;
            if code(&out) != NA {
                failures.push(format!("{path}: {sql:?} → {out}"));
            }
        }
        let id = begin(&tools, &me, json!({})).await;
        let out = call(&tools, &me, "pg_query", read(sql, Some(&id))).await;
        if code(&out) != NA {
            failures.push(format!("read in a session: {sql:?} → {out}"));
        }
        // The refusal leaves the session's transaction usable.
        let status = call(&tools, &me, "pg_tx", json!({"action": "status", "session_id": id})).await;
        if status["transaction_state"] != "idle" {
            failures.push(format!("session after {sql:?}: {status}"));
        }
        call(&tools, &me, "pg_tx", json!({"action": "rollback", "session_id": id})).await;
    }
    assert!(failures.is_empty(), "{} of {} case(s) failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert_eq!(observe(&side).await, before, "a side connection sees a change");
    let written = std::env::temp_dir().join(format!("{}_adminpack", db.name));
    assert!(!written.exists(), "{} was written", written.display());
    eprintln!("read policy corpus: {} statements × 4 paths refused", cases.len());

    // Harmless uses of the same syntax still work: a column that is only a column, an
    // allowed extension's operators, built-in casts and operators.
    for sql in [
        "SELECT t.a, (t).a FROM t ORDER BY a",
        "SELECT 'a=>1'::hstore -> 'a' AS v",
        "SELECT (ARRAY[1,2])[1] + 1, 2::int8, now()::date, 'x' || 'y', 2 BETWEEN 1 AND 3",
        "SELECT count(*) FROM pg_stat_activity",
        "SELECT random() >= 0, clock_timestamp() IS NOT NULL",
    ] {
        let out = call(&tools, &me, "pg_query", read(sql, None)).await;
        assert_eq!(code(&out), "ok", "{sql}: {out}");
    }
    // A user-defined function is allowed by name.
    let mut config = ToolConfig::default();
    config.functions.allow_functions("public.lock_*").unwrap();
    let (allowing, _db2) = crate::support::tools(&db, &PgOptions { pool_size: 1, ..options() }, config, false).await;
    let out = call(&allowing, &me, "pg_query", read("SELECT (SELECT 1) AS one WHERE false AND (1 @@@ 2)", None)).await;
    assert_eq!(code(&out), "ok", "allowed by --allow-functions: {out}");
}

/// The classifier parses with `standard_conforming_strings = on`; a database whose default is
/// `off` would read `'a\'' , f() --'` as a string followed by a call. ColdQuery pins the
/// setting for every transaction and connection it opens.
#[tokio::test]
async fn the_server_reads_statements_with_the_classifiers_grammar() {
    let db = coldquery_tests::harness::test_db().await;
    let side = db.client().await;
    side.batch_execute(&format!(
        "ALTER DATABASE {} SET standard_conforming_strings = off",
        coldquery_tests::harness::quote_ident(&db.name)
    ))
    .await
    .unwrap();
    let (tools, _db) =
        tools(&db, &PgOptions { pool_size: 1, max_sessions: 1, ..options() }, ToolConfig::default(), false).await;
    let me = caller("grammar");
    let trick = "SELECT 'a\\'' , pg_advisory_lock(42) --' AS text";
    let out = call(&tools, &me, "pg_query", read(trick, None)).await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["rows"][0]["text"], "a\\' , pg_advisory_lock(42) --", "the server read one literal: {out}");
    let id = begin(&tools, &me, json!({})).await;
    let out = call(&tools, &me, "pg_query", read(trick, Some(&id))).await;
    assert_eq!(code(&out), "ok", "{out}");
    // A write that would change the grammar is refused, in a session and with autocommit.
    for sql in
        ["SET LOCAL standard_conforming_strings = off", "SELECT set_config('standard_conforming_strings', 'off', true)"]
    {
        let out = call(&tools, &me, "pg_query", json!({"action": "write", "sql": sql, "session_id": id})).await;
        assert_eq!(code(&out), NA, "{sql}: {out}");
    }
    call(&tools, &me, "pg_tx", json!({"action": "rollback", "session_id": id})).await;
    let out = autocommit_write(&tools, &me, trick).await;
    assert_eq!(code(&out), "ok", "{out}");
    let locks: i64 = side.query_one(ADVISORY_LOCKS, &[]).await.unwrap().get(0);
    assert_eq!(locks, 0, "the literal was run as a function call");
}

/// After every autocommit statement and batch the connection is as clean as after a session,
/// or it is closed.
#[tokio::test]
async fn autocommit_work_and_sessions_leave_nothing_on_pooled_connections() {
    let db = coldquery_tests::harness::test_db().await;
    let side = db.client().await;
    setup(&side).await;
    let (tools, _db) =
        tools(&db, &PgOptions { pool_size: 1, max_sessions: 1, ..options() }, ToolConfig::default(), false).await;
    let me = caller("pool");
    let write = |sql: &str| json!({"action": "write", "sql": sql, "autocommit": true});

    // A batch that puts pg_temp first in search_path and creates a table that would shadow
    // a real one for the next caller on the connection.
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "transaction", "autocommit": true, "operations": [
            {"sql": "SET LOCAL search_path = pg_temp, public"},
            {"sql": "CREATE TABLE shadow (v text)"},
            {"sql": "INSERT INTO shadow VALUES ('fake')"},
        ]}),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    let out = call(&tools, &me, "pg_query", read("SELECT v FROM shadow", None)).await;
    assert_eq!(out["rows"][0]["v"], "real", "a temporary table shadowed the real one: {out}");

    // A setting changed without SET, by a user-defined function run with autocommit: the
    // connection is reset, and closed because the function could have done anything.
    let pid = backend_pid(&tools, &me).await;
    let out = call(&tools, &me, "pg_query", write("SELECT set_work_mem()")).await;
    assert_eq!(code(&out), "ok", "{out}");
    let out = call(&tools, &me, "pg_query", read("SELECT current_setting('work_mem') AS w", None)).await;
    assert_eq!(out["rows"][0]["w"], "4MB", "{out}");
    assert_ne!(backend_pid(&tools, &me).await, pid, "the connection that ran a user function was reused");

    // An advisory lock taken through attribute notation by an autocommit write is released.
    let out = call(&tools, &me, "pg_query", write("SELECT (5::bigint).pg_advisory_lock")).await;
    assert_eq!(code(&out), "ok", "{out}");
    let locks: i64 = side.query_one(ADVISORY_LOCKS, &[]).await.unwrap().get(0);
    assert_eq!(locks, 0, "an advisory lock stayed on the pooled connection");

    // A random seed set by the work, by name or by a function it runs without naming it (a
    // trigger's), is not handed on: the connection is seeded anew from the system's randomness
    // and stays in the pool. What `random()` gives first after `setseed(0.5)`:
    side.batch_execute("SELECT setseed(0.5)").await.unwrap();
    let seeded: f64 = side.query_one("SELECT random()", &[]).await.unwrap().get(0);
    side.batch_execute(
        "CREATE FUNCTION seed_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM setseed(0.5); RETURN NEW; END $$;
         CREATE TABLE seeded (v int);
         CREATE TRIGGER seed_on_insert BEFORE INSERT ON seeded FOR EACH ROW EXECUTE FUNCTION seed_it();",
    )
    .await
    .unwrap();
    let next_random = |session: Option<String>| {
        let (tools, me) = (&tools, &me);
        async move {
            let out =
                call(tools, me, "pg_query", read("SELECT random() AS r, pg_backend_pid() AS pid", session.as_deref()))
                    .await;
            (out["rows"][0]["r"].as_f64().unwrap_or_else(|| panic!("{out}")), out["rows"][0]["pid"].as_i64().unwrap())
        }
    };
    for sql in ["SELECT setseed(0.5)", "INSERT INTO seeded VALUES (1)"] {
        let pid = backend_pid(&tools, &me).await;
        let out = call(&tools, &me, "pg_query", write(sql)).await;
        assert_eq!(code(&out), "ok", "{sql}: {out}");
        // What anyone can read of the connection's last message (the reset, unless a check of
        // called functions followed it) must not give the new seed away.
        let last: String = side
            .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&i32::try_from(pid).unwrap()])
            .await
            .unwrap()
            .get(0);
        let shown_seed =
            last.split("setseed(").nth(1).and_then(|rest| rest.split(')').next()?.trim().parse::<f64>().ok());
        let (r, next_pid) = next_random(None).await;
        assert_eq!(next_pid, pid, "{sql}: the connection was not kept");
        assert_ne!(r, seeded, "{sql}: the next caller got the seeded sequence");
        if sql.starts_with("INSERT") {
            assert!(last.contains("setseed"), "{sql}: the reset was the connection's last message: {last}");
        }
        if sql.starts_with("INSERT") {
            let argument = last.split("setseed(").nth(1).unwrap_or_default();
            assert!(argument.contains("gen_random_uuid()"), "{sql}: the seed is drawn by the server: {last}");
        }
        if let Some(seed) = shown_seed {
            side.execute("SELECT setseed($1)", &[&seed]).await.unwrap();
            let predicted: f64 = side.query_one("SELECT random()", &[]).await.unwrap().get(0);
            assert_ne!(
                r, predicted,
                "{sql}: the seed shown in pg_stat_activity ({seed}) predicted the next caller's random()"
            );
        }
        // In a session, ended by COMMIT or ROLLBACK: the next session on the connection.
        for end in ["commit", "rollback"] {
            let id = begin(&tools, &me, json!({})).await;
            let (_, pid) = next_random(Some(id.clone())).await;
            let out = call(&tools, &me, "pg_query", json!({"action": "write", "sql": sql, "session_id": id})).await;
            assert_eq!(code(&out), "ok", "{sql}: {out}");
            let out = call(&tools, &me, "pg_tx", json!({"action": end, "session_id": id})).await;
            assert_eq!(code(&out), "ok", "{sql}, {end}: {out}");
            let id = begin(&tools, &me, json!({})).await;
            let (r, next_pid) = next_random(Some(id.clone())).await;
            call(&tools, &me, "pg_tx", json!({"action": "rollback", "session_id": id})).await;
            assert_eq!(next_pid, pid, "{sql}, {end}: the session's connection was not kept");
            assert_ne!(r, seeded, "{sql}, {end}: the next session got the seeded sequence");
        }
    }

    // A SQL-level prepared statement left by a function the work did not name (a trigger's):
    // no reset drops it, so the connection is closed, after autocommit work and after a
    // session's COMMIT or ROLLBACK.
    side.batch_execute(
        "CREATE FUNCTION prepare_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'PREPARE leftover AS SELECT 1'; RETURN NEW; END $$;
         CREATE TABLE preparing (v int);
         CREATE TRIGGER prepare_on_insert BEFORE INSERT ON preparing FOR EACH ROW EXECUTE FUNCTION prepare_it();",
    )
    .await
    .unwrap();
    let leftovers = "SELECT count(*) AS n, pg_backend_pid() AS pid FROM pg_prepared_statements WHERE from_sql";
    let out = call(&tools, &me, "pg_query", write("INSERT INTO preparing VALUES (1)")).await;
    assert_eq!(code(&out), "ok", "{out}");
    let out = call(&tools, &me, "pg_query", read(leftovers, None)).await;
    assert_eq!(out["rows"][0]["n"], 0, "a prepared statement stayed on the pooled connection: {out}");
    for end in ["commit", "rollback"] {
        let id = begin(&tools, &me, json!({})).await;
        let insert = json!({"action": "write", "sql": "INSERT INTO preparing VALUES (2)", "session_id": id});
        let out = call(&tools, &me, "pg_query", insert).await;
        assert_eq!(code(&out), "ok", "{out}");
        let out = call(&tools, &me, "pg_query", read(leftovers, Some(&id))).await;
        assert_eq!(out["rows"][0]["n"], 1, "{end}: the trigger prepared nothing: {out}");
        let used = out["rows"][0]["pid"].clone();
        let out = call(&tools, &me, "pg_tx", json!({"action": end, "session_id": id})).await;
        assert_eq!(code(&out), "ok", "{end}: {out}");
        let id = begin(&tools, &me, json!({})).await;
        let out = call(&tools, &me, "pg_query", read(leftovers, Some(&id))).await;
        call(&tools, &me, "pg_tx", json!({"action": "rollback", "session_id": id})).await;
        assert_eq!(out["rows"][0]["n"], 0, "{end}: a prepared statement stayed on the session's connection: {out}");
        assert_ne!(out["rows"][0]["pid"], used, "{end}: the connection with the prepared statement was reused");
    }

    // Without a lock timeout an autocommit statement runs unprepared, outside a transaction
    // block, and the reset follows it as a message of its own: the same two cases there.
    let (plain, _plain_db) = crate::support::tools(
        &db,
        &PgOptions { pool_size: 1, max_sessions: 1, ..options() },
        ToolConfig { lock_timeout: None, ..ToolConfig::default() },
        false,
    )
    .await;
    let pid = backend_pid(&plain, &me).await;
    let out = call(&plain, &me, "pg_query", write("INSERT INTO seeded VALUES (3)")).await;
    assert_eq!(code(&out), "ok", "{out}");
    let out = call(&plain, &me, "pg_query", read("SELECT random() AS r, pg_backend_pid() AS pid", None)).await;
    assert_eq!(out["rows"][0]["pid"], pid, "unprepared: the connection was not kept: {out}");
    assert_ne!(out["rows"][0]["r"].as_f64(), Some(seeded), "unprepared: the next caller got the seeded sequence");
    let out = call(&plain, &me, "pg_query", write("INSERT INTO preparing VALUES (3)")).await;
    assert_eq!(code(&out), "ok", "{out}");
    let out = call(&plain, &me, "pg_query", read(leftovers, None)).await;
    assert_eq!(out["rows"][0]["n"], 0, "unprepared: a prepared statement stayed on the pooled connection: {out}");
    assert_ne!(out["rows"][0]["pid"], pid, "unprepared: the connection with the prepared statement was reused");

    // Operators a user created for the operand types of the reseed's arithmetic, in a schema on
    // the search path, are not the ones it uses (they would fix the seed, and run as
    // ColdQuery's role): two resets in a row seed differently.
    side.batch_execute(
        "CREATE FUNCTION fixed(int8, numeric) RETURNS numeric LANGUAGE sql AS 'SELECT 0.5';
         CREATE OPERATOR public./ (LEFTARG = int8, RIGHTARG = numeric, FUNCTION = fixed);
         CREATE FUNCTION fixed_minus(numeric, int4) RETURNS numeric LANGUAGE sql AS 'SELECT 0.25';
         CREATE OPERATOR public.- (LEFTARG = numeric, RIGHTARG = int4, FUNCTION = fixed_minus);",
    )
    .await
    .unwrap();
    let mut draws = Vec::new();
    for n in [4, 5] {
        let out = call(&tools, &me, "pg_query", write(&format!("INSERT INTO seeded VALUES ({n})"))).await;
        assert_eq!(code(&out), "ok", "{out}");
        draws.push(next_random(None).await);
    }
    assert_eq!(draws[0].1, draws[1].1, "the same connection: {draws:?}");
    assert_ne!(draws[0].0, draws[1].0, "two resets gave the same seed: {draws:?}");

    // A session that opened a dblink connection: its backend is closed at the end, so the
    // dblink connection goes with it.
    let id = begin(&tools, &me, json!({})).await;
    let conn = db.url.replace('\'', "''");
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": format!("SELECT dblink_connect('cq', '{conn}')"), "session_id": id}),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    let status = call(&tools, &me, "pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(status["status"], "committed", "{status}");
    let mut open = 1;
    for _ in 0..50 {
        open = side
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dblink'", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "the dblink connection outlived its session");
}

/// Hostile statements are refused quickly and never take the process down; a small read made
/// meanwhile answers within a second.
#[tokio::test]
async fn statements_built_to_exhaust_the_classifier_are_refused_while_others_are_served() {
    let db = coldquery_tests::harness::test_db().await;
    let (tools, _db) = tools(&db, &options(), ToolConfig::default(), false).await;
    let tools = std::sync::Arc::new(tools);
    let cap = coldquery_core::MAX_SQL_BYTES;
    let fill = |unit: &str, head: &str, tail: &str| {
        let n = (cap - head.len() - tail.len()) / unit.len();
        format!("{head}{}{tail}", unit.repeat(n))
    };
    let worst: Vec<(&str, String)> = vec![
        ("parentheses at the size cap", format!("SELECT {}1{}", "(".repeat(cap / 2 - 8), ")".repeat(cap / 2 - 8))),
        ("a chain of operators at the size cap", fill("1+", "SELECT ", "1")),
        ("nested function calls", format!("SELECT {}1{}", "f(".repeat(cap / 3 - 4), ")".repeat(cap / 3 - 4))),
        ("nested subqueries", format!("SELECT {}1{}", "(SELECT ".repeat(cap / 10), ")".repeat(cap / 10))),
        ("many tokens in a flat list", fill("1,", "SELECT ", "1")),
        ("many function calls", fill("f(1),", "SELECT ", "1")),
        ("many column references", fill("a.b,", "SELECT ", "1")),
        ("a long AND chain", fill("a=1 AND ", "SELECT 1 WHERE ", "true")),
        ("casts on casts", fill("::int", "SELECT 1", "")),
        ("unary minus", fill("- ", "SELECT ", "1")),
    ];
    let me = caller("dos");
    let mut hostile = Vec::new();
    for (what, sql) in worst {
        assert!(sql.len() <= cap, "{what}: {} bytes", sql.len());
        let tools = tools.clone();
        let me = me.clone();
        hostile.push(tokio::spawn(async move {
            let started = Instant::now();
            let out = sessionless_read(&tools, &me, &sql).await;
            (what, code(&out), started.elapsed())
        }));
    }
    // Meanwhile, small reads keep being answered.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let out = call(&tools, &me, "pg_query", read("SELECT 1 AS one", None)).await;
        assert_eq!(out["rows"][0]["one"], 1, "{out}");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(slowest < Duration::from_secs(1), "a small read waited {slowest:?} behind hostile statements");
    for task in hostile {
        let (what, code, took) = task.await.expect("the call returned");
        eprintln!("hostile statement: {what}: {code} in {took:?}");
        assert!(
            ["STATEMENT_NOT_ALLOWED", "DATABASE_ERROR", "ok", "UNAVAILABLE"].contains(&code.as_str()),
            "{what}: {code}"
        );
        assert!(took < coldquery_tools::CLASSIFY_DEADLINE + Duration::from_secs(5), "{what}: {took:?}");
    }
    eprintln!("small reads during the hostile statements: slowest {slowest:?}");
    let out = call(&tools, &me, "pg_query", read("SELECT 2 AS two", None)).await;
    assert_eq!(out["rows"][0]["two"], 2, "the process serves calls after the hostile ones: {out}");
}

/// The policy cannot go stale: every function of the catalog — PostgreSQL's own and those of
/// every contrib extension this machine has — gets a verdict, and the allowed ones are a
/// reviewed list (the snapshot): a new PostgreSQL version or extension that adds a function
/// changes the snapshot and fails this test until someone has looked at it.
#[tokio::test]
async fn every_function_in_the_catalog_has_a_reviewed_verdict() {
    use coldquery_tools::FunctionPolicy;
    use coldquery_tools::functions::{DEFAULT_EXTENSIONS, HARMLESS_VOLATILE, NEVER_EXTENSIONS};

    let db = coldquery_tests::harness::test_db().await;
    let side = db.client().await;
    let available: Vec<String> = side
        .query("SELECT name FROM pg_available_extensions ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut created = Vec::new();
    for name in &available {
        let sql = format!("CREATE EXTENSION IF NOT EXISTS {} CASCADE", coldquery_tests::harness::quote_ident(name));
        if side.batch_execute(&sql).await.is_ok() {
            created.push(name.clone());
        }
    }
    assert!(created.len() >= 40, "contrib is installed: created {created:?} of {available:?}");
    let policy = FunctionPolicy::default();
    let statement = policy.verdicts_statement();
    let params: Vec<Option<String>> = statement.params.iter().map(coldquery_core::Param::to_text).collect();
    let typed: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), tokio_postgres::types::Type)> =
        params.iter().map(|p| (p as _, tokio_postgres::types::Type::TEXT)).collect();
    let rows = side.query_typed(statement.sql.text(), &typed).await.expect("the verdicts query runs");
    let mut allowed = std::collections::BTreeSet::new();
    let mut refused = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    let mut prechecked = Vec::new();
    for row in &rows {
        let signature: String = row.get("signature");
        let name: String = row.get("name");
        let volatility: String = row.get("volatility");
        let extension: Option<String> = row.get("extension");
        let builtin: bool = row.get("builtin");
        let refusal: Option<String> = row.get("refusal");
        let harmless_volatile = HARMLESS_VOLATILE.contains(&name.as_str());
        match &refusal {
            None => {
                let origin = match (&extension, builtin) {
                    (Some(e), _) => e.clone(),
                    (None, true) => "builtin".to_owned(),
                    (None, false) => "user".to_owned(),
                };
                if volatility == "v" && !harmless_volatile {
                    problems.push(format!("{signature}: volatile and allowed"));
                }
                if let Some(e) = &extension
                    && (NEVER_EXTENSIONS.contains(&e.as_str()) || !DEFAULT_EXTENSIONS.contains(&e.as_str()))
                {
                    problems.push(format!("{signature}: allowed, of extension {e}"));
                }
                if !builtin && extension.is_none() {
                    problems.push(format!("{signature}: a user-defined function is allowed"));
                }
                if policy.precheck_pattern(&name).is_some() {
                    prechecked.push((signature.clone(), name.clone()));
                }
                allowed.insert(format!("{origin} {name}"));
            }
            Some(_) => {
                refused.insert(name.clone());
            }
        }
    }
    // The precheck refuses by name: each name it refuses has at least one overload the catalog
    // check refuses too (it is never a list of harmless functions).
    for (signature, name) in prechecked {
        if !refused.contains(&name) {
            problems.push(format!("{signature}: refused only by the precheck ({:?})", policy.precheck_pattern(&name)));
        }
    }
    assert!(problems.is_empty(), "{} verdict problem(s):\n{}", problems.len(), problems.join("\n"));
    // Names that are both allowed and refused (overloads) count as refused for a read.
    eprintln!(
        "pg_proc: {} functions enumerated ({} extensions created); {} distinct allowed names, {} distinct refused names",
        rows.len(),
        created.len(),
        allowed.len(),
        refused.len()
    );
    // Every refused name is refused end to end, through the server-side check.
    let (tools, _db) = tools(&db, &options(), ToolConfig::default(), false).await;
    let me = caller("catalog");
    let mut leaks = Vec::new();
    for name in &refused {
        let sql = format!("SELECT {}()", coldquery_tests::harness::quote_ident(name));
        let out = call(&tools, &me, "pg_query", read(&sql, None)).await;
        if code(&out) != NA {
            leaks.push(format!("{sql} → {out}"));
        }
    }
    assert!(leaks.is_empty(), "{} refused function(s) got through:\n{}", leaks.len(), leaks.join("\n"));
    let allowed: Vec<&String> = allowed.iter().collect();
    insta::assert_yaml_snapshot!("functions_reads_may_call", allowed);
}

/// Defence in depth: reads may run on a connection of their own, as a role that holds no
/// rights beyond reading, so PostgreSQL itself refuses what the policy was told to allow; the
/// role's posture is reported either way.
#[tokio::test]
async fn reads_can_run_as_a_least_privileged_role_and_the_posture_says_which_rights_are_held() {
    use coldquery_pg::{Database, PgConfig};
    use coldquery_tests::harness::RO_ROLE;

    let db = coldquery_tests::harness::test_db().await;
    let side = db.client().await;
    side.batch_execute(&format!(
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1);
         CREATE FUNCTION peek() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('PG_VERSION') $$;
         GRANT SELECT ON t TO {RO_ROLE}"
    ))
    .await
    .unwrap();
    let me = caller("posture");
    let mut config = ToolConfig::default();
    config.functions.allow_functions("public.peek").unwrap();

    // As the superuser: the posture names the rights, and the allowed function reads a file.
    let (superuser, _db) = tools(&db, &options(), config.clone(), false).await;
    let warning = superuser.role_posture(&me).await.unwrap().expect("a superuser is reported");
    assert!(warning.contains("superuser") && warning.contains("--read-database-url"), "{warning}");
    let out = call(&superuser, &me, "pg_query", read("SELECT peek() AS v", None)).await;
    assert_eq!(code(&out), "ok", "{out}");

    // Reads on a connection of their own, as a role with SELECT only.
    let main = PgConfig::from_env_and_url(Some(&db.url), &|_| None).unwrap();
    let reads = PgConfig::from_env_and_url(Some(&db.url_as(RO_ROLE)), &|_| None).unwrap();
    let database = Database::connect_with_reads(&main, Some(&reads), &options()).await.unwrap();
    let split = coldquery_tools::Tools::new(
        database.executor.clone(),
        database.sessions.clone(),
        std::sync::Arc::new(coldquery_core::DefaultDeny { read_only: false }),
        config,
    );
    assert_eq!(split.role_posture(&me).await.unwrap(), None, "the reader role holds no such right");
    let out = call(&split, &me, "pg_query", read("SELECT current_user AS who, a FROM t", None)).await;
    assert_eq!(out["rows"][0]["who"], RO_ROLE, "{out}");
    let out = call(&split, &me, "pg_query", read("SELECT peek() AS v", None)).await;
    assert_eq!(code(&out), "DATABASE_ERROR", "PostgreSQL refuses the reader role: {out}");
    assert_eq!(out["error"]["sqlstate"], "42501", "{out}");
    let health = call(&split, &me, "pg_monitor", json!({"action": "health", "deep": true})).await;
    let check = health["checks"].as_array().unwrap().iter().find(|c| c["name"] == "role_posture").cloned();
    assert_eq!(check.as_ref().map(|c| c["status"].clone()), Some(json!("ok")), "{health}");
    // Sessions keep the main connection (they may write).
    let id = begin(&split, &me, json!({})).await;
    let out = call(&split, &me, "pg_query", read("SELECT current_user AS who", Some(&id))).await;
    assert_eq!(out["rows"][0]["who"], "postgres", "{out}");
    call(&split, &me, "pg_tx", json!({"action": "rollback", "session_id": id})).await;
}

/// Values of types ColdQuery does not decode are rendered by the server, which receives their
/// binary form and so runs the type's input checks: a domain's CHECK can call any function, a
/// user's included. Rendering a read's values (after the read's ROLLBACK) ran such a function
/// outside any transaction, so a read committed a write; a session's rendering ran it in the
/// caller's transaction. Neither changes data now.
#[tokio::test]
async fn rendering_a_value_changes_no_data() {
    let db = coldquery_tests::harness::test_db().await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE side_effects (n int);
         CREATE FUNCTION note_it(v int) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN INSERT INTO side_effects VALUES (v); RETURN true; END $$;
         CREATE DOMAIN noted AS int CHECK (note_it(VALUE));
         CREATE TYPE holder AS (a noted);
         CREATE TABLE held (h holder);
         INSERT INTO held VALUES (ROW(7)::holder);
         DELETE FROM side_effects;",
    )
    .await
    .unwrap();
    let (tools, _db) = tools(&db, &options(), ToolConfig::default(), false).await;
    let me = caller("renderer");
    let effects = || async { side.query_one("SELECT count(*) FROM side_effects", &[]).await.unwrap().get::<_, i64>(0) };

    let out = call(&tools, &me, "pg_query", json!({"action": "read", "sql": "SELECT h FROM held"})).await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["rows"][0]["h"].as_str().map(|h| h.starts_with("\\x")), Some(true), "kept as bytes: {out}");
    assert_eq!(effects().await, 0, "a read's rendering wrote: {out}");

    let id = begin(&tools, &me, json!({})).await;
    let out =
        call(&tools, &me, "pg_query", json!({"action": "read", "sql": "SELECT h FROM held", "session_id": id})).await;
    assert_eq!(code(&out), "ok", "{out}");
    let out = call(&tools, &me, "pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(out["status"], "committed", "{out}");
    assert_eq!(effects().await, 0, "a session's rendering wrote");

    let out = autocommit_write(&tools, &me, "UPDATE held SET h = h RETURNING h").await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["rows"][0]["h"], "(7)", "rendered inside the write's transaction: {out}");
    assert_eq!(effects().await, 0, "the rendering of a write's RETURNING value wrote: {out}");
}
