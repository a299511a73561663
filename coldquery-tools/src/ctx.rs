//! The call context every action runs in: the three core seams, the configuration, the
//! caller, and the helpers that keep each rule in one place (argument parsing, the write
//! policy, reads that run in a session or on the pool, result shaping).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coldquery_core::{
    Access, CancellationToken, Error, ErrorKind, Executor, Limits, Owner, QueryResult, Result, SessionId, SessionInfo,
    SessionStore, Statement, WriteIntent, WritePolicy, WriteTarget,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::audit::{Actor, AuditRecord, AuditSink};
use crate::body::{Body, RowsWriter};
use crate::confirm::{Binding, ConfirmWrites, Confirmations};
use crate::functions::FunctionPolicy;

/// Settings of the tools layer (SPEC §5).
#[derive(Debug, Clone)]
pub struct ToolConfig {
    /// Default `max_rows` (`COLDQUERY_MAX_ROWS`, 500).
    pub max_rows: usize,
    /// The ceiling a call may ask for (`COLDQUERY_MAX_ROWS_LIMIT`).
    pub max_rows_limit: usize,
    /// Byte budget of one result (`COLDQUERY_MAX_RESULT_BYTES`, 1 MiB).
    pub max_result_bytes: usize,
    /// Default statement timeout (`COLDQUERY_STATEMENT_TIMEOUT`, 30 s).
    pub statement_timeout: Duration,
    /// The functions reads may call (`--deny-functions`, `--allow-functions`, `--allow-extensions`).
    pub functions: FunctionPolicy,
    /// Results of a session closer than this to expiry carry a warning.
    pub expiry_warning: Duration,
    /// Which writes need a confirmation token from a preview (`--confirm-writes`).
    pub confirm_writes: ConfirmWrites,
    /// How long a preview's confirmation token is valid (`--confirm-ttl`, 5 minutes).
    pub confirm_ttl: Duration,
    /// How long a write (and every statement of a read-write session) may wait for a lock
    /// before it fails with the blocking backends named (`--lock-timeout`, 5 s; `None` keeps
    /// the server's `lock_timeout`).
    pub lock_timeout: Option<Duration>,
    /// Roles a session may act as (`pg_tx begin` with `role`; `--allow-roles`). None by default.
    pub allowed_roles: Vec<String>,
    /// A statement running longer than this sends progress reports, one per this interval, to
    /// a caller that asked for them (1 s).
    pub progress_after: Duration,
    /// An autocommit write that affects more rows than this is rolled back unless it was
    /// confirmed (`--confirm-rows`; `None`: no limit). Applies while `confirm_writes` is not off.
    pub confirm_rows: Option<u64>,
}

impl Default for ToolConfig {
    fn default() -> ToolConfig {
        // A call's caps default to the executor's (SPEC §5: 500 rows, 1 MiB, 30 s).
        let limits = coldquery_core::Limits::default();
        ToolConfig {
            max_rows: limits.max_rows,
            max_rows_limit: 10_000,
            max_result_bytes: limits.max_bytes,
            statement_timeout: limits.timeout,
            functions: FunctionPolicy::default(),
            expiry_warning: Duration::from_secs(300),
            confirm_writes: ConfirmWrites::default(),
            confirm_ttl: Duration::from_secs(300),
            lock_timeout: Some(Duration::from_secs(5)),
            allowed_roles: Vec::new(),
            progress_after: Duration::from_secs(1),
            confirm_rows: None,
        }
    }
}

impl ToolConfig {
    /// Adds comma-separated function patterns (`name`, `schema.name`, `*` wildcards, e.g.
    /// `my_audit_*`) to the functions reads may not call.
    pub fn deny_functions(&mut self, list: &str) -> Result<(), String> {
        self.functions.deny_functions(list)
    }
}

