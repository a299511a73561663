//! What a model pays for: the bytes of `tools/list` and of a small result, measured on the wire
//! (the stdio server's own output lines), and the annotations hosts approve calls by.

use std::process::Stdio;

use coldquery_tests::harness::test_db;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::command;

/// Sends `requests` over stdio, one line each, and returns the response lines by id.
async fn exchange(env: &[(&str, &str)], requests: &[Value]) -> Vec<(Value, usize)> {
    let mut child = command(env).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("the binary starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut answers = Vec::new();
    for request in requests {
        stdin.write_all(format!("{request}\n").as_bytes()).await.unwrap();
        if request.get("id").is_none() {
            continue;
        }
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("an answer within 30 s")
            .unwrap()
            .expect("a line");
        answers.push((serde_json::from_str(&line).unwrap(), line.len()));
    }
    drop(stdin);
    let _ = child.wait().await;
    answers
}

fn initialize() -> [Value; 2] {
    [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "lean", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    ]
}

#[tokio::test]
async fn tools_list_fits_in_8_kib_and_small_results_stay_small() {
    let db = test_db().await;
    let mut requests = initialize().to_vec();
    requests.push(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    requests.push(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "pg_query", "arguments": {"action": "read", "sql": "SELECT 1"}}}));
    let answers = exchange(&[("DATABASE_URL", db.url.as_str())], &requests).await;
    let (list, list_bytes) = &answers[1];
    let (select, select_bytes) = &answers[2];
    assert_eq!(select["result"]["structuredContent"]["rows"], json!([{"?column?": 1}]), "{select}");
    let per_tool: serde_json::Map<String, Value> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), json!(t.to_string().len())))
        .collect();
    // What a host tells the model: the tools without their output schemas (a model API's tool
    // definition is a name, a description and the input schema; the output schema is for the
    // client program that validates and uses the results).
    let mut for_model = list.clone();
    for tool in for_model["result"]["tools"].as_array_mut().unwrap() {
        assert!(tool.as_object_mut().unwrap().remove("outputSchema").is_some(), "{tool}");
    }
    let model_bytes = for_model.to_string().len();
    coldquery_tests::figures::record(
        "wire_sizes",
        json!({"tools_list_bytes": list_bytes, "tools_list_bytes_without_output_schemas": model_bytes,
            "per_tool_bytes": per_tool, "select_1_result_bytes": select_bytes}),
    );
    assert!(model_bytes < 8 * 1024, "tools/list without output schemas is {model_bytes} bytes: {per_tool:?}");
    // The output schemas describe every field of every result, compactly.
    assert!(*list_bytes < 16 * 1024, "tools/list is {list_bytes} bytes: {per_tool:?}");
    // One copy of the JSON as structured content, one as text: no pretty-printed third.
    assert!(*select_bytes < 500, "a SELECT 1 result is {select_bytes} bytes: {select}");
}

/// The annotations as the server sends them: a host can approve the split layout's reading
/// tools without approving writes, and in --read-only mode every tool is read-only.
#[tokio::test]
async fn hosts_can_approve_reads_without_approving_writes() {
    let db = test_db().await;
    let mut requests = initialize().to_vec();
    requests.push(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    requests.push(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "pg_read", "arguments": {"action": "read", "sql": "SELECT 1 AS one"}}}));
    requests.push(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "pg_read", "arguments": {"action": "write", "sql": "CREATE TABLE t (id int)", "autocommit": true}}}));
    requests.push(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "pg_inspect", "arguments": {"action": "drop", "name": "t", "autocommit": true}}}));
    let split = exchange(&[("DATABASE_URL", db.url.as_str()), ("COLDQUERY_TOOL_LAYOUT", "split")], &requests).await;
    let hints = |list: &Value| -> Vec<(String, bool, bool)> {
        list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let a = &t["annotations"];
                (t["name"].as_str().unwrap().to_owned(), a["readOnlyHint"] == true, a["destructiveHint"] == true)
            })
            .collect()
    };
    let listed = hints(&split[1].0);
    let expected = [
        ("pg_read", true, false),
        ("pg_query", false, true),
        ("pg_tx", false, true),
        ("pg_inspect", true, false),
        ("pg_schema", false, true),
        ("pg_admin", false, true),
        ("pg_monitor", true, false),
    ];
    assert_eq!(listed, expected.map(|(n, r, d)| (n.to_owned(), r, d)), "{}", split[1].0);
    assert_eq!(split[2].0["result"]["structuredContent"]["rows"], json!([{"one": 1}]), "{}", split[2].0);
    for (answer, _) in &split[3..] {
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        assert_eq!(answer["result"]["structuredContent"]["error"]["code"], "INVALID_ARGUMENT", "{answer}");
    }
    coldquery_tests::figures::record("wire_sizes_split", json!({"tools_list_bytes": split[1].1}));

    let read_only = exchange(
        &[("DATABASE_URL", db.url.as_str()), ("COLDQUERY_READ_ONLY", "true")],
        &[initialize()[0].clone(), initialize()[1].clone(), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})],
    )
    .await;
    let listed = hints(&read_only[1].0);
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|(_, read, destructive)| *read && !*destructive), "{listed:?}");
}
