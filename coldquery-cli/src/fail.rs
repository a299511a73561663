//! Failures and exit codes: 0 ok, 1 a tool (or the database) reported an error, 2 the command
//! line or the configuration is wrong and nothing was run.

use coldquery_core::{Error, ErrorKind};
use serde_json::{Map, Value, json};

/// The process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Everything succeeded.
    Ok = 0,
    /// A tool call failed (bad SQL, a denied write, an unreachable database...).
    ToolError = 1,
    /// A usage or configuration error: nothing was run.
    Usage = 2,
}

/// Something that stops a command, with the SPEC §2 error object shown to the user.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
    /// The SPEC §2 kind, when a tool (or the database) failed.
    pub(crate) kind: Option<ErrorKind>,
    /// `{"code"?, "message", "hint"?, "sqlstate"?, "detail"?, "position"?, ...}`.
    pub(crate) error: Value,
}

impl Failure {
    /// A command line the CLI cannot use (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        let message = message.into();
        Failure { exit: Exit::Usage, kind: None, error: json!({"message": message}), message }
    }

    /// A setting that cannot be used (exit 2).
    pub(crate) fn config(message: impl Into<String>) -> Failure {
        Failure::usage(message)
    }

    /// A tool's (or the database's) error (exit 1); shown as its SPEC §2 body.
    pub(crate) fn from_error(error: &Error) -> Failure {
        let body = match error.to_json() {
            Value::Object(mut object) => object.remove("error").unwrap_or(Value::Null),
            other => other,
        };
        Failure { exit: Exit::ToolError, kind: Some(error.kind()), error: body, message: error.message().to_owned() }
    }

    /// The error as the user sees it on stderr: `error[CODE]: message`, psql's `LINE n:` with
    /// a caret under the error's position in `sql`, and one line per further field (hint in the
    /// terminal's vocabulary, detail, sqlstate, operation_index).
    pub(crate) fn render_text(&self, sql: Option<&str>, vocabulary: Vocabulary) -> String {
        render_error_text(&self.error, sql, vocabulary)
    }

    /// The error body `{"error": {...}}` as pretty JSON.
    pub(crate) fn render_json(&self) -> String {
        let body = json!({"error": self.error});
        serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string())
    }
}

/// Whose words a hint is given in: the one-shot commands' flags or the shell's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vocabulary {
    /// `coldquery query write ... --autocommit`.
    Command,
    /// `BEGIN`, `\dt`, the `\a` prefix.
    Shell,
}

/// Renders a SPEC §2 error object as text lines.
pub(crate) fn render_error_text(error: &Value, sql: Option<&str>, vocabulary: Vocabulary) -> String {
    let empty = Map::new();
    let object = error.as_object().unwrap_or(&empty);
    let message = object.get("message").and_then(Value::as_str).unwrap_or("the call failed");
    let message = without_tool_prefix(message);
    let mut out = match object.get("code").and_then(Value::as_str) {
        Some(code) => format!("error[{code}]: {message}\n"),
        None => format!("error: {message}\n"),
    };
    let caret = match (sql, object.get("position").and_then(Value::as_u64)) {
        (Some(sql), Some(position)) => caret(sql, position as usize),
        _ => None,
    };
    if let Some(caret) = &caret {
        out.push_str(caret);
    }
    for (key, value) in object {
        if key == "code" || key == "message" || (key == "position" && caret.is_some()) {
            continue;
        }
        let text = match value {
            Value::String(s) if key == "hint" => terminal_hint(s, vocabulary),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("{key}: {text}\n"));
    }
    out
}

