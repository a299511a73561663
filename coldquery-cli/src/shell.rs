//! The statement runner behind `coldquery shell`, `coldquery -c`, `-f` and SQL on stdin: psql's
//! habits over ColdQuery's tools. Lines come from a line editor on a terminal, or from a pipe
//! or a file ([`crate::input`]); statements end where PostgreSQL's scanner finds a `;`
//! ([`crate::statements`]), so a function body in dollar quotes is one statement and
//! `SELECT 1; SELECT 2;` is two. `BEGIN`/`COMMIT`/`ROLLBACK`/savepoints become `pg_tx` calls,
//! every other statement a `pg_query` call — in the open transaction when there is one.
//!
//! On a terminal, Ctrl-C clears the statement being typed and Ctrl-D discards it and quits:
//! nothing runs that was not finished with `;`. From a file or a pipe, a last statement without
//! `;` runs at the end of the input, as psql runs it. The end of the input rolls back an open
//! transaction and says so.
//!
//! What it deliberately is not: a second SQL engine. The only decision made here is which
//! `pg_query` action a statement goes to, and that uses the tools' own classifier.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use coldquery_core::{CallerSql, ErrorKind};
use coldquery_tools::{Tools, classify};
use serde_json::{Value, json};

use crate::cli::{Request, ScriptArgs};
use crate::fail::{Exit, Failure, Vocabulary};
use crate::input::{Input, Read};
use crate::output::{Format, Origin, Style};
use crate::statements::{self, Open};
use crate::{Interrupt, output};

const HELP: &str = r"Statements end with ';' (several may share a line; a ';' inside quotes, dollar quotes or
comments ends nothing). Ctrl-C clears the statement being typed; Ctrl-D quits and discards it.

Transactions (writes are denied outside one unless you say how they commit):
  BEGIN [ISOLATION LEVEL ...] [READ ONLY] [DEFERRABLE]   (also: begin rollback_statement)
  COMMIT | ROLLBACK | SAVEPOINT name | RELEASE name | ROLLBACK TO name
  status               the open transaction's state
  sessions             the open sessions of this shell
  \a SQL               run SQL as a write that commits on its own (outside the transaction)
  \r SQL               run SQL as a read      \w SQL   run SQL as a write in the transaction

Informational (PATTERN: * and ? wildcards, optionally schema.PATTERN):
  \d [NAME]            list tables, views and sequences, or describe one
  \dt \dv \dm \di \ds \df \dn \dx \dT [PATTERN]
                       tables, views, materialized views, indexes, sequences, functions,
                       schemas, extensions, types
  \l                   databases (and their sizes)
  \conninfo            where this shell is connected

Output (notices, timing and session state go to stderr; data to stdout):
  \x [on|off]          expanded output          \timing [on|off]   time each statement
  \t [on|off]          rows only                \a                 aligned / unaligned
  \pset null TEXT      show NULL as TEXT        \pset format aligned|unaligned|csv|json|markdown
  \pset pager on|off|always   page results longer than the terminal ($PSQL_PAGER, $PAGER, less)
  \pset                show the settings       \format FORMAT     the same as \pset format

Input and others:
  \g, \gx             at the end of a line: send the statement (\gx: expanded)
  \i FILE              run the statements in FILE
  \set ON_ERROR_STOP on  stop a script at its first failing statement (psql's variable)
  \echo TEXT           print TEXT
  \watch [i=]SEC [c=N] run the statement being typed (or the last one) every SEC seconds
                       (default 2), N times or until Ctrl-C
  \r                   clear the statement being typed
  \?, help             this text
  \q, quit, Ctrl-D     leave (an open transaction is rolled back)
";

/// The statement kinds that go to `pg_query read` (the tools' own read kinds).
const READ_KINDS: [&str; 3] = ["SelectStmt", "VariableShowStmt", "ExplainStmt"];

/// When results go through a pager (psql's `\pset pager`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pager {
    Off,
    /// When the output is longer than the terminal (on a terminal only).
    On,
    Always,
}

/// How deep `\i` may nest.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Everything the runner needs besides its input.
#[derive(Debug)]
pub(crate) struct Setup<'a> {
    pub(crate) tools: &'a Tools,
    pub(crate) interrupt: &'a Interrupt,
    pub(crate) style: Style,
    pub(crate) script: ScriptArgs,
    /// Print the prompt on stderr when the input is not a terminal.
    pub(crate) prompt_on_stderr: bool,
    /// Whose words hints use: the shell's, or the one-shot flags' (`-c`, `-f`, stdin).
    pub(crate) vocabulary: Vocabulary,
    /// `\conninfo`'s answer.
    pub(crate) conninfo: String,
    /// `--all`: reads outside a transaction are streamed to stdout.
    pub(crate) all: bool,
}

