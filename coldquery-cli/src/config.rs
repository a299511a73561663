//! The CLI's configuration (SPEC §5): the same settings as the server, each a flag with an
//! environment variable, checked before anything connects (fail closed: a malformed value is a
//! configuration error, exit code 2, naming the setting).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use coldquery_core::units::{parse_duration, parse_size};
use coldquery_core::{DefaultDeny, ErrorKind};
use coldquery_pg::ephemeral::Ephemeral;
use coldquery_pg::{Database, PgConfig, PgOptions};
use coldquery_tools::{JsonLinesAudit, ToolConfig, Tools};

use crate::fail::Failure;

/// Connection and limit settings, shared with `coldquery-mcp`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct Settings {
    /// libpq URI (postgres://user@host/db) or key=value string; else the libpq PG* variables.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub(crate) database_url: Option<String>,
    /// Start a throwaway local PostgreSQL with a demo schema (initdb/postgres from PATH),
    /// use it, and delete it on exit. Takes precedence over DATABASE_URL.
    #[arg(long, env = "COLDQUERY_EPHEMERAL")]
    pub(crate) ephemeral: bool,
    /// Refuse every write whatever the flags; sessions are READ ONLY transactions.
    #[arg(
        long,
        env = "COLDQUERY_READ_ONLY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub(crate) read_only: Option<String>,
    /// Maximum open sessions [default: 10].
    #[arg(long, env = "COLDQUERY_MAX_SESSIONS", value_name = "N")]
    pub(crate) max_sessions: Option<String>,
    /// Idle time after which a session is rolled back, e.g. 1800, 30m [default: 30m].
    #[arg(long, env = "COLDQUERY_SESSION_TTL", value_name = "DURATION")]
    pub(crate) session_ttl: Option<String>,
    /// Connections of the shared pool [default: max sessions + 5].
    #[arg(long, env = "COLDQUERY_POOL_SIZE", value_name = "N")]
    pub(crate) pool_size: Option<String>,
    /// How long a call waits for a free connection [default: 10s].
    #[arg(long, env = "COLDQUERY_ACQUIRE_TIMEOUT", value_name = "DURATION")]
    pub(crate) acquire_timeout: Option<String>,
    /// Default statement timeout [default: 30s].
    #[arg(long, env = "COLDQUERY_STATEMENT_TIMEOUT", value_name = "DURATION")]
    pub(crate) statement_timeout: Option<String>,
    /// Default cap on returned rows [default: 500].
    #[arg(long, env = "COLDQUERY_MAX_ROWS", value_name = "N")]
    pub(crate) max_rows: Option<String>,
    /// The largest --max-rows a call may ask for [default: 10000, or --max-rows if larger].
    #[arg(long, env = "COLDQUERY_MAX_ROWS_LIMIT", value_name = "N")]
    pub(crate) max_rows_limit: Option<String>,
    /// Byte budget of one result, e.g. 1048576, 1MiB [default: 1MiB].
    #[arg(long, env = "COLDQUERY_MAX_RESULT_BYTES", value_name = "SIZE")]
    pub(crate) max_result_bytes: Option<String>,
    /// Append an audit record (JSON line) of every write and denial to this file, or `off`.
    #[arg(long, env = "COLDQUERY_AUDIT_LOG", value_name = "PATH")]
    pub(crate) audit_log: Option<String>,
    /// Functions reads may never call, comma-separated patterns (`name`, `schema.name`, `*`
    /// matches any run), on top of the read function policy.
    #[arg(long, env = "COLDQUERY_DENY_FUNCTIONS", value_name = "PATTERNS")]
    pub(crate) deny_functions: Option<String>,
    /// User-defined functions reads may call, comma-separated schema-qualified patterns
    /// (`reporting.*`); by default reads call none.
    #[arg(long, env = "COLDQUERY_ALLOW_FUNCTIONS", value_name = "PATTERNS")]
    pub(crate) allow_functions: Option<String>,
    /// Extensions whose immutable and stable functions reads may call, comma-separated, or `*`
    /// (default: a reviewed list); dblink, adminpack, tablefunc... are never allowed.
    #[arg(long, env = "COLDQUERY_ALLOW_EXTENSIONS", value_name = "NAMES")]
    pub(crate) allow_extensions: Option<String>,
    /// A second PostgreSQL URL for sessionless reads, e.g. as a role that can only read.
    #[arg(long, env = "COLDQUERY_READ_DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub(crate) read_database_url: Option<String>,
    /// Fetch every row, for an export: a read outside BEGIN ... COMMIT is streamed to stdout as
    /// its rows arrive (memory stays small whatever the size; an aligned table is aligned per
    /// 1000 rows). Inside a transaction it lifts --max-rows and --max-result-bytes instead.
    #[arg(long, global = true)]
    pub(crate) all: bool,
}

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// `--database-url` / `DATABASE_URL`, or the `PG*` variables when `None`.
    Url(Option<String>),
    /// `--ephemeral`.
    Ephemeral,
}

