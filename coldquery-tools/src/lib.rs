//! ColdQuery's five PostgreSQL tools as pure async functions over the core traits.
//!
//! [`Tools`] holds the three seams of `coldquery-core` — an [`Executor`] for sessionless
//! statements, a [`SessionStore`] for transactions that live across calls, and a
//! [`WritePolicy`] (Default-Deny) — plus the [`ToolConfig`]. [`Tools::call`] takes a tool name
//! and its JSON arguments and returns the JSON result or a typed [`Error`]; the adapters (the
//! MCP server, the CLI, your program) turn an error into the SPEC §2 body. Nothing here knows MCP.
//!
//! ```no_run
//! # async fn demo(executor: std::sync::Arc<dyn coldquery_core::Executor>,
//! #               sessions: std::sync::Arc<dyn coldquery_core::SessionStore>) {
//! use std::sync::Arc;
//! use coldquery_core::{DefaultDeny, Owner};
//! use coldquery_tools::{Caller, ToolConfig, Tools};
//! use serde_json::json;
//!
//! let tools = Tools::new(executor, sessions, Arc::new(DefaultDeny { read_only: false }), ToolConfig::default());
//! let caller = Caller::new(Owner::new("me"), "me");
//! let output = tools
//!     .call(&caller, "pg_query", json!({"action": "read", "sql": "SELECT 1 AS one"}))
//!     .await
//!     .expect("pg_query is a tool");
//! let value = output.value().expect("the read succeeds");
//! assert_eq!(value["rows"][0]["one"], 1);
//! # }
//! ```

mod audit;
mod body;
mod catalog;
mod classify;
mod confirm;
mod ctx;
pub mod examples;
pub mod functions;
pub mod output;
mod pg_admin;
mod pg_monitor;
mod pg_query;
mod pg_schema;
mod pg_tx;
mod preview;
pub mod prompts;
mod reference;
mod render;
pub mod resources;
mod spec;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use coldquery_core::{Error, ErrorKind, Executor, RowSink, SessionStore, WritePolicy};
use serde_json::Value;
use tracing::Instrument;

pub use audit::{AuditRecord, AuditSink, JsonLinesAudit};
pub use classify::{CLASSIFY_DEADLINE, Classified, MAX_NESTING, Names, classify};
pub use confirm::ConfirmWrites;
pub use ctx::{Caller, Confirmation, Confirmer, Progress, ProgressSink, ToolConfig};
pub use functions::FunctionPolicy;
pub use pg_admin::PgAdminArgs;
pub use pg_monitor::PgMonitorArgs;
pub use pg_query::PgQueryArgs;
pub use pg_schema::PgSchemaArgs;
pub use pg_tx::PgTxArgs;
pub use reference::{actions, reference_markdown, render_reference};
pub use render::{TextFormat, cell, render_text, table_of};
pub use resources::ResourceError;
pub use spec::{Action, Annotations, Layout, TOOLS, ToolDef, ToolSpec, registry, tool, tool_specs};

use crate::body::Body;
use crate::ctx::Ctx;

/// The five tools over one executor, session store and write policy.
#[derive(Clone)]
pub struct Tools {
    executor: Arc<dyn Executor>,
    sessions: Arc<dyn SessionStore>,
    policy: Arc<dyn WritePolicy>,
    config: Arc<ToolConfig>,
    audit: Option<Arc<dyn AuditSink>>,
    confirmations: Arc<confirm::Confirmations>,
    /// The tools as exposed (layout, read-only marking), looked up by name on every call.
    specs: Arc<Vec<ToolSpec>>,
}

impl fmt::Debug for Tools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tools").field("config", &self.config).field("audit", &self.audit.is_some()).finish()
    }
}

/// The parameters `action` of `tool` takes besides `action` itself, or `None` for an unknown
/// tool or action (the same table the tools check calls against: [`TOOLS`]).
pub fn action_parameters(tool: &str, action: &str) -> Option<&'static [&'static str]> {
    spec::tool(tool).ok()?.parameters(action)
}

/// The tools a server with this configuration exposes: [`registry`], without `pg_tx begin`'s
/// `role` and `settings` when the server allows no role (they could only be refused, and every
/// listed parameter costs the model tokens).
fn exposed(layout: Layout, read_only: bool, config: &ToolConfig) -> Vec<ToolSpec> {
    let mut specs = registry(layout, read_only);
    if config.allowed_roles.is_empty() {
        for spec in specs.iter_mut().filter(|s| s.runs == "pg_tx") {
            if let Some(Value::Object(properties)) = spec.input_schema.get_mut("properties") {
                properties.remove("role");
                properties.remove("settings");
            }
        }
    }
    specs
}

