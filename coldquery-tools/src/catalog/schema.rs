//! Introspection catalog queries (`pg_schema list` and `describe`, and the schema resources).
//!
//! Every query is fixed text; its inputs are bind parameters, each cast to its type because
//! parameters are sent untyped. Catalog relations are qualified with `pg_catalog.` so a
//! session's temporary table of the same name cannot shadow them (the temporary schema is
//! searched before `pg_catalog` for relations, not for functions).
//!
//! List queries share one parameter shape — `$1` schema or NULL, `$2` name pattern (ILIKE) or
//! NULL, `$3` limit, `$4` offset and, for the targets with sizes, `$5` include_sizes — and
//! return one row: `total` (every match) and `items` (the requested page, a JSON array), so the
//! total is known even for a page past the end. Describe queries take a relation's oid (`$1`)
//! or a `$1` schema / `$2` name pair.

use coldquery_core::{Param, Sql, Statement};

/// The schema filter of list queries (namespace alias `n`): without `$1`, every schema but
/// `information_schema` and the `pg_` schemas (catalog, toast, other sessions' temporary
/// schemas) — the caller's own temporary schema stays visible; with `$1`, exactly that schema.
macro_rules! schema_filter {
    () => {
        "CASE WHEN $1::text IS NULL \
         THEN n.nspname <> 'information_schema' AND (n.nspname !~ '^pg_' OR n.oid = pg_my_temp_schema()) \
         ELSE n.nspname = $1::text END"
    };
}

/// The page of a list query: the total and the items `$3`/`$4` select, in `order`.
macro_rules! page {
    ($order:literal) => {
        concat!(
            "SELECT (SELECT count(*) FROM base) AS total, ",
            "(SELECT coalesce(json_agg(i ORDER BY ",
            $order,
            "), '[]'::json) FROM (SELECT * FROM base i ORDER BY ",
            $order,
            " LIMIT $3::bigint OFFSET $4::bigint) i) AS items"
        )
    };
}

/// The page of a list query with sizes: `columns` of `base b`, plus `$5`-gated size columns of
/// `b.oid`, computed for the page's rows only.
macro_rules! sized_page {
    ($columns:literal, $order:literal) => {
        concat!(
            "SELECT (SELECT count(*) FROM base) AS total, ",
            "(SELECT coalesce(json_agg(i ORDER BY ",
            $order,
            "), '[]'::json) FROM (SELECT ",
            $columns,
            ", CASE WHEN $5::boolean THEN pg_total_relation_size(b.oid) END AS total_bytes",
            ", CASE WHEN $5::boolean THEN pg_size_pretty(pg_total_relation_size(b.oid)) END AS total_size",
            " FROM base b ORDER BY ",
            $order,
            " LIMIT $3::bigint OFFSET $4::bigint) i) AS items"
        )
    };
}

/// Not a member of an extension (its objects are listed with target `extensions`).
macro_rules! not_in_extension {
    ($catalog:literal, $oid:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = '",
            $catalog,
            "'::regclass AND d.objid = ",
            $oid,
            " AND d.deptype = 'e')"
        )
    };
}

/// A constraint's type as a word.
macro_rules! constraint_type {
    () => {
        "CASE con.contype WHEN 'p' THEN 'primary_key' WHEN 'u' THEN 'unique' WHEN 'c' THEN 'check' \
         WHEN 'x' THEN 'exclusion' WHEN 'f' THEN 'foreign_key' WHEN 't' THEN 'trigger' ELSE con.contype::text END"
    };
}

/// Leaves out the copies PostgreSQL makes of a foreign key on the same table for each
/// partition of the table it references (they repeat the declared constraint).
macro_rules! not_a_clone {
    () => {
        "NOT (con.conparentid <> 0 AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint pc \
         WHERE pc.oid = con.conparentid AND pc.conrelid = con.conrelid))"
    };
}

