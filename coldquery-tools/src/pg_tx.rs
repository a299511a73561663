//! `pg_tx`: transactions that live across calls — begin, commit, rollback, savepoints, list,
//! status. The session machinery itself is the [`coldquery_core::SessionStore`]'s.

use coldquery_core::{
    Error, Ident, Isolation, OnError, Result, SavepointOp, SessionEnd, SessionId, SessionInfo, TxOptions,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ctx::{Ctx, ToolArgs, parse_args, required};

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
}

impl ToolArgs for PgTxArgs {
    fn parameters(&self) -> &'static [&'static str] {
        match self.action {
            TxAction::Begin => &["isolation_level", "read_only", "deferrable", "on_error"],
            TxAction::Commit | TxAction::Rollback | TxAction::Status => &["session_id"],
            TxAction::Savepoint | TxAction::Release | TxAction::RollbackTo => &["session_id", "name"],
            TxAction::List => &[],
        }
    }
}

#[derive(Debug)]
enum Request {
    Begin(TxOptions),
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
            Ok(Request::Begin(TxOptions {
                isolation,
                read_only,
                deferrable: args.deferrable.unwrap_or(false),
                on_error,
                lock_timeout: ctx.config.lock_timeout.filter(|_| !read_only),
            }))
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

pub(crate) async fn run(ctx: &Ctx<'_>, args: Value) -> Result<Value> {
    let args: PgTxArgs = parse_args("pg_tx", args)?;
    let owner = ctx.owner();
    match parse(ctx, args)? {
        Request::Begin(options) => {
            let info = ctx.sessions.begin(owner, &options).await?;
            let mut out = session_details(&info);
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
