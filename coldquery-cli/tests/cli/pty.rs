//! The shell on a real pseudo-terminal, as a person types into it: the line editor, psql's
//! Ctrl-C and Ctrl-D, history, completion, and statements that end where PostgreSQL's scanner
//! says. What the shell ran (or did not) is checked from a side connection.
//!
//! The pseudo-terminal calls block, so each test does its typing in `spawn_blocking` and its
//! database checks on the runtime between them.

use std::path::Path;

use coldquery_tests::harness::{TestDb, test_db};
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;

use crate::support::{count, create_table};

/// How long one expectation may wait.
const TIMEOUT_MS: u64 = 20_000;

const UP: &str = "\x1b[A";

/// `coldquery shell` on a pseudo-terminal, against `db`.
fn spawn_shell(db: &TestDb, history: &Path, extra: &[&str]) -> PtySession {
    spawn(db, std::process::Command::new(env!("CARGO_BIN_EXE_coldquery")), history, extra)
}

/// `command` (the binary, or a shell running it) on a pseudo-terminal with a clean environment.
fn spawn(db: &TestDb, mut command: std::process::Command, history: &Path, extra: &[&str]) -> PtySession {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name == "DATABASE_URL" || name == "RUST_LOG" || name.starts_with("PG") || name.starts_with("COLDQUERY_") {
            command.env_remove(name);
        }
    }
    command.env("DATABASE_URL", &db.url).env("TERM", "xterm").env("PAGER", "sed 's/^/PAGED:/'");
    command.arg("shell").arg("--history-file").arg(history).args(extra);
    let mut session = rexpect::session::spawn_command(command, Some(TIMEOUT_MS)).expect("the shell starts on a pty");
    session.exp_string("coldquery=> ").expect("the first prompt");
    session
}

/// Waits for the shell to exit and returns its exit code.
fn exit_code(session: &mut PtySession) -> i32 {
    session.exp_eof().expect("the shell ends");
    match session.process().wait().expect("waiting for the shell") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("the shell did not exit normally: {other:?}"),
    }
}

/// Types `keys` (the session's writer is line-buffered: flush, or a key without a newline
/// would never arrive).
fn typ(session: &mut PtySession, keys: &str) {
    session.send(keys).expect("typing");
    session.flush().expect("typing");
}

/// Runs the typing on a blocking thread (the pty calls block).
async fn typing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("the typing thread")
}

/// A directory of one test's own (history file, redirected output), removed when it ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("coldquery-cli-pty-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Scratch(dir)
    }

    fn file(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn ctrl_c_clears_the_statement_and_ctrl_d_discards_it_unrun() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    db.client().await.batch_execute("INSERT INTO notes SELECT g, 'n' FROM generate_series(1, 5) g").await.unwrap();
    let scratch = Scratch::new("ctrl");
    let history = scratch.file("history");
    let mut shell = spawn_shell(&db, &history, &["--autocommit"]);
    let mut shell = typing(move || {
        // Ctrl-C on a continued statement throws it away: a later ';' runs nothing.
        typ(&mut shell, "DELETE FROM notes\r");
        shell.exp_string("coldquery-> ").expect("the continuation prompt");
        shell.send_control('c').unwrap();
        shell.exp_string("coldquery=> ").expect("a fresh prompt after Ctrl-C");
        typ(&mut shell, ";\r");
        shell.exp_string("coldquery=> ").unwrap();
        typ(&mut shell, "SELECT count(*) AS n FROM notes;\r");
        shell.exp_string(" 5\r\n(1 row)").expect("the rows are all there after Ctrl-C and ';'");
        shell.exp_string("coldquery=> ").unwrap();
        typ(&mut shell, "SELECT pg_sleep(60) AS slept;\r");
        shell
    })
    .await;
    // Ctrl-C while a statement runs cancels it on the server, and the shell goes on.
    let side = db.client().await;
    let running = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'";
    let started = std::time::Instant::now();
    while side.query_one(running, &[]).await.unwrap().get::<_, i64>(0) == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the statement never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut shell = typing(move || {
        shell.send_control('c').unwrap();
        shell.exp_string("cancelling the statement").unwrap();
        shell.exp_string("error[CANCELLED]").expect("the server cancelled it");
        shell.exp_string("coldquery=> ").expect("the shell goes on");
        shell
    })
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let code = typing(move || {
        // Ctrl-D with an unfinished statement quits without running it.
        typ(&mut shell, "DELETE FROM notes\r");
        shell.exp_string("coldquery-> ").unwrap();
        shell.send_control('d').unwrap();
        shell.exp_string("the unfinished statement was discarded; nothing ran").unwrap();
        exit_code(&mut shell)
    })
    .await;
    assert_eq!(code, 1, "exit 1: a statement (the cancelled one) failed");
    assert_eq!(count(&db, "notes").await, 5, "neither DELETE ran");
}

