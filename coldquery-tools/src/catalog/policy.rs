//! The read function policy as one catalog query: every function a read could call is found
//! in `pg_proc` by the names the classifier collected and judged by the rules of
//! [`crate::functions`]; the first refused one raises an error, so the read that follows it in
//! the same transaction never runs.
//!
//! What "could call" covers, each by name and never by guessing which overload wins (all of
//! them must be allowed):
//! - functions called by name (`f(x)`, `s.f(x)`), in any schema;
//! - functions reachable through attribute notation (`x.f`, `(x).f`, a column name over a
//!   function in FROM): any name in a column reference or field selection, matched against
//!   functions callable with one argument;
//! - the functions behind the operators named in the statement, and behind casts to the
//!   types named in it;
//! - the functions and operators that the views and row-level-security policies of the
//!   relations it names depend on (recursively through views), as `pg_depend` records them.
//!
//! Functions that take `internal` cannot be called from SQL and are not judged. Built-in
//! objects are those created by initdb (OID below 16384, `FirstNormalObjectId`).

/// The verdict on one function `p` (with its schema `n` and extension `e`): `NULL` if reads
/// may call it, else why not. Parameters `$6`..`$12` as in [`READ_FUNCTION_GUARD`].
macro_rules! verdict {
    () => {
        "CASE
             WHEN n.nspname || '.' || p.proname LIKE ANY($6::text[]) OR p.proname LIKE ANY($6::text[])
               THEN 'is on the deny-list (--deny-functions)'
             WHEN p.oid < 16384 THEN CASE
               WHEN p.proname = ANY($7::text[])
                 THEN 'is a built-in function with effects a read-only transaction does not stop, or that runs SQL given as text'
               WHEN p.provolatile = 'v' AND NOT p.proname = ANY($8::text[])
                 THEN 'is a volatile built-in function that is not on the reviewed list of harmless ones'
               END
             WHEN e.extname IS NOT NULL THEN CASE
               WHEN e.extname = ANY($9::text[])
                 THEN 'belongs to extension ' || e.extname || ', whose functions reads never call'
               WHEN NOT (e.extname = ANY($10::text[]) OR ('*' = ANY($10::text[]) AND NOT e.extname = ANY($11::text[])))
                 THEN 'belongs to extension ' || e.extname || ', which is not in --allow-extensions'
               WHEN p.provolatile = 'v' AND NOT p.proname = ANY($8::text[])
                 THEN 'is a volatile function of extension ' || e.extname || ' that is not on the reviewed list of harmless ones'
               END
             WHEN n.nspname || '.' || p.proname LIKE ANY($12::text[]) THEN NULL
             ELSE 'is a user-defined function that is not in --allow-functions'
           END"
    };
}

/// `pg_proc p` with its schema `n` and its extension `e` (if any), callable from SQL.
macro_rules! functions {
    () => {
        "pg_catalog.pg_proc p
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
      LEFT JOIN pg_catalog.pg_depend d
        ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
       AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
      LEFT JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid"
    };
}

macro_rules! signature {
    () => {
        "pg_catalog.format('%s.%s(%s)', pg_catalog.quote_ident(n.nspname), pg_catalog.quote_ident(p.proname),
                             pg_catalog.pg_get_function_identity_arguments(p.oid))"
    };
}