/// A trigger's columns (trigger alias `t`, function `p` in namespace `pn`).
macro_rules! trigger_columns {
    () => {
        "t.tgname AS name, \
         CASE WHEN t.tgtype::int & 2 <> 0 THEN 'BEFORE' WHEN t.tgtype::int & 64 <> 0 THEN 'INSTEAD OF' ELSE 'AFTER' END AS timing, \
         array_remove(ARRAY[CASE WHEN t.tgtype::int & 4 <> 0 THEN 'INSERT' END, CASE WHEN t.tgtype::int & 16 <> 0 THEN 'UPDATE' END, \
         CASE WHEN t.tgtype::int & 8 <> 0 THEN 'DELETE' END, CASE WHEN t.tgtype::int & 32 <> 0 THEN 'TRUNCATE' END], NULL) AS events, \
         CASE WHEN t.tgtype::int & 1 <> 0 THEN 'ROW' ELSE 'STATEMENT' END AS level, \
         format('%I.%I', pn.nspname, p.proname) AS function, \
         CASE t.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' ELSE 'enabled' END AS enabled, \
         pg_get_triggerdef(t.oid, true) AS definition"
    };
}

/// A table-like relation's kind as a word.
macro_rules! relation_kind {
    () => {
        "CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' WHEN 'f' THEN 'foreign_table' \
         WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized_view' WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index' \
         WHEN 'I' THEN 'partitioned_index' WHEN 'c' THEN 'composite_type' ELSE c.relkind::text END"
    };
}

/// A column's names for `keys` (an `int2[]` of attribute numbers) of relation `rel`, in order.
macro_rules! column_names {
    ($keys:literal, $rel:literal) => {
        concat!(
            "ARRAY(SELECT a.attname::text FROM unnest(",
            $keys,
            ") WITH ORDINALITY k(attnum, ord) JOIN pg_catalog.pg_attribute a ON a.attrelid = ",
            $rel,
            " AND a.attnum = k.attnum ORDER BY k.ord)"
        )
    };
}

/// A foreign-key action as words.
macro_rules! fk_action {
    ($column:literal) => {
        concat!(
            "CASE ",
            $column,
            " WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE' \
             WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END"
        )
    };
}

// ---------------------------------------------------------------------------------------------
// list

/// Tables (ordinary, partitioned, foreign).
pub(crate) const LIST_TABLES: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT c.oid, n.nspname AS schema, c.relname AS name, ",
    relation_kind!(),
    " AS kind, pg_get_userbyid(c.relowner) AS owner, ",
    "CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate, ",
    "c.relispartition AS is_partition, obj_description(c.oid, 'pg_class') AS comment ",
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ",
    "WHERE c.relkind IN ('r', 'p', 'f') AND ",
    schema_filter!(),
    " AND ($2::text IS NULL OR c.relname ILIKE $2::text)) ",
    sized_page!("b.schema, b.name, b.kind, b.owner, b.row_estimate, b.is_partition, b.comment", "schema, name")
));

/// Views.
pub(crate) const LIST_VIEWS: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT n.nspname AS schema, c.relname AS name, pg_get_userbyid(c.relowner) AS owner, ",
    "obj_description(c.oid, 'pg_class') AS comment ",
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ",
    "WHERE c.relkind = 'v' AND ",
    schema_filter!(),
    " AND ($2::text IS NULL OR c.relname ILIKE $2::text)) ",
    page!("schema, name")
));

/// Materialized views.
pub(crate) const LIST_MATERIALIZED_VIEWS: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT c.oid, n.nspname AS schema, c.relname AS name, pg_get_userbyid(c.relowner) AS owner, ",
    "c.relispopulated AS populated, CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate, ",
    "obj_description(c.oid, 'pg_class') AS comment ",
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ",
    "WHERE c.relkind = 'm' AND ",
    schema_filter!(),
    " AND ($2::text IS NULL OR c.relname ILIKE $2::text)) ",
    sized_page!("b.schema, b.name, b.owner, b.populated, b.row_estimate, b.comment", "schema, name")
));

/// Schemas.
pub(crate) const LIST_SCHEMAS: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner, ",
    "obj_description(n.oid, 'pg_namespace') AS comment ",
    "FROM pg_catalog.pg_namespace n WHERE ",
    schema_filter!(),
    " AND ($2::text IS NULL OR n.nspname ILIKE $2::text)) ",
    page!("name")
));

