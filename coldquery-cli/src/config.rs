//! The CLI's configuration (SPEC §5): the settings it shares with the server
//! ([`coldquery_config::Settings`], flattened into [`crate::cli::Cli`]) resolved with the CLI's
//! defaults, then connected: the libpq conninfo (`pg_service.conf`, `~/.pgpass`) as psql reads
//! it, and psql's words when the server cannot be reached. Everything is checked before anything
//! connects (fail closed: a malformed value is a configuration error, exit code 2, naming the
//! setting).

use std::path::PathBuf;

use coldquery_config::{ConfigError, DatabaseSource, Options, Profile, Settings};
use coldquery_core::ErrorKind;
use coldquery_pg::cluster::ephemeral::Ephemeral;
use coldquery_pg::{Database, PgConfig};
use coldquery_tools::{ConfirmWrites, Tools};

use crate::fail::Failure;

/// The CLI's defaults where the library's are not the server's: a person at a terminal asks
/// for each write, so no preview is required unless `--confirm-writes` says so.
pub(crate) const PROFILE: Profile = Profile {
    application_name: "coldquery-cli",
    start_while_down: false,
    confirm_writes: ConfirmWrites::Off,
    confirm_rows: None,
};

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Failure {
        Failure::config(error.to_string())
    }
}

