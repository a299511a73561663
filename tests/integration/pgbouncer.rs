//! ColdQuery's sessionless path behind PgBouncer in transaction pooling mode (SPEC §9), with
//! Debian's PgBouncer 1.18, which has no prepared-statement tracking: consecutive transactions
//! of one ColdQuery connection land on different server connections (`server_round_robin`),
//! so any named statement that outlived its transaction would fail here.

use std::time::{Duration, Instant};

use coldquery_core::{Access, CancellationToken, ErrorKind, Executor, Limits, Param, Sql, Statement, TxOptions};
use coldquery_pg::{Database, PgConfig, PgOptions};
use coldquery_tests::harness::{PGBOUNCER_POOL_SIZE, PgBouncer, TestDb, pgbouncer_for, test_db};
use serde_json::json;

use crate::support::{count, limits, options};

/// The test database behind a fresh PgBouncer, and ColdQuery connected through it. `None` (and
/// a note on stderr) when PgBouncer is not installed outside CI; under CI that panics.
async fn behind_pgbouncer(options: PgOptions) -> Option<(TestDb, PgBouncer, Database)> {
    let db = test_db().await;
    let Some(bouncer) = pgbouncer_for(&db).await else {
        eprintln!("SKIPPED: pgbouncer is not installed (apt-get install pgbouncer); under CI this test fails");
        return None;
    };
    let url = bouncer.url_for(&db.name);
    let config = PgConfig::from_env_and_url(Some(&url), &|_| None).expect("the PgBouncer URL parses");
    let cq = Database::connect(&config, &options)
        .await
        .unwrap_or_else(|err| panic!("ColdQuery connects through PgBouncer: {err}\n{}", bouncer.log_tail(20)));
    Some((db, bouncer, cq))
}

async fn exec(
    cq: &Database,
    access: Access,
    sql: &'static str,
    params: Vec<Param>,
    limits: &Limits,
) -> coldquery_core::Result<coldquery_core::QueryResult> {
    cq.executor.run(access, &Statement::with_params(Sql::catalog(sql), params), limits, &CancellationToken::new()).await
}

