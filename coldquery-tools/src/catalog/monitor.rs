//! Monitoring catalog queries (`pg_monitor`, and the lock and progress reports of writes), each
//! written once.
//!
//! Every query is fixed text whose inputs are bind parameters. Row caps come from the
//! executor's limits (it stops fetching at `max_rows + 1` and reports `truncated`), so no query
//! here takes a caller-supplied `LIMIT`. Column names follow PostgreSQL 15 (and
//! `pg_stat_statements` 1.8+: `total_exec_time`, `mean_exec_time`). Durations are measured
//! against `clock_timestamp()`, not `now()`, because reads run in their own transaction.

use coldquery_core::Sql;

// ---------------------------------------------------------------------------------------------
// pg_monitor health

/// The basic health row.
pub(crate) const HEALTH: Sql = Sql::catalog(
    "SELECT current_setting('server_version') AS server_version, \
            current_setting('server_version_num')::int AS server_version_num, \
            current_database() AS database, clock_timestamp() AS server_time, \
            pg_postmaster_start_time() AS started_at, \
            floor(extract(epoch FROM clock_timestamp() - pg_postmaster_start_time()))::bigint AS uptime_seconds, \
            pg_is_in_recovery() AS in_recovery",
);

/// Buffer cache hits and reads of the current database.
pub(crate) const CHECK_CACHE_HIT: Sql = Sql::catalog(
    "SELECT blks_hit AS hits, blks_read AS reads \
       FROM pg_stat_database WHERE datname = current_database()",
);

/// Indexes left invalid (a failed `CREATE INDEX CONCURRENTLY`).
pub(crate) const CHECK_INVALID_INDEXES: Sql = Sql::catalog(
    "SELECT n.nspname AS schema, t.relname AS table, c.relname AS index \
       FROM pg_index i \
       JOIN pg_class c ON c.oid = i.indexrelid \
       JOIN pg_class t ON t.oid = i.indrelid \
       JOIN pg_namespace n ON n.oid = c.relnamespace \
      WHERE NOT i.indisvalid \
      ORDER BY 1, 2, 3",
);

/// Sets of valid indexes with the same table, uniqueness, columns, operator classes, collations,
/// expressions and predicate.
pub(crate) const CHECK_DUPLICATE_INDEXES: Sql = Sql::catalog(
    "SELECT n.nspname AS schema, t.relname AS table, \
            array_agg(c.relname::text ORDER BY c.relname) AS indexes, \
            sum(pg_relation_size(c.oid))::bigint AS bytes \
       FROM pg_index i \
       JOIN pg_class c ON c.oid = i.indexrelid \
       JOIN pg_class t ON t.oid = i.indrelid \
       JOIN pg_namespace n ON n.oid = t.relnamespace \
      WHERE i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
        AND n.nspname !~ '^pg_toast' \
      GROUP BY n.nspname, t.relname, i.indrelid, i.indisunique, i.indkey::text, i.indclass::text, \
               i.indcollation::text, coalesce(pg_get_expr(i.indexprs, i.indrelid), ''), \
               coalesce(pg_get_expr(i.indpred, i.indrelid), '') \
     HAVING count(*) > 1 \
      ORDER BY 1, 2",
);

/// Indexes never scanned since statistics were reset, that enforce no constraint.
pub(crate) const CHECK_UNUSED_INDEXES: Sql = Sql::catalog(
    "SELECT s.schemaname AS schema, s.relname AS table, s.indexrelname AS index, \
            pg_relation_size(s.indexrelid) AS bytes \
       FROM pg_stat_user_indexes s \
       JOIN pg_index i ON i.indexrelid = s.indexrelid \
      WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary \
        AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = s.indexrelid) \
      ORDER BY pg_relation_size(s.indexrelid) DESC, 1, 2, 3",
);

/// Tables where at least 1000 tuples and 10% of all tuples are dead.
pub(crate) const CHECK_DEAD_TUPLES: Sql = Sql::catalog(
    "SELECT schemaname AS schema, relname AS table, n_live_tup AS live_tuples, n_dead_tup AS dead_tuples, \
            round(n_dead_tup::numeric / nullif(n_live_tup + n_dead_tup, 0), 4)::float8 AS dead_ratio, \
            last_vacuum, last_autovacuum \
       FROM pg_stat_user_tables \
      WHERE n_dead_tup >= 1000 AND n_dead_tup::float8 / nullif(n_live_tup + n_dead_tup, 0) >= 0.1 \
      ORDER BY n_dead_tup DESC, 1, 2",
);

