//! `pg_schema`: introspection (`list`, `describe`) and DDL (`create`, `alter`, `drop`).
//!
//! Introspection runs the fixed catalog queries of [`crate::catalog::schema`] with the caller's
//! names and patterns as bind parameters, in the caller's session or in a read-only
//! transaction. DDL is a write: it passes the Default-Deny policy in [`Ctx::authorize`]. The
//! structured form builds its statement from sanitized identifiers and static keywords; the
//! caller's `definition` is caller SQL, so the built statement is classified again and must be
//! exactly one statement of the action's verb — the same check the raw `sql` form passes.

use coldquery_core::{
    CallerSql, Error, Ident, Limits, QualifiedName, Result, SessionId, SessionInfo, Sql, SqlBuilder, Statement,
    WriteTarget,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::catalog::schema as catalog;
use crate::classify::{self, DdlVerb};
use crate::ctx::{Ctx, ident, parse_args, reject_unused, required};
use crate::preview::{self, binding, preview_requested};

const TOOL: &str = "pg_schema";

/// The default page size of `list`.
const DEFAULT_LIMIT: u64 = 100;

/// The largest page `list` returns.
const MAX_LIMIT: u64 = 1000;

/// The most rows one describe section reads (columns, indexes, partitions...).
const SECTION_ROWS: usize = 10_000;

/// The actions of `pg_schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchemaAction {
    /// List objects of one kind (target), paged.
    List,
    /// Describe one object (name) in detail.
    Describe,
    /// CREATE an object (a write: needs session_id or autocommit: true).
    Create,
    /// ALTER an object, or COMMENT ON it (a write).
    Alter,
    /// DROP an object (a write).
    Drop,
}

/// The kinds of object `pg_schema` works with. `list` takes the plural forms; `describe`,
/// `create`, `alter` and `drop` take the singular ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchemaTarget {
    /// list: tables (ordinary, partitioned, foreign).
    Tables,
    /// list: views.
    Views,
    /// list: materialized views.
    MaterializedViews,
    /// list: schemas.
    Schemas,
    /// list: functions, procedures, aggregates (not those of extensions).
    Functions,
    /// list: sequences.
    Sequences,
    /// list: indexes.
    Indexes,
    /// list: triggers.
    Triggers,
    /// list: table constraints.
    Constraints,
    /// list: installed extensions.
    Extensions,
    /// list: user-defined types (enums, domains, composites, ranges).
    Types,
    /// describe / create / alter / drop: a table.
    Table,
    /// describe / create / alter / drop: a view.
    View,
    /// describe / create / alter / drop: a materialized view.
    MaterializedView,
    /// describe / create / alter / drop: a function.
    Function,
    /// describe / create / alter / drop: a sequence.
    Sequence,
    /// describe / create / alter / drop: a type.
    Type,
    /// create / alter / drop: an index.
    Index,
    /// create / alter / drop: a schema.
    Schema,
    /// create / alter / drop: an extension.
    Extension,
}

impl SchemaTarget {
    fn as_str(self) -> &'static str {
        match self {
            SchemaTarget::Tables => "tables",
            SchemaTarget::Views => "views",
            SchemaTarget::MaterializedViews => "materialized_views",
            SchemaTarget::Schemas => "schemas",
            SchemaTarget::Functions => "functions",
            SchemaTarget::Sequences => "sequences",
            SchemaTarget::Indexes => "indexes",
            SchemaTarget::Triggers => "triggers",
            SchemaTarget::Constraints => "constraints",
            SchemaTarget::Extensions => "extensions",
            SchemaTarget::Types => "types",
            SchemaTarget::Table => "table",
            SchemaTarget::View => "view",
            SchemaTarget::MaterializedView => "materialized_view",
            SchemaTarget::Function => "function",
            SchemaTarget::Sequence => "sequence",
            SchemaTarget::Type => "type",
            SchemaTarget::Index => "index",
            SchemaTarget::Schema => "schema",
            SchemaTarget::Extension => "extension",
        }
    }
}

/// Arguments of `pg_schema` (flat; which apply depends on `action`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgSchemaArgs {
    pub action: SchemaAction,
    pub target: Option<SchemaTarget>,
    /// The object's name, as stored ('schema.name' accepted).
    pub name: Option<String>,
    /// The schema (list: filter; default: search_path).
    pub schema: Option<String>,
    /// list: names LIKE this, case-insensitive ('order%').
    pub pattern: Option<String>,
    /// list: page size (default 100).
    pub limit: Option<u64>,
    /// list: skip this many (next_offset pages).
    pub offset: Option<u64>,
    pub include_sizes: Option<bool>,
    /// Structured DDL: the rest of the statement (columns; view query; ALTER action).
    pub definition: Option<String>,
    pub if_exists: Option<bool>,
    pub if_not_exists: Option<bool>,
    pub cascade: Option<bool>,
    /// Raw DDL instead: one statement of the action's verb.
    pub sql: Option<String>,
    pub session_id: Option<String>,
    pub autocommit: Option<bool>,
    pub preview: Option<bool>,
    pub confirm: Option<String>,
}

