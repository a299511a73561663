//! `pg_query` over fakes: outputs and the SQL each action issues.

use coldquery_core::{Error, ErrorKind, QueryResult};
use coldquery_tools::ToolConfig;
use insta::assert_json_snapshot;
use serde_json::json;

use crate::support::{Fixture, code, rows, transcript};

#[tokio::test]
async fn read_runs_read_only_with_params() {
    let f = Fixture::new();
    f.executor.push_result(rows("name", "text", vec![json!("alice")]));
    let t = transcript(
        &f,
        "pg_query",
        json!({"action": "read", "sql": "SELECT name FROM users WHERE id = $1", "params": [7]}),
    )
    .await;
    assert_json_snapshot!("read", t);
}

#[tokio::test]
async fn read_in_a_session_echoes_the_session() {
    let f = Fixture::new();
    let begun = f.call("pg_tx", json!({"action": "begin"})).await;
    let id = begun["session_id"].as_str().unwrap().to_owned();
    f.sessions.push_result(rows("n", "int8", vec![json!(3)]));
    let out =
        f.call("pg_query", json!({"action": "read", "sql": "SELECT count(*) AS n FROM t", "session_id": id})).await;
    assert_eq!(out["rows"][0]["n"], 3);
    assert_eq!(out["session"]["id"], id.as_str());
    assert_eq!(f.sessions.statements(&id), vec!["SELECT count(*) AS n FROM t"]);
    assert!(f.executor.sql().is_empty(), "nothing ran on the shared pool");
    assert_json_snapshot!("read_in_session", out, {".session.id" => "[id]"});
}

#[tokio::test]
async fn read_refuses_writes_before_sending_anything() {
    let f = Fixture::new();
    for (sql, expected) in [
        ("DELETE FROM t", "READ_ONLY_VIOLATION"),
        ("COMMIT; DROP TABLE t", "STATEMENT_NOT_ALLOWED"),
        ("SELECT pg_terminate_backend(1)", "STATEMENT_NOT_ALLOWED"),
        ("SELEC 1", "DATABASE_ERROR"),
    ] {
        let out = f.call("pg_query", json!({"action": "read", "sql": sql})).await;
        assert_eq!(code(&out), expected, "{sql}: {out}");
    }
    assert!(f.executor.sql().is_empty());
    let out = f.call("pg_query", json!({"action": "read", "sql": "DELETE FROM t"})).await;
    assert_json_snapshot!("read_refuses_write", out);
}

#[tokio::test]
async fn write_is_denied_without_session_or_autocommit() {
    let f = Fixture::new();
    let t = transcript(&f, "pg_query", json!({"action": "write", "sql": "DELETE FROM t"})).await;
    assert_eq!(code(&t["output"]), "WRITE_DENIED");
    assert_eq!(t["sql"], json!([]), "a denied write sends nothing");
    assert_json_snapshot!("write_denied", t);
    let out = f.call("pg_query", json!({"action": "write", "sql": "DELETE FROM t", "autocommit": false})).await;
    assert_eq!(code(&out), "WRITE_DENIED");
}

#[tokio::test]
async fn write_with_autocommit_runs_on_the_pool() {
    let f = Fixture::new();
    f.executor.push_result(QueryResult { rows_affected: Some(2), ..QueryResult::default() });
    let t = transcript(
        &f,
        "pg_query",
        json!({"action": "write", "sql": "UPDATE t SET a = $1", "params": ["x"], "autocommit": true}),
    )
    .await;
    assert_eq!(t["output"]["rows_affected"], 2);
    assert_json_snapshot!("write_autocommit", t);
}

#[tokio::test]
async fn write_in_a_session_joins_it() {
    let f = Fixture::new();
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    f.sessions.push_result(QueryResult { rows_affected: Some(1), ..QueryResult::default() });
    let out = f.call("pg_query", json!({"action": "write", "sql": "INSERT INTO t VALUES (1)", "session_id": id})).await;
    assert_eq!(out["rows_affected"], 1);
    assert_eq!(out["command"], "INSERT");
    assert_eq!(f.sessions.statements(&id), vec!["INSERT INTO t VALUES (1)"]);
    assert!(f.executor.sql().is_empty());
}

