//! What keeps an agent's writes from doing more harm than it meant: preview, then confirm (a
//! destructive write without a token is refused and changes nothing; a preview reports what
//! the write would do and changes nothing; its token confirms exactly that call, once), and
//! lock-safe DDL (a write waiting behind another transaction gives up after the lock timeout
//! and names the blocker). Every effect is checked from a side connection.

use coldquery_core::SessionId;
use coldquery_tests::harness::test_db;
use coldquery_tools::{ConfirmWrites, ToolConfig};
use serde_json::{Value, json};

use crate::support::{autocommit_write, call, caller, code, count, options, sessionless_read, tools};

fn config() -> ToolConfig {
    ToolConfig { confirm_writes: ConfirmWrites::Destructive, ..ToolConfig::default() }
}

#[tokio::test]
async fn destructive_writes_need_a_preview_and_its_token_confirms_exactly_that_call_once() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, kind text);
         INSERT INTO items SELECT g, CASE WHEN g % 3 = 0 THEN 'old' ELSE 'new' END FROM generate_series(1, 30) g;
         CREATE INDEX items_kind ON items (kind);",
    )
    .await
    .unwrap();
    let (tools, _database) = tools(&db, &options(), config(), false).await;
    let me = caller("alice");
    let items = |sql: &'static str| {
        let side = &side;
        async move { count(side, sql).await }
    };

    // Without a token: refused, nothing sent.
    let delete_all = json!({"action": "write", "sql": "DELETE FROM items", "autocommit": true});
    let refused = call(&tools, &me, "pg_query", delete_all.clone()).await;
    assert_eq!(code(&refused), "WRITE_DENIED", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("DELETE without a WHERE clause"), "{refused}");
    assert!(refused["error"]["hint"].as_str().unwrap().contains("preview: true"), "{refused}");
    assert_eq!(items("SELECT count(*) FROM items").await, 30);

    // A targeted write needs none.
    let one = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": "DELETE FROM items WHERE id = $1", "params": [30], "autocommit": true}),
    )
    .await;
    assert_eq!(one["rows_affected"], 1, "{one}");

    // The preview: the real row count, the plan, the locks; nothing changes.
    let preview = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": "DELETE FROM items", "autocommit": true, "preview": true}),
    )
    .await;
    assert_eq!(code(&preview), "ok", "{preview}");
    assert_eq!(preview["executed"], true);
    assert_eq!(preview["statements"][0]["command"], "DELETE");
    assert_eq!(preview["statements"][0]["rows_affected"], 29, "{preview}");
    assert_eq!(preview["statements"][0]["destructive"], "DELETE without a WHERE clause");
    assert_eq!(preview["statements"][0]["plan"]["node"], "ModifyTable", "{preview}");
    let locks = preview["locks"].as_array().unwrap();
    assert!(locks.iter().any(|l| l["relation"] == "items" && l["mode"] == "RowExclusiveLock"), "{preview}");
    assert_eq!(preview["objects"], json!({"created": [], "altered": [], "dropped": []}), "{preview}");
    assert_eq!(items("SELECT count(*) FROM items").await, 29, "the preview rolled back");
    let token = preview["confirm"]["token"].as_str().unwrap().to_owned();

    // The token is bound to the statement, the parameters, the caller and the session.
    let with = |mut args: Value, token: &str| {
        args["confirm"] = json!(token);
        args
    };
    let other_sql = json!({"action": "write", "sql": "DELETE FROM items ", "autocommit": true});
    assert_eq!(code(&call(&tools, &me, "pg_query", with(other_sql, &token)).await), "WRITE_DENIED");
    let bob = caller("bob");
    assert_eq!(code(&call(&tools, &bob, "pg_query", with(delete_all.clone(), &token)).await), "WRITE_DENIED");
    // Change the last character to a different one (appending a fixed character would equal the real token
    // whenever the token already ends with it).
    let last = if token.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    assert_ne!(forged, token);
    assert_eq!(code(&call(&tools, &me, "pg_query", with(delete_all.clone(), &forged)).await), "WRITE_DENIED");
    assert_eq!(items("SELECT count(*) FROM items").await, 29);

    // The right call runs once.
    let done = call(&tools, &me, "pg_query", with(delete_all.clone(), &token)).await;
    assert_eq!(done["rows_affected"], 29, "{done}");
    assert_eq!(items("SELECT count(*) FROM items").await, 0);
    let again = call(&tools, &me, "pg_query", with(delete_all, &token)).await;
    assert_eq!(code(&again), "WRITE_DENIED", "{again}");
    assert!(again["error"]["message"].as_str().unwrap().contains("already used"), "{again}");

    // preview and confirm together is a mistake, not a shortcut.
    let both = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": "DELETE FROM items", "autocommit": true, "preview": true, "confirm": "x"}),
    )
    .await;
    assert_eq!(code(&both), "INVALID_ARGUMENT", "{both}");
}

