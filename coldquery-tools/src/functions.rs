//! The read function policy: which functions a read may call. It refuses what it does not
//! know to be harmless, derived from the live catalog rather than from a list of dangerous
//! names:
//!
//! - **built-in** functions (created by initdb) that are immutable or stable are allowed,
//!   except [`BUILTIN_DENIED`] (reviewed: they assign transaction ids or run SQL given as text);
//!   volatile built-ins are refused, except [`HARMLESS_VOLATILE`] (reviewed: clocks, random
//!   numbers, sizes, sleeps, read-only status);
//! - functions of **extensions** are allowed when the extension is allowed
//!   (`--allow-extensions`, default [`DEFAULT_EXTENSIONS`]; `*` allows every extension except
//!   [`WILDCARD_EXCLUDED`]), and then by the same volatility rule; [`NEVER_EXTENSIONS`] are never
//!   allowed, even by name;
//! - **user-defined** functions are refused unless a pattern of `--allow-functions` names them;
//! - `--deny-functions` refuses any function it names, whatever the rules above say.
//!
//! The classifier collects every name through which PostgreSQL could call a function (see
//! `catalog/policy.rs`); `FunctionPolicy::guard` turns them into a catalog check the
//! server runs in the read's own transaction, just before the read, so the verdict is reached
//! on the catalog the read will use. `FunctionPolicy::precheck` refuses known names before
//! anything is sent.

use coldquery_core::{Error, ErrorKind, Guard, Param, Result, Sql, Statement};

use crate::catalog::policy::{READ_FUNCTION_GUARD, READ_FUNCTION_VERDICTS};
use crate::classify::Classified;

/// Built-in functions that are not volatile but that reads never call: they assign a
/// transaction id (a lasting change) or run SQL given as text through SPI, out of the
/// classifier's sight.
pub const BUILTIN_DENIED: &[&str] = &[
    "txid_current",
    "pg_current_xact_id",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
];

/// Volatile functions reviewed as harmless in a read: they read clocks, random numbers, sizes
/// or status, or sleep (bounded by the statement timeout), and leave nothing behind.
pub const HARMLESS_VOLATILE: &[&str] = &[
    "clock_timestamp",
    "timeofday",
    "random",
    "gen_random_uuid",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "current_query",
    "currval",
    "lastval",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    "pg_isolation_test_session_is_blocked",
    "pg_database_size",
    "pg_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_total_relation_size",
    "pg_tablespace_size",
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_get_wal_replay_pause_state",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_current_wal_lsn",
    "pg_current_wal_flush_lsn",
    "pg_current_wal_insert_lsn",
    "pg_lock_status",
    "pg_notification_queue_usage",
    "pg_partition_ancestors",
    "pg_partition_tree",
    "pg_jit_available",
    "txid_status",
    "pg_xact_status",
    "pg_xact_commit_timestamp",
    "pg_xact_commit_timestamp_origin",
    "pg_last_committed_xact",
    "pg_stat_have_stats",
    "pg_stat_get_xact_blocks_fetched",
    "pg_stat_get_xact_blocks_hit",
    "pg_stat_get_xact_function_calls",
    "pg_stat_get_xact_function_self_time",
    "pg_stat_get_xact_function_total_time",
    "pg_stat_get_xact_numscans",
    "pg_stat_get_xact_tuples_deleted",
    "pg_stat_get_xact_tuples_fetched",
    "pg_stat_get_xact_tuples_hot_updated",
    "pg_stat_get_xact_tuples_inserted",
    "pg_stat_get_xact_tuples_returned",
    "pg_stat_get_xact_tuples_updated",
    "pg_stat_get_recovery_prefetch",
    "pg_collation_actual_version",
    "pg_database_collation_actual_version",
    "pg_sequence_last_value",
    "pg_prepared_xact",
    "pg_get_wal_resource_managers",
    "pg_control_checkpoint",
    "pg_control_init",
    "pg_control_recovery",
    "pg_control_system",
    "pg_get_multixact_members",
    "pg_show_replication_origin_status",
    "pg_replication_origin_progress",
    "pg_replication_origin_session_is_setup",
    "pg_replication_origin_session_progress",
    // Extensions' volatile readers (only when their extension is allowed).
    "gen_random_bytes",
    "gen_salt",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "pg_stat_statements",
    "pg_stat_statements_info",
];

/// Extensions whose functions reads never call, even when named in `--allow-extensions`: they
/// reach other servers, files or programs, run SQL given as text, destroy data, or change
/// server state.
pub const NEVER_EXTENSIONS: &[&str] =
    &["dblink", "postgres_fdw", "file_fdw", "adminpack", "pg_surgery", "xml2", "tablefunc", "pg_prewarm", "lo"];

