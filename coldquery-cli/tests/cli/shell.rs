//! `coldquery shell` driven through stdin (a pipe): a transaction a person opens, fills and
//! commits — seen from a side connection — statement boundaries from PostgreSQL's scanner,
//! and end of input rolling back what is still open. The terminal's own behaviour (line
//! editor, Ctrl-C, Ctrl-D, history, completion) is tested through a pseudo-terminal in `pty`.

use coldquery_tests::harness::test_db;

use crate::support::{count, create_table, run, run_stdin};

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
    assert_eq!(
        out.stdout, "BEGIN\nINSERT 0 1\nINSERT 0 1\n n\n---\n 2\n(1 row)\nCOMMIT\n",
        "the session sees its own rows"
    );
    // The prompt shows the session's state; a statement spanning lines gets the continuation
    // prompt; the session's details are notices, on stderr.
    assert!(out.stderr.contains("coldquery=> session cqs_"), "{}", out.stderr);
    assert!(out.stderr.contains("coldquery[tx:idle]=> "), "{}", out.stderr);
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
    assert!(out.stderr.contains("serializable"), "{}", out.stderr);
    assert!(
        out.stderr.contains("end of input: the open transaction (session cqs_")
            && out.stderr.contains("was rolled back"),
        "{}",
        out.stderr
    );
    assert_eq!(count(&db, "notes").await, 0);
}

#[tokio::test]
async fn statements_end_where_postgresqls_scanner_says() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    // Two statements on a line; a ';' inside a string, a quoted identifier, a comment and a
    // dollar-quoted function body; a transaction on one line.
    let script = "SELECT 1 AS a; SELECT 2 AS b;\n\
                  SELECT 'x;\n\
                  y' AS \"semi;colon\"; -- a comment; not a statement\n\
                  CREATE FUNCTION bump(n int) RETURNS int LANGUAGE plpgsql AS $body$\n\
                  DECLARE r int;\n\
                  BEGIN\n  r := n + 1;\n  RETURN r;\nEND\n$body$;\n\
                  CREATE FUNCTION two() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 2;\nEND;\n\
                  BEGIN; INSERT INTO notes VALUES (bump(1), 'two'); COMMIT;\n\
                  SELECT note FROM notes /* ; */ WHERE id = 2\n";
    let out = run_stdin(&db, &["--autocommit", "-A", "-t"], script).await.expect(0);
    assert_eq!(
        out.stdout, "1\n2\nx;\ny\nCREATE FUNCTION\nCREATE FUNCTION\nBEGIN\nINSERT 0 1\nCOMMIT\ntwo\n",
        "{}",
        out.stderr
    );
    assert_eq!(count(&db, "notes").await, 1);
    let two: i32 = db.client().await.query_one("SELECT two()", &[]).await.unwrap().get(0);
    assert_eq!(two, 2, "the SQL-standard body was created whole");
}

#[tokio::test]
async fn errors_savepoints_and_the_write_policy() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let script = "INSERT INTO notes VALUES (9, 'denied');\n\
                  SELECT *\n  FROM no_such_table;\n\
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
    // Without a transaction a write is denied, and the hint says how, in the shell's words.
    assert!(stderr.contains("error[WRITE_DENIED]"), "{stderr}");
    assert!(
        stderr.contains("hint: run BEGIN first (and COMMIT when done), or prefix the statement with \\a"),
        "{stderr}"
    );
    // A failed statement aborts the transaction, the prompt says so, ROLLBACK TO recovers it.
    assert!(stderr.contains("duplicate key"), "{stderr}");
    assert!(stderr.contains("coldquery[tx:aborted]=> "), "{stderr}");
    assert!(out.stdout.contains("SAVEPOINT\nROLLBACK\n"), "{}", out.stdout);
    assert!(out.stdout.contains("transaction_state"), "{}", out.stdout);
    // psql's LINE n: and a caret under the position, and a hint in the shell's words.
    assert!(stderr.contains("LINE 2:   FROM no_such_table\n               ^\n"), "{stderr}");
    assert!(stderr.contains("list tables with \\dt"), "{stderr}");
    assert!(out.stdout.contains("COMMIT\n"), "{}", out.stdout);
    assert!(stderr.contains("WARNING:  there is no transaction in progress"), "{stderr}");
    assert!(stderr.contains("begin: unknown option 'sideways'"), "{stderr}");
    assert!(!stderr.contains("pg_tx") && !stderr.contains("session_id"), "hints speak the shell's words: {stderr}");
    let client = db.client().await;
    let notes: Vec<String> =
        client.query("SELECT note FROM notes ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(notes, ["kept", "autocommitted"]);
}

