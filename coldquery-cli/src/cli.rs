//! The command line: one subcommand per tool and action, each turned into the tool's JSON
//! arguments — nothing more. Names mirror the tools' parameters in kebab case
//! (`session_id` ↔ `--session-id`); a flag that is not given is not sent, so the tool's own
//! defaults and validation apply unchanged.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value};

use crate::fail::Failure;

/// ColdQuery's PostgreSQL tools from a terminal: the same five tools, the same Default-Deny
/// write policy, and the same configuration as the MCP server.
///
/// Like psql: `coldquery` on a terminal opens the shell; `coldquery -c SQL`, `coldquery -f FILE`
/// and `coldquery < FILE` run SQL (statements separated by ';'). Writes need --autocommit (each
/// commits on its own) or BEGIN ... COMMIT. Data goes to stdout, notices and errors to stderr.
/// Exit codes: 0 ok, 1 a tool or the database reported an error, 2 usage or configuration error.
#[derive(Debug, Parser)]
#[command(name = "coldquery", version, max_term_width = 110)]
pub(crate) struct Cli {
    /// The settings shared with `coldquery-mcp`: database, limits, policy, audit.
    #[command(flatten)]
    pub(crate) settings: coldquery_config::Settings,
    /// Fetch every row, for an export: a read outside BEGIN ... COMMIT is streamed to stdout as
    /// its rows arrive (memory stays small whatever the size; an aligned table is aligned per
    /// 1000 rows). Inside a transaction it lifts --max-rows and --max-result-bytes instead.
    #[arg(long, global = true)]
    pub(crate) all: bool,
    #[command(flatten)]
    pub(crate) print: PrintArgs,
    /// Run these statements and exit (several may be separated by ';'; repeatable, like psql -c).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub(crate) commands: Vec<String>,
    /// Run the statements in FILE and exit (`-` is stdin; repeatable, like psql -f).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub(crate) files: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) script: ScriptArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// How results are printed (psql's `\pset`); these apply to every command.
#[derive(Debug, Clone, Args)]
pub(crate) struct PrintArgs {
    /// How results are printed on stdout (errors and notices always go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Unaligned output, `|`-separated (the same as --format unaligned; psql -A).
    #[arg(short = 'A', long = "no-align", global = true)]
    pub(crate) no_align: bool,
    /// CSV output that `COPY ... FROM ... CSV HEADER` loads back (the same as --format csv).
    #[arg(long, global = true)]
    pub(crate) csv: bool,
    /// Rows only: no header and no row-count footer (psql -t).
    #[arg(short = 't', long, global = true)]
    pub(crate) tuples_only: bool,
    /// Expanded output, one block per row (psql -x).
    #[arg(short = 'x', long, global = true)]
    pub(crate) expanded: bool,
    /// Show NULL as this text (default: empty, as in psql; in CSV an empty unquoted field).
    #[arg(long, global = true, value_name = "TEXT")]
    pub(crate) null: Option<String>,
    /// No command tags such as `INSERT 0 1` (psql -q).
    #[arg(short = 'q', long, global = true)]
    pub(crate) quiet: bool,
}

impl PrintArgs {
    /// The effective output format.
    pub(crate) fn format(&self) -> Format {
        if self.csv {
            Format::Csv
        } else if self.no_align {
            Format::Unaligned
        } else {
            self.format
        }
    }