/// Transaction-ID age of every database, oldest first.
pub(crate) const CHECK_WRAPAROUND: Sql = Sql::catalog(
    "SELECT datname AS database, age(datfrozenxid)::bigint AS xid_age, \
            current_setting('autovacuum_freeze_max_age')::bigint AS autovacuum_freeze_max_age \
       FROM pg_database \
      ORDER BY age(datfrozenxid) DESC, datname",
);

/// Ascending, non-cycling sequences that have used at least half their range.
pub(crate) const CHECK_SEQUENCES: Sql = Sql::catalog(
    "SELECT schemaname AS schema, sequencename AS sequence, last_value, max_value, \
            round((last_value - min_value)::numeric / nullif(max_value - min_value, 0), 4)::float8 AS used_ratio \
       FROM pg_sequences \
      WHERE last_value IS NOT NULL AND increment_by > 0 AND NOT cycle \
        AND (last_value - min_value)::numeric / nullif(max_value - min_value, 0) >= 0.5 \
      ORDER BY used_ratio DESC, 1, 2",
);

/// Queries running for more than a minute, other than this one.
pub(crate) const CHECK_LONG_RUNNING: Sql = Sql::catalog(
    "SELECT pid, usename AS user, application_name AS application, \
            round(extract(epoch FROM clock_timestamp() - query_start)::numeric, 1)::float8 AS query_seconds, \
            left(query, 200) AS query \
       FROM pg_stat_activity \
      WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND state = 'active' \
        AND query_start < clock_timestamp() - interval '1 minute' \
      ORDER BY query_start",
);

/// Transactions idle for more than a minute (they hold locks and the xmin horizon).
pub(crate) const CHECK_IDLE_IN_TRANSACTION: Sql = Sql::catalog(
    "SELECT pid, usename AS user, application_name AS application, state, \
            round(extract(epoch FROM clock_timestamp() - state_change)::numeric, 1)::float8 AS idle_seconds, \
            round(extract(epoch FROM clock_timestamp() - xact_start)::numeric, 1)::float8 AS transaction_seconds, \
            left(query, 200) AS last_query \
       FROM pg_stat_activity \
      WHERE pid <> pg_backend_pid() AND state IN ('idle in transaction', 'idle in transaction (aborted)') \
        AND state_change < clock_timestamp() - interval '1 minute' \
      ORDER BY state_change",
);

/// The rights of the role reads run as that PostgreSQL itself would let a statement use to
/// change server state or reach outside the database: one row per right held.
pub(crate) const CHECK_ROLE_POSTURE: Sql = Sql::catalog(
    "SELECT current_user AS role, r.name AS right \
       FROM pg_roles me, \
            LATERAL (VALUES ('superuser', me.rolsuper), ('REPLICATION', me.rolreplication), \
                            ('BYPASSRLS', me.rolbypassrls), \
                            ('pg_signal_backend', pg_has_role(me.oid, 'pg_signal_backend', 'MEMBER')), \
                            ('pg_read_server_files', pg_has_role(me.oid, 'pg_read_server_files', 'MEMBER')), \
                            ('pg_write_server_files', pg_has_role(me.oid, 'pg_write_server_files', 'MEMBER')), \
                            ('pg_execute_server_program', pg_has_role(me.oid, 'pg_execute_server_program', 'MEMBER'))) \
              AS r(name, held) \
      WHERE me.rolname = current_user AND r.held",
);

/// Backends waiting for a lock another backend holds.
pub(crate) const CHECK_BLOCKED: Sql = Sql::catalog(
    "SELECT a.pid, pg_blocking_pids(a.pid) AS blocked_by, \
            round(extract(epoch FROM clock_timestamp() - \
                  (SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted))::numeric, 1)::float8 \
              AS wait_seconds, \
            left(a.query, 200) AS query \
       FROM pg_stat_activity a \
      WHERE cardinality(pg_blocking_pids(a.pid)) > 0 \
      ORDER BY wait_seconds DESC NULLS LAST, a.pid",
);

