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
    coldquery_tests::figures::record(
        "wire_sizes",
        json!({"tools_list_bytes": list_bytes, "per_tool_bytes": per_tool, "select_1_result_bytes": select_bytes}),
    );
    assert!(*list_bytes < 8 * 1024, "tools/list is {list_bytes} bytes: {per_tool:?}");
    // One copy of the JSON as structured content, one as text: no pretty-printed third.
    assert!(*select_bytes < 500, "a SELECT 1 result is {select_bytes} bytes: {select}");
}