#[tokio::test]
async fn ddl_previews_name_the_objects_and_sessions_stay_as_they_were() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE parent (id int PRIMARY KEY, note text);
         CREATE VIEW parent_notes AS SELECT note FROM parent;
         INSERT INTO parent VALUES (1, 'a'), (2, 'b');",
    )
    .await
    .unwrap();
    let (tools, _database) = tools(&db, &options(), config(), false).await;
    let me = caller("alice");

    // DROP … CASCADE shows what goes with it.
    let drop = json!({"action": "drop", "sql": "DROP TABLE parent CASCADE", "autocommit": true});
    assert_eq!(code(&call(&tools, &me, "pg_schema", drop.clone()).await), "WRITE_DENIED");
    let mut previewed = drop.clone();
    previewed["preview"] = json!(true);
    let preview = call(&tools, &me, "pg_schema", previewed).await;
    assert_eq!(code(&preview), "ok", "{preview}");
    let dropped: Vec<&str> =
        preview["objects"]["dropped"].as_array().unwrap().iter().filter_map(|o| o["name"].as_str()).collect();
    assert!(
        dropped.contains(&"parent") && dropped.contains(&"parent_notes") && dropped.contains(&"parent_pkey"),
        "{preview}"
    );
    assert!(preview["locks"].as_array().unwrap().iter().any(|l| l["mode"] == "AccessExclusiveLock"), "{preview}");
    assert_eq!(count(&side, "SELECT count(*) FROM pg_class WHERE relname IN ('parent', 'parent_notes')").await, 2);

    // A creating statement needs no token; its preview lists what it creates.
    let create = call(&tools, &me, "pg_schema", json!({"action": "create", "sql": "CREATE TABLE child (id int REFERENCES parent)", "autocommit": true, "preview": true})).await;
    let created: Vec<&str> =
        create["objects"]["created"].as_array().unwrap().iter().filter_map(|o| o["name"].as_str()).collect();
    assert!(created.contains(&"child"), "{create}");
    assert!(create["objects"]["altered"].as_array().unwrap().iter().any(|o| o["name"] == "parent"), "{create}");
    assert_eq!(create["needs_confirmation"], Value::Null);
    assert_eq!(count(&side, "SELECT count(*) FROM pg_class WHERE relname = 'child'").await, 0);

    // In a session: the preview runs under a savepoint, and the session goes on as before.
    let begun = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
    let session = begun["session_id"].as_str().unwrap().to_owned();
    let update = json!({"action": "write", "sql": "UPDATE parent SET note = 'z'", "session_id": session});
    let mut previewed = update.clone();
    previewed["preview"] = json!(true);
    let preview = call(&tools, &me, "pg_query", previewed).await;
    assert_eq!(preview["statements"][0]["rows_affected"], 2, "{preview}");
    let seen = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT count(*) AS n FROM parent WHERE note = 'z'", "session_id": session}),
    )
    .await;
    assert_eq!(seen["rows"][0]["n"], 0, "the savepoint was rolled back: {seen}");
    // EXPLAIN ANALYZE would run a destructive write in the session without a confirmation.
    let analyzed = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "explain", "sql": "DELETE FROM parent", "analyze": true, "session_id": session}),
    )
    .await;
    assert_eq!(code(&analyzed), "WRITE_DENIED", "{analyzed}");
    // A failing preview leaves the session usable too.
    let failing = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": "UPDATE parent SET id = 1", "session_id": session, "preview": true}),
    )
    .await;
    assert_eq!(code(&failing), "DATABASE_ERROR", "{failing}");
    assert!(failing["error"].get("operation_index").is_none(), "{failing}");
    // The token is bound to the session: it confirms the write there, once.
    let mut confirmed = update.clone();
    confirmed["confirm"] = preview["confirm"]["token"].clone();
    let done = call(&tools, &me, "pg_query", confirmed).await;
    assert_eq!(done["rows_affected"], 2, "{done}");
    let committed = call(&tools, &me, "pg_tx", json!({"action": "commit", "session_id": session})).await;
    assert_eq!(code(&committed), "ok", "{committed}");
    assert_eq!(count(&side, "SELECT count(*) FROM parent WHERE note = 'z'").await, 2);
    let _ = SessionId::new(session);
}