/// The outcome of a call: the JSON result or the typed error, and the text format asked for.
/// The adapters turn an error into the SPEC §2 body `{"error": {...}}` ([`ToolOutput::into_json`]).
///
/// A statement's result keeps its rows as the JSON text they were written to: a wire that writes
/// JSON takes the text ([`ToolOutput::into_json_text_and_rendering`]); the tree of values is built
/// only when asked for ([`ToolOutput::value`], [`ToolOutput::into_json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    result: Result<Body, Error>,
    format: TextFormat,
}

impl ToolOutput {
    /// An outcome with this result and text format (for an adapter's tests, and for outputs
    /// made outside [`Tools::call`]).
    pub fn new(result: Result<Value, Error>, format: TextFormat) -> ToolOutput {
        ToolOutput { result: result.map(Body::Value), format }
    }

    fn ok(body: Body, format: TextFormat) -> ToolOutput {
        ToolOutput { result: Ok(body), format }
    }

    fn failed(error: Error) -> ToolOutput {
        ToolOutput { result: Err(error), format: TextFormat::Json }
    }

    /// True when the call failed (an MCP `isError` result).
    pub fn is_error(&self) -> bool {
        self.result.is_err()
    }

    /// The error, when the call failed.
    pub fn error(&self) -> Option<&Error> {
        self.result.as_ref().err()
    }

    /// The text rendering the caller asked for (`format`), for the text content of a result.
    pub fn format(&self) -> TextFormat {
        self.format
    }

    /// A top-level member of a successful result other than its `rows` (`row_count`,
    /// `truncated`, `session`...), read without building the rows' values.
    pub fn member(&self, key: &str) -> Option<&Value> {
        self.result.as_ref().ok()?.get(key)
    }

    /// The result as a tree of JSON values, or the error.
    pub fn value(self) -> Result<Value, Error> {
        self.result.map(Body::into_value)
    }

    /// The result as its tool's type in [`output`] (`QueryOutput` for `pg_query`, `TxOutput`
    /// for `pg_tx`...), or the error.
    pub fn typed<T: serde::de::DeserializeOwned + schemars::JsonSchema>(self) -> Result<T, Error> {
        let value = self.value()?;
        let shape = || format!("the result does not have the shape of {}", std::any::type_name::<T>());
        if let Some(broken) = output::violation(&output::schema_of::<T>(), &value, "result") {
            return Err(Error::internal(format!("{}: {broken}", shape())));
        }
        serde_json::from_value(value).map_err(|err| Error::internal(format!("{}: {err}", shape())))
    }

    /// The JSON as the wire carries it: the result, or the SPEC §2 error body.
    pub fn into_json(self) -> Value {
        self.value().unwrap_or_else(|error| error.to_json())
    }

    /// The wire JSON and its text content (the JSON, or the rows as markdown/csv when asked).
    pub fn into_json_and_text(self) -> (Value, String) {
        let (body, rendering) = self.into_body_and_rendering();
        let text = rendering.unwrap_or_else(|| body.to_json_string());
        (body.into_value(), text)
    }

    /// The wire JSON as compact text, and the text content when that is not the JSON itself
    /// (the rows as markdown/csv when asked): for a wire that writes JSON, without building the
    /// rows' values.
    pub fn into_json_text_and_rendering(self) -> (String, Option<String>) {
        let (body, rendering) = self.into_body_and_rendering();
        (body.to_json_string(), rendering)
    }

    /// The wire JSON (the result, or the SPEC §2 error body), and the text content when that is
    /// not the JSON itself. Only a rendering as markdown/csv builds the rows' values.
    fn into_body_and_rendering(self) -> (Body, Option<String>) {
        match self.result {
            Ok(body) if self.format == TextFormat::Json => (body, None),
            Ok(body) => {
                let value = body.into_value();
                let text = render_text(&value, self.format);
                (Body::Value(value), Some(text))
            }
            Err(error) => (Body::Value(error.to_json()), None),
        }
    }

    /// The text content: the JSON, or the rows as markdown/csv when asked.
    pub fn text(&self) -> String {
        match &self.result {
            Ok(body) if self.format == TextFormat::Json => body.to_json_string(),
            Ok(body) => render_text(&body.clone().into_value(), self.format),
            Err(error) => render_text(&error.to_json(), TextFormat::Json),
        }
    }
}

/// A tool name that is not one of the exposed tools (a protocol error in MCP, not a tool
/// result): the name, and the tools there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTool(pub String, pub Vec<&'static str>);

impl fmt::Display for UnknownTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown tool '{}'; the tools are {}", self.0, self.1.join(", "))
    }
}

