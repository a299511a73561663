//! Progress notifications: a statement that runs longer than a second reports, once a second,
//! how long it has run and what it is doing — waiting for a lock and who holds it, or running.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use coldquery_tests::harness::test_db;
use rmcp::model::{CallToolRequestParams, NumberOrString, ProgressNotificationParam, ProgressToken, RequestParamsMeta};
use rmcp::service::NotificationContext;
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;

use crate::support::{args, command};

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<(f64, String)>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.seen.lock().unwrap().push((p.progress, p.message.unwrap_or_default()));
    }
}

#[tokio::test]
async fn a_long_statement_reports_progress_and_names_the_lock_it_waits_for() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE queue (id int)").await.unwrap();
    let (blocker, blocker_pid) = db.blocker("queue").await;

    let command = command(&[("DATABASE_URL", db.url.as_str()), ("COLDQUERY_LOCK_TIMEOUT", "3s")]);
    let (transport, _) = TokioChildProcess::builder(command).stderr(Stdio::inherit()).spawn().unwrap();
    let recorder = Recorder::default();
    let client = recorder.clone().serve(transport).await.unwrap();

    let mut call = CallToolRequestParams::new("pg_query").with_arguments(args(
        json!({"action": "write", "sql": "ALTER TABLE queue ADD COLUMN note text", "autocommit": true}),
    ));
    call.set_progress_token(ProgressToken(NumberOrString::String("alter".into())));
    let result = client.call_tool(call).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    let waited: Vec<(f64, String)> = recorder.seen.lock().unwrap().drain(..).collect();
    assert!(!waited.is_empty(), "no progress while waiting 3 s for a lock");
    assert!(waited.windows(2).all(|w| w[0].0 < w[1].0), "progress must increase: {waited:?}");
    assert!(
        waited.iter().any(|(_, message)| message.contains(&format!("lock held by pid {blocker_pid}"))),
        "{waited:?}"
    );

    let mut call = CallToolRequestParams::new("pg_query")
        .with_arguments(args(json!({"action": "read", "sql": "SELECT pg_sleep(2.5)"})));
    call.set_progress_token(ProgressToken(NumberOrString::Number(7)));
    let result = client.call_tool(call).await.unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let slept: Vec<(f64, String)> = recorder.seen.lock().unwrap().drain(..).collect();
    assert!((1..=3).contains(&slept.len()), "{slept:?}");
    assert!(slept.iter().all(|(_, message)| message.starts_with("running")), "{slept:?}");

    coldquery_tests::figures::record(
        "progress",
        json!({"lock_wait_reports": waited.len(), "sleep_2_5_s_reports": slept.len(), "first": waited.first().map(|w| &w.1)}),
    );
    client.cancel().await.unwrap();
    blocker.batch_execute("ROLLBACK").await.unwrap();
}
