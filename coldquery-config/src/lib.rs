//! ColdQuery's configuration (SPEC §5), one for both binaries: the settings `coldquery-mcp` and
//! the `coldquery` CLI share, each a flag with an environment variable ([`Settings`], which
//! both flatten into their command line with `#[command(flatten)]`), resolved in one place
//! ([`Settings::resolve`]) into the typed options the layers take ([`Options`]: `PgOptions`,
//! `ToolConfig`, the reads' `PgConfig`...).
//!
//! It fails closed: a malformed value, a combination that cannot be served or an unknown
//! `COLDQUERY_*` variable ([`variables`]) is a [`ConfigError`] naming the flag and its variable,
//! and the binaries exit with status 2.
//!
//! Defaults live in the `Default` impls of the layers' options (`PgOptions`, `ToolConfig`) and
//! are shown by `--help` from there; the few a binary sets otherwise (the server confirms
//! destructive writes, the library and CLI do not) are its [`Profile`], declared once in it.
//!
//! Durations and sizes are read as strings and converted with [`coldquery_core::units`], so the
//! error can name both the flag and its variable.

pub mod variables;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command, Parser};
use coldquery_core::DefaultDeny;
use coldquery_core::units::{parse_duration, parse_size};
use coldquery_pg::{Database, PgConfig, PgOptions};
use coldquery_tools::{AuditSink, ConfirmWrites, JsonLinesAudit, ToolConfig, Tools};