/// What `list` can list (a plural target), with its catalog query and whether the query
/// takes the include_sizes parameter.
#[derive(Debug)]
struct ListTarget {
    target: SchemaTarget,
    query: Sql,
    sized: bool,
}

impl ListTarget {
    const CHOICES: &'static str = "tables, views, materialized_views, schemas, functions, sequences, indexes, triggers, constraints, extensions or types";

    fn from_target(target: SchemaTarget) -> Option<ListTarget> {
        let (query, sized) = match target {
            SchemaTarget::Tables => (catalog::LIST_TABLES, true),
            SchemaTarget::Views => (catalog::LIST_VIEWS, false),
            SchemaTarget::MaterializedViews => (catalog::LIST_MATERIALIZED_VIEWS, true),
            SchemaTarget::Schemas => (catalog::LIST_SCHEMAS, false),
            SchemaTarget::Functions => (catalog::LIST_FUNCTIONS, false),
            SchemaTarget::Sequences => (catalog::LIST_SEQUENCES, false),
            SchemaTarget::Indexes => (catalog::LIST_INDEXES, true),
            SchemaTarget::Triggers => (catalog::LIST_TRIGGERS, false),
            SchemaTarget::Constraints => (catalog::LIST_CONSTRAINTS, false),
            SchemaTarget::Extensions => (catalog::LIST_EXTENSIONS, false),
            SchemaTarget::Types => (catalog::LIST_TYPES, false),
            _ => return None,
        };
        Some(ListTarget { target, query, sized })
    }

    fn name(&self) -> &'static str {
        self.target.as_str()
    }
}

/// What `describe` can describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DescribeTarget {
    Table,
    /// A view or a materialized view.
    View,
    Function,
    Sequence,
    Type,
}

impl DescribeTarget {
    const CHOICES: &'static str = "table, view, materialized_view, function, sequence or type";

    fn from_target(target: SchemaTarget) -> Option<DescribeTarget> {
        Some(match target {
            SchemaTarget::Table => DescribeTarget::Table,
            SchemaTarget::View | SchemaTarget::MaterializedView => DescribeTarget::View,
            SchemaTarget::Function => DescribeTarget::Function,
            SchemaTarget::Sequence => DescribeTarget::Sequence,
            SchemaTarget::Type => DescribeTarget::Type,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            DescribeTarget::Table => "table",
            DescribeTarget::View => "view",
            DescribeTarget::Function => "function",
            DescribeTarget::Sequence => "sequence",
            DescribeTarget::Type => "type",
        }
    }

    /// The relation kinds (as [`catalog::FIND_RELATION`] names them) this target accepts.
    fn relation_kinds(self) -> &'static [&'static str] {
        match self {
            DescribeTarget::Table => &["table", "partitioned_table", "foreign_table"],
            DescribeTarget::View => &["view", "materialized_view"],
            DescribeTarget::Sequence => &["sequence"],
            DescribeTarget::Function | DescribeTarget::Type => &[],
        }
    }

    /// The list target that shows the names of this kind.
    fn list_target(self) -> &'static str {
        match self {
            DescribeTarget::Table => "tables",
            DescribeTarget::View => "views",
            DescribeTarget::Function => "functions",
            DescribeTarget::Sequence => "sequences",
            DescribeTarget::Type => "types",
        }
    }
}

/// The kinds of object structured DDL builds statements for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DdlObject {
    Table,
    View,
    MaterializedView,
    Index,
    Schema,
    Sequence,
    Function,
    Type,
    Extension,
}

impl DdlObject {
    const CHOICES: &'static str =
        "table, view, materialized_view, index, schema, sequence, function, type or extension";

