//! Running the real `coldquery` binary: a clean environment (no inherited DATABASE_URL, PG* or
//! COLDQUERY_* variables), arguments, optional stdin; the exit code, stdout and stderr.

use std::process::Stdio;

use coldquery_tests::harness::TestDb;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What a run of the binary produced.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Panics with the whole output unless the exit code is `code`.
    #[track_caller]
    pub(crate) fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, code, "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout, self.stderr);
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// The binary with a clean environment, `DATABASE_URL` unset.
pub(crate) fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coldquery"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name == "DATABASE_URL" || name == "RUST_LOG" || name.starts_with("PG") || name.starts_with("COLDQUERY_") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command
}

/// Runs the binary with `args` and `env`, feeding `stdin` if given.
pub(crate) async fn run_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = command();
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().expect("the coldquery binary starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes()).await.expect("writing stdin");
        drop(pipe);
    }
    let output = child.wait_with_output().await.expect("the coldquery binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the binary against `db` (`DATABASE_URL`).
pub(crate) async fn run(db: &TestDb, args: &[&str]) -> Run {
    run_with(args, &[("DATABASE_URL", &db.url)], None).await
}

/// Runs the binary against `db` with `stdin`.
pub(crate) async fn run_stdin(db: &TestDb, args: &[&str], stdin: &str) -> Run {
    run_with(args, &[("DATABASE_URL", &db.url)], Some(stdin)).await
}

/// Creates `name (id int PRIMARY KEY, note text)` on a side connection.
pub(crate) async fn create_table(db: &TestDb, name: &str) {
    let client = db.client().await;
    client
        .batch_execute(&format!("CREATE TABLE {name} (id int PRIMARY KEY, note text)"))
        .await
        .expect("creating the test table");
}

/// `SELECT count(*) FROM name` on a side connection.
pub(crate) async fn count(db: &TestDb, name: &str) -> i64 {
    let client = db.client().await;
    client.query_one(&format!("SELECT count(*) FROM {name}"), &[]).await.expect("counting rows").get(0)
}