/// Parameters: `$1` called names, `$2` attribute-notation names, `$3` operator names, `$4`
/// type names, `$5` relation names, `$6` deny patterns (LIKE), `$7` built-ins that are never
/// allowed, `$8` volatile functions reviewed as harmless, `$9` extensions that reads never
/// use, `$10` allowed extensions (`*` for all but `$11`), `$11` extensions a wildcard does not
/// allow, `$12` allow patterns for user-defined functions (LIKE).
///
/// Its plan is generic after five runs (the statement is prepared once per connection), so it is
/// written for one: each list is tested for emptiness (`cardinality`, a one-time filter on the
/// parameter) before its catalog is searched, and the candidate functions are looked up by OID
/// (`= ANY(ARRAY(...))`, an index scan) rather than joined with all of `pg_proc`. Measured with
/// `EXPLAIN ANALYZE` of the generic plan for `SELECT * FROM t` and `... WHERE id = 1`: 0.19 →
/// 0.11 ms and 0.75–0.92 → 0.28–0.30 ms (empty lists had scanned `pg_type` and `pg_operator`
/// whole; one operator name had scanned `pg_proc` whole).
///
/// Every string it raises contains a stable function's result, so the planner cannot fold
/// the failing cast into a constant and raise it when nothing was refused. The reason is
/// wrapped in [`coldquery_core::GUARD_REFUSAL`] and [`coldquery_core::GUARD_REFUSAL_END`], the
/// only part of the server's message ColdQuery reads (see [`coldquery_core::Guard::refusal`]).
pub(crate) const READ_FUNCTION_GUARD: &str = concat!(
    r"
WITH RECURSIVE rels(oid) AS (
    SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname = ANY($5::text[]) AND c.oid >= 16384
  UNION
    SELECT d.refobjid
      FROM rels r
      JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = w.oid
     WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid >= 16384
),
-- The expressions that run when these relations are read: their views' rules and their
-- row-level-security policies, as stored node trees. Dependencies on built-in functions are
-- not recorded in pg_depend (they are pinned), so the function ids are read from the trees.
trees(tree) AS (
    SELECT w.ev_action::text FROM rels r JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid
  UNION ALL
    SELECT concat(p.polqual::text, ' ', p.polwithcheck::text)
      FROM rels r JOIN pg_catalog.pg_policy p ON p.polrelid = r.oid
),
candidates(oid) AS (
    SELECT p.oid FROM pg_catalog.pg_proc p WHERE p.proname = ANY($1::text[]) AND pg_catalog.cardinality($1::text[]) > 0
  UNION
    SELECT p.oid FROM pg_catalog.pg_proc p
     WHERE p.proname = ANY($2::text[]) AND pg_catalog.cardinality($2::text[]) > 0
       AND p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1
  UNION
    SELECT o.oprcode FROM pg_catalog.pg_operator o
     WHERE o.oprname = ANY($3::text[]) AND pg_catalog.cardinality($3::text[]) > 0
  UNION
    SELECT c.castfunc FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_type t ON t.oid = c.casttarget
     WHERE t.typname = ANY($4::text[]) AND pg_catalog.cardinality($4::text[]) > 0 AND c.castfunc <> 0
  UNION
    SELECT m[2]::oid FROM trees, regexp_matches(tree, ':(funcid|opfuncid|aggfnoid|winfnoid) (\d+)', 'g') m
),
judged AS (
    SELECT ",
    signature!(),
    " AS signature, ",
    verdict!(),
    r" AS refusal
      FROM ",
    functions!(),
    r"
     WHERE p.oid = ANY(ARRAY(SELECT oid FROM candidates))
       AND NOT 'pg_catalog.internal'::regtype = ANY(p.proargtypes::oid[])
)
SELECT ('coldquery-refused: ' || reason || ' :coldquery-refused')::int
  FROM (
    SELECT 'standard_conforming_strings is ' || pg_catalog.current_setting('standard_conforming_strings')
           || ' on this connection, so PostgreSQL would not read the statement as it was checked' AS reason
     WHERE pg_catalog.current_setting('standard_conforming_strings') <> 'on'
    UNION ALL
    (SELECT 'function ' || signature || ' ' || refusal FROM judged WHERE refusal IS NOT NULL ORDER BY signature LIMIT 1)
  ) refused
 LIMIT 1"
);

/// Every function callable from SQL with the policy's verdict (`refusal` is NULL when reads
/// may call it), for the catalog-enumeration test and the posture report. Parameters `$6`..
/// `$12` as in [`READ_FUNCTION_GUARD`]; `$1`..`$5` are not used and may be empty arrays.
pub(crate) const READ_FUNCTION_VERDICTS: &str = concat!(
    "SELECT ",
    signature!(),
    r" AS signature, p.proname::text AS name, p.provolatile::text AS volatility,
       e.extname::text AS extension, p.oid < 16384 AS builtin, ",
    verdict!(),
    r" AS refusal
  FROM (SELECT $1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) unused, ",
    functions!(),
    r"
 WHERE NOT 'pg_catalog.internal'::regtype = ANY(p.proargtypes::oid[])
 ORDER BY 1"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_raises_its_reason_between_the_markers_executors_read() {
        let raised = format!(
            "SELECT ('{}' || reason || '{}')::int",
            coldquery_core::GUARD_REFUSAL,
            coldquery_core::GUARD_REFUSAL_END
        );
        assert!(READ_FUNCTION_GUARD.contains(&raised), "{READ_FUNCTION_GUARD}");
    }
}
