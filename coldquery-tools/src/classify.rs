//! Statement classification with PostgreSQL's own grammar (libpg_query, through the
//! `pg_query` crate).
//!
//! Every caller statement is parsed before anything is sent. The parse tree is walked
//! *generically* (every node of every kind, via its serde form), so nothing hides from the
//! walk: functions called in the select list, in FROM, in CTEs, in subqueries, in defaults or
//! in `VALUES` are all found, schema-qualified or quoted; a data-modifying CTE or a
//! `SELECT … INTO` is seen wherever it is nested.
//!
//! The read path does not rely on this alone: reads also run in a `READ ONLY` transaction that
//! is always rolled back. Classification is what turns a would-be server error into a clear
//! refusal *before* sending, and what stops the side effects a read-only transaction does not
//! (functions such as `pg_terminate_backend` or `dblink_exec`, see the deny-list).

use coldquery_core::{CallerSql, Error, ErrorKind, Result};
use pg_query::protobuf::{ObjectType, ReindexObjectType, VariableSetKind};
use serde_json::Value;

/// What a statement is, as far as the policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The parse-tree node of the statement, e.g. `SelectStmt`, `InsertStmt`.
    pub kind: String,
    /// A command tag in PostgreSQL's spelling, e.g. `SELECT`, `CREATE TABLE`.
    pub tag: String,
    /// Every function called anywhere in the statement, as written (`schema.name` when
    /// qualified), in order of appearance, without duplicates.
    pub functions: Vec<String>,
    /// True if executing it changes data or schema (DML anywhere, `SELECT INTO`, row locks,
    /// DDL, maintenance, `CALL`).
    pub writes: bool,
    /// The statement's own flags the policy needs.
    flags: Flags,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Flags {
    /// `EXPLAIN ANALYZE` (the explained statement is executed).
    explain_analyze: bool,
    /// The statement inside an `EXPLAIN`, if any.
    explained_kind: Option<String>,
    /// `COPY … PROGRAM` or `COPY` to/from a server file.
    copy_server_side: bool,
    /// `COPY … FROM STDIN` / `TO STDOUT` (the copy sub-protocol).
    copy_stdio: bool,
    /// Cannot run inside a transaction block.
    needs_autocommit: bool,
    /// Leaves state on the connection after the statement (SET, temp tables, LISTEN, ...).
    session_state: bool,
    /// `SET TRANSACTION …`, `SET SESSION CHARACTERISTICS …`, `SET transaction_read_only …`.
    sets_transaction_characteristics: bool,
}

/// The statement kinds a read may run.
const READ_KINDS: &[&str] = &["SelectStmt", "VariableShowStmt", "ExplainStmt"];

/// Statement kinds no tool runs from caller SQL, whatever the path: they control the
/// transaction, use a protocol the tools do not speak, or run arbitrary code/state.
const NEVER: &[(&str, &str)] = &[
    ("TransactionStmt", "transaction control is done with the pg_tx tool (begin, commit, rollback, savepoint)"),
    ("DoStmt", "DO blocks run arbitrary procedural code; write the statements out, or create a function"),
    ("PrepareStmt", "SQL-level prepared statements would outlive the call; send the statement itself with params"),
    ("ExecuteStmt", "SQL-level prepared statements would outlive the call; send the statement itself with params"),
    ("DeallocateStmt", "SQL-level prepared statements are not used; send the statement itself with params"),
    ("ListenStmt", "notifications cannot be delivered through this tool"),
    ("UnlistenStmt", "notifications cannot be delivered through this tool"),
    ("NotifyStmt", "notifications are not sent from this tool"),
    ("DeclareCursorStmt", "cursors are not kept across calls; use LIMIT/OFFSET or max_rows"),
    ("FetchStmt", "cursors are not kept across calls; use LIMIT/OFFSET or max_rows"),
    ("ClosePortalStmt", "cursors are not kept across calls"),
    ("DiscardStmt", "the connection's state is managed by ColdQuery"),
    ("LoadStmt", "loading shared libraries is not allowed"),
    ("CheckPointStmt", "CHECKPOINT is a server administration command"),
    ("AlterSystemStmt", "ALTER SYSTEM changes the server's configuration files"),
];

/// The default deny-list of functions a read may not call: functions with effects that a
/// `READ ONLY` transaction does not stop (signals, locks, files, other connections, server
/// configuration, sequences). A trailing `*` matches a prefix.
const DEFAULT_DENIED: &[&str] = &[
    "dblink*",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_*",
    "pg_drop_replication_slot",
    "pg_replication_origin_*",
    "pg_logical_emit_message",
    "pg_backup_*",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_advisory_*",
    "pg_try_advisory_*",
    "set_config",
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
    "txid_current",
    "pg_current_xact_id",
    "query_to_xml*",
    "query_to_xmlschema",
    "cursor_to_xml*",
    "table_to_xml*",
    "database_to_xml*",
    "schema_to_xml*",
    // These run their text argument as SQL (through SPI), out of the classifier's sight.
    "ts_stat",
    "ts_rewrite",
    "pg_import_system_collations",
    "pg_log_backend_memory_contexts",
];

