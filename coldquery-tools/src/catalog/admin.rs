//! Administration catalog queries (`pg_admin`: stats, settings, cancelling and terminating
//! backends), each written once.
//!
//! Every query is fixed text whose inputs are bind parameters; row caps come from the
//! executor's limits, as in [`super::monitor`].

use coldquery_core::Sql;

// ---------------------------------------------------------------------------------------------
// pg_admin stats

/// The busiest user tables. `$1`: schema or NULL.
pub(crate) const STATS_TABLES: Sql = Sql::catalog(
    "SELECT s.schemaname AS schema, s.relname AS table, \
            coalesce(s.seq_scan, 0) + coalesce(s.idx_scan, 0) AS scans, \
            s.seq_scan, s.idx_scan, s.n_tup_ins AS inserted, s.n_tup_upd AS updated, \
            s.n_tup_del AS deleted, s.n_live_tup AS live_tuples, s.n_dead_tup AS dead_tuples, \
            round(s.n_dead_tup::numeric / nullif(s.n_live_tup + s.n_dead_tup, 0), 4)::float8 AS dead_ratio, \
            s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze \
       FROM pg_stat_user_tables s \
      WHERE $1::text IS NULL OR s.schemaname = $1::text \
      ORDER BY coalesce(s.seq_scan, 0) + coalesce(s.idx_scan, 0) DESC, \
               s.n_tup_ins + s.n_tup_upd + s.n_tup_del DESC, s.schemaname, s.relname",
);

/// One table's statistics with per-index usage. `$1`: schema or NULL (then the table resolves
/// through `search_path`), `$2`: table name.
pub(crate) const STATS_TABLE: Sql = Sql::catalog(
    "SELECT s.schemaname AS schema, s.relname AS table, c.reltuples::bigint AS estimated_rows, \
            pg_total_relation_size(c.oid) AS total_bytes, pg_relation_size(c.oid) AS table_bytes, \
            pg_indexes_size(c.oid) AS index_bytes, \
            s.seq_scan, s.seq_tup_read, s.idx_scan, s.idx_tup_fetch, \
            s.n_tup_ins AS inserted, s.n_tup_upd AS updated, s.n_tup_del AS deleted, \
            s.n_tup_hot_upd AS hot_updated, s.n_live_tup AS live_tuples, s.n_dead_tup AS dead_tuples, \
            round(s.n_dead_tup::numeric / nullif(s.n_live_tup + s.n_dead_tup, 0), 4)::float8 AS dead_ratio, \
            s.n_mod_since_analyze AS modified_since_analyze, \
            s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze, \
            s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count, \
            (SELECT coalesce(json_agg(json_build_object( \
                        'index', i.indexrelname, \
                        'scans', i.idx_scan, \
                        'tuples_read', i.idx_tup_read, \
                        'tuples_fetched', i.idx_tup_fetch, \
                        'bytes', pg_relation_size(i.indexrelid), \
                        'unique', x.indisunique, \
                        'primary', x.indisprimary, \
                        'valid', x.indisvalid, \
                        'definition', pg_get_indexdef(i.indexrelid)) ORDER BY i.indexrelname), '[]'::json) \
               FROM pg_stat_all_indexes i JOIN pg_index x ON x.indexrelid = i.indexrelid \
              WHERE i.relid = c.oid) AS indexes \
       FROM pg_class c \
       JOIN pg_namespace n ON n.oid = c.relnamespace \
       JOIN pg_stat_all_tables s ON s.relid = c.oid \
      WHERE c.relname = $2::text \
        AND (n.nspname = $1::text OR ($1::text IS NULL AND pg_table_is_visible(c.oid)))",
);

// ---------------------------------------------------------------------------------------------
// pg_admin settings

/// Settings, filtered. `$1`: category substring or NULL; `$2`: name pattern or NULL (with a
/// `%` it is an ILIKE pattern, otherwise a case-insensitive substring).
pub(crate) const SETTINGS_LIST: Sql = Sql::catalog(
    "SELECT name, setting, unit, category, short_desc AS description, context, vartype AS type, \
            source, pending_restart \
       FROM pg_settings \
      WHERE ($1::text IS NULL OR strpos(lower(category), lower($1::text)) > 0) \
        AND ($2::text IS NULL \
             OR (strpos($2::text, '%') > 0 AND name ILIKE $2::text) \
             OR (strpos($2::text, '%') = 0 AND strpos(lower(name), lower($2::text)) > 0)) \
      ORDER BY category, name",
);

/// One setting, including dotted extension settings (`pg_stat_statements.track`). `$1`: name.
/// `setting` is NULL when no such setting exists.
pub(crate) const SETTING_GET: Sql = Sql::catalog(
    "SELECT $1::text AS name, current_setting($1::text, true) AS setting, s.unit, s.category, \
            s.short_desc AS description, s.context, s.vartype AS type, s.source, s.min_val, \
            s.max_val, s.enumvals, s.boot_val, s.reset_val, s.pending_restart \
       FROM (SELECT 1) AS one \
       LEFT JOIN pg_settings s ON s.name = lower($1::text)",
);

/// Sets a setting for the rest of the current transaction (`SET LOCAL`). `$1`: name, `$2`: value.
pub(crate) const SETTING_SET: Sql = Sql::catalog("SELECT set_config($1::text, $2::text, true) AS setting");

// ---------------------------------------------------------------------------------------------
// pg_admin terminate

/// Signals backend `$1` with `$function` (`pg_cancel_backend`, `pg_terminate_backend`), unless
/// it is unknown or the connection running this statement, and reports what it was running.
macro_rules! signal_backend {
    ($function:literal) => {
        Sql::catalog(concat!(
            "SELECT p.pid, a.pid IS NOT NULL AS found, p.pid = pg_backend_pid() AS own, \
            a.usename AS user, a.datname AS database, a.application_name AS application, \
            a.backend_type, a.state, left(a.query, 500) AS query, \
            CASE WHEN a.pid IS NULL OR p.pid = pg_backend_pid() THEN NULL \
                 ELSE ",
            $function,
            "(p.pid) END AS signalled \
       FROM (SELECT $1::int4 AS pid) AS p \
       LEFT JOIN pg_stat_activity a ON a.pid = p.pid"
        ))
    };
}

/// Cancels the current query of backend `$1`, unless it is unknown or the connection running
/// this statement.
pub(crate) const CANCEL_BACKEND: Sql = signal_backend!("pg_cancel_backend");

/// Terminates backend `$1` (its transaction is rolled back), unless it is unknown or the
/// connection running this statement.
pub(crate) const TERMINATE_BACKEND: Sql = signal_backend!("pg_terminate_backend");
