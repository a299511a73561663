//! Where the shell's lines come from: a line editor on a terminal (rustyline: editing,
//! history file, completion), or plain lines from a pipe or a file.
//!
//! The editor blocks while it waits for a key, so it lives on a thread of its own; the shell
//! asks it for one line at a time. Completion runs on that thread too, and asks the tools for
//! table names through the runtime's handle.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use coldquery_tools::{Caller, ToolOutput, Tools};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::{DefaultHistory, History};
use rustyline::validate::Validator;
use rustyline::{Behavior, CompletionType, Config, Context, Editor, Helper};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::sync::oneshot;

/// One read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D, or the end of the input.
    End,
}

/// A source of lines.
#[derive(Debug)]
pub(crate) enum Input {
    /// A person at a terminal.
    Terminal(Terminal),
    /// stdin that is not a terminal.
    Stdin(Lines<BufReader<Stdin>>),
    /// The lines of `-c`, `-f` or `\i`.
    Text(std::vec::IntoIter<String>),
}

impl Input {
    /// Lines of a text (a file's contents, a `-c` argument).
    pub(crate) fn text(text: &str) -> Input {
        Input::Text(text.lines().map(str::to_owned).collect::<Vec<_>>().into_iter())
    }

    /// stdin, line by line.
    pub(crate) fn stdin() -> Input {
        Input::Stdin(BufReader::new(tokio::io::stdin()).lines())
    }

    /// True when a person types the lines (Ctrl-C and Ctrl-D then mean what they mean in psql).
    pub(crate) fn interactive(&self) -> bool {
        matches!(self, Input::Terminal(_))
    }

    /// The next line; `prompt` is shown on a terminal.
    pub(crate) async fn read(&mut self, prompt: &str) -> std::io::Result<Read> {
        match self {
            Input::Terminal(terminal) => terminal.read(prompt).await,
            Input::Stdin(lines) => Ok(lines.next_line().await?.map_or(Read::End, Read::Line)),
            Input::Text(lines) => Ok(lines.next().map_or(Read::End, Read::Line)),
        }
    }

    /// The terminal's height in lines, when the input is a terminal whose size is known.
    pub(crate) async fn rows(&self) -> Option<usize> {
        let Input::Terminal(terminal) = self else { return None };
        let (reply, answer) = oneshot::channel();
        terminal.requests.send(Request::Rows(reply)).ok()?;
        answer.await.ok().flatten()
    }

    /// Tells completion the earlier lines of the statement being typed (terminal only), so that
    /// it finds the tables a `FROM` on an earlier line names.
    pub(crate) fn set_context(&self, text: &str) {
        if let Input::Terminal(terminal) = self {
            let mut context = terminal.context.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            text.clone_into(&mut context);
        }
    }

    /// Remembers a line in the history (terminal only).
    pub(crate) fn remember(&self, line: &str) {
        if let Input::Terminal(terminal) = self {
            let _ = terminal.requests.send(Request::Remember(line.to_owned()));
        }
    }

    /// Ends the input; the editor saves its history file.
    pub(crate) async fn close(self) {
        if let Input::Terminal(terminal) = self {
            drop(terminal.requests);
            if let Some(thread) = terminal.thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
    }
}

enum Request {
    Read(String, oneshot::Sender<std::io::Result<Read>>),
    Remember(String),
    Rows(oneshot::Sender<Option<usize>>),
}

/// The line editor's thread.
pub(crate) struct Terminal {
    requests: mpsc::Sender<Request>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The statement's earlier lines, shared with completion on the editor's thread.
    context: Arc<Mutex<String>>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Terminal")
    }
}