/// The settings, checked and typed.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) source: Source,
    pub(crate) options: PgOptions,
    pub(crate) tools: ToolConfig,
    pub(crate) read_only: bool,
    pub(crate) audit_log: Option<PathBuf>,
    pub(crate) read_database_url: Option<String>,
}

/// Checks every setting; the error names the flag and its environment variable.
pub(crate) fn resolve(settings: &Settings) -> Result<Config, Failure> {
    let defaults = PgOptions::default();
    let tool_defaults = ToolConfig::default();
    let max_sessions = number(&settings.max_sessions, "max-sessions")?.unwrap_or(defaults.max_sessions);
    if max_sessions == 0 {
        return Err(invalid("max-sessions", "must be at least 1"));
    }
    // As in coldquery-mcp: the shared pool is larger than the session limit, so calls without
    // a session are never starved.
    let pool_size = match number(&settings.pool_size, "pool-size")? {
        Some(n) if n <= max_sessions => {
            return Err(invalid(
                "pool-size",
                &format!(
                    "must be larger than --max-sessions ({max_sessions}) so that calls without a session are never starved, got {n}"
                ),
            ));
        }
        Some(n) => u32::try_from(n).map_err(|_| invalid("pool-size", "is too large"))?,
        None => u32::try_from(max_sessions + 5).unwrap_or(u32::MAX),
    };
    let max_rows = number(&settings.max_rows, "max-rows")?.unwrap_or(tool_defaults.max_rows);
    if max_rows == 0 {
        return Err(invalid("max-rows", "must be at least 1"));
    }
    let max_rows_limit = match number(&settings.max_rows_limit, "max-rows-limit")? {
        None => tool_defaults.max_rows_limit.max(max_rows),
        Some(limit) if limit < max_rows => {
            return Err(invalid("max-rows-limit", &format!("must be at least --max-rows ({max_rows}), got {limit}")));
        }
        Some(limit) => limit,
    };
    let options = PgOptions {
        max_sessions,
        session_ttl: duration(&settings.session_ttl, "session-ttl")?.unwrap_or(defaults.session_ttl),
        pool_size,
        acquire_timeout: duration(&settings.acquire_timeout, "acquire-timeout")?.unwrap_or(defaults.acquire_timeout),
        application_name: "coldquery-cli".to_owned(),
        ..defaults
    };
    let mut tools = ToolConfig {
        max_rows,
        max_rows_limit,
        max_result_bytes: size(&settings.max_result_bytes, "max-result-bytes")?
            .unwrap_or(tool_defaults.max_result_bytes),
        statement_timeout: duration(&settings.statement_timeout, "statement-timeout")?
            .unwrap_or(tool_defaults.statement_timeout),
        ..tool_defaults
    };
    if settings.all {
        // Limits large enough never to be hit; `run` compares with them, never adds to them.
        tools.max_rows = usize::MAX / 2;
        tools.max_rows_limit = usize::MAX / 2;
        tools.max_result_bytes = usize::MAX / 2;
    }
    if let Some(list) = &settings.deny_functions {
        tools.deny_functions(list).map_err(|e| invalid("deny-functions", &e))?;
    }
    if let Some(list) = &settings.allow_functions {
        tools.functions.allow_functions(list).map_err(|e| invalid("allow-functions", &e))?;
    }
    if let Some(list) = &settings.allow_extensions {
        tools.functions.allow_extensions(list).map_err(|e| invalid("allow-extensions", &e))?;
    }
    let read_only = match settings.read_only.as_deref() {
        None => false,
        Some(text) => boolean(text).ok_or_else(|| invalid("read-only", "must be true or false"))?,
    };
    let audit_log = match settings.audit_log.as_deref().map(str::trim) {
        None | Some("" | "off") => None,
        Some(path) => Some(PathBuf::from(path)),
    };
    let source = if settings.ephemeral {
        Source::Ephemeral
    } else {
        Source::Url(settings.database_url.clone().filter(|url| !url.trim().is_empty()))
    };
    let read_database_url = settings.read_database_url.clone().filter(|url| !url.trim().is_empty());
    Ok(Config { source, options, tools, read_only, audit_log, read_database_url })
}

