//! [`PgOptions`]: the pool and session settings (SPEC §5) a [`crate::Database`] is connected
//! with, apart from where the server is ([`crate::PgConfig`]).

use std::time::Duration;

/// Pool and session settings (SPEC §5).
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Maximum open sessions (`COLDQUERY_MAX_SESSIONS`).
    pub max_sessions: usize,
    /// Idle time after which a session is rolled back (`COLDQUERY_SESSION_TTL`).
    pub session_ttl: Duration,
    /// Size of the shared pool (`COLDQUERY_POOL_SIZE`), separate from session connections.
    pub pool_size: u32,
    /// How long a call waits for a free connection (`COLDQUERY_ACQUIRE_TIMEOUT`).
    pub acquire_timeout: Duration,
    /// How long a call waits for a session busy with another call before `SESSION_BUSY`.
    pub busy_wait: Duration,
    /// `application_name` of every connection.
    pub application_name: String,
    /// Start even when the server cannot be reached (it is down, or not up yet): calls answer
    /// `UNAVAILABLE` until it is, and the pools connect by themselves once it is. Wrong
    /// credentials and bad settings still fail at once.
    pub start_while_down: bool,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            max_sessions: 10,
            session_ttl: Duration::from_secs(1800),
            pool_size: 15,
            acquire_timeout: Duration::from_secs(10),
            busy_wait: Duration::from_secs(2),
            application_name: "coldquery".into(),
            start_while_down: false,
        }
    }
}
