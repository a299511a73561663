//! The command line: one subcommand per tool and action, each turned into the tool's JSON
//! arguments — nothing more. Names mirror the tools' parameters in kebab case
//! (`session_id` ↔ `--session-id`); a flag that is not given is not sent, so the tool's own
//! defaults and validation apply unchanged.

use clap::{Arg, ArgAction, Args, Parser, Subcommand, ValueEnum};
use coldquery_tools::{Action, ToolDef};
use serde_json::{Map, Value};

use crate::fail::Failure;
use crate::output::{Format, Style};

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
    pub(crate) fn style(&self) -> Style {
        Style {
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

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// `query`, `schema`, `admin`, `monitor`: one subcommand per action of a tool, generated
    /// from the tool registry.
    #[command(flatten)]
    Tool(ToolCommand),
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

/// The tools offered as subcommand groups (`coldquery query read ...`); `pg_tx` is the shell's
/// BEGIN ... COMMIT. Each action of the tool is a subcommand and each of its parameters a flag
/// (`session_id` ↔ `--session-id`), from the registry ([`coldquery_tools::TOOLS`]).
const GROUPS: [(&str, &str); 4] =
    [("query", "pg_query"), ("schema", "pg_schema"), ("admin", "pg_admin"), ("monitor", "pg_monitor")];

/// Parameters a one-shot command does not offer: there is no session to name, and a preview's
/// token would not outlive the process that could confirm it.
const NOT_OFFERED: [&str; 3] = ["session_id", "preview", "confirm"];

/// How the command line presents a parameter that is not a plain `--flag VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A `--flag VALUE` (or a switch, for a boolean).
    Flag,
    /// A required positional argument.
    Positional,
    /// A required `--flag VALUE`.
    Required,
    /// `--flag true|false` (a boolean whose default is true).
    Valued,
    /// A flag under another name (`--plan-format`: `--format` is the output's).
    Renamed(&'static str),
    /// Not offered by this subcommand.
    Hidden,
}

/// The exceptions to [`Shape::Flag`], by tool, action and parameter.
const SHAPES: [(&str, &str, &str, Shape); 10] = [
    ("pg_query", "read", "sql", Shape::Positional),
    ("pg_query", "read", "format", Shape::Hidden),
    ("pg_query", "write", "sql", Shape::Positional),
    ("pg_query", "explain", "sql", Shape::Positional),
    ("pg_query", "explain", "format", Shape::Renamed("plan_format")),
    ("pg_schema", "describe", "name", Shape::Positional),
    ("pg_admin", "reindex", "target", Shape::Required),
    ("pg_admin", "reindex", "name", Shape::Required),
    ("pg_admin", "settings", "value", Shape::Hidden),
    ("pg_admin", "terminate", "pid", Shape::Positional),
];

/// How `parameter` of `tool` `action` is shown (`locks --blocking-only` takes a value: it is on
/// by default).
fn shape(tool: &str, action: &str, parameter: &str) -> Shape {
    if NOT_OFFERED.contains(&parameter) {
        return Shape::Hidden;
    }
    if (tool, action, parameter) == ("pg_monitor", "locks", "blocking_only") {
        return Shape::Valued;
    }
    SHAPES.iter().find(|(t, a, p, _)| (*t, *a, *p) == (tool, action, parameter)).map_or(Shape::Flag, |s| s.3)
}

/// The parameters `action`'s subcommand offers: each with the id of its argument and its shape.
fn offered(tool: &ToolDef, action: &Action) -> impl Iterator<Item = (&'static str, &'static str, Shape)> + use<> {
    let (tool, action, parameters) = (tool.name, action.name, action.parameters);
    parameters.iter().filter_map(move |&parameter| match shape(tool, action, parameter) {
        Shape::Hidden => None,
        Shape::Renamed(id) => Some((parameter, id, Shape::Renamed(id))),
        shape => Some((parameter, parameter, shape)),
    })
}

/// A tool call from a subcommand of [`GROUPS`]: the request its flags build.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCommand(pub(crate) Request);

impl clap::FromArgMatches for ToolCommand {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let missing = || clap::Error::new(clap::error::ErrorKind::MissingSubcommand);
        let (group, matches) = matches.subcommand().ok_or_else(missing)?;
        let name = GROUPS.iter().find(|(g, _)| *g == group).ok_or_else(missing)?.1;
        let tool =
            coldquery_tools::tool(name).map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidSubcommand, e))?;
        let (action, matches) = matches.subcommand().ok_or_else(missing)?;
        let action = tool.actions.iter().find(|a| a.name.replace('_', "-") == action).ok_or_else(missing)?;
        let mut args = Map::new();
        args.insert("action".into(), Value::from(action.name));
        let schema = (tool.input_schema)();
        for (parameter, id, shape) in offered(tool, action) {
            let value = match (parameter, kind(&schema, parameter), shape) {
                ("params", ..) => match matches.get_one::<Value>("params_json") {
                    Some(json) => Some(json.clone()),
                    None => matches.get_many::<String>("param").map(|p| p.map(|v| Value::from(v.as_str())).collect()),
                },
                ("operations", ..) => match matches.get_one::<Value>("operations") {
                    Some(json) => Some(json.clone()),
                    None => matches.get_many::<String>("statements").map(|statements| {
                        statements.map(|sql| serde_json::json!({"sql": sql, "params": []})).collect()
                    }),
                },
                (_, Kind::Boolean, Shape::Valued) => matches.get_one::<bool>(id).map(|b| Value::from(*b)),
                (_, Kind::Boolean, _) => matches.get_flag(id).then_some(Value::Bool(true)),
                (_, Kind::Integer, _) => matches.get_one::<i64>(id).map(|n| Value::from(*n)),
                (_, Kind::Text, _) => matches.get_one::<String>(id).map(|t| Value::from(t.as_str())),
            };
            if let Some(value) = value {
                args.insert(parameter.into(), value);
            }
        }
        Ok(ToolCommand(Request { tool: tool.name.to_owned(), args: Value::Object(args) }))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Subcommand for ToolCommand {
    fn augment_subcommands(command: clap::Command) -> clap::Command {
        command.subcommands(GROUPS.iter().filter_map(|(group, name)| {
            coldquery_tools::tool(name).ok().map(|tool| {
                clap::Command::new(*group)
                    .about(format!("{} ({})", tool.title, tool.name))
                    .subcommand_required(true)
                    .subcommands(tool.actions.iter().map(|action| action_command(tool, action)))
            })
        }))
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        Self::augment_subcommands(command)
    }

    fn has_subcommand(name: &str) -> bool {
        GROUPS.iter().any(|(group, _)| *group == name)
    }
}

/// The JSON type of a parameter, from the tool's input schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    Integer,
    Text,
}