impl Terminal {
    /// Starts the editor with its history file and completion over `tools`.
    pub(crate) fn start(history: Option<PathBuf>, completion: Completion) -> std::io::Result<Terminal> {
        // With stdout redirected (`coldquery shell > out.txt`) the editor talks to the terminal
        // itself, so prompts and echo never end up in the data.
        let behavior =
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) { Behavior::Stdio } else { Behavior::PreferTerm };
        let config =
            // Readline's (and so psql's) way: Tab completes the common prefix, a second Tab lists.
            Config::builder()
                .auto_add_history(false)
                .history_ignore_dups(true)
                .map_err(io)?
                .behavior(behavior)
                .completion_type(CompletionType::List)
                .build();
        let mut editor: Editor<SqlHelper, DefaultHistory> = Editor::with_config(config).map_err(io)?;
        let context = Arc::new(Mutex::new(String::new()));
        editor.set_helper(Some(SqlHelper { completion, context: context.clone() }));
        if let Some(path) = &history
            && path.exists()
        {
            let _ = editor.load_history(path);
        }
        let (requests, inbox) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new().name("line-editor".into()).spawn(move || {
            while let Ok(request) = inbox.recv() {
                match request {
                    Request::Read(prompt, reply) => {
                        let read = match editor.readline(&prompt) {
                            Ok(line) => Ok(Read::Line(line)),
                            Err(ReadlineError::Interrupted) => Ok(Read::Interrupted),
                            Err(ReadlineError::Eof) => Ok(Read::End),
                            Err(e) => Err(io(e)),
                        };
                        let _ = reply.send(read);
                    }
                    Request::Remember(line) => {
                        let _ = editor.history_mut().add(&line);
                    }
                    Request::Rows(reply) => {
                        let rows = editor.dimensions().map(|(_, rows)| usize::from(rows)).filter(|rows| *rows > 0);
                        let _ = reply.send(rows);
                    }
                }
            }
            if let Some(path) = &history
                && let Err(e) = editor.save_history(path)
            {
                eprintln!("warning: could not save the history to {}: {e}", path.display());
            }
        })?;
        Ok(Terminal { requests, thread: Some(thread), context })
    }

    async fn read(&mut self, prompt: &str) -> std::io::Result<Read> {
        let (reply, answer) = oneshot::channel();
        if self.requests.send(Request::Read(prompt.to_owned(), reply)).is_err() {
            return Ok(Read::End);
        }
        answer.await.unwrap_or(Ok(Read::End))
    }
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// What completion may ask the database.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub(crate) tools: Tools,
    pub(crate) caller: Caller,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Completion {
    /// Table (and view) names starting with `prefix`, asked of `pg_schema list`.
    fn tables(&self, prefix: &str) -> Vec<String> {
        let (schema, name) = match prefix.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, prefix),
        };
        let template = "postgres://schema/{schema}/{table}";
        let ask = self.tools.complete(&self.caller, template, "table", name, schema);
        let names = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(3), ask).await });
        let names = names.unwrap_or_default();
        match schema {
            Some(schema) => names.into_iter().map(|n| format!("{schema}.{n}")).collect(),
            None => names,
        }
    }
}

impl Completion {
    /// The column names of table (or view) `name` (`schema.name` too), asked of
    /// `pg_schema describe`.
    fn columns(&self, name: &str) -> Vec<String> {
        let (schema, table) = match name.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, name),
        };
        for target in ["table", "view"] {
            let mut args = serde_json::json!({"action": "describe", "name": table, "target": target});
            if let Some(schema) = schema {
                args["schema"] = serde_json::json!(schema);
            }
            let ask = self.tools.call(&self.caller, "pg_schema", args);
            let answer = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(3), ask).await });
            if let Ok(Ok(Ok(value))) = answer.map(|called| called.map(ToolOutput::value)) {
                return value["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|column| column["name"].as_str().map(str::to_owned))
                    .collect();
            }
        }
        Vec::new()
    }
}

/// The relations a line names after FROM, JOIN, UPDATE or INTO, up to the next clause
/// (`FROM a, b AS x WHERE` names `a` and `b`; an alias is skipped when it follows AS).
fn relations_in(line: &str) -> Vec<String> {
    let spaced = line.replace(',', " , ").replace(['(', ')', ';'], " ( ");
    let mut out: Vec<String> = Vec::new();
    let mut listing = false;
    let mut expect_name = false;
    for word in spaced.split_whitespace() {
        let upper = word.to_ascii_uppercase();
        if matches!(upper.as_str(), "FROM" | "JOIN" | "UPDATE" | "INTO") {
            (listing, expect_name) = (true, true);
        } else if word == "," {
            expect_name = listing;
        } else if word == "(" || (KEYWORDS.contains(&upper.as_str()) && upper != "AS") {
            (listing, expect_name) = (false, false);
        } else if expect_name {
            if !out.iter().any(|r| r == word) {
                out.push(word.to_owned());
            }
            expect_name = false;
        }
    }
    out
}

