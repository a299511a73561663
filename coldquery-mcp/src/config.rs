//! Configuration (SPEC §5): command-line flags, each with an environment variable, parsed into
//! a validated [`Config`]. It fails closed: an unknown `COLDQUERY_*` variable, a malformed value
//! or a combination that cannot be served is a [`ConfigError`] naming the setting, and the
//! binary exits with status 2.
//!
//! Durations and sizes are read as strings and converted with [`coldquery_core::units`], so the
//! error can name both the flag and its variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use coldquery_core::units::{parse_duration, parse_size};
use coldquery_pg::PgOptions;
use coldquery_tools::{ConfirmWrites, Layout, ToolConfig};

use crate::auth::Tokens;

/// The default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:19002";

/// Every `COLDQUERY_*` variable the binaries read (shared with the CLI).
pub use coldquery_core::settings::VARIABLES as KNOWN_VARIABLES;

/// How clients reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// MCP over standard input and output: one client, the process that started this one.
    Stdio,
    /// MCP streamable HTTP at `/mcp`, plus `/health`, `/ready` and `/metrics`.
    Http,
}

/// How log lines on stderr are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The command line. Every flag has an environment variable; the flag wins.
///
/// The field docs are the `--help` text, so they hold example URLs as plain text.
#[allow(rustdoc::bare_urls)]
#[derive(Debug, Clone, Parser)]
#[command(
    name = "coldquery-mcp",
    version,
    about = "ColdQuery: a secure, stateful PostgreSQL server for the Model Context Protocol.",
    long_about = "ColdQuery: a secure, stateful PostgreSQL server for the Model Context Protocol.\n\n\
        Five tools (pg_query, pg_tx, pg_schema, pg_admin, pg_monitor) over stdio or streamable HTTP. \
        Writes are denied unless a call names an open transaction (session_id) or asks for autocommit.\n\n\
        Durations are whole seconds (30) or a number with a unit (500ms, 30s, 5m, 1h); sizes are bytes \
        (1048576) or a number with a unit (256KiB, 1MiB). Unknown flags, unknown COLDQUERY_* variables and \
        malformed values stop the server with exit status 2.",
    after_help = "Try it without a database of your own: coldquery-mcp --ephemeral"
)]
pub struct Args {
    /// PostgreSQL to serve: a libpq URI (postgres://user@host/db?sslmode=verify-full) or key=value
    /// string. Without it, the libpq PG* variables (PGHOST, PGUSER, PGSSLMODE...) are used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Start a throwaway local PostgreSQL (initdb and postgres from PATH) with a small demo schema,
    /// serve it, and remove it on exit. Takes precedence over DATABASE_URL from the environment;
    /// cannot be combined with the --database-url flag.
    #[arg(long, env = "COLDQUERY_EPHEMERAL")]
    pub ephemeral: bool,

    /// How clients connect.
    #[arg(long, env = "COLDQUERY_TRANSPORT", value_enum, default_value = "stdio")]
    pub transport: Transport,

    /// Address the HTTP transport listens on. A non-loopback address needs an auth token.
    #[arg(long, env = "COLDQUERY_LISTEN", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// Format of the log lines written to stderr (the level comes from RUST_LOG, default info).
    #[arg(long, env = "COLDQUERY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Refuse every write, whatever the call asks, and open sessions as READ ONLY transactions.
    #[arg(long, env = "COLDQUERY_READ_ONLY")]
    pub read_only: bool,

    /// Maximum open sessions (transactions that live across calls).
    #[arg(long, env = "COLDQUERY_MAX_SESSIONS", value_name = "N", default_value = "10")]
    pub max_sessions: String,

    /// Idle time after which a session is rolled back (every use renews it).
    #[arg(long, env = "COLDQUERY_SESSION_TTL", value_name = "DURATION", default_value = "1800")]
    pub session_ttl: String,

    /// Connections of the shared pool for calls without a session; must be larger than
    /// --max-sessions [default: max sessions + 5].
    #[arg(long, env = "COLDQUERY_POOL_SIZE", value_name = "N")]
    pub pool_size: Option<String>,

    /// How long a call waits for a free connection before UNAVAILABLE.
    #[arg(long, env = "COLDQUERY_ACQUIRE_TIMEOUT", value_name = "DURATION", default_value = "10")]
    pub acquire_timeout: String,