fn kind(schema: &Value, parameter: &str) -> Kind {
    match schema["properties"][parameter]["type"].as_str() {
        Some("boolean") => Kind::Boolean,
        Some("integer") => Kind::Integer,
        _ => Kind::Text,
    }
}

/// The help of a parameter: its description in the schema, or — for a flag named after its SQL
/// keyword — the keyword.
fn help(schema: &Value, parameter: &str) -> String {
    match schema["properties"][parameter]["description"].as_str() {
        Some(description) => description.replace('\n', " "),
        None => format!("{}.", parameter.replace('_', " ").to_uppercase()),
    }
}

/// The subcommand of one action: its parameters as flags.
fn action_command(tool: &ToolDef, action: &Action) -> clap::Command {
    let schema = (tool.input_schema)();
    let mut command = clap::Command::new(action.name.replace('_', "-")).about(action.about);
    for (parameter, id, shape) in offered(tool, action) {
        command = match parameter {
            "params" => command
                .arg(
                    Arg::new("param")
                        .long("param")
                        .value_name("VALUE")
                        .action(ArgAction::Append)
                        .conflicts_with("params_json")
                        .help("A value for the next $n placeholder, as text (repeat for $1, $2, ...)."),
                )
                .arg(
                    Arg::new("params_json")
                        .long("params-json")
                        .value_name("JSON")
                        .value_parser(|text: &str| json_array(text, "--params-json", "[1, \"a\", null]"))
                        .help("All placeholder values as one JSON array, e.g. '[1, null, {\"a\": 2}]'."),
                ),
            "operations" => command
                .arg(
                    Arg::new("statements")
                        .value_name("STATEMENTS")
                        .num_args(1..)
                        .required_unless_present("operations")
                        .conflicts_with("operations")
                        .help("The statements, in order (without parameters; use --operations for those)."),
                )
                .arg(
                    Arg::new("operations")
                        .long("operations")
                        .value_name("JSON")
                        .value_parser(|text: &str| {
                            json_array(text, "--operations", "[{\"sql\": ..., \"params\": [...]}, ...]")
                        })
                        .help("The operations as JSON: '[{\"sql\": \"...\", \"params\": [...]}, ...]'."),
                ),
            _ => {
                let mut arg = Arg::new(id).help(help(&schema, parameter)).value_name(id.to_uppercase());
                arg = match shape {
                    Shape::Positional => arg.required(true),
                    _ => arg.long(id.replace('_', "-")).required(shape == Shape::Required),
                };
                arg = match (kind(&schema, parameter), shape) {
                    (Kind::Boolean, Shape::Valued) => arg.value_name("BOOL").value_parser(clap::value_parser!(bool)),
                    (Kind::Boolean, _) => arg.action(ArgAction::SetTrue),
                    (Kind::Integer, _) => arg.value_parser(clap::value_parser!(i64)),
                    (Kind::Text, _) => arg,
                };
                command.arg(arg)
            }
        };
    }
    command
}

/// A JSON array given on the command line; the error names the flag and shows an example.
fn json_array(text: &str, flag: &str, example: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) if value.is_array() => Ok(value),
        Ok(_) => Err(format!("{flag} must be a JSON array, e.g. '{example}'")),
        Err(e) => Err(format!("{flag}: not valid JSON: {e}")),
    }
}

/// A tool call: the tool's name and its JSON arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub(crate) tool: String,
    pub(crate) args: Value,
}

/// Parses a JSON command-line value; the error names the argument.
pub(crate) fn json_of(text: &str, what: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::usage(format!("{what}: not valid JSON: {e}")))
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
            Command::Tool(ToolCommand(request)) => Ok(request),
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

    /// Every exception to a plain flag names a parameter the registry has, so a renamed
    /// parameter cannot leave a stale entry behind.
    #[test]
    fn every_shape_names_a_registered_parameter() {
        for (tool, action, parameter, _) in SHAPES {
            let parameters = coldquery_tools::action_parameters(tool, action).unwrap_or_default();
            assert!(parameters.contains(&parameter), "{tool} {action} has no parameter {parameter}");
        }
        for (_, tool) in GROUPS {
            let tool = coldquery_tools::tool(tool).unwrap();
            let group = Cli::command()
                .get_subcommands()
                .find(|c| c.get_about().is_some_and(|a| a.to_string().contains(tool.name)))
                .cloned()
                .unwrap();
            let names: Vec<String> = group.get_subcommands().map(|c| c.get_name().replace('-', "_")).collect();
            let actions: Vec<&str> = tool.actions.iter().map(|a| a.name).collect();
            assert_eq!(names, actions, "{}", tool.name);
        }
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
