//! [`PgConfig`]: the gathered options checked and turned into tokio-postgres's settings, plus
//! the TLS settings it cannot hold (`sslmode`'s verification and the root certificates), and
//! the effective settings shown back without the password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as PgSslMode, SslNegotiation};

use super::known::known;
use super::parse::{self, Options};
use super::{ConfigError, Origin, SslMode, shorten};
use crate::tls::{self, PgTls, Roots, Verification};

/// Options handled here rather than by tokio-postgres (`tcp_user_timeout` because libpq counts
/// it in milliseconds and tokio-postgres in seconds).
const OURS: &[&str] = &["password", "sslmode", "sslrootcert", "tcp_user_timeout"];

/// TCP keepalives start after this much idle time unless the connection string says otherwise
/// (the operating system's default is usually 2 hours).
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(15);
/// Time between keepalive probes unless the connection string says otherwise.
pub const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered keepalive probes before the connection is dropped, unless the connection string
/// says otherwise.
pub const DEFAULT_KEEPALIVES_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the operating system drops the connection
/// (Linux `TCP_USER_TIMEOUT`), unless the connection string says otherwise. It also bounds the
/// steps that have no deadline of their own (see [`PgConfig::step_timeout`]).
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Quotes a value for a libpq `key=value` string.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Quotes a value for display only when it needs it.
fn display_value(value: &str) -> String {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\') {
        quote(value)
    } else {
        value.to_owned()
    }
}

/// Connection settings for tokio-postgres plus the TLS settings it cannot hold.
///
/// `Debug` never shows the password (tokio-postgres's own `Debug` redacts it too).
#[derive(Clone)]
pub struct PgConfig {
    pg: tokio_postgres::Config,
    ssl_mode: SslMode,
    /// How the server's certificate is checked (`pub(super)` for the tests).
    pub(super) verification: Verification,
    root_cert: Option<String>,
    /// `TCP_USER_TIMEOUT`; zero when turned off (`tcp_user_timeout=0`).
    tcp_user_timeout: Duration,
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("settings", &self.redacted())
            .field("password", &self.pg.get_password().map(|_| "<redacted>"))
            .field("verification", &self.verification)
            .finish()
    }
}

impl PgConfig {
    /// From `DATABASE_URL` (libpq URI `postgres://` / `postgresql://` or libpq `key=value`
    /// string) or, when `url` is `None`, the libpq `PG*` environment variables alone.
    ///
    /// As in libpq, `PG*` variables (`PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE`, `PGOPTIONS`, `PGAPPNAME`, `PGSSLMODE`, `PGSSLROOTCERT`,
    /// `PGSSLNEGOTIATION`, `PGCONNECT_TIMEOUT`, `PGTARGETSESSIONATTRS`, `PGCHANNELBINDING`,
    /// `PGLOADBALANCEHOSTS`) fill in whatever the URL does not set. Defaults: user `$USER`
    /// (else `postgres`), host `localhost`, port 5432, database = user, `sslmode=prefer`
    /// (`verify-full` with `sslrootcert=system`). Root certificates are libpq's:
    /// `sslrootcert`, else `~/.postgresql/root.crt` when it exists (`HOME` is looked up
    /// through `env` too). `env` looks up environment variables (injected for tests).
    pub fn from_env_and_url(url: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<PgConfig, ConfigError> {
        let mut secrets = Vec::new();
        Self::build(url, env, &mut secrets).map_err(|e| e.redact(&secrets))
    }

    /// From the process environment: `DATABASE_URL` (if set and not blank), then the
    /// `PG*` variables. See [`PgConfig::from_env_and_url`].
    pub fn from_env() -> Result<PgConfig, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let url = env("DATABASE_URL").filter(|u| !u.trim().is_empty());
        Self::from_env_and_url(url.as_deref(), &env)
    }