#[tokio::test]
async fn a_write_behind_an_open_transaction_gives_up_after_the_lock_timeout_and_names_the_blocker() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE queue (id int PRIMARY KEY); INSERT INTO queue VALUES (1)").await.unwrap();
    let config = ToolConfig { lock_timeout: Some(std::time::Duration::from_millis(300)), ..ToolConfig::default() };
    let (tools, _database) = tools(&db, &options(), config, false).await;
    let me = caller("alice");

    // A long transaction elsewhere holds a lock on the table.
    let (blocker, blocker_pid) = db.blocker("queue").await;

    for args in [
        json!({"action": "write", "sql": "ALTER TABLE queue ADD COLUMN note text", "autocommit": true}),
        json!({"action": "write", "sql": "LOCK TABLE queue IN ACCESS EXCLUSIVE MODE", "autocommit": true}),
    ] {
        let started = std::time::Instant::now();
        let failed = call(&tools, &me, "pg_query", args.clone()).await;
        let waited = started.elapsed();
        assert_eq!(failed["error"]["sqlstate"], "55P03", "{args}: {failed}");
        assert!(waited < std::time::Duration::from_secs(5), "{args}: waited {waited:?}");
        let hint = failed["error"]["hint"].as_str().unwrap();
        assert!(hint.contains(&format!("pid {blocker_pid}")) && hint.contains("idle in transaction"), "{hint}");
    }
    // Structured DDL too, and a session's statement: the session is then aborted, not stuck.
    let ddl = call(
        &tools,
        &me,
        "pg_schema",
        json!({"action": "alter", "sql": "ALTER TABLE queue ADD COLUMN note text", "autocommit": true}),
    )
    .await;
    assert!(ddl["error"]["hint"].as_str().unwrap_or_default().contains(&format!("pid {blocker_pid}")), "{ddl}");
    let begun = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
    let session = begun["session_id"].as_str().unwrap().to_owned();
    let in_session = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": "ALTER TABLE queue ADD COLUMN note text", "session_id": session}),
    )
    .await;
    assert_eq!(in_session["error"]["sqlstate"], "55P03", "{in_session}");
    let rolled_back = call(&tools, &me, "pg_tx", json!({"action": "rollback", "session_id": session})).await;
    assert_eq!(code(&rolled_back), "ok", "{rolled_back}");

    // Nothing changed, and once the blocker ends the write goes through.
    assert_eq!(count(&side, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'queue'").await, 1);
    blocker.batch_execute("COMMIT").await.unwrap();
    let done = autocommit_write(&tools, &me, "ALTER TABLE queue ADD COLUMN note text").await;
    assert_eq!(code(&done), "ok", "{done}");
    assert_eq!(count(&side, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'queue'").await, 2);
    // The lock timeout was the transaction's own: the pooled connection keeps the server's.
    let setting = sessionless_read(&tools, &me, "SHOW lock_timeout").await;
    assert_eq!(setting["rows"][0]["lock_timeout"], "0", "{setting}");
}

#[tokio::test]
async fn the_byte_budget_bounds_the_whole_message_and_truncation_names_its_limit() {
    let db = test_db().await;
    let budget = 64 * 1024;
    let config = ToolConfig { max_result_bytes: budget, ..ToolConfig::default() };
    let (tools, _database) = tools(&db, &options(), config, false).await;
    let me = caller("alice");
    // Wide rows full of characters JSON escapes: the message costs far more than the raw data.
    let wide = sessionless_read(
        &tools,
        &me,
        "SELECT g AS id, repeat('\"q\" \\\\ ', 40) AS quoted FROM generate_series(1, 400) g",
    )
    .await;
    assert_eq!(wide["truncated"], true, "{}", wide["hint"]);
    assert_eq!(wide["truncated_by"], "max_result_bytes");
    assert!(wide["hint"].as_str().unwrap().contains("byte budget"), "{}", wide["hint"]);
    let text = wide.to_string();
    let message = text.len() + serde_json::to_string(&text).unwrap().len();
    assert!(message <= budget, "the message would be {message} bytes for a budget of {budget}");
    assert!(wide["row_count"].as_u64().unwrap() > 10, "{}", wide["row_count"]);
    assert_eq!(wide["rows"].as_array().unwrap().len() as u64, wide["row_count"].as_u64().unwrap());
    coldquery_tests::figures::record(
        "message_budget",
        json!({"budget_bytes": budget, "message_bytes": message, "rows_kept": wide["row_count"]}),
    );
    let long = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT g FROM generate_series(1, 50) g", "max_rows": 10}),
    )
    .await;
    assert_eq!(long["truncated_by"], "max_rows", "{long}");
    assert!(long["hint"].as_str().unwrap().contains("max_rows (10)"), "{long}");
    let whole = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT g FROM generate_series(1, 10) g", "max_rows": 10}),
    )
    .await;
    assert_eq!(whole["truncated"], false, "{whole}");
    assert!(whole.get("truncated_by").is_none(), "{whole}");
    // Rows far wider than the budget: the fetch stops when the budget is spent (the statement is
    // cancelled), it does not transfer the 5 GB up to the row cap and throw them away.
    let started = std::time::Instant::now();
    let huge = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT repeat('x', 1000000) AS mb FROM generate_series(1, 5000) g", "max_rows": 5000}),
    )
    .await;
    assert_eq!(huge["truncated_by"], "max_result_bytes", "{}", huge["hint"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    let after = sessionless_read(&tools, &me, "SELECT 1 AS one").await;
    assert_eq!(after["rows"][0]["one"], 1, "the pool serves the next call: {after}");
}

#[tokio::test]
async fn a_session_acts_as_an_allowed_role_and_row_level_security_filters_its_rows() {
    let db = test_db().await;
    let side = db.client().await;
    let suffix = db.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let agent = format!("agent_{suffix}");
    side.batch_execute(&format!(
        "CREATE ROLE {agent} NOLOGIN;
         CREATE TABLE notes (id int PRIMARY KEY, tenant text, body text);
         INSERT INTO notes VALUES (1, 'acme', 'a'), (2, 'acme', 'b'), (3, 'globex', 'c');
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_tenant ON notes USING (tenant = current_setting('request.jwt.claims', true)::json->>'tenant');
         GRANT SELECT, UPDATE ON notes TO {agent};"
    ))
    .await
    .unwrap();
    let config = ToolConfig { allowed_roles: vec![agent.clone()], ..ToolConfig::default() };
    let (tools, _database) = tools(&db, &options(), config, false).await;
    let me = caller("alice");

    // A role the server does not allow is refused, and so is a setting outside request.*.
    let refused = call(&tools, &me, "pg_tx", json!({"action": "begin", "role": "postgres"})).await;
    assert_eq!(code(&refused), "INVALID_ARGUMENT", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains(&agent), "{refused}");
    let odd =
        call(&tools, &me, "pg_tx", json!({"action": "begin", "role": agent, "settings": {"search_path": "evil"}}))
            .await;
    assert_eq!(code(&odd), "INVALID_ARGUMENT", "{odd}");

    let begun = call(
        &tools,
        &me,
        "pg_tx",
        json!({"action": "begin", "role": agent, "settings": {"request.jwt.claims": {"tenant": "acme"}}}),
    )
    .await;
    assert_eq!(begun["role"], json!(agent), "{begun}");
    let session = begun["session_id"].as_str().unwrap().to_owned();
    let read = |sql: &'static str| {
        let (tools, me, session) = (&tools, &me, &session);
        async move { call(tools, me, "pg_query", json!({"action": "read", "sql": sql, "session_id": session})).await }
    };
    let who = read("SELECT current_user AS who, count(*) AS n FROM notes").await;
    assert_eq!(who["rows"][0]["who"], json!(agent), "{who}");
    assert_eq!(who["rows"][0]["n"], 2, "the policy shows acme's rows only: {who}");
    let updated = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": "UPDATE notes SET body = 'x' WHERE id > 0", "session_id": session}),
    )
    .await;
    assert_eq!(updated["rows_affected"], 2, "{updated}");

    // The role cannot be changed inside the session, however it is asked.
    for sql in [
        "SET ROLE postgres",
        "SET LOCAL ROLE postgres",
        "RESET ROLE",
        "SET SESSION AUTHORIZATION DEFAULT",
        "SELECT set_config('role', 'postgres', true)",
        "SELECT set_config('ROLE', 'none', true)",
    ] {
        let changed =
            call(&tools, &me, "pg_query", json!({"action": "write", "sql": sql, "session_id": session})).await;
        assert_eq!(code(&changed), "STATEMENT_NOT_ALLOWED", "{sql}: {changed}");
    }
    let setting = call(
        &tools,
        &me,
        "pg_admin",
        json!({"action": "settings", "name": "role", "value": "postgres", "session_id": session}),
    )
    .await;
    assert_eq!(code(&setting), "STATEMENT_NOT_ALLOWED", "{setting}");
    let still = read("SELECT current_user AS who FROM notes LIMIT 1").await;
    assert_eq!(still["rows"][0]["who"], json!(agent), "{still}");
    let committed = call(&tools, &me, "pg_tx", json!({"action": "commit", "session_id": session})).await;
    assert_eq!(code(&committed), "ok", "{committed}");
    assert_eq!(count(&side, "SELECT count(*) FROM notes WHERE body = 'x'").await, 2, "globex's row was not touched");

    // The next session on the same pooled connection is back to the login role.
    let next = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
    let next_id = next["session_id"].as_str().unwrap().to_owned();
    let login = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT current_user AS who", "session_id": next_id}),
    )
    .await;
    assert_ne!(login["rows"][0]["who"], json!(agent), "{login}");
    let _ = call(&tools, &me, "pg_tx", json!({"action": "rollback", "session_id": next_id})).await;
    side.batch_execute(&format!("DROP OWNED BY {agent}; DROP ROLE {agent}")).await.unwrap();
}

