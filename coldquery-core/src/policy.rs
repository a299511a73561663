//! The Default-Deny write policy (SPEC §3): the one place that decides whether a write may run
//! and where it commits.

use crate::{Error, ErrorKind, SessionId};

/// Where a permitted write runs. A write request cannot exist without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteTarget {
    /// Inside the caller's open session; it commits with the session.
    Session(SessionId),
    /// On its own, as one implicit transaction.
    Autocommit,
}

/// What a caller asked for when requesting a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteIntent<'a> {
    /// Tool name (`pg_query`...).
    pub tool: &'a str,
    /// Action name (`write`...).
    pub action: &'a str,
    /// The `session_id` parameter.
    pub session_id: Option<&'a str>,
    /// The `autocommit` parameter.
    pub autocommit: Option<bool>,
    /// True when the statement cannot run inside a transaction block (VACUUM...).
    pub needs_autocommit: bool,
}

/// Decides whether a write may run.
pub trait WritePolicy: Send + Sync {
    /// Returns where the write runs, or why it may not.
    fn authorize(&self, intent: &WriteIntent<'_>) -> Result<WriteTarget, Error>;

    /// True when the server refuses every write.
    fn read_only(&self) -> bool;
}

/// The standard policy: a write needs `session_id` or `autocommit: true`; in read-only
/// server mode every write is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultDeny {
    /// `--read-only`: refuse every write whatever the parameters.
    pub read_only: bool,
}

impl WritePolicy for DefaultDeny {
    fn authorize(&self, intent: &WriteIntent<'_>) -> Result<WriteTarget, Error> {
        let WriteIntent { tool, action, session_id, autocommit, needs_autocommit } = *intent;
        if self.read_only {
            return Err(Error::new(
                ErrorKind::WriteDenied,
                format!("{tool} {action} is a write and this server runs in read-only mode"),
            )
            .with_hint(
                "read-only mode (--read-only / COLDQUERY_READ_ONLY) refuses every write; ask the operator to change it",
            ));
        }
        match (session_id, autocommit == Some(true)) {
            (Some(_), true) => Err(Error::invalid(format!(
                "{tool} {action}: give either 'session_id' or 'autocommit: true', not both"
            ))),
            (Some(_), false) if needs_autocommit => Err(Error::new(
                ErrorKind::StatementNotAllowed,
                format!(
                    "{tool} {action}: this statement cannot run inside a transaction block (like VACUUM or CREATE INDEX CONCURRENTLY), so not in a session"
                ),
            )
            .with_hint("run it without session_id and with 'autocommit: true'")),
            (Some(id), false) => Ok(WriteTarget::Session(SessionId::new(id))),
            (None, true) => Ok(WriteTarget::Autocommit),
            (None, false) if needs_autocommit => Err(Error::new(
                ErrorKind::WriteDenied,
                format!("{tool} {action} changes the database and needs explicit consent"),
            )
            .with_hint("pass 'autocommit: true' to run it on its own")),
            (None, false) => Err(Error::new(
                ErrorKind::WriteDenied,
                format!("{tool} {action} changes the database and needs explicit consent; nothing was sent"),
            )
            .with_hint("pass 'session_id' from pg_tx begin to run it inside a transaction you commit later, or 'autocommit: true' to commit it on its own")),
        }
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(session_id: Option<&str>, autocommit: Option<bool>) -> WriteIntent<'_> {
        WriteIntent { tool: "pg_query", action: "write", session_id, autocommit, needs_autocommit: false }
    }

    #[test]
    fn default_deny() {
        let policy = DefaultDeny::default();
        assert_eq!(policy.authorize(&intent(None, None)).unwrap_err().kind(), ErrorKind::WriteDenied);
        assert_eq!(policy.authorize(&intent(None, Some(false))).unwrap_err().kind(), ErrorKind::WriteDenied);
        assert_eq!(policy.authorize(&intent(None, Some(true))).unwrap(), WriteTarget::Autocommit);
        assert_eq!(policy.authorize(&intent(Some("s"), None)).unwrap(), WriteTarget::Session(SessionId::new("s")));
        assert_eq!(policy.authorize(&intent(Some("s"), Some(true))).unwrap_err().kind(), ErrorKind::InvalidArgument);
        let denied = policy.authorize(&intent(None, None)).unwrap_err();
        assert!(denied.hint().unwrap().contains("session_id"));
        assert!(denied.hint().unwrap().contains("autocommit: true"));
    }

    #[test]
    fn read_only_mode_refuses_everything() {
        let policy = DefaultDeny { read_only: true };
        for (s, a) in [(None, Some(true)), (Some("s"), None)] {
            assert_eq!(policy.authorize(&intent(s, a)).unwrap_err().kind(), ErrorKind::WriteDenied);
        }
    }
}