    fn build(
        url: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
        secrets: &mut Vec<String>,
    ) -> Result<PgConfig, ConfigError> {
        let opts = parse::gather(url, env, secrets)?;

        // sslmode and sslrootcert (libpq: `system` makes verify-full the default and the
        // only mode allowed).
        let system_roots = opts.get("sslrootcert").is_some_and(|(v, _)| v == "system");
        let ssl_mode = match opts.get("sslmode") {
            Some((value, origin)) => {
                let mode = SslMode::from_str(value)
                    .map_err(|_| ConfigError::InvalidSslMode { origin: origin.to_string(), value: shorten(value) })?;
                if system_roots && mode != SslMode::VerifyFull {
                    return Err(ConfigError::WeakSslModeWithSystemRoots { origin: origin.to_string(), mode });
                }
                mode
            }
            None if system_roots => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };

        // Everything else goes to tokio-postgres: each option alone first, so that an
        // error names the option and where it came from, then all together.
        let mut conninfo = String::new();
        for (key, value, origin) in opts.iter() {
            if OURS.contains(&key) || value.is_empty() {
                continue;
            }
            let pair = format!("{key}={}", quote(value));
            let invalid = |reason: &str| ConfigError::InvalidValue {
                origin: origin.to_string(),
                option: key.to_owned(),
                reason: reason.to_owned(),
            };
            let expected = known(key).map_or("a valid value", |k| k.expected);
            if key == "port" {
                for port in value.split(',') {
                    if !port.is_empty() && !port.parse::<u16>().is_ok_and(|p| p != 0) {
                        return Err(invalid(&format!("expected {expected}")));
                    }
                }
            }
            tokio_postgres::Config::from_str(&pair).map_err(|_| invalid(&format!("expected {expected}")))?;
            conninfo.push_str(&pair);
            conninfo.push(' ');
        }
        let mut pg = tokio_postgres::Config::from_str(&conninfo)
            .map_err(|e| ConfigError::Malformed { origin: Origin::Url.to_string(), reason: e.to_string() })?;
        if let Some((password, _)) = opts.get("password") {
            pg.password(password);
        }
        // Network defaults: a silently dead peer is noticed within about 30 s (see
        // docs/CONFIGURATION.md) unless the connection string says otherwise.
        if !opts.is_set("keepalives_idle") {
            pg.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
        if !opts.is_set("keepalives_interval") {
            pg.keepalives_interval(DEFAULT_KEEPALIVES_INTERVAL);
        }
        if !opts.is_set("keepalives_retries") {
            pg.keepalives_retries(DEFAULT_KEEPALIVES_RETRIES);
        }
        let tcp_user_timeout = match opts.get("tcp_user_timeout") {
            // libpq: milliseconds, 0 (or less) for the system default.
            Some((value, origin)) => {
                let ms = value.trim().parse::<i64>().map_err(|_| ConfigError::InvalidValue {
                    origin: origin.to_string(),
                    option: "tcp_user_timeout".to_owned(),
                    reason: "expected a whole number of milliseconds".to_owned(),
                })?;
                Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            }
            None => DEFAULT_TCP_USER_TIMEOUT,
        };
        if !tcp_user_timeout.is_zero() {
            pg.tcp_user_timeout(tcp_user_timeout);
        }

        // Host, hostaddr and port lists must line up (tokio-postgres would only say so
        // when connecting).
        let (n_hosts, n_addrs, n_ports) = (pg.get_hosts().len(), pg.get_hostaddrs().len(), pg.get_ports().len());
        let origin_of = |key: &str| opts.get(key).map_or(Origin::Default, |(_, o)| o).to_string();
        if n_hosts > 0 && n_addrs > 0 && n_hosts != n_addrs {
            return Err(ConfigError::InvalidValue {
                origin: origin_of("hostaddr"),
                option: "hostaddr".to_owned(),
                reason: format!("{n_addrs} addresses for {n_hosts} hosts: give one per host"),
            });
        }
        let n_targets = n_hosts.max(n_addrs);
        if n_ports > 1 && n_ports != n_targets {
            return Err(ConfigError::InvalidValue {
                origin: origin_of("port"),
                option: "port".to_owned(),
                reason: format!("{n_ports} ports for {n_targets} hosts: give one port, or one per host"),
            });
        }
        if pg.get_ssl_negotiation() == SslNegotiation::Direct && matches!(ssl_mode, SslMode::Disable | SslMode::Prefer)
        {
            return Err(ConfigError::InvalidValue {
                origin: origin_of("sslnegotiation"),
                option: "sslnegotiation".to_owned(),
                reason: format!(
                    "`direct` cannot be used with the weak `sslmode={ssl_mode}` (use require, verify-ca or verify-full)"
                ),
            });
        }

        // TLS. PostgreSQL never uses TLS over Unix sockets and libpq does not try: with
        // only socket hosts, TLS is off whatever the mode (ssl_mode() still reports it).
        let only_sockets = n_addrs == 0 && pg.get_hosts().iter().all(is_socket);
        let tls_active = ssl_mode != SslMode::Disable && !only_sockets;
        let roots = if tls_active { Self::roots(&opts, env)? } else { None };
        let root_cert = roots.as_ref().map(Roots::describe);
        let verification = match (tls_active, ssl_mode, roots) {
            (false, _, _) => Verification::Off,
            (true, SslMode::VerifyFull, Some(roots)) => Verification::Full(roots),
            (true, _, Some(roots)) => Verification::Chain(roots),
            (true, SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(ConfigError::RootCertMissing {
                    mode: ssl_mode,
                    default_path: default_root_cert(env).map(|p| p.display().to_string()),
                });
            }
            (true, _, None) => Verification::EncryptOnly,
        };
        pg.ssl_mode(if tls_active { ssl_mode.to_pg() } else { PgSslMode::Disable });

        Ok(PgConfig { pg, ssl_mode, verification, root_cert, tcp_user_timeout })
    }

    /// The root certificates: `sslrootcert` (a file, or `system`), else libpq's default
    /// file when it exists. An explicit file that cannot be used is an error in every mode.
    fn roots(opts: &Options, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Roots>, ConfigError> {
        match opts.get("sslrootcert") {
            Some(("system", _)) => Ok(Some(Roots::System)),
            Some((path, origin)) => Roots::from_pem_file(path.as_ref()).map(Some).map_err(|reason| {
                ConfigError::RootCertUnreadable { origin: origin.to_string(), path: path.to_owned(), reason }
            }),
            None => match default_root_cert(env) {
                Some(path) if path.exists() => {
                    Roots::from_pem_file(&path).map(Some).map_err(|reason| ConfigError::RootCertUnreadable {
                        origin: Origin::Default.to_string(),
                        path: path.display().to_string(),
                        reason,
                    })
                }
                _ => Ok(None),
            },
        }
    }

    /// True when a password was given (URL, `PGPASSWORD`, or a service's), so `~/.pgpass` is not
    /// consulted.
    pub fn has_password(&self) -> bool {
        self.pg.get_password().is_some()
    }

    /// The tokio-postgres settings (`ssl_mode` already mapped: `disable` → Disable,
    /// `prefer` → Prefer, `require` / `verify-ca` / `verify-full` → Require; Disable when
    /// every host is a Unix socket).
    pub(crate) fn pg(&self) -> &tokio_postgres::Config {
        &self.pg
    }

    /// Sets `application_name` only if neither the URL nor `PGAPPNAME` gave one (libpq's
    /// `fallback_application_name`).
    pub fn set_fallback_application_name(&mut self, name: &str) {
        if self.pg.get_application_name().is_none_or(str::is_empty) {
            self.pg.application_name(name);
        }
    }

    /// How long ColdQuery waits for PostgreSQL in a step that has no deadline of its own (a
    /// COMMIT, a ROLLBACK, a transaction's start, a connection's reset or set-up, the
    /// CancelRequest after a deadline): the `tcp_user_timeout` in effect, or
    /// [`DEFAULT_TCP_USER_TIMEOUT`] when it is turned off. A step that takes longer is given up
    /// and its connection closed (a COMMIT is then reported `COMMIT_OUTCOME_UNKNOWN`).
    pub fn step_timeout(&self) -> Duration {
        if self.tcp_user_timeout.is_zero() { DEFAULT_TCP_USER_TIMEOUT } else { self.tcp_user_timeout }
    }

    /// The `sslmode` asked for.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The rustls client configuration honouring `sslmode` and the root certificates.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, ConfigError> {
        tls::client_config(&self.verification).map_err(|e| ConfigError::Tls(e.to_string()))
    }

    /// The TLS connector to give tokio-postgres / bb8-postgres: honours `sslmode` (see the
    /// table in the crate's TLS module) and also works for Unix-socket hosts.
    pub(crate) fn tls_connector(&self) -> Result<PgTls, ConfigError> {
        Ok(PgTls::new(self.client_config()?))
    }

    /// The effective settings without the password, as a libpq `key=value` string, e.g.
    /// `host=127.0.0.1 port=5432 dbname=app user=bob sslmode=prefer`.
    pub fn redacted(&self) -> String {
        let mut parts = Vec::new();
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        if !hosts.is_empty() {
            parts.push(format!("host={}", display_value(&hosts.join(","))));
        }
        let addrs = self.pg.get_hostaddrs();
        if !addrs.is_empty() {
            let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            parts.push(format!("hostaddr={}", addrs.join(",")));
        }
        let ports = self.pg.get_ports();
        let ports: Vec<String> =
            if ports.is_empty() { vec!["5432".to_owned()] } else { ports.iter().map(ToString::to_string).collect() };
        parts.push(format!("port={}", ports.join(",")));
        if let Some(dbname) = self.pg.get_dbname() {
            parts.push(format!("dbname={}", display_value(dbname)));
        }
        if let Some(user) = self.pg.get_user() {
            parts.push(format!("user={}", display_value(user)));
        }
        if let Some(name) = self.pg.get_application_name() {
            parts.push(format!("application_name={}", display_value(name)));
        }
        if let Some(timeout) = self.pg.get_connect_timeout() {
            parts.push(format!("connect_timeout={}", timeout.as_secs()));
        }
        parts.push(format!("sslmode={}", self.ssl_mode));
        if let Some(root) = &self.root_cert {
            parts.push(format!("sslrootcert={}", display_value(root)));
        }
        parts.join(" ")
    }
}

#[cfg(unix)]
fn is_socket(host: &Host) -> bool {
    matches!(host, Host::Unix(_))
}

#[cfg(not(unix))]
fn is_socket(_host: &Host) -> bool {
    false
}

/// libpq's default root certificate file: `~/.postgresql/root.crt`
/// (`%APPDATA%\postgresql\root.crt` on Windows).
fn default_root_cert(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    #[cfg(windows)]
    let dir = env("APPDATA").filter(|d| !d.is_empty()).map(|d| PathBuf::from(d).join("postgresql"));
    #[cfg(not(windows))]
    let dir = env("HOME").filter(|d| !d.is_empty()).map(|d| PathBuf::from(d).join(".postgresql"));
    dir.map(|d| d.join("root.crt"))
}