/// Checks every setting; the error names the flag and its environment variable. `all`
/// (`--all`) lifts the row and byte caps.
pub(crate) fn resolve(settings: &Settings, all: bool) -> Result<Options, Failure> {
    let mut options = settings.resolve(&PROFILE)?;
    if all {
        // Limits large enough never to be hit; `run` compares with them, never adds to them.
        options.tools.max_rows = usize::MAX / 2;
        options.tools.max_rows_limit = usize::MAX / 2;
        options.tools.max_result_bytes = usize::MAX / 2;
    }
    Ok(options)
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
pub(crate) async fn connect(options: &Options) -> Result<Connection, Failure> {
    let audit = options.open_audit()?;
    let (url, ephemeral) = match &options.database {
        DatabaseSource::Url(url) => (url.clone(), None),
        DatabaseSource::Ephemeral => {
            let ephemeral = Ephemeral::start().await.map_err(|e| {
                let message = format!("the ephemeral PostgreSQL did not start: {e}");
                Failure::from_error(&coldquery_core::Error::new(ErrorKind::Unavailable, message))
            })?;
            (Some(ephemeral.url().to_owned()), Some(ephemeral))
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let connected = match libpq_config(url.as_deref(), &env) {
        Ok(pg) => Database::connect_with_reads(&pg, options.reads.as_ref(), &options.pg)
            .await
            .map_err(|e| connect_failure(&e, &pg))
            .map(|database| (options.tools(&database, audit), pg)),
        Err(failure) => Err(failure),
    };
    match connected {
        Ok((tools, pg)) => Ok(Connection { tools, conninfo: conninfo(&pg.redacted()), ephemeral }),
        Err(failure) => {
            if let Some(ephemeral) = ephemeral {
                let _ = ephemeral.stop().await;
            }
            Err(failure)
        }
    }
}

/// Why connecting failed, in libpq's words when the server cannot be reached.
fn connect_failure(e: &coldquery_core::Error, pg: &PgConfig) -> Failure {
    if e.kind() == ErrorKind::InvalidArgument {
        return Failure::config(e.message().to_owned());
    }
    let mut failure = Failure::from_error(e);
    if e.kind() == ErrorKind::Unavailable
        && let Some(cause) = connection_cause(&pg.redacted())
    {
        failure.error["message"] = serde_json::json!(cause);
        failure.message = cause;
    }
    failure
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
    if pg.has_password() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn resolved(args: &[&str]) -> Result<Options, Failure> {
        let argv = ["coldquery"].into_iter().chain(args.iter().copied()).chain(["tools"]);
        let cli = coldquery_config::try_parse_from(&PROFILE, argv, |c: &mut crate::cli::Cli| &mut c.settings)
            .map_err(|e| Failure::usage(e.to_string()))?;
        resolve(&cli.settings, cli.all)
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
        let config = resolved(&[]).unwrap();
        assert_eq!(config.database, DatabaseSource::Url(None));
        assert_eq!(config.pg.max_sessions, 10);
        assert_eq!(config.pg.pool_size, 15);
        assert_eq!(config.pg.session_ttl, Duration::from_secs(1800));
        assert_eq!(config.pg.application_name, "coldquery-cli");
        assert!(!config.pg.start_while_down);
        assert_eq!(config.tools.max_rows, 500);
        assert_eq!(config.tools.max_rows_limit, 10_000);
        assert_eq!(config.tools.max_result_bytes, 1024 * 1024);
        assert_eq!(config.tools.confirm_writes, ConfirmWrites::Off, "the CLI confirms no write by default");
        assert_eq!(config.tools.confirm_rows, None);
        assert_eq!(config.tools.lock_timeout, Some(Duration::from_secs(5)));
        assert!(!config.read_only);
        assert_eq!(config.audit_log, None);
    }

    #[test]
    fn settings_that_contradict_each_other_are_refused_as_in_the_server() {
        let small_pool = resolved(&["--pool-size", "10"]).unwrap_err();
        assert!(small_pool.message.contains("--pool-size"), "{}", small_pool.message);
        let low_limit = resolved(&["--max-rows", "800", "--max-rows-limit", "700"]).unwrap_err();
        assert!(low_limit.message.contains("--max-rows-limit"), "{}", low_limit.message);
        let raised = resolved(&["--max-rows", "20000"]).unwrap();
        assert_eq!(raised.tools.max_rows_limit, 20_000, "the default ceiling follows a larger --max-rows");
        let deny = resolved(&["--deny-functions", "x y"]).unwrap_err();
        assert!(deny.message.contains("--deny-functions"), "{}", deny.message);
        // As on the server: one database, not two.
        let both = resolved(&["--ephemeral", "--database-url", "postgres://u@h/db"]).unwrap_err();
        assert_eq!(both.exit, crate::fail::Exit::Usage);
        assert!(both.message.contains("--ephemeral") && both.message.contains("--database-url"), "{}", both.message);
    }

    #[test]
    fn values_with_units_are_parsed() {
        let config = resolved(&[
            "--max-sessions",
            "3",
            "--session-ttl",
            "5m",
            "--statement-timeout",
            "500ms",
            "--max-rows",
            "20000",
            "--max-result-bytes",
            "256KiB",
            "--read-only=TRUE",
            "--audit-log",
            "off",
            "--ephemeral",
            "--confirm-writes",
            "all",
            "--confirm-rows",
            "50",
            "--lock-timeout",
            "0",
            "--allow-roles",
            "analyst",
        ])
        .unwrap();
        assert_eq!(config.database, DatabaseSource::Ephemeral);
        assert_eq!(config.pg.pool_size, 8);
        assert_eq!(config.pg.session_ttl, Duration::from_secs(300));
        assert_eq!(config.tools.statement_timeout, Duration::from_millis(500));
        assert_eq!(config.tools.max_rows_limit, 20_000, "the ceiling is at least max_rows");
        assert_eq!(config.tools.max_result_bytes, 256 * 1024);
        assert_eq!((config.tools.confirm_writes, config.tools.confirm_rows), (ConfirmWrites::All, Some(50)));
        assert_eq!(config.tools.lock_timeout, None);
        assert_eq!(config.tools.allowed_roles, ["analyst"]);
        assert!(config.read_only);
        assert_eq!(config.audit_log, None);
        let all = resolved(&["--all"]).unwrap();
        assert!(all.tools.max_rows > 1 << 40 && all.tools.max_result_bytes > 1 << 40);
    }

    #[test]
    fn malformed_values_name_the_setting() {
        let cases: [(&[&str], &str); 7] = [
            (&["--max-sessions", "ten"], "--max-sessions (COLDQUERY_MAX_SESSIONS)"),
            (&["--max-sessions", "0"], "--max-sessions (COLDQUERY_MAX_SESSIONS)"),
            (&["--session-ttl", "soon"], "--session-ttl (COLDQUERY_SESSION_TTL)"),
            (&["--statement-timeout", "0"], "--statement-timeout (COLDQUERY_STATEMENT_TIMEOUT)"),
            (&["--max-result-bytes", "lots"], "--max-result-bytes (COLDQUERY_MAX_RESULT_BYTES)"),
            (&["--read-only=maybe"], "--read-only (COLDQUERY_READ_ONLY)"),
            (&["--confirm-writes", "sometimes"], "--confirm-writes (COLDQUERY_CONFIRM_WRITES)"),
        ];
        for (args, named) in cases {
            let failure = resolved(args).unwrap_err();
            assert_eq!(failure.exit, crate::fail::Exit::Usage);
            assert!(failure.message.contains(named), "{} should name {named}", failure.message);
        }
    }
}