/// Extensions `*` does not allow (they expose server internals; name them to allow them),
/// besides [`NEVER_EXTENSIONS`].
pub const WILDCARD_EXCLUDED: &[&str] = &[
    "amcheck",
    "pageinspect",
    "pg_buffercache",
    "pg_freespacemap",
    "pg_visibility",
    "pgrowlocks",
    "pgstattuple",
    "pg_walinspect",
    "old_snapshot",
    "sslinfo",
];

/// Extensions allowed by default: reviewed as data types, operators and pure functions.
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "plpgsql",
    "btree_gin",
    "btree_gist",
    "citext",
    "cube",
    "dict_int",
    "dict_xsyn",
    "earthdistance",
    "fuzzystrmatch",
    "hstore",
    "intarray",
    "isn",
    "ltree",
    "pg_trgm",
    "pgcrypto",
    "seg",
    "tsm_system_rows",
    "tsm_system_time",
    "unaccent",
    "uuid-ossp",
    "pg_stat_statements",
    "postgis",
    "vector",
];

/// Names a read may never call, refused before anything is sent (the catalog check would
/// refuse them too; this makes the common cases fast and their message exact).
const PRECHECK_DENIED: &[&str] = &[
    "dblink*",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile*",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_*",
    "pg_copy_*_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_slot_*",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_replication_origin_advance",
    "pg_logical_emit_message",
    "pg_backup_*",
    "pg_advisory_*",
    "pg_try_advisory_*",
    "set_config",
    "setseed",
    "lo_*",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_*",
    "pg_stat_file",
    "pg_file_*",
    "pg_stat_reset*",
    "pg_stat_statements_reset",
    "pg_notify",
    "nextval",
    "setval",
    "query_to_xml*",
    "database_to_xml*",
    "schema_to_xml*",
    "table_to_xml*",
    "txid_current",
    "pg_current_xact_id",
    "cursor_to_xml*",
    "ts_stat",
    "ts_rewrite",
    "brin_summarize*",
    "brin_desummarize_range",
    "gin_clean_pending_list",
    "pg_import_system_collations",
    "pg_log_backend_memory_contexts",
];

/// The policy's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionPolicy {
    deny: Vec<String>,
    allow: Vec<String>,
    extensions: Vec<String>,
}

impl Default for FunctionPolicy {
    fn default() -> FunctionPolicy {
        FunctionPolicy {
            deny: Vec::new(),
            allow: Vec::new(),
            extensions: DEFAULT_EXTENSIONS.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// A function-name pattern: letters, digits, `_`, `$`, an optional `schema.` and `*` wildcards.
fn check_pattern(pattern: &str, qualified: bool) -> std::result::Result<(), String> {
    let valid =
        |part: &str| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '*');
    let parts: Vec<&str> = pattern.split('.').collect();
    if parts.iter().all(|part| part.chars().all(|c| c == '*')) {
        return Err(format!("'{pattern}' would match every function; name the functions or their schema"));
    }
    let ok = match parts.as_slice() {
        [name] => !qualified && valid(name),
        [schema, name] => valid(schema) && valid(name),
        _ => false,
    };
    if ok {
        Ok(())
    } else if qualified {
        Err(format!("'{pattern}' is not a schema-qualified function pattern (schema.name, '*' matches any run)"))
    } else {
        Err(format!(
            "'{pattern}' is not a function pattern (name or schema.name; letters, digits, _ and $; '*' matches any run)"
        ))
    }
}

fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|n| !n.is_empty())
}