    /// Default statement timeout (a call may ask for less or more with timeout_ms).
    #[arg(long, env = "COLDQUERY_STATEMENT_TIMEOUT", value_name = "DURATION", default_value = "30")]
    pub statement_timeout: String,

    /// Rows a result holds unless the call asks for another max_rows.
    #[arg(long, env = "COLDQUERY_MAX_ROWS", value_name = "N", default_value = "500")]
    pub max_rows: String,

    /// The largest max_rows a call may ask for [default: 10000, or --max-rows if larger].
    #[arg(long, env = "COLDQUERY_MAX_ROWS_LIMIT", value_name = "N")]
    pub max_rows_limit: Option<String>,

    /// Byte budget of one result; fetching stops when it is spent (the result says truncated).
    #[arg(long, env = "COLDQUERY_MAX_RESULT_BYTES", value_name = "SIZE", default_value = "1MiB")]
    pub max_result_bytes: String,

    /// Write a JSON line for every executed write and every denial to this file, or "off".
    #[arg(long, env = "COLDQUERY_AUDIT_LOG", value_name = "PATH|off", default_value = "off")]
    pub audit_log: String,

    /// Functions reads may never call, comma-separated patterns (`name`, `schema.name`, `*`
    /// matches any run), on top of the read function policy (docs/SECURITY.md).
    #[arg(long, env = "COLDQUERY_DENY_FUNCTIONS", value_name = "PATTERNS")]
    pub deny_functions: Option<String>,

    /// User-defined functions reads may call, comma-separated schema-qualified patterns
    /// (`reporting.*`, `public.total_price`); by default reads call none.
    #[arg(long, env = "COLDQUERY_ALLOW_FUNCTIONS", value_name = "PATTERNS")]
    pub allow_functions: Option<String>,

    /// Extensions whose immutable and stable functions reads may call, comma-separated, or `*`
    /// for all but those exposing server internals (default: a reviewed list — hstore, citext,
    /// pg_trgm, postgis...). dblink, postgres_fdw, adminpack, tablefunc... are never allowed.
    #[arg(long, env = "COLDQUERY_ALLOW_EXTENSIONS", value_name = "NAMES")]
    pub allow_extensions: Option<String>,

    /// Which writes run only with a confirmation token from a preview (preview: true): off,
    /// destructive (DROP, TRUNCATE, ALTER … DROP, DELETE/UPDATE without WHERE, MERGE … DELETE)
    /// or all (every pg_query and pg_schema write).
    #[arg(long, env = "COLDQUERY_CONFIRM_WRITES", value_name = "off|destructive|all", default_value = "destructive")]
    pub confirm_writes: String,

    /// How long a write (and each statement of a read-write session) may wait for a lock
    /// before it fails naming the blocking backends; 0 keeps the server's lock_timeout.
    #[arg(long, env = "COLDQUERY_LOCK_TIMEOUT", value_name = "DURATION", default_value = "5s")]
    pub lock_timeout: String,

    /// Roles a session may act as for its whole transaction (pg_tx begin with role, for
    /// row-level security), comma-separated; none by default.
    #[arg(long, env = "COLDQUERY_ALLOW_ROLES", value_name = "ROLES")]
    pub allow_roles: Option<String>,

    /// How actions are grouped into tools: combined (the five tools), or split (the reading
    /// actions as read-only tools pg_read and pg_inspect, so hosts can approve them alone).
    #[arg(long, env = "COLDQUERY_TOOL_LAYOUT", value_name = "combined|split", default_value = "combined")]
    pub tool_layout: String,

    /// An autocommit write that affects more rows than this is rolled back unless it was
    /// confirmed with a preview's token (while --confirm-writes is not off); 0: no limit.
    #[arg(long, env = "COLDQUERY_CONFIRM_ROWS", value_name = "N", default_value = "1000")]
    pub confirm_rows: String,

    /// How long a preview's confirmation token stays valid.
    #[arg(long, env = "COLDQUERY_CONFIRM_TTL", value_name = "DURATION", default_value = "5m")]
    pub confirm_ttl: String,

    /// A second PostgreSQL URL for sessionless reads, so they can run as a role that holds no
    /// rights beyond reading (sessions and writes use --database-url).
    #[arg(long, env = "COLDQUERY_READ_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub read_database_url: Option<String>,