#[tokio::test]
async fn write_refusals() {
    let f = Fixture::new();
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let cases = [
        (json!({"action": "write", "sql": "COMMIT", "autocommit": true}), "STATEMENT_NOT_ALLOWED"),
        (json!({"action": "write", "sql": "COPY t TO PROGRAM 'x'", "autocommit": true}), "STATEMENT_NOT_ALLOWED"),
        (json!({"action": "write", "sql": "VACUUM t", "session_id": id}), "STATEMENT_NOT_ALLOWED"),
        (json!({"action": "write", "sql": "SET search_path = evil", "autocommit": true}), "STATEMENT_NOT_ALLOWED"),
        (json!({"action": "write", "sql": "CREATE TEMP TABLE x (a int)", "autocommit": true}), "STATEMENT_NOT_ALLOWED"),
        (json!({"action": "write", "sql": "DELETE FROM t", "session_id": "nope"}), "SESSION_NOT_FOUND"),
    ];
    for (args, expected) in cases {
        let out = f.call("pg_query", args.clone()).await;
        assert_eq!(code(&out), expected, "{args}: {out}");
    }
    assert!(f.executor.sql().is_empty());
    assert!(f.sessions.statements(&id).is_empty());
    let vacuum = f.call("pg_query", json!({"action": "write", "sql": "VACUUM t", "session_id": id})).await;
    assert_json_snapshot!("vacuum_in_session", vacuum);
}

#[tokio::test]
async fn explain_builds_the_explain_statement() {
    let f = Fixture::new();
    f.executor.push_result(rows(
        "QUERY PLAN",
        "json",
        vec![json!([{"Plan": {"Node Type": "Seq Scan", "Total Cost": 35.5, "Plan Rows": 2550}, "Planning Time": 0.1}])],
    ));
    let t = transcript(&f, "pg_query", json!({"action": "explain", "sql": "SELECT * FROM t WHERE a = $1", "params": [1], "analyze": true, "buffers": true})).await;
    assert_eq!(t["output"]["summary"]["total_cost"], 35.5);
    assert_json_snapshot!("explain_json", t);

    f.executor.push_result(rows(
        "QUERY PLAN",
        "text",
        vec![json!("Seq Scan on t  (cost=0.00..35.50 rows=2550 width=4)")],
    ));
    let t = transcript(
        &f,
        "pg_query",
        json!({"action": "explain", "sql": "SELECT * FROM t", "format": "text", "verbose": true}),
    )
    .await;
    assert_eq!(t["output"]["summary"]["estimated_rows"], 2550);
    assert_json_snapshot!("explain_text", t);
}

#[tokio::test]
async fn explain_analyze_of_a_write_needs_a_session() {
    let f = Fixture::new();
    let out = f.call("pg_query", json!({"action": "explain", "sql": "DELETE FROM t", "analyze": true})).await;
    assert_eq!(code(&out), "WRITE_DENIED", "{out}");
    assert!(out["error"]["hint"].as_str().unwrap().contains("session"));
    assert!(f.executor.sql().is_empty());
    // Without analyze the plan of a write is only planned: allowed, read-only.
    let t = transcript(&f, "pg_query", json!({"action": "explain", "sql": "DELETE FROM t"})).await;
    assert_eq!(t["sql"][0]["mode"], "Run(ReadOnly)");
}

#[tokio::test]
async fn transaction_runs_a_batch() {
    let f = Fixture::new();
    f.executor.push_result(QueryResult { rows_affected: Some(1), ..QueryResult::default() });
    f.executor.push_result(QueryResult { rows_affected: Some(3), ..QueryResult::default() });
    let t = transcript(
        &f,
        "pg_query",
        json!({"action": "transaction", "autocommit": true, "isolation_level": "serializable", "operations": [
            {"sql": "INSERT INTO t VALUES ($1)", "params": [1]},
            {"sql": "UPDATE t SET a = a + 1"}
        ]}),
    )
    .await;
    assert_eq!(t["output"]["committed"], true);
    assert_json_snapshot!("transaction", t);
}