/// Who is calling, and how to cancel the call.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The session owner (stdio client, or HTTP principal and legacy MCP session).
    pub owner: Owner,
    /// The principal's name, for the audit log.
    pub principal: String,
    /// Cancelled when the client cancels the request or goes away.
    pub cancel: CancellationToken,
    /// Where progress reports of a long statement go, when the caller asked for them.
    pub progress: Option<Arc<dyn ProgressSink>>,
    /// Who can confirm a write directly (the person behind an MCP client that supports
    /// elicitation), instead of a preview's token.
    pub confirmer: Option<Arc<dyn Confirmer>>,
}

impl Caller {
    /// A caller with a fresh cancellation token.
    pub fn new(owner: Owner, principal: impl Into<String>) -> Caller {
        Caller { owner, principal: principal.into(), cancel: CancellationToken::new(), progress: None, confirmer: None }
    }

    /// The same caller, with writes that need confirmation shown to `confirmer` (with their
    /// preview) to accept or decline.
    pub fn with_confirmer(mut self, confirmer: Arc<dyn Confirmer>) -> Caller {
        self.confirmer = Some(confirmer);
        self
    }

    /// The same caller, with progress reports of long statements sent to `sink`.
    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Caller {
        self.progress = Some(sink);
        self
    }
}

/// One progress report of a statement that runs longer than
/// [`ToolConfig::progress_after`]: seconds elapsed (increasing), and what it is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Seconds since the call started.
    pub elapsed_s: f64,
    /// What the statement is doing: waiting for a lock (and who holds it), a maintenance phase
    /// and how far it is, or just running.
    pub message: String,
}

/// What the person asked to confirm a write answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Run it.
    Accepted,
    /// Do not run it.
    Declined,
    /// They could not be asked (the request failed): the preview-and-token path applies.
    Unavailable,
}

/// Asks a person to confirm a write, showing what its preview reported (the MCP adapter uses
/// elicitation).
#[async_trait::async_trait]
pub trait Confirmer: Send + Sync + std::fmt::Debug {
    /// Shows `message` (the write and its preview) and returns the answer.
    async fn confirm(&self, message: String) -> Confirmation;
}

/// Receives progress reports (the MCP adapter turns them into `notifications/progress`).
#[async_trait::async_trait]
pub trait ProgressSink: Send + Sync + std::fmt::Debug {
    /// Reports one step; must not block for long.
    async fn report(&self, progress: Progress);
}

pub(crate) struct Ctx<'a> {
    pub(crate) executor: &'a dyn Executor,
    pub(crate) sessions: &'a dyn SessionStore,
    pub(crate) policy: &'a dyn WritePolicy,
    pub(crate) config: &'a ToolConfig,
    pub(crate) caller: &'a Caller,
    pub(crate) audit: Option<&'a Arc<dyn AuditSink>>,
    pub(crate) confirmations: &'a Confirmations,
    pub(crate) tool: &'static str,
    pub(crate) action: String,
    /// Set when this call's write was confirmed, with a preview's token or by the person asked
    /// (for the audit record).
    pub(crate) confirmed: AtomicBool,
    /// The call came through a tool marked read-only by the layout (`pg_read`, `pg_inspect`):
    /// nothing it runs may write, not even in a session. (In `--read-only` mode the write
    /// policy refuses writes itself.)
    pub(crate) reads_only: bool,
}

/// Deserializes a tool's flat arguments; errors name the parameter and the valid choices. A
/// parameter the action does not take is refused, so a typo or a misplaced option is never
/// silently ignored (a `null` counts as absent).
/// Which parameters each action takes is the registry's ([`crate::TOOLS`]).
pub(crate) fn parse_args<T: DeserializeOwned>(tool: &str, args: Value) -> Result<T> {
    let args = if args.is_null() { Value::Object(Map::new()) } else { args };
    let given: Vec<String> = args
        .as_object()
        .map(|object| {
            object
                .iter()
                .filter(|(key, value)| *key != "action" && !value.is_null())
                .map(|(key, _)| key.clone())
                .collect()
        })
        .unwrap_or_default();
    let action = args.get("action").and_then(Value::as_str).unwrap_or_default().to_owned();
    let parsed: T = deserialize(tool, args)?;
    let accepted = crate::action_parameters(tool, &action)
        .ok_or_else(|| Error::internal(format!("{tool} {action} is not in the tool registry")))?;
    let unused: Vec<String> =
        given.iter().filter(|key| !accepted.contains(&key.as_str())).map(|key| format!("'{key}'")).collect();
    if unused.is_empty() {
        return Ok(parsed);
    }
    let takes = if accepted.is_empty() { "no other parameters".to_owned() } else { accepted.join(", ") };
    Err(Error::invalid(format!(
        "{tool} {action}: parameter(s) {} do not apply to this action; it takes {takes}",
        unused.join(", ")
    )))
}

