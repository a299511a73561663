//! `pg_monitor`: read-only observation — `health` (with `deep` checks), `activity`,
//! `connections`, `locks`, `size`, `top_queries`.
//!
//! Every statement is fixed catalog SQL (or, for `top_queries`, static fragments chosen by an
//! enum plus the extension's sanitized schema name) run in a read-only transaction that is
//! rolled back. Thresholds live here, in Rust, so the SQL only measures.

use coldquery_core::{Error, ErrorKind, Ident, Param, QueryResult, Result, Sql, SqlBuilder, Statement};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::catalog::monitor as catalog;
use crate::ctx::{Ctx, limit, parse_args};

const TOOL: &str = "pg_monitor";

/// The actions of `pg_monitor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MonitorAction {
    /// Server status, version, uptime, pool and sessions; deep: true adds checks.
    Health,
    /// Backends other than this one: state, waits, durations, query.
    Activity,
    /// Connection counts by state, database and user, against max_connections.
    Connections,
    /// Who blocks whom (or every lock with blocking_only: false).
    Locks,
    /// Database sizes and the largest tables and indexes.
    Size,
    /// The most expensive statements, from pg_stat_statements.
    TopQueries,
}

/// How `top_queries` ranks statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopOrder {
    /// Total execution time (default): what costs the server most overall.
    #[default]
    TotalTime,
    /// Mean execution time: the slowest statements per call.
    MeanTime,
    /// Number of calls: the most frequent statements.
    Calls,
}

/// Arguments of `pg_monitor` (flat; which apply depends on `action`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgMonitorArgs {
    pub action: MonitorAction,
    /// health: run the checks too.
    pub deep: Option<bool>,
    pub include_idle: Option<bool>,
    /// activity: only queries running this long.
    pub min_duration_ms: Option<u64>,
    /// Row cap.
    pub limit: Option<u64>,
    /// locks: only blocked and blocking (default true).
    pub blocking_only: Option<bool>,
    /// size: only this database.
    pub database: Option<String>,
    /// top_queries: sort.
    pub order_by: Option<TopOrder>,
}

/// `pg_monitor` arguments as a typed request.
#[derive(Debug)]
enum Request {
    Health { deep: bool },
    Activity { include_idle: bool, min_duration_ms: Option<u64>, limit: usize },
    Connections,
    Locks { blocking_only: bool, limit: usize },
    Size { database: Option<Ident>, limit: usize },
    TopQueries { order_by: TopOrder, limit: usize },
}

fn parse(ctx: &Ctx<'_>, args: PgMonitorArgs) -> Result<Request> {
    let action = ctx.action.as_str();
    use MonitorAction as A;
    Ok(match args.action {
        A::Health => Request::Health { deep: args.deep.unwrap_or(false) },
        A::Activity => Request::Activity {
            include_idle: args.include_idle.unwrap_or(false),
            min_duration_ms: args.min_duration_ms,
            limit: limit(ctx, TOOL, action, args.limit, 50)?,
        },
        A::Connections => Request::Connections,
        A::Locks => Request::Locks {
            blocking_only: args.blocking_only.unwrap_or(true),
            limit: limit(ctx, TOOL, action, args.limit, 100)?,
        },
        A::Size => Request::Size {
            database: args
                .database
                .as_deref()
                .map(|d| Ident::new(d).map_err(|e| Error::invalid(format!("{TOOL} size: parameter 'database': {e}"))))
                .transpose()?,
            limit: limit(ctx, TOOL, action, args.limit, 10)?,
        },
        A::TopQueries => Request::TopQueries {
            order_by: args.order_by.unwrap_or_default(),
            limit: limit(ctx, TOOL, action, args.limit, 10)?,
        },
    })
}

