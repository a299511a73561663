//! The bound of the steps that have no deadline of their own (BEGIN, COMMIT, ROLLBACK, a reset):
//! [`within`] runs one for at most the step timeout ([`crate::PgConfig::step_timeout`]), and
//! [`no_answer`] is the error when PostgreSQL did not answer in that time.

use std::time::Duration;

use coldquery_core::{Error, ErrorKind};

/// Runs a step that has no deadline of its own (COMMIT, ROLLBACK, BEGIN, a reset) for at most
/// `limit`: `None` when PostgreSQL did not answer in time. A stalled network never makes a call
/// wait longer; the caller must then close the connection (its state is unknown).
pub(crate) async fn within<T>(limit: Duration, step: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, step).await.ok()
}

/// The error for a step that got no answer within `limit`.
pub(crate) fn no_answer(limit: Duration, doing: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("PostgreSQL did not answer within {} ms while {doing}; the connection was closed", limit.as_millis()),
    )
    .with_hint("the network or the server is stalled; calls work again once it answers (check pg_monitor health)")
}
