//! `coldquery shell`: a person uses a session the way an agent does. Lines come from stdin (a
//! terminal or a pipe); `begin`/`commit`/`rollback`/savepoints become `pg_tx` calls, every
//! other statement a `pg_query` call — in the open transaction when there is one. The prompt
//! shows the transaction's state (`coldquery[tx:idle]> `). End of input (Ctrl-D) rolls back an
//! open transaction and says so.
//!
//! What it deliberately is not: a second SQL engine. The only decision made here is which
//! `pg_query` action a statement goes to, and that uses the tools' own classifier.

use coldquery_core::CallerSql;
use coldquery_tools::{Tools, classify};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{Format, PromptMode, Request, ShellArgs};
use crate::fail::{Exit, Failure};
use crate::{Interrupt, output};

const HELP: &str = r"Commands (a trailing ';' is optional):
  begin [ISOLATION] [read_only] [deferrable] [rollback_statement]
                       open a transaction; ISOLATION is read_committed (default),
                       repeatable_read, serializable or read_uncommitted (SQL spelling too)
  commit               commit it
  rollback             roll it back
  savepoint NAME       release NAME       rollback to NAME
  status               the open transaction's state
  sessions             the open sessions of this shell
  \d [NAME]            list tables, or describe one
  \format FORMAT       table, json, csv or markdown
  help                 this text
  \q, quit, Ctrl-D     leave (an open transaction is rolled back)

Anything else is one SQL statement, ended by ';' at the end of a line (it may span lines).
It runs as a read (pg_query read) when PostgreSQL's parser says it only reads, otherwise as
a write (pg_query write) -- inside the open transaction; without one a write is refused
(Default-Deny: nothing is ever committed that you did not ask for).
Prefixes choose the path: \r SQL (read), \w SQL (write), \a SQL (write committed on its own).
";

/// The statement kinds that go to `pg_query read` (the tools' own read kinds).
const READ_KINDS: [&str; 3] = ["SelectStmt", "VariableShowStmt", "ExplainStmt"];

/// Runs the shell until end of input or `\q`. Exit 0 when every command succeeded, else 1.
pub(crate) async fn run(tools: &Tools, interrupt: &Interrupt, args: &ShellArgs, format: Format) -> Exit {
    interrupt.keep_running();
    let show_prompt = match args.prompt {
        PromptMode::Always => true,
        PromptMode::Never => false,
        PromptMode::Auto => crate::stdin_is_terminal(),
    };
    let mut shell = Shell { tools, interrupt, format, session: None, failed: false };
    if show_prompt {
        eprintln!("coldquery shell: end statements with ';'. Type help for commands, \\q or Ctrl-D to quit.");
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending = Pending::default();
    loop {
        if show_prompt {
            eprint!("{}", shell.prompt(!pending.text.is_empty()));
        }
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                eprintln!("error: reading stdin: {e}");
                shell.failed = true;
                break;
            }
        };
        if pending.text.is_empty() {
            match parse_command(&line) {
                Parsed::Empty => continue,
                Parsed::Command(Ok(Command::Quit)) => break,
                Parsed::Command(Ok(command)) => {
                    shell.command(command).await;
                    continue;
                }
                Parsed::Command(Err(message)) => {
                    shell.fail(&Failure::usage(message));
                    continue;
                }
                Parsed::Sql(mode, text) => {
                    pending.mode = mode;
                    pending.push(&text);
                }
            }
        } else {
            pending.push(&line);
        }
        if line.trim_end().ends_with(';') {
            let (mode, sql) = pending.take();
            shell.statement(mode, sql).await;
        }
    }
    if !pending.text.trim().is_empty() {
        let (mode, sql) = pending.take();
        shell.statement(mode, sql).await;
    }
    if show_prompt {
        eprintln!();
    }
    if let Some(session) = shell.session.take() {
        let request = tx("rollback", Some(&session.id));
        match crate::call(tools, interrupt, &request).await {
            Ok(_) => eprintln!("end of input: the open transaction (session {}) was rolled back", session.id),
            Err(failure) => {
                eprintln!(
                    "end of input: rolling back session {} failed (closing the connection rolls it back):",
                    session.id
                );
                shell.fail(&failure);
            }
        }
    }
    if shell.failed { Exit::ToolError } else { Exit::Ok }
}