    fn from_target(target: SchemaTarget) -> Option<DdlObject> {
        Some(match target {
            SchemaTarget::Table => DdlObject::Table,
            SchemaTarget::View => DdlObject::View,
            SchemaTarget::MaterializedView => DdlObject::MaterializedView,
            SchemaTarget::Index => DdlObject::Index,
            SchemaTarget::Schema => DdlObject::Schema,
            SchemaTarget::Sequence => DdlObject::Sequence,
            SchemaTarget::Function => DdlObject::Function,
            SchemaTarget::Type => DdlObject::Type,
            SchemaTarget::Extension => DdlObject::Extension,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            DdlObject::Table => "table",
            DdlObject::View => "view",
            DdlObject::MaterializedView => "materialized_view",
            DdlObject::Index => "index",
            DdlObject::Schema => "schema",
            DdlObject::Sequence => "sequence",
            DdlObject::Function => "function",
            DdlObject::Type => "type",
            DdlObject::Extension => "extension",
        }
    }

    /// The object's SQL keyword(s), after CREATE / ALTER / DROP.
    fn keyword(self) -> &'static str {
        match self {
            DdlObject::Table => "TABLE ",
            DdlObject::View => "VIEW ",
            DdlObject::MaterializedView => "MATERIALIZED VIEW ",
            DdlObject::Index => "INDEX ",
            DdlObject::Schema => "SCHEMA ",
            DdlObject::Sequence => "SEQUENCE ",
            DdlObject::Function => "FUNCTION ",
            DdlObject::Type => "TYPE ",
            DdlObject::Extension => "EXTENSION ",
        }
    }

    /// The parse-tree nodes a structured CREATE of this kind must produce.
    fn create_kinds(self) -> &'static [&'static str] {
        match self {
            DdlObject::Table => &["CreateStmt"],
            DdlObject::View => &["ViewStmt"],
            DdlObject::MaterializedView => &["CreateTableAsStmt"],
            DdlObject::Index => &["IndexStmt"],
            DdlObject::Schema => &["CreateSchemaStmt"],
            DdlObject::Sequence => &["CreateSeqStmt"],
            DdlObject::Function => &["CreateFunctionStmt"],
            DdlObject::Type => &["DefineStmt", "CompositeTypeStmt", "CreateEnumStmt", "CreateRangeStmt"],
            DdlObject::Extension => &["CreateExtensionStmt"],
        }
    }

    /// Objects named without a schema: schemas and extensions are database-wide, and an index
    /// is created in its table's schema.
    fn create_takes_schema(self) -> bool {
        !matches!(self, DdlObject::Schema | DdlObject::Extension | DdlObject::Index)
    }

    /// PostgreSQL has `CREATE … IF NOT EXISTS` for these.
    fn has_if_not_exists(self) -> bool {
        matches!(
            self,
            DdlObject::Table
                | DdlObject::MaterializedView
                | DdlObject::Index
                | DdlObject::Schema
                | DdlObject::Sequence
                | DdlObject::Extension
        )
    }

    /// PostgreSQL has `ALTER … IF EXISTS` for these.
    fn has_alter_if_exists(self) -> bool {
        matches!(
            self,
            DdlObject::Table | DdlObject::View | DdlObject::MaterializedView | DdlObject::Index | DdlObject::Sequence
        )
    }
}

/// A statement with its classification, ready to authorize.
#[derive(Debug)]
struct Ddl {
    sql: Sql,
    tag: String,
    needs_autocommit: bool,
    classified: classify::Classified,
}

/// `pg_schema` arguments as a typed request.
#[derive(Debug)]
enum Request {
    List {
        target: ListTarget,
        schema: Option<String>,
        pattern: Option<String>,
        limit: u64,
        offset: u64,
        include_sizes: bool,
        session: Option<SessionId>,
    },
    Describe {
        target: DescribeTarget,
        name: QualifiedName,
        session: Option<SessionId>,
    },
    DdlPreview {
        statement: Statement,
        classified: classify::Classified,
        target: WriteTarget,
        limits: Limits,
    },
    Ddl {
        statement: Statement,
        tag: String,
        target: WriteTarget,
        limits: Limits,
        relations: Vec<String>,
    },
}

/// "a table", "an index".
fn with_article(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {word}")
}

fn invalid(action: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{TOOL} {action}: {message}"))
}

/// `error` with its message said in the action (`pg_schema create: ...`), kind and hint kept.
fn in_action(action: &str, error: Error) -> Error {
    let message = format!("{TOOL} {action}: {}", error.message());
    error.with_message(message)
}

/// The object's name. With `schema` given, `name` is taken literally (it may contain dots);
/// without it, `name` may be `schema.name` (a part containing a dot double-quoted).
fn qualified(action: &str, name: &str, schema: Option<&str>) -> Result<QualifiedName> {
    match schema {
        Some(schema) => Ok(QualifiedName {
            schema: Some(ident(schema, "schema", TOOL, action)?),
            name: ident(name, "name", TOOL, action)?,
        }),
        None => QualifiedName::parse(name).map_err(|e| invalid(action, format_args!("parameter 'name': {e}"))),
    }
}

