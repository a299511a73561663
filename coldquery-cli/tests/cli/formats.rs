//! `--format table|json|csv|markdown` on the same result, snapshotted (timings redacted).

use coldquery_tests::harness::test_db;

use crate::support::run;

/// A result with the awkward cases: NULL, a comma and a quote, a pipe, a newline, numbers,
/// JSON and a long value.
const SQL: &str = "SELECT * FROM (VALUES \
    (1, 'plain', 1.50::numeric, '{\"k\": [1, 2]}'::jsonb, true), \
    (22, 'comma, \"quoted\"', NULL, NULL, false), \
    (333, 'pipe | and\nnewline', -7.25, '[]'::jsonb, NULL)) AS t(id, label, amount, doc, flag) ORDER BY id";

async fn formatted(format: &str) -> String {
    let db = test_db().await;
    run(&db, &["--format", format, "query", "read", SQL]).await.expect(0).stdout
}

#[tokio::test]
async fn table_format() {
    insta::assert_snapshot!(formatted("table").await);
}

#[tokio::test]
async fn json_format() {
    let value: serde_json::Value = serde_json::from_str(&formatted("json").await).unwrap();
    insta::assert_json_snapshot!(value, {".duration_ms" => "[duration_ms]"});
}

#[tokio::test]
async fn csv_format() {
    insta::assert_snapshot!(formatted("csv").await);
}

#[tokio::test]
async fn markdown_format() {
    insta::assert_snapshot!(formatted("markdown").await);
}

#[tokio::test]
async fn write_results_and_non_query_results() {
    let db = test_db().await;
    crate::support::create_table(&db, "notes").await;
    let out =
        run(&db, &["query", "write", "INSERT INTO notes VALUES (1, 'a'), (2, 'b')", "--autocommit"]).await.expect(0);
    assert_eq!(out.stdout, "INSERT 0 2\n");
    let out = run(
        &db,
        &["--format", "csv", "query", "write", "DELETE FROM notes WHERE id = 1 RETURNING id, note", "--autocommit"],
    )
    .await
    .expect(0);
    assert_eq!(out.stdout, "id,note\n1,a\n");
    // A result that is not a table is JSON in the csv and markdown formats.
    let out = run(&db, &["--format", "markdown", "call", "pg_tx", r#"{"action": "list"}"#]).await.expect(0);
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(value["count"], 0);
}
