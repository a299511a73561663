//! `coldquery`: ColdQuery's five PostgreSQL tools from a terminal.
//!
//! A thin adapter, like `coldquery-mcp`: every subcommand becomes a tool name and its JSON
//! arguments ([`cli`]), [`coldquery_tools::Tools::call`] does the work, and the result is
//! printed ([`output`]). The configuration is the server's ([`config`]). Without a subcommand
//! it behaves like psql ([`shell`]): the interactive shell on a terminal, or the statements of
//! `-c`, `-f` or stdin — with transactions kept open across statements the way an agent's
//! session is. Exit codes ([`fail`]): 0 ok, 1 a tool error, 2 a usage or configuration error.

mod cli;
mod config;
mod fail;
mod input;
mod output;
mod pgtext;
mod shell;
mod statements;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use coldquery_core::{CancellationToken, Owner};
use coldquery_tools::{Caller, ToolSpec, Tools, tool_specs};
use serde_json::{Value, json};

use crate::cli::{Cli, Command, PromptMode, Request};
use crate::fail::{Exit, Failure, Vocabulary};
use crate::input::Input;
use crate::output::Format;

fn main() -> ExitCode {
    let parsed =
        coldquery_config::try_parse_from(&config::PROFILE, std::env::args_os(), |cli: &mut Cli| &mut cli.settings);
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version print to stdout and succeed; every other error is usage.
            return if e.use_stderr() { ExitCode::from(Exit::Usage as u8) } else { ExitCode::SUCCESS };
        }
    };
    // Fail closed on a misspelt setting (COLDQUERY_READONLY would otherwise leave writes allowed).
    let names: Vec<String> = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()).collect();
    if let Err(error) = coldquery_config::variables::check_variables(names.iter().map(String::as_str)) {
        eprintln!("error: {error}");
        return ExitCode::from(Exit::Usage as u8);
    }
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::ToolError as u8);
        }
    };
    let format = cli.print.format();
    let exit = runtime.block_on(async move {
        match run(cli).await {
            Ok(exit) => exit,
            Err(failure) => {
                report(&failure, format, None);
                failure.exit
            }
        }
    });
    // Nothing is left to wait for; a stdin reader blocked in a worker must not hold the exit.
    runtime.shutdown_background();
    ExitCode::from(exit as u8)
}

/// What the command line asks for.
enum Job {
    /// One tool call.
    Call(Request),
    /// Statements from these inputs (`-c`, `-f`, stdin), or from a line editor when `terminal`.
    Statements { inputs: Vec<Input>, vocabulary: Vocabulary, prompt_on_stderr: bool, terminal: bool },
}

/// `--all` streams this call: a `pg_query read` outside a session.
fn streams(all: bool, request: &Request) -> bool {
    all && request.tool == "pg_query" && request.args["action"] == "read" && request.args.get("session_id").is_none()
}