async fn parse(ctx: &Ctx<'_>, args: PgSchemaArgs) -> Result<Request> {
    let action = ctx.action.as_str();
    let session = args.session_id.clone().map(SessionId::new);
    match args.action {
        SchemaAction::List => {
            let t = args.target.unwrap_or(SchemaTarget::Tables);
            let target = ListTarget::from_target(t).ok_or_else(|| {
                invalid(
                    action,
                    format_args!(
                        "parameter 'target' is '{}'; choose {} (describe takes the singular forms)",
                        t.as_str(),
                        ListTarget::CHOICES
                    ),
                )
            })?;
            let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
            if limit == 0 || limit > MAX_LIMIT {
                return Err(invalid(
                    action,
                    format_args!("parameter 'limit' is {limit}; give 1 to {MAX_LIMIT} and page with 'offset'"),
                ));
            }
            if args.include_sizes.is_some() && !target.sized {
                return Err(invalid(
                    action,
                    format_args!(
                        "parameter 'include_sizes' applies to targets tables, materialized_views and indexes, not {}",
                        target.name()
                    ),
                ));
            }
            if let Some(schema) = &args.schema {
                ident(schema, "schema", TOOL, action)?;
            }
            if args.pattern.as_deref() == Some("") {
                return Err(invalid(action, "parameter 'pattern' is empty; leave it out to list everything"));
            }
            Ok(Request::List {
                target,
                schema: args.schema,
                pattern: args.pattern,
                limit,
                offset: args.offset.unwrap_or(0),
                include_sizes: args.include_sizes.unwrap_or(false),
                session,
            })
        }
        SchemaAction::Describe => {
            let target = match args.target {
                None => DescribeTarget::Table,
                Some(t) => DescribeTarget::from_target(t).ok_or_else(|| {
                    invalid(
                        action,
                        format_args!("parameter 'target' is '{}'; choose {}", t.as_str(), DescribeTarget::CHOICES),
                    )
                })?,
            };
            let name = required(args.name.as_deref(), "name", TOOL, action)?;
            let name = qualified(action, name, args.schema.as_deref())?;
            Ok(Request::Describe { target, name, session })
        }
        SchemaAction::Create | SchemaAction::Alter | SchemaAction::Drop => {
            let verb = match args.action {
                SchemaAction::Create => DdlVerb::Create,
                SchemaAction::Alter => DdlVerb::Alter,
                _ => DdlVerb::Drop,
            };
            let ddl = match args.sql {
                Some(sql) => {
                    reject_unused(TOOL, action, &[
                        ("target", args.target.is_some()),
                        ("name", args.name.is_some()),
                        ("schema", args.schema.is_some()),
                        ("definition", args.definition.is_some()),
                        ("if_exists", args.if_exists.is_some()),
                        ("if_not_exists", args.if_not_exists.is_some()),
                        ("cascade", args.cascade.is_some()),
                    ])
                    .map_err(|e| {
                        e.with_hint("give either raw 'sql', or the structured parameters (target, name, schema, definition...), not both")
                    })?;
                    check_ddl(CallerSql::new(sql)?, verb, None).await?
                }
                None => structured(action, verb, &args).await?,
            };
            let target =
                ctx.authorize(args.session_id.as_deref(), args.autocommit, ddl.needs_autocommit, Some(ddl.sql.text()))?;
            if target == WriteTarget::Autocommit {
                classify::check_autocommit(&ddl.classified)?;
            }
            let statement = Statement::new(ddl.sql).with_footprint(ddl.classified.footprint());
            let limits = ctx.write_limits(ctx.limits(None, None)?, !ddl.needs_autocommit);
            if preview_requested(args.preview, args.confirm.as_deref())? {
                return Ok(Request::DdlPreview { statement, classified: ddl.classified, target, limits });
            }
            let text = statement.sql.text().to_owned();
            let op = preview::Op { statement: statement.clone(), classified: &ddl.classified };
            let binding = binding(ctx, &text, &[], &target);
            preview::confirm_write(ctx, std::slice::from_ref(&op), &target, &limits, binding, args.confirm.as_deref())
                .await?;
            let relations = ddl.classified.names.relations.iter().cloned().collect();
            Ok(Request::Ddl { statement, tag: ddl.tag, target, limits, relations })
        }
    }
}

/// Classifies a DDL statement: exactly one statement of `verb` (and, for a structured CREATE,
/// of the kind its target names).
async fn check_ddl(sql: CallerSql, verb: DdlVerb, create: Option<DdlObject>) -> Result<Ddl> {
    let classified = classify::classify(&sql).await?;
    ddl_of(sql, classified, verb, create)
}