#[tokio::test]
async fn an_autocommit_write_touching_more_rows_than_allowed_is_rolled_back_until_confirmed() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE stock (id int PRIMARY KEY, qty int); INSERT INTO stock SELECT g, 1 FROM generate_series(1, 30) g",
    )
    .await
    .unwrap();
    let config = ToolConfig { confirm_rows: Some(10), ..config() };
    let (tools, _database) = tools(&db, &options(), config, false).await;
    let me = caller("alice");
    // Ten rows or fewer: it runs.
    let few = json!({"action": "write", "sql": "UPDATE stock SET qty = 2 WHERE id <= 10", "autocommit": true});
    assert_eq!(call(&tools, &me, "pg_query", few).await["rows_affected"], 10);
    // More: rolled back, with the way forward.
    let many = json!({"action": "write", "sql": "UPDATE stock SET qty = 3 WHERE id <= 20", "autocommit": true});
    let refused = call(&tools, &me, "pg_query", many.clone()).await;
    assert_eq!(code(&refused), "WRITE_DENIED", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("affected 20 rows"), "{refused}");
    assert!(refused["error"]["hint"].as_str().unwrap().contains("preview: true"), "{refused}");
    assert_eq!(count(&side, "SELECT count(*) FROM stock WHERE qty = 3").await, 0, "nothing was committed");
    // In a batch too, naming the operation.
    let batch = json!({"action": "transaction", "autocommit": true, "operations": [
        {"sql": "UPDATE stock SET qty = 4 WHERE id = 1"}, {"sql": "DELETE FROM stock WHERE id > 5"}]});
    let refused = call(&tools, &me, "pg_query", batch).await;
    assert_eq!(code(&refused), "WRITE_DENIED", "{refused}");
    assert_eq!(refused["error"]["operation_index"], 1, "{refused}");
    assert_eq!(count(&side, "SELECT count(*) FROM stock").await, 30);
    // The preview says it needs a confirmation, and its token lets it through.
    let mut previewed = many.clone();
    previewed["preview"] = json!(true);
    let preview = call(&tools, &me, "pg_query", previewed).await;
    assert!(preview["needs_confirmation"].as_str().unwrap().contains("20 rows"), "{preview}");
    let mut confirmed = many;
    confirmed["confirm"] = preview["confirm"]["token"].clone();
    assert_eq!(call(&tools, &me, "pg_query", confirmed).await["rows_affected"], 20);
    assert_eq!(count(&side, "SELECT count(*) FROM stock WHERE qty = 3").await, 20);
}