/// Functions, procedures, aggregates and window functions (not those of extensions).
pub(crate) const LIST_FUNCTIONS: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT n.nspname AS schema, p.proname AS name, ",
    "CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window' END AS kind, ",
    "pg_get_function_identity_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS returns, ",
    "l.lanname AS language, ",
    "CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END AS volatility, ",
    "obj_description(p.oid, 'pg_proc') AS comment ",
    "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace ",
    "JOIN pg_catalog.pg_language l ON l.oid = p.prolang WHERE ",
    schema_filter!(),
    " AND ($2::text IS NULL OR p.proname ILIKE $2::text) AND ",
    not_in_extension!("pg_catalog.pg_proc", "p.oid"),
    ") ",
    page!("schema, name, arguments")
));

/// The columns of a sequence (alias `c`, namespace `n`, `pg_sequence` `s`).
macro_rules! sequence_columns {
    () => {
        "n.nspname AS schema, c.relname AS name, pg_get_userbyid(c.relowner) AS owner, \
         format_type(s.seqtypid, NULL) AS data_type, s.seqstart AS start, s.seqincrement AS increment, \
         s.seqmin AS min_value, s.seqmax AS max_value, s.seqcache AS cache, s.seqcycle AS cycle, \
         CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE') THEN pg_sequence_last_value(c.oid::regclass) END AS last_value, \
         (SELECT json_build_object('schema', tn.nspname, 'table', tc.relname, 'column', a.attname) \
          FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class tc ON tc.oid = d.refobjid \
          JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace \
          JOIN pg_catalog.pg_attribute a ON a.attrelid = tc.oid AND a.attnum = d.refobjsubid \
          WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid \
          AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) AS owned_by, \
         obj_description(c.oid, 'pg_class') AS comment"
    };
}

/// Sequences.
pub(crate) const LIST_SEQUENCES: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT ",
    sequence_columns!(),
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ",
    "JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid WHERE c.relkind = 'S' AND ",
    schema_filter!(),
    " AND ($2::text IS NULL OR c.relname ILIKE $2::text)) ",
    page!("schema, name")
));

/// Indexes.
pub(crate) const LIST_INDEXES: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT ic.oid, n.nspname AS schema, ic.relname AS name, tc.relname AS \"table\", ",
    "am.amname AS method, i.indisunique AS \"unique\", i.indisprimary AS \"primary\", i.indisvalid AS valid, ",
    "pg_get_indexdef(i.indexrelid) AS definition ",
    "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid ",
    "JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid ",
    "JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace ",
    "JOIN pg_catalog.pg_am am ON am.oid = ic.relam WHERE ",
    schema_filter!(),
    " AND ($2::text IS NULL OR ic.relname ILIKE $2::text)) ",
    sized_page!(
        "b.schema, b.name, b.\"table\", b.method, b.\"unique\", b.\"primary\", b.valid, b.definition",
        "schema, \"table\", name"
    )
));

/// Triggers (not the internal ones that implement foreign keys).
pub(crate) const LIST_TRIGGERS: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT n.nspname AS schema, c.relname AS \"table\", ",
    trigger_columns!(),
    " FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid ",
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ",
    "JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace ",
    "WHERE NOT t.tgisinternal AND ",
    schema_filter!(),
    " AND ($2::text IS NULL OR t.tgname ILIKE $2::text)) ",
    page!("schema, \"table\", name")
));

/// Table constraints.
pub(crate) const LIST_CONSTRAINTS: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT n.nspname AS schema, c.relname AS \"table\", con.conname AS name, ",
    constraint_type!(),
    " AS type, pg_get_constraintdef(con.oid, true) AS definition, ",
    "con.condeferrable AS deferrable, con.convalidated AS validated ",
    "FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid ",
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE ",
    not_a_clone!(),
    " AND ",
    schema_filter!(),
    " AND ($2::text IS NULL OR con.conname ILIKE $2::text)) ",
    page!("schema, \"table\", name")
));

