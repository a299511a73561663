//! `pg_admin`: maintenance — `vacuum`, `analyze`, `reindex`, table `stats`, `settings`, and
//! `terminate` (signal a backend).
//!
//! Maintenance statements are built only from static fragments and sanitized identifiers
//! ([`SqlBuilder`]); values (setting names and values, pids) travel as bind parameters. Every
//! action that changes something passes the Default-Deny policy in [`Ctx::authorize`], the one
//! place it is consulted.

use coldquery_core::{
    Error, ErrorKind, Ident, Limits, Param, QualifiedName, QueryResult, Result, SessionId, Sql, SqlBuilder, Statement,
    WriteTarget,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::catalog::admin as catalog;
use crate::ctx::{Ctx, ident, limit, parse_args, reject_unused, required};

const TOOL: &str = "pg_admin";

/// The actions of `pg_admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminAction {
    /// VACUUM a table or the whole database (needs autocommit: true; never in a session).
    Vacuum,
    /// ANALYZE a table or the whole database (needs session_id or autocommit: true).
    Analyze,
    /// REINDEX a table, an index or a schema (needs autocommit: true, or session_id when not concurrent).
    Reindex,
    /// Table statistics: the busiest tables, or one table with its indexes.
    Stats,
    /// List, get or (inside a session) set configuration settings.
    Settings,
    /// Cancel a backend's query or terminate the backend (needs autocommit: true).
    Terminate,
}

/// What `reindex` rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReindexTarget {
    /// Every index of a table.
    Table,
    /// One index.
    Index,
    /// Every index in a schema (cannot run in a session).
    Schema,
}

/// How `terminate` signals a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalMode {
    /// Cancel the backend's current query (pg_cancel_backend); the connection stays.
    #[default]
    Cancel,
    /// End the backend (pg_terminate_backend); its open transaction is rolled back.
    Terminate,
}

/// A setting's value: text, or a number or boolean that is sent as its text form.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    /// Text such as `'64MB'` or `'on'`.
    Text(String),
    /// A number.
    Number(serde_json::Number),
    /// A boolean (sent as `on` / `off`).
    Bool(bool),
}

/// One flat `type` list rather than an `anyOf` of three schemas, for simpler MCP hosts.
impl JsonSchema for SettingValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SettingValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A setting's value: text such as '64MB', or a number or boolean sent as its text form.",
            "type": ["string", "number", "boolean"]
        })
    }
}

impl SettingValue {
    fn to_text(&self) -> String {
        match self {
            SettingValue::Text(text) => text.clone(),
            SettingValue::Number(number) => number.to_string(),
            SettingValue::Bool(b) => if *b { "on" } else { "off" }.to_owned(),
        }
    }
}

/// Arguments of `pg_admin` (flat; which apply depends on `action`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgAdminArgs {
    pub action: AdminAction,
    /// vacuum/analyze/stats: the table (default: all).
    pub table: Option<String>,
    /// The table's, index's or stats' schema.
    pub schema: Option<String>,
    pub full: Option<bool>,
    pub verbose: Option<bool>,
    pub analyze: Option<bool>,
    /// reindex: what to rebuild.
    pub target: Option<ReindexTarget>,
    /// reindex: its name. settings: the setting.
    pub name: Option<String>,
    pub concurrently: Option<bool>,
    /// stats/settings: row cap.
    pub limit: Option<u64>,
    /// settings: the new value (in a session).
    pub value: Option<SettingValue>,
    /// settings: filter by category.
    pub category: Option<String>,
    /// settings: filter names (substring or ILIKE).
    pub pattern: Option<String>,
    /// terminate: the backend pid.
    pub pid: Option<i64>,
    /// terminate: cancel (default) or terminate.
    pub mode: Option<SignalMode>,
    pub session_id: Option<String>,
    pub autocommit: Option<bool>,
}

/// `pg_admin` arguments as a typed request.
#[derive(Debug)]
enum Request {
    /// VACUUM, ANALYZE or REINDEX, already built and authorized.
    Maintenance {
        statement: Statement,
        target: WriteTarget,
        verbose: bool,
    },
    /// The busiest tables.
    StatsTables {
        schema: Option<Ident>,
        limit: usize,
    },
    /// One table with its indexes.
    StatsTable {
        table: QualifiedName,
    },
    SettingsList {
        category: Option<String>,
        pattern: Option<String>,
        limit: usize,
        session: Option<SessionId>,
    },
    SettingsGet {
        name: String,
        session: Option<SessionId>,
    },
    SettingsSet {
        name: String,
        value: String,
        target: WriteTarget,
    },
    Terminate {
        pid: i32,
        mode: SignalMode,
        target: WriteTarget,
    },
}

