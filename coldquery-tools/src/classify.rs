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
//! is always rolled back, and the names through which a statement could call a function are
//! judged by the function policy ([`crate::functions`]) on the server, in that transaction.
//!
//! Parsing runs on a few dedicated threads with large stacks ([`classify`]): libpg_query, the
//! tree's decoding and its drop recurse once per nesting level. A statement is refused before
//! parsing when a scan of its tokens shows it could nest deeper than [`MAX_NESTING`], and the
//! caller waits at most [`CLASSIFY_DEADLINE`]; large statements have their own thread, so a
//! flood of them never delays small ones.

use std::collections::{BTreeSet, HashSet};
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use coldquery_core::{CallerSql, Error, ErrorKind, Footprint, Result};
use pg_query::protobuf::{AlterTableType, CmdType, ObjectType, ReindexObjectType, Token, VariableSetKind};
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
    /// Every other name through which PostgreSQL could call a function.
    pub names: Names,
    /// Why the statement destroys data or objects wholesale, if it does (see
    /// [`Classified::destructive`]).
    destructive: Option<String>,
    /// The statement's own flags the policy needs.
    flags: Flags,
}

impl Classified {
    /// Why the statement is destructive — it drops or truncates something, deletes or updates
    /// every row (`DELETE`/`UPDATE` without `WHERE`, anywhere in the statement, CTEs included),
    /// deletes through `MERGE`, or drops part of a table (`ALTER … DROP …`) — or `None`. The
    /// rule is the grammar's: any `Drop…` statement node, any `AT_Drop…` subcommand.
    pub fn destructive(&self) -> Option<&str> {
        self.destructive.as_deref()
    }

    /// True if `EXPLAIN` can plan the statement.
    pub(crate) fn explainable(&self) -> bool {
        EXPLAINABLE.contains(&self.kind.as_str())
    }

    /// True for the statement kinds whose row count is "affected" (CREATE TABLE AS and SELECT
    /// INTO count the rows they stored, as PostgreSQL's `SELECT n` tag for them does).
    pub(crate) fn counts_rows(&self) -> bool {
        matches!(
            self.tag.as_str(),
            "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "SELECT INTO" | "CREATE TABLE AS"
        )
    }

    /// The functions the statement may call, for the pool's check after it ran.
    pub fn footprint(&self) -> Footprint {
        let called = self.functions.iter().map(|f| f.rsplit('.').next().unwrap_or(f).to_owned());
        let fields = self.names.fields.iter().cloned();
        Footprint::union([&Footprint { functions: called.chain(fields).collect(), unknown: false }])
    }
}

/// Names in a statement besides its function calls that could make PostgreSQL call a function
/// (judged by `catalog/policy.rs`), unqualified, in PostgreSQL's case folding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Names in column references and field selections: `x.f` and `(x).f` call `f(x)`.
    pub fields: BTreeSet<String>,
    /// Operator names (`+`, `~~`, `@>`...), each backed by a function.
    pub operators: BTreeSet<String>,
    /// Types named in casts (`x::t`, `CAST(x AS t)`, `t 'literal'`): their cast functions.
    pub types: BTreeSet<String>,
    /// Relations named (their views' and row-level-security policies' functions).
    pub relations: BTreeSet<String>,
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
    /// Changes who the statements run as: `SET [LOCAL] ROLE`, `RESET ROLE`, `SET SESSION
    /// AUTHORIZATION`, or `set_config` of `role` / `session_authorization`.
    changes_role: bool,
    /// Changes a setting that decides how PostgreSQL reads SQL text (SET, RESET, ALTER
    /// DATABASE/ROLE … SET of `standard_conforming_strings`, or `set_config` of it or of a
    /// name not written as a literal).
    sets_grammar: bool,
}

/// Settings that change how PostgreSQL reads a statement's text: the classifier parses with
/// PostgreSQL's defaults, so the server must too.
const GRAMMAR_SETTINGS: &[&str] = &["standard_conforming_strings", "backslash_quote", "escape_string_warning"];

/// Settings that decide who statements run as: a session's role is chosen once, at `pg_tx
/// begin` (`role`), from the roles the server allows.
const IDENTITY_SETTINGS: &[&str] = &["role", "session_authorization"];

/// The statement kinds `EXPLAIN` can plan.
const EXPLAINABLE: &[&str] =
    &["SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CreateTableAsStmt"];

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

