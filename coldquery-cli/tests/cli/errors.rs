//! The three exit codes and bad input: 0 ok; 1 a tool (or the database) reported an error,
//! shown on stderr with its code and hint; 2 the command line or configuration is wrong and
//! nothing ran.

use coldquery_tests::harness::test_db;

use crate::support::{count, create_table, run, run_with};

#[tokio::test]
async fn a_tool_error_exits_1_with_code_and_hint_on_stderr() {
    let db = test_db().await;
    let out = run(&db, &["query", "read", "SELECT * FROM no_such_table"]).await.expect(1);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.starts_with("error[DATABASE_ERROR]: relation \"no_such_table\" does not exist\n"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("\nhint: "), "{}", out.stderr);
    assert!(out.stderr.contains("\nsqlstate: 42P01\n"), "{}", out.stderr);

    // With --format json the error body is JSON (on stderr still).
    let out = run(&db, &["--format", "json", "query", "read", "SELECT * FROM no_such_table"]).await.expect(1);
    let body: serde_json::Value = serde_json::from_str(&out.stderr).expect("a JSON error body");
    assert_eq!(body["error"]["code"], "DATABASE_ERROR");
    assert_eq!(body["error"]["sqlstate"], "42P01");
}

#[tokio::test]
async fn a_write_without_consent_exits_1_and_says_which_flag() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let out = run(&db, &["query", "write", "INSERT INTO notes VALUES (1, 'a')"]).await.expect(1);
    assert!(out.stderr.starts_with("error[WRITE_DENIED]"), "{}", out.stderr);
    assert!(out.stderr.contains("--autocommit"), "{}", out.stderr);
    assert_eq!(count(&db, "notes").await, 0);

    let out = run(&db, &["query", "read", "DELETE FROM notes"]).await.expect(1);
    assert!(out.stderr.starts_with("error[READ_ONLY_VIOLATION]"), "{}", out.stderr);
}

#[tokio::test]
async fn bad_tool_arguments_are_tool_errors() {
    let db = test_db().await;
    // An unknown action and a missing required parameter reach the tool, which says what is valid.
    let out = run(&db, &["call", "pg_query", r#"{"action": "nope"}"#]).await.expect(1);
    assert!(out.stderr.starts_with("error[INVALID_ARGUMENT]"), "{}", out.stderr);
    assert!(out.stderr.contains("read"), "the valid actions are listed: {}", out.stderr);
    let out = run(&db, &["call", "pg_query", r#"{"action": "read"}"#]).await.expect(1);
    assert!(out.stderr.starts_with("error[INVALID_ARGUMENT]"), "{}", out.stderr);
    assert!(out.stderr.contains("'sql'"), "{}", out.stderr);
    let out = run(&db, &["call", "pg_monitor", r#"{"action": "health", "colour": "blue"}"#]).await.expect(1);
    assert!(out.stderr.contains("colour"), "{}", out.stderr);
}

#[tokio::test]
async fn usage_errors_exit_2_before_anything_connects() {
    // No database at all: these must fail on the command line alone.
    let unreachable = [("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=1")];
    for (args, says) in [
        (&["query", "nope", "SELECT 1"][..], "unrecognized subcommand 'nope'"),
        (&["query", "read"], "<SQL>"),
        (&["admin", "reindex", "--target", "table"], "--name <NAME>"),
        (&["call", "pg_query", r#"{"action": "read""#], "not valid JSON"),
        (&["call", "pg_query", "[1, 2]"], "one JSON object"),
        (&["call", "pg_nothing", "{}"], "unknown tool 'pg_nothing'"),
        (&["query", "read", "SELECT $1", "--params-json", "{}"], "JSON array"),
        (&["--format", "yaml", "tools"], "yaml"),
        (&["--max-rows", "many", "query", "read", "SELECT 1"], "--max-rows (COLDQUERY_MAX_ROWS)"),
        (&["--statement-timeout", "0", "query", "read", "SELECT 1"], "--statement-timeout"),
        (&["--read-only=perhaps", "query", "read", "SELECT 1"], "--read-only (COLDQUERY_READ_ONLY)"),
        (
            &["--ephemeral", "--database-url", "postgresql://u@127.0.0.1:1/db", "monitor", "health"],
            "--ephemeral (COLDQUERY_EPHEMERAL)",
        ),
        (&["--confirm-writes", "sometimes", "monitor", "health"], "--confirm-writes (COLDQUERY_CONFIRM_WRITES)"),
        (
            &["--audit-log", "/nonexistent-coldquery-dir/a.jsonl", "monitor", "health"],
            "--audit-log (COLDQUERY_AUDIT_LOG)",
        ),
        (&["tools", "pg_nothing"], "unknown tool"),
        (&["-c", "SELECT 1", "monitor", "health"], "without a subcommand"),
        (&["-f", "/nonexistent/script.sql"], "/nonexistent/script.sql"),
    ] {
        let out = run_with(args, &unreachable, None).await.expect(2);
        assert!(out.stderr.contains(says), "{args:?} should say {says:?}:\n{}", out.stderr);
        assert_eq!(out.stdout, "", "{args:?}");
    }

    let env = [("COLDQUERY_SESSION_TTL", "forever")];
    let out = run_with(&["monitor", "health"], &env, None).await.expect(2);
    assert!(out.stderr.contains("--session-ttl (COLDQUERY_SESSION_TTL)"), "{}", out.stderr);

    let env = [("DATABASE_URL", "postgresql://u@127.0.0.1:1/db?sslmode=sideways")];
    let out = run_with(&["monitor", "health"], &env, None).await.expect(2);
    assert!(out.stderr.contains("sslmode"), "{}", out.stderr);

    // A misspelt setting is refused, not ignored: this one would have left writes allowed.
    let env = [("COLDQUERY_READONLY", "true"), unreachable[0]];
    let out = run_with(&["query", "read", "SELECT 1"], &env, None).await.expect(2);
    assert!(out.stderr.contains("COLDQUERY_READONLY") && out.stderr.contains("unknown"), "{}", out.stderr);
}

#[tokio::test]
async fn help_and_version_exit_0() {
    let out = run_with(&["--help"], &[], None).await.expect(0);
    assert!(out.stdout.contains("--ephemeral"), "{}", out.stdout);
    assert!(out.stdout.contains("Exit codes"), "{}", out.stdout);
    // The settings shared with the server, with the CLI's own default for confirmations.
    for shared in ["--lock-timeout", "--allow-roles", "--confirm-ttl", "--read-database-url", "[default: 30m]"] {
        assert!(out.stdout.contains(shared), "{shared}: {}", out.stdout);
    }
    assert!(out.stdout.contains("[env: COLDQUERY_CONFIRM_WRITES=]\n          [default: off]"), "{}", out.stdout);
    let out = run_with(&["--version"], &[], None).await.expect(0);
    assert!(out.stdout.starts_with("coldquery "), "{}", out.stdout);
}

#[tokio::test]
async fn an_unreachable_database_exits_1() {
    let env = [("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2")];
    let out = run_with(&["query", "read", "SELECT 1"], &env, None).await.expect(1);
    assert!(out.stderr.starts_with("error["), "{}", out.stderr);
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    assert!(!out.stderr.contains("Usage"), "{}", out.stderr);
}