/// Installed extensions. They belong to the database rather than a schema, so system schemas
/// are not left out (`plpgsql` lives in `pg_catalog`); `$1` filters on the extension's schema.
pub(crate) const LIST_EXTENSIONS: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema, ",
    "obj_description(e.oid, 'pg_extension') AS comment ",
    "FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace ",
    "WHERE ($1::text IS NULL OR n.nspname = $1::text) AND ($2::text IS NULL OR e.extname ILIKE $2::text)) ",
    page!("name")
));

/// User-defined types: enums, domains, composites, ranges, base types — not array types, not
/// the row types of tables, not those of extensions.
pub(crate) const LIST_TYPES: Sql = Sql::catalog(concat!(
    "WITH base AS (SELECT n.nspname AS schema, t.typname AS name, ",
    "CASE t.typtype WHEN 'b' THEN 'base' WHEN 'c' THEN 'composite' WHEN 'd' THEN 'domain' WHEN 'e' THEN 'enum' ",
    "WHEN 'p' THEN 'pseudo' WHEN 'r' THEN 'range' WHEN 'm' THEN 'multirange' END AS kind, ",
    "pg_get_userbyid(t.typowner) AS owner, ",
    "CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e ",
    "WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END AS labels, ",
    "CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base_type, ",
    "obj_description(t.oid, 'pg_type') AS comment ",
    "FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace ",
    "WHERE (t.typrelid = 0 OR (SELECT c.relkind = 'c' FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid)) ",
    "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type el WHERE el.oid = t.typelem AND el.typarray = t.oid) AND ",
    not_in_extension!("pg_catalog.pg_type", "t.oid"),
    " AND ",
    schema_filter!(),
    " AND ($2::text IS NULL OR t.typname ILIKE $2::text)) ",
    page!("schema, name")
));

/// What a list call asks for, as bind parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListFilter<'a> {
    /// Only this schema (`$1`); otherwise every non-system schema.
    pub(crate) schema: Option<&'a str>,
    /// An ILIKE pattern on the name (`$2`).
    pub(crate) pattern: Option<&'a str>,
    /// Page size (`$3`).
    pub(crate) limit: u64,
    /// Page start (`$4`).
    pub(crate) offset: u64,
    /// Sizes for the targets that have them (`$5`).
    pub(crate) include_sizes: bool,
}

/// A list query with its parameters; `sized` queries take `$5` (include_sizes) too.
pub(crate) fn list(sql: &Sql, sized: bool, filter: &ListFilter<'_>) -> Statement {
    let text = |value: Option<&str>| value.map_or(Param::Null, |s| Param::Text(s.to_owned()));
    let int = |n: u64| Param::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let mut params = vec![text(filter.schema), text(filter.pattern), int(filter.limit), int(filter.offset)];
    if sized {
        params.push(Param::Bool(filter.include_sizes));
    }
    Statement::with_params(sql.clone(), params)
}

// ---------------------------------------------------------------------------------------------
// describe: finding the object

/// The relation named `$2` in schema `$1`, or, with `$1` NULL, the one `search_path` finds.
pub(crate) const FIND_RELATION: Sql = Sql::catalog(concat!(
    "SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name, ",
    relation_kind!(),
    " AS kind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ",
    "WHERE c.relname = $2::text AND CASE WHEN $1::text IS NULL THEN pg_table_is_visible(c.oid) ",
    "ELSE n.nspname = $1::text END"
));

/// A statement looking an object up by schema (`$1`, NULL: through `search_path`) and name (`$2`).
pub(crate) fn by_name(sql: &Sql, schema: Option<&str>, name: &str) -> Statement {
    let schema = schema.map_or(Param::Null, |s| Param::Text(s.to_owned()));
    Statement::with_params(sql.clone(), vec![schema, Param::Text(name.to_owned())])
}

/// A statement about the relation with this oid (`$1`).
pub(crate) fn by_oid(sql: &Sql, oid: i64) -> Statement {
    Statement::with_params(sql.clone(), vec![Param::Int(oid)])
}

// ---------------------------------------------------------------------------------------------
// describe: tables, views, sequences (by oid)

