//! [`Database`]: connecting to PostgreSQL — the shared pool (and the pool of reads, with
//! `--read-database-url`) behind [`PgExecutor`], the session pool behind [`PgSessions`].

use std::sync::Arc;

use coldquery_core::Result;

use crate::config::PgConfig;
use crate::executor::PgExecutor;
use crate::options::PgOptions;
use crate::pool;
use crate::sessions::PgSessions;

/// A connected database: the executor and the session store, sharing configuration.
#[derive(Debug, Clone)]
pub struct Database {
    /// The sessionless path.
    pub executor: Arc<PgExecutor>,
    /// Sessions.
    pub sessions: Arc<PgSessions>,
}

impl Database {
    /// Connects: checks the server is reachable with these credentials, then builds the shared
    /// pool and the session pool.
    pub async fn connect(config: &PgConfig, options: &PgOptions) -> Result<Database> {
        Database::connect_with_reads(config, None, options).await
    }

    /// Like [`Database::connect`], with sessionless reads (and read-only batches) on a pool of
    /// their own to `reads`, so that they can run as a role that holds no rights beyond
    /// reading. Sessions and writes use `config`.
    pub async fn connect_with_reads(
        config: &PgConfig,
        reads: Option<&PgConfig>,
        options: &PgOptions,
    ) -> Result<Database> {
        let (shared, session_pool) = pool::connect(config, options, "DATABASE_URL or PG* variables").await?;
        let reads = match reads {
            Some(reads) => Some(pool::connect(reads, options, "--read-database-url").await?.0),
            None => None,
        };
        let sessions = PgSessions::new(shared.clone(), session_pool, options);
        Ok(Database { executor: Arc::new(PgExecutor { shared, reads }), sessions: Arc::new(sessions) })
    }
}
