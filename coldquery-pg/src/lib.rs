//! ColdQuery's PostgreSQL layer: the core traits over a bb8 pool of tokio-postgres
//! connections.
//!
//! - [`PgExecutor`] implements [`coldquery_core::Executor`]: read-only transactions that always
//!   roll back, autocommit statements, atomic batches — on the shared pool.
//! - [`PgSessions`] implements [`coldquery_core::SessionStore`]: transactions across calls, on a
//!   second pool so sessions never starve sessionless calls.
//! - [`PgConfig`] reads `DATABASE_URL` or the libpq `PG*` variables, with libpq's `sslmode`s.
//!
//! This is the only crate that knows tokio-postgres and bb8. Caller SQL goes over the extended
//! protocol only, as one statement; results are capped while fetching; deadlines and cancels
//! reach the server as CancelRequests.

mod begin;
mod cancel;
pub mod cluster;
mod config;
mod database;
mod decode;
mod errors;
mod executor;
mod manager;
mod options;
mod pool;
mod reset;
mod run;
mod sessions;
mod step;
mod tls;

pub use config::{
    ConfigError, DEFAULT_KEEPALIVES_IDLE, DEFAULT_KEEPALIVES_INTERVAL, DEFAULT_KEEPALIVES_RETRIES,
    DEFAULT_TCP_USER_TIMEOUT, PgConfig, SslMode,
};
pub use database::Database;
pub use executor::PgExecutor;
pub use options::PgOptions;
pub use sessions::PgSessions;