#[tokio::test]
async fn transaction_refusals_carry_the_operation_index() {
    let f = Fixture::new();
    let out =
        f.call("pg_query", json!({"action": "transaction", "operations": [{"sql": "INSERT INTO t VALUES (1)"}]})).await;
    assert_eq!(code(&out), "WRITE_DENIED");
    let out = f
        .call(
            "pg_query",
            json!({"action": "transaction", "autocommit": true, "operations": [{"sql": "SELECT 1"}, {"sql": "COMMIT"}]}),
        )
        .await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED");
    assert_eq!(out["error"]["operation_index"], 1);
    let out = f
        .call("pg_query", json!({"action": "transaction", "read_only": true, "operations": [{"sql": "DELETE FROM t"}]}))
        .await;
    assert_eq!(code(&out), "READ_ONLY_VIOLATION");
    assert_eq!(out["error"]["operation_index"], 0);
    assert!(f.executor.sql().is_empty());
    // A failure inside the batch is reported with its index.
    f.executor.push_result(QueryResult::default());
    f.executor.push_error(Error::new(ErrorKind::DatabaseError, "duplicate key").with_sqlstate("23505"));
    let out = f
        .call(
            "pg_query",
            json!({"action": "transaction", "autocommit": true, "operations": [{"sql": "INSERT INTO t VALUES (1)"}, {"sql": "INSERT INTO t VALUES (1)"}]}),
        )
        .await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert_eq!(out["error"]["sqlstate"], "23505");
    assert_eq!(out["error"]["operation_index"], 1, "{out}");
}

#[tokio::test]
async fn invalid_arguments_name_the_parameter() {
    let f = Fixture::new();
    let cases = [
        (json!({"action": "select", "sql": "SELECT 1"}), "action"),
        (json!({"sql": "SELECT 1"}), "action"),
        (json!({"action": "read"}), "sql"),
        (json!({"action": "read", "sql": "SELECT 1", "bogus": 1}), "bogus"),
        (json!({"action": "read", "sql": "SELECT 1", "max_rows": 1_000_000}), "max_rows"),
        (json!({"action": "read", "sql": "SELECT 1", "max_rows": "ten"}), "max_rows"),
        (json!({"action": "read", "sql": "SELECT 1", "params": "1"}), "params"),
        (json!({"action": "read", "sql": "SELECT 1", "format": "xml"}), "format"),
        (json!({"action": "read", "sql": "SELECT 1", "autocommit": true}), "autocommit"),
        // Options of another action are refused, not silently ignored.
        (json!({"action": "read", "sql": "SELECT 1", "verbose": true}), "verbose"),
        (json!({"action": "write", "sql": "DELETE FROM t", "autocommit": true, "read_only": true}), "read_only"),
        (json!({"action": "explain", "sql": "SELECT 1", "max_rows": 5}), "max_rows"),
        (json!({"action": "read", "sql": "SELECT 1\u{0}"}), "sql"),
        (json!({"action": "transaction", "operations": []}), "operations"),
        (
            json!({"action": "transaction", "operations": [{"sql": "SELECT 1"}], "isolation_level": "chaos", "read_only": true}),
            "isolation_level",
        ),
    ];
    for (args, parameter) in cases {
        let out = f.call("pg_query", args.clone()).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{args}: {out}");
        let message = out["error"]["message"].as_str().unwrap();
        assert!(message.contains(parameter), "{args}: '{message}' should name '{parameter}'");
    }
    // A null parameter counts as absent.
    let out = f.call("pg_query", json!({"action": "read", "sql": "SELECT 1", "autocommit": null})).await;
    assert_eq!(code(&out), "ok", "{out}");
    f.executor.take_calls();
    let huge = "x".repeat(coldquery_core::MAX_SQL_BYTES + 1);
    assert_eq!(code(&f.call("pg_query", json!({"action": "read", "sql": huge})).await), "INVALID_ARGUMENT");
    assert!(f.executor.sql().is_empty());
    let out = f.call("pg_query", json!({"action": "select"})).await;
    assert_json_snapshot!("unknown_action", out);
}

#[tokio::test]
async fn read_only_mode_refuses_every_write() {
    let f = Fixture::with(ToolConfig::default(), true);
    let out = f.call("pg_query", json!({"action": "write", "sql": "DELETE FROM t", "autocommit": true})).await;
    assert_eq!(code(&out), "WRITE_DENIED");
    assert!(f.executor.sql().is_empty());
}

