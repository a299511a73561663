//! `coldquery shell` driven through stdin: a transaction a person opens, fills and commits —
//! seen from a side connection — and end of input rolling back what is still open.

use coldquery_tests::harness::test_db;

use crate::support::{count, create_table, run_stdin};

#[tokio::test]
async fn begin_write_commit_is_seen_by_a_side_connection() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let script = "begin\n\
                  INSERT INTO notes VALUES (1, 'one');\n\
                  INSERT INTO notes\n  VALUES (2, 'two');\n\
                  SELECT count(*) AS n FROM notes;\n\
                  commit\n";
    let out = run_stdin(&db, &["shell", "--prompt", "always"], script).await.expect(0);
    assert!(out.stdout.starts_with("BEGIN (session cqs_"), "{}", out.stdout);
    assert!(out.stdout.contains("INSERT 1\n"), "{}", out.stdout);
    assert!(out.stdout.contains(" n\n---\n 2\n(1 row)\n"), "the session sees its own rows: {}", out.stdout);
    assert!(out.stdout.ends_with("COMMIT\n"), "{}", out.stdout);
    // The prompt shows the session's state; a statement spanning lines gets the continuation prompt.
    assert!(out.stderr.contains("coldquery> coldquery[tx:idle]> "), "{}", out.stderr);
    assert!(out.stderr.contains("coldquery[tx:idle]-> "), "{}", out.stderr);
    assert!(!out.stderr.contains("rolled back"), "{}", out.stderr);
    assert_eq!(count(&db, "notes").await, 2);
}

#[tokio::test]
async fn end_of_input_rolls_back_the_open_transaction() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let script = "BEGIN ISOLATION LEVEL SERIALIZABLE;\nINSERT INTO notes VALUES (1, 'lost');\n";
    let out = run_stdin(&db, &["shell"], script).await.expect(0);
    assert!(out.stdout.contains("serializable"), "{}", out.stdout);
    assert!(
        out.stderr.contains("end of input: the open transaction (session cqs_")
            && out.stderr.contains("was rolled back"),
        "{}",
        out.stderr
    );
    assert_eq!(count(&db, "notes").await, 0);
}

#[tokio::test]
async fn errors_savepoints_and_the_write_policy() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let script = "INSERT INTO notes VALUES (9, 'denied');\n\
                  begin\n\
                  INSERT INTO notes VALUES (1, 'kept');\n\
                  savepoint before_error\n\
                  INSERT INTO notes VALUES (1, 'duplicate');\n\
                  rollback to no_such_savepoint\n\
                  rollback to before_error\n\
                  status\n\
                  commit\n\
                  \\a INSERT INTO notes VALUES (2, 'autocommitted');\n\
                  commit\n\
                  begin sideways\n";
    let out = run_stdin(&db, &["shell", "--prompt", "always"], script).await.expect(1);
    let stderr = &out.stderr;
    // Without a transaction a write is denied, and the shell says how to proceed.
    assert!(stderr.contains("error[WRITE_DENIED]"), "{stderr}");
    assert!(stderr.contains("run `begin` first"), "{stderr}");
    // A failed statement aborts the transaction, the prompt says so, rollback to recovers it.
    assert!(stderr.contains("duplicate key"), "{stderr}");
    assert!(stderr.contains("coldquery[tx:aborted]> "), "{stderr}");
    assert!(out.stdout.contains("ROLLBACK TO before_error\n"), "{}", out.stdout);
    assert!(out.stdout.contains("transaction_state"), "{}", out.stdout);
    assert!(out.stdout.contains("COMMIT\n"), "{}", out.stdout);
    assert!(stderr.contains("no transaction is open; nothing to commit"), "{stderr}");
    assert!(stderr.contains("begin: unknown option 'sideways'"), "{stderr}");
    let client = db.client().await;
    let notes: Vec<String> =
        client.query("SELECT note FROM notes ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(notes, ["kept", "autocommitted"]);
}

#[tokio::test]
async fn help_and_formats() {
    let db = test_db().await;
    let out = run_stdin(&db, &["shell"], "help\n\\format csv\nSELECT 1 AS a, 'x' AS b;\n\\q\nSELECT 'not run';\n")
        .await
        .expect(0);
    assert!(out.stdout.starts_with("Commands"), "{}", out.stdout);
    assert!(out.stdout.ends_with("a,b\r\n1,x\r\n"), "{}", out.stdout);
    assert!(!out.stdout.contains("not run"), "{}", out.stdout);
    assert_eq!(out.stderr, "", "no prompt through a pipe by default");
}