/// Settings that would break ColdQuery's connection handling or its safety model if a session
/// changed them (even transaction-locally); PostgreSQL's own privilege checks cover the rest.
const PROTECTED_SETTINGS: &[&str] = &[
    "client_encoding",
    "role",
    "session_authorization",
    "session_replication_role",
    "transaction_read_only",
    "default_transaction_read_only",
    "transaction_isolation",
    "default_transaction_isolation",
    "transaction_deferrable",
    "default_transaction_deferrable",
];

/// `table` (`name` or `schema.name`) plus an optional `schema`, which must not both name one.
fn table_name(table: &str, schema: Option<&str>, action: &str) -> Result<QualifiedName> {
    let parsed =
        QualifiedName::parse(table).map_err(|e| Error::invalid(format!("{TOOL} {action}: parameter 'table': {e}")))?;
    match (&parsed.schema, schema) {
        (Some(_), Some(_)) => Err(Error::invalid(format!(
            "{TOOL} {action}: parameter 'table' is schema-qualified and 'schema' is given too; give the schema once"
        ))),
        (_, schema) => {
            let schema = schema.map(|s| ident(s, "schema", TOOL, action)).transpose()?;
            Ok(parsed.or_schema(schema))
        }
    }
}

/// A setting name: letters, digits, `_`, and `.` between parts (`pg_stat_statements.track`).
fn setting_name(name: &str, action: &str) -> Result<String> {
    let valid_part = |part: &str| {
        !part.is_empty()
            && part.len() <= coldquery_core::MAX_IDENT_BYTES
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !part.starts_with(|c: char| c.is_ascii_digit())
    };
    if name.split('.').count() <= 2 && name.split('.').all(valid_part) {
        Ok(name.to_owned())
    } else {
        Err(Error::invalid(format!(
            "{TOOL} {action}: parameter 'name' is not a setting name (letters, digits and '_', optionally 'prefix.name')"
        )))
    }
}