    /// The print style these flags ask for.
    pub(crate) fn style(&self) -> crate::output::Style {
        crate::output::Style {
            format: self.format(),
            tuples_only: self.tuples_only,
            expanded: self.expanded,
            null: self.null.clone().unwrap_or_default(),
            quiet: self.quiet,
        }
    }
}

/// How a script (`-c`, `-f`, stdin, the shell) runs its statements.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ScriptArgs {
    /// Commit each write outside BEGIN ... COMMIT on its own, as psql does (otherwise such a
    /// write is refused: Default-Deny).
    #[arg(long)]
    pub(crate) autocommit: bool,
    /// Stop at the first failing statement (psql's ON_ERROR_STOP); otherwise go on and exit 1.
    #[arg(long)]
    pub(crate) on_error_stop: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people (psql's default).
    Table,
    /// `|`-separated columns (psql -A).
    Unaligned,
    /// The tool's structured result as JSON.
    Json,
    /// Rows as CSV, values in PostgreSQL's text form (`COPY ... CSV` loads it back).
    Csv,
    /// Rows as a Markdown table.
    Markdown,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run SQL (pg_query).
    #[command(subcommand)]
    Query(QueryCommand),
    /// Introspect and change the schema (pg_schema).
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Maintenance: vacuum, analyze, reindex, statistics, settings, backends (pg_admin).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Observe the server: health, activity, connections, locks, sizes, top queries (pg_monitor).
    #[command(subcommand)]
    Monitor(MonitorCommand),
    /// Call any tool with its JSON arguments, e.g. `coldquery call pg_query '{"action":"read","sql":"SELECT 1"}'`.
    Call {
        /// pg_query, pg_tx, pg_schema, pg_admin or pg_monitor.
        tool: String,
        /// The arguments as one JSON object (`-` reads them from stdin).
        #[arg(default_value = "{}")]
        args: String,
    },
    /// List the tools and their input schemas (`--format json` for the full schemas).
    Tools {
        /// Show this tool's parameters only.
        tool: Option<String>,
    },
    /// The interactive shell: psql's habits, transactions with BEGIN ... COMMIT (type \?).
    Shell(ShellArgs),
}

/// Options of `coldquery shell`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ShellArgs {
    /// When to print the prompt (on stderr): `auto` when stdin is a terminal.
    #[arg(long, value_enum, default_value_t = PromptMode::Auto)]
    pub(crate) prompt: PromptMode,
    /// Where the line editor keeps its history [default: ~/.coldquery_history].
    #[arg(long, value_name = "FILE")]
    pub(crate) history_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) script: ScriptArgs,
}

/// When the shell prints its prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PromptMode {
    /// When stdin is a terminal.
    Auto,
    /// Always (useful when driving the shell through a pipe).
    Always,
    /// Never.
    Never,
}