/// Functions that leave state on a pooled connection; refused in autocommit statements.
const SESSION_STATE_FUNCTIONS: &[&str] =
    &["pg_advisory_lock*", "pg_advisory_unlock*", "pg_try_advisory_lock*", "set_config", "dblink_connect*"];

/// The functions reads may not call (configurable; see [`FunctionDenyList::default_list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDenyList {
    patterns: Vec<String>,
}

impl FunctionDenyList {
    /// A deny-list of exact names and `prefix*` patterns (compared with the function's
    /// unqualified name, case-sensitively as PostgreSQL resolves it after case folding).
    pub fn new(patterns: impl IntoIterator<Item = String>) -> FunctionDenyList {
        let mut patterns: Vec<String> =
            patterns.into_iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
        patterns.dedup();
        FunctionDenyList { patterns }
    }

    /// The built-in list.
    pub fn default_list() -> FunctionDenyList {
        FunctionDenyList::new(DEFAULT_DENIED.iter().map(|s| (*s).to_owned()))
    }

    /// The patterns.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The first pattern that denies `function` (a possibly qualified name), if any.
    pub fn denies(&self, function: &str) -> Option<&str> {
        let name = unqualified(function);
        self.patterns.iter().map(String::as_str).find(|p| matches_pattern(p, name))
    }
}

fn unqualified(function: &str) -> &str {
    function.rsplit('.').next().unwrap_or(function)
}

fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// The stack for parsing and walking: libpg_query and the tree walk recurse per nesting
/// level, and callers may send deeply nested SQL. PostgreSQL's own depth check ends the parse
/// long before this is used up.
const PARSE_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Parses `sql` and classifies it. Exactly one statement is accepted.
pub fn classify(sql: &CallerSql) -> Result<Classified> {
    let text = sql.as_str();
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("coldquery-classify".into())
            .stack_size(PARSE_STACK_BYTES)
            .spawn_scoped(scope, || classify_on_this_thread(text))
            .map_err(|e| Error::internal(format!("could not start the SQL classifier: {e}")))?
            .join()
            .map_err(|_| Error::internal("the SQL classifier failed on this statement"))?
    })
}

fn classify_on_this_thread(text: &str) -> Result<Classified> {
    let parsed = pg_query::parse(text).map_err(|e| syntax_error(text, e))?;
    let statements = &parsed.protobuf.stmts;
    match statements.len() {
        0 => return Err(Error::invalid("parameter 'sql' contains no statement (only comments or semicolons)")),
        1 => {}
        n => {
            return Err(Error::new(
                ErrorKind::StatementNotAllowed,
                format!("parameter 'sql' contains {n} statements; exactly one statement is allowed per call"),
            )
            .with_hint("send one statement per call; for several writes that must commit together use pg_query transaction or a pg_tx session"));
        }
    }
    let tree = serde_json::to_value(&statements[0].stmt)
        .map_err(|e| Error::internal(format!("could not read the parse tree: {e}")))?;
    let (kind, body) = node_of(&tree).ok_or_else(|| Error::invalid("parameter 'sql' contains no statement"))?;
    let mut walk = Walk::default();
    walk.visit_all(&tree);
    let mut flags = Flags { session_state: walk.session_state, ..Flags::default() };
    let mut writes = walk.writes;
    match kind {
        "SelectStmt" | "VariableShowStmt" => {}
        "ExplainStmt" => {
            flags.explain_analyze = has_option(body, "analyze");
            flags.explained_kind = node_of(&body["query"]).map(|(k, _)| k.to_owned());
            // EXPLAIN without ANALYZE plans but does not execute; only ANALYZE runs DML.
            writes = flags.explain_analyze && walk.writes;
        }
        "CopyStmt" => {
            flags.copy_server_side =
                body["is_program"] == true || body["filename"].as_str().is_some_and(|f| !f.is_empty());
            flags.copy_stdio = !flags.copy_server_side;
            writes = true;
        }
        "VacuumStmt" => {
            // ANALYZE (the same node) may run in a transaction block; VACUUM may not.
            flags.needs_autocommit = body["is_vacuumcmd"] == true;
            writes = true;
        }
        "CreatedbStmt" | "DropdbStmt" | "CreateTableSpaceStmt" | "DropTableSpaceStmt" | "AlterSystemStmt" => {
            flags.needs_autocommit = true;
            writes = true;
        }
        "ClusterStmt" => {
            // CLUSTER without a table re-clusters the whole database: not in a transaction block.
            flags.needs_autocommit = body["relation"].is_null();
            writes = true;
        }
        "IndexStmt" | "DropStmt" | "RefreshMatViewStmt" => {
            flags.needs_autocommit = body["concurrent"] == true && kind != "RefreshMatViewStmt";
            writes = true;
        }
        "ReindexStmt" => {
            let whole = [
                ReindexObjectType::ReindexObjectSchema,
                ReindexObjectType::ReindexObjectSystem,
                ReindexObjectType::ReindexObjectDatabase,
            ];
            let kind = body["kind"].as_i64();
            flags.needs_autocommit =
                has_option(body, "concurrently") || whole.iter().any(|w| kind == Some(i64::from(*w as i32)));
            writes = true;
        }
        "VariableSetStmt" => {
            flags.session_state = body["is_local"] != true;
            let name = body["name"].as_str().unwrap_or_default().to_ascii_lowercase();
            flags.sets_transaction_characteristics = matches!(
                name.as_str(),
                "transaction"
                    | "session characteristics"
                    | "transaction_read_only"
                    | "transaction_isolation"
                    | "transaction_deferrable"
                    | "default_transaction_read_only"
            );
            writes = true;
        }
        _ => writes = true,
    }
    Ok(Classified { tag: command_tag(kind, body), kind: kind.to_owned(), functions: walk.functions, writes, flags })
}

