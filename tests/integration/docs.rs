//! `docs/tools.md` cannot drift: every action of every tool has a documented example, every
//! example still runs on the demo database with a result of the documented shape, and the
//! file equals what the registry renders. `cargo xtask docs` (this test with
//! `COLDQUERY_UPDATE_DOCS=1`) refreshes the examples' results and rewrites the file.

use std::path::PathBuf;

use coldquery_pg::cluster::ephemeral::DEMO_SQL;
use coldquery_tools::examples::{EXAMPLE_SESSION_ID, examples};
use coldquery_tools::{ToolConfig, actions, reference_markdown, render_reference, tool_specs};
use serde_json::{Value, json};

use crate::support::{call, caller, options, tools};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// True if `actual` has the shape of `documented`: the same object keys (recursively), the
/// same kinds of values; arrays compare their first elements; null matches anything (values
/// such as actual times come and go).
fn same_shape(documented: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    /// Objects keyed by data (state, database, user names), not by a schema.
    const MAPS: &[&str] = &[".by_state", ".by_database", ".by_user"];
    if MAPS.iter().any(|m| path.ends_with(m)) {
        return;
    }
    match (documented, actual) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(d), Value::Object(a)) => {
            let dk: Vec<&String> = d.keys().collect();
            let ak: Vec<&String> = a.keys().collect();
            if dk != ak {
                problems.push(format!("{path}: keys {dk:?} documented, {ak:?} returned"));
                return;
            }
            for (key, value) in d {
                same_shape(value, &a[key], &format!("{path}.{key}"), problems);
            }
        }
        (Value::Array(d), Value::Array(a)) => {
            if let (Some(d), Some(a)) = (d.first(), a.first()) {
                same_shape(d, a, &format!("{path}[0]"), problems);
            }
        }
        (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => {}
        (d, a) => problems.push(format!("{path}: {d} documented, {a} returned")),
    }
}

#[tokio::test]
async fn tools_reference_is_current() {
    let db = coldquery_tests::harness::test_db().await;
    db.client().await.batch_execute(DEMO_SQL).await.expect("demo schema loads");
    let (tools, _database) = tools(&db, &options(), ToolConfig::default(), false).await;
    let me = caller("docs");
    let update = std::env::var_os("COLDQUERY_UPDATE_DOCS").is_some();

    let mut documented = examples();
    for spec in tool_specs() {
        for action in actions(&spec.input_schema) {
            assert!(
                documented.iter().any(|e| e.tool == spec.name && e.action == action),
                "{} {action} has no example in coldquery-tools/src/examples.json",
                spec.name
            );
        }
    }

    let mut session: Option<String> = None;
    let mut problems = Vec::new();
    for example in &mut documented {
        let mut text = example.args.to_string();
        if text.contains(EXAMPLE_SESSION_ID) && session.is_none() {
            let begun = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
            session = Some(begun["session_id"].as_str().expect("begin returns a session id").to_owned());
        }
        if let Some(id) = &session {
            text = text.replace(EXAMPLE_SESSION_ID, id);
        }
        let args: Value = serde_json::from_str(&text).unwrap();
        let raw = call(&tools, &me, &example.tool, args).await;
        if example.tool == "pg_tx" && example.action == "begin" {
            session = raw["session_id"].as_str().map(str::to_owned);
        }
        // The test database has a random name; the documentation shows the demo's.
        let mut result_text = raw.to_string().replace(db.name.as_str(), "demo");
        if let Some(id) = &session {
            result_text = result_text.replace(id.as_str(), EXAMPLE_SESSION_ID);
        }
        let result: Value = serde_json::from_str(&result_text).unwrap();
        if example.tool == "pg_tx" && matches!(example.action.as_str(), "commit" | "rollback") {
            session = None;
        }
        if update {
            example.result = result;
        } else if example.result.is_null() {
            problems.push(format!("{} {} ({}): no documented result", example.tool, example.action, example.title));
        } else {
            same_shape(
                &example.result,
                &result,
                &format!("{} {} ({})", example.tool, example.action, example.title),
                &mut problems,
            );
        }
    }
    if update {
        let json = serde_json::to_string_pretty(&documented).unwrap() + "\n";
        std::fs::write(repo_file("coldquery-tools/src/examples.json"), json).unwrap();
        std::fs::write(repo_file("docs/tools.md"), render_reference(&documented)).unwrap();
        return;
    }
    assert!(problems.is_empty(), "documented examples drifted (run `cargo xtask docs`):\n{}", problems.join("\n"));
    let on_disk = std::fs::read_to_string(repo_file("docs/tools.md")).unwrap_or_default();
    assert!(on_disk == reference_markdown(), "docs/tools.md is out of date: run `cargo xtask docs`");
}