pub(crate) async fn run(ctx: &Ctx<'_>, args: Value) -> Result<Value> {
    let args: PgMonitorArgs = parse_args(TOOL, args)?;
    match parse(ctx, args)? {
        Request::Health { deep } => Ok(health(ctx, deep).await),
        Request::Activity { include_idle, min_duration_ms, limit } => {
            let statement = Statement::with_params(
                catalog::ACTIVITY,
                vec![
                    Param::Bool(include_idle),
                    min_duration_ms.map_or(Param::Null, |ms| Param::Int(i64::try_from(ms).unwrap_or(i64::MAX))),
                ],
            );
            let result = read(ctx, &statement, limit).await?;
            Ok(json!({
                "backends": result.rows_as_objects(),
                "count": result.rows.len(),
                "truncated": result.truncated,
                "include_idle": include_idle,
            }))
        }
        Request::Connections => {
            let result = read(ctx, &Statement::new(catalog::CONNECTIONS), 1).await?;
            let mut out = first_row(&result);
            out["utilization_percent"] = json!(utilization(&out).2);
            Ok(out)
        }
        Request::Locks { blocking_only: true, limit } => {
            let result = read(ctx, &Statement::new(catalog::LOCKS_BLOCKING), limit).await?;
            let waits = result.rows_as_objects();
            Ok(json!({
                "blocking_only": true,
                "root_blockers": root_blockers(&waits),
                "waits": waits,
                "count": result.rows.len(),
                "truncated": result.truncated,
            }))
        }
        Request::Locks { blocking_only: false, limit } => {
            let result = read(ctx, &Statement::new(catalog::LOCKS_ALL), limit).await?;
            Ok(json!({
                "blocking_only": false,
                "locks": result.rows_as_objects(),
                "count": result.rows.len(),
                "truncated": result.truncated,
            }))
        }
        Request::Size { database, limit } => {
            let filter = database.as_ref().map_or(Param::Null, |d| Param::Text(d.as_str().to_owned()));
            let databases = read(ctx, &Statement::with_params(catalog::SIZE_DATABASES, vec![filter]), limit).await?;
            let tables = read(ctx, &Statement::new(catalog::SIZE_TABLES), limit).await?;
            let indexes = read(ctx, &Statement::new(catalog::SIZE_INDEXES), limit).await?;
            let mut out = json!({
                "databases": databases.rows_as_objects(),
                "tables": tables.rows_as_objects(),
                "indexes": indexes.rows_as_objects(),
                "truncated": databases.truncated || tables.truncated || indexes.truncated,
                "note": "tables and indexes are those of the connected database, largest first",
            });
            if database.is_some() && databases.rows.is_empty() {
                out["note"] = json!(
                    "no database by that name that you may connect to; tables and indexes are those of the connected database"
                );
            }
            Ok(out)
        }
        Request::TopQueries { order_by, limit } => top_queries(ctx, order_by, limit).await,
    }
}

/// A read-only catalog read of at most `rows` rows.
async fn read(ctx: &Ctx<'_>, statement: &Statement, rows: usize) -> Result<QueryResult> {
    ctx.read(None, statement, &ctx.catalog_limits(rows)).await.map(|(result, _)| result)
}

fn first_row(result: &QueryResult) -> Value {
    result.rows_as_objects().into_iter().next().unwrap_or_else(|| Value::Object(Map::new()))
}

fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

/// Blockers that are not themselves waiting: the roots of the blocking tree.
fn root_blockers(waits: &[Value]) -> Vec<i64> {
    let waiting: Vec<i64> = waits.iter().filter_map(|w| w["waiting_pid"].as_i64()).collect();
    let mut roots: Vec<i64> = waits
        .iter()
        .flat_map(|w| w["blocked_by"].as_array().cloned().unwrap_or_default())
        .filter_map(|pid| pid.as_i64())
        .filter(|pid| !waiting.contains(pid))
        .collect();
    roots.sort_unstable();
    roots.dedup();
    roots
}