fn syntax_error(text: &str, error: pg_query::Error) -> Error {
    let message = match error {
        pg_query::Error::Parse(message) => message,
        other => other.to_string(),
    };
    let position = error_position(text, &message);
    let error = Error::new(ErrorKind::DatabaseError, message)
        .with_sqlstate("42601")
        .with_hint("the statement is not valid PostgreSQL syntax; check it against the PostgreSQL documentation");
    match position {
        Some(position) => error.with_position(position),
        None => error,
    }
}

/// The 1-based character position of a syntax error, as PostgreSQL reports it. The `pg_query`
/// crate drops libpg_query's cursor position, so it is found again: the parser stops at the
/// first token it cannot take, so the shortest run of leading tokens that fails *before* its
/// end ends with that token (a binary search over prefixes, parsing each).
fn error_position(text: &str, message: &str) -> Option<u32> {
    let chars_before = |byte: usize| text.get(..byte).map(|prefix| prefix.chars().count() + 1);
    if message.contains("at end of input") {
        return chars_before(text.len()).and_then(|n| u32::try_from(n).ok());
    }
    let tokens = pg_query::scan(text).ok()?.tokens;
    let fails_inside = |count: usize| {
        let end = usize::try_from(tokens[count - 1].end).unwrap_or(usize::MAX);
        text.get(..end).is_some_and(|prefix| match pg_query::parse(prefix) {
            Ok(_) => false,
            Err(e) => !e.to_string().contains("at end of input"),
        })
    };
    if tokens.is_empty() || !fails_inside(tokens.len()) {
        return None;
    }
    let (mut low, mut high) = (1, tokens.len());
    while low < high {
        let middle = (low + high) / 2;
        if fails_inside(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let start = usize::try_from(tokens[high - 1].start).ok()?;
    chars_before(start).and_then(|n| u32::try_from(n).ok())
}

/// `{"node": {"Kind": {...}}}` → (`Kind`, body).
fn node_of(value: &Value) -> Option<(&str, &Value)> {
    let inner = value.get("node")?.as_object()?;
    let (kind, body) = inner.iter().next()?;
    Some((kind.as_str(), body))
}

/// True if a `DefElem` option list (`options` or `params`) names `name` (and it is not
/// explicitly false).
fn has_option(body: &Value, name: &str) -> bool {
    ["options", "params"].iter().filter_map(|key| body[*key].as_array()).flatten().any(|option| {
        let Some(("DefElem", def)) = node_of(option) else { return false };
        if def["defname"] != name {
            return false;
        }
        // `ANALYZE false` / `(ANALYZE off)`: the argument is a Boolean or String node.
        match node_of(&def["arg"]) {
            Some(("Boolean", b)) => b["boolval"] == true,
            Some(("String", s)) => !matches!(s["sval"].as_str(), Some("false" | "off" | "0")),
            Some(("Integer", i)) => i["ival"].as_i64().unwrap_or(0) != 0,
            _ => true,
        }
    })
}

#[derive(Default)]
struct Walk {
    functions: Vec<String>,
    writes: bool,
    session_state: bool,
}

impl Walk {
    /// Visits every node without recursion (nesting depth is the caller's choice).
    fn visit_all(&mut self, root: &Value) {
        let mut stack = vec![root];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    for (key, child) in map {
                        self.visit_node(key, child);
                        stack.push(child);
                    }
                }
                Value::Array(items) => stack.extend(items.iter()),
                _ => {}
            }
        }
    }

    fn visit_node(&mut self, key: &str, body: &Value) {
        // Temporary objects live on the connection: `relpersistence = 't'` on any relation
        // (tables, views, sequences, SELECT INTO TEMP), or any name in a pg_temp schema.
        if key == "relpersistence" && body == "t" {
            self.session_state = true;
        }
        // (`String` nodes are identifiers; string constants are `A_Const`s.)
        let in_temp_schema = match key {
            "schemaname" => body.as_str(),
            "String" => body["sval"].as_str(),
            _ => None,
        };
        if in_temp_schema.is_some_and(|n| n.starts_with("pg_temp")) {
            self.session_state = true;
        }
        match key {
            "FuncCall" => {
                let name: Vec<&str> = body["funcname"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|part| match node_of(part) {
                        Some(("String", s)) => s["sval"].as_str(),
                        _ => None,
                    })
                    .collect();
                let name = name.join(".");
                if !self.functions.contains(&name) {
                    self.functions.push(name);
                }
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => self.writes = true,
            "SelectStmt" => {
                if !body["into_clause"].is_null() {
                    self.writes = true;
                }
                if body["locking_clause"].as_array().is_some_and(|l| !l.is_empty()) {
                    self.writes = true;
                }
            }
            "CreateTableAsStmt" => self.writes = true,
            _ => {}
        }
    }
}