#[tokio::test]
async fn history_is_recalled_with_the_up_arrow_and_kept_in_its_file() {
    let db = test_db().await;
    let scratch = Scratch::new("history");
    let history = scratch.file("history");
    let mut shell = spawn_shell(&db, &history, &[]);
    typing(move || {
        typ(&mut shell, "SELECT 41 + 1 AS answer;\r");
        shell.exp_string("42\r\n(1 row)").unwrap();
        shell.exp_string("coldquery=> ").unwrap();
        typ(&mut shell, UP);
        shell.exp_string("SELECT 41 + 1 AS answer;").expect("the up arrow recalls the last line");
        typ(&mut shell, "\r");
        shell.exp_string("42\r\n(1 row)").expect("the recalled line runs");
        typ(&mut shell, "\\q\r");
        assert_eq!(exit_code(&mut shell), 0);
    })
    .await;
    let saved = std::fs::read_to_string(&history).expect("the history file is written");
    assert!(saved.contains("SELECT 41 + 1 AS answer;"), "{saved}");
    // A new shell starts with the saved history.
    let mut shell = spawn_shell(&db, &history, &[]);
    typing(move || {
        typ(&mut shell, UP);
        typ(&mut shell, UP);
        shell.exp_string("SELECT 41 + 1 AS answer;").expect("history from the file");
        typ(&mut shell, "\r");
        shell.exp_string("42\r\n(1 row)").unwrap();
        shell.send_control('d').unwrap();
        assert_eq!(exit_code(&mut shell), 0);
    })
    .await;
}

#[tokio::test]
async fn a_plpgsql_function_with_semicolons_in_its_body_is_one_statement() {
    let db = test_db().await;
    let scratch = Scratch::new("function");
    let history = scratch.file("history");
    let mut shell = spawn_shell(&db, &history, &["--autocommit"]);
    typing(move || {
        typ(&mut shell, "CREATE FUNCTION add_one(n int) RETURNS int LANGUAGE plpgsql AS $$\r");
        shell.exp_string("coldquery$> ").expect("the prompt says a dollar quote is open");
        typ(&mut shell, "DECLARE r int;\r");
        shell.exp_string("coldquery$> ").unwrap();
        typ(&mut shell, "BEGIN r := n + 1; RETURN r;\r");
        shell.exp_string("coldquery$> ").expect("a ';' inside the body ends nothing");
        typ(&mut shell, "END $$;\r");
        shell.exp_string("CREATE FUNCTION").expect("the whole function is one statement");
        typ(&mut shell, "SELECT 41 AS x; SELECT 2 AS y;\r");
        shell.exp_string(" x\r\n----\r\n 41").unwrap();
        shell.exp_string(" y\r\n---\r\n 2").expect("both statements of the line ran");
        shell.exp_string("coldquery=> ").unwrap();
        // Lines pasted (or typed ahead) at once all arrive.
        typ(&mut shell, "SELECT 'first' AS f;\rSELECT 'second' AS s;\r");
        shell.exp_string(" first\r\n").unwrap();
        shell.exp_string(" second\r\n").expect("the second pasted line ran too");
        typ(&mut shell, "\\q\r");
        assert_eq!(exit_code(&mut shell), 0);
    })
    .await;
    let client = db.client().await;
    let two: i32 = client.query_one("SELECT add_one(1)", &[]).await.unwrap().get(0);
    assert_eq!(two, 2);
}