/// The settings both binaries share. Every flag has an environment variable; the flag wins.
///
/// Values are kept as text until [`Settings::resolve`], so that an error names the setting.
/// The field docs are the `--help` text, so they hold example URLs as plain text.
#[allow(rustdoc::bare_urls)]
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// PostgreSQL to use: a libpq URI (postgres://user@host/db?sslmode=verify-full) or key=value
    /// string. Without it, the libpq PG* variables (PGHOST, PGUSER, PGSSLMODE...) are used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Start a throwaway local PostgreSQL (initdb and postgres from PATH) with a small demo schema,
    /// use it, and remove it on exit. Takes precedence over DATABASE_URL from the environment;
    /// cannot be combined with the --database-url flag.
    #[arg(long, env = "COLDQUERY_EPHEMERAL")]
    pub ephemeral: bool,

    /// Set by [`try_parse_from`] when `database_url` came from the `DATABASE_URL` variable, not
    /// the flag: `--ephemeral` then takes precedence instead of being refused.
    #[arg(skip)]
    database_url_from_environment: bool,

    /// A second PostgreSQL URL for sessionless reads, so they can run as a role that holds no
    /// rights beyond reading (sessions and writes use --database-url).
    #[arg(long, env = "COLDQUERY_READ_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub read_database_url: Option<String>,

    /// Refuse every write, whatever the call asks, and open sessions as READ ONLY transactions
    /// (--read-only=false or COLDQUERY_READ_ONLY=false to say no explicitly).
    #[arg(
        long,
        env = "COLDQUERY_READ_ONLY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub read_only: Option<String>,

    /// Maximum open sessions (transactions that live across calls).
    #[arg(long, env = "COLDQUERY_MAX_SESSIONS", value_name = "N",
          default_value_t = PgOptions::default().max_sessions.to_string())]
    pub max_sessions: String,

    /// Idle time after which a session is rolled back (every use renews it).
    #[arg(long, env = "COLDQUERY_SESSION_TTL", value_name = "DURATION",
          default_value_t = show_duration(PgOptions::default().session_ttl))]
    pub session_ttl: String,

    /// Connections of the shared pool for calls without a session; must be larger than
    /// --max-sessions [default: max sessions + 5].
    #[arg(long, env = "COLDQUERY_POOL_SIZE", value_name = "N")]
    pub pool_size: Option<String>,

    /// How long a call waits for a free connection before UNAVAILABLE.
    #[arg(long, env = "COLDQUERY_ACQUIRE_TIMEOUT", value_name = "DURATION",
          default_value_t = show_duration(PgOptions::default().acquire_timeout))]
    pub acquire_timeout: String,

    /// Default statement timeout (a call may ask for less or more with timeout_ms).
    #[arg(long, env = "COLDQUERY_STATEMENT_TIMEOUT", value_name = "DURATION",
          default_value_t = show_duration(ToolConfig::default().statement_timeout))]
    pub statement_timeout: String,

    /// How long a write (and each statement of a read-write session) may wait for a lock
    /// before it fails naming the blocking backends; 0 keeps the server's lock_timeout.
    #[arg(long, env = "COLDQUERY_LOCK_TIMEOUT", value_name = "DURATION",
          default_value_t = ToolConfig::default().lock_timeout.map_or_else(|| "0".to_owned(), show_duration))]
    pub lock_timeout: String,

    /// Rows a result holds unless the call asks for another max_rows.
    #[arg(long, env = "COLDQUERY_MAX_ROWS", value_name = "N",
          default_value_t = ToolConfig::default().max_rows.to_string())]
    pub max_rows: String,

    /// The largest max_rows a call may ask for [default: 10000, or --max-rows if larger].
    #[arg(long, env = "COLDQUERY_MAX_ROWS_LIMIT", value_name = "N")]
    pub max_rows_limit: Option<String>,

    /// Byte budget of one result; fetching stops when it is spent (the result says truncated).
    #[arg(long, env = "COLDQUERY_MAX_RESULT_BYTES", value_name = "SIZE",
          default_value_t = show_size(ToolConfig::default().max_result_bytes))]
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

    /// Roles a session may act as for its whole transaction (pg_tx begin with role, for
    /// row-level security), comma-separated; none by default.
    #[arg(long, env = "COLDQUERY_ALLOW_ROLES", value_name = "ROLES")]
    pub allow_roles: Option<String>,

    /// Which writes run only with a confirmation token from a preview (preview: true): off,
    /// destructive (DROP, TRUNCATE, ALTER … DROP, DELETE/UPDATE without WHERE, MERGE … DELETE)
    /// or all (every pg_query and pg_schema write).
    #[arg(long, env = "COLDQUERY_CONFIRM_WRITES", value_name = "off|destructive|all")]
    pub confirm_writes: Option<String>,

    /// An autocommit write that affects more rows than this is rolled back unless it was
    /// confirmed with a preview's token (while --confirm-writes is not off); 0: no limit.
    #[arg(long, env = "COLDQUERY_CONFIRM_ROWS", value_name = "N")]
    pub confirm_rows: Option<String>,

    /// How long a preview's confirmation token stays valid.
    #[arg(long, env = "COLDQUERY_CONFIRM_TTL", value_name = "DURATION",
          default_value_t = show_duration(ToolConfig::default().confirm_ttl))]
    pub confirm_ttl: String,
}

/// The defaults one binary sets otherwise than the library: declared once, in that binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// `application_name` of every connection.
    pub application_name: &'static str,
    /// Start while the database is down (the server: `/ready` says 503 until it is up).
    pub start_while_down: bool,
    /// `--confirm-writes` when not given.
    pub confirm_writes: ConfirmWrites,
    /// `--confirm-rows` when not given (`None`: no limit).
    pub confirm_rows: Option<u64>,
}

impl Profile {
    /// `command` with this profile's defaults shown (and used) by `--confirm-writes` and
    /// `--confirm-rows`.
    pub fn show_defaults(&self, command: Command) -> Command {
        // Without clap's `string` feature a default is a `&'static str`; a command line is built
        // once per process, so this leaks a few bytes once.
        let confirm_rows: &'static str = Box::leak(self.confirm_rows.unwrap_or(0).to_string().into_boxed_str());
        command
            .mut_arg("confirm_writes", |arg| arg.default_value(self.confirm_writes.as_str()))
            .mut_arg("confirm_rows", |arg| arg.default_value(confirm_rows))
    }
}