    /// HTTP: the bearer token clients must send; its principal is named "default".
    #[arg(long, env = "COLDQUERY_AUTH_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub auth_token: Option<String>,

    /// HTTP: a file of "principal token" lines (one per client; # starts a comment).
    #[arg(long, env = "COLDQUERY_AUTH_TOKEN_FILE", value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,

    /// HTTP: allow listening on a non-loopback address without any token (never do this on a
    /// network you do not control).
    #[arg(long, env = "COLDQUERY_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// HTTP: comma-separated Host header values accepted (DNS-rebinding protection), e.g.
    /// "mcp.example.com,mcp.example.com:8443"; "*" accepts any Host (only behind a trusted proxy)
    /// [default: localhost,127.0.0.1,::1].
    #[arg(long, env = "COLDQUERY_ALLOWED_HOSTS", value_name = "HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// HTTP: comma-separated browser origins accepted besides the loopback ones, with a port or
    /// ":*", e.g. "https://app.example.com:443". Requests from any other Origin get 403.
    #[arg(long, env = "COLDQUERY_ALLOWED_ORIGINS", value_name = "ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// HTTP: the largest request body accepted (413 above it).
    #[arg(long, env = "COLDQUERY_MAX_REQUEST_BYTES", value_name = "SIZE", default_value = "4MiB")]
    pub max_request_bytes: String,
}

impl Args {
    /// Parses the command line. `--ephemeral` takes precedence over a `DATABASE_URL` that only
    /// comes from the environment (a newcomer's shell may hold one), as in the `coldquery` CLI;
    /// together with an explicit `--database-url` it is refused.
    pub fn from_command_line() -> Args {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Args::command().get_matches();
        let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
        let from_environment = matches.value_source("database_url") == Some(clap::parser::ValueSource::EnvVariable);
        if args.ephemeral && from_environment {
            args.database_url = None;
        }
        args
    }
}

/// A setting that cannot be used: the message names the flag and its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag, e.g. `--session-ttl`.
    pub setting: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl ConfigError {
    fn new(setting: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { setting: setting.to_owned(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where the database comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    /// `--database-url` / `DATABASE_URL`, else the `PG*` variables.
    Environment {
        /// The URL (holds the password when there is one: never log it).
        url: Option<String>,
    },
    /// `--ephemeral`: a throwaway local cluster.
    Ephemeral,
}

/// Which `Host` headers the HTTP transport accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Any (`--allowed-hosts '*'`).
    Any,
    /// Exactly these (host or host:port).
    Only(Vec<String>),
}

/// HTTP transport settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Bearer tokens; empty means no authentication (loopback or `--insecure-no-auth` only).
    pub tokens: Tokens,
    /// Accepted `Host` values.
    pub allowed_hosts: AllowedHosts,
    /// Accepted `Origin` values (always validated).
    pub allowed_origins: Vec<String>,
    /// Largest request body.
    pub max_request_bytes: usize,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The transport.
    pub transport: Transport,
    /// Log line format.
    pub log_format: LogFormat,
    /// The database.
    pub database: DatabaseSource,
    /// `--read-only`.
    pub read_only: bool,
    /// `--tool-layout`.
    pub tool_layout: Layout,
    /// Pool and session settings.
    pub pg: PgOptions,
    /// Tools settings.
    pub tools: ToolConfig,
    /// The audit log file, if any.
    pub audit_log: Option<PathBuf>,
    /// `--read-database-url`: where sessionless reads connect (holds a password: never log it).
    pub read_database_url: Option<String>,
    /// HTTP settings (validated for either transport, used by HTTP).
    pub http: HttpConfig,
}

fn count(setting: &str, text: &str, min: usize) -> Result<usize, ConfigError> {
    let value = text
        .trim()
        .parse::<usize>()
        .map_err(|_| ConfigError::new(setting, format!("'{}' is not a whole number", text.trim())))?;
    if value < min {
        return Err(ConfigError::new(setting, format!("must be at least {min}, got {value}")));
    }
    Ok(value)
}

fn duration(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    let value = parse_duration(text).map_err(|e| ConfigError::new(setting, e))?;
    if value.is_zero() {
        return Err(ConfigError::new(setting, "must be longer than zero"));
    }
    Ok(value)
}

fn size(setting: &str, text: &str) -> Result<usize, ConfigError> {
    let value = parse_size(text).map_err(|e| ConfigError::new(setting, e))?;
    if value == 0 {
        return Err(ConfigError::new(setting, "must be larger than zero"));
    }
    Ok(value)
}

/// The loopback origins browsers send for pages served from this machine.
fn loopback_origins() -> Vec<String> {
    ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*", "https://localhost:*", "https://127.0.0.1:*"]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn origin_is_well_formed(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
        return false;
    }
    // rmcp treats an origin without a port as "any port" (deprecated): insist on one.
    match rest.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && (port == "*" || port.parse::<u16>().is_ok()),
        None => false,
    }
}