fn deserialize<T: DeserializeOwned>(tool: &str, args: Value) -> Result<T> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = if path == "." || path.is_empty() {
            format!("{tool}: {inner}")
        } else {
            format!("{tool}: parameter '{path}': {inner}")
        };
        Error::invalid(message)
    })
}

/// A required parameter.
pub(crate) fn required<T>(value: Option<T>, name: &str, tool: &str, action: &str) -> Result<T> {
    value.ok_or_else(|| Error::invalid(format!("{tool} {action}: parameter '{name}' is required")))
}

/// A caller-supplied identifier parameter, validated by the sanitizer.
pub(crate) fn ident(value: &str, name: &str, tool: &str, action: &str) -> Result<coldquery_core::Ident> {
    coldquery_core::Ident::new(value).map_err(|e| Error::invalid(format!("{tool} {action}: parameter '{name}': {e}")))
}

/// A `limit` between 1 and the configured ceiling (`COLDQUERY_MAX_ROWS_LIMIT`).
pub(crate) fn limit(ctx: &Ctx<'_>, tool: &str, action: &str, value: Option<u64>, default: usize) -> Result<usize> {
    let ceiling = ctx.config.max_rows_limit.max(ctx.config.max_rows);
    match value {
        None => Ok(default.min(ceiling)),
        Some(0) => Err(Error::invalid(format!("{tool} {action}: parameter 'limit' must be at least 1"))),
        Some(n) if n > ceiling as u64 => Err(Error::invalid(format!(
            "{tool} {action}: parameter 'limit' is {n}; the ceiling is {ceiling} (COLDQUERY_MAX_ROWS_LIMIT)"
        ))),
        Some(n) => Ok(n as usize),
    }
}

/// Refuses parameters that mean nothing for this action, so a typo is not silently ignored.
pub(crate) fn reject_unused(tool: &str, action: &str, given: &[(&str, bool)]) -> Result<()> {
    let unused: Vec<&str> = given.iter().filter(|(_, set)| *set).map(|(name, _)| *name).collect();
    if unused.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{tool} {action}: parameter(s) {} do not apply to this action",
            unused.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
        )))
    }
}

