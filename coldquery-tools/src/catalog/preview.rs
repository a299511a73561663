//! What a previewed write did, read inside its own (rolled back) transaction: the relation
//! locks the transaction holds, and the user objects that exist, each with the transaction id
//! of its catalog row version — compared before and after the write, that row version shows
//! which objects were created, altered (their catalog row was rewritten) or dropped.

/// The relation locks this transaction holds (system catalogs left out): the relation's oid,
/// its name (`NULL` once the transaction dropped it), the lock mode.
pub(crate) const LOCKS: &str = "\
SELECT l.relation::text AS oid, c.oid::regclass::text AS relation, l.mode
FROM pg_catalog.pg_locks l
LEFT JOIN pg_catalog.pg_class c ON c.oid = l.relation
WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND l.granted
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND l.relation >= 16384
ORDER BY 2, 3";

/// User schemas, relations, functions and types (enums, domains, ranges; composite types are
/// relations), with their catalog row versions (and a relation's oid, to name the locks on
/// relations the transaction dropped).
pub(crate) const OBJECTS: &str = "\
SELECT 'schema' AS kind, quote_ident(n.nspname) AS name, n.xmin::text AS version, NULL::text AS oid
FROM pg_catalog.pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp\\_%'
UNION ALL
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
         WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'I' THEN 'index'
         WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'type' END,
       c.oid::regclass::text, c.xmin::text, c.oid::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
  AND c.relkind <> 't'
UNION ALL
SELECT 'function', p.oid::regprocedure::text, p.xmin::text, NULL
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'type', t.oid::regtype::text, t.xmin::text, NULL
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
  AND t.typtype IN ('e', 'd', 'r')
ORDER BY 1, 2";
