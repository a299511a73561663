//! Agent safety over a real MCP client: a write queued behind another transaction gives up
//! within the lock timeout and names the blocker; a session acting as an allowed role sees
//! only the rows its row-level-security policy lets through, and cannot change its role.

use std::time::{Duration, Instant};

use coldquery_tests::harness::test_db;
use serde_json::json;

use crate::support::{call, code, count, stdio_client_with};

#[tokio::test]
async fn an_alter_table_behind_an_open_transaction_fails_within_the_lock_timeout_naming_the_blocker() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE queue (id int)").await.unwrap();
    let (blocker, blocker_pid) = db.blocker("queue").await;
    let client = stdio_client_with(&db, &[("COLDQUERY_LOCK_TIMEOUT", "1s")]).await;

    let started = Instant::now();
    let out = call(
        &client,
        "pg_query",
        json!({"action": "write", "sql": "ALTER TABLE queue ADD COLUMN note text", "autocommit": true}),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(out["error"]["sqlstate"], "55P03", "{out}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?} for a lock timeout of 1 s");
    assert!(out["error"]["hint"].as_str().unwrap().contains(&format!("pid {blocker_pid}")), "{out}");
    assert_eq!(count(&side, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'queue'").await, 1);
    blocker.batch_execute("ROLLBACK").await.unwrap();
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_session_acting_as_an_allowed_role_sees_only_its_rows_and_keeps_its_role() {
    let db = test_db().await;
    let side = db.client().await;
    let agent = format!("e2e_agent_{}", db.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    side.batch_execute(&format!(
        "CREATE ROLE {agent} NOLOGIN;
         CREATE TABLE notes (tenant text, body text);
         INSERT INTO notes VALUES ('acme', 'a'), ('acme', 'b'), ('globex', 'c');
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_tenant ON notes USING (tenant = current_setting('request.jwt.claims', true)::json->>'tenant');
         GRANT SELECT ON notes TO {agent};"
    ))
    .await
    .unwrap();
    let audit = std::env::temp_dir().join(format!("coldquery-e2e-role-audit-{}-{}.jsonl", std::process::id(), db.name));
    let _ = std::fs::remove_file(&audit);
    let audit_path = audit.display().to_string();
    let client =
        stdio_client_with(&db, &[("COLDQUERY_ALLOW_ROLES", agent.as_str()), ("COLDQUERY_AUDIT_LOG", &audit_path)])
            .await;
    let begun = call(
        &client,
        "pg_tx",
        json!({"action": "begin", "role": agent, "settings": {"request.jwt.claims": {"tenant": "acme"}}}),
    )
    .await;
    let session = begun["session_id"].as_str().expect("a session").to_owned();
    let seen = call(&client, "pg_query", json!({"action": "read", "sql": "SELECT current_user AS who, count(*) AS n FROM notes GROUP BY 1", "session_id": session})).await;
    assert_eq!(seen["rows"], json!([{"who": agent, "n": 2}]), "{seen}");
    let escape =
        call(&client, "pg_query", json!({"action": "write", "sql": "RESET ROLE", "session_id": session})).await;
    assert_eq!(code(&escape), "STATEMENT_NOT_ALLOWED", "{escape}");
    let still = call(
        &client,
        "pg_query",
        json!({"action": "read", "sql": "SELECT count(*) AS n FROM notes", "session_id": session}),
    )
    .await;
    assert_eq!(still["rows"][0]["n"], 2, "{still}");
    let other = call(&client, "pg_tx", json!({"action": "begin", "role": "postgres"})).await;
    assert_eq!(code(&other), "INVALID_ARGUMENT", "{other}");
    let ended = call(&client, "pg_tx", json!({"action": "rollback", "session_id": session})).await;
    assert_eq!(code(&ended), "ok", "{ended}");
    client.cancel().await.unwrap();
    // The audit log says who the session acted as, and never the claims' values.
    let text = std::fs::read_to_string(&audit).expect("the audit log exists");
    assert!(text.contains(&format!("act as role {agent} with request settings [request.jwt.claims]")), "{text}");
    assert!(!text.contains("acme"), "claims are never recorded: {text}");
    std::fs::remove_file(&audit).unwrap();
    side.batch_execute(&format!("DROP OWNED BY {agent}; DROP ROLE {agent}")).await.unwrap();
}