/// The checks of [`check_ddl`] after classification (their messages name the action).
fn ddl_of(sql: CallerSql, classified: classify::Classified, verb: DdlVerb, create: Option<DdlObject>) -> Result<Ddl> {
    classify::check_ddl_verb(&classified, verb)?;
    if let Some(object) = create
        && !object.create_kinds().contains(&classified.kind.as_str())
    {
        return Err(Error::new(
            coldquery_core::ErrorKind::StatementNotAllowed,
            format!(
                "pg_schema {}: the definition made the statement a {}, not a CREATE {}",
                verb.action(),
                classified.tag,
                object.keyword().trim_end()
            ),
        )
        .with_hint("put only the part of the statement that 'definition' describes in it, or send the whole statement as raw 'sql'"));
    }
    Ok(Ddl {
        tag: classified.tag.clone(),
        needs_autocommit: classify::needs_autocommit(&classified),
        sql: Sql::caller(sql),
        classified,
    })
}

/// Builds the structured form's statement from sanitized identifiers, static keywords and the
/// caller's `definition` — then classifies what was built like raw SQL.
async fn structured(action: &str, verb: DdlVerb, args: &PgSchemaArgs) -> Result<Ddl> {
    let object = match args.target {
        None => DdlObject::Table,
        Some(t) => DdlObject::from_target(t).ok_or_else(|| {
            invalid(action, format_args!("parameter 'target' is '{}'; choose {}", t.as_str(), DdlObject::CHOICES))
        })?,
    };
    let name = required(args.name.as_deref(), "name", TOOL, action)
        .map_err(|e| e.with_hint("give 'name' (with target, definition...) or the whole statement as raw 'sql'"))?;
    let name = qualified(action, name, args.schema.as_deref())?;
    let definition = match args.definition.as_deref() {
        None => None,
        Some(text) => Some(CallerSql::named(text, "parameter 'definition'").map_err(|e| in_action(action, e))?),
    };
    let flag = |value: Option<bool>| value.unwrap_or(false);
    let if_exists = flag(args.if_exists);
    let if_not_exists = flag(args.if_not_exists);
    let cascade = flag(args.cascade);
    let kind = object.name();
    let a_kind = with_article(kind);
    let unqualified = |name: &QualifiedName| -> Result<Ident> {
        match &name.schema {
            None => Ok(name.name.clone()),
            Some(_) => Err(invalid(
                action,
                format_args!(
                    "parameter 'schema' does not apply to target '{kind}' here; {}",
                    if object == DdlObject::Index {
                        "it goes in its table's schema (qualify the table in 'definition')"
                    } else {
                        "leave 'schema' out"
                    }
                ),
            )),
        }
    };

    let mut sql;
    match verb {
        DdlVerb::Create => {
            reject_unused(
                TOOL,
                action,
                &[("if_exists", args.if_exists.is_some()), ("cascade", args.cascade.is_some())],
            )?;
            if if_not_exists && !object.has_if_not_exists() {
                return Err(invalid(
                    action,
                    format_args!(
                        "parameter 'if_not_exists' is not supported for {a_kind} (PostgreSQL has no CREATE {}IF NOT EXISTS)",
                        object.keyword()
                    ),
                ));
            }
            let needs_definition = matches!(
                object,
                DdlObject::Table
                    | DdlObject::View
                    | DdlObject::MaterializedView
                    | DdlObject::Index
                    | DdlObject::Function
                    | DdlObject::Type
            );
            if needs_definition && definition.is_none() {
                return Err(invalid(
                    action,
                    format_args!(
                        "parameter 'definition' is required to create {a_kind} (see its description), or send raw 'sql'"
                    ),
                ));
            }
            sql = SqlBuilder::new("CREATE ");
            sql.push(object.keyword());
            if if_not_exists {
                sql.push("IF NOT EXISTS ");
            }
            if object.create_takes_schema() {
                sql.name(&name);
            } else {
                sql.ident(&unqualified(&name)?);
            }
            if let Some(definition) = &definition {
                match object {
                    DdlObject::Table => sql.push(" (").caller(definition).push(")"),
                    DdlObject::View | DdlObject::MaterializedView => sql.push(" AS ").caller(definition),
                    _ => sql.push(" ").caller(definition),
                };
            }
        }
        DdlVerb::Alter => {
            reject_unused(
                TOOL,
                action,
                &[("if_not_exists", args.if_not_exists.is_some()), ("cascade", args.cascade.is_some())],
            )?;
            if if_exists && !object.has_alter_if_exists() {
                return Err(invalid(
                    action,
                    format_args!(
                        "parameter 'if_exists' is not supported for {a_kind} (PostgreSQL has no ALTER {}IF EXISTS)",
                        object.keyword()
                    ),
                ));
            }
            let Some(definition) = &definition else {
                return Err(invalid(
                    action,
                    "parameter 'definition' is required: the change to make, e.g. 'ADD COLUMN note text' or 'RENAME TO new_name'",
                ));
            };
            sql = SqlBuilder::new("ALTER ");
            sql.push(object.keyword());
            if if_exists {
                sql.push("IF EXISTS ");
            }
            if matches!(object, DdlObject::Schema | DdlObject::Extension) {
                sql.ident(&unqualified(&name)?);
            } else {
                sql.name(&name);
            }
            sql.push(" ").caller(definition);
        }
        DdlVerb::Drop => {
            reject_unused(TOOL, action, &[("if_not_exists", args.if_not_exists.is_some())])?;
            if definition.is_some() && object != DdlObject::Function {
                return Err(invalid(
                    action,
                    format_args!(
                        "parameter 'definition' does not apply to dropping {a_kind} (only a function takes an argument list)"
                    ),
                ));
            }
            sql = SqlBuilder::new("DROP ");
            sql.push(object.keyword());
            if if_exists {
                sql.push("IF EXISTS ");
            }
            if matches!(object, DdlObject::Schema | DdlObject::Extension) {
                sql.ident(&unqualified(&name)?);
            } else {
                sql.name(&name);
            }
            if let Some(definition) = &definition {
                sql.push(" ").caller(definition);
            }
            if cascade {
                sql.push(" CASCADE");
            }
        }
    }
    // The built text contains caller SQL (the definition): it must parse as exactly one
    // statement of this verb, like raw SQL, so a definition cannot end the statement and
    // start another. The checks of raw SQL speak of parameter 'sql' and not of the action;
    // here they speak of the built statement, in the action.
    let built = CallerSql::named(sql.build().text(), "the statement built with 'definition'")
        .map_err(|e| in_action(action, e))?;
    let checked = match classify::classify(&built).await {
        Ok(classified) => classify::check_write(&classified)
            .map_err(|e| in_action(action, e))
            .and_then(|()| ddl_of(built, classified, verb, (verb == DdlVerb::Create).then_some(object))),
        Err(e) => Err(in_action(action, e)),
    };
    let mut ddl = checked.map_err(|error| {
        if error.kind() == coldquery_core::ErrorKind::StatementNotAllowed {
            error.with_hint("'definition' only completes the statement (see its description); it cannot end it or add another. Send a whole statement as raw 'sql' instead.")
        } else {
            error
        }
    })?;
    if verb == DdlVerb::Create {
        // The command is known from the target (the classifier's tag is for raw statements).
        ddl.tag = format!("CREATE {}", object.keyword().trim_end());
    }
    Ok(ddl)
}

