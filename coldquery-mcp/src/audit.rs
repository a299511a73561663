//! The audit log (SPEC §7): one JSON object per line for every executed write and every
//! denial, appended to a file (`--audit-log` / `COLDQUERY_AUDIT_LOG`). Records never hold
//! parameters; the tools layer builds them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use coldquery_tools::{AuditRecord, AuditSink};

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
