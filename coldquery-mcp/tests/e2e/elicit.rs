//! A client that supports elicitation is asked to confirm a destructive write directly, with
//! its preview: accepted, it runs; declined, nothing changes.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use coldquery_tests::harness::test_db;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationCapability, ErrorData, FormElicitationCapability, Implementation,
};
use rmcp::service::RequestContext;
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;

use crate::support::{args, command, count};

#[derive(Clone)]
struct Person {
    accepts: bool,
    asked: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Person {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.elicitation = Some(ElicitationCapability::new().with_form(FormElicitationCapability::new()));
        ClientConfig::new(capabilities, Implementation::new("person", "1"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams { message, .. } = request {
            self.asked.lock().unwrap().push(message);
        }
        Ok(if self.accepts {
            ElicitResult::new(ElicitationAction::Accept).with_content(json!({"confirm": true}))
        } else {
            ElicitResult::new(ElicitationAction::Decline)
        })
    }
}

#[tokio::test]
async fn a_person_accepts_or_declines_a_destructive_write_shown_with_its_preview() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE doomed (id int); INSERT INTO doomed SELECT generate_series(1, 3)").await.unwrap();
    for accepts in [false, true] {
        let (transport, _) = TokioChildProcess::builder(command(&[("DATABASE_URL", db.url.as_str())]))
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let person = Person { accepts, asked: Arc::default() };
        let client = person.clone().serve(transport).await.unwrap();
        let call = CallToolRequestParams::new("pg_query")
            .with_arguments(args(json!({"action": "write", "sql": "DELETE FROM doomed", "autocommit": true})));
        let result = client.call_tool(call).await.unwrap();
        let asked = person.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert!(asked[0].contains("DELETE without a WHERE clause") && asked[0].contains("DELETE: 3 rows"), "{asked:?}");
        let body = result.structured_content.clone().unwrap();
        if accepts {
            assert_eq!(result.is_error, Some(false), "{body}");
            assert_eq!(body["rows_affected"], 3);
            assert_eq!(count(&side, "SELECT count(*) FROM doomed").await, 0);
            // DDL is asked the same way.
            let drop = CallToolRequestParams::new("pg_schema")
                .with_arguments(args(json!({"action": "drop", "name": "doomed", "autocommit": true})));
            let dropped = client.call_tool(drop).await.unwrap();
            assert_eq!(dropped.is_error, Some(false), "{:?}", dropped.structured_content);
            let asked = person.asked.lock().unwrap().clone();
            assert!(asked.len() == 2 && asked[1].contains("DROP TABLE") && asked[1].contains("doomed"), "{asked:?}");
            assert_eq!(count(&side, "SELECT count(*) FROM pg_class WHERE relname = 'doomed'").await, 0);
        } else {
            assert_eq!(body["error"]["code"], "WRITE_DENIED", "{body}");
            assert!(body["error"]["message"].as_str().unwrap().contains("declined"), "{body}");
            assert_eq!(
                count(&side, "SELECT count(*) FROM doomed").await,
                3,
                "the preview and the refusal changed nothing"
            );
        }
        client.cancel().await.unwrap();
    }
}