/// Standbys with their replay lag, replication slots with the WAL they retain, and this
/// server's own replay delay when it is a standby.
pub(crate) const CHECK_REPLICATION: Sql = Sql::catalog(
    "SELECT 'standby' AS kind, application_name AS name, state, \
            extract(epoch FROM replay_lag)::float8 AS lag_seconds, NULL::bigint AS retained_bytes, \
            NULL::bool AS active \
       FROM pg_stat_replication \
     UNION ALL \
     SELECT 'slot', slot_name::text, CASE WHEN active THEN 'active' ELSE 'inactive' END, NULL, \
            CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL \
                 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END, \
            active \
       FROM pg_replication_slots \
     UNION ALL \
     SELECT 'replay', NULL, NULL, \
            extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8, NULL, NULL \
      WHERE pg_is_in_recovery()",
);

// ---------------------------------------------------------------------------------------------
// pg_monitor activity, connections, locks, size, top_queries

/// Client backends except the one running this query. `$1`: include idle backends,
/// `$2`: minimum query duration in milliseconds or NULL.
pub(crate) const ACTIVITY: Sql = Sql::catalog(
    "SELECT a.pid, a.usename AS user, a.datname AS database, a.application_name AS application, \
            a.client_addr::text AS client, a.state, a.wait_event_type, a.wait_event, \
            a.backend_start, a.xact_start, a.query_start, \
            round(extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::bigint AS transaction_ms, \
            round(extract(epoch FROM clock_timestamp() - a.query_start) * 1000)::bigint AS query_ms, \
            round(extract(epoch FROM clock_timestamp() - a.state_change) * 1000)::bigint AS state_ms, \
            pg_blocking_pids(a.pid) AS blocked_by, \
            left(a.query, 500) AS query, length(a.query) > 500 AS query_truncated \
       FROM pg_stat_activity a \
      WHERE a.pid <> pg_backend_pid() AND a.backend_type = 'client backend' \
        AND ($1::bool OR a.state IS DISTINCT FROM 'idle') \
        AND ($2::float8 IS NULL \
             OR clock_timestamp() - a.query_start >= $2::float8 * interval '1 millisecond') \
      ORDER BY a.query_start NULLS LAST, a.pid",
);

/// Client connection counts by state, database and user, and the server's limits.
pub(crate) const CONNECTIONS: Sql = Sql::catalog(
    "WITH c AS (SELECT state, datname, usename FROM pg_stat_activity WHERE backend_type = 'client backend') \
     SELECT (SELECT count(*) FROM c)::int AS total, \
            current_setting('max_connections')::int AS max_connections, \
            current_setting('superuser_reserved_connections')::int AS superuser_reserved_connections, \
            (SELECT coalesce(json_object_agg(k, n ORDER BY k), '{}'::json) \
               FROM (SELECT coalesce(state, 'unknown') AS k, count(*) AS n FROM c GROUP BY 1) s) AS by_state, \
            (SELECT coalesce(json_object_agg(k, n ORDER BY k), '{}'::json) \
               FROM (SELECT coalesce(datname::text, '(none)') AS k, count(*) AS n FROM c GROUP BY 1) s) AS by_database, \
            (SELECT coalesce(json_object_agg(k, n ORDER BY k), '{}'::json) \
               FROM (SELECT coalesce(usename::text, '(none)') AS k, count(*) AS n FROM c GROUP BY 1) s) AS by_user",
);