#[tokio::test]
async fn truncated_results_carry_a_hint_and_errors_pass_through() {
    let f = Fixture::new();
    f.executor.push_result(QueryResult { truncated: true, ..rows("n", "int4", vec![json!(1), json!(2)]) });
    let out = f.call("pg_query", json!({"action": "read", "sql": "SELECT n FROM t", "max_rows": 2})).await;
    assert_eq!(out["truncated"], true);
    assert!(out["hint"].as_str().unwrap().contains("max_rows"));
    assert_eq!(f.executor.calls()[0].limits.max_rows, 2);
    f.executor.push_error(Error::new(ErrorKind::Timeout, "statement timed out after 10 ms"));
    let out = f.call("pg_query", json!({"action": "read", "sql": "SELECT pg_sleep(1)", "timeout_ms": 10})).await;
    assert_eq!(code(&out), "TIMEOUT");
}

#[tokio::test]
async fn markdown_and_csv_change_only_the_text() {
    let f = Fixture::new();
    f.executor.push_result(rows("name", "text", vec![json!("a|b"), json!("c,d")]));
    let output = f
        .tools
        .call(&f.caller, "pg_query", json!({"action": "read", "sql": "SELECT name FROM t", "format": "markdown"}))
        .await
        .unwrap();
    assert_eq!(output.clone().value().unwrap()["rows"][0]["name"], "a|b");
    insta::assert_snapshot!("markdown_text", output.text());
    f.executor.push_result(rows("name", "text", vec![json!("a|b"), json!("c,d")]));
    let output = f
        .tools
        .call(&f.caller, "pg_query", json!({"action": "read", "sql": "SELECT name FROM t", "format": "csv"}))
        .await
        .unwrap();
    insta::assert_snapshot!("csv_text", output.text());
}

/// EXPLAIN ANALYZE executes the statement, so a write goes through the policy even in a
/// session: in read-only mode it is denied and nothing is sent.
#[tokio::test]
async fn explain_analyze_of_a_write_in_a_session_obeys_read_only_mode() {
    let f = Fixture::with(ToolConfig::default(), true);
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let out = f
        .call("pg_query", json!({"action": "explain", "sql": "DELETE FROM t", "analyze": true, "session_id": id}))
        .await;
    assert_eq!(code(&out), "WRITE_DENIED", "{out}");
    assert!(f.sessions.statements(&id).is_empty());
}

/// The deny-list can be extended (`--deny-functions`); the built-in entries always stay.
#[tokio::test]
async fn extra_denied_functions_are_refused_in_reads() {
    let mut config = ToolConfig::default();
    config.deny_functions("audit_mark, app_*").unwrap();
    assert!(config.deny_functions("drop table x").is_err());
    assert!(config.deny_functions("*").is_err());
    let f = Fixture::with(config, false);
    for sql in ["SELECT audit_mark(1)", "SELECT * FROM app_reset()", "SELECT pg_terminate_backend(1)"] {
        let out = f.call("pg_query", json!({"action": "read", "sql": sql})).await;
        assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{sql}: {out}");
    }
    assert_eq!(code(&f.call("pg_query", json!({"action": "read", "sql": "SELECT audit_marker(1)"})).await), "ok");
}

#[tokio::test]
async fn preview_runs_the_write_between_snapshots_of_objects_and_locks_and_always_rolls_back() {
    let config = ToolConfig { confirm_writes: coldquery_tools::ConfirmWrites::Destructive, ..ToolConfig::default() };
    let f = Fixture::with(config, false);
    let args = json!({"action": "write", "sql": "DELETE FROM items WHERE kind = $1", "params": ["old"], "autocommit": true, "preview": true});
    let t = transcript(&f, "pg_query", args).await;
    assert_json_snapshot!("preview_write", t, {".output.confirm.token" => "[token]"});
    // A destructive write without a token is refused before anything is sent.
    let refused =
        transcript(&f, "pg_query", json!({"action": "write", "sql": "TRUNCATE items", "autocommit": true})).await;
    assert_eq!(code(&refused["output"]), "WRITE_DENIED");
    assert_eq!(refused["sql"], json!([]));
}