/// Runs the inputs one after the other, then rolls back a transaction still open. Exit 0
/// when every statement succeeded, else 1.
pub(crate) async fn run(setup: Setup<'_>, inputs: Vec<Input>) -> Exit {
    let mut shell = Shell {
        tools: setup.tools,
        interrupt: setup.interrupt,
        style: setup.style,
        timing: false,
        script: setup.script,
        prompt_on_stderr: setup.prompt_on_stderr,
        vocabulary: setup.vocabulary,
        conninfo: setup.conninfo,
        all: setup.all,
        last: None,
        session: None,
        failed: false,
        stop: false,
        depth: 0,
        pager: Pager::On,
        pageable: false,
        rows: None,
    };
    for input in inputs {
        if shell.stop {
            input.close().await;
            break;
        }
        let interactive = input.interactive();
        if interactive {
            eprintln!("coldquery shell: statements end with ';'. Type \\? for help, \\q or Ctrl-D to quit.");
        }
        let input = shell.consume(input).await;
        input.close().await;
        if interactive || shell.prompt_on_stderr {
            eprintln!();
        }
    }
    if let Some(session) = shell.session.take() {
        let request = tx("rollback", Some(&session.id));
        match crate::call(shell.tools, shell.interrupt, &request).await {
            Ok(_) => eprintln!("end of input: the open transaction (session {}) was rolled back", session.id),
            Err(failure) => {
                eprintln!(
                    "end of input: rolling back session {} failed (closing the connection rolls it back):",
                    session.id
                );
                shell.fail(&failure, None);
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

/// The statement being typed.
#[derive(Debug, Default)]
struct Buffer {
    mode: Mode,
    text: String,
}

impl Buffer {
    fn push(&mut self, line: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
    }

    fn clear(&mut self) {
        self.text.clear();
        self.mode = Mode::Auto;
    }

    fn is_empty(&self) -> bool {
        self.text.trim().is_empty()
    }
}

/// A shell command: transaction control, or a backslash command.
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
    /// `\d`, `\dt`, ...: what to list (`None` for `\d`) and the pattern or name.
    List(Option<&'static str>, Option<String>),
    Describe(String),
    Databases,
    Conninfo,
    Expanded(Option<bool>),
    Timing(Option<bool>),
    TuplesOnly(Option<bool>),
    ToggleAlign,
    Null(String),
    Pager(Pager),
    Format(Format),
    ShowSettings,
    Include(String),
    /// `\set ON_ERROR_STOP on|off` (the one psql variable the shell knows).
    OnErrorStop(bool),
    /// `\echo TEXT`.
    Echo(String),
    /// `\watch [i=]SECONDS [c=COUNT]`: run the statement again every SECONDS.
    Watch {
        interval: f64,
        count: Option<u64>,
    },
    ResetBuffer,
    Help,
    Quit,
}

/// What a line is when it is not (part of) a statement.
#[derive(Debug, PartialEq)]
enum Parsed {
    Empty,
    Command(Result<Command, String>),
    /// `\r SQL`, `\w SQL`, `\a SQL`: SQL sent a chosen way.
    Sql(Mode, String),
}

/// Recognises a backslash command, or a shell word (`help`, `quit`, `status`, `begin`...)
/// alone on a line (trailing `;` optional). `None`: the line is SQL.
fn parse_line(line: &str) -> Option<Parsed> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Some(Parsed::Empty);
    }
    if trimmed.starts_with('\\') {
        return Some(backslash(trimmed));
    }
    if trimmed.trim_end_matches(';').contains(';') {
        return None;
    }
    let command = parse_command(trimmed)?;
    Some(Parsed::Command(command))
}

fn on_off(word: Option<&str>) -> Result<Option<bool>, String> {
    match word.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("on" | "true" | "1" | "yes") => Ok(Some(true)),
        Some("off" | "false" | "0" | "no") => Ok(Some(false)),
        Some(other) => Err(format!("unrecognized value \"{other}\": on or off")),
    }
}

fn format_named(name: &str) -> Result<Format, String> {
    match name.to_ascii_lowercase().as_str() {
        "aligned" | "table" => Ok(Format::Table),
        "unaligned" => Ok(Format::Unaligned),
        "csv" => Ok(Format::Csv),
        "json" => Ok(Format::Json),
        "markdown" | "md" => Ok(Format::Markdown),
        other => Err(format!("\\pset: allowed formats are aligned, unaligned, csv, json, markdown (not {other})")),
    }
}

/// A backslash command line.
fn backslash(line: &str) -> Parsed {
    let (name, rest) = match line.find(char::is_whitespace) {
        Some(at) => (&line[..at], line[at..].trim()),
        None => (line, ""),
    };
    let args: Vec<&str> = rest.split_whitespace().collect();
    let arg = args.first().copied();
    let pattern = || arg.map(str::to_owned);
    // `\r`, `\w` and `\a` followed by SQL choose how that SQL is sent.
    if !rest.is_empty() {
        let mode = match name {
            "\\r" => Some(Mode::Read),
            "\\w" => Some(Mode::Write),
            "\\a" => Some(Mode::Autocommit),
            _ => None,
        };
        if let Some(mode) = mode {
            return Parsed::Sql(mode, rest.to_owned());
        }
    }
    let command = match name {
        "\\q" | "\\quit" => Ok(Command::Quit),
        "\\?" | "\\h" | "\\help" => Ok(Command::Help),
        "\\r" | "\\reset" => Ok(Command::ResetBuffer),
        "\\d" | "\\d+" => Ok(match arg {
            Some(name) => Command::Describe(name.to_owned()),
            None => Command::List(None, None),
        }),
        "\\dt" | "\\dt+" => Ok(Command::List(Some("tables"), pattern())),
        "\\dv" | "\\dv+" => Ok(Command::List(Some("views"), pattern())),
        "\\dm" | "\\dm+" => Ok(Command::List(Some("materialized_views"), pattern())),
        "\\di" | "\\di+" => Ok(Command::List(Some("indexes"), pattern())),
        "\\ds" | "\\ds+" => Ok(Command::List(Some("sequences"), pattern())),
        "\\df" | "\\df+" => Ok(Command::List(Some("functions"), pattern())),
        "\\dn" | "\\dn+" => Ok(Command::List(Some("schemas"), pattern())),
        "\\dx" | "\\dx+" => Ok(Command::List(Some("extensions"), pattern())),
        "\\dT" | "\\dT+" => Ok(Command::List(Some("types"), pattern())),
        "\\l" | "\\l+" | "\\list" => Ok(Command::Databases),
        "\\conninfo" => Ok(Command::Conninfo),
        "\\x" => on_off(arg).map(Command::Expanded),
        "\\timing" => on_off(arg).map(Command::Timing),
        "\\t" => on_off(arg).map(Command::TuplesOnly),
        "\\a" => Ok(Command::ToggleAlign),
        "\\format" => match arg {
            Some(name) => format_named(name).map(Command::Format),
            None => Err("usage: \\format aligned|unaligned|csv|json|markdown".to_owned()),
        },
        "\\pset" => match (arg, args.get(1).copied()) {
            (None, _) => Ok(Command::ShowSettings),
            (Some("null"), value) => Ok(Command::Null(unquote(value.map_or("", |_| rest["null".len()..].trim())))),
            (Some("format"), Some(name)) => format_named(name).map(Command::Format),
            (Some("tuples_only"), value) => on_off(value).map(Command::TuplesOnly),
            (Some("pager"), Some("always")) => Ok(Command::Pager(Pager::Always)),
            (Some("pager"), value) => {
                on_off(value).map(|on| Command::Pager(if on == Some(false) { Pager::Off } else { Pager::On }))
            }
            (Some("expanded" | "x"), value) => on_off(value).map(Command::Expanded),
            (Some(option), _) => Err(format!(
                "\\pset: unknown or incomplete option {option}; the options are null, format, tuples_only, expanded, pager"
            )),
        },
        "\\set" => match (arg, args.get(1).copied()) {
            (Some("ON_ERROR_STOP"), value) => {
                on_off(value.or(Some("on"))).map(|on| Command::OnErrorStop(on.unwrap_or(true)))
            }
            _ => Err("\\set: the shell has no variables; it knows ON_ERROR_STOP (\\set ON_ERROR_STOP on)".to_owned()),
        },
        "\\echo" => Ok(Command::Echo(arguments(rest).join(" "))),
        "\\watch" => watch(&args),
        "\\i" | "\\ir" | "\\include" => match arg {
            Some(_) => Ok(Command::Include(unquote(rest))),
            None => Err(format!("{name}: missing required argument (a file name)")),
        },
        other => Err(format!("invalid command {other}; try \\? for help")),
    };
    Parsed::Command(command)
}

/// `\watch`'s options as psql 16 takes them: `SECONDS` or `i=SECONDS`, and `c=COUNT`.
fn watch(args: &[&str]) -> Result<Command, String> {
    let usage = "usage: \\watch [i=]SECONDS [c=COUNT]";
    let mut interval = 2.0;
    let mut count = None;
    for arg in args {
        let (key, value) = arg.split_once('=').unwrap_or(("i", arg));
        match key {
            "i" | "interval" => {
                interval = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| format!("\\watch: invalid interval \"{value}\"; {usage}"))?;
            }
            "c" | "count" => {
                count = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|c| *c > 0)
                        .ok_or_else(|| format!("\\watch: invalid count \"{value}\"; {usage}"))?,
                );
            }
            _ => return Err(format!("\\watch: unknown option \"{arg}\"; {usage}")),
        }
    }
    Ok(Command::Watch { interval, count })
}

