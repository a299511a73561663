//! `coldquery-mcp`: parse the configuration, set up logging to stderr, serve, exit with 0
//! (clean stop), 1 (runtime failure) or 2 (bad configuration).

use coldquery_mcp::{Args, Config, LogFormat, run, shutdown_on_signals};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

mod healthcheck;

/// Logs on stderr (stdout is the stdio transport). Drivers that would log statement
/// parameters at debug level are capped at info whatever `RUST_LOG` says.
fn init_tracing(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Only ever lower these targets: at debug they log requests, rows and statement parameters.
    if filter.max_level_hint().is_none_or(|level| level > LevelFilter::INFO) {
        for directive in ["rmcp=info", "tokio_postgres=info", "postgres_protocol=info"] {
            if let Ok(directive) = directive.parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn fail(message: &str, code: i32) -> ! {
    eprintln!("coldquery-mcp: {message}");
    std::process::exit(code);
}

fn main() {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "healthcheck") {
        std::process::exit(healthcheck::main(std::env::args_os().skip(1)));
    }
    let names: Vec<String> = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).collect();
    if let Err(error) = coldquery_config::variables::check_variables(names.iter().map(String::as_str)) {
        fail(&error.to_string(), 2);
    }
    let args = Args::from_command_line();
    let config = Config::from_args(args).unwrap_or_else(|error| fail(&error.to_string(), 2));
    init_tracing(config.log_format);
    // Over stdio one client sends one request at a time: a single-threaded runtime saves the
    // cross-thread wake-ups of every call. HTTP serves many clients at once.
    let runtime = match config.transport {
        coldquery_mcp::Transport::Stdio => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        coldquery_mcp::Transport::Http => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .unwrap_or_else(|error| fail(&format!("cannot start the runtime: {error}"), 1));
    let outcome = runtime.block_on(async {
        let shutdown = shutdown_on_signals();
        run(config, shutdown).await
    });
    // Do not wait for the blocking stdin reader: exit now that every session is rolled back.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            tracing::error!(%error, "coldquery-mcp stopped");
            fail(&error.to_string(), error.exit_code());
        }
    }
}