/// A `*` pattern as a LIKE pattern (with `\` escapes).
fn like(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn matches(pattern: &str, name: &str) -> bool {
    // `*` matches any run; a pattern without a schema matches the unqualified name.
    let name = if pattern.contains('.') { name } else { name.rsplit('.').next().unwrap_or(name) };
    let pieces: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = pieces.split_first().expect("split yields one piece");
    let Some(mut tail) = name.strip_prefix(first) else { return false };
    let Some((last, middle)) = rest.split_last() else { return tail.is_empty() };
    for piece in middle {
        match tail.find(piece) {
            Some(at) => tail = &tail[at + piece.len()..],
            None => return false,
        }
    }
    tail.ends_with(last)
}

impl FunctionPolicy {
    /// Adds comma-separated patterns (`name`, `schema.name`, `*` wildcards) of functions reads
    /// may not call.
    pub fn deny_functions(&mut self, list: &str) -> std::result::Result<(), String> {
        for pattern in split_list(list) {
            check_pattern(pattern, false)?;
            if !self.deny.iter().any(|p| p == pattern) {
                self.deny.push(pattern.to_owned());
            }
        }
        Ok(())
    }

    /// Adds comma-separated schema-qualified patterns (`reporting.*`, `public.total_price`) of
    /// user-defined functions reads may call.
    pub fn allow_functions(&mut self, list: &str) -> std::result::Result<(), String> {
        for pattern in split_list(list) {
            check_pattern(pattern, true)?;
            if !self.allow.iter().any(|p| p == pattern) {
                self.allow.push(pattern.to_owned());
            }
        }
        Ok(())
    }

    /// Replaces the allowed extensions with a comma-separated list (`*` for all but the
    /// internals'; [`NEVER_EXTENSIONS`] are refused here).
    pub fn allow_extensions(&mut self, list: &str) -> std::result::Result<(), String> {
        let mut extensions = Vec::new();
        for name in split_list(list) {
            if NEVER_EXTENSIONS.contains(&name) {
                return Err(format!(
                    "extension '{name}' can never be used by reads (it reaches other servers, files or programs, runs SQL given as text, or destroys data); call it with pg_query write in a session"
                ));
            }
            if name != "*" && !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                return Err(format!("'{name}' is not an extension name"));
            }
            extensions.push(name.to_owned());
        }
        self.extensions = extensions;
        Ok(())
    }

    /// The allowed extensions.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The pattern of ColdQuery's own list or of `--deny-functions` that refuses `name` before
    /// anything is sent, if any.
    pub fn precheck_pattern(&self, name: &str) -> Option<&str> {
        PRECHECK_DENIED
            .iter()
            .copied()
            .find(|p| matches(p, name))
            .or_else(|| self.deny.iter().map(String::as_str).find(|p| matches(p, name)))
    }

    /// Refuses, before anything is sent, a read that names a function known to be refused.
    pub(crate) fn precheck(&self, c: &Classified) -> Result<()> {
        let denied = |name: &str| {
            PRECHECK_DENIED
                .iter()
                .copied()
                .find(|p| matches(p, name))
                .map(|p| (p, false))
                .or_else(|| self.deny.iter().find(|p| matches(p, name)).map(|p| (p.as_str(), true)))
        };
        let called = c.functions.iter().map(|f| (f.as_str(), "called"));
        let fields = c.names.fields.iter().map(|f| (f.as_str(), "named in attribute notation"));
        for (name, how) in called.chain(fields) {
            if let Some((pattern, configured)) = denied(name) {
                let by = if configured { "--deny-functions" } else { "ColdQuery's list of functions with effects" };
                return Err(refused(format!(
                    "function '{name}' ({how}) is not allowed in a read: it matches '{pattern}' in {by}"
                )));
            }
        }
        Ok(())
    }

    /// The catalog check for a read (or `None` when the statement names nothing that could
    /// call a function).
    pub(crate) fn guard(&self, c: &Classified) -> Option<Guard> {
        let n = &c.names;
        let called: Vec<&str> = c.functions.iter().map(|f| f.rsplit('.').next().unwrap_or(f)).collect();
        if called.is_empty()
            && n.fields.is_empty()
            && n.operators.is_empty()
            && n.types.is_empty()
            && n.relations.is_empty()
        {
            return None;
        }
        let mut params = vec![
            Param::text_array(called),
            Param::text_array(n.fields.iter().map(String::as_str)),
            Param::text_array(n.operators.iter().map(String::as_str)),
            Param::text_array(n.types.iter().map(String::as_str)),
            Param::text_array(n.relations.iter().map(String::as_str)),
        ];
        params.extend(self.policy_params());
        Some(Guard {
            check: Statement::with_params(Sql::catalog(READ_FUNCTION_GUARD), params),
            hint: "reads call only functions known to be harmless; allow a user-defined function with --allow-functions or an extension with --allow-extensions, or call it with pg_query write in a session",
        })
    }

    /// Every function of the catalog with the policy's verdict (see
    /// `catalog::policy::READ_FUNCTION_VERDICTS`).
    pub fn verdicts_statement(&self) -> Statement {
        let empty = || Param::text_array(std::iter::empty());
        let mut params = vec![empty(), empty(), empty(), empty(), empty()];
        params.extend(self.policy_params());
        Statement::with_params(Sql::catalog(READ_FUNCTION_VERDICTS), params)
    }

    /// `$6`..`$12` of the catalog queries.
    fn policy_params(&self) -> Vec<Param> {
        let deny: Vec<String> = self.deny.iter().map(|p| like(p)).collect();
        let allow: Vec<String> = self.allow.iter().map(|p| like(p)).collect();
        vec![
            Param::text_array(deny.iter().map(String::as_str)),
            Param::text_array(BUILTIN_DENIED.iter().copied()),
            Param::text_array(HARMLESS_VOLATILE.iter().copied()),
            Param::text_array(NEVER_EXTENSIONS.iter().copied()),
            Param::text_array(self.extensions.iter().map(String::as_str)),
            Param::text_array(NEVER_EXTENSIONS.iter().chain(WILDCARD_EXCLUDED).copied()),
            Param::text_array(allow.iter().map(String::as_str)),
        ]
    }
}

