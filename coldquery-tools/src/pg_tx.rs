//! `pg_tx`: transactions that live across calls — begin, commit, rollback, savepoints, list,
//! status. The session machinery itself is the [`coldquery_core::SessionStore`]'s.

use coldquery_core::{
    Error, Ident, Isolation, OnError, Param, Result, SavepointOp, SessionEnd, SessionId, SessionInfo, Statement,
    TxOptions,
};

use crate::catalog::admin::SETTING_SET as SET_LOCAL;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ctx::{Ctx, parse_args, required};

/// The actions of `pg_tx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxAction {
    /// Open a transaction; returns its session_id.
    Begin,
    /// Commit and close the session.
    Commit,
    /// Roll back and close the session.
    Rollback,
    /// Create a savepoint.
    Savepoint,
    /// Release (forget) a savepoint.
    Release,
    /// Roll back to a savepoint (also recovers an aborted transaction).
    RollbackTo,
    /// Your open sessions.
    List,
    /// One session's state.
    Status,
}

/// Arguments of `pg_tx`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgTxArgs {
    pub action: TxAction,
    /// The session from begin.
    pub session_id: Option<String>,
    /// begin: read_committed | repeatable_read | serializable.
    pub isolation_level: Option<String>,
    pub read_only: Option<bool>,
    pub deferrable: Option<bool>,
    /// begin: abort (default) | rollback_statement.
    pub on_error: Option<String>,
    /// The savepoint.
    pub name: Option<String>,
    /// begin: act as this role for the whole transaction (row-level security); one the server allows.
    pub role: Option<String>,
    /// begin: request settings for the transaction, e.g. {"request.jwt.claims": {...}}.
    pub settings: Option<serde_json::Map<String, Value>>,
}

/// Who a session acts as, set once at begin for its whole transaction.
#[derive(Debug, Default)]
struct Assume {
    role: Option<String>,
    /// Request settings (`request.*`), name and text value.
    settings: Vec<(String, String)>,
}

/// The prefix of the settings a session may be given at begin (PostgREST's convention for
/// request data that row-level security policies read with `current_setting`).
const REQUEST_SETTINGS: &str = "request.";

#[derive(Debug)]
enum Request {
    Begin(TxOptions, Assume),
    End(SessionId, SessionEnd),
    Savepoint(SessionId, SavepointOp, Ident),
    List,
    Status(SessionId),
}

fn parse(ctx: &Ctx<'_>, args: PgTxArgs) -> Result<Request> {
    let tool = "pg_tx";
    let action = ctx.action.as_str();
    let session = |args: &PgTxArgs| required(args.session_id.clone(), "session_id", tool, action).map(SessionId::new);
    match args.action {
        TxAction::Begin => {
            let isolation = match args.isolation_level.as_deref() {
                None => Isolation::default(),
                Some(text) => Isolation::parse(text).ok_or_else(|| {
                    Error::invalid(format!(
                        "pg_tx begin: parameter 'isolation_level' is '{text}'; choose one of {}",
                        Isolation::CHOICES
                    ))
                })?,
            };
            let on_error = match args.on_error.as_deref() {
                None | Some("abort") => OnError::Abort,
                Some("rollback_statement") => OnError::RollbackStatement,
                Some(other) => {
                    return Err(Error::invalid(format!(
                        "pg_tx begin: parameter 'on_error' is '{other}'; choose abort or rollback_statement"
                    )));
                }
            };
            let read_only = args.read_only.unwrap_or(false) || ctx.policy.read_only();
            let assume = assume(ctx, args.role, args.settings)?;
            Ok(Request::Begin(
                TxOptions {
                    isolation,
                    read_only,
                    deferrable: args.deferrable.unwrap_or(false),
                    on_error,
                    lock_timeout: ctx.config.lock_timeout.filter(|_| !read_only),
                },
                assume,
            ))
        }
        TxAction::Commit | TxAction::Rollback | TxAction::Status => {
            let id = session(&args)?;
            Ok(match args.action {
                TxAction::Commit => Request::End(id, SessionEnd::Commit),
                TxAction::Rollback => Request::End(id, SessionEnd::Rollback),
                _ => Request::Status(id),
            })
        }
        TxAction::Savepoint | TxAction::Release | TxAction::RollbackTo => {
            let id = session(&args)?;
            let name = required(args.name.as_deref(), "name", tool, action)?;
            let name =
                Ident::new(name).map_err(|e| Error::invalid(format!("pg_tx {action}: parameter 'name': {e}")))?;
            let op = match args.action {
                TxAction::Savepoint => SavepointOp::Create,
                TxAction::Release => SavepointOp::Release,
                _ => SavepointOp::RollbackTo,
            };
            Ok(Request::Savepoint(id, op, name))
        }
        TxAction::List => Ok(Request::List),
    }
}

