//! Error kinds do not depend on the language of PostgreSQL's messages: one table of statements,
//! each failing in a known way, runs through the tools against a database whose `lc_messages`
//! is `C` (English) and then German, and every outcome's kind is the same and the one claimed.
//! German changes the words and the quotation marks (`»…«`) around quoted values, so a kind,
//! a retry or a reworded message read from English text comes out differently there.
//!
//! The German locale must exist on the server's machine (`cargo xtask ci` and `.ci/run`
//! generate it: Debian's `locales` package, `localedef -i de_DE -f UTF-8 de_DE.UTF-8`).

use std::collections::BTreeSet;

use coldquery_tests::harness::{TestDb, quote_ident, test_db};
use coldquery_tools::{Caller, ToolConfig, Tools};
use serde_json::{Value, json};

use crate::support::{call, caller, code, options, sessionless_read, tools};

const GERMAN: &str = "de_DE.UTF-8";

/// The kinds this test covers, each decided by the SQLSTATE or by what ColdQuery did.
const COVERED: [&str; 8] = [
    "ok",
    "DATABASE_ERROR",
    "INVALID_ARGUMENT",
    "STATEMENT_NOT_ALLOWED",
    "READ_ONLY_VIOLATION",
    "SESSION_ABORTED",
    "CANCELLED",
    "TIMEOUT",
];

/// One case's outcome: the code (or "ok"), the SQLSTATE and the message.
#[derive(Debug)]
struct Outcome {
    case: &'static str,
    code: String,
    sqlstate: Option<String>,
    message: String,
}

impl Outcome {
    fn of(case: &'static str, value: &Value) -> Outcome {
        Outcome {
            case,
            code: code(value),
            sqlstate: value["error"]["sqlstate"].as_str().map(str::to_owned),
            message: value["error"]["message"].as_str().unwrap_or_default().to_owned(),
        }
    }
}

#[tokio::test]
async fn error_kinds_are_the_same_whatever_the_language_of_the_servers_messages() {
    let english = outcomes("C").await;
    let german = outcomes(GERMAN).await;
    let expected: &[(&str, &str, Option<&str>)] = &[
        ("unique violation", "DATABASE_ERROR", Some("23505")),
        ("fewer values than placeholders (autocommit bind)", "INVALID_ARGUMENT", Some("08P01")),
        ("JSON arrays for array parameters (autocommit bind)", "ok", None),
        ("JSON array for an integer parameter (autocommit bind)", "DATABASE_ERROR", Some("22P02")),
        ("user-defined function in a read (catalog guard)", "STATEMENT_NOT_ALLOWED", None),
        ("write in a read-only session", "READ_ONLY_VIOLATION", Some("25006")),
        // ColdQuery knows the session failed and sends nothing more.
        ("statement after a failed one in a session", "SESSION_ABORTED", None),
        ("statement_timeout set on the server", "CANCELLED", Some("57014")),
        ("ColdQuery's own timeout", "TIMEOUT", Some("57014")),
    ];
    let kinds = |outcomes: &[Outcome]| -> Vec<(&'static str, String, Option<String>)> {
        outcomes.iter().map(|o| (o.case, o.code.clone(), o.sqlstate.clone())).collect()
    };
    assert_eq!(kinds(&german), kinds(&english), "German {german:#?}\nEnglish {english:#?}");
    let seen: Vec<(&str, &str, Option<&str>)> =
        english.iter().map(|o| (o.case, o.code.as_str(), o.sqlstate.as_deref())).collect();
    assert_eq!(seen, expected, "{english:#?}");
    let covered: BTreeSet<&str> = expected.iter().map(|(_, code, _)| *code).collect();
    assert_eq!(covered, COVERED.into_iter().collect(), "the kinds this test claims to cover");

    // The setting took effect: the server's own messages differ, ColdQuery's do not.
    let by_case = |outcomes: &[Outcome], case: &str| -> String {
        outcomes.iter().find(|o| o.case == case).map(|o| o.message.clone()).unwrap()
    };
    for case in ["unique violation", "fewer values than placeholders (autocommit bind)", "write in a read-only session"]
    {
        assert_ne!(by_case(&english, case), by_case(&german, case), "{case}: the server's message is translated");
    }
    let refused = "user-defined function in a read (catalog guard)";
    assert_eq!(by_case(&english, refused), by_case(&german, refused));
    assert_eq!(
        by_case(&german, refused),
        "function public.my_fn() is a user-defined function that is not in --allow-functions"
    );
    // The value the caller gave is what the report quotes, in either language.
    let integer = "JSON array for an integer parameter (autocommit bind)";
    assert!(by_case(&german, integer).contains("»[1,2]«"), "{german:#?}");
    assert!(by_case(&english, integer).contains("\"[1,2]\""), "{english:#?}");
}

