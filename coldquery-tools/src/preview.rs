//! `preview: true`: run a write where it would run — on the pool, or in the caller's session
//! under a savepoint — in a transaction that always rolls back, and report what it did: rows
//! affected, the planner's estimate, the locks it took, the objects it created, altered or
//! dropped. The result carries a confirmation token for exactly that call
//! ([`crate::confirm`]).

use std::collections::BTreeMap;

use coldquery_core::{Error, ErrorKind, Limits, QueryResult, Result, Sql, SqlBuilder, Statement, WriteTarget};
use serde_json::{Value, json};

use crate::audit::AuditRecord;
use crate::catalog::preview::{LOCKS, OBJECTS};
use crate::classify::{self, Classified};
use crate::confirm::Binding;
use crate::ctx::{Confirmation, Ctx};

/// One statement to preview.
pub(crate) struct Op<'a> {
    pub(crate) statement: Statement,
    pub(crate) classified: &'a Classified,
}

/// What each statement of the preview's transaction is for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    ObjectsBefore,
    LocksBefore,
    Plan(usize),
    Op(usize),
    LocksAfter,
    ObjectsAfter,
}

/// The token binding of a call with these statements.
pub(crate) fn binding<'a>(
    ctx: &'a Ctx<'_>,
    statement: &'a str,
    params: &'a [Value],
    target: &'a WriteTarget,
) -> Binding<'a> {
    Binding {
        tool: ctx.tool,
        action: &ctx.action,
        statement,
        params,
        owner: ctx.owner().as_str(),
        session: match target {
            WriteTarget::Session(id) => Some(id.as_str()),
            WriteTarget::Autocommit => None,
        },
    }
}

/// `preview` and `confirm` are two steps, never one call.
pub(crate) fn preview_requested(preview: Option<bool>, confirm: Option<&str>) -> Result<bool> {
    match (preview.unwrap_or(false), confirm) {
        (true, Some(_)) => Err(Error::invalid(
            "'preview' and 'confirm' are two steps: preview first (it returns the token), then repeat the call with confirm and without preview",
        )),
        (preview, _) => Ok(preview),
    }
}