/// Refuses `COLDQUERY_*` variables this binary does not know (a misspelt setting must not be
/// silently ignored). `vars` are the variable names of the environment.
pub fn check_unknown_variables<'a>(vars: impl IntoIterator<Item = &'a str>) -> Result<(), ConfigError> {
    match coldquery_core::settings::unknown_variable(vars) {
        Some(name) => Err(ConfigError::new(name, coldquery_core::settings::unknown_variable_message())),
        None => Ok(()),
    }
}

impl Config {
    /// Validates the parsed flags. Reads the token file, if one is named.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let max_sessions = count("--max-sessions (COLDQUERY_MAX_SESSIONS)", &args.max_sessions, 1)?;
        let session_ttl = duration("--session-ttl (COLDQUERY_SESSION_TTL)", &args.session_ttl)?;
        let pool_size = match &args.pool_size {
            None => max_sessions + 5,
            Some(text) => {
                let size = count("--pool-size (COLDQUERY_POOL_SIZE)", text, 1)?;
                if size <= max_sessions {
                    return Err(ConfigError::new(
                        "--pool-size (COLDQUERY_POOL_SIZE)",
                        format!(
                            "must be larger than --max-sessions ({max_sessions}) so that calls without a session are never starved, got {size}"
                        ),
                    ));
                }
                size
            }
        };
        let pool_size = u32::try_from(pool_size)
            .map_err(|_| ConfigError::new("--pool-size (COLDQUERY_POOL_SIZE)", "is too large"))?;
        let acquire_timeout = duration("--acquire-timeout (COLDQUERY_ACQUIRE_TIMEOUT)", &args.acquire_timeout)?;
        let statement_timeout = duration("--statement-timeout (COLDQUERY_STATEMENT_TIMEOUT)", &args.statement_timeout)?;
        let max_rows = count("--max-rows (COLDQUERY_MAX_ROWS)", &args.max_rows, 1)?;
        let max_rows_limit = match &args.max_rows_limit {
            None => max_rows.max(10_000),
            Some(text) => {
                let limit = count("--max-rows-limit (COLDQUERY_MAX_ROWS_LIMIT)", text, 1)?;
                if limit < max_rows {
                    return Err(ConfigError::new(
                        "--max-rows-limit (COLDQUERY_MAX_ROWS_LIMIT)",
                        format!("must be at least --max-rows ({max_rows}), got {limit}"),
                    ));
                }
                limit
            }
        };
        let max_result_bytes = size("--max-result-bytes (COLDQUERY_MAX_RESULT_BYTES)", &args.max_result_bytes)?;
        let max_request_bytes = size("--max-request-bytes (COLDQUERY_MAX_REQUEST_BYTES)", &args.max_request_bytes)?;
        let audit_log = match args.audit_log.trim() {
            "off" | "" => None,
            path => Some(PathBuf::from(path)),
        };

        let database = match (args.ephemeral, args.database_url) {
            (true, Some(_)) => {
                return Err(ConfigError::new(
                    "--ephemeral (COLDQUERY_EPHEMERAL)",
                    "cannot be combined with --database-url (DATABASE_URL): choose one database",
                ));
            }
            (true, None) => DatabaseSource::Ephemeral,
            (false, url) => DatabaseSource::Environment { url: url.filter(|u| !u.trim().is_empty()) },
        };

