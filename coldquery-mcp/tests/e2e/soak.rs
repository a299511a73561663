//! The soak: 16 concurrent HTTP clients against the real binary for a bounded time
//! (90 s, `COLDQUERY_SOAK_SECS` to change it) and a bounded number of calls, mixing reads,
//! capped reads, errors, cancels, timeouts and sessions that commit or roll back. Then
//! PostgreSQL's view (no transaction left open, backends within pool + sessions, exactly the
//! committed rows) and the process's (memory, descriptors, connections) are checked, and the
//! figures recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coldquery_tests::figures;
use coldquery_tests::harness::test_db;
use rmcp::model::{CallToolRequestParams, ClientRequest, Request};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::support::{ALICE, BOB, HttpServer, args, backends, call, code, count, open_fds, rss_kib};

const CLIENTS: u64 = 16;
/// Calls per client at most, whatever the time.
const MAX_ITERATIONS: u64 = 4000;
const MAX_SESSIONS: i64 = 8;
const POOL_SIZE: i64 = 12;

/// What one client saw.
#[derive(Default)]
struct Tally {
    calls: BTreeMap<&'static str, u64>,
    codes: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
    committed: Vec<i64>,
    rolled_back: Vec<i64>,
}

impl Tally {
    fn record(&mut self, kind: &'static str, out: &Value, started: Instant) {
        *self.calls.entry(kind).or_default() += 1;
        *self.codes.entry(code(out).to_owned()).or_default() += 1;
        self.latencies_us.push(started.elapsed().as_micros() as u64);
    }
}

/// A small deterministic generator (xorshift), one per client.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

fn expect(kind: &str, out: &Value, codes: &[&str]) {
    assert!(codes.contains(&code(out)), "{kind}: unexpected answer {out}");
}