/// The confirmation step of a write (after [`Ctx::authorize`]): a write the server's
/// `confirm_writes` names, called without a token by a caller who can be asked directly, is
/// previewed and shown to them; accepted, it runs; declined, it is refused. Otherwise the token
/// path of [`Ctx::confirm`] applies.
pub(crate) async fn confirm_write(
    ctx: &Ctx<'_>,
    ops: &[Op<'_>],
    target: &WriteTarget,
    limits: &Limits,
    binding: Binding<'_>,
    token: Option<&str>,
) -> Result<()> {
    let destructive = ops.iter().find_map(|op| op.classified.destructive());
    let required = ctx.config.confirm_writes.requires(destructive);
    if let (None, Some(why), Some(confirmer)) = (token, &required, ctx.caller.confirmer.clone()) {
        let report = run(ctx, ops, target, limits, binding).await?;
        match confirmer.confirm(confirmation_message(why, binding.statement, &report)).await {
            Confirmation::Accepted => {
                ctx.confirmed.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
            Confirmation::Declined => {
                let err = Error::new(ErrorKind::WriteDenied, "the user declined this write when asked to confirm it")
                    .with_hint("nothing was changed; ask the user before trying it again");
                ctx.record(AuditRecord::denial(&ctx.actor(), binding.session, Some(binding.statement), &err));
                return Err(err);
            }
            Confirmation::Unavailable => {}
        }
    }
    ctx.confirm(destructive, token, &binding)
}

/// What the person is asked: why, the statement, and what its preview did.
fn confirmation_message(why: &str, statement: &str, report: &Value) -> String {
    let mut message = format!("{why}. Run it?\n\n{statement}\n");
    for entry in report["statements"].as_array().into_iter().flatten() {
        if let Some(rows) = entry["rows_affected"].as_u64() {
            message.push_str(&format!("\n{}: {rows} rows", entry["command"].as_str().unwrap_or("statement")));
        }
    }
    for (change, verb) in [("dropped", "drops"), ("created", "creates"), ("altered", "alters")] {
        let names: Vec<&str> =
            report["objects"][change].as_array().into_iter().flatten().filter_map(|o| o["name"].as_str()).collect();
        if !names.is_empty() {
            message.push_str(&format!("\nIt {verb}: {}", names.join(", ")));
        }
    }
    message
}

/// Runs the preview and returns its report with a token for `binding`.
pub(crate) async fn run(
    ctx: &Ctx<'_>,
    ops: &[Op<'_>],
    target: &WriteTarget,
    limits: &Limits,
    binding: Binding<'_>,
) -> Result<Value> {
    let token = ctx.confirmations.mint(&binding, ctx.config.confirm_ttl)?;
    let confirm = json!({
        "token": token,
        "expires_in_seconds": ctx.config.confirm_ttl.as_secs(),
        "how": "to run it, repeat the same call (same sql, params and session_id) with confirm set to this token instead of preview",
    });
    let destructive: Vec<&str> = ops.iter().filter_map(|op| op.classified.destructive()).collect();
    let needs_confirmation = ops
        .iter()
        .find_map(|op| ctx.config.confirm_writes.requires(op.classified.destructive()))
        .map_or(Value::Null, Value::String);
    // VACUUM, CREATE INDEX CONCURRENTLY...: they cannot run in a transaction, so nothing can
    // be tried and undone.
    if let Some(op) = ops.iter().find(|op| classify::needs_autocommit(op.classified)) {
        ctx.record(AuditRecord::preview(&ctx.actor(), target, binding.statement, &Ok(Vec::new())));
        return Ok(json!({
            "preview": true,
            "executed": false,
            "reason": format!("{} cannot run inside a transaction block, so it cannot be tried and rolled back", op.classified.tag),
            "commands": ops.iter().map(|op| op.classified.tag.as_str()).collect::<Vec<_>>(),
            "destructive": destructive,
            "needs_confirmation": needs_confirmation,
            "confirm": confirm,
        }));
    }
    let mut roles = vec![Role::ObjectsBefore, Role::LocksBefore];
    let mut statements = vec![Statement::new(Sql::catalog(OBJECTS)), Statement::new(Sql::catalog(LOCKS))];
    for (index, op) in ops.iter().enumerate() {
        if op.classified.explainable() {
            roles.push(Role::Plan(index));
            statements.push(explain(&op.statement));
        }
        roles.push(Role::Op(index));
        statements.push(op.statement.clone());
    }
    roles.extend([Role::LocksAfter, Role::ObjectsAfter]);
    statements.extend([Statement::new(Sql::catalog(LOCKS)), Statement::new(Sql::catalog(OBJECTS))]);
    let limits = Limits { max_rows: 10_000, max_bytes: limits.max_bytes.max(4 * 1024 * 1024), ..*limits };
    let outcome = match target {
        WriteTarget::Autocommit => ctx.executor.preview(&statements, &limits, &ctx.caller.cancel).await,
        WriteTarget::Session(id) => {
            ctx.sessions.preview(ctx.owner(), id, &statements, &limits, &ctx.caller.cancel).await
        }
    };
    let outcome = outcome.map_err(|err| {
        let op = err.operation_index().and_then(|i| roles.get(i)).and_then(|role| match role {
            Role::Plan(op) | Role::Op(op) => Some(*op),
            _ => None,
        });
        let message = format!("the preview failed, and was rolled back: {}", err.message());
        match op {
            Some(op) if ops.len() > 1 => err.with_operation_index(op).with_message(message),
            _ => err.without_operation_index().with_message(message),
        }
    });
    ctx.record(AuditRecord::preview(&ctx.actor(), target, binding.statement, &outcome));
    let results = outcome?;
    let mut plans = vec![Value::Null; ops.len()];
    let mut needs_confirmation = needs_confirmation;
    let mut statements_out = Vec::with_capacity(ops.len());
    let mut before = None;
    let mut locks_before = None;
    let mut locks_after = None;
    let mut after = None;
    for (role, result) in roles.iter().zip(&results) {
        match role {
            Role::ObjectsBefore => before = Some(result),
            Role::LocksBefore => locks_before = Some(result),
            Role::LocksAfter => locks_after = Some(result),
            Role::ObjectsAfter => after = Some(result),
            Role::Plan(index) => plans[*index] = plan_summary(result),
            Role::Op(index) => {
                let op = &ops[*index];
                // A preview runs before any confirmation, so the cap is the unconfirmed call's.
                if let (Some(cap), Some(affected), true) =
                    (ctx.affected_cap(target, op.classified), result.rows_affected, needs_confirmation.is_null())
                    && affected > cap
                {
                    needs_confirmation = json!(format!(
                        "this write affects {affected} rows, more than a write may without a confirmation ({cap}, --confirm-rows)"
                    ));
                }
                statements_out.push(json!({
                    "command": op.classified.tag,
                    "rows_affected": result.rows_affected,
                    "destructive": op.classified.destructive(),
                    "plan": plans[*index].take(),
                }));
            }
        }
    }
    let locks = match (locks_before, locks_after) {
        (Some(b), Some(a)) => locks_taken(b, a, before),
        _ => Vec::new(),
    };
    let objects = match (before, after) {
        (Some(b), Some(a)) if !b.truncated && !a.truncated => objects_changed(b, a),
        _ => json!("too many objects in this database to compare"),
    };
    Ok(json!({
        "preview": true,
        "executed": true,
        "rolled_back": true,
        "statements": statements_out,
        "locks": locks,
        "objects": objects,
        "needs_confirmation": needs_confirmation,
        "confirm": confirm,
    }))
}

/// `EXPLAIN (FORMAT JSON)` of a statement, with its parameters.
fn explain(statement: &Statement) -> Statement {
    let mut sql = SqlBuilder::new("EXPLAIN (FORMAT JSON) ");
    sql.sql(&statement.sql);
    Statement::with_params(sql.build(), statement.params.clone())
}

/// The planner's estimate from an `EXPLAIN (FORMAT JSON)` result.
fn plan_summary(result: &QueryResult) -> Value {
    let plan = result.scalar().cloned().unwrap_or(Value::Null);
    let node = &plan[0]["Plan"];
    json!({ "node": node["Node Type"], "total_cost": node["Total Cost"], "estimated_rows": node["Plan Rows"] })
}

/// The locks of `after` that `before` does not have, each relation named (from `objects`, the
/// objects before the write, when the write dropped it).
fn locks_taken(before: &QueryResult, after: &QueryResult, objects: Option<&QueryResult>) -> Vec<Value> {
    let name_of = |oid: &Value| -> Value {
        objects
            .into_iter()
            .flat_map(|o| &o.rows)
            .find(|row| row.get(3) == Some(oid))
            .and_then(|row| row.get(1).cloned())
            .unwrap_or_else(|| json!(format!("oid {}", oid.as_str().unwrap_or("?"))))
    };
    after
        .rows
        .iter()
        .filter(|row| !before.rows.contains(row))
        .map(|row| {
            let relation = match row.get(1) {
                Some(Value::String(name)) => json!(name),
                _ => name_of(row.first().unwrap_or(&Value::Null)),
            };
            json!({ "relation": relation, "mode": row.get(2).cloned().unwrap_or(Value::Null) })
        })
        .collect()
}

/// Objects created, altered (catalog row rewritten) or dropped, by kind and name.
fn objects_changed(before: &QueryResult, after: &QueryResult) -> Value {
    fn index(result: &QueryResult) -> BTreeMap<(String, String), String> {
        result
            .rows
            .iter()
            .filter_map(|row| {
                let text = |i: usize| row.get(i).and_then(Value::as_str).map(str::to_owned);
                Some(((text(0)?, text(1)?), text(2)?))
            })
            .collect()
    }
    let (before, after) = (index(before), index(after));
    let list = |keys: Vec<&(String, String)>| -> Vec<Value> {
        keys.into_iter().map(|(kind, name)| json!({ "kind": kind, "name": name })).collect()
    };
    let created = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let dropped = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let altered = after.iter().filter(|(k, v)| before.get(*k).is_some_and(|old| old != *v)).map(|(k, _)| k).collect();
    json!({ "created": list(created), "altered": list(altered), "dropped": list(dropped) })
}