/// PostgreSQL's command tag for a statement kind (close enough for reporting and the DDL
/// verb check).
fn command_tag(kind: &str, body: &Value) -> String {
    let fixed = match kind {
        "SelectStmt" => {
            if body["into_clause"].is_null() {
                "SELECT"
            } else {
                "SELECT INTO"
            }
        }
        "InsertStmt" => "INSERT",
        "UpdateStmt" => "UPDATE",
        "DeleteStmt" => "DELETE",
        "MergeStmt" => "MERGE",
        "VariableShowStmt" => "SHOW",
        "VariableSetStmt" => {
            // Enum fields of the parse tree serialize as their protobuf numbers.
            let reset = [VariableSetKind::VarReset as i32, VariableSetKind::VarResetAll as i32];
            if body["kind"].as_i64().is_some_and(|k| reset.iter().any(|r| i64::from(*r) == k)) {
                "RESET"
            } else {
                "SET"
            }
        }
        "CreateStmt" => "CREATE TABLE",
        "CreateTableAsStmt" => {
            if body["objtype"].as_i64() == Some(i64::from(ObjectType::ObjectMatview as i32)) {
                "CREATE MATERIALIZED VIEW"
            } else {
                "CREATE TABLE AS"
            }
        }
        "IndexStmt" => "CREATE INDEX",
        "ViewStmt" => "CREATE VIEW",
        "DefineStmt" | "CompositeTypeStmt" | "CreateEnumStmt" | "CreateRangeStmt" => "CREATE TYPE",
        "CreateSeqStmt" => "CREATE SEQUENCE",
        "CreateTrigStmt" => "CREATE TRIGGER",
        "RuleStmt" => "CREATE RULE",
        "CreatedbStmt" => "CREATE DATABASE",
        "DropdbStmt" => "DROP DATABASE",
        "RenameStmt" | "AlterObjectSchemaStmt" | "AlterOwnerStmt" => "ALTER",
        "AlterSeqStmt" => "ALTER SEQUENCE",
        "DropStmt" => "DROP",
        "CommentStmt" => "COMMENT",
        "TruncateStmt" => "TRUNCATE",
        "CopyStmt" => "COPY",
        "ExplainStmt" => "EXPLAIN",
        "CallStmt" => "CALL",
        "DoStmt" => "DO",
        "VacuumStmt" => {
            if body["is_vacuumcmd"] == true {
                "VACUUM"
            } else {
                "ANALYZE"
            }
        }
        "GrantStmt" => {
            if body["is_grant"] == true {
                "GRANT"
            } else {
                "REVOKE"
            }
        }
        "GrantRoleStmt" => {
            if body["is_grant"] == true {
                "GRANT ROLE"
            } else {
                "REVOKE ROLE"
            }
        }
        "TransactionStmt" => "TRANSACTION",
        "RefreshMatViewStmt" => "REFRESH MATERIALIZED VIEW",
        "ReindexStmt" => "REINDEX",
        "ClusterStmt" => "CLUSTER",
        "LockStmt" => "LOCK TABLE",
        _ => return generic_tag(kind),
    };
    fixed.to_owned()
}