/// Functions that leave state on a pooled connection; refused in autocommit statements.
const SESSION_STATE_FUNCTIONS: &[&str] =
    &["pg_advisory_lock*", "pg_advisory_unlock*", "pg_try_advisory_lock*", "set_config", "dblink_connect*"];

fn unqualified(function: &str) -> &str {
    function.rsplit('.').next().unwrap_or(function)
}

fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// The stack of each classifier thread. At [`MAX_NESTING`] a debug build uses about a tenth
/// of it (measured: 1 000 chained operators parse on 64 MiB, 10 000 do not); the memory is
/// reserved, not committed, until touched.
const PARSE_STACK_BYTES: usize = 64 * 1024 * 1024;

/// The deepest nesting a statement may have, as estimated from its tokens before parsing
/// (an upper bound: chained operators, nested parentheses, subqueries, joins, casts).
pub const MAX_NESTING: usize = 1000;

/// How long a caller waits for its statement to be classified.
pub const CLASSIFY_DEADLINE: Duration = Duration::from_secs(5);

/// Statements at most this long are classified on the small-statement threads.
const SMALL_SQL_BYTES: usize = 16 * 1024;

/// Statements waiting for a classifier thread, per lane, beyond which callers are refused.
const QUEUE_DEPTH: usize = 64;

type Job = (CallerSql, tokio::sync::oneshot::Sender<Result<Classified>>);

/// The classifier threads: two lanes, small statements and large ones.
struct Lanes {
    small: SyncSender<Job>,
    large: SyncSender<Job>,
}

fn lanes() -> Result<&'static Lanes> {
    static LANES: OnceLock<std::result::Result<Lanes, String>> = OnceLock::new();
    let lanes = LANES.get_or_init(|| {
        let small = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        Ok(Lanes { small: lane("coldquery-classify", small)?, large: lane("coldquery-classify-large", 1)? })
    });
    lanes.as_ref().map_err(|e| Error::internal(format!("could not start the SQL classifier: {e}")))
}