/// A backslash command's arguments as psql splits them: at whitespace, except inside
/// `'single quotes'` (where `''` is a quote).
fn arguments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '\'' {
                chars.next();
                if quoted && chars.peek() == Some(&'\'') {
                    chars.next();
                    word.push('\'');
                } else {
                    quoted = !quoted;
                }
            } else if c.is_whitespace() && !quoted {
                break;
            } else {
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    out
}

/// `'text'` → `text`, as psql reads a quoted backslash-command argument.
fn unquote(text: &str) -> String {
    let text = text.trim();
    match text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => text.to_owned(),
    }
}

/// Transaction control and the shell's words (case-insensitive, trailing `;` optional).
/// `None`: not one of them.
fn parse_command(text: &str) -> Option<Result<Command, String>> {
    let bare = text.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let spaced = bare.replace(',', " ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let noise = |w: &&str| *w == "work" || *w == "transaction";
    Some(match lower.as_slice() {
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
        ["help"] => Ok(Command::Help),
        ["quit"] | ["exit"] => Ok(Command::Quit),
        _ => return None,
    })
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
    style: Style,
    timing: bool,
    script: ScriptArgs,
    prompt_on_stderr: bool,
    vocabulary: Vocabulary,
    conninfo: String,
    all: bool,
    /// The last statement sent, for `\watch`.
    last: Option<(Mode, String)>,
    session: Option<Session>,
    failed: bool,
    /// `\q`, or a failure with --on-error-stop.
    stop: bool,
    /// `\i` nesting.
    depth: usize,
    pager: Pager,
    /// The shell reads from a terminal and writes to one: results may be paged.
    pageable: bool,
    /// The terminal's height, when known.
    rows: Option<usize>,
}

type Boxed<'f, T> = Pin<Box<dyn Future<Output = T> + 'f>>;

impl Shell<'_> {
    fn prompt(&self, buffer: &Buffer) -> String {
        let mark = if buffer.text.is_empty() { '=' } else { statements::open(&buffer.text).prompt_char() };
        match &self.session {
            None => format!("coldquery{mark}> "),
            Some(session) => format!("coldquery[tx:{}]{mark}> ", session.state),
        }
    }

    fn fail(&mut self, failure: &Failure, sql: Option<&str>) {
        self.failed = true;
        if self.script.on_error_stop {
            self.stop = true;
        }
        let text = match self.style.format {
            Format::Json => failure.render_json() + "\n",
            _ => failure.render_text(sql, self.vocabulary),
        };
        eprint!("{text}");
    }

    fn origin<'s>(&self, sql: Option<&'s str>) -> Origin<'s> {
        let config = self.tools.config();
        Origin {
            sql,
            max_rows: Some(config.max_rows),
            max_rows_limit: Some(config.max_rows_limit),
            max_result_bytes: Some(config.max_result_bytes),
        }
    }

    fn show(&self, value: &Value, sql: Option<&str>) {
        let rendered = output::render(value, &self.style, &self.origin(sql));
        if !self.page(&rendered.stdout) {
            crate::print(&rendered.stdout);
        }
        eprint!("{}", rendered.stderr);
    }

    /// Shows `text` through the pager when it is longer than the terminal (or `\pset pager
    /// always`); false when it was not paged.
    fn page(&self, text: &str) -> bool {
        let wanted = match (self.pager, self.rows) {
            _ if !self.pageable => false,
            (Pager::Off, _) | (Pager::On, None) => false,
            (Pager::On, Some(rows)) => text.lines().count() >= rows.saturating_sub(1),
            (Pager::Always, _) => !text.is_empty(),
        };
        if !wanted {
            return false;
        }
        let pager = ["PSQL_PAGER", "PAGER"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|p| !p.trim().is_empty()))
            .unwrap_or_else(|| "less".to_owned());
        let mut command = std::process::Command::new("sh");
        command.arg("-c").arg(&pager).stdin(std::process::Stdio::piped());
        if std::env::var_os("LESS").is_none() {
            // Quit when it fits, keep the screen, show colours, do not wrap long rows.
            command.env("LESS", "FRXS");
        }
        let Ok(mut child) = command.spawn() else { return false };
        if let Some(mut stdin) = child.stdin.take() {
            // A pager that quits early closes the pipe; that is not an error.
            let _ = std::io::Write::write_all(&mut stdin, text.as_bytes());
        }
        let _ = child.wait();
        true
    }

    /// psql's tag (`BEGIN`, `COMMIT`...) on stdout, details on stderr; the tool's JSON with
    /// --format json.
    fn confirm(&self, tag: &str, detail: Option<String>, value: &Value) {
        if self.style.format == Format::Json {
            self.show(value, None);
            return;
        }
        if !self.style.quiet && self.style.format != Format::Csv {
            crate::print(&format!("{tag}\n"));
        }
        if let Some(detail) = detail {
            eprintln!("{detail}");
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
                if failure.kind == Some(ErrorKind::SessionNotFound) {
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

    /// Reads `input` to its end (or `\q`), running each statement as it is completed.
    fn consume(&mut self, mut input: Input) -> Boxed<'_, Input> {
        Box::pin(async move {
            let mut buffer = Buffer::default();
            let outer = (self.pageable, self.rows);
            if input.interactive() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                self.pageable = true;
                self.rows = input.rows().await;
            }
            while !self.stop {
                let prompt = self.prompt(&buffer);
                input.set_context(&buffer.text);
                if self.prompt_on_stderr && !input.interactive() {
                    eprint!("{prompt}");
                }
                let read = match input.read(&prompt).await {
                    Ok(read) => read,
                    Err(e) => {
                        self.fail(&Failure::usage(format!("reading the input: {e}")), None);
                        break;
                    }
                };
                match read {
                    Read::Line(line) => {
                        if !line.trim().is_empty() {
                            input.remember(&line);
                        }
                        if input.interactive() && self.pageable {
                            // The terminal may have been resized while the line was typed.
                            self.rows = input.rows().await;
                        }
                        self.line(&line, &mut buffer).await;
                    }
                    // psql: Ctrl-C throws away the statement being typed.
                    Read::Interrupted => buffer.clear(),
                    Read::End => {
                        if !buffer.is_empty() {
                            if input.interactive() {
                                // psql: Ctrl-D quits; what was not finished with ';' never runs.
                                eprintln!("\n(the unfinished statement was discarded; nothing ran)");
                            } else {
                                // A script's last statement may lack its ';', as in psql.
                                let sql = std::mem::take(&mut buffer.text);
                                let mode = std::mem::take(&mut buffer.mode);
                                self.statement(mode, sql.trim().to_owned()).await;
                            }
                        }
                        break;
                    }
                }
            }
            (self.pageable, self.rows) = outer;
            input
        })
    }

    async fn line(&mut self, line: &str, buffer: &mut Buffer) {
        let open = if buffer.text.is_empty() { Open::Nothing } else { statements::open(&buffer.text) };
        let in_literal = matches!(open, Open::Quote | Open::Identifier | Open::Dollar | Open::Comment);
        // psql's `\g` and `\gx` at the end of a line send the statement (`\gx` expanded).
        if !in_literal && let Some((before, expanded)) = send_suffix(line) {
            let mut text = buffer.text.clone();
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(before);
            let open = statements::open(&text);
            if !matches!(open, Open::Quote | Open::Identifier | Open::Dollar | Open::Comment) {
                if statements::is_blank(&text) {
                    return;
                }
                let was = self.style.expanded;
                self.style.expanded |= expanded;
                Box::pin(self.line(&format!("{before};"), buffer)).await;
                self.style.expanded = was;
                return;
            }
        }
        let trimmed = line.trim_start();
        // Backslash commands work on continuation lines too (as in psql), except inside a literal.
        let parsed = if in_literal {
            None
        } else if trimmed.starts_with('\\') {
            Some(backslash(trimmed.trim_end()))
        } else if buffer.is_empty() && !trimmed.trim_end().trim_end_matches(';').contains(';') {
            parse_line(line)
        } else {
            None
        };
        match parsed {
            Some(Parsed::Empty) => return,
            Some(Parsed::Command(Ok(Command::ResetBuffer))) => {
                buffer.clear();
                eprintln!("Query buffer reset (cleared).");
                return;
            }
            Some(Parsed::Command(Ok(Command::Watch { interval, count }))) => {
                // psql: `\watch` runs the statement being typed, else the last one sent.
                let typed = if buffer.is_empty() { None } else { Some(std::mem::take(&mut buffer.text)) };
                let mode = std::mem::take(&mut buffer.mode);
                return self.watch(typed.map(|sql| (mode, sql)), interval, count).await;
            }
            Some(Parsed::Command(Ok(command))) => return self.command(command).await,
            Some(Parsed::Command(Err(message))) => return self.fail(&Failure::usage(message), None),
            Some(Parsed::Sql(mode, sql)) => {
                buffer.clear();
                buffer.mode = mode;
                buffer.push(&sql);
            }
            None => buffer.push(line),
        }
        let split = statements::split(&buffer.text);
        buffer.text = split.rest;
        for statement in split.complete {
            if self.stop {
                break;
            }
            let mode = std::mem::take(&mut buffer.mode);
            self.statement(mode, statement).await;
        }
        if buffer.text.is_empty() {
            buffer.mode = Mode::Auto;
        }
    }

    fn command(&mut self, command: Command) -> Boxed<'_, ()> {
        Box::pin(self.command_inner(command))
    }

    async fn command_inner(&mut self, command: Command) {
        let session_id = self.session.as_ref().map(|s| s.id.clone());
        match command {
            Command::Begin(args) => {
                if let Some(id) = session_id {
                    let message = format!("a transaction is already open (session {id}); COMMIT or ROLLBACK first");
                    self.fail(&Failure::usage(message), None);
                    return;
                }
                let request = Request { tool: "pg_tx".to_owned(), args };
                match self.call(&request).await {
                    Ok(value) => {
                        let id = value["session_id"].as_str().unwrap_or_default().to_owned();
                        let state = value["transaction_state"].as_str().unwrap_or("idle").to_owned();
                        let isolation = value["isolation_level"].as_str().unwrap_or_default();
                        let read_only = if value["read_only"] == true { ", read only" } else { "" };
                        self.confirm("BEGIN", Some(format!("session {id}: {isolation}{read_only}")), &value);
                        self.session = Some(Session { id, state });
                    }
                    Err(failure) => self.fail(&failure, None),
                }
            }
            Command::Commit | Command::Rollback => {
                let (action, tag) =
                    if command == Command::Commit { ("commit", "COMMIT") } else { ("rollback", "ROLLBACK") };
                let Some(id) = session_id else {
                    // psql says the same and goes on.
                    eprintln!("WARNING:  there is no transaction in progress (nothing to {action})");
                    return;
                };
                let outcome = self.call(&tx(action, Some(&id))).await;
                // Commit and rollback end the session whatever they report (COMMIT_FAILED
                // means it was rolled back; an unknown outcome leaves nothing to continue).
                self.session = None;
                match outcome {
                    Ok(value) => self.confirm(tag, None, &value),
                    Err(failure) => self.fail(&failure, None),
                }
            }
            Command::Savepoint(ref name) | Command::Release(ref name) | Command::RollbackTo(ref name) => {
                let (action, tag) = match &command {
                    Command::Savepoint(_) => ("savepoint", "SAVEPOINT"),
                    Command::Release(_) => ("release", "RELEASE"),
                    _ => ("rollback_to", "ROLLBACK"),
                };
                let Some(id) = session_id else {
                    let message = format!("{tag} can only be used in a transaction block (BEGIN first)");
                    self.fail(&Failure::usage(message), None);
                    return;
                };
                let mut request = tx(action, Some(&id));
                request.args["name"] = json!(name);
                match self.call(&request).await {
                    Ok(value) => self.confirm(tag, None, &value),
                    Err(failure) => {
                        self.fail(&failure, None);
                        self.refresh().await;
                    }
                }
            }
            Command::Status => {
                let Some(id) = session_id else {
                    eprintln!("no transaction is open");
                    return;
                };
                match self.call(&tx("status", Some(&id))).await {
                    Ok(value) => self.show(&value, None),
                    Err(failure) => self.fail(&failure, None),
                }
            }
            Command::Sessions => match self.call(&tx("list", None)).await {
                Ok(value) => self.show(&value, None),
                Err(failure) => self.fail(&failure, None),
            },
            Command::List(target, pattern) => self.list(target, pattern.as_deref(), session_id).await,
            Command::Describe(name) => self.describe(&name, session_id).await,
            Command::Databases => {
                let request = Request { tool: "pg_monitor".to_owned(), args: json!({"action": "size"}) };
                match self.call(&request).await {
                    Ok(value) => self.show(&json!({"databases": value["databases"]}), None),
                    Err(failure) => self.fail(&failure, None),
                }
            }
            Command::Conninfo => crate::print(&format!("{}\n", self.conninfo)),
            Command::Expanded(on) => {
                self.style.expanded = on.unwrap_or(!self.style.expanded);
                eprintln!("Expanded display is {}.", if self.style.expanded { "on" } else { "off" });
            }
            Command::Timing(on) => {
                self.timing = on.unwrap_or(!self.timing);
                eprintln!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            Command::TuplesOnly(on) => {
                self.style.tuples_only = on.unwrap_or(!self.style.tuples_only);
                eprintln!("Tuples only is {}.", if self.style.tuples_only { "on" } else { "off" });
            }
            Command::ToggleAlign => {
                self.style.format =
                    if self.style.format == Format::Unaligned { Format::Table } else { Format::Unaligned };
                eprintln!("Output format is {}.", format_name(self.style.format));
            }
            Command::Format(format) => {
                self.style.format = format;
                eprintln!("Output format is {}.", format_name(format));
            }
            Command::Pager(pager) => {
                self.pager = pager;
                let said = match pager {
                    Pager::Off => "off",
                    Pager::On => "used for long output",
                    Pager::Always => "always used",
                };
                eprintln!("Pager is {said}.");
            }
            Command::Null(text) => {
                eprintln!("Null display is \"{text}\".");
                self.style.null = text;
            }
            Command::ShowSettings => {
                let on = |b: bool| if b { "on" } else { "off" };
                eprintln!(
                    "format       {}\nnull         \"{}\"\ntuples_only  {}\nexpanded     {}\ntiming       {}",
                    format_name(self.style.format),
                    self.style.null,
                    on(self.style.tuples_only),
                    on(self.style.expanded),
                    on(self.timing)
                );
            }
            Command::Include(path) => self.include(&path).await,
            Command::OnErrorStop(on) => self.script.on_error_stop = on,
            Command::Echo(text) => crate::print(&format!("{text}\n")),
            Command::ResetBuffer => {}
            Command::Help => crate::print(HELP),
            Command::Quit => self.stop = true,
            // Handled in `line`, where the statement being typed is.
            Command::Watch { interval, count } => self.watch(None, interval, count).await,
        }
    }

    async fn include(&mut self, path: &str) {
        if self.depth >= MAX_INCLUDE_DEPTH {
            self.fail(&Failure::usage(format!("\\i {path}: files include each other too deeply")), None);
            return;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => return self.fail(&Failure::usage(format!("{path}: {e}")), None),
        };
        self.depth += 1;
        let prompt = std::mem::replace(&mut self.prompt_on_stderr, false);
        let _ = self.consume(Input::text(&text)).await;
        self.prompt_on_stderr = prompt;
        self.depth -= 1;
    }

    /// `\d`, `\dt`, ...: `pg_schema list`. psql's patterns (`*`, `?`, `schema.name`) become
    /// the tool's LIKE pattern and schema.
    async fn list(&mut self, target: Option<&'static str>, pattern: Option<&str>, session_id: Option<String>) {
        let (schema, like) = match pattern {
            Some(pattern) => match pattern.split_once('.') {
                Some((schema, name)) => (Some(schema.to_owned()), like_pattern(name)),
                None => (None, like_pattern(pattern)),
            },
            None => (None, None),
        };
        let targets: &[&str] = match target {
            Some(target) => &[target][..],
            None => &["tables", "views", "materialized_views", "sequences"],
        };
        let mut items = Vec::new();
        let mut last = Value::Null;
        for target in targets {
            let mut args = json!({"action": "list", "target": target});
            if let Some(schema) = &schema {
                args["schema"] = json!(schema);
            }
            if let Some(like) = &like {
                args["pattern"] = json!(like);
            }
            if let Some(id) = &session_id {
                args["session_id"] = json!(id);
            }
            match self.call(&Request { tool: "pg_schema".to_owned(), args }).await {
                Ok(value) => {
                    for item in value["items"].as_array().into_iter().flatten() {
                        let kind = item.get("kind").cloned().unwrap_or_else(|| json!(target.trim_end_matches('s')));
                        items.push(json!({"schema": item["schema"], "name": item["name"], "type": kind,
                                          "owner": item["owner"]}));
                    }
                    last = value;
                }
                Err(failure) => {
                    self.fail(&failure, None);
                    self.refresh().await;
                    return;
                }
            }
        }
        if items.is_empty() {
            eprintln!("Did not find any {}.", if target.is_none() { "relations" } else { "matching objects" });
            return;
        }
        if self.style.format == Format::Json {
            return self.show(&last, None);
        }
        if last["truncated"] == true {
            eprintln!(
                "only the first {} of {} are listed; narrow it with a pattern (\\dt ord*)",
                last["limit"], last["total"]
            );
        }
        let listed = if targets.len() == 1 { last["items"].clone() } else { Value::Array(items) };
        let title = match target {
            None => "relations".to_owned(),
            Some(target) => target.replace('_', " "),
        };
        let rendered = output::list(&title, &listed, &self.style);
        if !self.page(&rendered) {
            crate::print(&rendered);
        }
    }

    /// `\d NAME`: `pg_schema describe`, as a table first, then as what the tool says it is.
    async fn describe(&mut self, name: &str, session_id: Option<String>) {
        let (schema, name) = match name.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, name),
        };
        let mut target = "table";
        for _ in 0..2 {
            let mut args = json!({"action": "describe", "name": name, "target": target});
            if let Some(schema) = schema {
                args["schema"] = json!(schema);
            }
            if let Some(id) = &session_id {
                args["session_id"] = json!(id);
            }
            match self.call(&Request { tool: "pg_schema".to_owned(), args }).await {
                Ok(value) => return self.show(&value, None),
                Err(failure) => {
                    let message = failure.error["message"].as_str().unwrap_or_default();
                    if message.ends_with("is an index, not a table")
                        && self.describe_index(schema, name, &session_id).await
                    {
                        return;
                    }
                    let hint = failure.error["hint"].as_str().unwrap_or_default();
                    let other =
                        ["view", "sequence", "type"].into_iter().find(|t| hint.contains(&format!("target '{t}'")));
                    match other {
                        Some(other) if other != target => target = other,
                        _ => {
                            self.fail(&failure, None);
                            self.refresh().await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// `\d INDEX`, as psql shows an index: its definition and `btree, for table "s.t"`.
    /// False when no such index is listed (the caller reports its own error).
    async fn describe_index(&mut self, schema: Option<&str>, name: &str, session_id: &Option<String>) -> bool {
        // LIKE wildcards in the name are escaped; the exact name is picked from the list.
        let mut pattern = String::new();
        for c in name.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        let mut args = json!({"action": "list", "target": "indexes", "pattern": pattern});
        if let Some(schema) = schema {
            args["schema"] = json!(schema);
        }
        if let Some(id) = session_id {
            args["session_id"] = json!(id);
        }
        let Ok(value) = self.call(&Request { tool: "pg_schema".to_owned(), args }).await else { return false };
        let Some(index) = value["items"].as_array().into_iter().flatten().find(|item| item["name"] == name) else {
            return false;
        };
        if self.style.format == Format::Json {
            self.show(index, None);
            return true;
        }
        let text = |key: &str| index[key].as_str().unwrap_or_default().to_owned();
        let schema = text("schema");
        let mut footer = Vec::new();
        if index["primary"] == true {
            footer.push("primary key".to_owned());
        } else if index["unique"] == true {
            footer.push("unique".to_owned());
        }
        footer.push(text("method"));
        footer.push(format!("for table \"{schema}.{}\"", text("table")));
        if index["valid"] == false {
            footer.push("invalid".to_owned());
        }
        crate::print(&format!("Index \"{schema}.{}\"\n{}\n{}\n", text("name"), text("definition"), footer.join(", ")));
        true
    }

    /// `\watch`: runs `statement` (or the last statement sent) every `interval` seconds, `count`
    /// times or until Ctrl-C or a failure.
    async fn watch(&mut self, statement: Option<(Mode, String)>, interval: f64, count: Option<u64>) {
        let Some((mode, sql)) = statement
            .map(|(mode, sql)| (mode, sql.trim().trim_end_matches(';').to_owned()))
            .or_else(|| self.last.clone())
        else {
            self.fail(&Failure::usage("\\watch cannot be used with an empty query"), None);
            return;
        };
        let mut runs = 0u64;
        loop {
            let failed = self.failed;
            self.failed = false;
            eprintln!("(every {interval}s)\n");
            self.statement(mode, sql.clone()).await;
            runs += 1;
            let stop = self.failed || self.stop || count.is_some_and(|c| runs >= c);
            self.failed |= failed;
            if stop {
                break;
            }
            // Ctrl-C during the wait ends the watch (the shell goes on).
            let caller = self.interrupt.caller();
            let stopped = tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs_f64(interval)) => false,
                () = caller.cancel.cancelled() => true,
            };
            self.interrupt.done();
            if stopped {
                break;
            }
        }
    }

    fn statement(&mut self, mode: Mode, sql: String) -> Boxed<'_, ()> {
        Box::pin(self.statement_inner(mode, sql))
    }

    async fn statement_inner(&mut self, mode: Mode, sql: String) {
        if statements::is_blank(&sql) {
            return;
        }
        if mode == Mode::Auto
            && let Some(command) = parse_command(&sql)
        {
            return match command {
                Ok(command) => self.command(command).await,
                Err(message) => self.fail(&Failure::usage(message), Some(&sql)),
            };
        }
        self.last = Some((mode, sql.clone()));
        let session_id = self.session.as_ref().map(|s| s.id.clone());
        let read = match mode {
            Mode::Read => true,
            Mode::Write | Mode::Autocommit => false,
            // A statement that does not parse goes to `read`, which reports the syntax error.
            Mode::Auto => {
                let classified = match CallerSql::new(sql.clone()) {
                    Ok(sql) => classify(&sql).await.ok(),
                    Err(_) => None,
                };
                match classified {
                    Some(classified) => !classified.writes && READ_KINDS.contains(&classified.kind.as_str()),
                    None => true,
                }
            }
        };
        let mut args = json!({"action": if read { "read" } else { "write" }, "sql": sql});
        let autocommit = mode == Mode::Autocommit || (!read && session_id.is_none() && self.script.autocommit);
        if autocommit {
            args["autocommit"] = json!(true);
        } else if let Some(id) = &session_id {
            args["session_id"] = json!(id);
        }
        let started = Instant::now();
        if read && !autocommit && session_id.is_none() && self.all {
            // `--all`: every row, printed as it arrives (memory stays small).
            if let Err(failure) = crate::stream(self.tools, self.interrupt, args, &self.style).await {
                self.fail(&failure, Some(&sql));
            }
            if self.timing {
                eprintln!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
            }
            return;
        }
        let outcome = self.call(&Request { tool: "pg_query".to_owned(), args }).await;
        let elapsed = started.elapsed();
        match outcome {
            Ok(value) => self.show(&value, Some(&sql)),
            Err(failure) => {
                self.fail(&failure, Some(&sql));
                self.refresh().await;
            }
        }
        if self.timing {
            eprintln!("Time: {:.3} ms", elapsed.as_secs_f64() * 1000.0);
        }
    }
}

/// `SELECT 1 \gx` → (`SELECT 1 `, expanded); `None` when the line does not end in `\g`/`\gx`.
fn send_suffix(line: &str) -> Option<(&str, bool)> {
    let trimmed = line.trim_end();
    if let Some(before) = trimmed.strip_suffix("\\gx") {
        return Some((before, true));
    }
    trimmed.strip_suffix("\\g").map(|before| (before, false))
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Table => "aligned",
        Format::Unaligned => "unaligned",
        Format::Csv => "csv",
        Format::Json => "json",
        Format::Markdown => "markdown",
    }
}