/// A table's own facts: kind, owner, estimate, RLS flags, partitioning, sizes, comment.
pub(crate) const TABLE: Sql = Sql::catalog(concat!(
    "SELECT n.nspname AS schema, c.relname AS name, ",
    relation_kind!(),
    " AS kind, pg_get_userbyid(c.relowner) AS owner, ",
    "CASE c.relpersistence WHEN 'u' THEN 'unlogged' WHEN 't' THEN 'temporary' ELSE 'permanent' END AS persistence, ",
    "CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate, ",
    "c.relrowsecurity AS rls_enabled, c.relforcerowsecurity AS rls_forced, ",
    "CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key, ",
    "(SELECT json_build_object('schema', pn.nspname, 'name', pc.relname) FROM pg_catalog.pg_inherits inh ",
    "JOIN pg_catalog.pg_class pc ON pc.oid = inh.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace ",
    "WHERE inh.inhrelid = c.oid AND c.relispartition LIMIT 1) AS partition_of, ",
    "CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS partition_bound, ",
    "c.relhassubclass AS has_children, ",
    "pg_total_relation_size(c.oid) AS total_bytes, pg_table_size(c.oid) AS table_bytes, ",
    "pg_indexes_size(c.oid) AS index_bytes, pg_size_pretty(pg_total_relation_size(c.oid)) AS total_size, ",
    "obj_description(c.oid, 'pg_class') AS comment ",
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid"
));

/// The columns of a relation: type, nullability, default, identity, generation, comment.
pub(crate) const COLUMNS: Sql = Sql::catalog(
    "SELECT a.attnum AS position, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, \
     NOT a.attnotnull AS nullable, \
     CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS \"default\", \
     CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by_default' END AS identity, \
     CASE WHEN a.attgenerated = 's' THEN pg_get_expr(d.adbin, d.adrelid) END AS generated, \
     col_description(a.attrelid, a.attnum) AS comment \
     FROM pg_catalog.pg_attribute a \
     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
);

/// The constraints of a table (primary key, unique, check, exclusion, foreign keys out).
pub(crate) const CONSTRAINTS: Sql = Sql::catalog(concat!(
    "SELECT con.conname AS name, ",
    constraint_type!(),
    " AS type, ",
    column_names!("con.conkey", "con.conrelid"),
    " AS columns, pg_get_constraintdef(con.oid, true) AS definition, ",
    "con.condeferrable AS deferrable, con.condeferred AS initially_deferred, con.convalidated AS validated, ",
    "fn.nspname AS references_schema, fc.relname AS references_table, ",
    "CASE WHEN con.contype = 'f' THEN ",
    column_names!("con.confkey", "con.confrelid"),
    " END AS references_columns, ",
    "CASE WHEN con.contype = 'f' THEN ",
    fk_action!("con.confupdtype"),
    " END AS on_update, ",
    "CASE WHEN con.contype = 'f' THEN ",
    fk_action!("con.confdeltype"),
    " END AS on_delete ",
    "FROM pg_catalog.pg_constraint con ",
    "LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid ",
    "LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace ",
    "WHERE con.conrelid = $1::oid AND ",
    not_a_clone!(),
    " ORDER BY con.contype, con.conname"
));

/// The foreign keys of other tables (or this one) that reference a table, as declared.
pub(crate) const REFERENCED_BY: Sql = Sql::catalog(concat!(
    "SELECT n.nspname AS schema, c.relname AS \"table\", con.conname AS name, ",
    column_names!("con.conkey", "con.conrelid"),
    " AS columns, ",
    column_names!("con.confkey", "con.confrelid"),
    " AS references_columns, pg_get_constraintdef(con.oid, true) AS definition, ",
    fk_action!("con.confupdtype"),
    " AS on_update, ",
    fk_action!("con.confdeltype"),
    " AS on_delete ",
    "FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid ",
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ",
    "WHERE con.contype = 'f' AND con.confrelid = $1::oid AND con.conparentid = 0 ",
    "ORDER BY n.nspname, c.relname, con.conname"
));

