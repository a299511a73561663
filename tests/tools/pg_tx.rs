//! `pg_tx` over fakes: the session workflow, ownership, limits and honest commits.

use std::time::Duration;

use coldquery_core::{Error, ErrorKind, Owner, SavepointOp, TxState};
use coldquery_tools::{Caller, ToolConfig};
use insta::assert_json_snapshot;
use serde_json::json;

use crate::support::{Fixture, code};

#[tokio::test]
async fn begin_returns_a_session_and_its_settings() {
    let f = Fixture::new();
    let out = f
        .call(
            "pg_tx",
            json!({"action": "begin", "isolation_level": "REPEATABLE READ", "read_only": true, "on_error": "rollback_statement"}),
        )
        .await;
    assert_eq!(out["isolation_level"], "repeatable_read");
    assert_eq!(out["read_only"], true);
    assert_eq!(out["on_error"], "rollback_statement");
    assert!(f.sessions.is_open(out["session_id"].as_str().unwrap()));
    assert_json_snapshot!("begin", out);
}

#[tokio::test]
async fn commit_and_rollback_end_the_session() {
    let f = Fixture::new();
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let out = f.call("pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(out["status"], "committed");
    assert!(!f.sessions.is_open(&id));
    assert_json_snapshot!("commit", out);
    let again = f.call("pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(code(&again), "SESSION_NOT_FOUND");
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let out = f.call("pg_tx", json!({"action": "rollback", "session_id": id})).await;
    assert_eq!(out["status"], "rolled_back");
}

#[tokio::test]
async fn a_failed_statement_makes_commit_fail_honestly() {
    let f = Fixture::new();
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    f.sessions.push_error(Error::new(ErrorKind::DatabaseError, "duplicate key value").with_sqlstate("23505"));
    let out = f.call("pg_query", json!({"action": "write", "sql": "INSERT INTO t VALUES (1)", "session_id": id})).await;
    assert_eq!(code(&out), "DATABASE_ERROR");
    assert_eq!(f.sessions.state_of(&id), Some(TxState::Aborted));
    let out = f.call("pg_query", json!({"action": "read", "sql": "SELECT 1", "session_id": id})).await;
    assert_eq!(code(&out), "SESSION_ABORTED");
    let out = f.call("pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(code(&out), "COMMIT_FAILED");
    assert_json_snapshot!("commit_failed", out);
}

#[tokio::test]
async fn commit_outcome_unknown_is_passed_on() {
    let f = Fixture::new();
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    f.sessions.fail_next_end(Error::new(ErrorKind::CommitOutcomeUnknown, "the connection was lost during COMMIT"));
    let out = f.call("pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(code(&out), "COMMIT_OUTCOME_UNKNOWN");
}

#[tokio::test]
async fn savepoints_are_sanitized_names() {
    let f = Fixture::new();
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let out = f.call("pg_tx", json!({"action": "savepoint", "session_id": id, "name": "before \"x\"; DROP"})).await;
    assert_eq!(out["status"], "created", "{out}");
    let out = f.call("pg_tx", json!({"action": "rollback_to", "session_id": id, "name": "before \"x\"; DROP"})).await;
    assert_eq!(out["status"], "rolled_back_to");
    let out = f.call("pg_tx", json!({"action": "release", "session_id": id, "name": "before \"x\"; DROP"})).await;
    assert_eq!(out["status"], "released");
    assert_eq!(
        f.sessions.savepoints(&id),
        vec![
            (SavepointOp::Create, "before \"x\"; DROP".to_owned()),
            (SavepointOp::RollbackTo, "before \"x\"; DROP".to_owned()),
            (SavepointOp::Release, "before \"x\"; DROP".to_owned()),
        ]
    );
    for name in ["", "a\u{0}b", &"x".repeat(64)] {
        let out = f.call("pg_tx", json!({"action": "savepoint", "session_id": id, "name": name})).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{name:?}: {out}");
    }
    let out = f.call("pg_tx", json!({"action": "savepoint", "session_id": id})).await;
    assert!(out["error"]["message"].as_str().unwrap().contains("'name'"));
}

#[tokio::test]
async fn sessions_belong_to_their_caller() {
    let f = Fixture::new();
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let bob = Caller::new(Owner::new("bob"), "bob");
    for args in [
        json!({"action": "status", "session_id": id}),
        json!({"action": "commit", "session_id": id}),
        json!({"action": "rollback", "session_id": id}),
    ] {
        let out = f.tools.call(&bob, "pg_tx", args).await.unwrap().into_json();
        assert_eq!(code(&out), "SESSION_NOT_FOUND");
    }
    let out =
        f.tools.call(&bob, "pg_query", json!({"action": "read", "sql": "SELECT 1", "session_id": id})).await.unwrap();
    assert_eq!(out.error().map(|e| e.kind()), Some(ErrorKind::SessionNotFound));
    let bobs = f.tools.call(&bob, "pg_tx", json!({"action": "list"})).await.unwrap().into_json();
    assert_eq!(bobs["count"], 0);
    let mine = f.call("pg_tx", json!({"action": "list"})).await;
    assert_eq!(mine["count"], 1);
    assert!(f.sessions.is_open(&id), "bob's attempts did not end alice's session");
    assert_json_snapshot!("list", mine, {".sessions[].session_id" => "[id]"});
}

#[tokio::test]
async fn the_session_limit_is_reported() {
    let f = Fixture::new();
    for _ in 0..3 {
        assert_eq!(code(&f.call("pg_tx", json!({"action": "begin"})).await), "ok");
    }
    let out = f.call("pg_tx", json!({"action": "begin"})).await;
    assert_eq!(code(&out), "SESSION_LIMIT");
    // Sessionless reads still work.
    assert_eq!(code(&f.call("pg_query", json!({"action": "read", "sql": "SELECT 1"})).await), "ok");
}

#[tokio::test]
async fn status_warns_near_expiry() {
    let config = ToolConfig { expiry_warning: Duration::from_secs(3600), ..ToolConfig::default() };
    let f = Fixture::with(config, false);
    let id = f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let out = f.call("pg_tx", json!({"action": "status", "session_id": id})).await;
    assert!(out["session"]["warning"].as_str().unwrap().contains("commit soon"), "{out}");
    assert_json_snapshot!("status_near_expiry", out);
}

#[tokio::test]
async fn read_only_mode_makes_sessions_read_only() {
    let f = Fixture::with(ToolConfig::default(), true);
    let out = f.call("pg_tx", json!({"action": "begin"})).await;
    assert_eq!(out["read_only"], true);
    let id = out["session_id"].as_str().unwrap();
    let out = f.call("pg_query", json!({"action": "write", "sql": "DELETE FROM t", "session_id": id})).await;
    assert_eq!(code(&out), "WRITE_DENIED");
}

#[tokio::test]
async fn invalid_arguments() {
    let f = Fixture::new();
    for (args, parameter) in [
        (json!({"action": "commit"}), "session_id"),
        (json!({"action": "begin", "isolation_level": "chaos"}), "isolation_level"),
        (json!({"action": "begin", "on_error": "ignore"}), "on_error"),
        (json!({"action": "begin", "session_id": "x"}), "session_id"),
        (json!({"action": "list", "name": "x"}), "name"),
        (json!({"action": "launch"}), "action"),
    ] {
        let out = f.call("pg_tx", args.clone()).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{args}: {out}");
        assert!(out["error"]["message"].as_str().unwrap().contains(parameter), "{args}: {out}");
    }
}

#[tokio::test]
async fn cancelling_the_caller_cancels_the_statement() {
    let f = Fixture::new();
    f.executor.push_hang();
    let caller = f.caller.clone();
    let tools = f.tools.clone();
    let call = tokio::spawn(async move {
        tools.call(&caller, "pg_query", json!({"action": "read", "sql": "SELECT pg_sleep(60)"})).await
    });
    // Whether the cancel lands while the statement waits or before it starts, the answer is
    // CANCELLED (the fake hangs until its call is cancelled).
    tokio::task::yield_now().await;
    f.caller.cancel.cancel();
    let out = call.await.unwrap().unwrap();
    assert_eq!(out.error().map(|e| e.kind()), Some(ErrorKind::Cancelled));
}

#[tokio::test]
async fn begin_offers_role_and_settings_only_when_the_server_allows_a_role() {
    let begin_parameters = |fixture: &Fixture| -> Vec<String> {
        let spec = fixture.tools.specs().iter().find(|s| s.name == "pg_tx").unwrap();
        spec.input_schema["properties"].as_object().unwrap().keys().cloned().collect()
    };
    let plain = Fixture::new();
    assert!(!begin_parameters(&plain).contains(&"role".to_owned()));
    let refused = plain.call("pg_tx", json!({"action": "begin", "role": "reporting"})).await;
    assert_eq!(code(&refused), "INVALID_ARGUMENT", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("allows none"), "{refused}");
    let config = ToolConfig { allowed_roles: vec!["reporting".into()], ..ToolConfig::default() };
    let allowing = Fixture::with(config, false);
    assert!(begin_parameters(&allowing).contains(&"role".to_owned()));
    let begun = allowing
        .call(
            "pg_tx",
            json!({"action": "begin", "role": "reporting", "settings": {"request.jwt.claims": {"sub": "42"}}}),
        )
        .await;
    assert_eq!(begun["role"], "reporting", "{begun}");
    let id = begun["session_id"].as_str().unwrap();
    insta::assert_debug_snapshot!("begin_as_role", allowing.sessions.events(id));
}
