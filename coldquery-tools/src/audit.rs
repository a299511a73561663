//! Audit records (SPEC §7): every write that runs and every denial. The tools layer builds
//! the records; adapters decide where they go (a JSON-lines file in `coldquery-mcp`).

use std::time::Duration;

use coldquery_core::{Error, QueryResult, Result, SessionInfo, Statement, WriteTarget};
use serde::Serialize;

use crate::ctx::{Ctx, outcome_code, unix_time};

/// The longest statement text kept in a record.
const MAX_STATEMENT_CHARS: usize = 2000;

/// One audited event. Parameters are never recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// Who called.
    pub principal: String,
    /// The session owner key (includes the legacy MCP session when there is one).
    pub owner: String,
    /// Tool name.
    pub tool: String,
    /// Action name.
    pub action: String,
    /// The ColdQuery session the write ran in, if any.
    pub session: Option<String>,
    /// A fingerprint of the statement's shape (constants removed), when it parses.
    pub fingerprint: Option<String>,
    /// The statement text, truncated.
    pub statement: Option<String>,
    /// `allowed` or `denied`.
    pub decision: &'static str,
    /// `ok` or the error code.
    pub outcome: String,
    /// Rows the write affected.
    pub rows_affected: Option<u64>,
    /// Milliseconds the write took.
    pub duration_ms: Option<f64>,
}

/// Where audit records go.
pub trait AuditSink: Send + Sync {
    /// Records one event. Must not block for long: it runs on the call path.
    fn record(&self, record: &AuditRecord);
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_STATEMENT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn fingerprint(text: &str) -> Option<String> {
    pg_query::fingerprint(text).ok().map(|f| f.hex)
}

impl AuditRecord {
    fn base(ctx: &Ctx<'_>, session: Option<String>, statement: Option<&str>) -> AuditRecord {
        AuditRecord {
            time: unix_time(),
            principal: ctx.caller.principal.clone(),
            owner: ctx.caller.owner.as_str().to_owned(),
            tool: ctx.tool.to_owned(),
            action: ctx.action.clone(),
            session,
            fingerprint: statement.and_then(fingerprint),
            statement: statement.map(truncate),
            decision: "allowed",
            outcome: "ok".into(),
            rows_affected: None,
            duration_ms: None,
        }
    }

    pub(crate) fn denial(ctx: &Ctx<'_>, session: Option<&str>, statement: Option<&str>, err: &Error) -> AuditRecord {
        AuditRecord {
            decision: "denied",
            outcome: err.kind().code().to_owned(),
            ..AuditRecord::base(ctx, session.map(str::to_owned), statement)
        }
    }

    pub(crate) fn write(
        ctx: &Ctx<'_>,
        target: &WriteTarget,
        statement: &Statement,
        outcome: &Result<(QueryResult, Option<SessionInfo>)>,
        took: Duration,
    ) -> AuditRecord {
        let session = match target {
            WriteTarget::Session(id) => Some(id.as_str().to_owned()),
            WriteTarget::Autocommit => None,
        };
        AuditRecord {
            outcome: outcome_code(outcome).to_owned(),
            rows_affected: outcome.as_ref().ok().and_then(|(r, _)| r.rows_affected),
            duration_ms: Some((took.as_secs_f64() * 1000.0 * 100.0).round() / 100.0),
            ..AuditRecord::base(ctx, session, Some(statement.sql.text()))
        }
    }
}