/// `AlterTableStmt` → `ALTER TABLE`.
fn generic_tag(kind: &str) -> String {
    let base = kind.strip_suffix("Stmt").unwrap_or(kind);
    let mut out = String::new();
    for (i, c) in base.char_indices() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn never_reason(kind: &str) -> Option<&'static str> {
    NEVER.iter().find(|(k, _)| *k == kind).map(|(_, why)| *why)
}

fn not_allowed(message: String, hint: &str) -> Error {
    Error::new(ErrorKind::StatementNotAllowed, message).with_hint(hint)
}

/// A read: only reading statements, no writes anywhere, no denied function.
pub(crate) fn check_read(c: &Classified, deny: &FunctionDenyList) -> Result<()> {
    if let Some(why) = never_reason(&c.kind) {
        return Err(not_allowed(format!("{} is not allowed here", c.tag), why));
    }
    if matches!(c.kind.as_str(), "CopyStmt" | "LockStmt" | "VariableSetStmt") {
        return Err(not_allowed(
            format!("{} is not allowed in a read", c.tag),
            "reads run one SELECT, VALUES, TABLE, SHOW or EXPLAIN statement",
        ));
    }
    if c.flags.explain_analyze && c.flags.explained_kind.as_deref().is_some_and(|k| !READ_KINDS.contains(&k)) {
        return Err(Error::new(
            ErrorKind::ReadOnlyViolation,
            format!("EXPLAIN ANALYZE executes the statement, and {} writes", c.flags.explained_kind.as_deref().unwrap_or("it")),
        )
        .with_hint("run EXPLAIN ANALYZE of a write inside a session (pg_tx begin, then pg_query explain with session_id, then pg_tx rollback)"));
    }
    if c.writes || !READ_KINDS.contains(&c.kind.as_str()) {
        return Err(Error::new(
            ErrorKind::ReadOnlyViolation,
            format!("this statement ({}) changes data or schema, and action 'read' only reads", c.tag),
        )
        .with_hint("use pg_query with action 'write' and either session_id (from pg_tx begin) or autocommit: true"));
    }
    if let Some((function, pattern)) = c.functions.iter().find_map(|f| deny.denies(f).map(|p| (f, p))) {
        return Err(not_allowed(
            format!("function '{function}' is not allowed in a read (deny-list entry '{pattern}')"),
            "this function has effects a read-only transaction cannot stop; if you really need it, call it with pg_query write in a session",
        ));
    }
    Ok(())
}

/// A write: anything but transaction control and the statements no tool runs; no COPY to
/// or from server files or programs, no COPY over the copy sub-protocol.
pub(crate) fn check_write(c: &Classified) -> Result<()> {
    if let Some(why) = never_reason(&c.kind) {
        return Err(not_allowed(format!("{} is not allowed here", c.tag), why));
    }
    if c.flags.sets_transaction_characteristics {
        return Err(not_allowed(
            "changing the transaction's characteristics with SET is not allowed here".to_owned(),
            "isolation level, read_only and deferrable are chosen once, at pg_tx begin",
        ));
    }
    if c.flags.copy_server_side {
        return Err(not_allowed(
            "COPY to or from a server file or program is not allowed".to_owned(),
            "use INSERT ... VALUES / INSERT ... SELECT, or read rows with pg_query read",
        ));
    }
    if c.flags.copy_stdio {
        return Err(not_allowed(
            "COPY FROM STDIN / TO STDOUT is not supported by this tool".to_owned(),
            "use INSERT ... VALUES with params to load rows, and pg_query read to fetch them",
        ));
    }
    Ok(())
}

/// True if the statement cannot run inside a transaction block (VACUUM, CREATE INDEX
/// CONCURRENTLY, CREATE DATABASE, ...): it needs `autocommit: true`.
pub(crate) fn needs_autocommit(c: &Classified) -> bool {
    c.flags.needs_autocommit
}

/// An autocommit statement runs on a pooled connection: it must not leave state there.
pub(crate) fn check_autocommit(c: &Classified) -> Result<()> {
    let function =
        c.functions.iter().find(|f| SESSION_STATE_FUNCTIONS.iter().any(|p| matches_pattern(p, unqualified(f))));
    if c.flags.session_state || function.is_some() {
        let what = function.map_or_else(|| c.tag.clone(), |f| format!("{f}()"));
        return Err(not_allowed(
            format!("{what} would leave state on a shared connection, so it cannot run with autocommit"),
            "run it inside a session: pg_tx begin, then pg_query write with session_id",
        ));
    }
    Ok(())
}