/// Runs every case on a fresh database whose `lc_messages` is `lc_messages`.
async fn outcomes(lc_messages: &str) -> Vec<Outcome> {
    let db = test_db().await;
    set_lc_messages(&db, lc_messages).await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE k (id int PRIMARY KEY, nums int[], docs jsonb[]);
         INSERT INTO k VALUES (1);
         CREATE FUNCTION my_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';",
    )
    .await
    .unwrap();
    // Fresh connections only: the pool is made after the setting. Without a lock timeout an
    // autocommit write is one unnamed statement, whose parameters the server types at bind.
    let config = ToolConfig { lock_timeout: None, ..ToolConfig::default() };
    let (tools, _database) = tools(&db, &options(), config, false).await;
    let me = caller("locale");
    let write = |sql: &str, params: Value| json!({"action": "write", "sql": sql, "params": params, "autocommit": true});
    let mut out = Vec::new();

    let value = call(&tools, &me, "pg_query", write("INSERT INTO k VALUES (1)", json!([]))).await;
    out.push(Outcome::of("unique violation", &value));
    let value = call(&tools, &me, "pg_query", write("INSERT INTO k VALUES ($1, $2)", json!([2]))).await;
    out.push(Outcome::of("fewer values than placeholders (autocommit bind)", &value));
    let value =
        call(&tools, &me, "pg_query", write("INSERT INTO k VALUES (4, $1, $2)", json!([[1, 2], [{"a": 1}, [1]]])))
            .await;
    out.push(Outcome::of("JSON arrays for array parameters (autocommit bind)", &value));
    let value = call(&tools, &me, "pg_query", write("INSERT INTO k VALUES ($1)", json!([[1, 2]]))).await;
    out.push(Outcome::of("JSON array for an integer parameter (autocommit bind)", &value));
    let value = sessionless_read(&tools, &me, "SELECT my_fn()").await;
    out.push(Outcome::of("user-defined function in a read (catalog guard)", &value));

    let read_only = json!({"action": "begin", "read_only": true});
    let value = in_new_session(&tools, &me, read_only, None, "INSERT INTO k VALUES (5)").await;
    out.push(Outcome::of("write in a read-only session", &value));
    let failing = Some(("INSERT INTO k VALUES (1)", "DATABASE_ERROR"));
    let value = in_new_session(&tools, &me, json!({"action": "begin"}), failing, "INSERT INTO k VALUES (6)").await;
    out.push(Outcome::of("statement after a failed one in a session", &value));
    let set = Some(("SET LOCAL statement_timeout = '100ms'", "ok"));
    let value = in_new_session(&tools, &me, json!({"action": "begin"}), set, "SELECT pg_sleep(5)").await;
    out.push(Outcome::of("statement_timeout set on the server", &value));

    let read = json!({"action": "read", "sql": "SELECT pg_sleep(5)", "timeout_ms": 200});
    let value = call(&tools, &me, "pg_query", read).await;
    out.push(Outcome::of("ColdQuery's own timeout", &value));
    out
}

/// Makes new connections to `db` speak `lc_messages` (a superuser setting).
async fn set_lc_messages(db: &TestDb, lc_messages: &str) {
    let admin = db.client().await;
    let sql = format!("ALTER DATABASE {} SET lc_messages = '{lc_messages}'", quote_ident(&db.name));
    if let Err(e) = admin.batch_execute(&sql).await {
        panic!(
            "the server cannot set lc_messages = '{lc_messages}': {e}\n\
             Generate the locale on the server's machine (Debian: apt-get install locales; \
             localedef -i de_DE -f UTF-8 de_DE.UTF-8), as `cargo xtask ci` does."
        );
    }
}

/// Begins a session with `begin`, runs `before` (expecting its code) and then `sql` in it, and
/// rolls it back; returns what `sql` gave.
async fn in_new_session(tools: &Tools, me: &Caller, begin: Value, before: Option<(&str, &str)>, sql: &str) -> Value {
    let begun = call(tools, me, "pg_tx", begin).await;
    let session = begun["session_id"].as_str().unwrap_or_else(|| panic!("begin: {begun}")).to_owned();
    let write = |sql: &str| json!({"action": "write", "sql": sql, "session_id": session});
    if let Some((sql, expected)) = before {
        let out = call(tools, me, "pg_query", write(sql)).await;
        assert_eq!(code(&out), expected, "{sql}: {out}");
    }
    let value = call(tools, me, "pg_query", write(sql)).await;
    let out = call(tools, me, "pg_tx", json!({"action": "rollback", "session_id": session})).await;
    assert_eq!(code(&out), "ok", "{out}");
    value
}