impl Ctx<'_> {
    pub(crate) fn owner(&self) -> &Owner {
        &self.caller.owner
    }

    /// Limits for this call: `max_rows` checked against the ceiling, `timeout_ms` if given.
    pub(crate) fn limits(&self, max_rows: Option<u64>, timeout_ms: Option<u64>) -> Result<Limits> {
        let ceiling = self.config.max_rows_limit.max(self.config.max_rows);
        let max_rows = match max_rows {
            None => self.config.max_rows,
            Some(0) => return Err(Error::invalid("parameter 'max_rows' must be at least 1")),
            Some(n) if n as usize > ceiling => {
                return Err(Error::invalid(format!(
                    "parameter 'max_rows' is {n}; the ceiling is {ceiling} (COLDQUERY_MAX_ROWS_LIMIT)"
                ))
                .with_hint("aggregate in SQL or page with LIMIT/OFFSET"));
            }
            Some(n) => n as usize,
        };
        let timeout = match timeout_ms {
            None => self.config.statement_timeout,
            Some(0) => return Err(Error::invalid("parameter 'timeout_ms' must be at least 1")),
            Some(ms) => Duration::from_millis(ms),
        };
        Ok(Limits { max_rows, max_bytes: self.config.max_result_bytes, timeout, lock_timeout: None })
    }

    /// Limits for a write: `limits` plus the configured lock timeout, unless the statement
    /// cannot run inside a transaction block (the lock timeout is set for a transaction).
    pub(crate) fn write_limits(&self, limits: Limits, in_transaction_block: bool) -> Limits {
        Limits { lock_timeout: self.config.lock_timeout.filter(|_| in_transaction_block), ..limits }
    }

    /// Default limits for catalog queries.
    pub(crate) fn catalog_limits(&self, rows: usize) -> Limits {
        Limits {
            max_rows: rows,
            max_bytes: self.config.max_result_bytes.max(4 * 1024 * 1024),
            timeout: self.config.statement_timeout,
            lock_timeout: None,
        }
    }

    /// The single place where the write policy is consulted; denials are audited.
    pub(crate) fn authorize(
        &self,
        session_id: Option<&str>,
        autocommit: Option<bool>,
        needs_autocommit: bool,
        statement: Option<&str>,
    ) -> Result<WriteTarget> {
        let intent = WriteIntent { tool: self.tool, action: &self.action, session_id, autocommit, needs_autocommit };
        self.policy.authorize(&intent).inspect_err(|err| {
            self.record(AuditRecord::denial(&self.actor(), session_id, statement, err));
        })
    }

    /// The confirmation step of a write that passed [`Ctx::authorize`]: a write the server's
    /// `confirm_writes` setting names needs `token` from a preview of exactly this call, and a
    /// token given is always checked (and used up). Refusals are audited.
    pub(crate) fn confirm(&self, destructive: Option<&str>, token: Option<&str>, binding: &Binding<'_>) -> Result<()> {
        let checked = match (token, self.config.confirm_writes.requires(destructive)) {
            (None, None) => return Ok(()),
            (None, Some(why)) => Err(Error::new(
                ErrorKind::WriteDenied,
                format!("{why}, and this server runs such writes only after a preview"),
            )
            .with_hint(
                "make the same call with preview: true to see what it would do (it is rolled back); then repeat the call with confirm set to the token the preview returns",
            )),
            (Some(token), _) => self.confirmations.redeem(token, binding),
        };
        match checked {
            Ok(()) => {
                self.confirmed.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                self.record(AuditRecord::denial(&self.actor(), binding.session, Some(binding.statement), &err));
                Err(err)
            }
        }
    }

    /// The most rows a write may affect before it needs a confirmation (`--confirm-rows`): on
    /// the sessionless path, for a DML statement of a call that was not confirmed, while the
    /// server confirms writes at all. (In a session nothing commits before `pg_tx commit`, and
    /// the result shows the rows affected first.)
    pub(crate) fn affected_cap(&self, target: &WriteTarget, classified: &crate::classify::Classified) -> Option<u64> {
        let applies = self.config.confirm_writes != ConfirmWrites::Off
            && !self.was_confirmed()
            && *target == WriteTarget::Autocommit
            && classified.counts_rows();
        self.config.confirm_rows.filter(|_| applies)
    }

    /// True when this call's write was confirmed with a token.
    pub(crate) fn was_confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Relaxed)
    }

    /// Who this call's audit records are about.
    pub(crate) fn actor(&self) -> Actor<'_> {
        Actor {
            principal: &self.caller.principal,
            owner: self.caller.owner.as_str(),
            tool: self.tool,
            action: &self.action,
            confirmed: self.was_confirmed(),
        }
    }

    /// A write that gave up waiting for a lock (`lock_timeout`, SQLSTATE 55P03) says who holds
    /// locks on the relations it named, so the caller can end or wait for that transaction;
    /// any other error is returned as it is.
    pub(crate) async fn name_lock_holders<'n>(
        &self,
        err: Error,
        relations: impl IntoIterator<Item = &'n String>,
    ) -> Error {
        if err.sqlstate() != Some("55P03") {
            return err;
        }
        let names = Value::Array(relations.into_iter().map(|r| Value::String(r.clone())).collect());
        let query = Statement::with_params(
            crate::catalog::monitor::LOCK_HOLDERS,
            vec![coldquery_core::Param::Text(names.to_string())],
        );
        let limits = self.catalog_limits(5);
        let holders = match self.executor.run(Access::ReadOnly, &query, &limits, &CancellationToken::new()).await {
            Ok(result) => result.rows_as_objects(),
            Err(_) => Vec::new(),
        };
        let waited =
            self.config.lock_timeout.map_or_else(|| "lock_timeout".to_owned(), |t| format!("{} ms", t.as_millis()));
        if holders.is_empty() {
            return err.with_hint(format!(
                "the write waited {waited} for a lock another transaction holds, and gave up so as not to block others queued behind it; pg_monitor locks shows who blocks whom; retry when that transaction ends"
            ));
        }
        let named: Vec<String> = holders
            .iter()
            .map(|h| {
                let pid = h["pid"].as_i64().unwrap_or_default();
                let own = i32::try_from(pid)
                    .ok()
                    .and_then(|p| self.sessions.backend_owner(p))
                    .is_some_and(|o| &o == self.owner());
                format!(
                    "pid {pid}{} ({}, {}, {} on {}, transaction open {} s)",
                    if own { " — your own open session (pg_tx list)" } else { "" },
                    h["user"].as_str().unwrap_or("?"),
                    h["state"].as_str().unwrap_or("?"),
                    h["mode"].as_str().unwrap_or("?"),
                    h["relation"].as_str().unwrap_or("?"),
                    h["seconds"],
                )
            })
            .collect();
        err.with_hint(format!(
            "the write waited {waited} for a lock and gave up so as not to block others queued behind it; held by {}. pg_monitor locks shows their queries; commit or roll back that transaction (or pg_admin terminate its pid), then retry",
            named.join("; ")
        ))
    }

    /// Runs `work` (a statement with the text `statement`); while it runs longer than
    /// `progress_after`, reports what it is doing to the caller's progress sink, once per
    /// interval. Without a sink this is `work` itself.
    pub(crate) async fn reporting<T>(&self, statement: &str, work: impl std::future::Future<Output = T>) -> T {
        let Some(sink) = self.caller.progress.clone() else {
            return work.await;
        };
        let started = Instant::now();
        let every = self.config.progress_after.max(Duration::from_millis(100));
        // The reporter runs beside the work, never in its way: the statement is polled while a
        // report is looked up or sent, each report is bounded, and late ticks are skipped.
        let reporter = async {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let report = async {
                    let message = self.describe_progress(statement).await;
                    sink.report(Progress { elapsed_s: started.elapsed().as_secs_f64(), message }).await;
                };
                let _ = tokio::time::timeout(every, report).await;
            }
        };
        tokio::select! {
            done = work => done,
            _ = reporter => unreachable!("the reporter loops until the work ends"),
        }
    }

    /// What the caller's statement is doing, from `pg_stat_activity` and the progress views.
    async fn describe_progress(&self, statement: &str) -> String {
        let query = Statement::with_params(
            crate::catalog::monitor::STATEMENT_PROGRESS,
            vec![coldquery_core::Param::Text(statement.to_owned())],
        );
        let limits = Limits { timeout: Duration::from_secs(2), ..self.catalog_limits(2) };
        let found = self.executor.run(Access::ReadOnly, &query, &limits, &CancellationToken::new()).await;
        let rows = found.map(|r| r.rows_as_objects()).unwrap_or_default();
        let [row] = rows.as_slice() else {
            return "running".to_owned();
        };
        let blockers: Vec<String> = row["blocked_by"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .map(|pid| pid.to_string())
            .collect();
        if !blockers.is_empty() {
            return format!(
                "waiting for a lock held by pid {} (pg_monitor locks shows the queries)",
                blockers.join(", pid ")
            );
        }
        if let Some(phase) = row["phase"].as_str() {
            return match (row["done"].as_f64(), row["total"].as_f64()) {
                (Some(done), Some(total)) if total > 0.0 => {
                    format!("{phase}: {:.0}% ({done} of {total} blocks)", 100.0 * done / total)
                }
                _ => phase.to_owned(),
            };
        }
        match (row["wait_event_type"].as_str(), row["wait_event"].as_str()) {
            (Some(kind), Some(event)) => format!("running, waiting on {kind} {event}"),
            _ => "running".to_owned(),
        }
    }

    /// Runs a read: inside the session if one is given, else in a read-only transaction.
    pub(crate) async fn read(
        &self,
        session_id: Option<&SessionId>,
        statement: &Statement,
        limits: &Limits,
    ) -> Result<(QueryResult, Option<SessionInfo>)> {
        let run = async {
            match session_id {
                Some(id) => {
                    let (result, info) =
                        self.sessions.run(self.owner(), id, statement, limits, &self.caller.cancel).await?;
                    Ok((result, Some(info)))
                }
                None => Ok((self.executor.run(Access::ReadOnly, statement, limits, &self.caller.cancel).await?, None)),
            }
        };
        self.reporting(statement.sql.text(), run).await
    }

    /// Runs a permitted write where the policy said, and audits it.
    pub(crate) async fn write(
        &self,
        target: &WriteTarget,
        statement: &Statement,
        limits: &Limits,
    ) -> Result<(QueryResult, Option<SessionInfo>)> {
        let started = Instant::now();
        let run = async {
            match target {
                WriteTarget::Session(id) => self
                    .sessions
                    .run(self.owner(), id, statement, limits, &self.caller.cancel)
                    .await
                    .map(|(r, i)| (r, Some(i))),
                WriteTarget::Autocommit => self
                    .executor
                    .run(Access::Autocommit, statement, limits, &self.caller.cancel)
                    .await
                    .map(|r| (r, None)),
            }
        };
        let outcome = self.reporting(statement.sql.text(), run).await;
        self.record(AuditRecord::write(&self.actor(), target, statement, &outcome, started.elapsed()));
        outcome
    }

    pub(crate) fn record(&self, record: AuditRecord) {
        if let Some(sink) = self.audit {
            sink.record(&record);
        }
    }

    /// The `session` object of a result, and a warning when the session is close to expiry.
    pub(crate) fn session_json(&self, info: &SessionInfo) -> Value {
        let mut session = json!({
            "id": info.id,
            "transaction_state": info.transaction_state,
            "expires_in_seconds": info.expires_in_seconds,
        });
        if Duration::from_secs(info.expires_in_seconds) < self.config.expiry_warning {
            session["warning"] = json!(format!(
                "this session expires in {} s of inactivity and will then be rolled back; commit soon",
                info.expires_in_seconds
            ));
        }
        session
    }
}