fn parse(ctx: &Ctx<'_>, args: PgAdminArgs) -> Result<Request> {
    let action = ctx.action.as_str();
    match args.action {
        AdminAction::Vacuum => {
            let table = maintenance_table(&args, action)?;
            let full = args.full.unwrap_or(false);
            let verbose = args.verbose.unwrap_or(false);
            let analyze = args.analyze.unwrap_or(false);
            let mut sql = SqlBuilder::new("VACUUM");
            let options: Vec<&'static str> = [(full, "FULL"), (verbose, "VERBOSE"), (analyze, "ANALYZE")]
                .into_iter()
                .filter_map(|(on, option)| on.then_some(option))
                .collect();
            push_options(&mut sql, &options);
            if let Some(table) = &table {
                sql.push(" ").name(table);
            }
            let sql = sql.build();
            let target = ctx.authorize(args.session_id.as_deref(), args.autocommit, true, Some(sql.text()))?;
            Ok(Request::Maintenance { statement: Statement::new(sql), target, verbose })
        }
        AdminAction::Analyze => {
            let table = maintenance_table(&args, action)?;
            let verbose = args.verbose.unwrap_or(false);
            let mut sql = SqlBuilder::new("ANALYZE");
            push_options(&mut sql, if verbose { &["VERBOSE"] } else { &[] });
            if let Some(table) = &table {
                sql.push(" ").name(table);
            }
            let sql = sql.build();
            let target = ctx.authorize(args.session_id.as_deref(), args.autocommit, false, Some(sql.text()))?;
            Ok(Request::Maintenance { statement: Statement::new(sql), target, verbose })
        }
        AdminAction::Reindex => {
            let reindex_target = required(args.target, "target", TOOL, action)?;
            let name = required(args.name.as_deref(), "name", TOOL, action)?;
            let concurrently = args.concurrently.unwrap_or(false);
            let verbose = args.verbose.unwrap_or(false);
            let mut sql = SqlBuilder::new("REINDEX");
            push_options(&mut sql, if verbose { &["VERBOSE"] } else { &[] });
            sql.push(match reindex_target {
                ReindexTarget::Table => " TABLE",
                ReindexTarget::Index => " INDEX",
                ReindexTarget::Schema => " SCHEMA",
            });
            if concurrently {
                sql.push(" CONCURRENTLY");
            }
            sql.push(" ");
            match reindex_target {
                ReindexTarget::Schema => {
                    if args.schema.is_some() {
                        return Err(Error::invalid(format!(
                            "{TOOL} reindex: with target 'schema', 'name' is the schema; do not give 'schema' too"
                        )));
                    }
                    sql.ident(&ident(name, "name", TOOL, action)?);
                }
                ReindexTarget::Table | ReindexTarget::Index => {
                    let qualified = QualifiedName::parse(name)
                        .map_err(|e| Error::invalid(format!("{TOOL} reindex: parameter 'name': {e}")))?;
                    if qualified.schema.is_some() && args.schema.is_some() {
                        return Err(Error::invalid(
                            "pg_admin reindex: parameter 'name' is schema-qualified and 'schema' is given too; give the schema once",
                        ));
                    }
                    let schema = args.schema.as_deref().map(|s| ident(s, "schema", TOOL, action)).transpose()?;
                    sql.name(&qualified.or_schema(schema));
                }
            }
            let sql = sql.build();
            // REINDEX SCHEMA and REINDEX CONCURRENTLY cannot run inside a transaction block.
            let needs_autocommit = concurrently || reindex_target == ReindexTarget::Schema;
            let target =
                ctx.authorize(args.session_id.as_deref(), args.autocommit, needs_autocommit, Some(sql.text()))?;
            Ok(Request::Maintenance { statement: Statement::new(sql), target, verbose })
        }
        AdminAction::Stats => match args.table.as_deref() {
            Some(table) => {
                reject_unused(TOOL, "stats (with 'table')", &[("limit", args.limit.is_some())])?;
                Ok(Request::StatsTable { table: table_name(table, args.schema.as_deref(), action)? })
            }
            None => Ok(Request::StatsTables {
                schema: args.schema.as_deref().map(|s| ident(s, "schema", TOOL, action)).transpose()?,
                limit: limit(ctx, TOOL, action, args.limit, 20)?,
            }),
        },
        AdminAction::Settings => {
            let session = args.session_id.clone().map(SessionId::new);
            match (args.name.as_deref(), &args.value) {
                (None, Some(_)) => {
                    Err(Error::invalid("pg_admin settings: parameter 'value' needs 'name' (the setting to set)"))
                }
                (Some(name), Some(value)) => {
                    reject_unused(
                        TOOL,
                        "settings (set)",
                        &[
                            ("category", args.category.is_some()),
                            ("pattern", args.pattern.is_some()),
                            ("limit", args.limit.is_some()),
                        ],
                    )?;
                    let name = setting_name(name, action)?;
                    if PROTECTED_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
                        return Err(Error::new(
                            ErrorKind::StatementNotAllowed,
                            format!("pg_admin settings: '{name}' cannot be changed through this tool"),
                        )
                        .with_hint("it controls the connection or the transaction ColdQuery manages; begin a session with the options you need (pg_tx begin)"));
                    }
                    if args.session_id.is_none() {
                        return Err(Error::invalid(format!(
                            "pg_admin settings: setting '{name}' needs a session: pass 'session_id' from pg_tx begin (the value is transaction-local and reverts at commit or rollback)"
                        )));
                    }
                    let value = value.to_text();
                    if value.contains('\0') {
                        return Err(Error::invalid("pg_admin settings: parameter 'value' contains a NUL character"));
                    }
                    let target =
                        ctx.authorize(args.session_id.as_deref(), None, false, Some(catalog::SETTING_SET.text()))?;
                    Ok(Request::SettingsSet { name, value, target })
                }
                (Some(name), None) => {
                    reject_unused(
                        TOOL,
                        "settings (get)",
                        &[
                            ("category", args.category.is_some()),
                            ("pattern", args.pattern.is_some()),
                            ("limit", args.limit.is_some()),
                        ],
                    )?;
                    Ok(Request::SettingsGet { name: setting_name(name, action)?, session })
                }
                (None, None) => {
                    let text = |value: Option<String>, param: &str| -> Result<Option<String>> {
                        match value {
                            Some(v) if v.is_empty() || v.contains('\0') => Err(Error::invalid(format!(
                                "{TOOL} settings: parameter '{param}' must be non-empty text"
                            ))),
                            other => Ok(other),
                        }
                    };
                    Ok(Request::SettingsList {
                        category: text(args.category, "category")?,
                        pattern: text(args.pattern, "pattern")?,
                        limit: limit(ctx, TOOL, action, args.limit, 500)?,
                        session,
                    })
                }
            }
        }
        AdminAction::Terminate => {
            let pid = required(args.pid, "pid", TOOL, action)?;
            let pid = i32::try_from(pid).ok().filter(|p| *p > 0).ok_or_else(|| {
                Error::invalid(format!(
                    "{TOOL} terminate: parameter 'pid' is {pid}; a process id is a positive 32-bit integer"
                ))
            })?;
            let mode = args.mode.unwrap_or_default();
            let sql = match mode {
                SignalMode::Cancel => &catalog::CANCEL_BACKEND,
                SignalMode::Terminate => &catalog::TERMINATE_BACKEND,
            };
            // Signalling needs explicit consent and is never part of a session's transaction.
            let target = ctx.authorize(args.session_id.as_deref(), args.autocommit, true, Some(sql.text()))?;
            // Another caller's session is theirs to end (their commit or rollback, or its TTL).
            if ctx.sessions.backend_owner(pid).is_some_and(|owner| owner != *ctx.owner()) {
                return Err(Error::new(
                    ErrorKind::StatementNotAllowed,
                    format!("{TOOL} terminate: pid {pid} runs another caller's ColdQuery session"),
                )
                .with_hint("only the caller that began a session can end it; idle sessions also expire on their own"));
            }
            Ok(Request::Terminate { pid, mode, target })
        }
    }
}