/// `pg_schema describe: no table named x` → `no table named x`: at a terminal the tool and
/// action are the command just typed, not news.
fn without_tool_prefix(message: &str) -> &str {
    let Some((head, rest)) = message.split_once(": ") else { return message };
    let words: Vec<&str> = head.split(' ').collect();
    let is_tool_action = words.len() == 2
        && words[0].starts_with("pg_")
        && words.iter().all(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    if is_tool_action { rest } else { message }
}

/// psql's error context: the line of `sql` holding the 1-based character `position`, and a
/// caret under that character.
pub(crate) fn caret(sql: &str, position: usize) -> Option<String> {
    let index = position.checked_sub(1)?;
    if index > sql.chars().count() {
        return None;
    }
    let mut line_number = 1;
    let mut line_start = 0;
    for (i, c) in sql.chars().enumerate().take(index) {
        if c == '\n' {
            line_number += 1;
            line_start = i + 1;
        }
    }
    let line: String = sql.chars().skip(line_start).take_while(|c| *c != '\n').collect();
    let prefix = format!("LINE {line_number}: ");
    let column = index - line_start;
    // Tabs keep their width under the caret; other characters count as one column.
    let pad: String = line.chars().take(column).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    Some(format!("{prefix}{}\n{}{pad}^\n", line.trim_end_matches('\r'), " ".repeat(prefix.len())))
}

/// The tools' hints name MCP parameters (`session_id`, `autocommit: true`, `pg_schema list`);
/// a person at a terminal gets the flags and shell commands that do the same.
pub(crate) fn terminal_hint(hint: &str, vocabulary: Vocabulary) -> String {
    let shell = vocabulary == Vocabulary::Shell;
    // Whole hints first, where a phrase-by-phrase rewrite would not read well.
    if hint.contains("'session_id' from pg_tx begin") && hint.contains("autocommit") {
        return if shell {
            "run BEGIN first (and COMMIT when done), or prefix the statement with \\a to commit it on its own".into()
        } else {
            "add --autocommit to commit it on its own, or run it in `coldquery shell` between BEGIN and COMMIT".into()
        };
    }
    if hint.contains("action 'write'") || hint.contains("use pg_query write with session_id or autocommit") {
        return if shell {
            "run it inside BEGIN ... COMMIT, or with the \\a prefix to commit it on its own".into()
        } else {
            "run it with `coldquery query write ... --autocommit`, or in `coldquery shell` between BEGIN and COMMIT"
                .into()
        };
    }
    if hint.starts_with("send one statement per call") {
        return if shell {
            "send one statement at a time".into()
        } else {
            "`coldquery query` runs one statement; for several use `coldquery -c 'S1; S2'`, `coldquery query \
             transaction`, or `coldquery shell`"
                .into()
        };
    }
    if hint.contains("run it without session_id") {
        return if shell {
            "COMMIT or ROLLBACK first, then run it with the \\a prefix (it commits on its own)".into()
        } else {
            "run it with --autocommit, outside a transaction".into()
        };
    }
    if hint.starts_with("run it alone with pg_query write") {
        return if shell {
            "run it alone, outside the transaction, with the \\a prefix (it commits on its own)".into()
        } else {
            "run it alone with `coldquery query write ... --autocommit`".into()
        };
    }
    if hint.starts_with("run EXPLAIN ANALYZE of a write inside a session")
        || hint.contains("for a write, begin a session")
    {
        let steps = "BEGIN, then EXPLAIN ANALYZE ..., then ROLLBACK if you only wanted the plan";
        return if shell {
            format!("EXPLAIN ANALYZE runs the statement: {steps}")
        } else {
            format!("EXPLAIN ANALYZE runs the statement: in `coldquery shell`, {steps}")
        };
    }
    if hint.starts_with("call pg_schema with action 'list'") {
        return if shell {
            "list the names with \\dt, \\dv, \\ds, \\df or \\dT (a pattern helps: \\dt ord*); write schema.name for an \
             object outside search_path; names are case-sensitive"
                .into()
        } else {
            "list the names with `coldquery schema list --target ... --pattern ...`; give --schema for an object \
             outside search_path; names are case-sensitive"
                .into()
        };
    }
    if hint.starts_with("call pg_tx with action 'list'") {
        return if shell {
            "type `sessions` to see this shell's transactions, or BEGIN to open one".into()
        } else {
            "open a transaction with BEGIN in `coldquery shell`".into()
        };
    }
    let phrases: &[(&str, &str, &str)] = &[
        ("pg_schema list", "\\dt", "`coldquery schema list`"),
        ("pg_schema describe", "\\d NAME", "`coldquery schema describe NAME`"),
        ("pg_monitor health", "`coldquery monitor health`", "`coldquery monitor health`"),
        (
            "pg_monitor activity (include_idle: true)",
            "`coldquery monitor activity --include-idle`",
            "`coldquery monitor activity --include-idle`",
        ),
        (
            "pg_admin settings and 'pattern'",
            "`coldquery admin settings --pattern`",
            "`coldquery admin settings --pattern`",
        ),
        ("pg_query explain with session_id", "EXPLAIN ANALYZE", "EXPLAIN ANALYZE in `coldquery shell`"),
        ("pg_tx list", "`sessions`", "`sessions` in `coldquery shell`"),
        ("call pg_tx rollback", "run ROLLBACK", "run ROLLBACK"),
        ("pg_tx rollback", "ROLLBACK", "ROLLBACK"),
        ("rollback_to", "ROLLBACK TO", "ROLLBACK TO"),
        ("pg_tx savepoint", "SAVEPOINT", "SAVEPOINT"),
        ("a session (pg_tx begin)", "a transaction (BEGIN)", "a transaction (BEGIN in `coldquery shell`)"),
        ("(pg_tx begin)", "(BEGIN)", "(BEGIN in `coldquery shell`)"),
        ("pg_tx begin", "BEGIN", "BEGIN in `coldquery shell`"),
        ("pg_query transaction", "`coldquery query transaction`", "`coldquery query transaction`"),
        ("pg_query write with autocommit: true", "the \\a prefix", "`coldquery query write --autocommit`"),
        ("(pg_query write with autocommit: true)", "(with the \\a prefix)", "(`coldquery --autocommit -c '...'`)"),
        ("pass 'autocommit: true'", "use the \\a prefix", "add --autocommit"),
        ("pass read_only: true", "the \\r prefix", "add --read-only"),
        ("or give 'schema'", "or write schema.table", "or give --schema"),
        ("or list target 'indexes'", "or list indexes with \\di", "or `coldquery schema list --target indexes`"),
        ("describe the index's table", "\\d the index's table", "describe the index's table"),
        ("'autocommit: true'", "the \\a prefix", "--autocommit"),
        ("autocommit: true", "the \\a prefix", "--autocommit"),
        ("max_rows", "--max-rows", "--max-rows"),
        ("'session_id'", "an open transaction", "a transaction in `coldquery shell`"),
        ("session_id", "an open transaction", "a transaction in `coldquery shell`"),
    ];
    let mut out = hint.to_owned();
    for (phrase, in_shell, in_command) in phrases {
        out = out.replace(phrase, if shell { in_shell } else { in_command });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lose_the_tool_and_action_they_came_from() {
        assert_eq!(without_tool_prefix("pg_schema describe: no table named x"), "no table named x");
        assert_eq!(without_tool_prefix("relation \"pg_x: y\" does not exist"), "relation \"pg_x: y\" does not exist");
        assert_eq!(without_tool_prefix("pg_query read: parameter 'x' is unknown"), "parameter 'x' is unknown");
    }

    #[test]
    fn the_caret_points_at_the_position() {
        assert_eq!(caret("SELECT * FROM nope", 15).unwrap(), "LINE 1: SELECT * FROM nope\n                      ^\n");
        assert_eq!(caret("SELECT 1,\n\tx", 12).unwrap(), "LINE 2: \tx\n        \t^\n");
        assert_eq!(caret("SELECT", 99), None);
    }

    /// Every hint the tools give today (collected from their source) reads without MCP
    /// names once the CLI has said it in its own words.
    #[test]
    fn no_tool_hint_keeps_mcp_names() {
        let hints = [
            "EXPLAIN ANALYZE runs the statement; for a write, begin a session (pg_tx begin) and pass its session_id, then roll back if you only wanted the plan",
            "call pg_schema with action 'list' and target 'tables' (a 'pattern' helps) to see the names; pass 'schema' for an object outside search_path; names are case-sensitive",
            "describe the index's table, or list target 'indexes'",
            "call pg_schema list to see what it is",
            "a batch that writes needs 'autocommit: true' (it commits atomically on its own), or pass read_only: true",
            "call pg_tx rollback (or rollback_to a savepoint made before the failure)",
            "call pg_tx with action 'list' to see your sessions, or 'begin' to open one",
            "commit or roll back a session you no longer need (pg_tx list shows yours); sessionless reads still work",
            "create it first with pg_tx savepoint; names are case-sensitive",
            "find settings with pg_admin settings and 'pattern'; extension settings appear once the extension's library is loaded",
            "it controls the connection or the transaction ColdQuery manages; begin a session with the options you need (pg_tx begin)",
            "list backends with pg_monitor activity (include_idle: true)",
            "list tables with pg_schema list, or give 'schema'",
            "pass 'autocommit: true' to run it on its own",
            "pass 'session_id' from pg_tx begin to run it inside a transaction you commit later, or 'autocommit: true' to commit it on its own",
            "retry the call; if it keeps failing, check that the server is up (pg_monitor health)",
            "run ALTER EXTENSION pg_stat_statements UPDATE; (PostgreSQL 13 or later)",
            "run EXPLAIN ANALYZE of a write inside a session (pg_tx begin, then pg_query explain with session_id, then pg_tx rollback)",
            "run it alone with pg_query write and autocommit: true",
            "run it without session_id and with 'autocommit: true'",
            "send one statement per call; for several writes that must commit together use pg_query transaction or a pg_tx session",
            "to enable it: add pg_stat_statements to shared_preload_libraries in postgresql.conf, restart PostgreSQL, then run CREATE EXTENSION pg_stat_statements; in this database (pg_query write with autocommit: true)",
            "use pg_query with action 'write' and either session_id (from pg_tx begin) or autocommit: true",
        ];
        let mcp = [
            "pg_tx",
            "pg_query",
            "pg_schema",
            "pg_admin",
            "pg_monitor",
            "session_id",
            "autocommit: true",
            "'pattern'",
            "'schema'",
            "target '",
            "read_only: true",
        ];
        let mut failures = Vec::new();
        for hint in hints {
            for vocabulary in [Vocabulary::Shell, Vocabulary::Command] {
                let said = terminal_hint(hint, vocabulary);
                let plain = said.replace("pg_stat_statements", "");
                if mcp.iter().any(|name| plain.contains(name)) {
                    failures.push(format!("{vocabulary:?}: {said}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn hints_speak_the_terminals_language() {
        let denied = "pass 'session_id' from pg_tx begin to run it inside a transaction you commit later, or 'autocommit: true' to commit it on its own";
        assert!(terminal_hint(denied, Vocabulary::Command).contains("--autocommit"));
        assert!(terminal_hint(denied, Vocabulary::Shell).contains("BEGIN"));
        let missing = "the table does not exist; list tables with pg_schema list";
        assert_eq!(terminal_hint(missing, Vocabulary::Shell), "the table does not exist; list tables with \\dt");
        let aborted =
            "the transaction failed earlier; call pg_tx rollback (or rollback_to a savepoint) and start again";
        assert_eq!(
            terminal_hint(aborted, Vocabulary::Shell),
            "the transaction failed earlier; run ROLLBACK (or ROLLBACK TO a savepoint) and start again"
        );
        for hint in [
            denied,
            missing,
            aborted,
            "retry the call; if it keeps failing, check that the server is up (pg_monitor health)",
        ] {
            for vocabulary in [Vocabulary::Shell, Vocabulary::Command] {
                let said = terminal_hint(hint, vocabulary);
                assert!(!said.contains("pg_") && !said.contains("session_id"), "{said}");
            }
        }
    }

    #[test]
    fn tool_errors_show_code_and_every_field() {
        let error = Error::new(ErrorKind::DatabaseError, "relation \"nope\" does not exist")
            .with_hint("check the name")
            .with_sqlstate("42P01")
            .with_position(15);
        let failure = Failure::from_error(&error);
        assert_eq!(failure.exit, Exit::ToolError);
        assert_eq!(failure.kind, Some(ErrorKind::DatabaseError));
        assert_eq!(
            failure.render_text(None, Vocabulary::Command),
            "error[DATABASE_ERROR]: relation \"nope\" does not exist\nhint: check the name\nsqlstate: 42P01\nposition: 15\n"
        );
        assert_eq!(
            failure.render_text(Some("SELECT *\nFROM nope"), Vocabulary::Command),
            "error[DATABASE_ERROR]: relation \"nope\" does not exist\nLINE 2: FROM nope\n             ^\nhint: check the name\nsqlstate: 42P01\n"
        );
        assert_eq!(Failure::usage("bad").render_text(None, Vocabulary::Shell), "error: bad\n");
        assert_eq!(Failure::usage("bad").exit as i32, 2);
        assert_eq!(
            Failure::from_error(&Error::new(ErrorKind::Unavailable, "down")).render_json(),
            "{\n  \"error\": {\n    \"code\": \"UNAVAILABLE\",\n    \"message\": \"down\"\n  }\n}"
        );
    }
}