#[tokio::test]
async fn help_backslash_commands_and_formats() {
    let db = test_db().await;
    create_table(&db, "notes").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE VIEW recent AS SELECT * FROM notes; CREATE INDEX notes_note ON notes (note)")
        .await
        .unwrap();
    let script = "\\?\n\\dt\n\\dv\n\\di notes*\n\\d recent\n\\d notes_note\n\\d notes_pkey\n\\d\n\\conninfo\n\\l\n\\nope\n\
                  \\pset null (null)\n\\x on\nSELECT NULL::text AS a, '' AS b;\n\\x off\n\
                  SELECT 'g' AS sent\n\\g\nSELECT 'gx' AS sent \\gx\n\
                  \\timing on\n\\pset format csv\nSELECT 1 AS a, 'x' AS b;\n\\q\nSELECT 'not run';\n";
    let out = run_stdin(&db, &["shell"], script).await.expect(1);
    let stdout = &out.stdout;
    assert!(stdout.starts_with("Statements end with ';'"), "{stdout}");
    for listed in [
        "List of tables\n schema | name  | kind  |",
        "List of views\n",
        "List of indexes\n",
        "List of relations\n",
        " notes ",
        " recent ",
        "notes_note",
        "View \"public.recent\"\n Column | Type",
        "View definition:\n",
        // \d on an index, as psql shows one.
        "Index \"public.notes_note\"\nCREATE INDEX notes_note ON public.notes USING btree (note)\nbtree, for table \"public.notes\"\n",
        "Index \"public.notes_pkey\"\n",
        "primary key, btree, for table \"public.notes\"\n",
        "You are connected to database \"cq_t_",
    ] {
        assert!(stdout.contains(listed), "{listed:?} in {stdout}");
    }
    assert!(stdout.contains("-[ RECORD 1 ]"), "{stdout}");
    assert!(stdout.contains("a | (null)\nb |\n"), "NULL is visible, the empty string is not: {stdout}");
    assert!(stdout.contains(" sent\n------\n g\n(1 row)\n"), "\\g sends the statement: {stdout}");
    assert!(stdout.contains("sent | gx\n"), "\\gx sends it expanded: {stdout}");
    assert!(stdout.ends_with("a,b\n1,x\n"), "{stdout}");
    assert!(!stdout.contains("not run"), "{stdout}");
    let stderr = &out.stderr;
    assert!(stderr.contains("invalid command \\nope; try \\? for help"), "{stderr}");
    assert!(stderr.contains("Expanded display is on.") && stderr.contains("Null display is \"(null)\"."), "{stderr}");
    assert!(stderr.contains("Time: ") && stderr.contains(" ms\n"), "timing is a notice on stderr: {stderr}");
}

#[tokio::test]
async fn statements_that_store_rows_are_tagged_as_psql_tags_them() {
    let db = test_db().await;
    let sql = "CREATE TABLE c AS SELECT g FROM generate_series(1, 3) g; SELECT * INTO d FROM c WHERE g > 1;
               INSERT INTO c VALUES (4), (5); DROP TABLE d";
    let out = run(&db, &["--autocommit", "-c", sql]).await.expect(0);
    assert_eq!(out.stdout, "SELECT 3\nSELECT 2\nINSERT 0 2\nDROP TABLE\n");
}

#[tokio::test]
async fn describe_shows_partitioning_as_psql_does() {
    let db = test_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE parted (id int, d date) PARTITION BY RANGE (d);
             CREATE TABLE parted_2026 PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
             CREATE TABLE parted_2027 PARTITION OF parted FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');",
        )
        .await
        .unwrap();
    let out = run_stdin(&db, &["shell"], "\\d parted\n\\d parted_2027\n").await.expect(0);
    assert!(out.stdout.contains("Partitioned table \"public.parted\"\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "Partition key: RANGE (d)\nPartitions: public.parted_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'),\n            public.parted_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Partition of: public.parted FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')\n"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn watch_runs_the_statement_count_times_and_stops_at_a_failure() {
    let db = test_db().await;
    let script = "SELECT 1 AS one;\n\\watch i=0.05 c=3\nSELECT 2 AS two\n\\watch 0.05 c=2\n\\watch c=0\n\
                  SELECT nope;\n\\watch 0.05 c=5\n";
    let out = run_stdin(&db, &["-At", "shell"], script).await.expect(1);
    assert_eq!(out.stdout, "1\n1\n1\n1\n2\n2\n", "the statement, then 3 runs; the typed one 2 runs");
    assert!(out.stderr.contains("\\watch: invalid count \"0\""), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("column \"nope\" does not exist").count(),
        2,
        "a failure ends the watch: {}",
        out.stderr
    );
}