async fn run(cli: Cli) -> Result<Exit, Failure> {
    let format = cli.print.format();
    let style = cli.print.style();
    // Everything the command line says is checked before anything connects.
    let scripted = !cli.commands.is_empty() || !cli.files.is_empty();
    if scripted && cli.command.is_some() {
        return Err(Failure::usage("-c and -f run statements without a subcommand; give one or the other"));
    }
    let mut script = cli.script.clone();
    let job = match &cli.command {
        Some(Command::Tool(cli::ToolCommand(request))) => {
            let mut request = request.clone();
            // People read plans as text, the way psql shows EXPLAIN (one line per row in CSV
            // and Markdown); JSON stays for scripts.
            let for_people = style.format != Format::Json;
            let explain = request.tool == "pg_query" && request.args["action"] == "explain";
            if explain && request.args.get("format").is_none() && for_people {
                request.args["format"] = json!("text");
            }
            Job::Call(request)
        }
        Some(Command::Call { tool, args }) => Job::Call(cli::call_request(tool, args, read_stdin)?),
        Some(Command::Tools { tool }) => {
            print(&render_tools(tool.as_deref(), format)?);
            return Ok(Exit::Ok);
        }
        Some(Command::Shell(args)) => {
            script.autocommit |= args.script.autocommit;
            script.on_error_stop |= args.script.on_error_stop;
            let terminal = stdin_is_terminal();
            let prompt_on_stderr = match args.prompt {
                PromptMode::Always => !terminal,
                PromptMode::Never | PromptMode::Auto => false,
            };
            Job::Statements { inputs: Vec::new(), vocabulary: Vocabulary::Shell, prompt_on_stderr, terminal }
        }
        None if scripted => {
            let mut inputs: Vec<Input> = cli.commands.iter().map(|sql| Input::text(sql)).collect();
            for file in &cli.files {
                if file.as_os_str() == "-" {
                    inputs.push(Input::stdin());
                } else {
                    let text = std::fs::read_to_string(file)
                        .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
                    inputs.push(Input::text(&text));
                }
            }
            Job::Statements { inputs, vocabulary: Vocabulary::Command, prompt_on_stderr: false, terminal: false }
        }
        // psql: on a terminal the shell, otherwise the statements piped in.
        None if stdin_is_terminal() => Job::Statements {
            inputs: Vec::new(),
            vocabulary: Vocabulary::Shell,
            prompt_on_stderr: false,
            terminal: true,
        },
        None => Job::Statements {
            inputs: vec![Input::stdin()],
            vocabulary: Vocabulary::Command,
            prompt_on_stderr: false,
            terminal: false,
        },
    };
    let history_file = match &cli.command {
        Some(Command::Shell(args)) => args.history_file.clone(),
        _ => None,
    };
    let all = cli.all;
    let config = config::resolve(&cli.settings, all)?;
    let interrupt = Interrupt::install();
    let connection = config::connect(&config).await?;
    let exit = match job {
        Job::Statements { mut inputs, vocabulary, prompt_on_stderr, terminal } => {
            if terminal {
                // A person types: Ctrl-C between statements must not end the shell.
                interrupt.keep_running();
                let completion = input::Completion {
                    tools: connection.tools.clone(),
                    caller: interrupt.completion_caller(),
                    runtime: tokio::runtime::Handle::current(),
                };
                let path = history_file.or_else(|| {
                    std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".coldquery_history"))
                });
                match input::Terminal::start(path, completion) {
                    Ok(terminal) => inputs.push(Input::Terminal(terminal)),
                    Err(e) => {
                        eprintln!("warning: no line editor ({e}); reading plain lines");
                        inputs.push(Input::stdin());
                    }
                }
            } else if inputs.is_empty() {
                // `coldquery shell` reading a pipe.
                interrupt.keep_running();
                inputs.push(Input::stdin());
            }
            let setup = shell::Setup {
                tools: &connection.tools,
                interrupt: &interrupt,
                style,
                script,
                prompt_on_stderr,
                vocabulary,
                conninfo: connection.conninfo.clone(),
                all,
            };
            shell::run(setup, inputs).await
        }
        Job::Call(request) if streams(all, &request) => {
            match stream(&connection.tools, &interrupt, request.args.clone(), &style).await {
                Ok(_) => Exit::Ok,
                Err(failure) => {
                    report(&failure, format, request.args["sql"].as_str());
                    failure.exit
                }
            }
        }
        Job::Call(request) => match call(&connection.tools, &interrupt, &request).await {
            Ok(value) => {
                let tools = connection.tools.config();
                let max_rows = request.args["max_rows"]
                    .as_u64()
                    .map_or(tools.max_rows, |n| usize::try_from(n).unwrap_or(usize::MAX));
                let origin = output::Origin {
                    sql: request.args["sql"].as_str(),
                    max_rows: Some(max_rows),
                    max_rows_limit: Some(tools.max_rows_limit),
                    max_result_bytes: Some(tools.max_result_bytes),
                };
                let rendered = output::render(&value, &style, &origin);
                print(&rendered.stdout);
                eprint!("{}", rendered.stderr);
                health_exit(&request, &value)
            }
            Err(failure) => {
                report(&failure, format, request.args["sql"].as_str());
                failure.exit
            }
        },
    };
    connection.close().await;
    Ok(exit)
}

