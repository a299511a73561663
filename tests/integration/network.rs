//! The network fails: the harness database behind a TCP fault proxy owned by the test
//! (`coldquery_tests::proxy`), which stalls (forwards nothing, sockets stay open), resets (RST
//! both ways) or slows the path, during a sessionless read, an autocommit write, a session
//! statement, a session COMMIT, and while connections sit idle between calls.
//!
//! Every call ends with a clear error within a documented bound, the pooled connection is
//! replaced and the next call is served once the path heals, a COMMIT whose fate ColdQuery
//! cannot know is `COMMIT_OUTCOME_UNKNOWN` (and the row's real state is then read on a side
//! connection that does not go through the proxy), and nothing uncommitted is ever visible.
//!
//! The settings are short so the tests are quick: statement timeout `S` = 2 s and
//! `tcp_user_timeout=2000` in the URL, which makes the step timeout `T` = 2 s (the bound of
//! every step without a deadline of its own) and the cancel bound `C` = min(5 s, T) = 2 s.
//! The bounds (docs/RELIABILITY.md): a statement on a stalled path fails within S + 2C (the
//! deadline, the CancelRequest that stalls too, the wait for the statement's end); a step
//! (BEGIN, COMMIT, ROLLBACK, the statement's preparation in a session) within T.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coldquery_core::{DefaultDeny, Executor};
use coldquery_pg::{Database, PgConfig, PgOptions};
use coldquery_tests::figures;
use coldquery_tests::harness::{TestDb, test_db};
use coldquery_tests::proxy::{Direction, Fault, FaultProxy};
use coldquery_tools::{Caller, ToolConfig, Tools};
use serde_json::{Value, json};

use crate::support::{call, caller, code, count};

/// The statement timeout of these tests.
const S: Duration = Duration::from_secs(2);
/// The step timeout (`tcp_user_timeout=2000`).
const T: Duration = Duration::from_secs(2);
/// The cancel bound, min(5 s, T).
const C: Duration = Duration::from_secs(2);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

/// The test database behind a fault proxy, ColdQuery's tools connected through it, and a side
/// connection that is not.
struct Net {
    /// Keeps the test database alive.
    _db: TestDb,
    proxy: FaultProxy,
    tools: Tools,
    database: Database,
    me: Caller,
    side: tokio_postgres::Client,
    /// (case, code, milliseconds) of every call made under a fault or just after one.
    seen: Vec<Value>,
    /// Faults after which the next read and write were served.
    recovered: u64,
}

impl Net {
    async fn new() -> Net {
        Net::with(ToolConfig { statement_timeout: S, ..ToolConfig::default() }).await
    }

    async fn with(tool_config: ToolConfig) -> Net {
        let db = test_db().await;
        let side = db.client().await;
        side.batch_execute("CREATE TABLE net_items (id int PRIMARY KEY)").await.unwrap();
        let direct: tokio_postgres::Config = db.url.parse().unwrap();
        let port = direct.get_ports().first().copied().unwrap_or(5432);
        let proxy = FaultProxy::start(([127, 0, 0, 1], port).into()).await.expect("the proxy listens");
        let url = format!(
            "postgresql://postgres@{}/{}?sslmode=disable&tcp_user_timeout={}&connect_timeout=2",
            proxy.addr(),
            db.name,
            T.as_millis()
        );
        let config = PgConfig::from_env_and_url(Some(&url), &|_| None).expect("the proxy URL parses");
        assert_eq!(config.step_timeout(), T);
        let options = PgOptions {
            max_sessions: 3,
            pool_size: 3,
            acquire_timeout: Duration::from_secs(2),
            ..PgOptions::default()
        };
        let database = Database::connect(&config, &options).await.expect("ColdQuery connects through the proxy");
        let tools = Tools::new(
            database.executor.clone(),
            database.sessions.clone(),
            Arc::new(DefaultDeny { read_only: false }),
            tool_config,
        );
        Net { _db: db, proxy, tools, database, me: caller("net"), side, seen: Vec::new(), recovered: 0 }
    }

    async fn call(&self, tool: &str, args: Value) -> Value {
        call(&self.tools, &self.me, tool, args).await
    }