/// Runs the catalog reads of one call, in the session or read-only, and keeps the session's
/// latest state for the result.
struct Reader<'c, 'a> {
    ctx: &'c Ctx<'a>,
    session: Option<&'c SessionId>,
    info: Option<SessionInfo>,
    truncated: bool,
}

impl Reader<'_, '_> {
    async fn rows(&mut self, statement: &Statement) -> Result<Vec<Value>> {
        let limits = self.ctx.catalog_limits(SECTION_ROWS);
        let (result, info) = self.ctx.read(self.session, statement, &limits).await?;
        if info.is_some() {
            self.info = info;
        }
        self.truncated |= result.truncated;
        Ok(result.rows_as_objects())
    }

    async fn row(&mut self, statement: &Statement) -> Result<Option<Value>> {
        Ok(self.rows(statement).await?.into_iter().next())
    }

    fn finish(self, mut out: Value) -> Value {
        if self.truncated {
            out["truncated"] = json!(true);
            out["hint"] = json!(format!("some sections were cut at {SECTION_ROWS} rows"));
        }
        if let Some(info) = &self.info {
            out["session"] = self.ctx.session_json(info);
        }
        out
    }
}

pub(crate) async fn run(ctx: &Ctx<'_>, args: Value) -> Result<Value> {
    let args: PgSchemaArgs = parse_args(TOOL, args)?;
    match parse(ctx, args).await? {
        Request::List { target, schema, pattern, limit, offset, include_sizes, session } => {
            let sized = target.sized;
            let filter = catalog::ListFilter {
                schema: schema.as_deref(),
                pattern: pattern.as_deref(),
                limit,
                offset,
                include_sizes,
            };
            let statement = catalog::list(&target.query, sized, &filter);
            let mut reader = Reader { ctx, session: session.as_ref(), info: None, truncated: false };
            let row = reader.row(&statement).await?.unwrap_or(Value::Null);
            let total = row["total"].as_u64().unwrap_or(0);
            let mut items = match row.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            if sized && !include_sizes {
                for item in &mut items {
                    if let Some(object) = item.as_object_mut() {
                        object.shift_remove("total_bytes");
                        object.shift_remove("total_size");
                    }
                }
            }
            let shown = offset.saturating_add(items.len() as u64);
            let truncated = shown < total;
            let mut out = json!({
                "target": target.name(),
                "items": items,
                "total": total,
                "truncated": truncated,
                "limit": limit,
                "offset": offset,
            });
            if truncated {
                out["next_offset"] = json!(shown);
                out["hint"] = json!(format!(
                    "{total} match; call again with offset {shown} for the next page, or narrow with schema/pattern"
                ));
            }
            reader.truncated = false;
            Ok(reader.finish(out))
        }
        Request::Describe { target, name, session } => {
            let mut reader = Reader { ctx, session: session.as_ref(), info: None, truncated: false };
            let out = describe(&mut reader, target, &name).await?;
            Ok(reader.finish(out))
        }
        Request::DdlPreview { statement, classified, target, limits } => {
            let text = statement.sql.text().to_owned();
            let op = preview::Op { statement, classified: &classified };
            preview::run(ctx, std::slice::from_ref(&op), &target, &limits, binding(ctx, &text, &[], &target)).await
        }
        Request::Ddl { statement, tag, target, limits, relations } => {
            let (_, info) = match ctx.write(&target, &statement, &limits).await {
                Ok(written) => written,
                Err(err) => return Err(ctx.name_lock_holders(err, &relations).await),
            };
            let mut out = json!({ "statement": statement.sql.text(), "command": tag });
            if let Some(info) = info {
                out["session"] = ctx.session_json(&info);
            }
            Ok(out)
        }
    }
}

