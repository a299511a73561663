//! The stdio transport: tools, resources and prompts through a real MCP client; sessions,
//! Default-Deny, cancellation, and rollback when the client closes stdin.

use std::time::Duration;

use coldquery_tests::harness::test_db;
use rmcp::model::{
    CallToolRequestParams, ClientRequest, ErrorCode, GetPromptRequestParams, ProtocolVersion,
    ReadResourceRequestParams, Request, ServerResult,
};
use rmcp::service::PeerRequestOptions;
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientLifecycleMode, ClientServiceExt};
use serde_json::json;

use crate::support::{
    args, call, call_raw, code, command, count, create_items, eventually, modern_info, stdio_client, stdio_client_with,
};

/// Every result the server sends conforms to the output schema it advertises for the tool: one
/// call of each reading action of every tool, a preview, a batch, a session's begin,
/// savepoint, status and rollback, and an error of each tool. (In debug builds the server checks every result it returns
/// too, so every end-to-end test checks the schemas; this test checks the advertised ones.)
#[tokio::test]
async fn results_conform_to_the_advertised_output_schemas() {
    let db = test_db().await;
    create_items(&db.client().await).await;
    let client = stdio_client(&db).await;
    let tools = client.list_all_tools().await.unwrap();
    let schema_of = |name: &str| -> serde_json::Value {
        let tool = tools.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name} is listed"));
        serde_json::Value::Object(tool.output_schema.as_deref().cloned().expect("every tool has an output schema"))
    };
    let begun = call(&client, "pg_tx", json!({"action": "begin"})).await;
    let session = begun["session_id"].as_str().expect("a session id").to_owned();
    let calls = [
        ("pg_query", json!({"action": "read", "sql": "SELECT 1 AS one, 'a' AS letter"})),
        ("pg_query", json!({"action": "explain", "sql": "SELECT * FROM e2e_items"})),
        ("pg_query", json!({"action": "write", "sql": "INSERT INTO e2e_items VALUES (1, 'x')", "session_id": session})),
        ("pg_query", json!({"action": "write", "sql": "DELETE FROM e2e_items", "autocommit": true, "preview": true})),
        (
            "pg_query",
            json!({"action": "transaction", "operations": [{"sql": "SELECT 1"}, {"sql": "SELECT 2"}], "read_only": true}),
        ),
        ("pg_tx", json!({"action": "savepoint", "session_id": session, "name": "s1"})),
        ("pg_tx", json!({"action": "status", "session_id": session})),
        ("pg_tx", json!({"action": "list"})),
        ("pg_tx", json!({"action": "rollback", "session_id": session})),
        ("pg_schema", json!({"action": "list", "target": "tables"})),
        ("pg_schema", json!({"action": "describe", "name": "e2e_items"})),
        ("pg_admin", json!({"action": "stats"})),
        ("pg_admin", json!({"action": "settings", "name": "work_mem"})),
        ("pg_monitor", json!({"action": "health"})),
        ("pg_monitor", json!({"action": "activity"})),
        ("pg_monitor", json!({"action": "connections"})),
        ("pg_monitor", json!({"action": "locks"})),
        ("pg_monitor", json!({"action": "size"})),
    ];
    let mut checked = vec![("pg_tx", begun)];
    for (tool, args) in calls {
        let value = call(&client, tool, args.clone()).await;
        assert_eq!(code(&value), "ok", "{tool} {args}: {value}");
        checked.push((tool, value));
    }
    // Error results carry their body as structured content too, and conform as well.
    for (tool, args) in [
        ("pg_query", json!({"action": "read", "sql": "SELECT * FROM e2e_no_such_table"})),
        ("pg_tx", json!({"action": "commit", "session_id": "cqs_00000000000000000000000000000000"})),
        ("pg_schema", json!({"action": "describe", "name": "e2e_no_such_table"})),
        ("pg_admin", json!({"action": "terminate"})),
        ("pg_monitor", json!({"action": "nothing"})),
    ] {
        let value = call(&client, tool, args.clone()).await;
        assert_ne!(code(&value), "ok", "{tool} {args}: {value}");
        checked.push((tool, value));
    }
    for (tool, value) in &checked {
        if let Some(violation) = coldquery_tools::output::violation(&schema_of(tool), value, tool) {
            panic!("{tool}'s result does not conform to its output schema: {violation}\n{value}");
        }
    }
    // The check can fail: a result with a field the schema does not name, or of another type.
    let read = &checked[1].1;
    let mut extra = read.clone();
    extra["unheard_of"] = json!(1);
    assert!(coldquery_tools::output::violation(&schema_of("pg_query"), &extra, "r").is_some());
    let mut retyped = read.clone();
    retyped["row_count"] = json!("1");
    assert!(coldquery_tools::output::violation(&schema_of("pg_query"), &retyped, "r").is_some());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn tools_resources_and_prompts_are_served() {
    let db = test_db().await;
    let client = stdio_client(&db).await;

    let info = client.peer_info().expect("the server introduced itself");
    let server_info = info.server_info.as_ref().expect("server info");
    assert_eq!(server_info.name, "coldquery");
    assert_eq!(server_info.version, env!("CARGO_PKG_VERSION"));
    let instructions = info.instructions.clone().expect("the server gives instructions");
    assert!(instructions.contains("WRITE_DENIED") && instructions.contains("not instructions"), "{instructions}");

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    for name in ["pg_query", "pg_tx", "pg_schema", "pg_admin", "pg_monitor"] {
        let tool = tools.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name} is listed"));
        let annotations = tool.annotations.as_ref().expect("annotations");
        assert_eq!(annotations.read_only_hint, Some(name == "pg_monitor"), "{name}");
        assert_eq!(annotations.destructive_hint, Some(name != "pg_monitor"), "{name}");
        assert_eq!(annotations.open_world_hint, Some(false), "{name}");
        assert!(tool.title.as_deref().is_some_and(|t| !t.is_empty()), "{name} has a title");
        assert!(tool.description.as_deref().is_some_and(|d| d.len() > 100), "{name} is described");
        assert_eq!(tool.input_schema["type"], "object", "{name}");
        assert!(tool.input_schema.get("oneOf").is_none(), "{name}");
        assert_eq!(tool.output_schema.as_ref().expect("an output schema")["type"], "object", "{name}");
    }

    // Every tool, at least once.
    let read =
        call(&client, "pg_query", json!({"action": "read", "sql": "SELECT 40 + $1::int AS answer", "params": [2]}))
            .await;
    assert_eq!(read["rows"], json!([{"answer": 42}]));
    // SPEC §2: the text is the same JSON as the structured content (the stdio wire writes it),
    // for a result with characters to escape and for an error.
    for sql in ["SELECT 'a \"b\" \\ c' AS q, E'\\n\\t\\u0001' AS control, 1.5::float8 AS f", "SELEC 1"] {
        let raw = call_raw(&client, "pg_query", json!({"action": "read", "sql": sql})).await;
        let text = &raw.content[0].as_text().expect("text content").text;
        let structured = raw.structured_content.as_ref().expect("structured content");
        assert_eq!(&serde_json::from_str::<serde_json::Value>(text).expect("the text is JSON"), structured, "{text}");
    }
    let list = call(&client, "pg_tx", json!({"action": "list"})).await;
    assert_eq!(code(&list), "ok", "{list}");
    let schemas = call(&client, "pg_schema", json!({"action": "list", "target": "schemas"})).await;
    assert_eq!(code(&schemas), "ok", "{schemas}");
    assert!(schemas.to_string().contains("public"), "{schemas}");
    let stats = call(&client, "pg_admin", json!({"action": "stats"})).await;
    assert_eq!(code(&stats), "ok", "{stats}");
    let health = call(&client, "pg_monitor", json!({"action": "health"})).await;
    assert_eq!(code(&health), "ok", "{health}");
    assert_eq!(health["status"], "ok", "{health}");

    // format changes the text only.
    let markdown =
        call_raw(&client, "pg_query", json!({"action": "read", "sql": "SELECT 1 AS one", "format": "markdown"})).await;
    assert_eq!(markdown.structured_content.as_ref().unwrap()["rows"], json!([{"one": 1}]));
    let text = &markdown.content[0].as_text().expect("text content").text;
    assert!(text.contains("| one |"), "{text}");

    // Errors: bad arguments are tool results; an unknown tool is a protocol error (-32602).
    let bad = call(&client, "pg_query", json!({"action": "read", "sql": "SELECT 1", "bogus": true})).await;
    assert_eq!(code(&bad), "INVALID_ARGUMENT");
    let unknown = client.call_tool(CallToolRequestParams::new("pg_nope")).await.expect_err("unknown tool");
    assert!(unknown.to_string().contains("-32602") || format!("{unknown:?}").contains("-32602"), "{unknown:?}");

    let resources = client.list_all_resources().await.unwrap();
    assert!(resources.iter().any(|r| r.uri == "postgres://monitor/health"));
    let templates = client.list_all_resource_templates().await.unwrap();
    assert!(templates.iter().any(|t| t.uri_template == "postgres://schema/{schema}/{table}"));
    let health = client.read_resource(ReadResourceRequestParams::new("postgres://monitor/health")).await.unwrap();
    let text = match &health.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("a text resource, got {other:?}"),
    };
    let health: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(health["status"], "ok");
    // Each failure is its own MCP error: an unknown URI or object is not found, a malformed URI
    // is a bad parameter.
    for (uri, expected) in [
        ("postgres://nowhere", ErrorCode::RESOURCE_NOT_FOUND),
        ("postgres://schema/public/no_such_table", ErrorCode::RESOURCE_NOT_FOUND),
        ("postgres://schema/public/%zz", ErrorCode::INVALID_PARAMS),
    ] {
        match client.read_resource(ReadResourceRequestParams::new(uri)).await {
            Err(rmcp::ServiceError::McpError(error)) => {
                assert_eq!(error.code, expected, "{uri}: {error:?}");
                assert_eq!(error.data.as_ref().map(|d| d["uri"].clone()), Some(json!(uri)), "{uri}");
            }
            other => panic!("{uri}: an MCP error, got {other:?}"),
        }
    }

    let prompts = client.list_all_prompts().await.unwrap();
    assert_eq!(prompts.len(), 2);
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("analyze_query_performance").with_arguments(args(json!({"sql": "SELECT 1"}))),
        )
        .await
        .unwrap();
    let text = format!("{:?}", prompt.messages[0].content);
    assert!(text.contains("pg_query") && text.contains("SELECT 1"), "{text}");
    assert!(client.get_prompt(GetPromptRequestParams::new("analyze_query_performance")).await.is_err());

    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_session_runs_begin_write_commit() {
    let db = test_db().await;
    let side = db.client().await;
    create_items(&side).await;
    let client = stdio_client(&db).await;

    let begin = call(&client, "pg_tx", json!({"action": "begin"})).await;
    let session = begin["session_id"].as_str().expect("begin returns a session_id").to_owned();
    let write = call(
        &client,
        "pg_query",
        json!({"action": "write", "sql": "INSERT INTO e2e_items VALUES ($1, $2)", "params": [1, "one"], "session_id": session}),
    )
    .await;
    assert_eq!(write["rows_affected"], 1, "{write}");
    assert_eq!(write["session"]["id"], session.as_str(), "{write}");
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 0, "not visible before commit");
    let inside = call(
        &client,
        "pg_query",
        json!({"action": "read", "sql": "SELECT name FROM e2e_items", "session_id": session}),
    )
    .await;
    assert_eq!(inside["rows"], json!([{"name": "one"}]));
    let commit = call(&client, "pg_tx", json!({"action": "commit", "session_id": session})).await;
    assert_eq!(code(&commit), "ok", "{commit}");
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 1, "visible after commit");
    let again = call(&client, "pg_tx", json!({"action": "status", "session_id": session})).await;
    assert_eq!(code(&again), "SESSION_NOT_FOUND");

    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_write_without_consent_is_denied_and_nothing_runs() {
    let db = test_db().await;
    let side = db.client().await;
    create_items(&side).await;
    side.batch_execute("INSERT INTO e2e_items VALUES (1, 'keep')").await.unwrap();
    let audit = std::env::temp_dir().join(format!("coldquery-e2e-audit-{}-{}.jsonl", std::process::id(), db.name));
    let _ = std::fs::remove_file(&audit);
    let audit_path = audit.display().to_string();
    let client = stdio_client_with(&db, &[("COLDQUERY_AUDIT_LOG", &audit_path)]).await;

    let denied = call(&client, "pg_query", json!({"action": "write", "sql": "DELETE FROM e2e_items"})).await;
    assert_eq!(code(&denied), "WRITE_DENIED", "{denied}");
    let message =
        denied["error"]["message"].as_str().unwrap().to_owned() + denied["error"]["hint"].as_str().unwrap_or("");
    assert!(message.contains("session_id") && message.contains("autocommit"), "{message}");
    let sneaky =
        call(&client, "pg_query", json!({"action": "read", "sql": "DELETE FROM e2e_items RETURNING id"})).await;
    assert_eq!(code(&sneaky), "READ_ONLY_VIOLATION", "{sneaky}");
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 1);

    // Deleting every row is destructive: by default it runs only after a preview.
    let delete_all = json!({"action": "write", "sql": "DELETE FROM e2e_items", "autocommit": true});
    let unconfirmed = call(&client, "pg_query", delete_all.clone()).await;
    assert_eq!(code(&unconfirmed), "WRITE_DENIED", "{unconfirmed}");
    assert!(unconfirmed["error"]["hint"].as_str().unwrap().contains("preview: true"), "{unconfirmed}");
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 1);
    let mut preview_args = delete_all.clone();
    preview_args["preview"] = json!(true);
    let preview = call(&client, "pg_query", preview_args).await;
    assert_eq!(preview["statements"][0]["rows_affected"], 1, "{preview}");
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 1, "the preview changed nothing");
    let mut confirmed = delete_all.clone();
    confirmed["confirm"] = preview["confirm"]["token"].clone();
    let allowed = call(&client, "pg_query", confirmed.clone()).await;
    assert_eq!(allowed["rows_affected"], 1, "{allowed}");
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 0);
    side.batch_execute("INSERT INTO e2e_items VALUES (2, 'again')").await.unwrap();
    let reused = call(&client, "pg_query", confirmed).await;
    assert_eq!(code(&reused), "WRITE_DENIED", "a token confirms one call: {reused}");
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 1);
    client.cancel().await.unwrap();

    // The audit log holds the denial and the executed write, as JSON lines, without parameters.
    let text = std::fs::read_to_string(&audit).expect("the audit log exists");
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let denial =
        records.iter().find(|r| r["decision"] == "denied" && r["outcome"] == "WRITE_DENIED").expect("the denial");
    assert_eq!(denial["tool"], "pg_query");
    assert_eq!(denial["principal"], "stdio");
    let previewed = records.iter().find(|r| r["decision"] == "previewed").expect("the preview");
    assert_eq!(previewed["statement"], "DELETE FROM e2e_items");
    let write = records.iter().find(|r| r["decision"] == "confirmed").expect("the executed write");
    assert_eq!(write["statement"], "DELETE FROM e2e_items");
    assert_eq!(write["rows_affected"], 1);
    assert_eq!(write["outcome"], "ok");
    std::fs::remove_file(&audit).unwrap();
}

