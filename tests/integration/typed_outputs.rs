//! The typed view of results (`coldquery_tools::output`): what an embedding program reads
//! instead of picking JSON apart, over a real PostgreSQL.

use coldquery_tests::harness::test_db;
use coldquery_tools::output::{QueryOutput, SchemaOutput, TxOutput};
use serde_json::json;

use crate::support::{caller, options, tools};

#[tokio::test]
async fn results_read_as_their_tools_types() {
    let db = test_db().await;
    let (tools, _database) = tools(&db, &options(), coldquery_tools::ToolConfig::default(), false).await;
    let me = caller("typed");
    let call = |tool: &'static str, args: serde_json::Value| {
        let (tools, me) = (&tools, &me);
        async move { tools.call(me, tool, args).await.expect("a known tool") }
    };

    let begun: TxOutput = call("pg_tx", json!({"action": "begin", "isolation_level": "repeatable_read"}))
        .await
        .typed()
        .expect("a session");
    assert!(begun.details.session_id.starts_with("cqs_"), "{begun:?}");
    assert_eq!(begun.details.isolation_level, "repeatable_read");
    assert_eq!(begun.session.id, begun.details.session_id);
    let session = begun.details.session_id;

    let created: QueryOutput = call(
        "pg_query",
        json!({"action": "write", "sql": "CREATE TABLE typed_t AS SELECT g AS id, 'n' || g AS note FROM generate_series(1, 3) g", "session_id": session}),
    )
    .await
    .typed()
    .expect("the write");
    assert_eq!((created.statement.command.as_str(), created.statement.rows_affected), ("CREATE TABLE AS", Some(3)));
    assert_eq!(created.session.id, session);

    let read: QueryOutput = call(
        "pg_query",
        json!({"action": "read", "sql": "SELECT id, note FROM typed_t ORDER BY id", "session_id": session, "max_rows": 2}),
    )
    .await
    .typed()
    .expect("the read");
    let columns: Vec<(&str, &str)> =
        read.statement.fields.iter().map(|c| (c.name.as_str(), c.type_name.as_str())).collect();
    assert_eq!(columns, [("id", "int4"), ("note", "text")]);
    assert_eq!(read.statement.rows.len(), 2);
    assert_eq!(read.statement.rows[1]["note"], "n2");
    assert!(read.statement.truncated);
    assert_eq!(read.statement.truncated_by, "max_rows");
    assert_eq!(read.statement.rows_affected, None);

    let described: SchemaOutput =
        call("pg_schema", json!({"action": "describe", "name": "typed_t", "session_id": session}))
            .await
            .typed()
            .expect("the description");
    assert_eq!(described.name, "typed_t");
    // The catalog's own attributes of the object are kept besides the declared fields.
    assert_eq!(described.more["columns"].as_array().map(Vec::len), Some(2), "{:?}", described.more);

    let ended: TxOutput =
        call("pg_tx", json!({"action": "rollback", "session_id": session})).await.typed().expect("the rollback");
    assert_eq!(ended.status, "rolled_back");

    // An error stays the typed error; a result read as another tool's type is refused clearly.
    let gone = call("pg_tx", json!({"action": "commit", "session_id": session})).await.typed::<TxOutput>();
    assert_eq!(gone.unwrap_err().kind(), coldquery_core::ErrorKind::SessionNotFound);
    let wrong = call("pg_query", json!({"action": "read", "sql": "SELECT 1 AS one"})).await.typed::<TxOutput>();
    assert!(wrong.unwrap_err().message().contains("TxOutput"));
}