/// Who waits for whom: each waiting backend, the lock it waits for, and its blockers.
pub(crate) const LOCKS_BLOCKING: Sql = Sql::catalog(
    "SELECT w.pid AS waiting_pid, w.datname AS database, w.usename AS waiting_user, \
            w.application_name AS waiting_application, \
            pg_blocking_pids(w.pid) AS blocked_by, l.locktype, l.mode AS waiting_mode, \
            l.relation::regclass::text AS relation, \
            round(extract(epoch FROM clock_timestamp() - l.waitstart)::numeric, 3)::float8 AS wait_seconds, \
            left(w.query, 500) AS waiting_query, \
            (SELECT coalesce(json_agg(json_build_object( \
                        'pid', b.pid, \
                        'user', b.usename, \
                        'application', b.application_name, \
                        'state', b.state, \
                        'transaction_seconds', \
                            round(extract(epoch FROM clock_timestamp() - b.xact_start)::numeric, 3)::float8, \
                        'modes', (SELECT array_agg(DISTINCT h.mode ORDER BY h.mode) FROM pg_locks h \
                                   WHERE h.pid = b.pid AND h.granted \
                                     AND h.locktype = l.locktype \
                                     AND h.relation IS NOT DISTINCT FROM l.relation \
                                     AND h.transactionid IS NOT DISTINCT FROM l.transactionid), \
                        'query', left(b.query, 500)) ORDER BY b.pid), '[]'::json) \
               FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(w.pid))) AS blockers \
       FROM pg_stat_activity w \
       LEFT JOIN LATERAL (SELECT * FROM pg_locks x WHERE x.pid = w.pid AND NOT x.granted \
                           ORDER BY x.waitstart LIMIT 1) l ON true \
      WHERE w.pid <> pg_backend_pid() AND cardinality(pg_blocking_pids(w.pid)) > 0 \
      ORDER BY wait_seconds DESC NULLS LAST, w.pid",
);

/// Every lock held or awaited, except this query's own.
pub(crate) const LOCKS_ALL: Sql = Sql::catalog(
    "SELECT l.pid, a.usename AS user, l.locktype, l.mode, l.granted, \
            l.relation::regclass::text AS relation, l.transactionid::text AS transaction_id, \
            l.virtualxid AS virtual_xid, \
            round(extract(epoch FROM clock_timestamp() - l.waitstart)::numeric, 3)::float8 AS wait_seconds, \
            CASE WHEN NOT l.granted THEN pg_blocking_pids(l.pid) END AS blocked_by, \
            a.state, left(a.query, 200) AS query \
       FROM pg_locks l \
       LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
      WHERE l.pid IS DISTINCT FROM pg_backend_pid() \
      ORDER BY l.granted, l.pid, l.locktype, l.mode",
);

/// Database sizes. `$1`: one database's name or NULL for all the caller may connect to.
pub(crate) const SIZE_DATABASES: Sql = Sql::catalog(
    "SELECT datname AS database, pg_database_size(oid) AS bytes, \
            pg_size_pretty(pg_database_size(oid)) AS size, datname = current_database() AS current \
       FROM pg_database \
      WHERE datallowconn AND has_database_privilege(oid, 'CONNECT') \
        AND ($1::text IS NULL OR datname = $1::text) \
      ORDER BY pg_database_size(oid) DESC, datname",
);

/// The largest tables of the current database, by total size (heap, indexes, TOAST).
pub(crate) const SIZE_TABLES: Sql = Sql::catalog(
    "SELECT n.nspname AS schema, c.relname AS table, pg_total_relation_size(c.oid) AS total_bytes, \
            pg_size_pretty(pg_total_relation_size(c.oid)) AS total_size, \
            pg_relation_size(c.oid) AS table_bytes, pg_indexes_size(c.oid) AS index_bytes, \
            pg_total_relation_size(c.oid) - pg_relation_size(c.oid) - pg_indexes_size(c.oid) AS toast_bytes, \
            c.reltuples::bigint AS estimated_rows \
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
      WHERE c.relkind IN ('r', 'm', 'p') \
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' \
      ORDER BY pg_total_relation_size(c.oid) DESC, 1, 2",
);

/// The largest indexes of the current database.
pub(crate) const SIZE_INDEXES: Sql = Sql::catalog(
    "SELECT n.nspname AS schema, c.relname AS index, t.relname AS table, \
            pg_relation_size(c.oid) AS bytes, pg_size_pretty(pg_relation_size(c.oid)) AS size \
       FROM pg_class c \
       JOIN pg_namespace n ON n.oid = c.relnamespace \
       JOIN pg_index i ON i.indexrelid = c.oid \
       JOIN pg_class t ON t.oid = i.indrelid \
      WHERE c.relkind IN ('i', 'I') \
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' \
      ORDER BY pg_relation_size(c.oid) DESC, 1, 2",
);

/// Whether `pg_stat_statements` is installed in this database, its version and schema.
pub(crate) const STATEMENTS_EXTENSION: Sql = Sql::catalog(
    "SELECT e.extversion AS version, n.nspname AS schema, \
            string_to_array(e.extversion, '.')::int[] >= ARRAY[1, 8] AS supported \
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
      WHERE e.extname = 'pg_stat_statements'",
);