#[tokio::test]
async fn read_only_mode_refuses_writes_and_opens_read_only_sessions() {
    let db = test_db().await;
    let side = db.client().await;
    create_items(&side).await;
    let client = stdio_client_with(&db, &[("COLDQUERY_READ_ONLY", "true")]).await;
    let instructions = client.peer_info().unwrap().instructions.clone().unwrap();
    assert!(instructions.contains("read-only mode"), "{instructions}");

    let denied = call(
        &client,
        "pg_query",
        json!({"action": "write", "sql": "INSERT INTO e2e_items VALUES (1, 'x')", "autocommit": true}),
    )
    .await;
    assert_eq!(code(&denied), "WRITE_DENIED", "{denied}");
    let begin = call(&client, "pg_tx", json!({"action": "begin"})).await;
    assert_eq!(begin["read_only"], true, "{begin}");
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn cancelling_a_call_cancels_the_statement() {
    let db = test_db().await;
    let side = db.client().await;
    let client = stdio_client(&db).await;
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()";

    let params = CallToolRequestParams::new("pg_query")
        .with_arguments(args(json!({"action": "read", "sql": "SELECT pg_sleep(60)", "timeout_ms": 120000})));
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(params)),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("the call is sent");
    assert!(
        eventually(Duration::from_secs(10), || async { count(&side, sleeping).await == 1 }).await,
        "the statement runs on the server"
    );
    handle.cancel(Some("user abort".into())).await.expect("the cancellation is sent");
    assert!(
        eventually(Duration::from_secs(5), || async { count(&side, sleeping).await == 0 }).await,
        "the backend stops running the statement after the client cancels"
    );
    // The server still answers, and the pooled connection it used is healthy.
    let read = call(&client, "pg_query", json!({"action": "read", "sql": "SELECT 1 AS one"})).await;
    assert_eq!(read["rows"], json!([{"one": 1}]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn closing_stdin_rolls_back_the_open_session() {
    let db = test_db().await;
    let side = db.client().await;
    create_items(&side).await;
    let client = stdio_client(&db).await;

    let begin = call(&client, "pg_tx", json!({"action": "begin"})).await;
    let session = begin["session_id"].as_str().unwrap().to_owned();
    let write = call(
        &client,
        "pg_query",
        json!({"action": "write", "sql": "INSERT INTO e2e_items VALUES (7, 'uncommitted')", "session_id": session}),
    )
    .await;
    assert_eq!(write["rows_affected"], 1, "{write}");
    let pid = call(
        &client,
        "pg_query",
        json!({"action": "read", "sql": "SELECT pg_backend_pid() AS pid", "session_id": session}),
    )
    .await;
    let pid = pid["rows"][0]["pid"].as_i64().expect("the session's backend pid");
    assert_eq!(
        count(
            &side,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND state = 'idle in transaction'")
        )
        .await,
        1
    );

    // Closing stdin ends the client; the server rolls back and exits.
    client.cancel().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            count(&side, &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")).await == 0
        })
        .await,
        "the session's backend is gone"
    );
    assert_eq!(count(&side, "SELECT count(*) FROM e2e_items").await, 0, "the uncommitted row was rolled back");
    // Nothing of it is left locked either: the row's key can be taken by someone else.
    side.batch_execute("INSERT INTO e2e_items VALUES (7, 'after')").await.unwrap();
}

#[tokio::test]
async fn stdin_eof_exits_promptly_with_status_zero() {
    let db = test_db().await;
    let mut command = command(&[("DATABASE_URL", db.url.as_str())]);
    command.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    use tokio::io::AsyncWriteExt;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "eof", "version": "0"}}});
    stdin.write_all(format!("{init}\n").as_bytes()).await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the server exits within 10 s of stdin closing")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn the_2026_protocol_works_over_stdio() {
    let db = test_db().await;
    let transport = TokioChildProcess::new(command(&[("DATABASE_URL", db.url.as_str())])).unwrap();
    let client = modern_info()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] },
        )
        .await
        .expect("server/discover succeeds over stdio");
    let read = call(&client, "pg_query", json!({"action": "read", "sql": "SELECT 'modern' AS era"})).await;
    assert_eq!(read["rows"], json!([{"era": "modern"}]));
    let result =
        client.send_request(ClientRequest::ListToolsRequest(Default::default())).await.expect("tools/list is answered");
    let ServerResult::ListToolsResult(list) = result else { panic!("a tools list, got {result:?}") };
    assert_eq!(list.tools.len(), 5);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn ephemeral_serves_a_throwaway_demo_database() {
    let transport = TokioChildProcess::new({
        // A DATABASE_URL left in the environment does not stop a newcomer's --ephemeral.
        let mut command = command(&[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/elsewhere")]);
        command.arg("--ephemeral");
        command
    })
    .unwrap();
    use rmcp::ServiceExt;
    let client = ().serve(transport).await.expect("the MCP handshake succeeds with --ephemeral");
    let tables = call(&client, "pg_schema", json!({"action": "list"})).await;
    assert_eq!(code(&tables), "ok", "{tables}");
    assert!(tables.to_string().contains("customers"), "the demo schema is there: {tables}");
    let read =
        call(&client, "pg_query", json!({"action": "read", "sql": "SELECT count(*) > 0 AS some FROM customers"})).await;
    assert_eq!(read["rows"], json!([{"some": true}]));
    client.cancel().await.unwrap();
}

/// Node's `child_process` (through libuv) gives its children socket pairs for stdio, not pipes:
/// the server serves them the same way — on its event loop, with no more threads than over
/// pipes (tokio's own stdin/stdout would add a blocking thread each) — and exits on EOF.
#[tokio::test]
async fn stdio_over_socket_pairs_is_served_like_pipes() {
    use std::os::fd::OwnedFd;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let db = test_db().await;
    let mut threads = Vec::new();
    for sockets in [false, true] {
        let mut command = command(&[("DATABASE_URL", db.url.as_str())]);
        let (mut child, mut input, output): (
            _,
            Box<dyn tokio::io::AsyncWrite + Unpin>,
            Box<dyn tokio::io::AsyncRead + Unpin>,
        ) = if sockets {
            let (ours_in, theirs_in) = std::os::unix::net::UnixStream::pair().unwrap();
            let (ours_out, theirs_out) = std::os::unix::net::UnixStream::pair().unwrap();
            command.stdin(Stdio::from(OwnedFd::from(theirs_in))).stdout(Stdio::from(OwnedFd::from(theirs_out)));
            let child = command.spawn().unwrap();
            ours_in.set_nonblocking(true).unwrap();
            ours_out.set_nonblocking(true).unwrap();
            let input = tokio::net::UnixStream::from_std(ours_in).unwrap();
            let output = tokio::net::UnixStream::from_std(ours_out).unwrap();
            (child, Box::new(input), Box::new(output))
        } else {
            command.stdin(Stdio::piped()).stdout(Stdio::piped());
            let mut child = command.spawn().unwrap();
            let (input, output) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
            (child, Box::new(input), Box::new(output))
        };
        // The child's ends of the sockets are closed here, so that closing ours is its EOF.
        drop(command);
        let mut lines = BufReader::new(output).lines();
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "sockets", "version": "0"}}});
        input.write_all(format!("{init}\n").as_bytes()).await.unwrap();
        let answer: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
        input.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n").await.unwrap();
        for id in 1..=3 {
            let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "pg_query", "arguments": {"action": "read", "sql": "SELECT 1 AS one"}}});
            input.write_all(format!("{call}\n").as_bytes()).await.unwrap();
            let answer: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            assert_eq!(answer["result"]["structuredContent"]["rows"], json!([{"one": 1}]), "{answer}");
        }
        let pid = child.id().unwrap();
        threads.push(std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count());
        drop(input);
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the server exits within 10 s of its input closing")
            .unwrap();
        assert_eq!(status.code(), Some(0), "sockets: {sockets}");
    }
    assert!(threads[1] <= threads[0], "threads over pipes, over sockets: {threads:?}");
}