fn refused(message: String) -> Error {
    Error::new(ErrorKind::StatementNotAllowed, message).with_hint(
        "this function has effects a read-only transaction cannot stop; if you really need it, call it with pg_query write in a session",
    )
}

#[cfg(test)]
mod tests {
    use coldquery_core::CallerSql;

    use super::*;
    use crate::classify::{check_read, classify};

    /// The code of what a read of `sql` meets before anything is sent: the statement's check,
    /// then the default function policy's.
    fn read(sql: &str) -> &'static str {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let checked = runtime.block_on(classify(&CallerSql::new(sql).unwrap())).and_then(|c| {
            check_read(&c)?;
            FunctionPolicy::default().precheck(&c)
        });
        checked.map_or_else(|e| e.kind().code(), |()| "ok")
    }

    /// A read that calls a function with effects — directly, in a subquery or CTE, quoted, in
    /// attribute notation (`(x).f` calls `f(x)`) — is refused before anything is sent; the
    /// statement alone would pass the read check.
    #[test]
    fn reads_calling_functions_with_effects_are_refused() {
        for sql in [
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            "SELECT pg_catalog.set_config('x.y', '1', false)",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            "SELECT * FROM pg_cancel_backend(1)",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT lo_export(1, '/tmp/x')",
            "SELECT dblink_exec('dbname=x', 'DROP TABLE t')",
            "SELECT pg_reload_conf()",
            "SELECT * FROM ts_stat('SELECT to_tsvector(pg_terminate_backend(1)::text)')",
            "SELECT ts_rewrite('a'::tsquery, 'SELECT pg_advisory_lock(1)')",
            "SELECT database_to_xml(true, true, '')",
            "SELECT nextval('s')",
            "SELECT \"nextval\"('s')",
            "SELECT (SELECT max(x) FROM (SELECT nextval('s') AS x) q)",
            "WITH q AS (SELECT pg_notify('c', 'p')) SELECT * FROM q",
            "SELECT * FROM t WHERE id IN (SELECT setval('s', 1))",
            "SELECT (pid).pg_terminate_backend FROM pg_stat_activity",
            "SELECT p.pg_terminate_backend FROM pg_backend_pid() AS p",
            "SELECT (SELECT 1).pg_advisory_lock",
            "SELECT ((1)::int8).setseed",
            "SELECT x[1].pg_cancel_backend FROM (SELECT ARRAY[1] AS x) q",
        ] {
            assert_eq!(read(sql), "STATEMENT_NOT_ALLOWED", "{sql}");
        }
        assert_eq!(read("SELECT lower('A'), now()"), "ok");
    }

    #[test]
    fn patterns_match_like_globs() {
        assert!(matches("dblink*", "public.dblink_exec"));
        assert!(matches("pg_copy_*_replication_slot", "pg_copy_logical_replication_slot"));
        assert!(!matches("pg_copy_*_replication_slot", "pg_copy_logical_replication_slots"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("reporting.*", "reporting.total"));
        assert!(!matches("reporting.*", "public.total"));
        assert_eq!(like("my_fn*"), "my\\_fn%");
    }

    #[test]
    fn settings_are_validated() {
        let mut policy = FunctionPolicy::default();
        assert!(policy.deny_functions("audit_mark, app_*").is_ok());
        assert!(policy.deny_functions("drop table x").is_err());
        assert!(policy.allow_functions("reporting.*, public.total").is_ok());
        assert!(policy.allow_functions("total").is_err(), "allow patterns name their schema");
        assert!(policy.allow_functions("*.*").is_err());
        assert!(policy.deny_functions("*").is_err());
        assert!(policy.allow_extensions("dblink").is_err());
        assert!(policy.allow_extensions("*, hstore").is_ok());
        assert_eq!(policy.extensions(), ["*", "hstore"]);
    }
}