/// Parses a command line that flattens [`Settings`] (reached through `settings`), with
/// `profile`'s defaults. `--ephemeral` takes precedence over a `DATABASE_URL` that only comes
/// from the environment (a newcomer's shell may hold one); with the `--database-url` flag it
/// is refused by [`Settings::resolve`].
pub fn try_parse_from<T, I, A>(
    profile: &Profile,
    argv: I,
    settings: impl FnOnce(&mut T) -> &mut Settings,
) -> Result<T, clap::Error>
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let mut command = profile.show_defaults(T::command());
    let matches: ArgMatches = command.try_get_matches_from_mut(argv)?;
    let mut parsed = T::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    settings(&mut parsed).database_url_from_environment =
        matches.value_source("database_url") == Some(ValueSource::EnvVariable);
    Ok(parsed)
}

/// A setting that cannot be used: the message names the flag and its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag and its variable, e.g. `--session-ttl (COLDQUERY_SESSION_TTL)`.
    pub setting: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(setting: &str, message: impl Into<String>) -> ConfigError {
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
    /// `--database-url` / `DATABASE_URL`, else the `PG*` variables (`None`). The URL holds the
    /// password when there is one: never log it.
    Url(Option<String>),
    /// `--ephemeral`: a throwaway local cluster.
    Ephemeral,
}

/// The shared settings, checked and typed.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database.
    pub database: DatabaseSource,
    /// `--read-database-url`: where sessionless reads connect.
    pub reads: Option<PgConfig>,
    /// `--read-only`: the Default-Deny policy's server-wide switch.
    pub read_only: bool,
    /// Pool and session settings.
    pub pg: PgOptions,
    /// The tools' settings.
    pub tools: ToolConfig,
    /// The audit log file, if any.
    pub audit_log: Option<PathBuf>,
}

const MAX_SESSIONS: &str = "--max-sessions (COLDQUERY_MAX_SESSIONS)";
const POOL_SIZE: &str = "--pool-size (COLDQUERY_POOL_SIZE)";
const MAX_ROWS: &str = "--max-rows (COLDQUERY_MAX_ROWS)";
const MAX_ROWS_LIMIT: &str = "--max-rows-limit (COLDQUERY_MAX_ROWS_LIMIT)";
const CONFIRM_WRITES: &str = "--confirm-writes (COLDQUERY_CONFIRM_WRITES)";
const AUDIT_LOG: &str = "--audit-log (COLDQUERY_AUDIT_LOG)";