/// What the caller's message may spend besides the rows: the envelope, fields, and the rest of
/// the result object, twice (structured content and text).
const MESSAGE_OVERHEAD: usize = 4 * 1024;

/// The SPEC §2 result object, its rows written as JSON text as they are taken from the result
/// ([`Body::Rows`]). The byte budget bounds the whole response message: rows that would take it
/// past `limits.max_bytes` are cut, and a truncated result says which limit it hit. A row costs
/// its JSON twice (structured content, and the text content, where its quotes and backslashes
/// are escaped) and its comma in each.
pub(crate) fn result_json(result: QueryResult, command: &str, keep_rows_affected: bool, limits: &Limits) -> Body {
    let fetched = result.rows.len();
    let fields = serde_json::to_value(&result.fields).unwrap_or_default();
    let keys = result.keys();
    let (fetch_truncated, rows_affected, duration_ms) = (result.truncated, result.rows_affected, result.duration_ms);
    let mut writer = RowsWriter::new(&keys, 256);
    let budget = limits.max_bytes.saturating_sub(MESSAGE_OVERHEAD);
    let mut spent = 0;
    let mut over_budget = false;
    for row in result.rows {
        let (cost, mark) = writer.push(row);
        if writer.len() == 1 {
            // Room for rows like the first and a quarter more, within the budget: the text is
            // not copied each time it outgrows its buffer, nor left with twice its size.
            let expected = (cost.bytes + 1).saturating_mul(fetched).saturating_mul(5) / 4;
            writer.reserve(expected.min(budget / 2));
        }
        spent += 2 * cost.bytes + cost.escapes + 2;
        if spent > budget {
            writer.pop(mark);
            over_budget = true;
            break;
        }
    }
    let row_count = writer.len();
    let truncated = fetch_truncated || over_budget;
    let mut out = Map::with_capacity(10);
    out.insert("fields".into(), fields);
    out.insert("rows".into(), Value::Null);
    out.insert("row_count".into(), json!(row_count));
    out.insert("truncated".into(), Value::Bool(truncated));
    out.insert("command".into(), json!(command));
    out.insert("rows_affected".into(), if keep_rows_affected { json!(rows_affected) } else { Value::Null });
    out.insert("duration_ms".into(), json!(duration_ms));
    if truncated {
        // The fetch stops at max_rows + 1 rows, or when the byte budget is spent.
        let by_rows = !over_budget && fetched >= limits.max_rows;
        let (limit, hint) = if by_rows {
            (
                "max_rows",
                format!(
                    "the result was cut at max_rows ({}); ask for more with max_rows (up to the server's ceiling), aggregate in SQL, or page with LIMIT/OFFSET",
                    limits.max_rows
                ),
            )
        } else {
            (
                "max_result_bytes",
                format!(
                    "the result was cut at the byte budget ({} bytes for the whole message); select fewer or narrower columns, aggregate in SQL, or page with LIMIT/OFFSET",
                    limits.max_bytes
                ),
            )
        };
        out.insert("truncated_by".into(), json!(limit));
        out.insert("hint".into(), json!(hint));
    }
    Body::Rows { object: out, rows: writer.finish() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coldquery_core::Field;
    use proptest::prelude::*;

    /// What a row costs the message, from its serialization: twice, the text's escapes, and a
    /// comma each time.
    fn cost(row: &Value) -> usize {
        let text = row.to_string();
        2 * text.len() + text.bytes().filter(|b| matches!(b, b'"' | b'\\')).count() + 2
    }

    fn cell() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x20\"\\\\aé]{0,12}".prop_map(Value::String),
            proptest::collection::vec("[a\"\\\\]{0,3}", 0..3).prop_map(|items| json!({"k": items, "n": [1.5, null]})),
        ]
    }

    proptest! {
        /// The result's rows, written as text under the byte budget, are the rows as objects
        /// (`QueryResult::rows_as_objects`, repeated names suffixed) up to the first row that
        /// would take the message past the budget; the text is serde_json's for the value.
        #[test]
        fn rows_are_written_as_their_objects_under_the_budget(
            names in proptest::collection::vec("[ab\"\\\\]{1,2}", 1..5),
            rows in proptest::collection::vec(proptest::collection::vec(cell(), 0..6), 0..12),
            max_bytes in 4096usize..6000,
            fetch_truncated in any::<bool>(),
        ) {
            let fields: Vec<Field> = names.iter().map(|name| Field { name: name.clone(), type_name: "text".into() }).collect();
            let result = QueryResult { fields, rows, truncated: fetch_truncated, rows_affected: None, duration_ms: 1.5 };
            let objects = result.rows_as_objects();
            let limits = Limits { max_rows: 100, max_bytes, timeout: Duration::from_secs(1), lock_timeout: None };
            let body = result_json(result, "SELECT", false, &limits);
            let text = body.to_json_string();
            let value = body.into_value();
            prop_assert_eq!(&text, &value.to_string());
            let budget = max_bytes - MESSAGE_OVERHEAD;
            let mut spent = 0;
            let kept = objects.iter().take_while(|row| { spent += cost(row); spent <= budget }).count();
            prop_assert_eq!(value["rows"].as_array().unwrap(), &objects[..kept].to_vec());
            prop_assert_eq!(&value["row_count"], &json!(kept));
            prop_assert_eq!(&value["truncated"], &json!(fetch_truncated || kept < objects.len()));
            if kept < objects.len() {
                prop_assert_eq!(&value["truncated_by"], &json!("max_result_bytes"));
            }
            let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
            prop_assert_eq!(&keys[..7], &["fields", "rows", "row_count", "truncated", "command", "rows_affected", "duration_ms"]);
        }
    }
}
