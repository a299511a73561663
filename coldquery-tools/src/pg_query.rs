//! `pg_query`: run SQL — `read`, `write`, `explain`, and atomic `transaction` batches.
//!
//! Every caller statement is classified with PostgreSQL's own grammar before anything is sent;
//! writes pass the Default-Deny policy in [`Ctx::authorize`], the one place it is consulted.

use coldquery_core::{
    CallerSql, Error, ErrorKind, Isolation, Limits, OnError, Param, Result, RowSink, SessionId, Sql, SqlBuilder,
    Statement, TxOptions, WriteTarget,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::Body;
use crate::classify::{self, Classified};
use crate::ctx::{Ctx, parse_args, required, result_json};
use crate::preview::{self, binding, preview_requested};
use crate::render::TextFormat;

/// The actions of `pg_query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueryAction {
    /// Run one read-only statement.
    Read,
    /// Run one writing statement (needs session_id or autocommit: true).
    Write,
    /// Show a statement's plan.
    Explain,
    /// Run several statements atomically.
    Transaction,
}

/// One statement of a `transaction` batch.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub sql: String,
    #[serde(default)]
    pub params: Vec<Value>,
}

/// Arguments of `pg_query` (flat; which apply depends on `action`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgQueryArgs {
    pub action: QueryAction,
    /// One SQL statement; values as $1, $2… placeholders.
    pub sql: Option<String>,
    /// Values for $1, $2…
    pub params: Option<Vec<Value>>,
    /// Run in this pg_tx session.
    pub session_id: Option<String>,
    /// Commit on its own, without a session.
    pub autocommit: Option<bool>,
    /// Row cap (default 500).
    pub max_rows: Option<u64>,
    /// Statement timeout in ms.
    pub timeout_ms: Option<u64>,
    /// read: json | markdown | csv text. explain: json | text.
    pub format: Option<String>,
    /// explain: EXPLAIN ANALYZE (runs it).
    pub analyze: Option<bool>,
    pub buffers: Option<bool>,
    pub verbose: Option<bool>,
    /// transaction: statements run atomically, in order.
    pub operations: Option<Vec<Operation>>,
    /// transaction: read_committed | repeatable_read | serializable.
    pub isolation_level: Option<String>,
    pub read_only: Option<bool>,
    pub preview: Option<bool>,
    pub confirm: Option<String>,
}

/// A statement that passed validation and classification.
#[derive(Debug)]
struct Checked {
    sql: CallerSql,
    classified: Classified,
    params: Vec<Param>,
}