/// The table of `vacuum` / `analyze`, if any (`schema` alone is refused).
fn maintenance_table(args: &PgAdminArgs, action: &str) -> Result<Option<QualifiedName>> {
    match (args.table.as_deref(), args.schema.as_deref()) {
        (Some(table), schema) => table_name(table, schema, action).map(Some),
        (None, Some(_)) => Err(Error::invalid(format!(
            "{TOOL} {action}: parameter 'schema' needs 'table' ({action} works on one table, or on the whole database without either)"
        ))),
        (None, None) => Ok(None),
    }
}

/// Appends ` (A, B)` for the given options, or nothing.
fn push_options(sql: &mut SqlBuilder, options: &[&'static str]) {
    for (i, option) in options.iter().enumerate() {
        sql.push(if i == 0 { " (" } else { ", " }).push(option);
    }
    if !options.is_empty() {
        sql.push(")");
    }
}

/// The first row of a result as a JSON object (`Null` when there is none).
fn first_row(result: &QueryResult) -> Value {
    result.rows_as_objects().into_iter().next().unwrap_or(Value::Null)
}

fn target_name(target: &WriteTarget) -> &'static str {
    match target {
        WriteTarget::Session(_) => "session",
        WriteTarget::Autocommit => "autocommit",
    }
}