/// An open database: the tools over it, and the throwaway server behind it, if any.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) tools: Tools,
    /// Where it is connected, as psql's `\conninfo` says it.
    pub(crate) conninfo: String,
    pub(crate) ephemeral: Option<Ephemeral>,
}

impl Connection {
    /// Stops the throwaway server (if any) and deletes its directory. The caller must have
    /// ended its sessions: closing the server rolls back whatever is still open.
    pub(crate) async fn close(self) {
        if let Some(ephemeral) = self.ephemeral
            && let Err(e) = ephemeral.stop().await
        {
            eprintln!("warning: stopping the ephemeral PostgreSQL: {e}");
        }
    }
}

/// Starts the throwaway server if asked, connects, and builds the tools.
pub(crate) async fn connect(config: &Config) -> Result<Connection, Failure> {
    let audit = match &config.audit_log {
        None => None,
        Some(path) => Some(Arc::new(JsonLinesAudit::open(path).map_err(|e| {
            Failure::config(format!("--audit-log (COLDQUERY_AUDIT_LOG): cannot open {}: {e}", path.display()))
        })?)),
    };
    let (url, ephemeral) = match &config.source {
        Source::Url(url) => (url.clone(), None),
        Source::Ephemeral => {
            let ephemeral = Ephemeral::start()
                .await
                .map_err(|e| Failure::tool("UNAVAILABLE", format!("the ephemeral PostgreSQL did not start: {e}")))?;
            (Some(ephemeral.url().to_owned()), Some(ephemeral))
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let pg = libpq_config(url.as_deref(), &env)?;
    let reads = match &config.read_database_url {
        Some(url) => Some(
            coldquery_pg::PgConfig::from_env_and_url(Some(url), &|_| None)
                .map_err(|e| invalid("read-database-url", &e.to_string()))?,
        ),
        None => None,
    };
    let database = match Database::connect_with_reads(&pg, reads.as_ref(), &config.options).await {
        Ok(database) => database,
        Err(e) => {
            if let Some(ephemeral) = ephemeral {
                let _ = ephemeral.stop().await;
            }
            return Err(if e.kind() == ErrorKind::InvalidArgument {
                Failure::config(e.message().to_owned())
            } else {
                let mut failure = Failure::from_error_json(&e.to_json());
                if e.kind() == ErrorKind::Unavailable
                    && let Some(cause) = connection_cause(&pg.redacted())
                {
                    failure.error["message"] = serde_json::json!(cause);
                    failure.message = cause;
                }
                failure
            });
        }
    };
    let policy = Arc::new(DefaultDeny { read_only: config.read_only });
    let mut tools = Tools::new(database.executor, database.sessions, policy, config.tools.clone());
    if let Some(audit) = audit {
        tools = tools.with_audit(audit);
    }
    Ok(Connection { tools, conninfo: conninfo(&pg.redacted()), ephemeral })
}

/// The PG* variables each connection setting comes from when the URL does not give it, and the
/// key that names it in `pg_service.conf`.
const SERVICE_KEYS: [(&str, &str); 12] = [
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
    ("options", "PGOPTIONS"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
];

/// The connection settings as libpq reads them: the URL first; then, with `PGSERVICE`, the
/// service's entries in `pg_service.conf` (`PGSERVICEFILE` or `~/.pg_service.conf`, then
/// `PGSYSCONFDIR/pg_service.conf` or `/etc/postgresql-common/pg_service.conf`); then the PG*
/// variables; and when none of them gives a password, the first matching line of `~/.pgpass`
/// (or `PGPASSFILE`), which is ignored, as libpq ignores it, when others may read it.
pub(crate) fn libpq_config(url: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<PgConfig, Failure> {
    let service = match env("PGSERVICE").filter(|s| !s.is_empty()) {
        Some(name) => service_entries(&name, env)?,
        None => Vec::new(),
    };
    let with_service = |name: &str| {
        SERVICE_KEYS
            .iter()
            .find(|(_, var)| *var == name)
            .and_then(|(key, _)| service.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
            .or_else(|| env(name))
    };
    let pg = PgConfig::from_env_and_url(url, &with_service).map_err(|e| Failure::config(e.to_string()))?;
    if pg.pg().get_password().is_some() {
        return Ok(pg);
    }
    let Some(password) = pgpass_password(&pg.redacted(), env) else { return Ok(pg) };
    let with_password = |name: &str| if name == "PGPASSWORD" { Some(password.clone()) } else { with_service(name) };
    PgConfig::from_env_and_url(url, &with_password).map_err(|e| Failure::config(e.to_string()))
}

/// The `key=value` entries of service `name`, from the first service file that defines it.
fn service_entries(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, Failure> {
    let home = env("HOME").map(std::path::PathBuf::from);
    let user_file = env("PGSERVICEFILE").map(PathBuf::from).or_else(|| home.map(|h| h.join(".pg_service.conf")));
    let system_file = env("PGSYSCONFDIR")
        .map(|dir| PathBuf::from(dir).join("pg_service.conf"))
        .unwrap_or_else(|| PathBuf::from("/etc/postgresql-common/pg_service.conf"));
    for file in user_file.into_iter().chain([system_file]) {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let mut in_section = false;
        let mut entries = Vec::new();
        let mut found = false;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                in_section = section == name;
                found |= in_section;
                continue;
            }
            if in_section {
                let Some((key, value)) = line.split_once('=') else {
                    return Err(Failure::config(format!(
                        "syntax error in service file \"{}\": {line:?} is not key=value",
                        file.display()
                    )));
                };
                entries.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
        if found {
            return Ok(entries);
        }
    }
    Err(Failure::config(format!("definition of service \"{name}\" not found (PGSERVICE)")))
}

/// The password `~/.pgpass` (or `PGPASSFILE`) gives for the host, port, database and user in
/// `settings` (the redacted `host=… port=…` form).
fn pgpass_password(settings: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let file =
        env("PGPASSFILE").map(PathBuf::from).or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".pgpass")))?;
    let text = std::fs::read_to_string(&file).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "WARNING: password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
                file.display()
            );
            return None;
        }
    }
    let value = |key: &str| {
        settings.split_whitespace().find_map(|pair| pair.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let host = value("host").unwrap_or("localhost");
    // libpq matches a socket directory as `localhost`.
    let host = if host.starts_with('/') { "localhost" } else { host };
    let wanted = [host, value("port").unwrap_or("5432"), value("dbname").unwrap_or(""), value("user").unwrap_or("")];
    text.lines().filter(|line| !line.trim_start().starts_with('#')).find_map(|line| {
        let fields = pgpass_fields(line);
        if fields.len() != 5 {
            return None;
        }
        let matches = fields[..4].iter().zip(wanted).all(|(field, want)| field == "*" || field == want);
        matches.then(|| fields[4].clone())
    })
}

/// A `.pgpass` line's `:`-separated fields (`\:` and `\\` escaped).
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().expect("one field").extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// Why the server could not be reached, in libpq's words, found out the way libpq would: the
/// driver's own error says only "error connecting to server". `settings` is the redacted
/// `host=… port=…` form of the connection settings. `None` when the server is reachable (the
/// failure came later, e.g. TLS) or the settings name no host.
fn connection_cause(settings: &str) -> Option<String> {
    let value = |key: &str| {
        settings.split_whitespace().find_map(|pair| pair.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let hosts: Vec<&str> = value("host").unwrap_or("localhost").split(',').collect();
    let ports: Vec<u16> = value("port").unwrap_or("5432").split(',').filter_map(|p| p.parse().ok()).collect();
    let mut causes = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        if host.starts_with('/') || host.starts_with('@') {
            let socket = std::path::Path::new(host).join(format!(".s.PGSQL.{port}"));
            if !socket.exists() {
                causes.push(format!(
                    "connection to server on socket \"{}\" failed: No such file or directory. Is the server \
                     running locally and accepting connections on that socket?",
                    socket.display()
                ));
            }
            continue;
        }
        let addresses = match std::net::ToSocketAddrs::to_socket_addrs(&(*host, port)) {
            Ok(addresses) => addresses.collect::<Vec<_>>(),
            Err(e) => {
                causes.push(format!("could not translate host name \"{host}\" to address: {e}"));
                continue;
            }
        };
        for address in addresses {
            match std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(3)) {
                Ok(_) => return None,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => causes.push(format!(
                    "connection to server at \"{host}\" ({}), port {port} failed: Connection refused. Is the \
                     server running on that host and accepting TCP/IP connections?",
                    address.ip()
                )),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => causes.push(format!(
                    "connection to server at \"{host}\" ({}), port {port} failed: timeout expired",
                    address.ip()
                )),
                Err(e) => causes
                    .push(format!("connection to server at \"{host}\" ({}), port {port} failed: {e}", address.ip())),
            }
        }
    }
    if causes.is_empty() { None } else { Some(causes.join("\n")) }
}

/// psql's `\conninfo` sentence from the redacted `host=… port=… dbname=… user=…` settings.
fn conninfo(settings: &str) -> String {
    let value = |key: &str| {
        settings
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("")
    };
    let host = value("host");
    let place = if host.starts_with('/') {
        format!("via socket in \"{host}\"")
    } else {
        format!("on host \"{}\"", if host.is_empty() { "localhost" } else { host })
    };
    let port = if value("port").is_empty() { "5432" } else { value("port") };
    format!(
        "You are connected to database \"{}\" as user \"{}\" {place} at port \"{port}\" (sslmode {}).",
        value("dbname"),
        value("user"),
        if value("sslmode").is_empty() { "prefer" } else { value("sslmode") }
    )
}

fn env_name(flag: &str) -> String {
    format!("COLDQUERY_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

fn invalid(flag: &str, reason: &str) -> Failure {
    Failure::config(format!("invalid value for --{flag} ({}): {reason}", env_name(flag)))
}

fn number(value: &Option<String>, flag: &str) -> Result<Option<usize>, Failure> {
    value
        .as_deref()
        .map(|text| {
            text.trim().parse::<usize>().map_err(|_| invalid(flag, &format!("'{}' is not a whole number", text.trim())))
        })
        .transpose()
}

fn duration(value: &Option<String>, flag: &str) -> Result<Option<std::time::Duration>, Failure> {
    let parsed = value.as_deref().map(|text| parse_duration(text).map_err(|e| invalid(flag, &e))).transpose()?;
    match parsed {
        Some(d) if d.is_zero() => Err(invalid(flag, "must be longer than zero")),
        other => Ok(other),
    }
}

fn size(value: &Option<String>, flag: &str) -> Result<Option<usize>, Failure> {
    let parsed = value.as_deref().map(|text| parse_size(text).map_err(|e| invalid(flag, &e))).transpose()?;
    match parsed {
        Some(0) => Err(invalid(flag, "must be at least 1 byte")),
        other => Ok(other),
    }
}

fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(edit: impl FnOnce(&mut Settings)) -> Settings {
        let mut settings = Settings::default();
        edit(&mut settings);
        settings
    }

    #[test]
    fn pgpass_lines_match_like_libpqs() {
        assert_eq!(pgpass_fields(r"db\:host:5432:*:u:pa\:ss\\word"), ["db:host", "5432", "*", "u", "pa:ss\\word"]);
        assert_eq!(pgpass_fields("a:b:c:d:e:f"), ["a", "b", "c", "d", "e:f"]);
    }

    #[test]
    fn connection_failures_name_their_cause() {
        let refused = connection_cause("host=127.0.0.1 port=1 dbname=x user=u").unwrap();
        assert!(refused.contains("port 1 failed: Connection refused"), "{refused}");
        let unknown = connection_cause("host=no-such-host.invalid port=5432").unwrap();
        assert!(unknown.starts_with("could not translate host name \"no-such-host.invalid\""), "{unknown}");
        let socket = connection_cause("host=/nonexistent port=5433").unwrap();
        assert!(socket.contains("\"/nonexistent/.s.PGSQL.5433\" failed: No such file or directory"), "{socket}");
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = resolve(&Settings::default()).unwrap();
        assert_eq!(config.source, Source::Url(None));
        assert_eq!(config.options.max_sessions, 10);
        assert_eq!(config.options.pool_size, 15);
        assert_eq!(config.options.session_ttl, Duration::from_secs(1800));
        assert_eq!(config.tools.max_rows, 500);
        assert_eq!(config.tools.max_rows_limit, 10_000);
        assert_eq!(config.tools.max_result_bytes, 1024 * 1024);
        assert!(!config.read_only);
        assert_eq!(config.audit_log, None);
    }

    #[test]
    fn settings_that_contradict_each_other_are_refused_as_in_the_server() {
        let small_pool = resolve(&settings(|s| s.pool_size = Some("10".into()))).unwrap_err();
        assert!(small_pool.message.contains("--pool-size"), "{}", small_pool.message);
        let low_limit = resolve(&settings(|s| {
            s.max_rows = Some("800".into());
            s.max_rows_limit = Some("700".into());
        }))
        .unwrap_err();
        assert!(low_limit.message.contains("--max-rows-limit"), "{}", low_limit.message);
        let raised = resolve(&settings(|s| s.max_rows = Some("20000".into()))).unwrap();
        assert_eq!(raised.tools.max_rows_limit, 20_000, "the default ceiling follows a larger --max-rows");
        let deny = resolve(&settings(|s| s.deny_functions = Some("x y".into()))).unwrap_err();
        assert!(deny.message.contains("--deny-functions"), "{}", deny.message);
    }

    #[test]
    fn values_with_units_are_parsed() {
        let config = resolve(&settings(|s| {
            s.max_sessions = Some("3".into());
            s.session_ttl = Some("5m".into());
            s.statement_timeout = Some("500ms".into());
            s.max_rows = Some("20000".into());
            s.max_result_bytes = Some("256KiB".into());
            s.read_only = Some("TRUE".into());
            s.audit_log = Some("off".into());
            s.ephemeral = true;
            s.database_url = Some("postgres://ignored".into());
        }))
        .unwrap();
        assert_eq!(config.source, Source::Ephemeral);
        assert_eq!(config.options.pool_size, 8);
        assert_eq!(config.options.session_ttl, Duration::from_secs(300));
        assert_eq!(config.tools.statement_timeout, Duration::from_millis(500));
        assert_eq!(config.tools.max_rows_limit, 20_000, "the ceiling is at least max_rows");
        assert_eq!(config.tools.max_result_bytes, 256 * 1024);
        assert!(config.read_only);
        assert_eq!(config.audit_log, None);
    }

    #[test]
    fn malformed_values_name_the_setting() {
        type Edit = fn(&mut Settings);
        let cases: [(Edit, &str); 6] = [
            (|s| s.max_sessions = Some("ten".into()), "--max-sessions (COLDQUERY_MAX_SESSIONS)"),
            (|s| s.max_sessions = Some("0".into()), "--max-sessions (COLDQUERY_MAX_SESSIONS)"),
            (|s| s.session_ttl = Some("soon".into()), "--session-ttl (COLDQUERY_SESSION_TTL)"),
            (|s| s.statement_timeout = Some("0".into()), "--statement-timeout (COLDQUERY_STATEMENT_TIMEOUT)"),
            (|s| s.max_result_bytes = Some("lots".into()), "--max-result-bytes (COLDQUERY_MAX_RESULT_BYTES)"),
            (|s| s.read_only = Some("maybe".into()), "--read-only (COLDQUERY_READ_ONLY)"),
        ];
        for (edit, named) in cases {
            let failure = resolve(&settings(edit)).unwrap_err();
            assert_eq!(failure.exit, crate::fail::Exit::Usage);
            assert!(failure.message.contains(named), "{} should name {named}", failure.message);
        }
    }
}