fn lane(name: &str, threads: usize) -> std::result::Result<SyncSender<Job>, String> {
    let (sender, receiver) = sync_channel::<Job>(QUEUE_DEPTH);
    let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
    for _ in 0..threads {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .stack_size(PARSE_STACK_BYTES)
            .spawn(move || {
                loop {
                    let job = receiver.lock().map_err(|_| ()).and_then(|r| r.recv().map_err(|_| ()));
                    let Ok((sql, reply)) = job else { return };
                    // A caller that gave up (its deadline passed) has dropped its receiver:
                    // its statement is not parsed at all, or its result is discarded.
                    if !reply.is_closed() {
                        let _ = reply.send(classify_now(&sql));
                    }
                }
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(sender)
}

/// Statements at most this long are remembered by the [`Recent`] cache.
const CACHED_SQL_BYTES: usize = 2 * 1024;

/// How many classified statements the [`Recent`] cache keeps.
const CACHED_STATEMENTS: usize = 128;

/// The most recently classified short statements and what they are. A classification depends
/// on the text alone (the name errors call it by is only used in errors) — the grammar is fixed (`standard_conforming_strings` is pinned on every
/// connection) and the function policy judges each call's names afresh — so a statement sent
/// again is not parsed again. Bounded: at most [`CACHED_STATEMENTS`] texts of at most
/// [`CACHED_SQL_BYTES`] each; only successful classifications are kept.
struct Recent {
    entries: std::collections::HashMap<String, (Classified, u64)>,
    clock: u64,
}

impl Recent {
    fn global() -> &'static std::sync::Mutex<Recent> {
        static RECENT: OnceLock<std::sync::Mutex<Recent>> = OnceLock::new();
        RECENT.get_or_init(|| std::sync::Mutex::new(Recent { entries: std::collections::HashMap::new(), clock: 0 }))
    }

    fn get(&mut self, text: &str) -> Option<Classified> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(text).map(|(classified, used)| {
            *used = clock;
            classified.clone()
        })
    }

    fn put(&mut self, text: &str, classified: &Classified) {
        if text.len() > CACHED_SQL_BYTES {
            return;
        }
        if self.entries.len() >= CACHED_STATEMENTS {
            let oldest = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(text, _)| text.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.clock += 1;
        self.entries.insert(text.to_owned(), (classified.clone(), self.clock));
    }
}

/// Parses `sql` and classifies it. Exactly one statement is accepted.
pub async fn classify(sql: &CallerSql) -> Result<Classified> {
    let text = sql.as_str();
    if text.len() <= CACHED_SQL_BYTES
        && let Some(known) = Recent::global().lock().ok().and_then(|mut recent| recent.get(text))
    {
        return Ok(known);
    }
    let classified = classify_on_a_parser_thread(sql).await?;
    if let Ok(mut recent) = Recent::global().lock() {
        recent.put(text, &classified);
    }
    Ok(classified)
}

async fn classify_on_a_parser_thread(sql: &CallerSql) -> Result<Classified> {
    let text = sql.as_str();
    let lanes = lanes()?;
    let lane = if text.len() <= SMALL_SQL_BYTES { &lanes.small } else { &lanes.large };
    let (reply, answer) = tokio::sync::oneshot::channel();
    lane.try_send((sql.clone(), reply)).map_err(|e| match e {
        TrySendError::Full(_) => {
            Error::new(ErrorKind::Unavailable, "too many statements are waiting to be checked; the server is busy")
                .with_hint("retry shortly")
        }
        TrySendError::Disconnected(_) => Error::internal("the SQL classifier stopped"),
    })?;
    match tokio::time::timeout(CLASSIFY_DEADLINE, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Error::internal("the SQL classifier failed on this statement")),
        Err(_) => Err(Error::new(
            ErrorKind::StatementNotAllowed,
            format!("the statement could not be checked within {} s", CLASSIFY_DEADLINE.as_secs()),
        )
        .with_hint("send a smaller or simpler statement")),
    }
}

/// Classifies on the calling thread, which must have a stack of [`PARSE_STACK_BYTES`].
fn classify_now(sql: &CallerSql) -> Result<Classified> {
    let text = sql.as_str();
    if let Some(depth) = nesting_bound(text)
        && depth > MAX_NESTING
    {
        return Err(Error::new(
            ErrorKind::StatementNotAllowed,
            format!("the statement nests too deeply to be checked (about {depth} levels; the limit is {MAX_NESTING})"),
        )
        .with_hint("split the expression or the statement into smaller ones"));
    }
    classify_on_this_thread(text, sql.name())
}

/// True for statements that can be parsed on any thread quickly: at most 16 KiB and nested
/// no deeper than [`MAX_NESTING`] / 10.
pub(crate) fn parses_cheaply(text: &str) -> bool {
    text.len() <= SMALL_SQL_BYTES && nesting_bound(text).is_some_and(|depth| depth <= MAX_NESTING / 10)
}

/// An upper bound of the parse tree's depth from the token stream, or `None` if the text
/// cannot be scanned (then the parser reports the error without building a tree). Within one
/// parenthesis level every token that can nest (operators, keywords, casts) counts one level;
/// a comma, `AND`/`OR` (which PostgreSQL flattens into lists) and `WHEN`/`THEN`/`ELSE` start a
/// sibling and reset the level's count; names, literals and comments never nest.
fn nesting_bound(text: &str) -> Option<usize> {
    let scanned = pg_query::scan(text).ok()?;
    // The count of each open parenthesis level, and their sum (the current depth).
    let mut levels: Vec<usize> = vec![0];
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for token in &scanned.tokens {
        let Ok(kind) = Token::try_from(token.token) else { continue };
        match kind {
            Token::Ident
            | Token::Uident
            | Token::Fconst
            | Token::Sconst
            | Token::Usconst
            | Token::Bconst
            | Token::Xconst
            | Token::Iconst
            | Token::Param
            | Token::SqlComment
            | Token::CComment
            | Token::Ascii46 => continue,
            Token::Ascii40 | Token::Ascii91 => {
                *levels.last_mut().expect("one level") += 1;
                levels.push(1);
                depth += 2;
            }
            Token::Ascii41 | Token::Ascii93 => {
                if levels.len() > 1 {
                    depth -= levels.pop().expect("more than one level");
                }
            }
            Token::Ascii44 | Token::And | Token::Or | Token::When | Token::Then | Token::Else => {
                let level = levels.last_mut().expect("one level");
                depth -= *level;
                *level = 0;
            }
            Token::Ascii59 => {
                levels.truncate(1);
                levels[0] = 0;
                depth = 0;
            }
            _ => {
                *levels.last_mut().expect("one level") += 1;
                depth += 1;
            }
        }
        deepest = deepest.max(depth);
        if deepest > MAX_NESTING {
            break;
        }
    }
    Some(deepest)
}

/// `name` is what errors call the text (`parameter 'sql'`).
fn classify_on_this_thread(text: &str, name: &str) -> Result<Classified> {
    let parsed = pg_query::parse(text).map_err(|e| syntax_error(text, e))?;
    let statements = &parsed.protobuf.stmts;
    match statements.len() {
        0 => return Err(Error::invalid(format!("{name} contains no statement (only comments or semicolons)"))),
        1 => {}
        n => {
            return Err(Error::new(
                ErrorKind::StatementNotAllowed,
                format!("{name} contains {n} statements; exactly one statement is allowed per call"),
            )
            .with_hint("send one statement per call; for several writes that must commit together use pg_query transaction or a pg_tx session"));
        }
    }
    let tree = serde_json::to_value(&statements[0].stmt)
        .map_err(|e| Error::internal(format!("could not read the parse tree: {e}")))?;
    let (kind, body) = node_of(&tree).ok_or_else(|| Error::invalid(format!("{name} contains no statement")))?;
    let mut walk = Walk::default();
    walk.visit_all(&tree);
    let mut flags = Flags {
        session_state: walk.session_state,
        sets_grammar: walk.sets_grammar,
        changes_role: walk.changes_role,
        ..Flags::default()
    };
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
        // Subscriptions may create or drop a replication slot, which cannot happen in a
        // transaction block.
        "CreatedbStmt"
        | "DropdbStmt"
        | "CreateTableSpaceStmt"
        | "DropTableSpaceStmt"
        | "AlterSystemStmt"
        | "CreateSubscriptionStmt"
        | "AlterSubscriptionStmt"
        | "DropSubscriptionStmt" => {
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
            // RESET ALL too: it could restore a server default that differs from what was checked.
            flags.sets_grammar |= GRAMMAR_SETTINGS.contains(&name.as_str()) || name.is_empty();
            flags.changes_role |= IDENTITY_SETTINGS.contains(&name.as_str());
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
        "AlterDatabaseStmt" => {
            // ALTER DATABASE … SET TABLESPACE moves the database: not in a transaction block.
            flags.needs_autocommit = has_option(body, "tablespace");
            writes = true;
        }
        "AlterTableStmt" => {
            flags.needs_autocommit = walk.detaches_concurrently;
            writes = true;
        }
        _ => writes = true,
    }
    if matches!(kind, "AlterDatabaseSetStmt" | "AlterRoleSetStmt") {
        let name = body["setstmt"]["name"].as_str().unwrap_or_default().to_ascii_lowercase();
        flags.sets_grammar |= GRAMMAR_SETTINGS.contains(&name.as_str()) || name.is_empty();
    }
    Ok(Classified {
        tag: command_tag(kind, body),
        kind: kind.to_owned(),
        functions: walk.functions,
        writes,
        names: walk.names,
        destructive: walk.destructive,
        flags,
    })
}

fn syntax_error(text: &str, error: pg_query::Error) -> Error {
    if let pg_query::Error::Decode(e) = &error {
        return Error::internal(format!("could not read the parse tree: {e}"));
    }
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
    seen: HashSet<String>,
    names: Names,
    destructive: Option<String>,
    writes: bool,
    changes_role: bool,
    /// `ALTER TABLE … DETACH PARTITION … CONCURRENTLY` (not in a transaction block).
    detaches_concurrently: bool,
    session_state: bool,
    sets_grammar: bool,
}

/// The `sval`s of a list of `String` nodes (a qualified name), skipping anything else.
fn name_parts(list: &Value) -> impl Iterator<Item = &str> {
    list.as_array().into_iter().flatten().filter_map(|part| match node_of(part) {
        Some(("String", s)) => s["sval"].as_str(),
        _ => None,
    })
}

/// `ALTER TABLE` subcommands that remove something from a table: every `AT_Drop…` (a column,
/// a constraint, a default expression, an identity, NOT NULL, inheritance, the type link) and
/// every `AT_Detach…` (a partition's rows leave the table).
fn alter_removes(subtype: AlterTableType) -> bool {
    let name = subtype.as_str_name();
    name.starts_with("AT_Drop") || name.starts_with("AT_Detach")
}

/// What a `Drop…` statement drops: `DROP TABLE`, `DROP DATABASE`, `DROP ROLE`...
fn drop_words(kind: &str, body: &Value) -> String {
    match kind {
        "DropStmt" => {
            let object = body["remove_type"].as_i64().and_then(|n| i32::try_from(n).ok());
            match object.and_then(|n| ObjectType::try_from(n).ok()) {
                Some(object) => {
                    format!("DROP {}", object.as_str_name().trim_start_matches("OBJECT_").replace('_', " "))
                }
                None => "DROP".to_owned(),
            }
        }
        "DropdbStmt" => "DROP DATABASE".to_owned(),
        _ => generic_tag(kind),
    }
}

/// `AT_DropColumn` → `DROP COLUMN`.
fn alter_drop_words(subtype: AlterTableType) -> String {
    let name = subtype.as_str_name().trim_start_matches("AT_");
    let mut words = String::new();
    for (i, c) in name.char_indices() {
        if c.is_ascii_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_uppercase());
    }
    words
}