/// How a statement is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    /// Read or write, as the parser classifies it.
    #[default]
    Auto,
    /// `\r`: pg_query read.
    Read,
    /// `\w`: pg_query write (in the open transaction).
    Write,
    /// `\a`: pg_query write with autocommit.
    Autocommit,
}

/// A statement being typed over several lines.
#[derive(Debug, Default)]
struct Pending {
    mode: Mode,
    text: String,
}

impl Pending {
    fn push(&mut self, line: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
    }

    fn take(&mut self) -> (Mode, String) {
        let text = std::mem::take(&mut self.text);
        let sql = text.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace()).to_owned();
        (std::mem::take(&mut self.mode), sql)
    }
}

/// A shell command.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    Begin(Value),
    Commit,
    Rollback,
    Savepoint(String),
    Release(String),
    RollbackTo(String),
    Status,
    Sessions,
    Describe(Option<String>),
    Format(Format),
    Help,
    Quit,
}

/// What a first line is.
#[derive(Debug, PartialEq)]
enum Parsed {
    Empty,
    Command(Result<Command, String>),
    Sql(Mode, String),
}

/// Recognises the shell's commands (case-insensitive, trailing `;` optional); anything else is
/// the start of a SQL statement.
fn parse_command(line: &str) -> Parsed {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Parsed::Empty;
    }
    for (prefix, mode) in [("\\r", Mode::Read), ("\\w", Mode::Write), ("\\a", Mode::Autocommit)] {
        if let Some(rest) = trimmed.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            return Parsed::Sql(mode, rest.trim_start().to_owned());
        }
    }
    let bare = trimmed.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let words: Vec<&str> = bare.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let noise = |w: &&str| *w == "work" || *w == "transaction";
    let command = match lower.as_slice() {
        ["begin", rest @ ..] => begin(rest).map(Command::Begin),
        ["start", "transaction", rest @ ..] => begin(rest).map(Command::Begin),
        ["commit" | "end", rest @ ..] if rest.iter().all(noise) => Ok(Command::Commit),
        ["rollback" | "abort", rest @ ..] if rest.iter().all(noise) => Ok(Command::Rollback),
        ["rollback", ..] => {
            // rollback [work|transaction] to [savepoint] NAME
            let mut at = 1;
            while lower.get(at).is_some_and(noise) {
                at += 1;
            }
            match (lower.get(at), lower.get(at + 1), lower.get(at + 2)) {
                (Some(&"to"), Some(&"savepoint"), Some(_)) if words.len() == at + 3 => {
                    Ok(Command::RollbackTo(words[at + 2].to_owned()))
                }
                (Some(&"to"), Some(_), None) => Ok(Command::RollbackTo(words[at + 1].to_owned())),
                _ => Err("usage: rollback, or rollback to NAME".to_owned()),
            }
        }
        ["savepoint", _] => Ok(Command::Savepoint(words[1].to_owned())),
        ["savepoint", ..] => Err("usage: savepoint NAME".to_owned()),
        ["release", "savepoint", _] => Ok(Command::Release(words[2].to_owned())),
        ["release", _] => Ok(Command::Release(words[1].to_owned())),
        ["release", ..] => Err("usage: release NAME".to_owned()),
        ["status"] => Ok(Command::Status),
        ["sessions"] => Ok(Command::Sessions),
        ["help"] | ["\\?"] | ["\\h"] => Ok(Command::Help),
        ["\\q"] | ["quit"] | ["exit"] => Ok(Command::Quit),
        ["\\d"] => Ok(Command::Describe(None)),
        ["\\d", _] => Ok(Command::Describe(Some(words[1].to_owned()))),
        ["\\format", name] => match *name {
            "table" => Ok(Command::Format(Format::Table)),
            "json" => Ok(Command::Format(Format::Json)),
            "csv" => Ok(Command::Format(Format::Csv)),
            "markdown" | "md" => Ok(Command::Format(Format::Markdown)),
            other => Err(format!("unknown format '{other}'; choose table, json, csv or markdown")),
        },
        [first, ..] if first.starts_with('\\') => Err(format!("unknown command {first}; type help")),
        _ => return Parsed::Sql(Mode::Auto, line.to_owned()),
    };
    Parsed::Command(command)
}

