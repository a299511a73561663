//! Fuzzing in CI, as proptest: the classifier and every tool's argument parsing
//! are fed random and hostile input over the fakes; each call must end with a result whose
//! error code is one of SPEC §2's, never a panic or a hang. Case counts are sized for CI
//! (`PROPTEST_CASES` raises them).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::support::{Fixture, code};

/// SPEC §2's codes, plus "ok".
const CODES: &[&str] = &[
    "ok",
    "INVALID_ARGUMENT",
    "WRITE_DENIED",
    "READ_ONLY_VIOLATION",
    "STATEMENT_NOT_ALLOWED",
    "SESSION_NOT_FOUND",
    "SESSION_LIMIT",
    "SESSION_BUSY",
    "SESSION_ABORTED",
    "TIMEOUT",
    "CANCELLED",
    "COMMIT_FAILED",
    "COMMIT_OUTCOME_UNKNOWN",
    "DATABASE_ERROR",
    "UNAVAILABLE",
    "INTERNAL",
];

/// Fragments PostgreSQL's grammar gives meaning to, to build statements that get far into
/// the parser: keywords, operators, quotes of every kind, comments, brackets.
const FRAGMENTS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "(",
    ")",
    "[",
    "]",
    ",",
    ";",
    ".",
    "::",
    "'",
    "''",
    "E'\\'",
    "$$",
    "$a$",
    "--",
    "/*",
    "*/",
    "\"",
    "U&\"",
    "1",
    "1.5e3",
    "$1",
    "x",
    "t",
    "pg_terminate_backend",
    "nextval",
    "(pid)",
    "WITH",
    "AS",
    "INSERT",
    "INTO",
    "VALUES",
    "DELETE",
    "UPDATE",
    "SET",
    "COMMIT",
    "BEGIN",
    "DO",
    "COPY",
    "EXPLAIN",
    "ANALYZE",
    "AND",
    "OR",
    "NOT",
    "+",
    "-",
    "*",
    "/",
    "||",
    "~~",
    "@@@",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "JOIN",
    "ON",
    "UNION",
    "ALL",
    "ARRAY",
    "ROW",
    "LATERAL",
    "TABLE",
    "CAST",
    "int",
    "text",
    "NULL",
    "\n",
    "\t",
    " ",
    "é",
    "\u{0}",
];

fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60).prop_map(|parts| parts.join(" ")),
        ".{0,200}",
        (prop::sample::select(&["(", "1+", "f(", "(SELECT ", "-", "::int"][..]), 1..3000usize)
            .prop_map(|(unit, n)| format!("SELECT {}1", unit.repeat(n))),
    ]
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        statement().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const TOOLS: &[&str] = &["pg_query", "pg_tx", "pg_schema", "pg_admin", "pg_monitor"];
const ACTIONS: &[&str] = &[
    "read",
    "write",
    "explain",
    "transaction",
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "rollback_to",
    "list",
    "status",
    "describe",
    "create",
    "alter",
    "drop",
    "vacuum",
    "analyze",
    "reindex",
    "stats",
    "settings",
    "terminate",
    "health",
    "activity",
    "connections",
    "locks",
    "size",
    "top_queries",
    "nope",
];
const KEYS: &[&str] = &[
    "sql",
    "params",
    "session_id",
    "autocommit",
    "max_rows",
    "timeout_ms",
    "format",
    "analyze",
    "operations",
    "isolation_level",
    "read_only",
    "name",
    "target",
    "schema",
    "definition",
    "pattern",
    "limit",
    "deep",
    "pid",
    "mode",
    "value",
    "table",
    "unknown_key",
];

fn tool_args() -> impl Strategy<Value = (String, Value)> {
    (
        prop::sample::select(TOOLS),
        prop::option::of(prop::sample::select(ACTIONS)),
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..6),
    )
        .prop_map(|(tool, action, pairs)| {
            let mut args = Map::new();
            if let Some(action) = action {
                args.insert("action".into(), json!(action));
            }
            for (key, value) in pairs {
                args.insert(key.to_owned(), value);
            }
            (tool.to_owned(), Value::Object(args))
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any text as a read, a write and an explain: a result with a known code, quickly.
    #[test]
    fn statements_of_any_shape_get_a_clear_answer(sql in statement()) {
        let fixture = Fixture::new();
        runtime().block_on(async {
            for action in ["read", "write", "explain"] {
                let started = Instant::now();
                let out = fixture.call("pg_query", json!({"action": action, "sql": sql, "autocommit": action == "write"})).await;
                prop_assert!(CODES.contains(&code(&out).as_str()), "{action} {sql:?} → {out}");
                prop_assert!(started.elapsed() < Duration::from_secs(10), "{action} {sql:?} took {:?}", started.elapsed());
            }
            Ok(())
        })?;
    }

    /// Any arguments to any tool: a result with a known code (an unknown action or parameter is
    /// INVALID_ARGUMENT), never a panic.
    #[test]
    fn arguments_of_any_shape_get_a_clear_answer((tool, args) in tool_args()) {
        let fixture = Fixture::new();
        runtime().block_on(async {
            let out = fixture.call(&tool, args.clone()).await;
            prop_assert!(CODES.contains(&code(&out).as_str()), "{tool} {args} → {out}");
            Ok(())
        })?;
    }
}