    /// Runs a call, asserts its code and that it ended within `bound`, and records it.
    async fn expect(&mut self, case: &str, tool: &str, args: Value, codes: &[&str], bound: Duration) -> Value {
        let started = Instant::now();
        let out = self.call(tool, args).await;
        let took = started.elapsed();
        eprintln!("{case}: {} in {took:?}: {out}", code(&out));
        assert!(codes.contains(&code(&out).as_str()), "{case}: expected one of {codes:?}, got {out}");
        assert!(took <= bound, "{case}: took {took:?}, more than the bound {bound:?}");
        if code(&out) != "ok" {
            assert!(out["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{case}: a clear message");
        }
        self.seen
            .push(json!({"case": case, "code": code(&out), "ms": took.as_millis(), "bound_ms": bound.as_millis()}));
        out
    }

    async fn read(&self) -> Value {
        self.call("pg_query", json!({"action": "read", "sql": "SELECT count(*) AS n FROM net_items"})).await
    }

    /// Sessionless calls are served again (the broken pooled connections were replaced).
    async fn served_again(&mut self, case: &str) {
        self.proxy.heal();
        let out = self.expect(&format!("{case}: next read"), "pg_query", read_args(), &["ok"], T + SLACK).await;
        assert!(out["rows"][0]["n"].is_number(), "{out}");
        let out = self
            .expect(
                &format!("{case}: next write"),
                "pg_query",
                json!({"action": "write", "sql": "UPDATE net_items SET id = id WHERE false", "autocommit": true}),
                &["ok"],
                T + SLACK,
            )
            .await;
        assert_eq!(code(&out), "ok", "{out}");
        self.recovered += 1;
    }

    /// Resets every connection (dropping what the proxy held, so the outcome is final), then
    /// lets traffic flow again.
    async fn reset_and_heal(&self) {
        self.proxy.reset();
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.proxy.heal();
    }

    /// Whether row `id` is committed, read on the side connection (not through the proxy).
    async fn committed(&self, id: i32) -> bool {
        count(&self.side, &format!("SELECT count(*) FROM net_items WHERE id = {id}")).await == 1
    }

    /// Waits until no ColdQuery backend of this database is in a transaction; returns how long.
    async fn no_open_transaction(&self, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let open = count(
                &self.side,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'coldquery' AND xact_start IS NOT NULL",
            )
            .await;
            if open == 0 {
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "{open} ColdQuery transaction(s) still open after {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn begin(&self) -> String {
        let begun = self.call("pg_tx", json!({"action": "begin"})).await;
        assert_eq!(code(&begun), "ok", "{begun}");
        begun["session_id"].as_str().unwrap().to_owned()
    }

    async fn insert_in(&self, session: &str, id: i32) {
        let wrote = self
            .call(
                "pg_query",
                json!({"action": "write", "sql": format!("INSERT INTO net_items VALUES ({id})"), "session_id": session}),
            )
            .await;
        assert_eq!(code(&wrote), "ok", "{wrote}");
    }

    fn record(&self, name: &str) {
        let c = self.proxy.counters();
        let ordering = std::sync::atomic::Ordering::Relaxed;
        figures::record(
            name,
            json!({
                "faults_injected": c.faults.load(ordering),
                "recovered_after": self.recovered,
                "errors_by_code": self.seen.iter().fold(serde_json::Map::new(), |mut by, s| {
                    let code = s["code"].as_str().unwrap_or("?").to_owned();
                    let n = by.get(&code).and_then(Value::as_u64).unwrap_or(0);
                    by.insert(code, json!(n + 1));
                    by
                }),
                "connections_through_proxy": c.connections.load(ordering),
                "connections_reset": c.resets.load(ordering),
                "settings": {"statement_timeout_ms": S.as_millis(), "step_timeout_ms": T.as_millis(), "cancel_ms": C.as_millis()},
                "calls": self.seen,
                "pool_after": format!("{:?}", self.database.executor.pool_status()),
            }),
        );
    }
}

fn read_args() -> Value {
    json!({"action": "read", "sql": "SELECT count(*) AS n FROM net_items"})
}

fn autocommit_insert(id: i32) -> Value {
    json!({"action": "write", "sql": format!("INSERT INTO net_items VALUES ({id})"), "autocommit": true})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessionless_read_on_a_failing_network_fails_clearly_and_the_next_one_is_served() {
    let mut net = Net::new().await;
    assert_eq!(code(&net.read().await), "ok");

    // Stall: the request is held; the deadline fires, the CancelRequest stalls too.
    net.proxy.arm(Direction::ToServer, b"FROM net_items WHERE id > 0", Fault::Stall);
    let read = json!({"action": "read", "sql": "SELECT count(*) AS n FROM net_items WHERE id > 0"});
    let out = net.expect("read, stall", "pg_query", read.clone(), &["TIMEOUT"], S + C * 2 + SLACK).await;
    assert!(!net.proxy.armed(), "the stall struck");
    assert_eq!(out["error"]["sqlstate"], "57014", "{out}");
    net.served_again("read, stall").await;

    // Stall of the reply: the statement ran, its rows are held.
    net.proxy.arm(Direction::ToClient, b"FROM net_items WHERE id > 0", Fault::Stall);
    let rows = json!({"action": "read", "sql": "SELECT 'FROM net_items WHERE id > 0' AS marker"});
    net.expect("read, reply stalled", "pg_query", rows, &["TIMEOUT"], S + C * 2 + SLACK).await;
    assert!(!net.proxy.armed(), "the stall struck");
    net.served_again("read, reply stalled").await;

    // Reset: the connection is gone at once.
    net.proxy.arm(Direction::ToServer, b"FROM net_items WHERE id > 0", Fault::Reset);
    net.expect("read, reset", "pg_query", read, &["UNAVAILABLE"], SLACK).await;
    assert!(!net.proxy.armed(), "the reset struck");
    net.served_again("read, reset").await;
    net.no_open_transaction(T).await;
    net.record("network_sessionless_read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autocommit_write_on_a_failing_network_never_claims_an_outcome_it_cannot_know() {
    // Without a lock timeout an autocommit write is one unnamed statement that commits as it
    // ends: losing the request or the reply leaves its outcome unknown.
    let mut net = Net::with(ToolConfig { statement_timeout: S, lock_timeout: None, ..ToolConfig::default() }).await;

    // The request is held: the write never ran, but ColdQuery cannot know that.
    net.proxy.arm(Direction::ToServer, b"VALUES (1)", Fault::Stall);
    net.expect("write, stall", "pg_query", autocommit_insert(1), &["COMMIT_OUTCOME_UNKNOWN"], S + C * 2 + SLACK).await;
    assert!(!net.proxy.armed());
    // Drop what the proxy held, so the real state is final, then read it.
    net.reset_and_heal().await;
    assert!(!net.committed(1).await, "the held write never reached the server");
    net.served_again("write, stall").await;

    // The reply is held: the write committed, its acknowledgement is lost.
    net.proxy.arm(Direction::ToClient, b"INSERT 0 1", Fault::Stall);
    net.expect("write, ack stalled", "pg_query", autocommit_insert(2), &["COMMIT_OUTCOME_UNKNOWN"], S + C * 2 + SLACK)
        .await;
    assert!(!net.proxy.armed());
    assert!(net.committed(2).await, "the write committed before its acknowledgement was lost");
    net.served_again("write, ack stalled").await;

    // Reset before the request arrives, and after the reply left the server.
    net.proxy.arm(Direction::ToServer, b"VALUES (3)", Fault::Reset);
    net.expect("write, reset", "pg_query", autocommit_insert(3), &["COMMIT_OUTCOME_UNKNOWN"], SLACK).await;
    assert!(!net.committed(3).await);
    net.served_again("write, reset").await;
    net.proxy.arm(Direction::ToClient, b"INSERT 0 1", Fault::Reset);
    net.expect("write, ack reset", "pg_query", autocommit_insert(4), &["COMMIT_OUTCOME_UNKNOWN"], SLACK).await;
    assert!(net.committed(4).await);
    net.served_again("write, ack reset").await;
    net.no_open_transaction(T).await;
    net.record("network_autocommit_write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autocommit_write_with_a_lock_timeout_knows_it_did_not_commit_until_it_sent_commit() {
    // With a lock timeout (the default) an autocommit write runs in an explicit transaction of
    // its own: a fault before COMMIT is sent leaves nothing committed, and says so; only a
    // COMMIT whose acknowledgement is lost has an unknown outcome.
    let mut net = Net::new().await;
    net.proxy.arm(Direction::ToServer, b"VALUES (21)", Fault::Stall);
    net.expect("explicit write, stall", "pg_query", autocommit_insert(21), &["TIMEOUT"], S + C * 2 + SLACK).await;
    net.reset_and_heal().await;
    assert!(!net.committed(21).await);
    net.served_again("explicit write, stall").await;

    net.proxy.arm(Direction::ToClient, b"INSERT 0 1", Fault::Reset);
    net.expect("explicit write, reply reset", "pg_query", autocommit_insert(22), &["UNAVAILABLE"], SLACK).await;
    assert!(!net.committed(22).await, "the statement ran, but its transaction never committed");
    net.served_again("explicit write, reply reset").await;

    net.proxy.arm(Direction::ToClient, b"COMMIT", Fault::Stall);
    net.expect(
        "explicit write, COMMIT ack stalled",
        "pg_query",
        autocommit_insert(23),
        &["COMMIT_OUTCOME_UNKNOWN"],
        T + SLACK,
    )
    .await;
    assert!(net.committed(23).await, "the COMMIT was applied before its acknowledgement was lost");
    net.reset_and_heal().await;
    net.served_again("explicit write, COMMIT ack stalled").await;

    net.proxy.arm(Direction::ToServer, b"COMMIT; ", Fault::Reset);
    net.expect("explicit write, COMMIT reset", "pg_query", autocommit_insert(24), &["COMMIT_OUTCOME_UNKNOWN"], SLACK)
        .await;
    assert!(!net.committed(24).await, "the COMMIT never reached the server");
    net.served_again("explicit write, COMMIT reset").await;
    net.no_open_transaction(T).await;
    net.record("network_autocommit_write_explicit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_statement_on_a_failing_network_loses_the_session_honestly() {
    let mut net = Net::new().await;

    // A session's statement goes out right behind its prelude (the grammar pinned again): when
    // both share the stalled write, the prelude gets no answer within the step (UNAVAILABLE);
    // when the prelude went out alone, the statement runs into its timeout (TIMEOUT).
    for (case, fault, codes, bound) in [
        ("session statement, stall", Fault::Stall, &["TIMEOUT", "UNAVAILABLE"][..], S + C * 2 + SLACK),
        ("session statement, reset", Fault::Reset, &["UNAVAILABLE"][..], SLACK),
    ] {
        let session = net.begin().await;
        net.insert_in(&session, 10).await;
        net.proxy.arm(Direction::ToServer, b"VALUES (11)", fault);
        let write = json!({"action": "write", "sql": "INSERT INTO net_items VALUES (11)", "session_id": session});
        let out = net.expect(case, "pg_query", write, codes, bound).await;
        assert!(!net.proxy.armed());
        assert!(out["error"]["hint"].as_str().unwrap_or("").contains("session"), "{out}");
        // The session is gone, and says so; its commit cannot succeed.
        let commit = json!({"action": "commit", "session_id": session});
        net.expect(&format!("{case}: commit"), "pg_tx", commit, &["SESSION_NOT_FOUND"], SLACK).await;
        net.proxy.heal();
        // PostgreSQL rolled the session's transaction back (the held INSERT included).
        let ended = net.no_open_transaction(T + SLACK).await;
        eprintln!("{case}: the backend's transaction ended {ended:?} after the heal");
        assert!(!net.committed(10).await && !net.committed(11).await, "nothing uncommitted is visible");
        net.served_again(case).await;
        let again = net.begin().await;
        net.insert_in(&again, 12).await;
        let rolled = net.call("pg_tx", json!({"action": "rollback", "session_id": again})).await;
        assert_eq!(code(&rolled), "ok", "{rolled}");
    }
    net.record("network_session_statement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_commit_on_a_failing_network_is_reported_as_it_really_is() {
    let mut net = Net::new().await;
    // (case, direction, fault, the row is committed afterwards)
    let cases = [
        ("commit, request stalled", Direction::ToServer, Fault::Stall, false),
        ("commit, acknowledgement stalled", Direction::ToClient, Fault::Stall, true),
        ("commit, reset before the server", Direction::ToServer, Fault::Reset, false),
        ("commit, acknowledgement reset", Direction::ToClient, Fault::Reset, true),
    ];
    for (i, (case, direction, fault, lands)) in cases.into_iter().enumerate() {
        let id = 20 + i32::try_from(i).unwrap();
        let session = net.begin().await;
        net.insert_in(&session, id).await;
        // The request "COMMIT", or its reply: CommandComplete "COMMIT\0".
        let pattern: &[u8] = if direction == Direction::ToServer { b"COMMIT" } else { b"COMMIT\0" };
        net.proxy.arm(direction, pattern, fault);
        let bound = if fault == Fault::Stall { T + SLACK } else { SLACK };
        let commit = json!({"action": "commit", "session_id": session});
        let out = net.expect(case, "pg_tx", commit, &["COMMIT_OUTCOME_UNKNOWN"], bound).await;
        assert!(!net.proxy.armed(), "{case}: the fault struck");
        assert!(out["error"]["hint"].as_str().unwrap_or("").contains("check the data"), "{out}");
        // Make the outcome final (what the proxy holds is dropped), then read the truth.
        net.reset_and_heal().await;
        net.no_open_transaction(T + SLACK).await;
        assert_eq!(net.committed(id).await, lands, "{case}: the row's real state");
        let status = net.call("pg_tx", json!({"action": "status", "session_id": session})).await;
        assert_eq!(code(&status), "SESSION_NOT_FOUND", "{case}: the session is closed: {status}");
        net.served_again(case).await;
    }
    net.record("network_session_commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_idle_between_calls_that_the_network_breaks_are_replaced() {
    let mut net = Net::new().await;
    // A pool checkout that must connect through a stalled path: the TCP connect succeeds, the
    // start-up gets no answer; the call ends at the acquire timeout (2 s), and the attempt
    // itself at connect_timeout + T, so it holds no pool slot once the path heals.
    net.proxy.stall();
    net.expect(
        "new connection, stall: read",
        "pg_query",
        read_args(),
        &["UNAVAILABLE"],
        Duration::from_secs(2) + SLACK,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2) + T).await;
    net.served_again("new connection, stall").await;
    let (a, b, c) = tokio::join!(net.read(), net.read(), net.read());
    let parallel = [a, b, c];
    assert!(parallel.iter().all(|out| code(out) == "ok"), "the whole pool is usable again: {parallel:?}");

    // Fill the pool with idle connections, and open a session.
    for _ in 0..3 {
        assert_eq!(code(&net.read().await), "ok");
    }
    let session = net.begin().await;
    net.insert_in(&session, 30).await;

    // Stall while idle: the next calls fail within the step timeout, not the statement's.
    net.proxy.stall();
    net.expect("idle, stall: read", "pg_query", read_args(), &["UNAVAILABLE"], T + SLACK).await;
    let write = json!({"action": "write", "sql": "INSERT INTO net_items VALUES (31)", "session_id": session});
    let out = net.expect("idle, stall: session statement", "pg_query", write, &["UNAVAILABLE"], T + SLACK).await;
    assert!(out["error"]["message"].as_str().unwrap().contains("did not answer"), "{out}");
    let status = json!({"action": "status", "session_id": session});
    net.expect("idle, stall: session afterwards", "pg_tx", status, &["SESSION_NOT_FOUND"], SLACK).await;
    net.served_again("idle, stall").await;
    net.no_open_transaction(T + SLACK).await;
    assert!(!net.committed(30).await && !net.committed(31).await);

    // Reset while idle: the pool notices the closed connections; the session is lost.
    for _ in 0..3 {
        assert_eq!(code(&net.read().await), "ok");
    }
    let session = net.begin().await;
    net.insert_in(&session, 32).await;
    net.proxy.reset();
    // The RST reaches the idle connections' tasks at once; a little time for them to run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    net.expect("idle, reset: read", "pg_query", read_args(), &["ok"], SLACK).await;
    let write = json!({"action": "write", "sql": "INSERT INTO net_items VALUES (33)", "session_id": session});
    net.expect("idle, reset: session statement", "pg_query", write, &["UNAVAILABLE", "SESSION_ABORTED"], SLACK).await;
    let commit = json!({"action": "commit", "session_id": session});
    net.expect(
        "idle, reset: session commit",
        "pg_tx",
        commit,
        &["COMMIT_FAILED", "SESSION_NOT_FOUND", "SESSION_ABORTED"],
        SLACK,
    )
    .await;
    net.no_open_transaction(T).await;
    assert!(!net.committed(32).await && !net.committed(33).await);
    net.served_again("idle, reset").await;
    net.record("network_idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_a_slow_network_succeed_slower() {
    async fn round(net: &Net) -> Duration {
        let started = Instant::now();
        assert_eq!(code(&net.read().await), "ok");
        let session = net.begin().await;
        net.insert_in(&session, 40).await;
        let rolled = net.call("pg_tx", json!({"action": "rollback", "session_id": session})).await;
        assert_eq!(code(&rolled), "ok", "{rolled}");
        started.elapsed()
    }
    let mut net = Net::new().await;
    let baseline = round(&net).await;
    let latency = Duration::from_millis(25);
    net.proxy.set_latency(latency);
    let slow = round(&net).await;
    net.proxy.set_latency(Duration::ZERO);
    eprintln!("a read and a session (begin, write, rollback): {baseline:?} direct, {slow:?} with {latency:?} per hop");
    // At least 5 round trips (read, begin, write, rollback, and more), each paying the latency
    // twice (a request and its reply).
    assert!(slow >= baseline + latency * 5, "the latency was applied: {baseline:?} vs {slow:?}");
    assert!(slow < Duration::from_secs(10), "still well within the deadlines: {slow:?}");
    assert!(!net.committed(40).await);
    net.seen.push(json!({"case": "latency", "code": "ok", "baseline_ms": baseline.as_millis(), "slow_ms": slow.as_millis(), "latency_ms_per_chunk": latency.as_millis()}));
    net.record("network_latency");
}

/// The keepalive defaults reach the socket: the kernel's keepalive timer on ColdQuery's
/// connections (read from `/proc/net/tcp`, the `tm->when` of timer kind 2) runs at most 15 s,
/// not the operating system's 2 hours.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_carry_the_keepalive_defaults() {
    let net = Net::new().await;
    assert_eq!(code(&net.read().await), "ok");
    let port = format!("{:04X}", net.proxy.addr().port());
    // Timer kind 2 is the keepalive timer on an idle socket (briefly also a delayed ACK, due in
    // milliseconds): poll until the connection is idle and its timer is the keepalive's.
    let timers = |table: &str| -> Vec<(u32, u64)> {
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                // Columns: sl local rem st tx:rx tr:when ...; ColdQuery's side has the proxy as remote.
                let cols: Vec<&str> = line.split_whitespace().collect();
                let established = cols.get(3) == Some(&"01");
                let to_proxy = cols.get(2).is_some_and(|rem| rem.ends_with(&format!(":{port}")));
                let (kind, when) = cols.get(5)?.split_once(':')?;
                (established && to_proxy)
                    .then(|| Some((u32::from_str_radix(kind, 16).ok()?, u64::from_str_radix(when, 16).ok()?)))
                    .flatten()
            })
            .collect()
    };
    let started = Instant::now();
    let seen = loop {
        let seen = timers(&std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp is readable"));
        // USER_HZ is 100 on Linux: 15 s is 1500 ticks; idle for a moment, more than 10 s are left.
        let keepalive = |(kind, when): &(u32, u64)| *kind == 2 && (1000..=1500).contains(when);
        if !seen.is_empty() && seen.iter().all(keepalive) {
            break seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "every ColdQuery connection has a keepalive timer due within keepalives_idle = 15 s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("keepalive timers of ColdQuery's connections (kind, clock ticks): {seen:?}");
    let timers = seen;
    figures::record(
        "network_keepalives",
        json!({"connections": timers.len(), "timer_ticks": timers.iter().map(|t| t.1).collect::<Vec<_>>()}),
    );
}