/// `begin`'s options as `pg_tx begin` arguments. Accepts `serializable` or the SQL spelling
/// `isolation level serializable`, `read_only` or `read only`, `deferrable`, `rollback_statement`.
fn begin(words: &[&str]) -> Result<Value, String> {
    let mut args = json!({"action": "begin"});
    let mut at = 0;
    let usage = "usage: begin [read_committed|repeatable_read|serializable|read_uncommitted] [read_only] [deferrable] [rollback_statement]";
    while at < words.len() {
        let (consumed, key, value) = match &words[at..] {
            ["work" | "transaction", ..] => (1, None, Value::Null),
            ["isolation", "level", "serializable", ..] => (3, Some("isolation_level"), json!("serializable")),
            ["isolation", "level", level @ ("repeatable" | "read"), second, ..] => {
                (4, Some("isolation_level"), json!(format!("{level}_{second}")))
            }
            ["serializable" | "repeatable_read" | "read_committed" | "read_uncommitted", ..] => {
                (1, Some("isolation_level"), json!(words[at]))
            }
            ["read", "only", ..] => (2, Some("read_only"), json!(true)),
            ["read", "write", ..] => (2, None, Value::Null),
            ["read_only", ..] => (1, Some("read_only"), json!(true)),
            ["not", "deferrable", ..] => (2, None, Value::Null),
            ["deferrable", ..] => (1, Some("deferrable"), json!(true)),
            ["rollback_statement", ..] => (1, Some("on_error"), json!("rollback_statement")),
            _ => return Err(format!("begin: unknown option '{}'; {usage}", words[at])),
        };
        if let Some(key) = key {
            args[key] = value;
        }
        at += consumed;
    }
    Ok(args)
}

/// A `pg_tx` call.
fn tx(action: &str, session_id: Option<&str>) -> Request {
    let mut args = json!({ "action": action });
    if let Some(id) = session_id {
        args["session_id"] = json!(id);
    }
    Request { tool: "pg_tx".to_owned(), args }
}

#[derive(Debug)]
struct Session {
    id: String,
    state: String,
}

struct Shell<'a> {
    tools: &'a Tools,
    interrupt: &'a Interrupt,
    format: Format,
    session: Option<Session>,
    failed: bool,
}