/// The indexes of a relation: definition, uniqueness, validity, size, scans.
pub(crate) const INDEXES: Sql = Sql::catalog(
    "SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, am.amname AS method, \
     i.indisunique AS \"unique\", i.indisprimary AS \"primary\", i.indisvalid AS valid, \
     (SELECT con.conname FROM pg_catalog.pg_constraint con WHERE con.conindid = i.indexrelid \
      AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x') LIMIT 1) AS \"constraint\", \
     pg_relation_size(i.indexrelid) AS size_bytes, pg_size_pretty(pg_relation_size(i.indexrelid)) AS size, \
     s.idx_scan AS scans \
     FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
     JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
     LEFT JOIN pg_catalog.pg_stat_all_indexes s ON s.indexrelid = i.indexrelid \
     WHERE i.indrelid = $1::oid ORDER BY ic.relname",
);

/// The triggers of a table (not the internal ones that implement foreign keys).
pub(crate) const TRIGGERS: Sql = Sql::catalog(concat!(
    "SELECT ",
    trigger_columns!(),
    " FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid ",
    "JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace ",
    "WHERE t.tgrelid = $1::oid AND NOT t.tgisinternal ORDER BY t.tgname"
));

/// The row-level security policies of a table.
pub(crate) const POLICIES: Sql = Sql::catalog(
    "SELECT pol.polname AS name, CASE WHEN pol.polpermissive THEN 'permissive' ELSE 'restrictive' END AS type, \
     CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' \
     ELSE 'ALL' END AS command, \
     CASE WHEN pol.polroles = '{0}' THEN ARRAY['public'] \
     ELSE ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE r.oid = ANY (pol.polroles) ORDER BY r.rolname) END AS roles, \
     pg_get_expr(pol.polqual, pol.polrelid) AS \"using\", pg_get_expr(pol.polwithcheck, pol.polrelid) AS with_check \
     FROM pg_catalog.pg_policy pol WHERE pol.polrelid = $1::oid ORDER BY pol.polname",
);

/// The partitions (or inheritance children) of a table.
pub(crate) const PARTITIONS: Sql = Sql::catalog(concat!(
    "SELECT n.nspname AS schema, c.relname AS name, ",
    relation_kind!(),
    " AS kind, pg_get_expr(c.relpartbound, c.oid) AS bound ",
    "FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid ",
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ",
    "WHERE i.inhparent = $1::oid ORDER BY n.nspname, c.relname"
));

/// A view's or materialized view's own facts and definition.
pub(crate) const VIEW: Sql = Sql::catalog(concat!(
    "SELECT n.nspname AS schema, c.relname AS name, ",
    relation_kind!(),
    " AS kind, pg_get_userbyid(c.relowner) AS owner, pg_get_viewdef(c.oid, true) AS definition, ",
    "CASE WHEN c.relkind = 'm' THEN c.relispopulated END AS populated, ",
    "obj_description(c.oid, 'pg_class') AS comment ",
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid"
));

/// A sequence's settings, current value (when the caller may read it) and owning column.
pub(crate) const SEQUENCE: Sql = Sql::catalog(concat!(
    "SELECT ",
    sequence_columns!(),
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace ",
    "JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid WHERE c.oid = $1::oid"
));

// ---------------------------------------------------------------------------------------------
// describe: functions and types (by schema and name)

/// Every function named `$2` in schema `$1` (or visible through `search_path`): one row per
/// overload.
pub(crate) const FUNCTIONS: Sql = Sql::catalog(
    "SELECT n.nspname AS schema, p.proname AS name, \
     format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS signature, \
     pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS returns, \
     CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window' END AS kind, \
     l.lanname AS language, \
     CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END AS volatility, \
     p.proisstrict AS strict, p.prosecdef AS security_definer, \
     CASE p.proparallel WHEN 's' THEN 'safe' WHEN 'r' THEN 'restricted' ELSE 'unsafe' END AS parallel, \
     pg_get_userbyid(p.proowner) AS owner, \
     CASE WHEN p.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(p.oid) ELSE p.prosrc END AS source, \
     CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END AS definition, \
     obj_description(p.oid, 'pg_proc') AS comment \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE p.proname = $2::text \
     AND CASE WHEN $1::text IS NULL THEN pg_function_is_visible(p.oid) ELSE n.nspname = $1::text END \
     ORDER BY n.nspname, signature",
);