impl Checked {
    fn statement(&self) -> Statement {
        Statement::with_params(Sql::caller(self.sql.clone()), self.params.clone())
            .with_footprint(self.classified.footprint())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlanFormat {
    Json,
    Text,
}

/// `pg_query` arguments as a typed request.
#[derive(Debug)]
enum Request {
    Read {
        stmt: Checked,
        session: Option<SessionId>,
        limits: Limits,
    },
    Write {
        stmt: Checked,
        target: WriteTarget,
        limits: Limits,
    },
    Explain {
        stmt: Checked,
        analyze: bool,
        buffers: bool,
        verbose: bool,
        format: PlanFormat,
        session: Option<SessionId>,
        limits: Limits,
    },
    Transaction {
        ops: Vec<Checked>,
        options: TxOptions,
        limits: Limits,
    },
    /// `preview: true` of a write or a writing batch.
    Preview {
        ops: Vec<Checked>,
        target: WriteTarget,
        limits: Limits,
    },
}

/// The text rendering chosen by a call (used by the adapters for the text content).
pub(crate) fn text_format(args: &Value) -> TextFormat {
    args.get("format").and_then(Value::as_str).and_then(TextFormat::parse).unwrap_or_default()
}

async fn check_sql(text: String, params: Option<Vec<Value>>) -> Result<Checked> {
    let sql = CallerSql::new(text)?;
    let classified = classify::classify(&sql).await?;
    let params = params.unwrap_or_default().iter().map(Param::from_json).collect();
    Ok(Checked { sql, classified, params })
}

/// The statement text a confirmation token of these statements is bound to: the statement
/// itself, or a batch's statements as a JSON array (so that no two lists share a text).
fn joined_sql(ops: &[Checked]) -> String {
    match ops {
        [one] => one.sql.as_str().to_owned(),
        _ => Value::Array(ops.iter().map(|op| Value::String(op.sql.as_str().to_owned())).collect()).to_string(),
    }
}

/// The parameters a confirmation token of these statements is bound to.
fn joined_params(ops: &[Checked]) -> Vec<Value> {
    ops.iter().map(|op| serde_json::to_value(&op.params).unwrap_or(Value::Null)).collect()
}

async fn parse(ctx: &Ctx<'_>, args: PgQueryArgs) -> Result<Request> {
    let tool = "pg_query";
    let action = ctx.action.as_str();
    let limits = ctx.limits(args.max_rows, args.timeout_ms)?;
    let session = args.session_id.clone().map(SessionId::new);
    match args.action {
        QueryAction::Read => {
            // The format shapes only the text content (see `Tools::call`); here it is validated.
            if let Some(f) = args.format.as_deref() {
                TextFormat::parse(f).ok_or_else(|| {
                    Error::invalid(format!("pg_query read: parameter 'format' is '{f}'; choose json, markdown or csv"))
                })?;
            }
            let stmt = check_sql(required(args.sql, "sql", tool, action)?, args.params).await?;
            check_read(ctx, &stmt.classified)?;
            Ok(Request::Read { stmt, session, limits })
        }
        QueryAction::Write => {
            let sql = required(args.sql, "sql", tool, action)?;
            let stmt = check_sql(sql, args.params).await?;
            classify::check_write(&stmt.classified)?;
            let target = ctx.authorize(
                args.session_id.as_deref(),
                args.autocommit,
                classify::needs_autocommit(&stmt.classified),
                Some(stmt.sql.as_str()),
            )?;
            if target == WriteTarget::Autocommit {
                classify::check_autocommit(&stmt.classified)?;
            }
            let limits = ctx.write_limits(limits, !classify::needs_autocommit(&stmt.classified));
            let ops = vec![stmt];
            if preview_requested(args.preview, args.confirm.as_deref())? {
                return Ok(Request::Preview { ops, target, limits });
            }
            let (sql, params) = (joined_sql(&ops), joined_params(&ops));
            let previewed = preview_ops(&ops);
            let binding = binding(ctx, &sql, &params, &target);
            preview::confirm_write(ctx, &previewed, &target, &limits, binding, args.confirm.as_deref()).await?;
            drop(previewed);
            let stmt = ops.into_iter().next().expect("one statement");
            Ok(Request::Write { stmt, target, limits })
        }
        QueryAction::Explain => {
            let format = match args.format.as_deref() {
                None | Some("json") => PlanFormat::Json,
                Some("text") => PlanFormat::Text,
                Some(f) => {
                    return Err(Error::invalid(format!(
                        "pg_query explain: parameter 'format' is '{f}'; choose json or text"
                    )));
                }
            };
            let stmt = check_sql(required(args.sql, "sql", tool, action)?, args.params).await?;
            classify::check_explainable(&stmt.classified)?;
            let analyze = args.analyze.unwrap_or(false);
            if analyze && stmt.classified.writes && ctx.reads_only {
                return Err(Error::new(
                    ErrorKind::StatementNotAllowed,
                    format!("{}: EXPLAIN ANALYZE runs the statement, and this one writes", ctx.tool),
                )
                .with_hint("this tool only reads: explain without analyze, or use pg_query explain with a session"));
            }
            if analyze && stmt.classified.writes {
                classify::check_write(&stmt.classified)?;
                // EXPLAIN ANALYZE executes the statement: a write goes through the policy like
                // any write, and may only run in a session (so it can be rolled back).
                let hint = "EXPLAIN ANALYZE runs the statement; for a write, begin a session (pg_tx begin) and pass its session_id, then roll back if you only wanted the plan";
                match ctx.authorize(args.session_id.as_deref(), None, false, Some(stmt.sql.as_str())) {
                    Ok(WriteTarget::Session(_)) => {}
                    Ok(WriteTarget::Autocommit) => {
                        return Err(Error::new(ErrorKind::WriteDenied, "EXPLAIN ANALYZE of a write needs a session")
                            .with_hint(hint));
                    }
                    Err(e) if session.is_none() => return Err(e.with_hint(hint)),
                    Err(e) => return Err(e),
                }
                // It runs the write for real in the session: a write that needs confirmation
                // is confirmed through pg_query write's preview, never by explaining it.
                if let Some(why) = ctx.config.confirm_writes.requires(stmt.classified.destructive()) {
                    let err = Error::new(
                        ErrorKind::WriteDenied,
                        format!("{why}: EXPLAIN ANALYZE would run it without a confirmation"),
                    )
                    .with_hint("explain it without analyze, or run it with pg_query write (preview: true, then confirm) in the session");
                    ctx.record(crate::audit::AuditRecord::denial(
                        &ctx.actor(),
                        args.session_id.as_deref(),
                        Some(stmt.sql.as_str()),
                        &err,
                    ));
                    return Err(err);
                }
            }
            // Planning evaluates stable functions (and EXPLAIN ANALYZE runs the statement):
            // the read function policy applies with or without analyze. An analyzed write runs
            // in the caller's session, as a write.
            if !(analyze && stmt.classified.writes) {
                ctx.config.functions.precheck(&stmt.classified)?;
            }
            Ok(Request::Explain {
                stmt,
                analyze,
                buffers: args.buffers.unwrap_or(false),
                verbose: args.verbose.unwrap_or(false),
                format,
                session,
                limits,
            })
        }
        QueryAction::Transaction => {
            let operations = required(args.operations, "operations", tool, action)?;
            if operations.is_empty() {
                return Err(Error::invalid("pg_query transaction: parameter 'operations' is empty"));
            }
            let isolation = match args.isolation_level.as_deref() {
                None => Isolation::default(),
                Some(text) => Isolation::parse(text).ok_or_else(|| {
                    Error::invalid(format!(
                        "pg_query transaction: parameter 'isolation_level' is '{text}'; choose one of {}",
                        Isolation::CHOICES
                    ))
                })?,
            };
            let read_only = args.read_only.unwrap_or(false);
            let mut ops = Vec::with_capacity(operations.len());
            for (index, op) in operations.into_iter().enumerate() {
                let checked = check_sql(op.sql, Some(op.params))
                    .await
                    .and_then(|c| {
                        if read_only {
                            check_read(ctx, &c.classified)?;
                        } else {
                            classify::check_write(&c.classified)?;
                            classify::check_autocommit(&c.classified)?;
                            if classify::needs_autocommit(&c.classified) {
                                return Err(Error::new(
                                    ErrorKind::StatementNotAllowed,
                                    format!("{} cannot run inside a transaction block", c.classified.tag),
                                )
                                .with_hint("run it alone with pg_query write and autocommit: true"));
                            }
                        }
                        Ok(c)
                    })
                    .map_err(|e| e.with_operation_index(index))?;
                ops.push(checked);
            }
            if read_only {
                if args.preview.is_some() || args.confirm.is_some() {
                    return Err(Error::invalid(
                        "pg_query transaction: 'preview' and 'confirm' apply to batches that write, not to read_only ones",
                    ));
                }
            } else {
                let (sql, params) = (joined_sql(&ops), joined_params(&ops));
                let target = ctx.authorize(None, args.autocommit, false, Some(&sql))
                    .map_err(|e| e.with_hint("a batch that writes needs 'autocommit: true' (it commits atomically on its own), or pass read_only: true"))?;
                if preview_requested(args.preview, args.confirm.as_deref())? {
                    return Ok(Request::Preview { ops, target, limits });
                }
                let previewed = preview_ops(&ops);
                let binding = binding(ctx, &sql, &params, &target);
                preview::confirm_write(ctx, &previewed, &target, &limits, binding, args.confirm.as_deref()).await?;
                drop(previewed);
            }
            let lock_timeout = if read_only { None } else { ctx.config.lock_timeout };
            let options = TxOptions { isolation, read_only, deferrable: false, on_error: OnError::Abort, lock_timeout };
            let limits = Limits { lock_timeout, ..limits };
            Ok(Request::Transaction { ops, options, limits })
        }
    }
}

/// The hint of a write rolled back because it affected more rows than a write may without a
/// confirmation.
fn too_many_rows(err: Error) -> Error {
    err.with_hint("preview it (preview: true) to see what it would do, then repeat the same call with confirm: <token>; or narrow its WHERE clause")
}

/// The statements of a call, as a preview runs them.
fn preview_ops(ops: &[Checked]) -> Vec<preview::Op<'_>> {
    ops.iter().map(|op| preview::Op { statement: op.statement(), classified: &op.classified }).collect()
}

/// A read: only reading statements (`classify::check_read`) and no function the policy
/// refuses before sending (the server-side part is the statement's guard,
/// `FunctionPolicy::guard`).
fn check_read(ctx: &Ctx<'_>, c: &Classified) -> Result<()> {
    classify::check_read(c)?;
    ctx.config.functions.precheck(c)
}

pub(crate) async fn run(ctx: &Ctx<'_>, args: Value) -> Result<Body> {
    let args: PgQueryArgs = parse_args("pg_query", args)?;
    let request = parse(ctx, args).await?;
    match request {
        Request::Read { stmt, session, limits } => {
            let statement = stmt.statement().guarded(ctx.config.functions.guard(&stmt.classified));
            let (result, info) = ctx.read(session.as_ref(), &statement, &limits).await?;
            let mut out = result_json(result, &stmt.classified.tag, false, &limits);
            if let Some(info) = info {
                out.insert("session", ctx.session_json(&info));
            }
            Ok(out)
        }
        Request::Write { stmt, target, limits } => {
            let statement = stmt.statement().with_affected_cap(ctx.affected_cap(&target, &stmt.classified));
            let written = ctx.write(&target, &statement, &limits).await;
            let (result, info) = match written {
                Ok(written) => written,
                Err(err) if err.kind() == ErrorKind::WriteDenied => return Err(too_many_rows(err)),
                Err(err) => return Err(ctx.name_lock_holders(err, &stmt.classified.names.relations).await),
            };
            let mut out = result_json(result, &stmt.classified.tag, stmt.classified.counts_rows(), &limits);
            if let Some(info) = info {
                out.insert("session", ctx.session_json(&info));
            }
            Ok(out)
        }
        Request::Explain { stmt, analyze, buffers, verbose, format, session, limits } => {
            let mut sql = SqlBuilder::new("EXPLAIN (FORMAT ");
            sql.push(match format {
                PlanFormat::Json => "JSON",
                PlanFormat::Text => "TEXT",
            });
            if analyze {
                sql.push(", ANALYZE");
            }
            if buffers {
                sql.push(", BUFFERS");
            }
            if verbose {
                sql.push(", VERBOSE");
            }
            sql.push(") ").caller(&stmt.sql);
            let statement = Statement::with_params(sql.build(), stmt.params.clone());
            let limits = Limits { max_rows: 100_000, ..limits };
            let (result, info) = match (&session, analyze && stmt.classified.writes) {
                (Some(id), true) => ctx.write(&WriteTarget::Session(id.clone()), &statement, &limits).await?,
                _ => {
                    let statement = statement.guarded(ctx.config.functions.guard(&stmt.classified));
                    ctx.read(session.as_ref(), &statement, &limits).await?
                }
            };
            let mut out = explain_json(&result, format);
            if let Some(info) = info {
                out["session"] = ctx.session_json(&info);
            }
            Ok(out.into())
        }
        Request::Preview { ops, target, limits } => {
            let (sql, params) = (joined_sql(&ops), joined_params(&ops));
            let previewed = preview_ops(&ops);
            preview::run(ctx, &previewed, &target, &limits, binding(ctx, &sql, &params, &target)).await.map(Body::from)
        }
        Request::Transaction { ops, options, limits } => {
            let statements: Vec<Statement> = ops
                .iter()
                .map(|op| {
                    let statement = op.statement();
                    if options.read_only {
                        statement.guarded(ctx.config.functions.guard(&op.classified))
                    } else {
                        statement.with_affected_cap(ctx.affected_cap(&WriteTarget::Autocommit, &op.classified))
                    }
                })
                .collect();
            let started = std::time::Instant::now();
            let outcome = ctx.executor.batch(&statements, &options, &limits, &ctx.caller.cancel).await;
            if !options.read_only {
                for statement in &statements {
                    let per_op = outcome.as_ref().map(|_| (Default::default(), None)).map_err(Clone::clone);
                    ctx.record(crate::audit::AuditRecord::write(
                        &ctx.actor(),
                        &WriteTarget::Autocommit,
                        statement,
                        &per_op,
                        started.elapsed(),
                    ));
                }
            }
            let results =
                outcome.map_err(|err| if err.kind() == ErrorKind::WriteDenied { too_many_rows(err) } else { err })?;
            let results: Vec<Value> = ops
                .iter()
                .zip(results)
                .map(|(op, r)| result_json(r, &op.classified.tag, op.classified.counts_rows(), &limits).into_value())
                .collect();
            Ok(Body::Value(json!({
                "committed": !options.read_only,
                "isolation_level": options.isolation,
                "read_only": options.read_only,
                "results": results,
            })))
        }
    }
}

/// A read whose rows go to `sink` as they arrive ([`crate::Tools::read_stream`]): the arguments
/// of `pg_query read`, checked the same way (one statement, a reading kind, the read function
/// policy, then the guard on the server), except those a stream has no use for.
pub(crate) async fn read_stream(ctx: &Ctx<'_>, mut args: Value, sink: &mut dyn RowSink) -> Result<Value> {
    if let Some(object) = args.as_object_mut() {
        object.entry("action").or_insert_with(|| json!("read"));
    }
    let args: PgQueryArgs = parse_args("pg_query", args)?;
    if args.action != QueryAction::Read {
        return Err(Error::invalid("a streamed read takes the arguments of pg_query read; 'action' must be 'read'"));
    }
    if args.session_id.is_some() {
        return Err(Error::invalid(
            "pg_query read (streamed): parameter 'session_id' does not apply; a stream runs in a read-only transaction of its own",
        )
        .with_hint("stream without session_id, or read in the session with pg_query read and max_rows"));
    }
    if args.max_rows.is_some() || args.format.is_some() {
        return Err(Error::invalid(
            "pg_query read (streamed): parameters 'max_rows' and 'format' do not apply; a stream hands every row to its sink",
        ));
    }
    let limits = ctx.limits(None, args.timeout_ms)?;
    let stmt = check_sql(required(args.sql, "sql", "pg_query", "read")?, args.params).await?;
    check_read(ctx, &stmt.classified)?;
    let statement = stmt.statement().guarded(ctx.config.functions.guard(&stmt.classified));
    let streamed = ctx.executor.stream(&statement, limits.timeout, sink, &ctx.caller.cancel).await?;
    Ok(json!({
        "fields": streamed.fields,
        "row_count": streamed.rows,
        "truncated": false,
        "command": stmt.classified.tag,
        "duration_ms": streamed.duration_ms,
    }))
}

/// The plan plus a short summary: total cost, estimated/actual rows, times.
fn explain_json(result: &coldquery_core::QueryResult, format: PlanFormat) -> Value {
    match format {
        PlanFormat::Json => {
            let plan = result.scalar().cloned().unwrap_or(Value::Null);
            let top = &plan[0];
            let node = &top["Plan"];
            json!({
                "plan": plan,
                "summary": {
                    "node": node["Node Type"],
                    "total_cost": node["Total Cost"],
                    "estimated_rows": node["Plan Rows"],
                    "actual_rows": node.get("Actual Rows"),
                    "planning_time_ms": top.get("Planning Time"),
                    "execution_time_ms": top.get("Execution Time"),
                },
            })
        }
        PlanFormat::Text => {
            let lines: Vec<String> =
                result.rows.iter().filter_map(|row| row.first().and_then(Value::as_str).map(str::to_owned)).collect();
            let first = lines.first().cloned().unwrap_or_default();
            let total_cost = first
                .split("cost=")
                .nth(1)
                .and_then(|s| s.split("..").nth(1))
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<f64>().ok());
            let estimated_rows = first
                .split(" rows=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<u64>().ok());
            json!({
                "plan": lines.join("\n"),
                "summary": { "total_cost": total_cost, "estimated_rows": estimated_rows },
            })
        }
    }
}