/// The select list of `top_queries`; the view's schema, then one of the `TOP_QUERIES_ORDER_*`
/// fragments follow.
pub(crate) const TOP_QUERIES_SELECT: &str = "SELECT s.queryid::text AS queryid, r.rolname AS user, s.calls, \
            round(s.total_exec_time::numeric, 3)::float8 AS total_time_ms, \
            round(s.mean_exec_time::numeric, 3)::float8 AS mean_time_ms, \
            round(s.min_exec_time::numeric, 3)::float8 AS min_time_ms, \
            round(s.max_exec_time::numeric, 3)::float8 AS max_time_ms, \
            round(s.stddev_exec_time::numeric, 3)::float8 AS stddev_time_ms, \
            s.rows, s.shared_blks_hit, s.shared_blks_read, \
            round(s.shared_blks_hit::numeric / nullif(s.shared_blks_hit + s.shared_blks_read, 0), 4)::float8 \
              AS cache_hit_ratio, \
            round((100 * s.total_exec_time / nullif(sum(s.total_exec_time) OVER (), 0))::numeric, 2)::float8 \
              AS percent_of_total_time, \
            left(s.query, 1000) AS query \
       FROM ";

/// The rest of `top_queries` after the view's name: only this database's statements.
pub(crate) const TOP_QUERIES_FROM: &str = " s \
       LEFT JOIN pg_roles r ON r.oid = s.userid \
      WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
      ORDER BY ";

/// `order_by: total_time`.
pub(crate) const TOP_QUERIES_ORDER_TOTAL: &str = "s.total_exec_time DESC, s.queryid";
/// `order_by: mean_time`.
pub(crate) const TOP_QUERIES_ORDER_MEAN: &str = "s.mean_exec_time DESC, s.queryid";
/// `order_by: calls`.
pub(crate) const TOP_QUERIES_ORDER_CALLS: &str = "s.calls DESC, s.queryid";

/// The other backends holding locks on the relations named in `$1` (a JSON array of names as
/// the statement wrote them), longest transaction first: who a write that hit `lock_timeout`
/// waited for.
pub(crate) const LOCK_HOLDERS: Sql = Sql::catalog(
    "SELECT a.pid, a.usename::text AS \"user\", a.state, l.relation::regclass::text AS relation, l.mode, \
            round(extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::numeric, 1)::float8 AS seconds \
     FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
     WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_catalog.pg_backend_pid() \
       AND l.relation IN (SELECT pg_catalog.to_regclass(n) FROM json_array_elements_text($1::text::json) n) \
     ORDER BY seconds DESC NULLS LAST, a.pid LIMIT 5",
);

/// What a statement of ColdQuery's own is doing, for progress reports: the active backend of
/// this application running exactly the text `$1` (the poller's own backend left out), its wait,
/// who blocks it, and the phase of a VACUUM, ANALYZE, CREATE INDEX or CLUSTER in progress.
/// Several matches mean it cannot be told which one is the caller's; the reporter then says
/// only how long the call has run.
pub(crate) const STATEMENT_PROGRESS: Sql = Sql::catalog(
    "SELECT a.pid, a.wait_event_type, a.wait_event, pg_catalog.pg_blocking_pids(a.pid) AS blocked_by, \
            coalesce(v.phase, z.phase, i.phase, c.phase) AS phase, \
            coalesce(v.heap_blks_scanned, z.sample_blks_scanned, i.blocks_done, c.heap_blks_scanned)::float8 AS done, \
            coalesce(v.heap_blks_total, z.sample_blks_total, i.blocks_total, c.heap_blks_total)::float8 AS total \
     FROM pg_catalog.pg_stat_activity a \
     LEFT JOIN pg_catalog.pg_stat_progress_vacuum v ON v.pid = a.pid \
     LEFT JOIN pg_catalog.pg_stat_progress_analyze z ON z.pid = a.pid \
     LEFT JOIN pg_catalog.pg_stat_progress_create_index i ON i.pid = a.pid \
     LEFT JOIN pg_catalog.pg_stat_progress_cluster c ON c.pid = a.pid \
     WHERE a.state = 'active' AND a.pid <> pg_catalog.pg_backend_pid() \
       AND a.application_name = pg_catalog.current_setting('application_name') AND a.query = $1 \
     LIMIT 2",
);
