//! Audit records (SPEC §7): every write that runs and every denial. The tools layer builds
//! the records; adapters decide where they go — [`JsonLinesAudit`] appends them to a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coldquery_core::{Error, QueryResult, Result, SessionInfo, Statement, WriteTarget};
use serde::Serialize;

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
    /// `allowed`, `confirmed` (allowed with a preview's token), `previewed` (run and rolled
    /// back) or `denied`.
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

/// The fingerprint runs on the caller's (async runtime) thread, so only statements small and
/// shallow enough to parse there in well under a millisecond are fingerprinted; the others
/// are audited without one (the classifier refuses the deep ones anyway).
fn fingerprint(text: &str) -> Option<String> {
    if !crate::classify::parses_cheaply(text) {
        return None;
    }
    pg_query::fingerprint(text).ok().map(|f| f.hex)
}

/// Who a record is about: the call's caller, tool and action (`Ctx::actor`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Actor<'a> {
    pub(crate) principal: &'a str,
    pub(crate) owner: &'a str,
    pub(crate) tool: &'a str,
    pub(crate) action: &'a str,
    /// The call's write was confirmed (a preview's token, or the person asked).
    pub(crate) confirmed: bool,
}

/// Seconds since the Unix epoch.
fn unix_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// `ok` or the error's code.
fn outcome_code<T>(outcome: &Result<T>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(e) => e.kind().code(),
    }
}

impl AuditRecord {
    fn base(actor: &Actor<'_>, session: Option<String>, statement: Option<&str>) -> AuditRecord {
        AuditRecord {
            time: unix_time(),
            principal: actor.principal.to_owned(),
            owner: actor.owner.to_owned(),
            tool: actor.tool.to_owned(),
            action: actor.action.to_owned(),
            session,
            fingerprint: statement.and_then(fingerprint),
            statement: statement.map(truncate),
            decision: "allowed",
            outcome: "ok".into(),
            rows_affected: None,
            duration_ms: None,
        }
    }

    pub(crate) fn denial(
        actor: &Actor<'_>,
        session: Option<&str>,
        statement: Option<&str>,
        err: &Error,
    ) -> AuditRecord {
        AuditRecord {
            decision: "denied",
            outcome: err.kind().code().to_owned(),
            ..AuditRecord::base(actor, session.map(str::to_owned), statement)
        }
    }

    pub(crate) fn write(
        actor: &Actor<'_>,
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
            decision: if actor.confirmed { "confirmed" } else { "allowed" },
            outcome: outcome_code(outcome).to_owned(),
            rows_affected: outcome.as_ref().ok().and_then(|(r, _)| r.rows_affected),
            duration_ms: Some((took.as_secs_f64() * 1000.0 * 100.0).round() / 100.0),
            ..AuditRecord::base(actor, session, Some(statement.sql.text()))
        }
    }

    /// A session begun acting as a role: the role and the names of the request settings (never
    /// their values, which may hold claims).
    pub(crate) fn assumed(actor: &Actor<'_>, session: &str, role: Option<&str>, settings: &[&str]) -> AuditRecord {
        let what =
            format!("act as role {} with request settings [{}]", role.unwrap_or("(login role)"), settings.join(", "));
        AuditRecord { fingerprint: None, ..AuditRecord::base(actor, Some(session.to_owned()), Some(&what)) }
    }

    /// A preview: the write ran and was rolled back.
    pub(crate) fn preview(
        actor: &Actor<'_>,
        target: &WriteTarget,
        statement: &str,
        outcome: &Result<Vec<QueryResult>>,
    ) -> AuditRecord {
        let session = match target {
            WriteTarget::Session(id) => Some(id.as_str().to_owned()),
            WriteTarget::Autocommit => None,
        };
        AuditRecord {
            decision: "previewed",
            outcome: outcome_code(outcome).to_owned(),
            ..AuditRecord::base(actor, session, Some(statement))
        }
    }
}

/// Appends audit records to a JSON-lines file.
#[derive(Debug)]
pub struct JsonLinesAudit {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonLinesAudit {
    /// Opens (creating if needed, with mode 0600 on Unix) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<JsonLinesAudit> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        Ok(JsonLinesAudit { path: path.to_owned(), file: Mutex::new(file) })
    }
}

impl AuditSink for JsonLinesAudit {
    fn record(&self, record: &AuditRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, "could not serialize an audit record");
                return;
            }
        };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // One write call per record, so concurrent records never interleave within a line.
        if let Err(error) = file.write_all(&line) {
            tracing::error!(%error, path = %self.path.display(), "could not write to the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_appended_as_json_lines() {
        let dir = std::env::temp_dir().join(format!("coldquery-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let sink = JsonLinesAudit::open(&path).unwrap();
        let record = AuditRecord {
            time: 1.5,
            principal: "alice".into(),
            owner: "http:alice".into(),
            tool: "pg_query".into(),
            action: "write".into(),
            session: None,
            fingerprint: None,
            statement: Some("DELETE FROM t".into()),
            decision: "denied",
            outcome: "WRITE_DENIED".into(),
            rows_affected: None,
            duration_ms: None,
        };
        sink.record(&record);
        sink.record(&AuditRecord { decision: "allowed", outcome: "ok".into(), rows_affected: Some(3), ..record });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["decision"], "denied");
        assert_eq!(lines[0]["principal"], "alice");
        assert_eq!(lines[1]["rows_affected"], 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