impl std::error::Error for UnknownTool {}

impl Tools {
    /// The tools over these seams.
    pub fn new(
        executor: Arc<dyn Executor>,
        sessions: Arc<dyn SessionStore>,
        policy: Arc<dyn WritePolicy>,
        config: ToolConfig,
    ) -> Tools {
        // The key that signs preview tokens lives as long as this value (and its clones).
        let confirmations = Arc::new(confirm::Confirmations::new().expect("the operating system provides randomness"));
        let specs = Arc::new(exposed(Layout::Combined, policy.read_only(), &config));
        Tools { executor, sessions, policy, config: Arc::new(config), audit: None, confirmations, specs }
    }

    /// Exposes the tools in `layout` (see [`Layout`]).
    pub fn with_layout(mut self, layout: Layout) -> Tools {
        self.specs = Arc::new(exposed(layout, self.policy.read_only(), &self.config));
        self
    }

    /// The tools as exposed: what an adapter lists.
    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    /// Sends an audit record of every write and every denial to `sink`.
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>) -> Tools {
        self.audit = Some(sink);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ToolConfig {
        &self.config
    }

    /// The session store (adapters close an owner's sessions when its client goes away).
    pub fn sessions(&self) -> &Arc<dyn SessionStore> {
        &self.sessions
    }

    /// The executor (adapters report pool status in health and metrics).
    pub fn executor(&self) -> &Arc<dyn Executor> {
        &self.executor
    }

    /// Calls tool `name` with `args`. Execution errors are an `is_error` output; only an
    /// unknown tool name is an `Err`.
    pub async fn call(&self, caller: &Caller, name: &str, args: Value) -> Result<ToolOutput, UnknownTool> {
        let Some(spec) = self.specs.iter().find(|s| s.name == name) else {
            return Err(UnknownTool(name.to_owned(), self.specs.iter().map(|s| s.name).collect()));
        };
        let action = args.get("action").and_then(Value::as_str).unwrap_or("");
        if !spec.actions.is_empty() && !spec.actions.contains(&action) {
            let error = Error::invalid(format!(
                "{name}: parameter 'action' is '{action}'; choose one of {}",
                spec.actions.join(", ")
            ))
            .with_hint("the other actions of this kind are on another tool: see tools/list");
            return Ok(ToolOutput::failed(error));
        }
        // (In --read-only mode every tool is marked read-only, and the write policy refuses.)
        let reads_only = spec.annotations.read_only && !self.policy.read_only();
        Ok(self.run(caller, spec.def, reads_only, args).await)
    }

    /// Runs a call of `tool` (whatever the layout exposes); `reads_only` when it came through a
    /// tool marked read-only, so nothing it runs may write.
    async fn run(&self, caller: &Caller, tool: &'static ToolDef, reads_only: bool, args: Value) -> ToolOutput {
        #[cfg_attr(not(debug_assertions), allow(unused_variables))]
        let (run, output_schema) = (tool.run, tool.output_schema);
        let tool = tool.name;
        let action = args.get("action").and_then(Value::as_str).unwrap_or("").to_owned();
        let format = pg_query::text_format(&args);
        let span = tracing::info_span!(
            "tool_call",
            tool,
            action = %action,
            session = tracing::field::Empty,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let session_id = args.get("session_id").and_then(Value::as_str).map(str::to_owned);
        if let Some(session) = &session_id {
            span.record("session", session.as_str());
        }
        let statement = args.get("sql").and_then(Value::as_str).map(str::to_owned);
        let mut ctx = self.ctx(caller, tool, action);
        ctx.reads_only = reads_only;
        let started = Instant::now();
        let outcome = run(&ctx, args).instrument(span.clone()).await;
        // The outcome and duration are only read by the debug event below: recorded when it is
        // logged (formatting them into the span costs a few percent of a small call).
        let finished = tracing::enabled!(tracing::Level::DEBUG);
        if finished {
            span.record("duration_ms", started.elapsed().as_secs_f64() * 1000.0);
        }
        let output = match outcome {
            Ok(body) => {
                if finished {
                    span.record("outcome", "ok");
                }
                // In debug builds every test of a tool checks the result against its outputSchema,
                // and that the JSON text of a result is the text of its value.
                #[cfg(debug_assertions)]
                {
                    let value = body.clone().into_value();
                    if let Some(broken) = output::violation(&output_schema(), &value, tool) {
                        panic!("{tool} returned a result its outputSchema does not describe: {broken}\n{value}");
                    }
                    assert_eq!(body.to_json_string(), value.to_string(), "{tool}: the JSON text is not the value's");
                }
                ToolOutput::ok(body, format)
            }
            Err(error) => {
                if finished {
                    span.record("outcome", error.kind().code());
                }
                // Statements refused by the classifier are denials too (WRITE_DENIED is
                // recorded where the policy decides, in `Ctx::authorize`).
                if matches!(error.kind(), ErrorKind::StatementNotAllowed | ErrorKind::ReadOnlyViolation) {
                    ctx.record(AuditRecord::denial(&ctx.actor(), session_id.as_deref(), statement.as_deref(), &error));
                }
                ToolOutput::failed(error)
            }
        };
        if finished {
            span.in_scope(|| tracing::debug!("tool call finished"));
        }
        output
    }

    /// A read the adapters make for a resource or a completion: of the registry's tool, so it
    /// works in every layout, and through no write.
    async fn read(&self, caller: &Caller, tool: &str, args: Value) -> Result<Value, Error> {
        let tool = spec::tool(tool).map_err(|unknown| Error::internal(unknown.to_string()))?;
        self.run(caller, tool, !self.policy.read_only(), args).await.value()
    }

    /// Runs a read and hands its rows to `sink` as they arrive, for exports of any size: the
    /// arguments and checks of `pg_query read` (`sql`, `params`, `timeout_ms`; `action` may be
    /// left out), the same read-only transaction, guard and timeout, but no row cap and no byte
    /// budget (memory is bounded by the sink). No session: `session_id` is refused. Returns
    /// `{fields, row_count, truncated: false, command, duration_ms}`, or the error a `pg_query
    /// read` of the same statement would report (a sink's error stops the statement).
    pub async fn read_stream(&self, caller: &Caller, args: Value, sink: &mut dyn RowSink) -> Result<Value, Error> {
        let span = tracing::info_span!(
            "tool_call",
            tool = "pg_query",
            action = "read_stream",
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let statement = args.get("sql").and_then(Value::as_str).map(str::to_owned);
        let ctx = self.ctx(caller, "pg_query", "read".to_owned());
        let started = Instant::now();
        let outcome = pg_query::read_stream(&ctx, args, sink).instrument(span.clone()).await;
        span.record("duration_ms", started.elapsed().as_secs_f64() * 1000.0);
        match &outcome {
            Ok(_) => {
                span.record("outcome", "ok");
            }
            Err(error) => {
                span.record("outcome", error.kind().code());
                if matches!(error.kind(), ErrorKind::StatementNotAllowed | ErrorKind::ReadOnlyViolation) {
                    ctx.record(AuditRecord::denial(&ctx.actor(), None, statement.as_deref(), error));
                }
            }
        }
        outcome
    }

    fn ctx<'a>(&'a self, caller: &'a Caller, tool: &'static str, action: String) -> Ctx<'a> {
        Ctx {
            executor: self.executor.as_ref(),
            sessions: self.sessions.as_ref(),
            policy: self.policy.as_ref(),
            config: &self.config,
            caller,
            audit: self.audit.as_ref(),
            confirmations: &self.confirmations,
            tool,
            action,
            confirmed: Default::default(),
            reads_only: false,
        }
    }

    /// The rights of the role reads run as that PostgreSQL would let a statement use beyond
    /// the database (superuser, REPLICATION, signalling, server files), with the
    /// least-privilege recipe, for the adapters' start-up report; `None` when it holds none.
    pub async fn role_posture(&self, caller: &Caller) -> Result<Option<String>, Error> {
        pg_monitor::posture_warning(&self.ctx(caller, "pg_monitor", "health".to_owned())).await
    }

    /// Completions for an argument of the resource template `postgres://schema/{schema}/{table}`:
    /// schema names, or table names (in the schema already chosen, if any), that start with
    /// `prefix`. Prompt arguments are free text and get none.
    pub async fn complete(
        &self,
        caller: &Caller,
        template: &str,
        argument: &str,
        prefix: &str,
        schema: Option<&str>,
    ) -> Vec<String> {
        let Some((args, key)) = resources::completion_call(template, argument, prefix, schema) else {
            return Vec::new();
        };
        match self.read(caller, "pg_schema", args).await {
            Ok(value) => value["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item[key].as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A resource's JSON, by URI (see [`resources`]).
    pub async fn read_resource(&self, caller: &Caller, uri: &str) -> Result<Value, ResourceError> {
        let (tool, args) = resources::call_for(uri)?;
        match self.read(caller, tool, args).await {
            Ok(value) => Ok(value),
            // The arguments come from a well-formed URI: what they name does not exist.
            Err(error) if error.kind() == ErrorKind::InvalidArgument => Err(ResourceError::NotFound(error)),
            Err(error) => Err(ResourceError::Failed(error)),
        }
    }
}
