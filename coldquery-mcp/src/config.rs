//! The server's configuration (SPEC §5): its own flags — transport, HTTP, tool layout — next
//! to the settings it shares with the CLI ([`coldquery_config::Settings`], flattened), each
//! with an environment variable, parsed into a validated [`Config`]. It fails closed: an
//! unknown `COLDQUERY_*` variable, a malformed value or a combination that cannot be served is
//! a [`ConfigError`] naming the setting, and the binary exits with status 2.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use coldquery_config::{Options, Profile, Settings};
use coldquery_tools::{ConfirmWrites, Layout};

use crate::auth::Tokens;

pub use coldquery_config::ConfigError;

/// The default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:19002";

/// Every `COLDQUERY_*` variable the binaries read (shared with the CLI).
pub use coldquery_config::variables::VARIABLES as KNOWN_VARIABLES;

/// The server's defaults where they differ from the library's: it confirms destructive writes
/// and writes that affect more than 1000 rows, and starts while the database is down.
pub const PROFILE: Profile = Profile {
    application_name: "coldquery",
    start_while_down: true,
    confirm_writes: ConfirmWrites::Destructive,
    confirm_rows: Some(1000),
};

/// How clients reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Transport {
    /// MCP over standard input and output: one client, the process that started this one.
    #[default]
    Stdio,
    /// MCP streamable HTTP at `/mcp`, plus `/health`, `/ready` and `/metrics`.
    Http,
}

/// How log lines on stderr are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
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
    /// How clients connect.
    #[arg(long, env = "COLDQUERY_TRANSPORT", value_enum, default_value_t)]
    pub transport: Transport,

    /// Address the HTTP transport listens on. A non-loopback address needs an auth token.
    #[arg(long, env = "COLDQUERY_LISTEN", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    /// Format of the log lines written to stderr (the level comes from RUST_LOG, default info).
    #[arg(long, env = "COLDQUERY_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,

    /// The settings shared with the `coldquery` CLI: database, limits, policy, audit.
    #[command(flatten)]
    pub settings: Settings,

    /// How actions are grouped into tools: combined (the five tools), or split (the reading
    /// actions as read-only tools pg_read and pg_inspect, so hosts can approve them alone).
    #[arg(long, env = "COLDQUERY_TOOL_LAYOUT", value_name = "combined|split",
          default_value = layout_name(Layout::default()))]
    pub tool_layout: String,

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
    /// Parses `argv` with the server's defaults; `--ephemeral` takes precedence over a
    /// `DATABASE_URL` that only comes from the environment, as in the `coldquery` CLI.
    pub fn try_parse_args<I, A>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = A>,
        A: Into<std::ffi::OsString> + Clone,
    {
        coldquery_config::try_parse_from(&PROFILE, argv, |args: &mut Args| &mut args.settings)
    }

    /// Parses the process's command line, exiting with status 2 (0 for `--help`) when it
    /// cannot be parsed.
    pub fn from_command_line() -> Args {
        Args::try_parse_args(std::env::args_os()).unwrap_or_else(|error| error.exit())
    }
}

/// The name of a tool layout, as `--tool-layout` spells it.
const fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Combined => "combined",
        Layout::Split => "split",
    }
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
    /// `--tool-layout`.
    pub tool_layout: Layout,
    /// The settings shared with the CLI: database, pool and sessions, tools, policy, audit.
    pub options: Options,
    /// HTTP settings (validated for either transport, used by HTTP).
    pub http: HttpConfig,
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

impl Config {
    /// Validates the parsed flags. Reads the token file, if one is named.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let options = args.settings.resolve(&PROFILE)?;
        let max_request_bytes =
            coldquery_config::size("--max-request-bytes (COLDQUERY_MAX_REQUEST_BYTES)", &args.max_request_bytes)?;
        let tool_layout = Layout::parse(&args.tool_layout).ok_or_else(|| {
            ConfigError::new(
                "--tool-layout (COLDQUERY_TOOL_LAYOUT)",
                format!("'{}' is not one of {}", args.tool_layout, Layout::CHOICES),
            )
        })?;
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

        Ok(Config {
            transport: args.transport,
            log_format: args.log_format,
            tool_layout,
            options,
            http: HttpConfig { listen, tokens, allowed_hosts, allowed_origins, max_request_bytes },
        })
    }

    /// The effective configuration without secrets, for the start-up log line.
    pub fn summary(&self) -> serde_json::Value {
        let mut summary = self.options.summary();
        summary["transport"] = match self.transport {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        }
        .into();
        summary["tool_layout"] = layout_name(self.tool_layout).into();
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
        Config::from_args(Args::try_parse_args(argv).expect("flags parse"))
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
            assert!(KNOWN_VARIABLES.contains(&name.as_str()), "{name} is missing from variables::VARIABLES");
        }
        // And the other way round: the server reads every variable of the vocabulary (the CLI
        // reads a subset), so the list names no setting that no binary has.
        for name in KNOWN_VARIABLES {
            assert!(names.iter().any(|n| n == name), "{name} is in variables::VARIABLES but no flag reads it");
        }
    }

    fn setting_of(args: &[&str]) -> String {
        parse(args).expect_err("configuration is refused").setting
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = parse(&[]).unwrap();
        // The shared settings' defaults are coldquery-config's (its tests hold them to SPEC §5).
        assert_eq!(config.transport, Transport::Stdio);
        assert_eq!(config.http.listen.to_string(), DEFAULT_LISTEN);
        assert!(config.http.tokens.is_empty());
        // The server's own defaults (PROFILE), unlike the library's and the CLI's.
        assert_eq!(config.options.tools.confirm_writes, ConfirmWrites::Destructive);
        assert_eq!(config.options.tools.confirm_rows, Some(1000));
        assert_eq!(config.options.pg.application_name, "coldquery");
        assert!(config.options.pg.start_while_down);
        assert_eq!(config.tool_layout, Layout::Combined);
    }

    #[test]
    fn malformed_values_name_their_setting() {
        // The shared settings' own (coldquery-config's tests); this one reaches the server.
        assert!(setting_of(&["--session-ttl", "10 days"]).contains("COLDQUERY_SESSION_TTL"));
        assert!(setting_of(&["--listen", "localhost"]).contains("--listen"));
        assert!(setting_of(&["--allowed-origins", "https://example.com"]).contains("ALLOWED_ORIGINS"));
        assert!(setting_of(&["--allowed-hosts", "*,example.com"]).contains("ALLOWED_HOSTS"));
        assert!(setting_of(&["--auth-token", ""]).contains("--auth-token"));
        assert!(setting_of(&["--tool-layout", "stacked"]).contains("COLDQUERY_TOOL_LAYOUT"));
        assert!(setting_of(&["--max-request-bytes", "0"]).contains("COLDQUERY_MAX_REQUEST_BYTES"));
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
    fn unknown_flags_are_refused_by_the_parser() {
        let err = Args::try_parse_args(["coldquery-mcp", "--read-onyl"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Args::try_parse_args(["coldquery-mcp", "--transport", "carrier-pigeon"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