/// `monitor health` exits 1 when the server is not healthy, so scripts and probes can tell.
fn health_exit(request: &Request, value: &Value) -> Exit {
    let is_health = request.tool == "pg_monitor" && request.args["action"] == "health";
    match value["status"].as_str() {
        Some(status) if is_health && status != "ok" => {
            let failing: Vec<String> = value["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|check| check["status"] != "ok")
                .map(|check| {
                    format!("{} ({})", check["name"].as_str().unwrap_or("?"), check["status"].as_str().unwrap_or("?"))
                })
                .collect();
            let detail = if failing.is_empty() { String::new() } else { format!(": {}", failing.join(", ")) };
            eprintln!("coldquery: the server's health is {status}{detail}");
            Exit::ToolError
        }
        _ => Exit::Ok,
    }
}

/// Calls a tool with a fresh cancellation token that Ctrl-C cancels.
pub(crate) async fn call(tools: &Tools, interrupt: &Interrupt, request: &Request) -> Result<Value, Failure> {
    let caller = interrupt.caller();
    let outcome = tools.call(&caller, &request.tool, request.args.clone()).await;
    interrupt.done();
    match outcome {
        Ok(output) => output.value().map_err(|error| Failure::from_error(&error)),
        Err(unknown) => Err(Failure::usage(unknown.to_string())),
    }
}

/// `--all` on a read outside a transaction: the rows go to stdout as they arrive, so memory stays
/// small whatever the result's size (`Tools::read_stream`). A closed stdout (`| head`) stops the
/// read quietly.
pub(crate) async fn stream(
    tools: &Tools,
    interrupt: &Interrupt,
    args: Value,
    style: &output::Style,
) -> Result<Value, Failure> {
    let caller = interrupt.caller();
    let mut printer = output::StreamPrinter::new(style);
    let outcome = tools.read_stream(&caller, args, &mut printer).await;
    interrupt.done();
    match outcome {
        Ok(summary) => {
            let _ = printer.finish(&summary);
            Ok(summary)
        }
        Err(_) if printer.closed() => Ok(Value::Null),
        Err(error) => Err(Failure::from_error(&error)),
    }
}

/// Writes to stdout; a closed pipe (`coldquery ... | head`) is not an error.
pub(crate) fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// Writes an error to stderr, as JSON with `--format json`; `sql` is the statement, for the
/// caret under the error's position.
pub(crate) fn report(failure: &Failure, format: Format, sql: Option<&str>) {
    let text = match format {
        Format::Json => failure.render_json() + "\n",
        _ => failure.render_text(sql, Vocabulary::Command),
    };
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes()).and_then(|()| stderr.flush());
}

fn read_stdin() -> std::io::Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    Ok(text)
}

/// Ctrl-C cancels the call in flight (the tools send PostgreSQL a CancelRequest); with no call
/// in flight it exits, except in an interactive shell, where it only reminds how to quit.
#[derive(Debug, Clone)]
pub(crate) struct Interrupt {
    owner: Owner,
    current: Arc<Mutex<Option<CancellationToken>>>,
    keep_running: Arc<std::sync::atomic::AtomicBool>,
}