/// The SQL keywords offered by completion (psql completes these too).
const KEYWORDS: &[&str] = &[
    "ABORT",
    "ALTER",
    "ANALYZE",
    "AND",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASCADE",
    "CASE",
    "CHECK",
    "COLUMN",
    "COMMENT",
    "COMMIT",
    "CONSTRAINT",
    "CREATE",
    "CROSS",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DROP",
    "ELSE",
    "END",
    "EXISTS",
    "EXPLAIN",
    "FOREIGN",
    "FROM",
    "FULL",
    "FUNCTION",
    "GRANT",
    "GROUP",
    "HAVING",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATERIALIZED",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "PRIMARY",
    "REFERENCES",
    "RETURNING",
    "REVOKE",
    "RIGHT",
    "ROLLBACK",
    "SAVEPOINT",
    "SCHEMA",
    "SELECT",
    "SEQUENCE",
    "SET",
    "SHOW",
    "TABLE",
    "THEN",
    "TRUNCATE",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USING",
    "VACUUM",
    "VALUES",
    "VIEW",
    "WHEN",
    "WHERE",
    "WITH",
];

/// Keywords after which a relation name comes.
const BEFORE_RELATION: &[&str] = &["FROM", "JOIN", "INTO", "UPDATE", "TABLE", "DESCRIBE", "TRUNCATE", "ONLY"];

/// The shell's backslash commands, for completion (and `\?`).
pub(crate) const BACKSLASH_COMMANDS: &[&str] = &[
    "\\?",
    "\\a",
    "\\conninfo",
    "\\d",
    "\\df",
    "\\di",
    "\\dm",
    "\\dn",
    "\\ds",
    "\\dt",
    "\\dT",
    "\\dv",
    "\\dx",
    "\\echo",
    "\\format",
    "\\i",
    "\\l",
    "\\pset",
    "\\q",
    "\\r",
    "\\set",
    "\\t",
    "\\timing",
    "\\w",
    "\\x",
];

struct SqlHelper {
    completion: Completion,
    context: Arc<Mutex<String>>,
}

impl SqlHelper {
    fn candidates(&self, line: &str, start: usize, word: &str) -> Vec<String> {
        let before: Vec<String> = line[..start].split_whitespace().map(str::to_ascii_uppercase).collect();
        if word.starts_with('\\') && before.is_empty() {
            return BACKSLASH_COMMANDS.iter().filter(|c| c.starts_with(word)).map(|c| (*c).to_owned()).collect();
        }
        let previous = before.last().map(String::as_str);
        let relation_wanted = previous.is_some_and(|p| BEFORE_RELATION.contains(&p) || p.starts_with("\\D"));
        let mut out = Vec::new();
        // `table.col`: that table's columns (when the line names it, or it is a table).
        if let Some((head, tail)) = word.rsplit_once('.')
            && !relation_wanted
        {
            let columns = self.completion.columns(head);
            if !columns.is_empty() {
                return columns.into_iter().filter(|c| c.starts_with(tail)).map(|c| format!("{head}.{c}")).collect();
            }
        }
        if relation_wanted || !word.is_empty() {
            out.extend(self.completion.tables(word));
        }
        if !relation_wanted && !word.is_empty() && !word.contains('.') {
            let earlier = self.context.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            for relation in relations_in(&format!("{earlier}\n{line}")) {
                out.extend(self.completion.columns(&relation).into_iter().filter(|c| c.starts_with(word)));
            }
        }
        if !relation_wanted {
            let upper = word.to_ascii_uppercase();
            let lower = word.chars().next().is_some_and(char::is_lowercase);
            out.extend(
                KEYWORDS
                    .iter()
                    .filter(|k| !word.is_empty() && k.starts_with(&upper))
                    .map(|k| if lower { k.to_ascii_lowercase() } else { (*k).to_owned() }),
            );
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|candidate| seen.insert(candidate.clone()));
        out
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '\\' | '$')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &line[start..pos];
        let candidates = self.candidates(line, start, word);
        Ok((start, candidates.into_iter().map(|c| Pair { display: c.clone(), replacement: c }).collect()))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, _default: bool) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for SqlHelper {}

impl Helper for SqlHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relations_a_line_names() {
        assert_eq!(relations_in("SELECT a FROM t1, s.t2 AS x JOIN t3 ON true WHERE z"), ["t1", "s.t2", "t3"]);
        assert_eq!(relations_in("UPDATE t SET a = 1"), ["t"]);
        assert_eq!(relations_in("INSERT INTO t(a) VALUES (1)"), ["t"]);
        assert!(relations_in("SELECT 1").is_empty());
    }
}