async fn top_queries(ctx: &Ctx<'_>, order_by: TopOrder, limit: usize) -> Result<Value> {
    let extension = read(ctx, &Statement::new(catalog::STATEMENTS_EXTENSION), 1).await?;
    let Some(row) = extension.rows_as_objects().into_iter().next() else {
        return Err(Error::new(
            ErrorKind::StatementNotAllowed,
            "top_queries needs the pg_stat_statements extension, which is not installed in this database",
        )
        .with_hint("to enable it: add pg_stat_statements to shared_preload_libraries in postgresql.conf, restart PostgreSQL, then run CREATE EXTENSION pg_stat_statements; in this database (pg_query write with autocommit: true)"));
    };
    if row["supported"] != json!(true) {
        return Err(Error::new(
            ErrorKind::StatementNotAllowed,
            format!(
                "top_queries needs pg_stat_statements 1.8 or later; this database has version {}",
                row["version"].as_str().unwrap_or("unknown")
            ),
        )
        .with_hint("run ALTER EXTENSION pg_stat_statements UPDATE; (PostgreSQL 13 or later)"));
    }
    let schema = row["schema"]
        .as_str()
        .and_then(|s| Ident::new(s).ok())
        .ok_or_else(|| Error::internal("pg_stat_statements has no schema name"))?;
    let mut sql = SqlBuilder::new(catalog::TOP_QUERIES_SELECT);
    sql.ident(&schema).push(".\"pg_stat_statements\"").push(catalog::TOP_QUERIES_FROM);
    sql.push(match order_by {
        TopOrder::TotalTime => catalog::TOP_QUERIES_ORDER_TOTAL,
        TopOrder::MeanTime => catalog::TOP_QUERIES_ORDER_MEAN,
        TopOrder::Calls => catalog::TOP_QUERIES_ORDER_CALLS,
    });
    let result = read(ctx, &Statement::new(sql.build()), limit).await.map_err(|e| {
        // Installed but not loaded: PostgreSQL says so with SQLSTATE 55000.
        if e.sqlstate() == Some("55000") {
            e.with_kind(ErrorKind::StatementNotAllowed).with_hint(
                "pg_stat_statements is installed but its library is not loaded: add it to shared_preload_libraries in postgresql.conf and restart PostgreSQL",
            )
        } else {
            e
        }
    })?;
    Ok(json!({
        "order_by": match order_by {
            TopOrder::TotalTime => "total_time",
            TopOrder::MeanTime => "mean_time",
            TopOrder::Calls => "calls",
        },
        "queries": result.rows_as_objects(),
        "count": result.rows.len(),
        "truncated": result.truncated,
        "extension_version": row["version"],
        "note": "statements of the connected database since pg_stat_statements was last reset; times in milliseconds",
    }))
}

// ---------------------------------------------------------------------------------------------
// health

/// The level of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Critical,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Critical => "critical",
        }
    }

    /// `Critical` at or above `critical`, `Warn` at or above `warn`.
    fn of(value: f64, warn: f64, critical: f64) -> Level {
        if value >= critical {
            Level::Critical
        } else if value >= warn {
            Level::Warn
        } else {
            Level::Ok
        }
    }
}

/// What a check found.
#[derive(Debug)]
struct Verdict {
    level: Level,
    detail: String,
    value: Option<Value>,
}

/// One deep-health check: a catalog query and the thresholds that judge its rows.
struct Check {
    name: &'static str,
    sql: Sql,
    judge: fn(&[Value]) -> Verdict,
    /// Whether the rows are worth showing as `items` (not for single-row measurements).
    items: bool,
}

/// How many items a check lists at most.
const CHECK_ITEMS: usize = 20;

const CHECKS: &[Check] = &[
    Check { name: "connection_utilization", sql: catalog::CONNECTIONS, judge: judge_connections, items: false },
    Check { name: "cache_hit_ratio", sql: catalog::CHECK_CACHE_HIT, judge: judge_cache_hit, items: false },
    Check { name: "invalid_indexes", sql: catalog::CHECK_INVALID_INDEXES, judge: judge_invalid_indexes, items: true },
    Check {
        name: "duplicate_indexes",
        sql: catalog::CHECK_DUPLICATE_INDEXES,
        judge: judge_duplicate_indexes,
        items: true,
    },
    Check { name: "unused_indexes", sql: catalog::CHECK_UNUSED_INDEXES, judge: judge_unused_indexes, items: true },
    Check { name: "dead_tuples", sql: catalog::CHECK_DEAD_TUPLES, judge: judge_dead_tuples, items: true },
    Check { name: "xid_wraparound", sql: catalog::CHECK_WRAPAROUND, judge: judge_wraparound, items: true },
    Check { name: "sequences", sql: catalog::CHECK_SEQUENCES, judge: judge_sequences, items: true },
    Check { name: "long_running_queries", sql: catalog::CHECK_LONG_RUNNING, judge: judge_long_running, items: true },
    Check {
        name: "idle_in_transaction",
        sql: catalog::CHECK_IDLE_IN_TRANSACTION,
        judge: judge_idle_in_transaction,
        items: true,
    },
    Check { name: "blocked_queries", sql: catalog::CHECK_BLOCKED, judge: judge_blocked, items: true },
    Check { name: "replication", sql: catalog::CHECK_REPLICATION, judge: judge_replication, items: true },
    Check { name: "role_posture", sql: catalog::CHECK_ROLE_POSTURE, judge: judge_posture, items: false },
];