        let listen: SocketAddr = args.listen.trim().parse().map_err(|_| {
            ConfigError::new(
                "--listen (COLDQUERY_LISTEN)",
                format!("'{}' is not an address:port such as {DEFAULT_LISTEN} or [::1]:19002", args.listen.trim()),
            )
        })?;
        let tokens = Tokens::from_settings(args.auth_token.as_deref(), args.auth_token_file.as_deref())?;
        if args.transport == Transport::Http
            && !listen.ip().is_loopback()
            && tokens.is_empty()
            && !args.insecure_no_auth
        {
            return Err(ConfigError::new(
                "--listen (COLDQUERY_LISTEN)",
                format!(
                    "{listen} is not a loopback address and no token is configured: set --auth-token \
                     (COLDQUERY_AUTH_TOKEN) or --auth-token-file (COLDQUERY_AUTH_TOKEN_FILE), or pass \
                     --insecure-no-auth (COLDQUERY_INSECURE_NO_AUTH) to serve anyone who can reach it"
                ),
            ));
        }
        let hosts: Vec<String> =
            args.allowed_hosts.iter().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect();
        let allowed_hosts = if hosts.is_empty() {
            AllowedHosts::Only(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])
        } else if hosts.iter().any(|h| h == "*") {
            if hosts.len() > 1 {
                return Err(ConfigError::new(
                    "--allowed-hosts (COLDQUERY_ALLOWED_HOSTS)",
                    "'*' accepts any Host and cannot be combined with other hosts",
                ));
            }
            AllowedHosts::Any
        } else {
            if let Some(bad) = hosts.iter().find(|h| h.contains('/') || h.contains(char::is_whitespace)) {
                return Err(ConfigError::new(
                    "--allowed-hosts (COLDQUERY_ALLOWED_HOSTS)",
                    format!("'{bad}' is not a host name or host:port"),
                ));
            }
            AllowedHosts::Only(hosts)
        };
        let mut allowed_origins = loopback_origins();
        for origin in args.allowed_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            if !origin_is_well_formed(origin) {
                return Err(ConfigError::new(
                    "--allowed-origins (COLDQUERY_ALLOWED_ORIGINS)",
                    format!("'{origin}' is not an origin such as https://app.example.com:443 or http://localhost:*"),
                ));
            }
            allowed_origins.push(origin.to_owned());
        }

        let confirm_writes = ConfirmWrites::parse(&args.confirm_writes).ok_or_else(|| {
            ConfigError::new(
                "--confirm-writes (COLDQUERY_CONFIRM_WRITES)",
                format!("'{}' is not one of {}", args.confirm_writes, ConfirmWrites::CHOICES),
            )
        })?;
        let confirm_ttl = duration("--confirm-ttl (COLDQUERY_CONFIRM_TTL)", &args.confirm_ttl)?;
        let confirm_rows = count("--confirm-rows (COLDQUERY_CONFIRM_ROWS)", &args.confirm_rows, 0)?;
        let confirm_rows = (confirm_rows > 0).then_some(confirm_rows as u64);
        let tool_layout = Layout::parse(&args.tool_layout).ok_or_else(|| {
            ConfigError::new(
                "--tool-layout (COLDQUERY_TOOL_LAYOUT)",
                format!("'{}' is not one of {}", args.tool_layout, Layout::CHOICES),
            )
        })?;
        let lock_timeout = parse_duration(&args.lock_timeout)
            .map_err(|e| ConfigError::new("--lock-timeout (COLDQUERY_LOCK_TIMEOUT)", e))?;
        let lock_timeout = (!lock_timeout.is_zero()).then_some(lock_timeout);
        let mut tools = ToolConfig {
            max_rows,
            max_rows_limit,
            max_result_bytes,
            statement_timeout,
            confirm_writes,
            confirm_ttl,
            lock_timeout,
            confirm_rows,
            allowed_roles: args
                .allow_roles
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            ..ToolConfig::default()
        };
        if let Some(list) = &args.deny_functions {
            tools
                .deny_functions(list)
                .map_err(|e| ConfigError::new("--deny-functions (COLDQUERY_DENY_FUNCTIONS)", e))?;
        }
        if let Some(list) = &args.allow_functions {
            tools
                .functions
                .allow_functions(list)
                .map_err(|e| ConfigError::new("--allow-functions (COLDQUERY_ALLOW_FUNCTIONS)", e))?;
        }
        if let Some(list) = &args.allow_extensions {
            tools
                .functions
                .allow_extensions(list)
                .map_err(|e| ConfigError::new("--allow-extensions (COLDQUERY_ALLOW_EXTENSIONS)", e))?;
        }
        let read_database_url = args.read_database_url.filter(|u| !u.trim().is_empty());
        let pg = PgOptions {
            max_sessions,
            session_ttl,
            pool_size,
            acquire_timeout,
            application_name: "coldquery".into(),
            // Like PgBouncer: start, answer /health, report /ready 503 until the database is up.
            start_while_down: true,
            ..PgOptions::default()
        };
        Ok(Config {
            transport: args.transport,
            log_format: args.log_format,
            database,
            read_only: args.read_only,
            tool_layout,
            pg,
            tools,
            audit_log,
            read_database_url,
            http: HttpConfig { listen, tokens, allowed_hosts, allowed_origins, max_request_bytes },
        })
    }

    /// The effective configuration without secrets, for the start-up log line.
    pub fn summary(&self) -> serde_json::Value {
        let database = match &self.database {
            DatabaseSource::Ephemeral => "ephemeral".to_owned(),
            DatabaseSource::Environment { url: Some(_) } => "DATABASE_URL".to_owned(),
            DatabaseSource::Environment { url: None } => "PG* variables".to_owned(),
        };
        let mut summary = serde_json::json!({
            "transport": match self.transport { Transport::Stdio => "stdio", Transport::Http => "http" },
            "database": database,
            "read_only": self.read_only,
            "tool_layout": match self.tool_layout { Layout::Combined => "combined", Layout::Split => "split" },
            "max_sessions": self.pg.max_sessions,
            "session_ttl_s": self.pg.session_ttl.as_secs_f64(),
            "pool_size": self.pg.pool_size,
            "acquire_timeout_s": self.pg.acquire_timeout.as_secs_f64(),
            "statement_timeout_s": self.tools.statement_timeout.as_secs_f64(),
            "max_rows": self.tools.max_rows,
            "max_rows_limit": self.tools.max_rows_limit,
            "max_result_bytes": self.tools.max_result_bytes,
            "confirm_writes": self.tools.confirm_writes.as_str(),
            "confirm_ttl_s": self.tools.confirm_ttl.as_secs_f64(),
            "confirm_rows": self.tools.confirm_rows,
            "lock_timeout_s": self.tools.lock_timeout.map(|t| t.as_secs_f64()),
            "audit_log": self.audit_log.as_ref().map_or_else(|| "off".to_owned(), |p| p.display().to_string()),
        });
        if self.transport == Transport::Http {
            summary["listen"] = self.http.listen.to_string().into();
            summary["auth"] = if self.http.tokens.is_empty() {
                "none".into()
            } else {
                format!("bearer tokens for {}", self.http.tokens.principals().join(", ")).into()
            };
            summary["allowed_hosts"] = match &self.http.allowed_hosts {
                AllowedHosts::Any => "*".into(),
                AllowedHosts::Only(hosts) => hosts.join(",").into(),
            };
            summary["allowed_origins"] = self.http.allowed_origins.join(",").into();
            summary["max_request_bytes"] = self.http.max_request_bytes.into();
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["coldquery-mcp"];
        argv.extend_from_slice(args);
        Config::from_args(Args::try_parse_from(argv).expect("flags parse"))
    }

    /// A flag added with an environment variable is known to the shared vocabulary, so that
    /// setting it through the environment is not refused as a misspelling.
    #[test]
    fn every_environment_variable_is_in_the_shared_vocabulary() {
        use clap::CommandFactory;
        let command = Args::command();
        let names: Vec<String> =
            command.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
        assert!(names.len() > 20, "{names:?}");
        for name in names.iter().filter(|n| n.starts_with("COLDQUERY_")) {
            assert!(
                coldquery_core::settings::VARIABLES.contains(&name.as_str()),
                "{name} is missing from settings::VARIABLES"
            );
        }
    }

    fn setting_of(args: &[&str]) -> String {
        parse(args).expect_err("configuration is refused").setting
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.transport, Transport::Stdio);
        assert_eq!(config.pg.max_sessions, 10);
        assert_eq!(config.pg.pool_size, 15);
        assert_eq!(config.pg.session_ttl, Duration::from_secs(1800));
        assert_eq!(config.pg.acquire_timeout, Duration::from_secs(10));
        assert_eq!(config.tools.statement_timeout, Duration::from_secs(30));
        assert_eq!(config.tools.max_rows, 500);
        assert_eq!(config.tools.max_rows_limit, 10_000);
        assert_eq!(config.tools.max_result_bytes, 1 << 20);
        assert_eq!(config.http.listen.to_string(), DEFAULT_LISTEN);
        assert!(config.http.tokens.is_empty());
        assert!(config.audit_log.is_none());
        assert!(!config.read_only);
    }

    #[test]
    fn units_and_derived_defaults() {
        let config = parse(&[
            "--session-ttl",
            "5m",
            "--statement-timeout",
            "500ms",
            "--max-result-bytes",
            "256KiB",
            "--max-sessions",
            "3",
            "--max-rows",
            "20000",
        ])
        .unwrap();
        assert_eq!(config.pg.session_ttl, Duration::from_secs(300));
        assert_eq!(config.tools.statement_timeout, Duration::from_millis(500));
        assert_eq!(config.tools.max_result_bytes, 262_144);
        assert_eq!(config.pg.pool_size, 8);
        assert_eq!(config.tools.max_rows_limit, 20_000);
    }

    #[test]
    fn malformed_values_name_their_setting() {
        assert!(setting_of(&["--session-ttl", "10 days"]).contains("COLDQUERY_SESSION_TTL"));
        assert!(setting_of(&["--statement-timeout", "0"]).contains("--statement-timeout"));
        assert!(setting_of(&["--max-sessions", "0"]).contains("COLDQUERY_MAX_SESSIONS"));
        assert!(setting_of(&["--max-rows", "many"]).contains("--max-rows"));
        assert!(setting_of(&["--max-result-bytes", "1TB"]).contains("COLDQUERY_MAX_RESULT_BYTES"));
        assert!(setting_of(&["--pool-size", "10"]).contains("COLDQUERY_POOL_SIZE"));
        assert!(setting_of(&["--max-rows", "600", "--max-rows-limit", "500"]).contains("MAX_ROWS_LIMIT"));
        assert!(setting_of(&["--listen", "localhost"]).contains("--listen"));
        assert!(setting_of(&["--allowed-origins", "https://example.com"]).contains("ALLOWED_ORIGINS"));
        assert!(setting_of(&["--allowed-hosts", "*,example.com"]).contains("ALLOWED_HOSTS"));
        assert!(setting_of(&["--ephemeral", "--database-url", "postgres://x"]).contains("--ephemeral"));
        assert!(setting_of(&["--auth-token", ""]).contains("--auth-token"));
    }

    #[test]
    fn non_loopback_http_without_a_token_is_refused() {
        let err = parse(&["--transport", "http", "--listen", "0.0.0.0:19002"]).unwrap_err();
        assert!(err.message.contains("--auth-token") && err.message.contains("COLDQUERY_AUTH_TOKEN_FILE"), "{err}");
        assert!(parse(&["--transport", "http", "--listen", "0.0.0.0:19002", "--insecure-no-auth"]).is_ok());
        let with_token =
            parse(&["--transport", "http", "--listen", "0.0.0.0:19002", "--auth-token", "a-long-secret-token"])
                .unwrap();
        assert_eq!(with_token.http.tokens.principals(), vec!["default"]);
        let summary = with_token.summary().to_string();
        assert!(!summary.contains("a-long-secret-token"), "{summary}");
        assert!(parse(&["--transport", "http", "--listen", "[::1]:19002"]).is_ok());
    }

    #[test]
    fn unknown_variables_are_refused() {
        assert!(check_unknown_variables(["PATH", "COLDQUERY_READ_ONLY", "COLDQUERY_TEST_DATABASE_URL"]).is_ok());
        let err = check_unknown_variables(["COLDQUERY_READONLY"]).unwrap_err();
        assert_eq!(err.setting, "COLDQUERY_READONLY");
    }

    #[test]
    fn unknown_flags_are_refused_by_the_parser() {
        let err = Args::try_parse_from(["coldquery-mcp", "--read-onyl"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Args::try_parse_from(["coldquery-mcp", "--transport", "carrier-pigeon"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