impl Walk {
    fn destructive(&mut self, why: String) {
        self.destructive.get_or_insert(why);
    }

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
                let name = name_parts(&body["funcname"]).collect::<Vec<_>>().join(".");
                if name == "set_config" || name == "pg_catalog.set_config" {
                    // set_config(name, …) changes the setting it names: a grammar setting, or
                    // one that is not written out, could change how later statements are read.
                    let first = body["args"].get(0).and_then(node_of);
                    let literal = match first {
                        Some(("AConst", c)) => c["val"]["Sval"]["sval"].as_str(),
                        _ => None,
                    };
                    self.sets_grammar |=
                        literal.is_none_or(|n| GRAMMAR_SETTINGS.contains(&n.to_ascii_lowercase().as_str()));
                    self.changes_role |=
                        literal.is_none_or(|n| IDENTITY_SETTINGS.contains(&n.to_ascii_lowercase().as_str()));
                }
                if self.seen.insert(name.clone()) {
                    self.functions.push(name);
                }
            }
            // `x.f` and `(x).f` are `f(x)`: every name in a column reference or a field
            // selection may be a function call.
            "ColumnRef" => self.names.fields.extend(name_parts(&body["fields"]).map(str::to_owned)),
            "AIndirection" => self.names.fields.extend(name_parts(&body["indirection"]).map(str::to_owned)),
            "AExpr" => {
                if let Some(op) = name_parts(&body["name"]).last() {
                    self.names.operators.insert(op.to_owned());
                }
                // BETWEEN and its variants use >= and <= (or their negations) implicitly.
                if body["name"].as_array().is_some_and(|n| n.len() == 1)
                    && body["kind"].as_i64().is_some_and(|k| (11..=14).contains(&k))
                {
                    for op in [">=", "<=", ">", "<"] {
                        self.names.operators.insert(op.to_owned());
                    }
                }
            }
            "TypeCast" => {
                if let Some(name) = name_parts(&body["type_name"]["names"]).last() {
                    self.names.types.insert(name.to_owned());
                }
            }
            // A relation is a `RangeVar` node in FROM lists, and a bare `RangeVar` in fields such
            // as `relation` (ALTER TABLE, INSERT, CREATE INDEX...) and `rel` (SELECT INTO).
            "RangeVar" | "relation" | "rel" => {
                if let Some(name) = body["relname"].as_str().filter(|n| !n.is_empty()) {
                    self.names.relations.insert(name.to_owned());
                }
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.writes = true;
                let verb = &key[..key.len() - "Stmt".len()];
                if matches!(key, "UpdateStmt" | "DeleteStmt") && body["where_clause"].is_null() {
                    self.destructive(format!("{} without a WHERE clause", verb.to_uppercase()));
                }
                let deletes =
                    body["merge_when_clauses"].as_array().into_iter().flatten().any(|clause| {
                        node_of(clause).is_some_and(|(_, c)| c["command_type"] == CmdType::CmdDelete as i32)
                    });
                if deletes {
                    self.destructive("MERGE … THEN DELETE".to_owned());
                }
            }
            // Anywhere in the tree: `CREATE FUNCTION … SET role …`, `ALTER ROLE … SET role …`.
            "VariableSetStmt" | "setstmt" => {
                let name = body["name"].as_str().unwrap_or_default().to_ascii_lowercase();
                self.changes_role |= IDENTITY_SETTINGS.contains(&name.as_str());
            }
            "TruncateStmt" => self.destructive("TRUNCATE".to_owned()),
            "AlterTableCmd" => {
                let subtype = body["subtype"]
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .and_then(|n| AlterTableType::try_from(n).ok());
                if subtype == Some(AlterTableType::AtDetachPartition)
                    && node_of(&body["def"]).is_some_and(|(_, cmd)| cmd["concurrent"] == true)
                {
                    self.detaches_concurrently = true;
                }
                if let Some(subtype) = subtype.filter(|t| alter_removes(*t)) {
                    self.destructive(format!("ALTER … {}", alter_drop_words(subtype)));
                }
            }
            _ if key.starts_with("Drop") && key.ends_with("Stmt") => self.destructive(drop_words(key, body)),
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