impl Shell<'_> {
    fn prompt(&self, continuation: bool) -> String {
        let arrow = if continuation { "->" } else { ">" };
        match &self.session {
            None => format!("coldquery{arrow} "),
            Some(session) => format!("coldquery[tx:{}]{arrow} ", session.state),
        }
    }

    fn fail(&mut self, failure: &Failure) {
        self.failed = true;
        crate::report(failure, self.format);
    }

    fn show(&self, value: &Value) {
        crate::print(&output::render(value, self.format));
    }

    /// A short confirmation in table format; the tool's JSON otherwise.
    fn confirm(&self, text: &str, value: &Value) {
        if self.format == Format::Table {
            crate::print(&format!("{text}\n"));
        } else {
            self.show(value);
        }
    }

    async fn call(&mut self, request: &Request) -> Result<Value, Failure> {
        let outcome = crate::call(self.tools, self.interrupt, request).await;
        match &outcome {
            Ok(value) => {
                if let (Some(session), Some(state)) =
                    (self.session.as_mut(), value["session"]["transaction_state"].as_str())
                {
                    session.state = state.to_owned();
                }
            }
            Err(failure) => {
                self.failed = true;
                if failure.error["code"] == "SESSION_NOT_FOUND" {
                    self.session = None;
                }
            }
        }
        outcome
    }

    /// After a failed statement in the transaction: the tools say what state it is in now.
    async fn refresh(&mut self) {
        let Some(id) = self.session.as_ref().map(|s| s.id.clone()) else { return };
        match crate::call(self.tools, self.interrupt, &tx("status", Some(&id))).await {
            Ok(value) => {
                if let (Some(session), Some(state)) = (self.session.as_mut(), value["transaction_state"].as_str()) {
                    session.state = state.to_owned();
                }
            }
            Err(_) => {
                eprintln!("the transaction (session {id}) is gone: it was rolled back");
                self.session = None;
            }
        }
    }

    async fn command(&mut self, command: Command) {
        let session_id = self.session.as_ref().map(|s| s.id.clone());
        match command {
            Command::Begin(args) => {
                if let Some(id) = session_id {
                    let message = format!("a transaction is already open (session {id}); commit or rollback first");
                    self.fail(&Failure::usage(message));
                    return;
                }
                let request = Request { tool: "pg_tx".to_owned(), args };
                match self.call(&request).await {
                    Ok(value) => {
                        let id = value["session_id"].as_str().unwrap_or_default().to_owned();
                        let state = value["transaction_state"].as_str().unwrap_or("idle").to_owned();
                        let isolation = value["isolation_level"].as_str().unwrap_or_default();
                        let read_only = if value["read_only"] == true { ", read only" } else { "" };
                        self.confirm(&format!("BEGIN (session {id}, {isolation}{read_only})"), &value);
                        self.session = Some(Session { id, state });
                    }
                    Err(failure) => self.fail(&failure),
                }
            }
            Command::Commit | Command::Rollback => {
                let (action, tag) =
                    if command == Command::Commit { ("commit", "COMMIT") } else { ("rollback", "ROLLBACK") };
                let Some(id) = session_id else {
                    self.fail(&Failure::usage(format!("no transaction is open; nothing to {action}")));
                    return;
                };
                let outcome = self.call(&tx(action, Some(&id))).await;
                // Commit and rollback end the session whatever they report (COMMIT_FAILED
                // means it was rolled back; an unknown outcome leaves nothing to continue).
                self.session = None;
                match outcome {
                    Ok(value) => self.confirm(tag, &value),
                    Err(failure) => self.fail(&failure),
                }
            }
            Command::Savepoint(ref name) | Command::Release(ref name) | Command::RollbackTo(ref name) => {
                let (action, tag) = match &command {
                    Command::Savepoint(_) => ("savepoint", "SAVEPOINT"),
                    Command::Release(_) => ("release", "RELEASE"),
                    _ => ("rollback_to", "ROLLBACK TO"),
                };
                let Some(id) = session_id else {
                    self.fail(&Failure::usage(format!("no transaction is open; {action} needs one (begin first)")));
                    return;
                };
                let mut request = tx(action, Some(&id));
                request.args["name"] = json!(name);
                match self.call(&request).await {
                    Ok(value) => self.confirm(&format!("{tag} {name}"), &value),
                    Err(failure) => {
                        self.fail(&failure);
                        self.refresh().await;
                    }
                }
            }
            Command::Status => {
                let Some(id) = session_id else {
                    crate::print("no transaction is open\n");
                    return;
                };
                match self.call(&tx("status", Some(&id))).await {
                    Ok(value) => self.show(&value),
                    Err(failure) => self.fail(&failure),
                }
            }
            Command::Sessions => match self.call(&tx("list", None)).await {
                Ok(value) => self.show(&value),
                Err(failure) => self.fail(&failure),
            },
            Command::Describe(name) => {
                let mut args = match name {
                    Some(name) => json!({"action": "describe", "name": name}),
                    None => json!({"action": "list"}),
                };
                if let Some(id) = session_id {
                    args["session_id"] = json!(id);
                }
                match self.call(&Request { tool: "pg_schema".to_owned(), args }).await {
                    Ok(value) => self.show(&value),
                    Err(failure) => {
                        self.fail(&failure);
                        self.refresh().await;
                    }
                }
            }
            Command::Format(format) => self.format = format,
            Command::Help => crate::print(HELP),
            Command::Quit => {}
        }
    }

    async fn statement(&mut self, mode: Mode, sql: String) {
        if sql.is_empty() {
            return;
        }
        let session_id = self.session.as_ref().map(|s| s.id.clone());
        let read = match mode {
            Mode::Read => true,
            Mode::Write | Mode::Autocommit => false,
            // A statement that does not parse goes to `read`, which reports the syntax error.
            Mode::Auto => match CallerSql::new(sql.clone()).ok().and_then(|sql| classify(&sql).ok()) {
                Some(classified) => !classified.writes && READ_KINDS.contains(&classified.kind.as_str()),
                None => true,
            },
        };
        let mut args = json!({"action": if read { "read" } else { "write" }, "sql": sql});
        if mode == Mode::Autocommit {
            args["autocommit"] = json!(true);
        } else if let Some(id) = &session_id {
            args["session_id"] = json!(id);
        }
        match self.call(&Request { tool: "pg_query".to_owned(), args }).await {
            Ok(value) => self.show(&value),
            Err(failure) => {
                self.fail(&failure);
                if failure.error["code"] == "WRITE_DENIED" && session_id.is_none() && mode != Mode::Autocommit {
                    eprintln!("shell: run `begin` first, or prefix the statement with \\a to commit it on its own");
                }
                self.refresh().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(line: &str) -> Command {
        match parse_command(line) {
            Parsed::Command(Ok(command)) => command,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn transaction_commands_are_recognised_in_both_spellings() {
        assert_eq!(command("begin"), Command::Begin(json!({"action": "begin"})));
        assert_eq!(
            command("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"),
            Command::Begin(json!({"action": "begin", "isolation_level": "repeatable_read", "read_only": true}))
        );
        assert_eq!(
            command("start transaction serializable deferrable rollback_statement"),
            Command::Begin(json!({"action": "begin", "isolation_level": "serializable", "deferrable": true,
                                  "on_error": "rollback_statement"}))
        );
        assert_eq!(command("commit;"), Command::Commit);
        assert_eq!(command("END WORK"), Command::Commit);
        assert_eq!(command("rollback"), Command::Rollback);
        assert_eq!(command("ROLLBACK TO SAVEPOINT Before"), Command::RollbackTo("Before".into()));
        assert_eq!(command("rollback to a;"), Command::RollbackTo("a".into()));
        assert_eq!(command("savepoint a"), Command::Savepoint("a".into()));
        assert_eq!(command("release savepoint a"), Command::Release("a".into()));
        assert_eq!(command("\\d orders"), Command::Describe(Some("orders".into())));
        assert_eq!(command("\\format csv"), Command::Format(Format::Csv));
        assert_eq!(command("\\q"), Command::Quit);
    }

    #[test]
    fn everything_else_is_sql() {
        assert_eq!(parse_command("   "), Parsed::Empty);
        assert_eq!(parse_command("SELECT 1;"), Parsed::Sql(Mode::Auto, "SELECT 1;".into()));
        assert_eq!(parse_command("beginning_of_time()"), Parsed::Sql(Mode::Auto, "beginning_of_time()".into()));
        assert_eq!(
            parse_command("\\a INSERT INTO t VALUES (1);"),
            Parsed::Sql(Mode::Autocommit, "INSERT INTO t VALUES (1);".into())
        );
        assert_eq!(parse_command("\\r SELECT 1"), Parsed::Sql(Mode::Read, "SELECT 1".into()));
        assert_eq!(parse_command("\\w"), Parsed::Sql(Mode::Write, String::new()));
    }

    #[test]
    fn bad_commands_say_how_to_use_them() {
        for line in ["begin sideways", "savepoint", "rollback to", "\\format yaml", "\\x"] {
            assert!(matches!(parse_command(line), Parsed::Command(Err(_))), "{line}");
        }
    }

    #[test]
    fn a_statement_may_span_lines_and_loses_its_semicolon() {
        let mut pending = Pending { mode: Mode::Write, ..Pending::default() };
        pending.push("INSERT INTO t");
        pending.push("VALUES (1);  ");
        assert_eq!(pending.take(), (Mode::Write, "INSERT INTO t\nVALUES (1)".to_owned()));
        assert_eq!(pending.take(), (Mode::Auto, String::new()));
    }
}