/// The role and request settings a session is begun with, checked against the server's
/// `--allow-roles`.
fn assume(ctx: &Ctx<'_>, role: Option<String>, settings: Option<serde_json::Map<String, Value>>) -> Result<Assume> {
    if let Some(role) = &role
        && !ctx.config.allowed_roles.iter().any(|allowed| allowed == role)
    {
        let allowed = if ctx.config.allowed_roles.is_empty() {
            "this server allows none (--allow-roles)".to_owned()
        } else {
            format!("this server allows {}", ctx.config.allowed_roles.join(", "))
        };
        return Err(Error::invalid(format!("pg_tx begin: parameter 'role' is '{role}'; {allowed}")));
    }
    if settings.as_ref().is_some_and(|s| !s.is_empty()) && ctx.config.allowed_roles.is_empty() {
        return Err(Error::invalid(
            "pg_tx begin: parameter 'settings' comes with 'role', and this server allows none (--allow-roles)",
        ));
    }
    let mut assumed = Vec::new();
    for (name, value) in settings.unwrap_or_default() {
        let well_formed = name.starts_with(REQUEST_SETTINGS)
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !well_formed {
            return Err(Error::invalid(format!(
                "pg_tx begin: setting '{name}' is not a request setting; names start with '{REQUEST_SETTINGS}' (lowercase letters, digits, '_' and '.')"
            )));
        }
        let text = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        assumed.push((name, text));
    }
    Ok(Assume { role, settings: assumed })
}

/// A session as `list` and `status` show it.
pub(crate) fn session_details(info: &SessionInfo) -> Value {
    json!({
        "session_id": info.id,
        "transaction_state": info.transaction_state,
        "age_seconds": info.age_seconds,
        "idle_seconds": info.idle_seconds,
        "expires_in_seconds": info.expires_in_seconds,
        "isolation_level": info.options.isolation,
        "read_only": info.options.read_only,
        "deferrable": info.options.deferrable,
        "on_error": info.options.on_error,
        "statements": info.statements,
    })
}

/// Sets the session's role and request settings, transaction-local, as its first statements.
async fn take_on(ctx: &Ctx<'_>, id: &SessionId, assume: &Assume) -> Result<()> {
    let limits = ctx.catalog_limits(1);
    let mut statements = Vec::new();
    if let Some(role) = &assume.role {
        statements.push(Statement::with_params(SET_LOCAL, vec![Param::Text("role".into()), Param::Text(role.clone())]));
    }
    for (name, value) in &assume.settings {
        statements.push(Statement::with_params(SET_LOCAL, vec![Param::Text(name.clone()), Param::Text(value.clone())]));
    }
    for statement in &statements {
        ctx.sessions.run(ctx.owner(), id, statement, &limits, &ctx.caller.cancel).await?;
    }
    Ok(())
}

pub(crate) async fn run(ctx: &Ctx<'_>, args: Value) -> Result<Value> {
    let args: PgTxArgs = parse_args("pg_tx", args)?;
    let owner = ctx.owner();
    match parse(ctx, args)? {
        Request::Begin(options, assume) => {
            let info = ctx.sessions.begin(owner, &options).await?;
            if let Err(err) = take_on(ctx, &info.id, &assume).await {
                let _ = ctx.sessions.end(owner, &info.id, SessionEnd::Rollback).await;
                return Err(err);
            }
            if assume.role.is_some() || !assume.settings.is_empty() {
                let names: Vec<&str> = assume.settings.iter().map(|(name, _)| name.as_str()).collect();
                ctx.record(crate::audit::AuditRecord::assumed(
                    &ctx.actor(),
                    info.id.as_str(),
                    assume.role.as_deref(),
                    &names,
                ));
            }
            let mut out = session_details(&info);
            if let Some(role) = &assume.role {
                out["role"] = json!(role);
            }
            out["session"] = ctx.session_json(&info);
            out["next"] = json!(
                "pass this session_id to pg_query (read/write/explain), pg_schema or pg_admin calls; finish with pg_tx commit or rollback"
            );
            Ok(out)
        }
        Request::End(id, end) => {
            let info = ctx.sessions.end(owner, &id, end).await?;
            Ok(json!({
                "session_id": info.id,
                "status": match end { SessionEnd::Commit => "committed", SessionEnd::Rollback => "rolled_back" },
                "statements": info.statements,
            }))
        }
        Request::Savepoint(id, op, name) => {
            let info = ctx.sessions.savepoint(owner, &id, op, &name).await?;
            Ok(json!({
                "savepoint": name.as_str(),
                "status": match op {
                    SavepointOp::Create => "created",
                    SavepointOp::Release => "released",
                    SavepointOp::RollbackTo => "rolled_back_to",
                },
                "session": ctx.session_json(&info),
            }))
        }
        Request::List => {
            let sessions = ctx.sessions.list(owner).await;
            let (_, max) = ctx.sessions.counts();
            Ok(json!({
                "sessions": sessions.iter().map(session_details).collect::<Vec<_>>(),
                "count": sessions.len(),
                "max_sessions": max,
            }))
        }
        Request::Status(id) => {
            let info = ctx.sessions.status(owner, &id).await?;
            let mut out = session_details(&info);
            out["session"] = ctx.session_json(&info);
            Ok(out)
        }
    }
}