async fn one_client<S: rmcp::Service<rmcp::RoleClient>>(
    index: u64,
    client: rmcp::service::RunningService<rmcp::RoleClient, S>,
    legacy: bool,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (index + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
    let mut next_id = (index as i64) * 1_000_000;
    for _ in 0..MAX_ITERATIONS {
        if Instant::now() > deadline {
            break;
        }
        let started = Instant::now();
        match dice.roll(12) {
            0..=2 => {
                let out =
                    call(&client, "pg_query", json!({"action": "read", "sql": "SELECT count(*) AS n FROM soak_items"}))
                        .await;
                expect("read", &out, &["ok"]);
                tally.record("read", &out, started);
            }
            3 | 4 => {
                let out = call(
                    &client,
                    "pg_query",
                    json!({"action": "read", "sql": "SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 5000) g", "max_rows": 100}),
                )
                .await;
                expect("capped read", &out, &["ok"]);
                assert_eq!(out["truncated"], true, "the row cap applies: {out}");
                tally.record("capped_read", &out, started);
            }
            5 => {
                let sql = if dice.roll(2) == 0 { "SELECT 1/0" } else { "SELEC 1" };
                let out = call(&client, "pg_query", json!({"action": "read", "sql": sql})).await;
                expect("error", &out, &["DATABASE_ERROR", "INVALID_ARGUMENT"]);
                tally.record("error", &out, started);
            }
            6 => {
                let out = call(
                    &client,
                    "pg_query",
                    json!({"action": "read", "sql": "SELECT pg_sleep(5)", "timeout_ms": 100}),
                )
                .await;
                expect("timeout", &out, &["TIMEOUT"]);
                tally.record("timeout", &out, started);
            }
            7 if legacy => {
                // A call cancelled by the client (notifications/cancelled) after 50 ms.
                let params = CallToolRequestParams::new("pg_query")
                    .with_arguments(args(json!({"action": "read", "sql": "SELECT pg_sleep(5)"})));
                let handle = client
                    .send_cancellable_request(
                        ClientRequest::CallToolRequest(Request::new(params)),
                        PeerRequestOptions::no_options(),
                    )
                    .await
                    .expect("the call is sent");
                tokio::time::sleep(Duration::from_millis(50)).await;
                handle.cancel(Some("soak".into())).await.expect("the cancellation is sent");
                *tally.calls.entry("cancel").or_default() += 1;
                *tally.codes.entry("cancelled by the client".into()).or_default() += 1;
                tally.latencies_us.push(started.elapsed().as_micros() as u64);
            }
            _ => {
                // A session: begin, one or two writes, then commit (2 in 3) or roll back.
                let begin = call(&client, "pg_tx", json!({"action": "begin"})).await;
                expect("begin", &begin, &["ok", "SESSION_LIMIT"]);
                tally.record("begin", &begin, started);
                let Some(session) = begin["session_id"].as_str().map(str::to_owned) else { continue };
                let mut ids = Vec::new();
                for _ in 0..=dice.roll(2) {
                    next_id += 1;
                    let started = Instant::now();
                    let out = call(
                        &client,
                        "pg_query",
                        json!({"action": "write", "sql": "INSERT INTO soak_items VALUES ($1, $2)", "params": [next_id, index], "session_id": session}),
                    )
                    .await;
                    expect("write", &out, &["ok"]);
                    tally.record("write", &out, started);
                    ids.push(next_id);
                }
                let started = Instant::now();
                if dice.roll(3) < 2 {
                    let out = call(&client, "pg_tx", json!({"action": "commit", "session_id": session})).await;
                    expect("commit", &out, &["ok"]);
                    tally.record("commit", &out, started);
                    tally.committed.extend(ids);
                } else {
                    let out = call(&client, "pg_tx", json!({"action": "rollback", "session_id": session})).await;
                    expect("rollback", &out, &["ok"]);
                    tally.record("rollback", &out, started);
                    tally.rolled_back.extend(ids);
                }
            }
        }
    }
    client.cancel().await.ok();
    tally
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_soak_and_everything_returns_to_baseline() {
    let seconds: u64 = std::env::var("COLDQUERY_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(90);
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE soak_items (id bigint PRIMARY KEY, client int NOT NULL)").await.unwrap();
    let server =
        HttpServer::start(&db, &["--max-sessions", &MAX_SESSIONS.to_string(), "--pool-size", &POOL_SIZE.to_string()])
            .await;
    let pid = server.child.id().unwrap();
    // Baseline after one call of each kind has warmed the pool and the allocator.
    let warm = server.modern_client(ALICE).await;
    call(
        &warm,
        "pg_query",
        json!({"action": "read", "sql": "SELECT g FROM generate_series(1, 5000) g", "max_rows": 100}),
    )
    .await;
    warm.cancel().await.ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_before, fds_before) = (rss_kib(pid), open_fds(pid));
    let backends_before: i64 = backends(&side, &db).await.values().sum();

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tallies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..CLIENTS {
        let token = if index % 2 == 0 { ALICE } else { BOB };
        let tallies = tallies.clone();
        if index % 2 == 0 {
            let client = server.client(token).await;
            tasks.spawn(async move { tallies.lock().await.push(one_client(index, client, true, deadline).await) });
        } else {
            let client = server.modern_client(token).await;
            tasks.spawn(async move { tallies.lock().await.push(one_client(index, client, false, deadline).await) });
        }
    }
    // Sample the process while the clients run.
    let (mut rss_peak, mut fds_peak) = (rss_before, fds_before);
    let mut in_transaction_seen = 0;
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => joined.expect("a task").expect("a client does not panic"),
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                rss_peak = rss_peak.max(rss_kib(pid));
                fds_peak = fds_peak.max(open_fds(pid));
                in_transaction_seen = in_transaction_seen.max(*backends(&side, &db).await.get("idle in transaction").unwrap_or(&0));
            }
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(seconds + 30), "the soak ends within its bound: {elapsed:?}");

    // PostgreSQL's view.
    let settled = crate::support::eventually(Duration::from_secs(10), || async {
        let states = backends(&side, &db).await;
        !states.contains_key("idle in transaction") && !states.contains_key("active")
    })
    .await;
    let states = backends(&side, &db).await;
    assert!(settled, "no transaction or statement is left: {states:?}");
    let backends_after: i64 = states.values().sum();
    assert!(backends_after <= POOL_SIZE + MAX_SESSIONS, "backends within pool + sessions: {states:?}");
    let tallies = tallies.lock().await;
    let committed: Vec<i64> = tallies.iter().flat_map(|t| t.committed.iter().copied()).collect();
    let rolled_back: Vec<i64> = tallies.iter().flat_map(|t| t.rolled_back.iter().copied()).collect();
    let present = count(&side, "SELECT count(*) FROM soak_items").await;
    assert_eq!(present, committed.len() as i64, "exactly the committed rows are present");
    let rows = side.query("SELECT id FROM soak_items", &[]).await.unwrap();
    let ids: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert!(committed.iter().all(|id| ids.contains(id)), "every committed row is present");
    assert!(rolled_back.iter().all(|id| !ids.contains(id)), "no rolled-back row is present");

    // The process's view.
    let fds_back =
        crate::support::eventually(Duration::from_secs(15), || async { open_fds(pid) <= fds_before + 4 }).await;
    let (rss_after, fds_after) = (rss_kib(pid), open_fds(pid));
    assert!(fds_back, "descriptors return to the baseline: {fds_before} before, {fds_after} after");
    let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 64, "memory grew by {growth_mib} MiB over the soak");

    let mut calls: BTreeMap<&str, u64> = BTreeMap::new();
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies: Vec<u64> = Vec::new();
    for tally in tallies.iter() {
        for (kind, n) in &tally.calls {
            *calls.entry(kind).or_default() += n;
        }
        for (code, n) in &tally.codes {
            *codes.entry(code.clone()).or_default() += n;
        }
        latencies.extend(&tally.latencies_us);
    }
    latencies.sort_unstable();
    let total: u64 = calls.values().sum();
    assert!(total >= CLIENTS * 10, "the soak made calls: {calls:?}");
    assert_eq!(server.terminate().await.code(), Some(0));
    figures::record(
        "soak_http_16_clients",
        json!({
            "seconds": elapsed.as_secs_f64(), "clients": CLIENTS, "calls": total, "calls_by_kind": calls,
            "answers_by_code": codes,
            "latency_ms": {"p50": percentile(&latencies, 0.5) as f64 / 1000.0, "p99": percentile(&latencies, 0.99) as f64 / 1000.0},
            "rows_committed": committed.len(), "rows_rolled_back": rolled_back.len(),
            "idle_in_transaction_peak_during": in_transaction_seen,
            "rss_kib": {"before": rss_before, "peak": rss_peak, "after": rss_after},
            "fds": {"before": fds_before, "peak": fds_peak, "after": fds_after},
            "backends": {"before": backends_before, "after": backends_after, "limit": POOL_SIZE + MAX_SESSIONS},
        }),
    );
}