/// How to give reads a role that holds none of the rights [`catalog::CHECK_ROLE_POSTURE`] lists.
pub(crate) const LEAST_PRIVILEGE_RECIPE: &str = "CREATE ROLE coldquery_reader LOGIN PASSWORD '…' NOSUPERUSER NOREPLICATION NOBYPASSRLS; \
     GRANT CONNECT ON DATABASE app TO coldquery_reader; GRANT pg_read_all_data TO coldquery_reader; \
     then pass its URL as --read-database-url (COLDQUERY_READ_DATABASE_URL), see docs/SECURITY.md";

fn judge_posture(rows: &[Value]) -> Verdict {
    let Some(role) = rows.first().and_then(|r| r["role"].as_str()) else {
        return Verdict {
            level: Level::Ok,
            detail:
                "reads run as a role without superuser, REPLICATION, BYPASSRLS or server-file and signalling rights"
                    .into(),
            value: None,
        };
    };
    let rights: Vec<&str> = rows.iter().filter_map(|r| r["right"].as_str()).collect();
    Verdict {
        level: Level::Warn,
        detail: format!(
            "reads run as role {role}, which holds {}: ColdQuery's checks and the read-only transaction are then the only gates PostgreSQL relies on; least privilege: {LEAST_PRIVILEGE_RECIPE}",
            rights.join(", ")
        ),
        value: Some(json!(rights)),
    }
}

/// The `role_posture` check alone: its detail when the role holds rights it should not.
pub(crate) async fn posture_warning(ctx: &Ctx<'_>) -> Result<Option<String>> {
    let result = read(ctx, &Statement::new(catalog::CHECK_ROLE_POSTURE), CHECK_ITEMS).await?;
    let verdict = judge_posture(&result.rows_as_objects());
    Ok((verdict.level != Level::Ok).then_some(verdict.detail))
}