/// Statement parameters: `--param` (repeatable, sent as text exactly as given; PostgreSQL
/// infers each type) or `--params-json` (a JSON array, for NULLs and JSON values).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct Params {
    /// A value for the next $n placeholder, as text (repeat for $1, $2, ...).
    #[arg(long = "param", value_name = "VALUE", conflicts_with = "params_json")]
    pub(crate) param: Vec<String>,
    /// All placeholder values as one JSON array, e.g. '[1, null, {"a": 2}]'.
    #[arg(long, value_name = "JSON")]
    pub(crate) params_json: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueryCommand {
    /// Run one read-only statement (in a READ ONLY transaction that is rolled back).
    Read {
        /// One SQL statement; use $1, $2... for values.
        sql: String,
        #[command(flatten)]
        params: Params,
        /// Cap on returned rows.
        #[arg(long)]
        max_rows: Option<u64>,
        /// Statement timeout for this call.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Run one writing statement; needs --autocommit (it then commits on its own).
    Write {
        /// One SQL statement (INSERT/UPDATE/DELETE/MERGE/DDL).
        sql: String,
        #[command(flatten)]
        params: Params,
        /// Commit this statement on its own (required: writes are denied by default).
        #[arg(long)]
        autocommit: bool,
        /// Cap on returned rows (RETURNING).
        #[arg(long)]
        max_rows: Option<u64>,
        /// Statement timeout for this call.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Show a statement's plan.
    Explain {
        /// The statement to explain.
        sql: String,
        #[command(flatten)]
        params: Params,
        /// Run it and report actual times (EXPLAIN ANALYZE; reads only outside a session).
        #[arg(long)]
        analyze: bool,
        /// Report buffer usage (with --analyze).
        #[arg(long)]
        buffers: bool,
        /// A verbose plan.
        #[arg(long)]
        verbose: bool,
        /// The plan as json (default) or text.
        #[arg(long, value_name = "json|text")]
        plan_format: Option<String>,
    },
    /// Run several statements atomically (all commit or none).
    Transaction {
        /// The statements, in order (without parameters; use --operations for those).
        #[arg(required_unless_present = "operations", conflicts_with = "operations")]
        statements: Vec<String>,
        /// The operations as JSON: '[{"sql": "...", "params": [...]}, ...]'.
        #[arg(long, value_name = "JSON")]
        operations: Option<String>,
        /// read_committed (default), repeatable_read, serializable or read_uncommitted.
        #[arg(long)]
        isolation_level: Option<String>,
        /// Run the batch READ ONLY (then --autocommit is not needed).
        #[arg(long)]
        read_only: bool,
        /// Commit the batch (required unless --read-only).
        #[arg(long)]
        autocommit: bool,
    },
}

/// Structured DDL (or `--sql`), for `schema create|alter|drop`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DdlArgs {
    /// The raw statement instead of the structured form (must be of this verb).
    #[arg(long)]
    pub(crate) sql: Option<String>,
    /// What kind of object (table, view, index, schema, ...).
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// The object's name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Its schema.
    #[arg(long)]
    pub(crate) schema: Option<String>,
    /// The definition (e.g. the column list of a table, the query of a view).
    #[arg(long)]
    pub(crate) definition: Option<String>,
    /// IF EXISTS.
    #[arg(long)]
    pub(crate) if_exists: bool,
    /// IF NOT EXISTS.
    #[arg(long)]
    pub(crate) if_not_exists: bool,
    /// CASCADE.
    #[arg(long)]
    pub(crate) cascade: bool,
    /// Commit the statement on its own (required: writes are denied by default).
    #[arg(long)]
    pub(crate) autocommit: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// List tables, views, functions, indexes... (paged).
    List {
        /// tables (default), views, materialized_views, schemas, functions, sequences,
        /// indexes, triggers, constraints, extensions or types.
        #[arg(long)]
        target: Option<String>,
        /// Only this schema.
        #[arg(long)]
        schema: Option<String>,
        /// A LIKE pattern on the name.
        #[arg(long)]
        pattern: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<u64>,
        /// Rows to skip.
        #[arg(long)]
        offset: Option<u64>,
        /// Include sizes.
        #[arg(long)]
        include_sizes: bool,
    },
    /// Describe a table (default), view, function, sequence or type.
    Describe {
        /// The object's name.
        name: String,
        /// Its schema (default: resolved through search_path).
        #[arg(long)]
        schema: Option<String>,
        /// table (default), view, function, sequence or type.
        #[arg(long)]
        target: Option<String>,
    },
    /// CREATE an object (needs --autocommit).
    Create(DdlArgs),
    /// ALTER an object (needs --autocommit).
    Alter(DdlArgs),
    /// DROP an object (needs --autocommit).
    Drop(DdlArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// VACUUM a table or the database (needs --autocommit).
    Vacuum {
        #[arg(long)]
        table: Option<String>,
        #[arg(long)]
        schema: Option<String>,
        /// VACUUM FULL (rewrites the table, takes an exclusive lock).
        #[arg(long)]
        full: bool,
        #[arg(long)]
        verbose: bool,
        /// Also ANALYZE.
        #[arg(long)]
        analyze: bool,
        /// Required: VACUUM commits on its own.
        #[arg(long)]
        autocommit: bool,
    },
    /// ANALYZE a table or the database (needs --autocommit).
    Analyze {
        #[arg(long)]
        table: Option<String>,
        #[arg(long)]
        schema: Option<String>,
        #[arg(long)]
        verbose: bool,
        /// Required: commit on its own.
        #[arg(long)]
        autocommit: bool,
    },
    /// REINDEX a table, an index or a schema (needs --autocommit).
    Reindex {
        /// table, index or schema.
        #[arg(long)]
        target: String,
        /// The object's name.
        #[arg(long)]
        name: String,
        #[arg(long)]
        schema: Option<String>,
        /// REINDEX CONCURRENTLY.
        #[arg(long)]
        concurrently: bool,
        /// Required: commit on its own.
        #[arg(long)]
        autocommit: bool,
    },
    /// Table statistics: the busiest tables, or one table with its indexes.
    Stats {
        #[arg(long)]
        table: Option<String>,
        #[arg(long)]
        schema: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
    },
    /// List or get server settings (setting one needs a session: use `coldquery shell`).
    Settings {
        /// One setting (dotted names allowed).
        #[arg(long)]
        name: Option<String>,
        /// Only this category.
        #[arg(long)]
        category: Option<String>,
        /// A LIKE pattern on the name.
        #[arg(long)]
        pattern: Option<String>,
    },
    /// Cancel a backend's query, or terminate the backend (needs --autocommit).
    Terminate {
        /// The backend's process id.
        pid: i64,
        /// cancel (default) or terminate.
        #[arg(long)]
        mode: Option<String>,
        /// Required.
        #[arg(long)]
        autocommit: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MonitorCommand {
    /// Status, version, uptime, pool and sessions; --deep adds checks.
    Health {
        /// Run the deep checks (bloat, wraparound, unused indexes, blocked queries...).
        #[arg(long)]
        deep: bool,
    },
    /// Backends other than this one.
    Activity {
        /// Include idle backends.
        #[arg(long)]
        include_idle: bool,
        /// Only queries running at least this long.
        #[arg(long)]
        min_duration_ms: Option<u64>,
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Connection counts by state, database and user.
    Connections,
    /// Who blocks whom.
    Locks {
        /// Only blocking chains (default true).
        #[arg(long, value_name = "BOOL")]
        blocking_only: Option<bool>,
    },
    /// Database sizes, the largest tables and indexes.
    Size {
        #[arg(long)]
        database: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
    },
    /// The most expensive statements (pg_stat_statements).
    TopQueries {
        /// total_time (default), mean_time or calls.
        #[arg(long)]
        order_by: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// A tool call: the tool's name and its JSON arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub(crate) tool: String,
    pub(crate) args: Value,
}

/// A tool's arguments, built flag by flag; absent flags are not sent.
struct ArgsBuilder(Map<String, Value>);

impl ArgsBuilder {
    fn action(action: &str) -> ArgsBuilder {
        let mut map = Map::new();
        map.insert("action".into(), Value::from(action));
        ArgsBuilder(map)
    }

    fn set(mut self, key: &str, value: impl Into<Value>) -> ArgsBuilder {
        self.0.insert(key.into(), value.into());
        self
    }

    fn opt<T: Into<Value>>(self, key: &str, value: Option<T>) -> ArgsBuilder {
        match value {
            Some(value) => self.set(key, value),
            None => self,
        }
    }

    fn flag(self, key: &str, on: bool) -> ArgsBuilder {
        if on { self.set(key, true) } else { self }
    }

    fn params(self, params: &Params) -> Result<ArgsBuilder, Failure> {
        if let Some(json) = &params.params_json {
            let value = json_of(json, "--params-json")?;
            if !value.is_array() {
                return Err(Failure::usage("--params-json must be a JSON array, e.g. '[1, \"a\", null]'"));
            }
            return Ok(self.set("params", value));
        }
        if params.param.is_empty() {
            return Ok(self);
        }
        let values: Vec<Value> = params.param.iter().map(|p| Value::from(p.as_str())).collect();
        Ok(self.set("params", values))
    }

    fn ddl(self, ddl: &DdlArgs) -> ArgsBuilder {
        self.opt("sql", ddl.sql.clone())
            .opt("target", ddl.target.clone())
            .opt("name", ddl.name.clone())
            .opt("schema", ddl.schema.clone())
            .opt("definition", ddl.definition.clone())
            .flag("if_exists", ddl.if_exists)
            .flag("if_not_exists", ddl.if_not_exists)
            .flag("cascade", ddl.cascade)
            .flag("autocommit", ddl.autocommit)
    }

    fn request(self, tool: &str) -> Request {
        Request { tool: tool.to_owned(), args: Value::Object(self.0) }
    }
}

/// Parses a JSON command-line value; the error names the argument.
pub(crate) fn json_of(text: &str, what: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::usage(format!("{what}: not valid JSON: {e}")))
}

impl QueryCommand {
    pub(crate) fn request(&self) -> Result<Request, Failure> {
        let args = match self {
            QueryCommand::Read { sql, params, max_rows, timeout_ms } => ArgsBuilder::action("read")
                .set("sql", sql.as_str())
                .params(params)?
                .opt("max_rows", *max_rows)
                .opt("timeout_ms", *timeout_ms),
            QueryCommand::Write { sql, params, autocommit, max_rows, timeout_ms } => ArgsBuilder::action("write")
                .set("sql", sql.as_str())
                .params(params)?
                .flag("autocommit", *autocommit)
                .opt("max_rows", *max_rows)
                .opt("timeout_ms", *timeout_ms),
            QueryCommand::Explain { sql, params, analyze, buffers, verbose, plan_format } => {
                ArgsBuilder::action("explain")
                    .set("sql", sql.as_str())
                    .params(params)?
                    .flag("analyze", *analyze)
                    .flag("buffers", *buffers)
                    .flag("verbose", *verbose)
                    .opt("format", plan_format.clone())
            }
            QueryCommand::Transaction { statements, operations, isolation_level, read_only, autocommit } => {
                let operations = match operations {
                    Some(json) => {
                        let value = json_of(json, "--operations")?;
                        if !value.is_array() {
                            return Err(Failure::usage(
                                "--operations must be a JSON array of {\"sql\": ..., \"params\": [...]} objects",
                            ));
                        }
                        value
                    }
                    None => Value::Array(
                        statements.iter().map(|sql| serde_json::json!({"sql": sql, "params": []})).collect(),
                    ),
                };
                ArgsBuilder::action("transaction")
                    .set("operations", operations)
                    .opt("isolation_level", isolation_level.clone())
                    .flag("read_only", *read_only)
                    .flag("autocommit", *autocommit)
            }
        };
        Ok(args.request("pg_query"))
    }
}

impl SchemaCommand {
    pub(crate) fn request(&self) -> Request {
        let args = match self {
            SchemaCommand::List { target, schema, pattern, limit, offset, include_sizes } => {
                ArgsBuilder::action("list")
                    .opt("target", target.clone())
                    .opt("schema", schema.clone())
                    .opt("pattern", pattern.clone())
                    .opt("limit", *limit)
                    .opt("offset", *offset)
                    .flag("include_sizes", *include_sizes)
            }
            SchemaCommand::Describe { name, schema, target } => ArgsBuilder::action("describe")
                .set("name", name.as_str())
                .opt("schema", schema.clone())
                .opt("target", target.clone()),
            SchemaCommand::Create(ddl) => ArgsBuilder::action("create").ddl(ddl),
            SchemaCommand::Alter(ddl) => ArgsBuilder::action("alter").ddl(ddl),
            SchemaCommand::Drop(ddl) => ArgsBuilder::action("drop").ddl(ddl),
        };
        args.request("pg_schema")
    }
}

impl AdminCommand {
    pub(crate) fn request(&self) -> Request {
        let args = match self {
            AdminCommand::Vacuum { table, schema, full, verbose, analyze, autocommit } => ArgsBuilder::action("vacuum")
                .opt("table", table.clone())
                .opt("schema", schema.clone())
                .flag("full", *full)
                .flag("verbose", *verbose)
                .flag("analyze", *analyze)
                .flag("autocommit", *autocommit),
            AdminCommand::Analyze { table, schema, verbose, autocommit } => ArgsBuilder::action("analyze")
                .opt("table", table.clone())
                .opt("schema", schema.clone())
                .flag("verbose", *verbose)
                .flag("autocommit", *autocommit),
            AdminCommand::Reindex { target, name, schema, concurrently, autocommit } => ArgsBuilder::action("reindex")
                .set("target", target.as_str())
                .set("name", name.as_str())
                .opt("schema", schema.clone())
                .flag("concurrently", *concurrently)
                .flag("autocommit", *autocommit),
            AdminCommand::Stats { table, schema, limit } => ArgsBuilder::action("stats")
                .opt("table", table.clone())
                .opt("schema", schema.clone())
                .opt("limit", *limit),
            AdminCommand::Settings { name, category, pattern } => ArgsBuilder::action("settings")
                .opt("name", name.clone())
                .opt("category", category.clone())
                .opt("pattern", pattern.clone()),
            AdminCommand::Terminate { pid, mode, autocommit } => ArgsBuilder::action("terminate")
                .set("pid", *pid)
                .opt("mode", mode.clone())
                .flag("autocommit", *autocommit),
        };
        args.request("pg_admin")
    }
}

impl MonitorCommand {
    pub(crate) fn request(&self) -> Request {
        let args = match self {
            MonitorCommand::Health { deep } => ArgsBuilder::action("health").flag("deep", *deep),
            MonitorCommand::Activity { include_idle, min_duration_ms, limit } => ArgsBuilder::action("activity")
                .flag("include_idle", *include_idle)
                .opt("min_duration_ms", *min_duration_ms)
                .opt("limit", *limit),
            MonitorCommand::Connections => ArgsBuilder::action("connections"),
            MonitorCommand::Locks { blocking_only } => {
                ArgsBuilder::action("locks").opt("blocking_only", *blocking_only)
            }
            MonitorCommand::Size { database, limit } => {
                ArgsBuilder::action("size").opt("database", database.clone()).opt("limit", *limit)
            }
            MonitorCommand::TopQueries { order_by, limit } => {
                ArgsBuilder::action("top_queries").opt("order_by", order_by.clone()).opt("limit", *limit)
            }
        };
        args.request("pg_monitor")
    }
}

/// The call a generic `coldquery call <tool> <json>` makes. `stdin` supplies the arguments
/// when they are `-`.
pub(crate) fn call_request(
    tool: &str,
    args: &str,
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> Result<Request, Failure> {
    coldquery_tools::tool(tool).map_err(|unknown| Failure::usage(unknown.to_string()))?;
    let text = if args == "-" {
        stdin().map_err(|e| Failure::usage(format!("reading the arguments from stdin: {e}")))?
    } else {
        args.to_owned()
    };
    let value = json_of(&text, &format!("the arguments of {tool}"))?;
    if !value.is_object() {
        return Err(Failure::usage(format!(
            "the arguments must be one JSON object, e.g. '{{\"action\": \"...\"}}', not {}",
            kind_of(&value)
        )));
    }
    Ok(Request { tool: tool.to_owned(), args: value })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every environment variable the CLI reads is in the shared vocabulary, so setting it is
    /// not refused as a misspelling.
    #[test]
    fn every_environment_variable_is_in_the_shared_vocabulary() {
        let command = Cli::command();
        let names: Vec<String> =
            command.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
        assert!(!names.is_empty());
        for name in names.iter().filter(|n| n.starts_with("COLDQUERY_")) {
            assert!(
                coldquery_config::variables::VARIABLES.contains(&name.as_str()),
                "{name} is missing from settings::VARIABLES"
            );
        }
    }
    use clap::CommandFactory;
    use serde_json::json;

    fn request(line: &[&str]) -> Result<Request, Failure> {
        let mut argv = vec!["coldquery"];
        argv.extend_from_slice(line);
        let cli = Cli::try_parse_from(argv).map_err(|e| Failure::usage(e.to_string()))?;
        match cli.command.ok_or_else(|| Failure::usage("no subcommand"))? {
            Command::Query(q) => q.request(),
            Command::Schema(s) => Ok(s.request()),
            Command::Admin(a) => Ok(a.request()),
            Command::Monitor(m) => Ok(m.request()),
            Command::Call { tool, args } => call_request(&tool, &args, || Ok("{\"action\":\"list\"}".into())),
            Command::Tools { .. } | Command::Shell(_) => Err(Failure::usage("not a call")),
        }
    }

    fn check(line: &[&str], tool: &str, args: Value) {
        let got = request(line).unwrap_or_else(|e| panic!("{line:?}: {}", e.message));
        assert_eq!(got, Request { tool: tool.into(), args }, "{line:?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_become_tool_arguments() {
        check(
            &["query", "read", "SELECT $1::int", "--param", "1", "--max-rows", "5"],
            "pg_query",
            json!({"action": "read", "sql": "SELECT $1::int", "params": ["1"], "max_rows": 5}),
        );
        check(
            &["query", "write", "DELETE FROM t", "--autocommit", "--timeout-ms", "100"],
            "pg_query",
            json!({"action": "write", "sql": "DELETE FROM t", "autocommit": true, "timeout_ms": 100}),
        );
        check(
            &["query", "read", "SELECT $1, $2", "--params-json", "[null, {\"a\": 1}]"],
            "pg_query",
            json!({"action": "read", "sql": "SELECT $1, $2", "params": [null, {"a": 1}]}),
        );
        check(
            &["query", "explain", "SELECT 1", "--analyze", "--plan-format", "text"],
            "pg_query",
            json!({"action": "explain", "sql": "SELECT 1", "analyze": true, "format": "text"}),
        );
        check(
            &["query", "transaction", "INSERT INTO t VALUES (1)", "UPDATE t SET a = 2", "--autocommit"],
            "pg_query",
            json!({"action": "transaction", "operations": [
                {"sql": "INSERT INTO t VALUES (1)", "params": []}, {"sql": "UPDATE t SET a = 2", "params": []}
            ], "autocommit": true}),
        );
        check(&["schema", "list", "--target", "views"], "pg_schema", json!({"action": "list", "target": "views"}));
        check(&["schema", "describe", "users"], "pg_schema", json!({"action": "describe", "name": "users"}));
        check(
            &["schema", "drop", "--target", "table", "--name", "t", "--if-exists", "--autocommit"],
            "pg_schema",
            json!({"action": "drop", "target": "table", "name": "t", "if_exists": true, "autocommit": true}),
        );
        check(
            &["admin", "vacuum", "--table", "t", "--autocommit"],
            "pg_admin",
            json!({"action": "vacuum", "table": "t", "autocommit": true}),
        );
        check(
            &["admin", "terminate", "42", "--mode", "cancel", "--autocommit"],
            "pg_admin",
            json!({"action": "terminate", "pid": 42, "mode": "cancel", "autocommit": true}),
        );
        check(&["monitor", "health", "--deep"], "pg_monitor", json!({"action": "health", "deep": true}));
        check(
            &["monitor", "locks", "--blocking-only", "false"],
            "pg_monitor",
            json!({"action": "locks", "blocking_only": false}),
        );
        check(
            &["monitor", "top-queries", "--order-by", "calls"],
            "pg_monitor",
            json!({"action": "top_queries", "order_by": "calls"}),
        );
        check(&["call", "pg_tx", "-"], "pg_tx", json!({"action": "list"}));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for line in [
            &["query", "nope", "SELECT 1"][..],
            &["query", "read"],
            &["query", "read", "SELECT 1", "--param", "1", "--params-json", "[1]"],
            &["query", "read", "SELECT 1", "--params-json", "{\"a\": 1}"],
            &["query", "read", "SELECT 1", "--params-json", "[1"],
            &["admin", "reindex", "--target", "table"],
            &["call", "pg_nope", "{}"],
            &["call", "pg_query", "{\"action\": "],
            &["call", "pg_query", "[1]"],
            &["--read-only", "maybe", "tools"],
        ] {
            let failure = request(line).expect_err(&format!("{line:?} should be refused"));
            assert_eq!(failure.exit, crate::fail::Exit::Usage, "{line:?}");
        }
    }
}