impl Settings {
    /// Checks every setting and converts it into the layers' options, with `profile`'s
    /// defaults where the binary differs from the library.
    pub fn resolve(&self, profile: &Profile) -> Result<Options, ConfigError> {
        let pg_defaults = PgOptions::default();
        let tool_defaults = ToolConfig::default();

        let max_sessions = count(MAX_SESSIONS, &self.max_sessions, 1)?;
        // The shared pool is larger than the session limit, so calls without a session are
        // never starved.
        // Unless given, it keeps the default's margin over the default session limit (5).
        let margin = (pg_defaults.pool_size as usize).saturating_sub(pg_defaults.max_sessions);
        let pool_size = match &self.pool_size {
            None => max_sessions + margin,
            Some(text) => {
                let size = count(POOL_SIZE, text, 1)?;
                if size <= max_sessions {
                    return Err(ConfigError::new(
                        POOL_SIZE,
                        format!(
                            "must be larger than --max-sessions ({max_sessions}) so that calls without a session are never starved, got {size}"
                        ),
                    ));
                }
                size
            }
        };
        let pool_size = u32::try_from(pool_size).map_err(|_| ConfigError::new(POOL_SIZE, "is too large"))?;
        let pg = PgOptions {
            max_sessions,
            session_ttl: duration("--session-ttl (COLDQUERY_SESSION_TTL)", &self.session_ttl)?,
            pool_size,
            acquire_timeout: duration("--acquire-timeout (COLDQUERY_ACQUIRE_TIMEOUT)", &self.acquire_timeout)?,
            application_name: profile.application_name.to_owned(),
            start_while_down: profile.start_while_down,
            ..pg_defaults
        };

        let max_rows = count(MAX_ROWS, &self.max_rows, 1)?;
        let max_rows_limit = match &self.max_rows_limit {
            None => tool_defaults.max_rows_limit.max(max_rows),
            Some(text) => {
                let limit = count(MAX_ROWS_LIMIT, text, 1)?;
                if limit < max_rows {
                    return Err(ConfigError::new(
                        MAX_ROWS_LIMIT,
                        format!("must be at least --max-rows ({max_rows}), got {limit}"),
                    ));
                }
                limit
            }
        };
        let confirm_writes = match &self.confirm_writes {
            None => profile.confirm_writes,
            Some(text) => ConfirmWrites::parse(text).ok_or_else(|| {
                ConfigError::new(CONFIRM_WRITES, format!("'{}' is not one of {}", text.trim(), ConfirmWrites::CHOICES))
            })?,
        };
        let confirm_rows = match &self.confirm_rows {
            None => profile.confirm_rows,
            Some(text) => Some(count("--confirm-rows (COLDQUERY_CONFIRM_ROWS)", text, 0)? as u64).filter(|&n| n > 0),
        };
        let lock_timeout = parse_duration(&self.lock_timeout)
            .map_err(|e| ConfigError::new("--lock-timeout (COLDQUERY_LOCK_TIMEOUT)", e))?;
        let mut tools = ToolConfig {
            max_rows,
            max_rows_limit,
            max_result_bytes: size("--max-result-bytes (COLDQUERY_MAX_RESULT_BYTES)", &self.max_result_bytes)?,
            statement_timeout: duration("--statement-timeout (COLDQUERY_STATEMENT_TIMEOUT)", &self.statement_timeout)?,
            confirm_writes,
            confirm_ttl: duration("--confirm-ttl (COLDQUERY_CONFIRM_TTL)", &self.confirm_ttl)?,
            lock_timeout: (!lock_timeout.is_zero()).then_some(lock_timeout),
            confirm_rows,
            allowed_roles: list(self.allow_roles.as_deref()),
            ..tool_defaults
        };
        if let Some(list) = &self.deny_functions {
            tools
                .deny_functions(list)
                .map_err(|e| ConfigError::new("--deny-functions (COLDQUERY_DENY_FUNCTIONS)", e))?;
        }
        if let Some(list) = &self.allow_functions {
            tools
                .functions
                .allow_functions(list)
                .map_err(|e| ConfigError::new("--allow-functions (COLDQUERY_ALLOW_FUNCTIONS)", e))?;
        }
        if let Some(list) = &self.allow_extensions {
            tools
                .functions
                .allow_extensions(list)
                .map_err(|e| ConfigError::new("--allow-extensions (COLDQUERY_ALLOW_EXTENSIONS)", e))?;
        }

        let read_only = match self.read_only.as_deref() {
            None => false,
            Some(text) => boolean(text)
                .ok_or_else(|| ConfigError::new("--read-only (COLDQUERY_READ_ONLY)", "must be true or false"))?,
        };
        let audit_log = match self.audit_log.trim() {
            "off" | "" => None,
            path => Some(PathBuf::from(path)),
        };
        let url = self.database_url.clone().filter(|url| !url.trim().is_empty());
        let database = match (self.ephemeral, url) {
            (true, Some(_)) if !self.database_url_from_environment => {
                return Err(ConfigError::new(
                    "--ephemeral (COLDQUERY_EPHEMERAL)",
                    "cannot be combined with --database-url: choose one database",
                ));
            }
            (true, _) => DatabaseSource::Ephemeral,
            (false, url) => DatabaseSource::Url(url),
        };
        let reads =
            match self.read_database_url.as_deref().filter(|url| !url.trim().is_empty()) {
                None => None,
                Some(url) => Some(PgConfig::from_env_and_url(Some(url), &|_| None).map_err(|e| {
                    ConfigError::new("--read-database-url (COLDQUERY_READ_DATABASE_URL)", e.to_string())
                })?),
            };
        Ok(Options { database, reads, read_only, pg, tools, audit_log })
    }
}