/// `explain` accepts the statements PostgreSQL can explain.
pub(crate) fn check_explainable(c: &Classified) -> Result<()> {
    const EXPLAINABLE: &[&str] =
        &["SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CreateTableAsStmt"];
    if c.kind == "ExplainStmt" {
        return Err(Error::invalid(
            "pg_query explain: pass the statement itself in 'sql', without EXPLAIN; use analyze/buffers/verbose/format for the options",
        ));
    }
    if !EXPLAINABLE.contains(&c.kind.as_str()) {
        return Err(not_allowed(
            format!("{} cannot be explained", c.tag),
            "EXPLAIN works on SELECT, INSERT, UPDATE, DELETE, MERGE and CREATE TABLE AS",
        ));
    }
    Ok(())
}

/// The DDL verbs of `pg_schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DdlVerb {
    /// `CREATE …`.
    Create,
    /// `ALTER …`, `COMMENT ON …`, renames.
    Alter,
    /// `DROP …`.
    Drop,
}

impl DdlVerb {
    /// The action name.
    pub(crate) fn action(self) -> &'static str {
        match self {
            DdlVerb::Create => "create",
            DdlVerb::Alter => "alter",
            DdlVerb::Drop => "drop",
        }
    }
}

/// Raw DDL for `pg_schema create/alter/drop` must be one statement of that verb.
pub(crate) fn check_ddl_verb(c: &Classified, verb: DdlVerb) -> Result<()> {
    check_write(c)?;
    let tag = c.tag.as_str();
    let ok = match verb {
        DdlVerb::Create => tag.starts_with("CREATE"),
        DdlVerb::Alter => tag.starts_with("ALTER") || tag == "COMMENT",
        DdlVerb::Drop => tag.starts_with("DROP"),
    };
    if ok {
        Ok(())
    } else {
        Err(not_allowed(
            format!(
                "pg_schema {}: the statement is {tag}, not a {} statement",
                verb.action(),
                verb.action().to_uppercase()
            ),
            "use the pg_schema action that matches the statement, or pg_query write for other statements",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sql: &str) -> Result<Classified> {
        classify(&CallerSql::new(sql).unwrap())
    }

    fn read(sql: &str) -> Result<Classified> {
        let classified = c(sql)?;
        check_read(&classified, &FunctionDenyList::default_list())?;
        Ok(classified)
    }

    fn code(result: Result<Classified>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(e) => e.kind().code(),
        }
    }

    #[test]
    fn reads_that_are_allowed() {
        for sql in [
            "SELECT 1",
            "select * from pg_class where relname = $1",
            "VALUES (1), (2)",
            "TABLE pg_namespace",
            "SHOW search_path",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SELECT pg_sleep(0.01)",
            "SELECT $$a;b$$ || 'c'  -- comment; DROP TABLE t",
            "/* COMMIT; */ SELECT 1",
        ] {
            assert_eq!(code(read(sql)), "ok", "{sql}");
        }
    }

    /// The read-only escape corpus (SPEC §3): each case is refused with the right code.
    #[test]
    fn escape_corpus_is_refused() {
        let cases: &[(&str, &str)] = &[
            ("COMMIT; DROP TABLE t", "STATEMENT_NOT_ALLOWED"),
            ("SELECT 1; DROP TABLE t", "STATEMENT_NOT_ALLOWED"),
            ("COMMIT", "STATEMENT_NOT_ALLOWED"),
            ("ROLLBACK", "STATEMENT_NOT_ALLOWED"),
            ("BEGIN", "STATEMENT_NOT_ALLOWED"),
            ("SET TRANSACTION READ WRITE", "STATEMENT_NOT_ALLOWED"),
            ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "STATEMENT_NOT_ALLOWED"),
            ("SET default_transaction_read_only = off", "STATEMENT_NOT_ALLOWED"),
            ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "READ_ONLY_VIOLATION"),
            ("WITH x AS (SELECT 1) , d AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT 1", "READ_ONLY_VIOLATION"),
            ("SELECT * INTO newtable FROM t", "READ_ONLY_VIOLATION"),
            ("SELECT * FROM t FOR UPDATE", "READ_ONLY_VIOLATION"),
            ("SELECT set_config('default_transaction_read_only', 'off', false)", "STATEMENT_NOT_ALLOWED"),
            ("SELECT pg_catalog.set_config('x.y', '1', false)", "STATEMENT_NOT_ALLOWED"),
            ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "STATEMENT_NOT_ALLOWED"),
            ("SELECT * FROM pg_cancel_backend(1)", "STATEMENT_NOT_ALLOWED"),
            ("SELECT pg_advisory_lock(1)", "STATEMENT_NOT_ALLOWED"),
            ("SELECT pg_read_file('/etc/passwd')", "STATEMENT_NOT_ALLOWED"),
            ("SELECT lo_export(1, '/tmp/x')", "STATEMENT_NOT_ALLOWED"),
            ("SELECT dblink_exec('dbname=x', 'DROP TABLE t')", "STATEMENT_NOT_ALLOWED"),
            ("SELECT pg_reload_conf()", "STATEMENT_NOT_ALLOWED"),
            ("SELECT * FROM ts_stat('SELECT to_tsvector(pg_terminate_backend(1)::text)')", "STATEMENT_NOT_ALLOWED"),
            ("SELECT ts_rewrite('a'::tsquery, 'SELECT pg_advisory_lock(1)')", "STATEMENT_NOT_ALLOWED"),
            ("SELECT database_to_xml(true, true, '')", "STATEMENT_NOT_ALLOWED"),
            ("SELECT nextval('s')", "STATEMENT_NOT_ALLOWED"),
            ("SELECT \"nextval\"('s')", "STATEMENT_NOT_ALLOWED"),
            ("SELECT (SELECT max(x) FROM (SELECT nextval('s') AS x) q)", "STATEMENT_NOT_ALLOWED"),
            ("WITH q AS (SELECT pg_notify('c', 'p')) SELECT * FROM q", "STATEMENT_NOT_ALLOWED"),
            ("SELECT * FROM t WHERE id IN (SELECT setval('s', 1))", "STATEMENT_NOT_ALLOWED"),
            ("COPY t TO PROGRAM 'rm -rf /'", "STATEMENT_NOT_ALLOWED"),
            ("COPY t TO '/tmp/x'", "STATEMENT_NOT_ALLOWED"),
            ("DO $$ BEGIN DROP TABLE t; END $$", "STATEMENT_NOT_ALLOWED"),
            ("CALL p()", "READ_ONLY_VIOLATION"),
            ("PREPARE p AS DELETE FROM t", "STATEMENT_NOT_ALLOWED"),
            ("EXECUTE p", "STATEMENT_NOT_ALLOWED"),
            ("LISTEN c", "STATEMENT_NOT_ALLOWED"),
            ("NOTIFY c", "STATEMENT_NOT_ALLOWED"),
            ("EXPLAIN ANALYZE DELETE FROM t", "READ_ONLY_VIOLATION"),
            ("EXPLAIN (ANALYZE, FORMAT JSON) INSERT INTO t VALUES (1)", "READ_ONLY_VIOLATION"),
            ("DROP TABLE t", "READ_ONLY_VIOLATION"),
            ("/* x */ DELETE FROM t -- y", "READ_ONLY_VIOLATION"),
            ("TRUNCATE t", "READ_ONLY_VIOLATION"),
            ("VACUUM t", "READ_ONLY_VIOLATION"),
            ("LOCK TABLE t", "STATEMENT_NOT_ALLOWED"),
            ("DISCARD ALL", "STATEMENT_NOT_ALLOWED"),
            ("SELECT 1; SELECT 2", "STATEMENT_NOT_ALLOWED"),
            ("SELEC 1", "DATABASE_ERROR"),
            (";;", "INVALID_ARGUMENT"),
            ("-- only a comment", "INVALID_ARGUMENT"),
        ];
        for (sql, expected) in cases {
            assert_eq!(code(read(sql)), *expected, "{sql}");
        }
    }

    #[test]
    fn functions_are_found_everywhere() {
        let found = c("WITH a AS (SELECT f1()) SELECT s.f2(x), \"Quoted\"() FROM f3() AS x, LATERAL (SELECT f4()) y WHERE f5() IN (SELECT f6()) ORDER BY f7()")
            .unwrap()
            .functions;
        for name in ["f1", "s.f2", "Quoted", "f3", "f4", "f5", "f6", "f7"] {
            assert!(found.contains(&name.to_owned()), "{name} not in {found:?}");
        }
    }

    #[test]
    fn tags_and_verbs() {
        assert_eq!(c("ALTER TABLE t ADD COLUMN x int").unwrap().tag, "ALTER TABLE");
        assert_eq!(c("CREATE TABLE t (x int)").unwrap().tag, "CREATE TABLE");
        assert_eq!(c("create extension hstore").unwrap().tag, "CREATE EXTENSION");
        assert_eq!(c("CREATE MATERIALIZED VIEW m AS SELECT 1").unwrap().tag, "CREATE MATERIALIZED VIEW");
        assert_eq!(c("CREATE TABLE n AS SELECT 1").unwrap().tag, "CREATE TABLE AS");
        assert_eq!(c("RESET ALL").unwrap().tag, "RESET");
        assert_eq!(c("SET work_mem = '64MB'").unwrap().tag, "SET");
        let drop = c("DROP TABLE t").unwrap();
        assert!(check_ddl_verb(&drop, DdlVerb::Drop).is_ok());
        assert_eq!(check_ddl_verb(&drop, DdlVerb::Create).unwrap_err().kind(), ErrorKind::StatementNotAllowed);
        assert!(check_ddl_verb(&c("COMMENT ON TABLE t IS 'x'").unwrap(), DdlVerb::Alter).is_ok());
        assert!(check_ddl_verb(&c("ALTER TABLE t RENAME TO u").unwrap(), DdlVerb::Alter).is_ok());
        assert!(check_ddl_verb(&c("CREATE INDEX ON t (x)").unwrap(), DdlVerb::Create).is_ok());
    }

    #[test]
    fn writes_policy_details() {
        assert!(needs_autocommit(&c("VACUUM t").unwrap()));
        assert!(needs_autocommit(&c("CREATE INDEX CONCURRENTLY i ON t (x)").unwrap()));
        assert!(needs_autocommit(&c("DROP INDEX CONCURRENTLY i").unwrap()));
        assert!(!needs_autocommit(&c("CREATE INDEX i ON t (x)").unwrap()));
        assert!(check_write(&c("BEGIN").unwrap()).is_err());
        assert!(check_write(&c("SAVEPOINT a").unwrap()).is_err());
        for sql in [
            "SET TRANSACTION READ WRITE",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            "SET transaction_read_only = off",
            "set default_transaction_read_only to off",
        ] {
            assert_eq!(check_write(&c(sql).unwrap()).unwrap_err().kind(), ErrorKind::StatementNotAllowed, "{sql}");
        }
        assert!(check_write(&c("SET LOCAL work_mem = '64MB'").unwrap()).is_ok());
        assert!(check_write(&c("COPY t FROM STDIN").unwrap()).is_err());
        assert!(check_write(&c("INSERT INTO t VALUES (1)").unwrap()).is_ok());
        assert!(check_autocommit(&c("SET search_path = x").unwrap()).is_err());
        assert!(check_autocommit(&c("CREATE TEMP TABLE x (a int)").unwrap()).is_err());
        assert!(check_autocommit(&c("SELECT pg_advisory_lock(1)").unwrap()).is_err());
        assert!(check_autocommit(&c("SET LOCAL search_path = x").unwrap()).is_ok());
        for sql in [
            "SELECT 1 AS x INTO TEMP t",
            "CREATE TEMP VIEW v AS SELECT 1",
            "CREATE TEMP SEQUENCE s",
            "CREATE TABLE pg_temp.orders (id int)",
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE TEMPORARY TABLE t AS SELECT 1",
        ] {
            assert!(check_autocommit(&c(sql).unwrap()).is_err(), "{sql}");
        }
        assert!(check_autocommit(&c("INSERT INTO t VALUES ('pg_temp')").unwrap()).is_ok());
        assert!(!needs_autocommit(&c("ANALYZE t").unwrap()));
        assert!(needs_autocommit(&c("REINDEX SCHEMA public").unwrap()));
        assert!(!needs_autocommit(&c("REINDEX TABLE t").unwrap()));
        assert!(needs_autocommit(&c("CLUSTER").unwrap()));
        assert!(check_autocommit(&c("INSERT INTO t VALUES (nextval('s'))").unwrap()).is_ok());
        assert!(check_explainable(&c("EXPLAIN SELECT 1").unwrap()).is_err());
        assert!(check_explainable(&c("DELETE FROM t").unwrap()).is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let sql = format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(c(&sql).is_err());
        let sql = format!("SELECT {}", vec!["1"; 20_000].join("+"));
        let _ = c(&sql); // either classified or refused; never a crash
    }

    #[test]
    fn syntax_errors_carry_postgresql_positions() {
        let position = |sql: &str| c(sql).unwrap_err().position();
        assert_eq!(position("SELEC 1"), Some(1));
        let sql = "SELECT 1 FROM t WHERE a = = 1";
        assert_eq!(position(sql), Some(u32::try_from(sql.rfind("= 1").unwrap() + 1).unwrap()));
        assert_eq!(position("SELECT 1 +"), Some(11), "at end of input: one past the last character");
        assert_eq!(position("SELECT 'é', 1 2"), Some(15), "positions count characters, not bytes");
    }

    #[test]
    fn deny_list_patterns() {
        let deny = FunctionDenyList::new(["dblink*".to_owned(), "exact".to_owned()]);
        assert_eq!(deny.denies("public.dblink_exec"), Some("dblink*"));
        assert_eq!(deny.denies("exact"), Some("exact"));
        assert_eq!(deny.denies("exactly"), None);
        assert!(FunctionDenyList::default_list().denies("pg_sleep").is_none());
    }
}
