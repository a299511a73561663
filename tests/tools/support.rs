//! Shared helpers: the tools over fresh fakes.

use std::sync::Arc;

use coldquery_core::{DefaultDeny, Owner};
use coldquery_tests::fakes::{FakeExecutor, FakeSessions};
use coldquery_tools::{Caller, ToolConfig, Tools};
use serde_json::Value;

/// The tools over fakes, and the fakes to inspect.
pub(crate) struct Fixture {
    pub(crate) tools: Tools,
    pub(crate) executor: FakeExecutor,
    pub(crate) sessions: FakeSessions,
    pub(crate) caller: Caller,
}

impl Fixture {
    /// Default-Deny, default configuration, at most 3 sessions.
    pub(crate) fn new() -> Fixture {
        Fixture::with(ToolConfig::default(), false)
    }

    /// With this configuration and read-only mode.
    pub(crate) fn with(config: ToolConfig, read_only: bool) -> Fixture {
        let executor = FakeExecutor::new();
        let sessions = FakeSessions::new(3);
        let tools = Tools::new(
            Arc::new(executor.clone()),
            Arc::new(sessions.clone()),
            Arc::new(DefaultDeny { read_only }),
            config,
        );
        Fixture { tools, executor, sessions, caller: Caller::new(Owner::new("alice"), "alice") }
    }

    /// Calls a tool as `alice`; returns the JSON (the error body for an error result).
    pub(crate) async fn call(&self, tool: &str, args: Value) -> Value {
        self.tools.call(&self.caller, tool, args).await.expect("a known tool").into_json()
    }
}

/// The error code of a result, or "ok".
pub(crate) fn code(value: &Value) -> String {
    value["error"]["code"].as_str().unwrap_or("ok").to_owned()
}

/// What a call did, for snapshots: the arguments, the result, and every statement the
/// executor was asked (mode, SQL with its quoting, provenance, parameters).
pub(crate) async fn transcript(fixture: &Fixture, tool: &str, args: Value) -> Value {
    fixture.executor.take_calls();
    let output = fixture.call(tool, args.clone()).await;
    let sql: Vec<Value> = fixture.executor.take_calls().into_iter().map(|call| call_json(&call)).collect();
    serde_json::json!({ "args": args, "output": output, "sql": sql })
}

/// One recorded statement as snapshots show it.
pub(crate) fn call_json(call: &coldquery_tests::fakes::RecordedCall) -> Value {
    serde_json::json!({
        "mode": format!("{:?}", call.mode),
        "sql": call.sql,
        "origin": format!("{:?}", call.origin),
        "params": call.params,
        "max_rows": call.limits.max_rows,
    })
}

/// A result with these columns (name, type) and rows, as the executor would return it.
pub(crate) fn result(columns: &[(&str, &str)], rows: Vec<Vec<Value>>) -> coldquery_core::QueryResult {
    coldquery_core::QueryResult {
        fields: columns
            .iter()
            .map(|(name, type_name)| coldquery_core::Field { name: (*name).into(), type_name: (*type_name).into() })
            .collect(),
        rows,
        ..coldquery_core::QueryResult::default()
    }
}

/// A result with one column and the given rows.
pub(crate) fn rows(column: &str, type_name: &str, values: Vec<Value>) -> coldquery_core::QueryResult {
    result(&[(column, type_name)], values.into_iter().map(|v| vec![v]).collect())
}