#[tokio::test]
async fn the_split_layout_keeps_reading_tools_from_writing() {
    let f = Fixture::new();
    let tools = f.tools.clone().with_layout(coldquery_tools::Layout::Split);
    let call = |name: &'static str, args: serde_json::Value| {
        let tools = tools.clone();
        let caller = f.caller.clone();
        async move { tools.call(&caller, name, args).await.expect("a known tool").into_json() }
    };
    let begun = call("pg_tx", json!({"action": "begin"})).await;
    let session = begun["session_id"].clone();
    let analyzed =
        call("pg_read", json!({"action": "explain", "sql": "DELETE FROM t", "analyze": true, "session_id": session}))
            .await;
    assert_eq!(code(&analyzed), "STATEMENT_NOT_ALLOWED", "{analyzed}");
    let plain = call("pg_read", json!({"action": "explain", "sql": "DELETE FROM t"})).await;
    assert_eq!(code(&plain), "ok", "{plain}");
    assert_eq!(
        code(
            &call("pg_read", json!({"action": "write", "sql": "DELETE FROM t WHERE id = 1", "autocommit": true})).await
        ),
        "INVALID_ARGUMENT"
    );
    assert_eq!(code(&call("pg_query", json!({"action": "read", "sql": "SELECT 1"})).await), "INVALID_ARGUMENT");
    assert_eq!(
        code(&call("pg_inspect", json!({"action": "drop", "name": "t", "autocommit": true})).await),
        "INVALID_ARGUMENT"
    );
    let unknown = tools.call(&f.caller, "pg_read_write", json!({})).await.unwrap_err();
    assert!(unknown.to_string().contains("pg_read, pg_query"), "{unknown}");
    // The analyzed write never reached the session.
    assert!(f.sessions.statements(session.as_str().unwrap()).iter().all(|s| !s.contains("DELETE")));
}

/// Collects a stream's rows.
#[derive(Default)]
struct Sink {
    fields: Vec<coldquery_core::Field>,
    rows: Vec<Vec<serde_json::Value>>,
}

impl coldquery_core::RowSink for Sink {
    fn columns(&mut self, fields: &[coldquery_core::Field]) -> coldquery_core::Result<()> {
        self.fields = fields.to_vec();
        Ok(())
    }

    fn row(&mut self, values: Vec<serde_json::Value>) -> coldquery_core::Result<()> {
        self.rows.push(values);
        Ok(())
    }
}

#[tokio::test]
async fn read_stream_runs_the_guarded_statement_as_a_stream_with_the_reads_timeout() {
    let f = Fixture::new();
    f.executor.push_result(rows("name", "text", vec![json!("alice")]));
    let mut sink = Sink::default();
    let args = json!({"sql": "SELECT name FROM users WHERE id = $1", "params": [7], "timeout_ms": 1500});
    let summary = f.tools.read_stream(&f.caller, args, &mut sink).await.expect("streamed");
    assert_eq!(summary["row_count"], 1);
    assert_eq!(summary["command"], "SELECT");
    assert_eq!(sink.rows, vec![vec![json!("alice")]]);
    assert_eq!(sink.fields[0].name, "name");
    let calls = f.executor.take_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].mode, coldquery_tests::fakes::CallMode::Stream);
    assert_eq!(calls[0].params, vec![coldquery_core::Param::Int(7)]);
    assert_eq!(calls[0].limits.timeout, std::time::Duration::from_millis(1500));
    assert_eq!(calls[0].limits.max_rows, usize::MAX, "no row cap");

    // Refused before anything is sent, as a read is.
    for sql in ["DELETE FROM users", "SELECT pg_advisory_lock(1)", "SELECT 1; SELECT 2"] {
        let refused = f.tools.read_stream(&f.caller, json!({"sql": sql}), &mut Sink::default()).await;
        let read = f.call("pg_query", json!({"action": "read", "sql": sql})).await;
        assert_eq!(refused.expect_err(sql).to_json(), read, "{sql}");
    }
    assert!(f.executor.take_calls().is_empty(), "nothing reached the executor");
}