impl Options {
    /// The audit log, opened for appending (before anything connects, so that a path that
    /// cannot be written is a configuration error).
    pub fn open_audit(&self) -> Result<Option<Arc<dyn AuditSink>>, ConfigError> {
        let Some(path) = &self.audit_log else { return Ok(None) };
        let sink = JsonLinesAudit::open(path)
            .map_err(|e| ConfigError::new(AUDIT_LOG, format!("cannot open {} for appending: {e}", path.display())))?;
        Ok(Some(Arc::new(sink)))
    }

    /// The tools over `database`: the Default-Deny policy with `--read-only`, the tools'
    /// settings, and the audit log from [`Options::open_audit`].
    pub fn tools(&self, database: &Database, audit: Option<Arc<dyn AuditSink>>) -> Tools {
        let policy = Arc::new(DefaultDeny { read_only: self.read_only });
        let tools = Tools::new(database.executor.clone(), database.sessions.clone(), policy, self.tools.clone());
        match audit {
            Some(sink) => tools.with_audit(sink),
            None => tools,
        }
    }

    /// The effective settings without secrets, for a start-up log line.
    pub fn summary(&self) -> serde_json::Value {
        let database = match &self.database {
            DatabaseSource::Ephemeral => "ephemeral",
            DatabaseSource::Url(Some(_)) => "DATABASE_URL",
            DatabaseSource::Url(None) => "PG* variables",
        };
        serde_json::json!({
            "database": database,
            "read_only": self.read_only,
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
        })
    }
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

/// A size setting (`1MiB`, `1048576`) larger than zero; the error names `setting`. For a
/// binary's own size flags too.
pub fn size(setting: &str, text: &str) -> Result<usize, ConfigError> {
    let value = parse_size(text).map_err(|e| ConfigError::new(setting, e))?;
    if value == 0 {
        return Err(ConfigError::new(setting, "must be larger than zero"));
    }
    Ok(value)
}

fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn list(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// A default duration as `--help` shows it, in the largest unit that divides it.
fn show_duration(value: Duration) -> String {
    let millis = value.as_millis();
    match millis {
        m if m % 3_600_000 == 0 && m > 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 && m > 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}

/// A default size as `--help` shows it, in the largest binary unit that divides it.
fn show_size(bytes: usize) -> String {
    match bytes {
        b if b % (1 << 30) == 0 && b > 0 => format!("{}GiB", b >> 30),
        b if b % (1 << 20) == 0 && b > 0 => format!("{}MiB", b >> 20),
        b if b % (1 << 10) == 0 && b > 0 => format!("{}KiB", b >> 10),
        b => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBRARY: Profile = Profile {
        application_name: "test",
        start_while_down: false,
        confirm_writes: ConfirmWrites::Off,
        confirm_rows: None,
    };

    #[derive(Debug, Parser)]
    struct Line {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> Result<Options, ConfigError> {
        parse_with(&LIBRARY, args)
    }

    fn parse_with(profile: &Profile, args: &[&str]) -> Result<Options, ConfigError> {
        let argv = std::iter::once("test").chain(args.iter().copied());
        let line: Line = try_parse_from(profile, argv, |l: &mut Line| &mut l.settings).expect("flags parse");
        line.settings.resolve(profile)
    }

    fn setting_of(args: &[&str]) -> String {
        parse(args).expect_err("configuration is refused").setting
    }

    #[test]
    fn defaults_are_the_layers_defaults() {
        let options = parse(&[]).unwrap();
        let (pg, tools) = (PgOptions::default(), ToolConfig::default());
        assert_eq!(options.database, DatabaseSource::Url(None));
        assert_eq!(options.pg.max_sessions, pg.max_sessions);
        assert_eq!(options.pg.pool_size, pg.pool_size);
        assert_eq!(options.pg.session_ttl, pg.session_ttl);
        assert_eq!(options.pg.acquire_timeout, pg.acquire_timeout);
        assert_eq!(options.tools.statement_timeout, tools.statement_timeout);
        assert_eq!(options.tools.max_rows, tools.max_rows);
        assert_eq!(options.tools.max_rows_limit, tools.max_rows_limit);
        assert_eq!(options.tools.max_result_bytes, tools.max_result_bytes);
        assert_eq!(options.tools.lock_timeout, tools.lock_timeout);
        assert_eq!(options.tools.confirm_ttl, tools.confirm_ttl);
        assert_eq!(options.tools.confirm_writes, ConfirmWrites::Off);
        assert_eq!(options.tools.confirm_rows, None);
        assert!(options.tools.allowed_roles.is_empty());
        assert!(options.audit_log.is_none() && options.reads.is_none() && !options.read_only);
        // SPEC §5's numbers.
        assert_eq!((options.pg.max_sessions, options.pg.pool_size), (10, 15));
        assert_eq!(options.pg.session_ttl, Duration::from_secs(1800));
        assert_eq!((options.tools.max_rows, options.tools.max_rows_limit), (500, 10_000));
        assert_eq!(options.pg.acquire_timeout, Duration::from_secs(10));
        assert_eq!(options.tools.statement_timeout, Duration::from_secs(30));
        assert_eq!(options.tools.max_result_bytes, 1 << 20);
    }

    #[test]
    fn a_profile_sets_its_own_defaults_and_help_shows_them() {
        let server = Profile {
            application_name: "server",
            start_while_down: true,
            confirm_writes: ConfirmWrites::Destructive,
            confirm_rows: Some(1000),
        };
        let options = parse_with(&server, &[]).unwrap();
        assert_eq!(options.tools.confirm_writes, ConfirmWrites::Destructive);
        assert_eq!(options.tools.confirm_rows, Some(1000));
        assert_eq!(options.pg.application_name, "server");
        assert!(options.pg.start_while_down);
        let options = parse_with(&server, &["--confirm-writes", "off", "--confirm-rows", "0"]).unwrap();
        assert_eq!((options.tools.confirm_writes, options.tools.confirm_rows), (ConfirmWrites::Off, None));
        let help = server.show_defaults(<Line as clap::CommandFactory>::command()).render_help().to_string();
        assert!(help.contains("[default: destructive]") && help.contains("[default: 1000]"), "{help}");
        assert!(help.contains("[default: 30m]") && help.contains("[default: 1MiB]"), "{help}");
    }

    #[test]
    fn units_and_derived_defaults() {
        let options = parse(&[
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
            "--lock-timeout",
            "0",
            "--allow-roles",
            " analyst, ,auditor",
            "--read-only",
        ])
        .unwrap();
        assert_eq!(options.pg.session_ttl, Duration::from_secs(300));
        assert_eq!(options.tools.statement_timeout, Duration::from_millis(500));
        assert_eq!(options.tools.max_result_bytes, 262_144);
        assert_eq!(options.pg.pool_size, 8, "max sessions + 5");
        assert_eq!(options.tools.max_rows_limit, 20_000, "the ceiling follows a larger --max-rows");
        assert_eq!(options.tools.lock_timeout, None);
        assert_eq!(options.tools.allowed_roles, ["analyst", "auditor"]);
        assert!(options.read_only);
        assert!(!parse(&["--read-only=off"]).unwrap().read_only);
    }

    #[test]
    fn malformed_values_name_their_setting() {
        assert!(setting_of(&["--session-ttl", "10 days"]).contains("COLDQUERY_SESSION_TTL"));
        assert!(setting_of(&["--statement-timeout", "0"]).contains("--statement-timeout"));
        assert!(setting_of(&["--max-sessions", "0"]).contains("COLDQUERY_MAX_SESSIONS"));
        assert!(setting_of(&["--max-rows", "many"]).contains("--max-rows"));
        assert!(setting_of(&["--max-result-bytes", "1TB"]).contains("COLDQUERY_MAX_RESULT_BYTES"));
        assert!(setting_of(&["--max-result-bytes", "0"]).contains("COLDQUERY_MAX_RESULT_BYTES"));
        assert!(setting_of(&["--pool-size", "10"]).contains("COLDQUERY_POOL_SIZE"));
        assert!(setting_of(&["--max-rows", "600", "--max-rows-limit", "500"]).contains("MAX_ROWS_LIMIT"));
        assert!(setting_of(&["--read-only=maybe"]).contains("--read-only (COLDQUERY_READ_ONLY)"));
        assert!(setting_of(&["--deny-functions", "x y"]).contains("--deny-functions"));
        assert!(setting_of(&["--confirm-writes", "sometimes"]).contains("COLDQUERY_CONFIRM_WRITES"));
        assert!(setting_of(&["--confirm-rows", "many"]).contains("COLDQUERY_CONFIRM_ROWS"));
        assert!(setting_of(&["--lock-timeout", "soon"]).contains("COLDQUERY_LOCK_TIMEOUT"));
        assert!(setting_of(&["--read-database-url", "postgres://x/db?sslmode=sometimes"]).contains("READ_DATABASE"));
    }

    #[test]
    fn ephemeral_with_an_explicit_database_url_is_refused() {
        let error = parse(&["--ephemeral", "--database-url", "postgres://x"]).unwrap_err();
        assert!(error.setting.contains("--ephemeral") && error.message.contains("--database-url"), "{error}");
        // DATABASE_URL from the environment gives way to --ephemeral.
        let settings = Settings {
            ephemeral: true,
            database_url: Some("postgres://x".into()),
            database_url_from_environment: true,
            ..parse_settings(&[])
        };
        assert_eq!(settings.resolve(&LIBRARY).unwrap().database, DatabaseSource::Ephemeral);
        let url = parse(&["--database-url", "postgres://x"]).unwrap().database;
        assert_eq!(url, DatabaseSource::Url(Some("postgres://x".into())));
        assert_eq!(parse(&["--database-url", " "]).unwrap().database, DatabaseSource::Url(None));
    }

    fn parse_settings(args: &[&str]) -> Settings {
        let argv = std::iter::once("test").chain(args.iter().copied());
        try_parse_from(&LIBRARY, argv, |l: &mut Line| &mut l.settings).expect("flags parse").settings
    }

    #[test]
    fn an_audit_log_that_cannot_be_opened_names_the_setting() {
        let options = parse(&["--audit-log", "/nonexistent-coldquery-dir/audit.jsonl"]).unwrap();
        let error = options.open_audit().err().expect("the directory does not exist");
        assert!(error.setting.contains("COLDQUERY_AUDIT_LOG") && error.message.contains("cannot open"), "{error}");
        assert!(parse(&["--audit-log", "off"]).unwrap().open_audit().unwrap().is_none());
    }

    #[test]
    fn the_summary_holds_no_secret() {
        let options = parse(&["--database-url", "postgres://u:hunter2@h/db"]).unwrap();
        let summary = options.summary().to_string();
        assert!(!summary.contains("hunter2") && summary.contains("DATABASE_URL"), "{summary}");
    }

    #[test]
    fn defaults_are_shown_in_units() {
        assert_eq!(show_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(show_duration(Duration::from_secs(30)), "30s");
        assert_eq!(show_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show_size(1 << 20), "1MiB");
        assert_eq!(show_size(1000), "1000");
        for text in ["30m", "1500ms", "2h"] {
            assert_eq!(show_duration(parse_duration(text).unwrap()), text);
        }
    }

    /// Every environment variable of the shared settings is in the vocabulary.
    #[test]
    fn every_environment_variable_is_in_the_vocabulary() {
        let command = <Line as clap::CommandFactory>::command();
        let names: Vec<String> =
            command.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
        assert!(names.len() > 20, "{names:?}");
        for name in names.iter().filter(|n| n.starts_with("COLDQUERY_")) {
            assert!(variables::VARIABLES.contains(&name.as_str()), "{name} is missing from variables::VARIABLES");
        }
    }
}