fn num(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

/// The largest value of `key` over `rows`.
fn max_of(rows: &[Value], key: &str) -> f64 {
    rows.iter().map(|r| num(&r[key])).fold(0.0, f64::max)
}

fn judge_connections(rows: &[Value]) -> Verdict {
    let Some(row) = rows.first() else {
        return Verdict { level: Level::Ok, detail: "no data".into(), value: None };
    };
    let (used, available, percent) = utilization(row);
    Verdict {
        level: Level::of(percent, 75.0, 90.0),
        detail: format!("{used} of {available} connection slots in use ({percent}%)"),
        value: Some(json!(percent)),
    }
}

/// Client connections against the slots ordinary roles can use (`max_connections` minus
/// `superuser_reserved_connections`), from a [`catalog::CONNECTIONS`] row: (used, available, %).
fn utilization(row: &Value) -> (f64, f64, f64) {
    let used = num(&row["total"]);
    let available = (num(&row["max_connections"]) - num(&row["superuser_reserved_connections"])).max(1.0);
    (used, available, round(100.0 * used / available, 1))
}

fn judge_cache_hit(rows: &[Value]) -> Verdict {
    let (hits, reads) = rows.first().map_or((0.0, 0.0), |r| (num(&r["hits"]), num(&r["reads"])));
    if hits + reads < 1000.0 {
        return Verdict {
            level: Level::Ok,
            detail: format!("too few block accesses ({}) to judge", hits + reads),
            value: None,
        };
    }
    let ratio = round(hits / (hits + reads), 4);
    let level = if ratio < 0.85 {
        Level::Critical
    } else if ratio < 0.95 {
        Level::Warn
    } else {
        Level::Ok
    };
    Verdict {
        level,
        detail: format!("{}% of block reads were served from shared buffers", round(ratio * 100.0, 2)),
        value: Some(json!(ratio)),
    }
}

fn listed(rows: &[Value], none: &str, some: String, level: Level) -> Verdict {
    if rows.is_empty() {
        Verdict { level: Level::Ok, detail: none.to_owned(), value: None }
    } else {
        Verdict { level, detail: some, value: None }
    }
}

fn judge_invalid_indexes(rows: &[Value]) -> Verdict {
    listed(
        rows,
        "no invalid indexes",
        format!("{} invalid index(es) (left by a failed CREATE INDEX CONCURRENTLY): drop or REINDEX them", rows.len()),
        Level::Warn,
    )
}

fn judge_duplicate_indexes(rows: &[Value]) -> Verdict {
    listed(
        rows,
        "no duplicate indexes",
        format!("{} set(s) of identical indexes: keep one of each set", rows.len()),
        Level::Warn,
    )
}

fn judge_unused_indexes(rows: &[Value]) -> Verdict {
    listed(
        rows,
        "every non-constraint index has been used",
        format!(
            "{} index(es) never scanned since statistics were reset; check standbys and the reset time before dropping",
            rows.len()
        ),
        Level::Warn,
    )
}

fn judge_dead_tuples(rows: &[Value]) -> Verdict {
    let worst = max_of(rows, "dead_ratio");
    let level = Level::of(worst, 0.2, 0.5);
    let detail = if rows.is_empty() {
        "no table has 10% or more dead tuples".to_owned()
    } else {
        format!("{} table(s) with 10% or more dead tuples; worst ratio {worst}: VACUUM them", rows.len())
    };
    Verdict { level, detail, value: Some(json!(worst)) }
}

fn judge_wraparound(rows: &[Value]) -> Verdict {
    let Some(oldest) = rows.first() else {
        return Verdict { level: Level::Ok, detail: "no data".into(), value: None };
    };
    let age = num(&oldest["xid_age"]);
    let percent = round(100.0 * age / 2_147_483_648.0, 2);
    Verdict {
        level: Level::of(percent, 50.0, 75.0),
        detail: format!(
            "oldest database {} is at transaction-ID age {age} ({percent}% of the wraparound limit)",
            oldest["database"].as_str().unwrap_or("?")
        ),
        value: Some(json!(percent)),
    }
}

fn judge_sequences(rows: &[Value]) -> Verdict {
    let worst = max_of(rows, "used_ratio");
    let detail = if rows.is_empty() {
        "no sequence has used half of its range".to_owned()
    } else {
        format!(
            "{} sequence(s) past half of their range; the fullest has used {}%",
            rows.len(),
            round(worst * 100.0, 2)
        )
    };
    Verdict { level: Level::of(worst, 0.75, 0.9), detail, value: Some(json!(worst)) }
}

fn judge_long_running(rows: &[Value]) -> Verdict {
    let longest = max_of(rows, "query_seconds");
    let detail = if rows.is_empty() {
        "no query has run longer than a minute".to_owned()
    } else {
        format!("{} query(ies) running longer than a minute; the longest for {longest} s", rows.len())
    };
    Verdict { level: Level::of(longest, 300.0, 3600.0), detail, value: Some(json!(longest)) }
}

fn judge_idle_in_transaction(rows: &[Value]) -> Verdict {
    let longest = max_of(rows, "idle_seconds");
    let detail = if rows.is_empty() {
        "no transaction has been idle longer than a minute".to_owned()
    } else {
        format!(
            "{} transaction(s) idle longer than a minute (they hold locks and hold back VACUUM); the longest for {longest} s",
            rows.len()
        )
    };
    Verdict { level: Level::of(longest, 300.0, 1800.0), detail, value: Some(json!(longest)) }
}

fn judge_blocked(rows: &[Value]) -> Verdict {
    if rows.is_empty() {
        return Verdict { level: Level::Ok, detail: "no backend is waiting for a lock".into(), value: Some(json!(0)) };
    }
    let longest = max_of(rows, "wait_seconds");
    Verdict {
        level: if longest >= 300.0 { Level::Critical } else { Level::Warn },
        detail: format!(
            "{} backend(s) waiting for locks, the longest for {longest} s: see pg_monitor locks",
            rows.len()
        ),
        value: Some(json!(rows.len())),
    }
}

fn judge_replication(rows: &[Value]) -> Verdict {
    if rows.is_empty() {
        return Verdict { level: Level::Ok, detail: "no standbys and no replication slots".into(), value: None };
    }
    let mut level = Level::Ok;
    let mut notes = Vec::new();
    for row in rows {
        let name = row["name"].as_str().unwrap_or("this server");
        match row["kind"].as_str() {
            Some("slot") => {
                let retained = num(&row["retained_bytes"]);
                let slot_level = Level::of(retained, 1024.0 * 1024.0 * 1024.0, 10.0 * 1024.0 * 1024.0 * 1024.0)
                    .max(if row["active"] == json!(false) { Level::Warn } else { Level::Ok });
                if slot_level > Level::Ok {
                    notes.push(format!(
                        "slot {name} is {} and retains {retained} bytes of WAL",
                        row["state"].as_str().unwrap_or("?")
                    ));
                }
                level = level.max(slot_level);
            }
            _ => {
                let lag = num(&row["lag_seconds"]);
                let lag_level = Level::of(lag, 60.0, 300.0);
                if lag_level > Level::Ok {
                    notes.push(format!("{name} lags {lag} s behind"));
                }
                level = level.max(lag_level);
            }
        }
    }
    let detail =
        if notes.is_empty() { format!("{} standby(s)/slot(s), all current", rows.len()) } else { notes.join("; ") };
    Verdict { level, detail, value: None }
}

async fn health(ctx: &Ctx<'_>, deep: bool) -> Value {
    let pool = ctx.executor.pool_status();
    let (open, max) = ctx.sessions.counts();
    let mut out = match read(ctx, &Statement::new(catalog::HEALTH), 1).await {
        Ok(result) => {
            let mut out = json!({"status": "ok"});
            if let (Value::Object(out), Value::Object(row)) = (&mut out, first_row(&result)) {
                out.extend(row);
            }
            out
        }
        Err(error) => {
            return json!({
                "status": "down",
                "error": error.to_json()["error"],
                "pool": pool,
                "sessions": {"open": open, "max": max},
            });
        }
    };
    out["pool"] = json!(pool);
    out["sessions"] = json!({"open": open, "max": max});
    if deep {
        let mut checks = Vec::with_capacity(CHECKS.len());
        let mut worst = Level::Ok;
        let mut counts = [0usize; 3];
        for check in CHECKS {
            let (verdict, items) = match read(ctx, &Statement::new(check.sql.clone()), CHECK_ITEMS).await {
                Ok(result) => {
                    let rows = result.rows_as_objects();
                    ((check.judge)(&rows), rows)
                }
                Err(error) => (
                    Verdict {
                        level: Level::Warn,
                        detail: format!("the check could not run: {}", error.message()),
                        value: None,
                    },
                    Vec::new(),
                ),
            };
            worst = worst.max(verdict.level);
            counts[verdict.level as usize] += 1;
            let mut entry = json!({"name": check.name, "status": verdict.level.as_str(), "detail": verdict.detail});
            if let Some(value) = verdict.value {
                entry["value"] = value;
            }
            if check.items && !items.is_empty() {
                entry["items"] = Value::Array(items);
            }
            checks.push(entry);
        }
        if worst == Level::Critical {
            out["status"] = json!("degraded");
        }
        out["summary"] = json!({"ok": counts[0], "warn": counts[1], "critical": counts[2]});
        out["checks"] = Value::Array(checks);
    }
    out
}