/// PgBouncer's own count of transactions for `dbname` (admin console, simple protocol).
async fn pgbouncer_transactions(bouncer: &PgBouncer, dbname: &str) -> i64 {
    let admin = coldquery_tests::harness::connect(&bouncer.url_for("pgbouncer")).await;
    let messages = admin.simple_query("SHOW STATS").await.expect("SHOW STATS");
    messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) if row.get("database") == Some(dbname) => {
                row.get("total_xact_count").and_then(|n| n.parse().ok())
            }
            _ => None,
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessionless_path_works_through_pgbouncer_in_transaction_mode() {
    let Some((db, bouncer, cq)) = behind_pgbouncer(PgOptions { pool_size: 4, ..options() }).await else { return };
    let side = db.client().await;
    side.batch_execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE items (id int PRIMARY KEY, name text, mood mood, tags hstore);
         INSERT INTO items
             SELECT g, 'item ' || g, CASE WHEN g % 2 = 0 THEN 'happy' ELSE 'sad' END::mood, hstore('n', g::text)
             FROM generate_series(1, 100) g;
         CREATE TABLE log (id int, note text);
",
    )
    .await
    .unwrap();
    let defaults = limits(Duration::from_secs(30));

    // Many concurrent reads with parameters, on both paths (read-only transaction and one
    // unnamed statement), including types that tokio-postgres must look up in the catalog.
    let mut tasks = Vec::new();
    for task in 0..8i64 {
        let cq = cq.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25i64 {
                let id = (task * 25 + i) % 100 + 1;
                let access = if i % 2 == 0 { Access::ReadOnly } else { Access::Autocommit };
                // Custom types (an enum, hstore) only in read-only transactions: tokio-postgres
                // looks a type up with a named statement it keeps, which behind PgBouncer 1.18 is
                // only safe inside one transaction (see the report on driver type lookups).
                let result = exec(
                    &cq,
                    Access::ReadOnly,
                    "SELECT id, name, mood, tags FROM items WHERE id = $1",
                    vec![Param::Int(id)],
                    &defaults,
                )
                .await
                .unwrap_or_else(|err| panic!("read {id} ({access:?}): {err}"));
                let mood = if id % 2 == 0 { "happy" } else { "sad" };
                assert_eq!(
                    result.rows,
                    vec![vec![json!(id), json!(format!("item {id}")), json!(mood), json!(format!("\"n\"=>\"{id}\""))]],
                    "{access:?}"
                );
                let result = exec(
                    &cq,
                    access,
                    "SELECT $1::text || $2::text AS joined, $3::int + 1 AS next",
                    vec![Param::Text("a".into()), Param::Text(id.to_string()), Param::Int(id)],
                    &defaults,
                )
                .await
                .unwrap_or_else(|err| panic!("read with params ({access:?}): {err}"));
                assert_eq!(result.rows, vec![vec![json!(format!("a{id}")), json!(id + 1)]]);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    // An autocommit write.
    let result = exec(
        &cq,
        Access::Autocommit,
        "INSERT INTO log VALUES ($1, $2)",
        vec![Param::Int(1), Param::Text("autocommit".into())],
        &defaults,
    )
    .await
    .unwrap();
    assert_eq!(result.rows_affected, Some(1));
    assert_eq!(count(&side, "SELECT count(*) FROM log WHERE id = 1").await, 1);

    // An atomic batch commits as a whole, and a failing one leaves nothing behind.
    let batch = [
        Statement::with_params(Sql::catalog("INSERT INTO log VALUES ($1, 'batch')"), vec![Param::Int(2)]),
        Statement::with_params(Sql::catalog("INSERT INTO log VALUES ($1, 'batch')"), vec![Param::Int(3)]),
        Statement::with_params(
            Sql::catalog("UPDATE items SET name = $1 WHERE id = $2 RETURNING mood"),
            vec![Param::Text("renamed".into()), Param::Int(2)],
        ),
    ];
    let results = cq.executor.batch(&batch, &TxOptions::default(), &defaults, &CancellationToken::new()).await.unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[2].rows, vec![vec![json!("happy")]]);
    assert_eq!(count(&side, "SELECT count(*) FROM log WHERE note = 'batch'").await, 2);
    let failing = [
        Statement::with_params(Sql::catalog("INSERT INTO log VALUES ($1, 'doomed')"), vec![Param::Int(4)]),
        Statement::with_params(
            Sql::catalog("INSERT INTO log VALUES ($1::int, 'doomed')"),
            vec![Param::Text("x".into())],
        ),
    ];
    let err =
        cq.executor.batch(&failing, &TxOptions::default(), &defaults, &CancellationToken::new()).await.unwrap_err();
    assert_eq!(err.operation_index(), Some(1), "{err}");
    assert_eq!(err.sqlstate(), Some("22P02"), "{err}");
    assert_eq!(count(&side, "SELECT count(*) FROM log WHERE note = 'doomed'").await, 0);

    // A capped read stops early (each row costs 20 ms on the server) and is cancelled there.
    let capped = Limits { max_rows: 5, max_bytes: 1 << 20, timeout: Duration::from_secs(60), lock_timeout: None };
    let result = exec(
        &cq,
        Access::ReadOnly,
        "SELECT g, pg_sleep(0.02) FROM generate_series(1, $1::int) g",
        vec![Param::Int(100_000)],
        &capped,
    )
    .await
    .unwrap();
    assert!(result.truncated);
    assert_eq!(result.rows.len(), 5);

    // A timeout cancels the statement on the server, through PgBouncer's cancel forwarding. (A
    // CancelRequest whose socket closes before PgBouncer 1.18 has forwarded it crashes PgBouncer;
    // the calls after this one, and SHOW STATS at the end, prove it is still up.)
    let started = Instant::now();
    let err = exec(&cq, Access::ReadOnly, "SELECT pg_sleep(30)", Vec::new(), &limits(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let gone = Instant::now();
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                    AND (query LIKE '%pg_sleep(30)%' OR query LIKE '%pg_sleep(0.02)%') AND pid <> pg_backend_pid()";
    while count(&side, sleeping).await > 0 {
        assert!(gone.elapsed() < Duration::from_secs(2), "the cancelled statements still run on the server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let next = Instant::now();
    let one = exec(&cq, Access::Autocommit, "SELECT 1 AS one", Vec::new(), &defaults).await.unwrap();
    assert_eq!(one.rows, vec![vec![json!(1)]]);
    assert!(next.elapsed() < Duration::from_secs(5));

    // It all really went through PgBouncer.
    let transactions = pgbouncer_transactions(&bouncer, &db.name).await;
    assert!(transactions >= 400, "PgBouncer saw {transactions} transactions");
    drop(cq);
    drop(side);
}

/// tokio-postgres looks up an unknown column type with a named statement it keeps per client
/// connection. Behind a transaction pooler a connection's next transaction may land on another
/// server connection, where that statement does not exist; ColdQuery notices the move (the
/// server process id changes) and begins on another connection instead. Every read below
/// needs a type the connection has not seen yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_custom_types_survive_moves_between_server_connections() {
    let Some((db, bouncer, cq)) = behind_pgbouncer(PgOptions { pool_size: 2, ..options() }).await else { return };
    // Make PgBouncer open several server connections, so that round robin moves ColdQuery's
    // transactions between them.
    let url = bouncer.url_for(&db.name);
    let mut sleepers = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        sleepers.push(tokio::spawn(async move {
            let client = coldquery_tests::harness::connect(&url).await;
            client.simple_query("SELECT pg_sleep(0.3)").await.expect("sleep through PgBouncer");
        }));
    }
    for sleeper in sleepers {
        sleeper.await.unwrap();
    }
    db.client()
        .await
        .batch_execute(
            "CREATE TYPE e1 AS ENUM ('a1'); CREATE TYPE e2 AS ENUM ('a2'); CREATE TYPE e3 AS ENUM ('a3');
             CREATE TYPE e4 AS ENUM ('a4'); CREATE TYPE e5 AS ENUM ('a5'); CREATE TYPE e6 AS ENUM ('a6');
             CREATE TYPE pair AS (n int, label text);
             CREATE TABLE kinds (c1 e1, c2 e2, c3 e3, c4 e4, c5 e5, c6 e6, p pair);
             INSERT INTO kinds VALUES ('a1', 'a2', 'a3', 'a4', 'a5', 'a6', ROW(7, 'seven'));",
        )
        .await
        .expect("fixture");
    let reads: [(&'static str, serde_json::Value); 7] = [
        ("SELECT c1 FROM kinds", json!("a1")),
        ("SELECT c2 FROM kinds", json!("a2")),
        ("SELECT c3 FROM kinds", json!("a3")),
        ("SELECT c4 FROM kinds", json!("a4")),
        ("SELECT c5 FROM kinds", json!("a5")),
        ("SELECT c6 FROM kinds", json!("a6")),
        ("SELECT p FROM kinds", json!("(7,seven)")),
    ];
    let defaults = limits(Duration::from_secs(30));
    for round in 0..3 {
        for (sql, expected) in &reads {
            let result = exec(&cq, Access::ReadOnly, sql, Vec::new(), &defaults)
                .await
                .unwrap_or_else(|err| panic!("round {round}, {sql}: {err}"));
            assert_eq!(result.rows, vec![vec![expected.clone()]], "{sql}");
        }
    }
}

/// Sessions behind PgBouncer in transaction mode: a session's transaction pins one
/// server connection, and its end — COMMIT or ROLLBACK, also after an error aborted it — runs
/// the reset in the same message, so the reset cleans that server connection rather than
/// whichever one PgBouncer hands out next. Checked on the server connection itself: its locks
/// and temporary tables from a side connection, its settings from a later session that lands on
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_through_pgbouncer_leave_nothing_on_their_server_connection() {
    // Up to PGBOUNCER_POOL_SIZE sessions open at once (below).
    let Some((db, _bouncer, cq)) = behind_pgbouncer(PgOptions { pool_size: 6, max_sessions: 5, ..options() }).await
    else {
        return;
    };
    let side = db.client().await;
    side.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").await.unwrap();
    let tools = coldquery_tools::Tools::new(
        cq.executor.clone(),
        cq.sessions.clone(),
        std::sync::Arc::new(coldquery_core::DefaultDeny { read_only: false }),
        coldquery_tools::ToolConfig::default(),
    );
    let (me, other) = (crate::support::caller("alice"), crate::support::caller("bob"));
    let tx = |who: &coldquery_tools::Caller, args: serde_json::Value| {
        let (tools, who) = (&tools, who.clone());
        async move { crate::support::call(tools, &who, "pg_tx", args).await }
    };
    let query = |who: &coldquery_tools::Caller, action: &str, id: &str, sql: &str| {
        let (tools, who) = (&tools, who.clone());
        let args = json!({"action": action, "sql": sql, "session_id": id});
        async move { crate::support::call(tools, &who, "pg_query", args).await }
    };
    let code = crate::support::code;
    let pid_of = |out: serde_json::Value| out["rows"][0]["pid"].as_i64().unwrap_or_else(|| panic!("{out}"));
    // Three sessions at once make PgBouncer open three server connections; with
    // `server_round_robin` it then hands out the one idle longest, so a message sent after a
    // session's transaction ended would land on another server connection than the session's.
    let mut warm = Vec::new();
    for _ in 0..3 {
        let begun = tx(&me, json!({"action": "begin"})).await;
        let id = begun["session_id"].as_str().unwrap_or_else(|| panic!("{begun}")).to_owned();
        warm.push((pid_of(query(&me, "read", &id, "SELECT pg_backend_pid() AS pid").await), id));
    }
    for (_, id) in &warm {
        assert_eq!(code(&tx(&me, json!({"action": "rollback", "session_id": id})).await), "ok");
    }
    let mut servers: Vec<i64> = warm.iter().map(|(pid, _)| *pid).collect();
    servers.sort_unstable();
    servers.dedup();
    assert_eq!(servers.len(), 3, "three server connections: {servers:?}");
    let mut landed = Vec::new();
    for (n, end) in ["commit", "rollback", "aborted"].into_iter().enumerate() {
        let begun = tx(&me, json!({"action": "begin"})).await;
        let id = begun["session_id"].as_str().unwrap_or_else(|| panic!("{begun}")).to_owned();
        let pid = pid_of(query(&me, "read", &id, "SELECT pg_backend_pid() AS pid").await);
        for sql in [
            "SET search_path = evil, public",
            "SET work_mem = '64kB'",
            "SELECT set_config('coldquery.test', 'leaked', false)",
            "CREATE TEMP TABLE scratch (a int)",
            "SELECT pg_advisory_lock(4242)",
            "CREATE TEMP SEQUENCE tseq",
            "SELECT nextval('tseq')",
        ] {
            let out = query(&me, "write", &id, sql).await;
            assert_eq!(code(&out), "ok", "{sql}: {out}");
        }
        let insert = format!("INSERT INTO t VALUES ({n})");
        assert_eq!(code(&query(&me, "write", &id, &insert).await), "ok");
        let held =
            count(&side, &format!("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = {pid}")).await;
        assert_eq!(held, 1, "{end}: the session's server connection holds its advisory lock");
        let out = match end {
            "aborted" => {
                let failed = query(&me, "write", &id, "SELECT 1 / 0").await;
                assert_ne!(code(&failed), "ok", "{failed}");
                tx(&me, json!({"action": "rollback", "session_id": id})).await
            }
            _ => tx(&me, json!({"action": end, "session_id": id})).await,
        };
        assert_eq!(code(&out), "ok", "{end}: {out}");

        // On the server connection the session ran on: no advisory lock, no temporary table.
        let locks =
            count(&side, &format!("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = {pid}")).await;
        assert_eq!(locks, 0, "{end}: the advisory lock was released on the session's server connection");
        let temp = count(&side, "SELECT count(*) FROM pg_class WHERE relname IN ('scratch', 'tseq')").await;
        assert_eq!(temp, 0, "{end}: the temporary table and sequence were dropped");

        // A later session that lands on the same server connection sees the defaults. As many
        // sessions open at once as PgBouncer has server connections (`default_pool_size`) hold
        // one each, so one of them is the session's: which one PgBouncer hands out next
        // depends on the order in which they went idle, not on anything checked here.
        let mut open = Vec::new();
        let mut found = false;
        for _ in 0..PGBOUNCER_POOL_SIZE {
            let begun = tx(&other, json!({"action": "begin"})).await;
            let next = begun["session_id"].as_str().unwrap_or_else(|| panic!("{begun}")).to_owned();
            let out = query(
                &other,
                "read",
                &next,
                "SELECT pg_backend_pid() AS pid, current_setting('search_path') AS search_path,
                        current_setting('work_mem') AS work_mem,
                        coalesce(current_setting('coldquery.test', true), '') AS custom",
            )
            .await;
            if pid_of(out.clone()) == pid {
                let row = &out["rows"][0];
                assert_eq!(row["search_path"], "\"$user\", public", "{end}: {out}");
                assert_eq!(row["work_mem"], "4MB", "{end}: {out}");
                assert_eq!(row["custom"], "", "{end}: {out}");
                let seq = query(&other, "read", &next, "SELECT currval('tseq')").await;
                assert_ne!(code(&seq), "ok", "{end}: the temporary sequence is gone: {seq}");
                found = true;
            }
            open.push(next);
            if found {
                break;
            }
        }
        for next in open {
            assert_eq!(code(&tx(&other, json!({"action": "rollback", "session_id": next})).await), "ok");
        }
        assert!(found, "{end}: a later session landed on server connection {pid}");
        landed.push(pid);
    }
    assert_eq!(count(&side, "SELECT count(*) FROM t").await, 1, "only the committed session's row");
    assert_eq!(count(&side, "SELECT count(*) FROM t WHERE id = 0").await, 1);
    eprintln!("sessions through PgBouncer ran on server connections {landed:?}, each clean afterwards");
    coldquery_tests::figures::record(
        "pgbouncer_sessions",
        json!({"server_connections": servers.len(), "sessions_checked": landed.len(), "ends": ["commit", "rollback", "rollback after an error"], "left_behind": 0}),
    );
}