/// A read: only reading statements, no writes anywhere. (The function policy's check,
/// `FunctionPolicy::precheck`, comes on top: `pg_query`'s `check_read`.)
pub(crate) fn check_read(c: &Classified) -> Result<()> {
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
    if c.flags.changes_role {
        return Err(not_allowed(
            format!("this statement ({}) changes the role statements run as", c.tag),
            "a session acts as one role for its whole transaction: pass role to pg_tx begin (the server allows the roles in --allow-roles)",
        ));
    }
    if c.flags.sets_grammar {
        return Err(not_allowed(
            format!(
                "this statement ({}) could change how PostgreSQL reads SQL text ({}), which ColdQuery pins",
                c.tag,
                GRAMMAR_SETTINGS.join(", ")
            ),
            "ColdQuery checks every statement with PostgreSQL's default grammar settings; set other settings by name (SET LOCAL name = value, or set_config('name', value, true) with the name written out)",
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
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(classify(&CallerSql::new(sql).unwrap()))
    }

    fn read(sql: &str) -> Result<Classified> {
        let classified = c(sql)?;
        check_read(&classified)?;
        Ok(classified)
    }

    fn code(result: Result<Classified>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(e) => e.kind().code(),
        }
    }

    #[test]
    fn a_statement_sent_again_is_classified_exactly_as_the_first_time() {
        for sql in [
            "SELECT 1",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "SELECT lo_import('/etc/passwd')",
            "DROP TABLE t",
            "SELECT 1 FOR UPDATE",
        ] {
            let parsed = classify_now(&CallerSql::new(sql).unwrap()).unwrap();
            let first = c(sql).unwrap();
            let again = c(sql).unwrap();
            assert_eq!(first, parsed, "{sql}");
            assert_eq!(again, parsed, "{sql}");
            assert!(Recent::global().lock().unwrap().entries.contains_key(sql), "{sql}");
        }
        // Errors are not remembered: each call parses and reports again.
        assert!(c("SELEC 1").is_err());
        assert!(!Recent::global().lock().unwrap().entries.contains_key("SELEC 1"));
    }

    #[test]
    fn the_cache_of_recent_statements_is_bounded() {
        let mut recent = Recent { entries: std::collections::HashMap::new(), clock: 0 };
        let some = classify_now(&CallerSql::new("SELECT 1").unwrap()).unwrap();
        for n in 0..(3 * CACHED_STATEMENTS) {
            recent.put(&format!("SELECT {n}"), &some);
            // The statement in use stays.
            assert!(recent.get("SELECT 0").is_some(), "after {n}");
            assert!(recent.entries.len() <= CACHED_STATEMENTS);
        }
        assert_eq!(recent.entries.len(), CACHED_STATEMENTS);
        assert!(recent.get("SELECT 1").is_none(), "the least recently used went first");
        let long = format!("SELECT '{}'", "x".repeat(CACHED_SQL_BYTES));
        recent.put(&long, &some);
        assert!(recent.get(&long).is_none(), "long statements are not kept");
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
        assert!(needs_autocommit(&c("ALTER TABLE t DETACH PARTITION p CONCURRENTLY").unwrap()));
        assert!(!needs_autocommit(&c("ALTER TABLE t DETACH PARTITION p").unwrap()));
        assert!(needs_autocommit(&c("ALTER DATABASE d SET TABLESPACE ts").unwrap()));
        assert!(!needs_autocommit(&c("ALTER DATABASE d SET work_mem = '1MB'").unwrap()));
        assert!(needs_autocommit(&c("DROP SUBSCRIPTION s").unwrap()));
        assert!(check_autocommit(&c("INSERT INTO t VALUES (nextval('s'))").unwrap()).is_ok());
        assert!(check_explainable(&c("EXPLAIN SELECT 1").unwrap()).is_err());
        assert!(check_explainable(&c("DELETE FROM t").unwrap()).is_ok());
    }

    #[test]
    fn role_changes_are_refused_wherever_they_are_written() {
        for sql in [
            "SET ROLE postgres",
            "SET LOCAL ROLE postgres",
            "RESET ROLE",
            "SET SESSION AUTHORIZATION DEFAULT",
            "SELECT set_config('role', 'postgres', true)",
            "SELECT pg_catalog.set_config('Role', 'none', false)",
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql SET role = none AS 'SELECT 1'",
            "ALTER FUNCTION f() SET role = postgres",
            "ALTER ROLE agent SET role = postgres",
            "ALTER DATABASE d SET session_authorization = postgres",
        ] {
            let classified = c(sql).unwrap();
            let err = check_write(&classified).expect_err(sql);
            assert_eq!(err.kind(), ErrorKind::StatementNotAllowed, "{sql}: {err:?}");
        }
        assert!(check_write(&c("SET LOCAL work_mem = '64MB'").unwrap()).is_ok());
        assert!(check_write(&c("ALTER FUNCTION f() SET work_mem = '64MB'").unwrap()).is_ok());
    }

    #[test]
    fn destructive_writes_are_named() {
        let why = |sql: &str| c(sql).unwrap().destructive().map(str::to_owned);
        for (sql, expected) in [
            ("DELETE FROM t", "DELETE without a WHERE clause"),
            ("UPDATE t SET a = 1", "UPDATE without a WHERE clause"),
            ("WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone", "DELETE without a WHERE clause"),
            (
                "INSERT INTO log SELECT * FROM (WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u) s",
                "UPDATE without a WHERE clause",
            ),
            ("TRUNCATE t, u", "TRUNCATE"),
            ("DROP TABLE t", "DROP TABLE"),
            ("DROP SCHEMA s CASCADE", "DROP SCHEMA"),
            ("DROP DATABASE d", "DROP DATABASE"),
            ("DROP ROLE r", "DROP ROLE"),
            ("DROP OWNED BY r", "DROP OWNED"),
            ("DROP INDEX CONCURRENTLY i", "DROP INDEX"),
            ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "MERGE … THEN DELETE"),
            ("ALTER TABLE t ADD COLUMN x int, DROP COLUMN y", "ALTER … DROP COLUMN"),
        ] {
            assert_eq!(why(sql).as_deref(), Some(expected), "{sql}");
        }
        for sql in [
            "DELETE FROM t WHERE id = 1",
            "UPDATE t SET a = 1 WHERE id = $1",
            "INSERT INTO t VALUES (1)",
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a",
            "ALTER TABLE t ADD COLUMN x int",
            "ALTER TABLE t RENAME TO u",
            "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0",
            "CREATE TABLE t (id int)",
            "SELECT 1",
        ] {
            assert_eq!(why(sql), None, "{sql}");
        }
    }

    /// Every subcommand the grammar has for removing something from a table is destructive:
    /// the enumeration of `AlterTableType` finds them, so a grammar that gains one fails here
    /// until this corpus has a statement for it.
    #[test]
    fn every_alter_that_removes_is_destructive() {
        let corpus = [
            ("AT_DropNotNull", "ALTER TABLE t ALTER COLUMN c DROP NOT NULL"),
            ("AT_DropExpression", "ALTER TABLE t ALTER COLUMN c DROP EXPRESSION"),
            ("AT_DropColumn", "ALTER TABLE t DROP COLUMN c"),
            ("AT_DropConstraint", "ALTER TABLE t DROP CONSTRAINT k"),
            ("AT_DropCluster", "ALTER TABLE t SET WITHOUT CLUSTER"),
            ("AT_DropOids", "ALTER TABLE t SET WITHOUT OIDS"),
            ("AT_DropInherit", "ALTER TABLE t NO INHERIT p"),
            ("AT_DropOf", "ALTER TABLE t NOT OF"),
            ("AT_DropIdentity", "ALTER TABLE t ALTER COLUMN c DROP IDENTITY"),
            ("AT_DetachPartition", "ALTER TABLE t DETACH PARTITION p"),
            ("AT_DetachPartitionFinalize", "ALTER TABLE t DETACH PARTITION p FINALIZE"),
        ];
        let removing: Vec<&str> = (0..=i32::from(u8::MAX))
            .filter_map(|n| AlterTableType::try_from(n).ok())
            .filter(|t| alter_removes(*t))
            .map(|t| t.as_str_name())
            .collect();
        assert!(removing.len() >= 10, "{removing:?}");
        for name in &removing {
            let (_, sql) = corpus.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no statement for {name}"));
            let classified = c(sql).unwrap();
            assert!(classified.destructive().is_some_and(|w| w.starts_with("ALTER …")), "{sql}: {classified:?}");
        }
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

    /// Attribute notation (`x.f`, `(x).f`), operators, casts and relations are collected for
    /// the catalog check (the known dangerous ones are refused before anything is sent:
    /// `functions.rs`).
    #[test]
    fn every_way_to_call_a_function_is_seen() {
        let found = c("SELECT (pid).pg_terminate_backend, p.pg_cancel_backend, a.b.c, x[1].f, 1::int8, CAST(2 AS my_type), \
             date '2020-01-01', 1 OPERATOR(myschema.@@@) 2, y ~~ 'a', z BETWEEN 1 AND 2 FROM s.t, pg_backend_pid() AS p")
        .unwrap();
        let n = &found.names;
        for field in ["pid", "pg_terminate_backend", "p", "pg_cancel_backend", "a", "b", "c", "x", "f", "y", "z"] {
            assert!(n.fields.contains(field), "{field} not in {:?}", n.fields);
        }
        for op in ["@@@", "~~", ">=", "<="] {
            assert!(n.operators.contains(op), "{op} not in {:?}", n.operators);
        }
        for ty in ["int8", "my_type", "date"] {
            assert!(n.types.contains(ty), "{ty} not in {:?}", n.types);
        }
        assert!(n.relations.contains("t"));
    }

    #[test]
    fn grammar_settings_cannot_be_changed() {
        for sql in [
            "SET standard_conforming_strings = off",
            "SET LOCAL standard_conforming_strings TO off",
            "RESET standard_conforming_strings",
            "RESET ALL",
            "SET backslash_quote = on",
            "ALTER DATABASE postgres SET standard_conforming_strings = off",
            "ALTER ROLE current_user SET standard_conforming_strings = off",
            "SELECT set_config('standard_conforming_strings', 'off', true)",
            "SELECT set_config(name, 'off', true) FROM (SELECT 'standard_conforming_strings' AS name) n",
        ] {
            assert_eq!(check_write(&c(sql).unwrap()).unwrap_err().kind(), ErrorKind::StatementNotAllowed, "{sql}");
        }
        assert!(check_write(&c("SELECT set_config('search_path', 'app', true)").unwrap()).is_ok());
        assert!(check_write(&c("SET LOCAL work_mem = '64MB'").unwrap()).is_ok());
    }

    /// The estimate is an upper bound of the real nesting: what PostgreSQL flattens (lists,
    /// AND/OR chains) does not count, chains and parentheses do.
    #[test]
    fn nesting_is_bounded_before_parsing() {
        let chain = |n: usize| format!("SELECT {}", vec!["1"; n].join("+"));
        assert!(c(&chain(900)).is_ok(), "a long but reasonable chain parses");
        let deep = c(&chain(5_000)).unwrap_err();
        assert_eq!(deep.kind(), ErrorKind::StatementNotAllowed);
        assert!(deep.message().contains("nests too deeply"), "{}", deep.message());
        let wide = format!(
            "SELECT * FROM t WHERE id IN ({})",
            (0..50_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        );
        assert!(c(&wide).is_ok(), "wide lists are not deep");
        let conjunction = format!("SELECT 1 WHERE {}", vec!["a = 1"; 5_000].join(" AND "));
        assert!(c(&conjunction).is_ok(), "AND chains are flattened");
        assert!(nesting_bound("SELECT ((((1))))").unwrap() >= 8);
    }
}
