//! Shared helpers of the integration tests: a connected `coldquery_pg::Database` per test
//! database.

use std::time::Duration;

use coldquery_core::{Access, CancellationToken, Executor, Limits, QueryResult, Result, Sql, Statement};
use coldquery_pg::{Database, PgConfig, PgOptions};
use coldquery_tests::harness::TestDb;

/// Options small enough for tests.
pub(crate) fn options() -> PgOptions {
    PgOptions { max_sessions: 3, pool_size: 4, ..PgOptions::default() }
}

/// Connects ColdQuery's PostgreSQL layer to `db`.
pub(crate) async fn connect(db: &TestDb, options: &PgOptions) -> Database {
    let config = PgConfig::from_env_and_url(Some(&db.url), &|_| None).expect("test URL parses");
    Database::connect(&config, options).await.expect("ColdQuery connects to the test database")
}

/// Default limits with a timeout.
pub(crate) fn limits(timeout: Duration) -> Limits {
    Limits { timeout, ..Limits::default() }
}

/// Runs fixed test SQL through the executor.
pub(crate) async fn run(db: &Database, access: Access, sql: &'static str) -> Result<QueryResult> {
    db.executor
        .run(access, &Statement::new(Sql::catalog(sql)), &limits(Duration::from_secs(30)), &CancellationToken::new())
        .await
}

/// Runs caller SQL through the executor (classification is the tools layer's job; these
/// tests check what the PostgreSQL layer does on its own).
pub(crate) async fn run_caller(db: &Database, access: Access, sql: &str, limits: &Limits) -> Result<QueryResult> {
    let sql = coldquery_core::CallerSql::new(sql).expect("valid caller SQL");
    db.executor.run(access, &Statement::new(Sql::caller(sql)), limits, &CancellationToken::new()).await
}

/// A count from a side connection.
pub(crate) async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect("count query").get(0)
}

/// The five tools over ColdQuery's PostgreSQL layer connected to `db`, with the Default-Deny
/// policy (`read_only` is the server's `--read-only` mode).
pub(crate) async fn tools(
    db: &TestDb,
    options: &PgOptions,
    config: coldquery_tools::ToolConfig,
    read_only: bool,
) -> (coldquery_tools::Tools, Database) {
    let database = connect(db, options).await;
    let tools = coldquery_tools::Tools::new(
        database.executor.clone(),
        database.sessions.clone(),
        std::sync::Arc::new(coldquery_core::DefaultDeny { read_only }),
        config,
    );
    (tools, database)
}

/// A caller with its own owner key.
pub(crate) fn caller(name: &str) -> coldquery_tools::Caller {
    coldquery_tools::Caller::new(coldquery_core::Owner::new(name), name)
}

/// Calls a tool and returns its JSON (the error body for an error result).
pub(crate) async fn call(
    tools: &coldquery_tools::Tools,
    caller: &coldquery_tools::Caller,
    tool: &str,
    args: serde_json::Value,
) -> serde_json::Value {
    tools.call(caller, tool, args).await.expect("a known tool").into_json()
}

/// Reads `sql` through `pg_query` without a session (the error body for an error result).
pub(crate) async fn sessionless_read(
    tools: &coldquery_tools::Tools,
    caller: &coldquery_tools::Caller,
    sql: &str,
) -> serde_json::Value {
    call(tools, caller, "pg_query", serde_json::json!({"action": "read", "sql": sql})).await
}

/// Writes `sql` through `pg_query` with `autocommit: true` (the error body for an error result).
pub(crate) async fn autocommit_write(
    tools: &coldquery_tools::Tools,
    caller: &coldquery_tools::Caller,
    sql: &str,
) -> serde_json::Value {
    call(tools, caller, "pg_query", serde_json::json!({"action": "write", "sql": sql, "autocommit": true})).await
}

/// Begins a session with `args` (`{}`: the defaults) and returns its id.
pub(crate) async fn begin(
    tools: &coldquery_tools::Tools,
    caller: &coldquery_tools::Caller,
    args: serde_json::Value,
) -> String {
    let mut args = args;
    args["action"] = serde_json::json!("begin");
    let out = call(tools, caller, "pg_tx", args).await;
    out["session_id"].as_str().unwrap_or_else(|| panic!("begin failed: {out}")).to_owned()
}

/// Advisory locks held in this test's database (pg_locks is cluster-wide, and other tests share
/// the server).
pub(crate) const ADVISORY_LOCKS: &str = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// The error code of a tool result, or "ok".
pub(crate) fn code(value: &serde_json::Value) -> String {
    value["error"]["code"].as_str().unwrap_or("ok").to_owned()
}
