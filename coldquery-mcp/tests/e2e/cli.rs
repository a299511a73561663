//! The command line: `--help` documents every flag, and bad configuration stops the binary
//! with exit status 2 and a message naming the setting.

use std::process::Output;

use crate::support::command;

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = command(env);
    command.args(args).stdin(std::process::Stdio::null());
    tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
        .await
        .expect("the binary answers within 30 s")
        .expect("the binary runs")
}

#[tokio::test]
async fn help_documents_every_flag() {
    let output = run(&["--help"], &[]).await;
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--database-url",
        "--ephemeral",
        "--transport",
        "--listen",
        "--log-format",
        "--read-only",
        "--max-sessions",
        "--session-ttl",
        "--pool-size",
        "--acquire-timeout",
        "--statement-timeout",
        "--max-rows",
        "--max-rows-limit",
        "--max-result-bytes",
        "--audit-log",
        "--auth-token",
        "--auth-token-file",
        "--insecure-no-auth",
        "--allowed-hosts",
        "--allowed-origins",
        "--max-request-bytes",
    ] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
    for variable in coldquery_mcp::config::KNOWN_VARIABLES.iter().chain(&["DATABASE_URL"]) {
        assert!(help.contains(variable), "--help names {variable}");
    }
    insta::assert_snapshot!("help", help);
}

/// Flags, environment, and the text the error must contain.
type Case = (&'static [&'static str], &'static [(&'static str, &'static str)], &'static str);

#[tokio::test]
async fn bad_configuration_exits_2_naming_the_setting() {
    let cases: [Case; 11] = [
        (&["--session-ttl", "10 days"], &[], "--session-ttl"),
        (&[], &[("COLDQUERY_STATEMENT_TIMEOUT", "soon")], "COLDQUERY_STATEMENT_TIMEOUT"),
        (&[], &[("COLDQUERY_READONLY", "true")], "COLDQUERY_READONLY"),
        (&["--frobnicate"], &[], "--frobnicate"),
        (&["--transport", "http", "--listen", "0.0.0.0:19002"], &[], "COLDQUERY_AUTH_TOKEN"),
        (&[], &[("DATABASE_URL", "postgres://localhost/db?sslmode=sometimes")], "sslmode"),
        (&[], &[("COLDQUERY_READ_ONLY", "maybe")], "read-only"),
        (&["--max-result-bytes", "1TB"], &[], "--max-result-bytes"),
        // One database: the --database-url flag and --ephemeral are refused together (DATABASE_URL
        // from the environment gives way instead), as in the coldquery CLI.
        (&["--ephemeral", "--database-url", "postgres://localhost/db"], &[], "--ephemeral (COLDQUERY_EPHEMERAL)"),
        (&[], &[("COLDQUERY_CONFIRM_WRITES", "sometimes")], "COLDQUERY_CONFIRM_WRITES"),
        (&["--audit-log", "/nonexistent-coldquery-dir/a.jsonl"], &[], "--audit-log (COLDQUERY_AUDIT_LOG)"),
    ];
    for (args, env, named) in cases {
        let output = run(args, env).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?} {env:?} names {named}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing on stdout (the stdio protocol channel)");
    }
}
