//! `--ephemeral`: the newcomer's first commands print tables, and the throwaway server is gone
//! afterwards — also when the process is killed outright.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{command, run_with};

/// The ephemeral directories of process `pid` (named `coldquery-ephemeral-<pid>-<random>`).
fn dirs_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("coldquery-ephemeral-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default()
}

async fn run_ephemeral(args: &[&str]) -> (crate::support::Run, u32) {
    let mut command = command();
    command.arg("--ephemeral").args(args);
    let child = command.spawn().expect("the coldquery binary starts");
    let pid = child.id().expect("a pid");
    let output = child.wait_with_output().await.unwrap();
    let run = crate::support::Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    (run, pid)
}

#[tokio::test]
async fn query_read_select_1_prints_a_table_and_leaves_nothing_behind() {
    let (out, pid) = run_ephemeral(&["query", "read", "SELECT 1"]).await;
    let out = out.expect(0);
    assert_eq!(out.stdout, " ?column?\n----------\n        1\n(1 row)\n");
    assert!(dirs_of(pid).is_empty(), "the ephemeral directory was deleted: {:?}", dirs_of(pid));
}

#[tokio::test]
async fn monitor_health_and_the_demo_schema() {
    let (out, _) = run_ephemeral(&["monitor", "health"]).await;
    let out = out.expect(0);
    assert!(out.stdout.starts_with("status "), "{}", out.stdout);
    assert!(out.stdout.lines().next().unwrap().ends_with(" ok"), "{}", out.stdout);
    assert!(out.stdout.contains("database "), "{}", out.stdout);

    let (out, _) = run_ephemeral(&[
        "--format",
        "csv",
        "query",
        "read",
        "SELECT order_id, customer, total FROM order_totals ORDER BY order_id LIMIT 2",
    ])
    .await;
    let out = out.expect(0);
    assert!(out.stdout.starts_with("order_id,customer,total\n1,"), "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);

    let (out, _) = run_ephemeral(&["schema", "describe", "order_items"]).await;
    let out = out.expect(0);
    assert!(out.stdout.contains("order_items_product_id_idx"), "{}", out.stdout);
}

#[tokio::test]
async fn a_killed_process_still_removes_its_server() {
    let mut command = command();
    command.args(["--ephemeral", "shell", "--prompt", "never"]).stdin(Stdio::piped());
    let mut child = command.spawn().expect("the coldquery binary starts");
    let pid = child.id().expect("a pid");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"SELECT 1 AS ready;\n").await.unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
            .await
            .expect("the shell answers within a minute")
            .unwrap()
            .expect("the shell is running");
        if line == "(1 row)" {
            break;
        }
    }
    let dirs = dirs_of(pid);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let pid_file = std::fs::read_to_string(dirs[0].join("data/postmaster.pid")).unwrap();
    let port: u16 = pid_file.lines().nth(3).unwrap().trim().parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "the server is up");

    child.kill().await.unwrap(); // SIGKILL: no destructor runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dirs[0].exists() {
        assert!(Instant::now() < deadline, "{} was not removed after SIGKILL", dirs[0].display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the server is stopped");
    drop(stdin);
}

#[tokio::test]
async fn ephemeral_takes_precedence_over_database_url() {
    let env = [("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")];
    let out =
        run_with(&["--ephemeral", "--format", "json", "query", "read", "SELECT current_database() AS db"], &env, None)
            .await
            .expect(0);
    assert_eq!(out.json()["rows"][0]["db"], "demo");

    let env = [("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing"), ("COLDQUERY_EPHEMERAL", "true")];
    let out =
        run_with(&["--format", "csv", "query", "read", "SELECT count(*) AS customers FROM customers"], &env, None)
            .await
            .expect(0);
    assert_eq!(out.stdout, "customers\n20\n");
}