#[tokio::test]
async fn tab_completes_table_names_keywords_and_backslash_commands() {
    let db = test_db().await;
    create_table(&db, "customer_orders").await;
    db.client().await.batch_execute("CREATE TABLE animals (zebra_count int)").await.unwrap();
    let scratch = Scratch::new("completion");
    let history = scratch.file("history");
    let mut shell = spawn_shell(&db, &history, &[]);
    typing(move || {
        typ(&mut shell, "sel");
        typ(&mut shell, "\t");
        shell.exp_string("select").expect("a keyword, in the case typed");
        typ(&mut shell, " note FROM custo");
        typ(&mut shell, "\t");
        shell.exp_string("customer_orders").expect("the table name is completed");
        typ(&mut shell, ";\r");
        shell.exp_string("(0 rows)").expect("the completed statement runs");
        shell.exp_string("coldquery=> ").unwrap();
        // Column names: after `table.`, and of the tables the line names.
        typ(&mut shell, "SELECT customer_orders.no");
        typ(&mut shell, "\t");
        shell.exp_string("customer_orders.note").expect("the column is completed");
        typ(&mut shell, " FROM customer_orders, animals WHERE zeb");
        typ(&mut shell, "\t");
        shell.exp_string("zebra_count").expect("a column of a table the line names");
        typ(&mut shell, " = 1;\r");
        shell.exp_string("(0 rows)").unwrap();
        shell.exp_string("coldquery=> ").unwrap();
        // ... and of a table an earlier line of the statement names.
        typ(&mut shell, "SELECT * FROM animals\r");
        shell.exp_string("coldquery-> ").unwrap();
        typ(&mut shell, "WHERE zeb");
        typ(&mut shell, "\t");
        shell.exp_string("zebra_count").expect("a column of the table named on the line before");
        typ(&mut shell, " = 1;\r");
        shell.exp_string("(0 rows)").unwrap();
        // A pager shows results when asked (and when they are longer than the terminal).
        typ(&mut shell, "\\pset pager always\r");
        shell.exp_string("Pager is always used.").unwrap();
        typ(&mut shell, "SELECT 'through the pager' AS p;\r");
        shell.exp_string("PAGED: through the pager").expect("the result went through $PAGER");
        typ(&mut shell, "\\pset pager off\r");
        shell.exp_string("Pager is off.").unwrap();
        shell.exp_string("coldquery=> ").unwrap();
        typ(&mut shell, "\\conn");
        typ(&mut shell, "\t");
        shell.exp_string("\\conninfo").unwrap();
        typ(&mut shell, "\r");
        shell.exp_string("You are connected to database").unwrap();
        typ(&mut shell, "\\q\r");
        assert_eq!(exit_code(&mut shell), 0);
    })
    .await;
}

#[tokio::test]
async fn with_stdout_redirected_the_file_gets_only_the_data() {
    let db = test_db().await;
    let scratch = Scratch::new("redirect");
    let history = scratch.file("history");
    let out = history.with_extension("out");
    // `coldquery shell > out`: prompts and echo go to the terminal, the rows to the file.
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(r#"out="$1"; shift; exec "$@" > "$out""#).arg("sh").arg(&out);
    command.arg(env!("CARGO_BIN_EXE_coldquery"));
    let mut shell = spawn(&db, command, &history, &[]);
    typing(move || {
        typ(&mut shell, "SELECT 1 AS a;\r");
        shell.exp_string("coldquery=> ").expect("the prompt is on the terminal");
        typ(&mut shell, "\\q\r");
        assert_eq!(exit_code(&mut shell), 0);
    })
    .await;
    assert_eq!(std::fs::read_to_string(&out).unwrap(), " a\n---\n 1\n(1 row)\n");
}

#[tokio::test]
async fn watch_reruns_the_statement_until_ctrl_c() {
    let db = test_db().await;
    let scratch = Scratch::new("watch");
    let history = scratch.file("history");
    let mut shell = spawn_shell(&db, &history, &[]);
    let after = typing(move || {
        typ(&mut shell, "SELECT 'tick' AS t;\r");
        shell.exp_string("(1 row)").unwrap();
        shell.exp_string("coldquery=> ").unwrap();
        // `\watch` runs the last statement again and again.
        typ(&mut shell, "\\watch 0.2\r");
        for _ in 0..3 {
            shell.exp_string("(every 0.2s)").expect("another run");
            shell.exp_string(" tick\r\n(1 row)").expect("its result");
        }
        // Ctrl-C ends the watch, not the shell.
        shell.send_control('c').unwrap();
        shell.exp_string("coldquery=> ").expect("the prompt after Ctrl-C");
        typ(&mut shell, "SELECT 'after' AS a;\r");
        let before = shell.exp_string("(1 row)").expect("the shell goes on");
        typ(&mut shell, "\\q\r");
        shell.exp_eof().expect("the shell ends");
        before
    })
    .await;
    assert!(after.contains(" after"), "{after}");
    assert!(!after.contains("tick"), "the watch stopped: {after}");
}