/// psql's `*` and `?` wildcards as a LIKE pattern; `None` for "everything".
fn like_pattern(pattern: &str) -> Option<String> {
    if pattern.is_empty() || pattern == "*" {
        return None;
    }
    let mut out = String::new();
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::BACKSLASH_COMMANDS;

    fn command(line: &str) -> Command {
        match parse_line(line) {
            Some(Parsed::Command(Ok(command))) => command,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn transaction_commands_are_recognised_in_both_spellings() {
        assert_eq!(command("begin"), Command::Begin(json!({"action": "begin"})));
        assert_eq!(
            command("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;"),
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
        assert_eq!(command("\\q"), Command::Quit);
    }

    #[test]
    fn backslash_commands_are_psqls() {
        assert_eq!(command("\\d orders"), Command::Describe("orders".into()));
        assert_eq!(command("\\d"), Command::List(None, None));
        assert_eq!(command("\\dt public.ord*"), Command::List(Some("tables"), Some("public.ord*".into())));
        assert_eq!(command("\\x"), Command::Expanded(None));
        assert_eq!(command("\\x off"), Command::Expanded(Some(false)));
        assert_eq!(command("\\timing on"), Command::Timing(Some(true)));
        assert_eq!(command("\\pset null '(null)'"), Command::Null("(null)".into()));
        assert_eq!(command("\\pset null"), Command::Null(String::new()));
        assert_eq!(command("\\pset format csv"), Command::Format(Format::Csv));
        assert_eq!(command("\\format markdown"), Command::Format(Format::Markdown));
        assert_eq!(command("\\i 'my file.sql'"), Command::Include("my file.sql".into()));
        assert_eq!(command("\\a"), Command::ToggleAlign);
        assert_eq!(command("\\r"), Command::ResetBuffer);
        assert_eq!(command("\\set ON_ERROR_STOP on"), Command::OnErrorStop(true));
        assert_eq!(command("\\set ON_ERROR_STOP 0"), Command::OnErrorStop(false));
        assert_eq!(command("\\echo 'hello world' again"), Command::Echo("hello world again".into()));
        assert!(matches!(parse_line("\\set PROMPT1 x"), Some(Parsed::Command(Err(_)))));
        // Every command completion offers is one the shell knows and `\?` lists.
        for name in BACKSLASH_COMMANDS {
            let line = match *name {
                "\\i" => "\\i f".to_owned(),
                "\\format" => "\\format csv".to_owned(),
                "\\w" => "\\w DELETE FROM t".to_owned(),
                "\\set" => "\\set ON_ERROR_STOP on".to_owned(),
                other => other.to_owned(),
            };
            assert!(matches!(parse_line(&line), Some(Parsed::Command(Ok(_)) | Parsed::Sql(..))), "{name}");
            let listed = HELP.contains(&format!("{name} ")) || HELP.contains(&format!("{name},"));
            assert!(listed, "{name} is not in \\?");
        }
    }

    #[test]
    fn everything_else_is_sql() {
        assert_eq!(parse_line("   "), Some(Parsed::Empty));
        assert_eq!(parse_line("SELECT 1;"), None);
        assert_eq!(parse_line("beginning_of_time()"), None);
        assert_eq!(parse_line("BEGIN; INSERT INTO t VALUES (1); COMMIT;"), None);
        assert_eq!(
            parse_line("\\a INSERT INTO t VALUES (1);"),
            Some(Parsed::Sql(Mode::Autocommit, "INSERT INTO t VALUES (1);".into()))
        );
        assert_eq!(parse_line("\\r SELECT 1"), Some(Parsed::Sql(Mode::Read, "SELECT 1".into())));
        assert_eq!(like_pattern("ord*_?"), Some("ord%\\__".into()));
        assert_eq!(like_pattern("*"), None);
        assert_eq!(send_suffix("SELECT 1 \\gx "), Some(("SELECT 1 ", true)));
        assert_eq!(send_suffix("\\g"), Some(("", false)));
        assert_eq!(send_suffix("SELECT 1;"), None);
    }

    #[test]
    fn bad_commands_say_how_to_use_them() {
        for line in ["begin sideways", "savepoint", "rollback to", "\\format yaml", "\\x sideways", "\\nope", "\\i"] {
            assert!(matches!(parse_line(line), Some(Parsed::Command(Err(_)))), "{line}");
        }
        let Some(Parsed::Command(Err(message))) = parse_line("\\nope") else { unreachable!() };
        assert_eq!(message, "invalid command \\nope; try \\? for help");
    }
}
