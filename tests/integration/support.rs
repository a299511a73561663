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