/// The error for a name that resolves to nothing.
fn not_found(target: DescribeTarget, name: &QualifiedName) -> Error {
    let place = match &name.schema {
        Some(schema) => format!("in schema {schema}"),
        None => "visible through search_path".to_owned(),
    };
    Error::invalid(format!("pg_schema describe: no {} named {} {place}", target.name(), name.name)).with_hint(format!(
        "call pg_schema with action 'list' and target '{}' (a 'pattern' helps) to see the names; pass 'schema' for an object outside search_path; names are case-sensitive",
        target.list_target()
    ))
}

async fn describe(reader: &mut Reader<'_, '_>, target: DescribeTarget, name: &QualifiedName) -> Result<Value> {
    let schema = name.schema.as_ref().map(Ident::as_str);
    match target {
        DescribeTarget::Function => {
            let overloads = reader.rows(&catalog::by_name(&catalog::FUNCTIONS, schema, name.name.as_str())).await?;
            if overloads.is_empty() {
                return Err(not_found(target, name));
            }
            Ok(json!({ "target": "function", "name": name.name.as_str(), "overloads": overloads }))
        }
        DescribeTarget::Type => {
            let row = reader.row(&catalog::by_name(&catalog::TYPE, schema, name.name.as_str())).await?;
            let row = row.ok_or_else(|| not_found(target, name))?;
            Ok(with_target("type", row))
        }
        DescribeTarget::Table | DescribeTarget::View | DescribeTarget::Sequence => {
            let found = reader.row(&catalog::by_name(&catalog::FIND_RELATION, schema, name.name.as_str())).await?;
            let found = found.ok_or_else(|| not_found(target, name))?;
            let kind = found["kind"].as_str().unwrap_or("");
            if !target.relation_kinds().contains(&kind) {
                return Err(wrong_kind(target, name, kind));
            }
            let oid = found["oid"].as_i64().ok_or_else(|| Error::internal("the catalog returned no oid"))?;
            match target {
                DescribeTarget::Table => describe_table(reader, oid, name, target).await,
                DescribeTarget::View => {
                    let row = reader.row(&catalog::by_oid(&catalog::VIEW, oid)).await?;
                    let mut out = with_target("view", row.ok_or_else(|| not_found(target, name))?);
                    out["columns"] = Value::Array(reader.rows(&catalog::by_oid(&catalog::COLUMNS, oid)).await?);
                    if kind == "materialized_view" {
                        out["indexes"] = Value::Array(reader.rows(&catalog::by_oid(&catalog::INDEXES, oid)).await?);
                    } else if let Some(object) = out.as_object_mut() {
                        object.shift_remove("populated");
                    }
                    Ok(out)
                }
                _ => {
                    let row = reader.row(&catalog::by_oid(&catalog::SEQUENCE, oid)).await?;
                    Ok(with_target("sequence", row.ok_or_else(|| not_found(target, name))?))
                }
            }
        }
    }
}