impl Interrupt {
    fn install() -> Interrupt {
        let user = std::env::var("USER").unwrap_or_else(|_| "cli".to_owned());
        let interrupt = Interrupt {
            owner: Owner::new(format!("cli:{user}")),
            current: Arc::new(Mutex::new(None)),
            keep_running: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let handler = interrupt.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                let running = handler.lock().clone();
                match running {
                    Some(token) if !token.is_cancelled() => {
                        eprintln!("\ncancelling the statement...");
                        token.cancel();
                    }
                    _ if handler.keep_running.load(std::sync::atomic::Ordering::Relaxed) => {
                        eprintln!("\n(use \\q or Ctrl-D to quit; an open transaction is then rolled back)");
                    }
                    // The connection closing makes PostgreSQL roll back whatever was open.
                    _ => std::process::exit(130),
                }
            }
        });
        interrupt
    }

    /// Keeps the process alive on Ctrl-C between calls (the interactive shell).
    pub(crate) fn keep_running(&self) {
        self.keep_running.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CancellationToken>> {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A caller for completion's catalog lookups: nothing cancels them but their timeout.
    pub(crate) fn completion_caller(&self) -> Caller {
        Caller::new(self.owner.clone(), self.owner.as_str())
    }

    /// A caller whose token Ctrl-C cancels until [`Interrupt::done`].
    pub(crate) fn caller(&self) -> Caller {
        let caller = Caller::new(self.owner.clone(), self.owner.as_str());
        *self.lock() = Some(caller.cancel.clone());
        caller
    }

    pub(crate) fn done(&self) {
        *self.lock() = None;
    }
}

/// `coldquery tools`: a summary of every tool, or one tool's parameters; JSON gives the specs.
fn render_tools(tool: Option<&str>, format: Format) -> Result<String, Failure> {
    let specs = tool_specs();
    let chosen: Vec<&ToolSpec> = match tool {
        None => specs.iter().collect(),
        Some(name) => {
            let tool = coldquery_tools::tool(name).map_err(|unknown| Failure::usage(unknown.to_string()))?;
            specs.iter().filter(|spec| spec.name == tool.name).collect()
        }
    };
    let style = |format| output::Style { format, ..output::Style::default() };
    let render = |value: &Value, format| output::render(value, &style(format), &output::Origin::default()).stdout;
    if format == Format::Json {
        let value = serde_json::to_value(&chosen).unwrap_or(Value::Null);
        return Ok(render(&value, Format::Json));
    }
    let value = match tool {
        None => json!({"tools": chosen.iter().map(|spec| json!({
            "tool": spec.name,
            "title": spec.title,
            "actions": actions(spec),
            "read_only": spec.annotations.read_only,
            "destructive": spec.annotations.destructive,
        })).collect::<Vec<_>>()}),
        Some(_) => {
            let spec = chosen[0];
            json!({
                "tool": spec.name,
                "title": spec.title,
                "description": spec.description,
                "parameters": parameters(spec),
            })
        }
    };
    Ok(match format {
        Format::Table => render(&value, Format::Table),
        other => render(&json!({"rows": value.get("parameters").or(value.get("tools"))}), other),
    })
}

/// The `action` parameter's choices, from the registry.
fn actions(spec: &ToolSpec) -> String {
    spec.action_names().join(" | ")
}

fn enum_of(schema: &Value) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
    }
    let variants = schema.get("oneOf").or(schema.get("anyOf"))?.as_array()?;
    let mut out = Vec::new();
    for variant in variants {
        match (variant.get("const").and_then(Value::as_str), enum_of(variant)) {
            (Some(value), _) => out.push(value.to_owned()),
            (None, Some(values)) => out.extend(values),
            (None, None) => return None,
        }
    }
    Some(out)
}

/// One row per parameter: name, type, required, description.
fn parameters(spec: &ToolSpec) -> Vec<Value> {
    let required: Vec<&str> = spec.input_schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = spec.input_schema["properties"].as_object() else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, schema)| {
            json!({
                "parameter": name,
                "type": type_of(schema),
                "required": required.contains(&name.as_str()),
                "description": schema["description"].as_str().unwrap_or_default(),
            })
        })
        .collect()
}

fn type_of(schema: &Value) -> String {
    match &schema["type"] {
        Value::String(t) if t == "array" => format!("array of {}", type_of(&schema["items"])),
        Value::String(t) => t.clone(),
        Value::Array(types) => {
            types.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect::<Vec<_>>().join(" | ")
        }
        _ => enum_of(schema).map_or_else(|| "any".to_owned(), |_| "string (enum)".to_owned()),
    }
}

/// True when stdin is a terminal (the shell then prints its prompt by default).
pub(crate) fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_that_is_not_ok_exits_1() {
        let health = Request { tool: "pg_monitor".into(), args: json!({"action": "health", "deep": true}) };
        let degraded = json!({"status": "degraded", "checks": [
            {"name": "cache_hit_ratio", "status": "critical"}, {"name": "dead_tuples", "status": "ok"}]});
        assert_eq!(health_exit(&health, &degraded), Exit::ToolError);
        assert_eq!(health_exit(&health, &json!({"status": "down"})), Exit::ToolError);
        assert_eq!(health_exit(&health, &json!({"status": "ok", "checks": []})), Exit::Ok);
        let other = Request { tool: "pg_monitor".into(), args: json!({"action": "activity"}) };
        assert_eq!(health_exit(&other, &json!({"status": "degraded"})), Exit::Ok);
    }

    /// `tools` reads the action choices and parameter types straight from the input schemas,
    /// which have no `$ref` to follow (subschemas are inlined).
    #[test]
    fn tool_help_reads_inlined_schemas() {
        for spec in tool_specs() {
            let text = spec.input_schema.to_string();
            assert!(!text.contains("\"$ref\"") && !text.contains("\"$defs\""), "{}: {text}", spec.name);
            assert!(actions(&spec).contains(" | "), "{}: {}", spec.name, actions(&spec));
            for parameter in parameters(&spec) {
                assert_ne!(parameter["type"], "any", "{}: {parameter}", spec.name);
            }
        }
    }
}