pub(crate) async fn run(ctx: &Ctx<'_>, args: Value) -> Result<Value> {
    let args: PgAdminArgs = parse_args(TOOL, args)?;
    match parse(ctx, args)? {
        Request::Maintenance { statement, target, verbose } => {
            // Maintenance can take long; the statement timeout still applies.
            let limits = ctx.catalog_limits(100);
            let (result, info) = ctx.write(&target, &statement, &limits).await?;
            let mut out = json!({
                "status": "done",
                "statement": statement.sql.text(),
                "ran_in": target_name(&target),
                "duration_ms": result.duration_ms,
            });
            if verbose {
                out["note"] = json!(
                    "VERBOSE progress messages are not returned by this tool; call pg_admin stats to see the table's state"
                );
            }
            if let Some(info) = info {
                out["session"] = ctx.session_json(&info);
            }
            Ok(out)
        }
        Request::StatsTables { schema, limit } => {
            let schema = schema.map_or(Param::Null, |s| Param::Text(s.as_str().to_owned()));
            let statement = Statement::with_params(catalog::STATS_TABLES, vec![schema]);
            let (result, _) = ctx.read(None, &statement, &ctx.catalog_limits(limit)).await?;
            Ok(json!({
                "tables": result.rows_as_objects(),
                "count": result.rows.len(),
                "truncated": result.truncated,
                "note": "counters are cumulative since the statistics were last reset; scans = seq_scan + idx_scan",
            }))
        }
        Request::StatsTable { table } => {
            let schema = table.schema.as_ref().map_or(Param::Null, |s| Param::Text(s.as_str().to_owned()));
            let statement =
                Statement::with_params(catalog::STATS_TABLE, vec![schema, Param::Text(table.name.as_str().to_owned())]);
            let (result, _) = ctx.read(None, &statement, &ctx.catalog_limits(1)).await?;
            let row = first_row(&result);
            if row.is_null() {
                return Err(Error::new(
                    ErrorKind::DatabaseError,
                    format!("table {table} does not exist (or is not visible on the search_path)"),
                )
                .with_sqlstate("42P01")
                .with_hint("list tables with pg_schema list, or give 'schema'"));
            }
            Ok(row)
        }
        Request::SettingsList { category, pattern, limit, session } => {
            let statement = Statement::with_params(
                catalog::SETTINGS_LIST,
                vec![category.map_or(Param::Null, Param::Text), pattern.map_or(Param::Null, Param::Text)],
            );
            let (result, info) = ctx.read(session.as_ref(), &statement, &ctx.catalog_limits(limit)).await?;
            let mut out = json!({
                "settings": result.rows_as_objects(),
                "count": result.rows.len(),
                "truncated": result.truncated,
            });
            if let Some(info) = info {
                out["session"] = ctx.session_json(&info);
            }
            Ok(out)
        }
        Request::SettingsGet { name, session } => {
            let statement = Statement::with_params(catalog::SETTING_GET, vec![Param::Text(name.clone())]);
            let (result, info) = ctx.read(session.as_ref(), &statement, &ctx.catalog_limits(1)).await?;
            let mut row = first_row(&result);
            if row.is_null() || row["setting"].is_null() {
                return Err(Error::new(
                    ErrorKind::DatabaseError,
                    format!("unrecognized configuration parameter \"{name}\" (or it is not set)"),
                )
                .with_sqlstate("42704")
                .with_hint("find settings with pg_admin settings and 'pattern'; extension settings appear once the extension's library is loaded"));
            }
            if let Some(info) = info {
                row["session"] = ctx.session_json(&info);
            }
            Ok(row)
        }
        Request::SettingsSet { name, value, target } => {
            let statement =
                Statement::with_params(catalog::SETTING_SET, vec![Param::Text(name.clone()), Param::Text(value)]);
            let (result, info) = ctx.write(&target, &statement, &ctx.catalog_limits(1)).await?;
            let mut out = json!({
                "name": name,
                "setting": result.scalar().cloned().unwrap_or(Value::Null),
                "scope": "transaction",
                "note": "the value holds in this session's transaction only and reverts at commit or rollback",
            });
            if let Some(info) = info {
                out["session"] = ctx.session_json(&info);
            }
            Ok(out)
        }
        Request::Terminate { pid, mode, target } => {
            let sql: Sql = match mode {
                SignalMode::Cancel => catalog::CANCEL_BACKEND,
                SignalMode::Terminate => catalog::TERMINATE_BACKEND,
            };
            let statement = Statement::with_params(sql, vec![Param::Int(i64::from(pid))]);
            let limits = Limits { max_rows: 1, ..ctx.catalog_limits(1) };
            let (result, _) = ctx.write(&target, &statement, &limits).await?;
            let row = first_row(&result);
            if row["own"] == json!(true) {
                return Err(Error::invalid(format!(
                    "pg_admin terminate: pid {pid} is the connection running this call"
                )));
            }
            if row["found"] != json!(true) {
                return Err(Error::invalid(format!("pg_admin terminate: no server process has pid {pid}"))
                    .with_hint("list backends with pg_monitor activity (include_idle: true)"));
            }
            let signalled = row["signalled"] == json!(true);
            let mode_name = match mode {
                SignalMode::Cancel => "cancel",
                SignalMode::Terminate => "terminate",
            };
            Ok(json!({
                "pid": pid,
                "mode": mode_name,
                "signalled": signalled,
                "backend": {
                    "user": row["user"],
                    "database": row["database"],
                    "application": row["application"],
                    "backend_type": row["backend_type"],
                    "state": row["state"],
                    "query": row["query"],
                },
                "note": match (mode, signalled) {
                    (_, false) => "PostgreSQL did not signal the process (it may have exited meanwhile)",
                    (SignalMode::Cancel, true) => "cancel stops the backend's current query only; an idle transaction stays open (use mode 'terminate' to end it)",
                    (SignalMode::Terminate, true) => "the backend was told to end; its open transaction is rolled back",
                },
            }))
        }
    }
}