fn wrong_kind(target: DescribeTarget, name: &QualifiedName, kind: &str) -> Error {
    let hint = match kind {
        "table" | "partitioned_table" | "foreign_table" => "call describe with target 'table'",
        "view" | "materialized_view" => "call describe with target 'view'",
        "sequence" => "call describe with target 'sequence'",
        "index" | "partitioned_index" => "describe the index's table, or list target 'indexes'",
        "composite_type" => "call describe with target 'type'",
        _ => "call pg_schema list to see what it is",
    };
    let kind = with_article(&kind.replace('_', " "));
    Error::invalid(format!("pg_schema describe: {name} is {kind}, not a {}", target.name())).with_hint(hint)
}

/// `{"target": target, ...row}`.
fn with_target(target: &str, row: Value) -> Value {
    let mut out = Map::new();
    out.insert("target".into(), json!(target));
    if let Value::Object(fields) = row {
        out.extend(fields);
    }
    Value::Object(out)
}

/// Removes `keys` from a JSON object.
fn without(mut value: Value, keys: &[&str]) -> Value {
    if let Some(object) = value.as_object_mut() {
        for key in keys {
            object.shift_remove(*key);
        }
    }
    value
}

const FOREIGN_KEY_ONLY: &[&str] =
    &["references_schema", "references_table", "references_columns", "on_update", "on_delete"];

async fn describe_table(
    reader: &mut Reader<'_, '_>,
    oid: i64,
    name: &QualifiedName,
    target: DescribeTarget,
) -> Result<Value> {
    let table = reader.row(&catalog::by_oid(&catalog::TABLE, oid)).await?.ok_or_else(|| not_found(target, name))?;
    let columns = reader.rows(&catalog::by_oid(&catalog::COLUMNS, oid)).await?;
    let constraints = reader.rows(&catalog::by_oid(&catalog::CONSTRAINTS, oid)).await?;
    let referenced_by = reader.rows(&catalog::by_oid(&catalog::REFERENCED_BY, oid)).await?;
    let indexes = reader.rows(&catalog::by_oid(&catalog::INDEXES, oid)).await?;
    let triggers = reader.rows(&catalog::by_oid(&catalog::TRIGGERS, oid)).await?;
    let policies = reader.rows(&catalog::by_oid(&catalog::POLICIES, oid)).await?;
    let partitioned = table["kind"] == "partitioned_table";
    let partitions = if partitioned || table["has_children"] == true {
        Some(reader.rows(&catalog::by_oid(&catalog::PARTITIONS, oid)).await?)
    } else {
        None
    };

    let mut primary_key = Value::Null;
    let (mut unique, mut check, mut exclusion, mut foreign) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for constraint in constraints {
        let kind = constraint["type"].as_str().unwrap_or("").to_owned();
        let constraint = without(constraint, &["type"]);
        match kind.as_str() {
            "primary_key" => primary_key = without(constraint, FOREIGN_KEY_ONLY),
            "unique" => unique.push(without(constraint, FOREIGN_KEY_ONLY)),
            "check" => check.push(without(constraint, FOREIGN_KEY_ONLY)),
            "exclusion" => exclusion.push(without(constraint, FOREIGN_KEY_ONLY)),
            "foreign_key" => foreign.push(constraint),
            // Constraint triggers are listed with the triggers.
            _ => {}
        }
    }
    let partitioning = if partitioned || table["partition_of"] != Value::Null || partitions.is_some() {
        json!({
            "partition_key": table["partition_key"],
            "partition_of": table["partition_of"],
            "partition_bound": table["partition_bound"],
            "partitions": partitions.unwrap_or_default(),
        })
    } else {
        Value::Null
    };
    Ok(json!({
        "target": "table",
        "schema": table["schema"],
        "name": table["name"],
        "kind": table["kind"],
        "owner": table["owner"],
        "persistence": table["persistence"],
        "comment": table["comment"],
        "row_estimate": table["row_estimate"],
        "sizes": {
            "total_bytes": table["total_bytes"],
            "table_bytes": table["table_bytes"],
            "index_bytes": table["index_bytes"],
            "total": table["total_size"],
        },
        "columns": columns,
        "primary_key": primary_key,
        "unique_constraints": unique,
        "check_constraints": check,
        "exclusion_constraints": exclusion,
        "foreign_keys": foreign,
        "referenced_by": referenced_by,
        "indexes": indexes,
        "triggers": triggers,
        "row_level_security": {
            "enabled": table["rls_enabled"],
            "forced": table["rls_forced"],
            "policies": policies,
        },
        "partitioning": partitioning,
    }))
}