/// The type named `$2` in schema `$1` (or visible through `search_path`).
pub(crate) const TYPE: Sql = Sql::catalog(
    "SELECT n.nspname AS schema, t.typname AS name, format_type(t.oid, NULL) AS sql_name, \
     CASE t.typtype WHEN 'b' THEN 'base' WHEN 'c' THEN 'composite' WHEN 'd' THEN 'domain' WHEN 'e' THEN 'enum' \
     WHEN 'p' THEN 'pseudo' WHEN 'r' THEN 'range' WHEN 'm' THEN 'multirange' END AS kind, \
     pg_get_userbyid(t.typowner) AS owner, \
     CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e \
     WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END AS labels, \
     CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base_type, \
     CASE WHEN t.typtype = 'd' THEN NOT t.typnotnull END AS nullable, \
     t.typdefault AS \"default\", \
     CASE WHEN t.typtype = 'd' THEN ARRAY(SELECT pg_get_constraintdef(con.oid, true) FROM pg_catalog.pg_constraint con \
     WHERE con.contypid = t.oid ORDER BY con.conname) END AS constraints, \
     CASE WHEN t.typtype = 'r' THEN (SELECT format_type(r.rngsubtype, NULL) FROM pg_catalog.pg_range r \
     WHERE r.rngtypid = t.oid) END AS subtype, \
     CASE WHEN t.typtype = 'c' THEN (SELECT json_agg(json_build_object('name', a.attname, 'type', \
     format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum) FROM pg_catalog.pg_attribute a \
     WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END AS attributes, \
     obj_description(t.oid, 'pg_type') AS comment \
     FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
     WHERE t.typname = $2::text \
     AND CASE WHEN $1::text IS NULL THEN pg_type_is_visible(t.oid) ELSE n.nspname = $1::text END",
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The highest `$n` a query uses, and whether it uses every one below it: a statement's
    /// parameter count must match what [`list`], [`by_name`] and [`by_oid`] bind.
    fn placeholders(sql: &Sql) -> Vec<usize> {
        let text = sql.text();
        let mut found: Vec<usize> = (1..=9).filter(|n| text.contains(&format!("${n}::"))).collect();
        found.dedup();
        found
    }

    #[test]
    fn list_queries_take_the_list_parameters() {
        for (sql, sized) in [
            (&LIST_TABLES, true),
            (&LIST_VIEWS, false),
            (&LIST_MATERIALIZED_VIEWS, true),
            (&LIST_SCHEMAS, false),
            (&LIST_FUNCTIONS, false),
            (&LIST_SEQUENCES, false),
            (&LIST_INDEXES, true),
            (&LIST_TRIGGERS, false),
            (&LIST_CONSTRAINTS, false),
            (&LIST_EXTENSIONS, false),
            (&LIST_TYPES, false),
        ] {
            let expected: Vec<usize> = if sized { vec![1, 2, 3, 4, 5] } else { vec![1, 2, 3, 4] };
            assert_eq!(placeholders(sql), expected, "{}", sql.text());
            let filter = ListFilter { schema: None, pattern: None, limit: 1, offset: 0, include_sizes: false };
            assert_eq!(list(sql, sized, &filter).params.len(), expected.len());
        }
    }

    #[test]
    fn describe_queries_take_their_parameters() {
        for sql in [&FIND_RELATION, &FUNCTIONS, &TYPE] {
            assert_eq!(placeholders(sql), [1, 2], "{}", sql.text());
        }
        for sql in [
            &TABLE,
            &COLUMNS,
            &CONSTRAINTS,
            &REFERENCED_BY,
            &INDEXES,
            &TRIGGERS,
            &POLICIES,
            &PARTITIONS,
            &VIEW,
            &SEQUENCE,
        ] {
            assert_eq!(placeholders(sql), [1], "{}", sql.text());
        }
    }
}
