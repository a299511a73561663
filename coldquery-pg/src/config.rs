//! Connection settings (SPEC §5): `DATABASE_URL` — a libpq URI (`postgres://`,
//! `postgresql://`) or a libpq `key=value` string — else the libpq `PG*` variables, with
//! `sslmode` and `sslrootcert` as libpq means them.
//!
//! tokio-postgres parses neither `sslmode=verify-ca|verify-full` nor `sslrootcert`, so the
//! connection string is parsed here (libpq's rules), the TLS settings are taken out, and the
//! rest is handed to [`tokio_postgres::Config`] as a re-quoted `key=value` string.
//!
//! No error message and no `Debug` output ever contains the password: messages name the
//! setting at fault and never echo values taken from the URI's user/host part.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as PgSslMode, SslNegotiation};

use crate::tls::{self, PgTls, Roots, Verification};

/// libpq's `sslmode`: whether the connection is encrypted and how the server is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it; the certificate is checked only when root
    /// certificates are available (libpq's rule). The default.
    Prefer,
    /// TLS or fail; the certificate is checked only when root certificates are available.
    Require,
    /// TLS, and the server certificate must chain to a trusted root (any host name).
    VerifyCa,
    /// TLS, the certificate must chain to a trusted root and match the host name.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: [SslMode; 5] =
        [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull];

    /// The libpq spelling, e.g. `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn to_pg(self) -> PgSslMode {
        match self {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = ConfigError;

    /// Parses a libpq spelling (case-sensitive, as libpq is).
    fn from_str(s: &str) -> Result<SslMode, ConfigError> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ConfigError::InvalidSslMode { origin: "the value".to_owned(), value: shorten(s) })
    }
}

const SSL_MODES: &str = "disable, prefer, require, verify-ca, verify-full";

/// A connection setting that cannot be used. The message names the setting at fault and
/// where it came from (`DATABASE_URL` or a `PG*` variable); it never contains the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The connection string cannot be parsed.
    #[error("{origin} is malformed: {reason}")]
    Malformed {
        /// Where the string came from, e.g. `DATABASE_URL`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A connection option ColdQuery does not know (or does not support).
    #[error(
        "unknown or unsupported connection option {option} in {origin}; the supported options are {}",
        supported_options()
    )]
    UnknownOption {
        /// Where the option came from.
        origin: String,
        /// The option, quoted, or a description when it is not a plain name.
        option: String,
    },
    /// A connection option with a value that cannot be used.
    #[error("invalid value for `{option}` in {origin}: {reason}")]
    InvalidValue {
        /// Where the value came from.
        origin: String,
        /// The option, e.g. `port`.
        option: String,
        /// What is expected.
        reason: String,
    },
    /// An `sslmode` that is not one of the five libpq modes.
    #[error(
        "invalid `sslmode` {value:?} in {origin}: expected one of disable, prefer, require, verify-ca, verify-full"
    )]
    InvalidSslMode {
        /// Where the value came from.
        origin: String,
        /// The value given (shortened).
        value: String,
    },
    /// The `sslrootcert` file cannot be read or holds no usable certificate.
    #[error("cannot use the `sslrootcert` file {path:?} (from {origin}): {reason}")]
    RootCertUnreadable {
        /// Where the path came from (`the default` for `~/.postgresql/root.crt`).
        origin: String,
        /// The file.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// `verify-ca` / `verify-full` without any root certificate to verify against.
    #[error(
        "`sslmode={mode}` needs root certificates to verify the server, but none are available: \
         set `sslrootcert` (PGSSLROOTCERT or in DATABASE_URL) to a PEM file, or to `system` \
         for the public web roots{}",
        default_path.as_ref().map(|p| format!(" (the default {p:?} does not exist)")).unwrap_or_default()
    )]
    RootCertMissing {
        /// The mode that needs the roots.
        mode: SslMode,
        /// libpq's default root file, which was looked for.
        default_path: Option<String>,
    },
    /// `sslrootcert=system` with an `sslmode` weaker than `verify-full` (libpq's rule).
    #[error("`sslmode={mode}` (from {origin}) is too weak to use with `sslrootcert=system`: use `sslmode=verify-full`")]
    WeakSslModeWithSystemRoots {
        /// Where the `sslmode` came from.
        origin: String,
        /// The weak mode.
        mode: SslMode,
    },
    /// The TLS client configuration cannot be built.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

impl ConfigError {
    /// Replaces every occurrence of a known secret in the message fields (a second line of
    /// defence: messages are built never to include values that could hold a password).
    fn redact(self, secrets: &[String]) -> ConfigError {
        let scrub = |s: String| {
            secrets
                .iter()
                .filter(|secret| secret.chars().count() >= 4)
                .fold(s, |s, secret| s.replace(secret.as_str(), "***"))
        };
        match self {
            ConfigError::Malformed { origin, reason } => {
                ConfigError::Malformed { origin: scrub(origin), reason: scrub(reason) }
            }
            ConfigError::UnknownOption { origin, option } => {
                ConfigError::UnknownOption { origin: scrub(origin), option: scrub(option) }
            }
            ConfigError::InvalidValue { origin, option, reason } => {
                ConfigError::InvalidValue { origin: scrub(origin), option: scrub(option), reason: scrub(reason) }
            }
            ConfigError::InvalidSslMode { origin, value } => {
                ConfigError::InvalidSslMode { origin: scrub(origin), value: scrub(value) }
            }
            ConfigError::RootCertUnreadable { origin, path, reason } => {
                ConfigError::RootCertUnreadable { origin: scrub(origin), path: scrub(path), reason: scrub(reason) }
            }
            ConfigError::RootCertMissing { mode, default_path } => {
                ConfigError::RootCertMissing { mode, default_path: default_path.map(scrub) }
            }
            ConfigError::WeakSslModeWithSystemRoots { origin, mode } => {
                ConfigError::WeakSslModeWithSystemRoots { origin: scrub(origin), mode }
            }
            ConfigError::Tls(reason) => ConfigError::Tls(scrub(reason)),
        }
    }
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The connection string (`--database-url` / `DATABASE_URL`).
    Url,
    /// A `PG*` variable.
    Env(&'static str),
    /// A built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Url => f.write_str("DATABASE_URL"),
            Origin::Env(var) => f.write_str(var),
            Origin::Default => f.write_str("the default"),
        }
    }
}

/// A connection option ColdQuery accepts: its libpq name, its `PG*` variable, and what a
/// valid value looks like (for error messages).
struct Known {
    key: &'static str,
    env: Option<&'static str>,
    expected: &'static str,
}

const KNOWN: &[Known] = &[
    Known { key: "host", env: Some("PGHOST"), expected: "host names or socket directories" },
    Known { key: "hostaddr", env: Some("PGHOSTADDR"), expected: "a comma-separated list of numeric IP addresses" },
    Known {
        key: "port",
        env: Some("PGPORT"),
        expected: "a port number from 1 to 65535, or a comma-separated list of them",
    },
    Known { key: "dbname", env: Some("PGDATABASE"), expected: "a database name" },
    Known { key: "user", env: Some("PGUSER"), expected: "a user name" },
    Known { key: "password", env: Some("PGPASSWORD"), expected: "a password" },
    Known { key: "options", env: Some("PGOPTIONS"), expected: "server options" },
    Known { key: "application_name", env: Some("PGAPPNAME"), expected: "a name" },
    Known { key: "sslmode", env: Some("PGSSLMODE"), expected: SSL_MODES },
    Known { key: "sslrootcert", env: Some("PGSSLROOTCERT"), expected: "a PEM file or `system`" },
    Known { key: "sslnegotiation", env: Some("PGSSLNEGOTIATION"), expected: "one of postgres, direct" },
    Known { key: "connect_timeout", env: Some("PGCONNECT_TIMEOUT"), expected: "a whole number of seconds" },
    Known { key: "tcp_user_timeout", env: None, expected: "a whole number of milliseconds" },
    Known { key: "keepalives", env: None, expected: "0 or 1" },
    Known { key: "keepalives_idle", env: None, expected: "a whole number of seconds" },
    Known { key: "keepalives_interval", env: None, expected: "a whole number of seconds" },
    Known { key: "keepalives_retries", env: None, expected: "a non-negative whole number" },
    Known {
        key: "target_session_attrs",
        env: Some("PGTARGETSESSIONATTRS"),
        expected: "one of any, read-write, read-only",
    },
    Known { key: "channel_binding", env: Some("PGCHANNELBINDING"), expected: "one of disable, prefer, require" },
    Known { key: "load_balance_hosts", env: Some("PGLOADBALANCEHOSTS"), expected: "one of disable, random" },
];

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

/// The supported option names, for the unknown-option message.
fn supported_options() -> String {
    let mut names: Vec<&str> = KNOWN.iter().map(|k| k.key).collect();
    names.push("ssl (URI only)");
    names.join(", ")
}

fn known(key: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.key == key)
}

/// The options gathered so far: the last value of each key wins (as in libpq). An empty
/// value counts as set (so no `PG*` variable fills it in) but means "the default".
#[derive(Default)]
struct Options {
    values: BTreeMap<&'static str, (String, Origin)>,
}

impl Options {
    fn set(&mut self, key: &str, value: String, origin: Origin) -> Result<(), ConfigError> {
        let known = known(key)
            .ok_or_else(|| ConfigError::UnknownOption { origin: origin.to_string(), option: describe_option(key) })?;
        self.values.insert(known.key, (value, origin));
        Ok(())
    }

    fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The value of `key` unless unset or empty.
    fn get(&self, key: &str) -> Option<(&str, Origin)> {
        self.values.get(key).filter(|(v, _)| !v.is_empty()).map(|(v, o)| (v.as_str(), *o))
    }
}

/// `option` quoted when it is a plain option name, else a description (it could be a
/// fragment of a mis-quoted password).
fn describe_option(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 40
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { format!("`{key}`") } else { "(a name that is not an option name)".to_owned() }
}

/// At most 40 characters of `s`, for echoing a (non-secret) bad value.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

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

/// Parses a libpq connection string (URI or `key=value`) into `opts`.
fn parse_conninfo(s: &str, opts: &mut Options, secrets: &mut Vec<String>) -> Result<(), ConfigError> {
    let malformed =
        |reason: &str| ConfigError::Malformed { origin: Origin::Url.to_string(), reason: reason.to_owned() };
    let trimmed = s.trim();
    for prefix in ["postgresql://", "postgres://"] {
        if let Some(rest) = trimmed.strip_prefix(prefix) {
            return parse_uri(rest, opts, secrets);
        }
    }
    if let Some(idx) = trimmed.find("://") {
        let scheme = &trimmed[..idx];
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
            return Err(malformed(&format!(
                "unsupported URI scheme `{}`: expected postgres:// or postgresql://, or libpq key=value pairs",
                shorten(scheme)
            )));
        }
    }
    parse_key_values(s, opts, secrets)
}

/// libpq's `key=value` syntax: whitespace-separated pairs, spaces allowed around `=`,
/// values optionally single-quoted; `\` escapes the next character.
fn parse_key_values(s: &str, opts: &mut Options, secrets: &mut Vec<String>) -> Result<(), ConfigError> {
    let malformed = |reason: String| ConfigError::Malformed { origin: Origin::Url.to_string(), reason };
    let mut it = s.char_indices().peekable();
    loop {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = it.peek() else { break };
        let mut key = String::new();
        while let Some((_, c)) = it.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if it.next_if(|(_, c)| *c == '=').is_none() {
            return Err(malformed(format!(
                "expected `key=value` pairs or a postgres:// URI; missing `=` after the keyword at byte {start}"
            )));
        }
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match it.next() {
                    None => {
                        return Err(malformed(format!(
                            "unterminated quoted value (the value of the keyword at byte {start})"
                        )));
                    }
                    Some((_, '\'')) => break,
                    Some((_, '\\')) => match it.next() {
                        Some((_, c)) => value.push(c),
                        None => {
                            return Err(malformed(format!(
                                "unterminated quoted value (the value of the keyword at byte {start})"
                            )));
                        }
                    },
                    Some((_, c)) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = it.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some((_, escaped)) = it.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if key == "password" {
            secrets.push(value.clone());
        }
        opts.set(&key, value, Origin::Url)?;
    }
    Ok(())
}

/// libpq's URI syntax (after the scheme):
/// `[user[:password]@][host][:port][,...][/dbname][?param=value&...]`.
fn parse_uri(rest: &str, opts: &mut Options, secrets: &mut Vec<String>) -> Result<(), ConfigError> {
    let malformed =
        |reason: &str| ConfigError::Malformed { origin: Origin::Url.to_string(), reason: reason.to_owned() };

    // Credentials: libpq looks for `@` before the first `/`.
    let mut rest = rest;
    if let Some(at) = rest.find(['@', '/']).filter(|&i| rest.as_bytes()[i] == b'@') {
        let creds = &rest[..at];
        rest = &rest[at + 1..];
        let (user, password) = match creds.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (creds, None),
        };
        if let Some(password) = password {
            secrets.push(password.to_owned());
            let decoded = percent_decode(password, "the password")?;
            secrets.push(decoded.clone());
            opts.set("password", decoded, Origin::Url)?;
        }
        let user = percent_decode(user, "the user name")?;
        if !user.is_empty() {
            opts.set("user", user, Origin::Url)?;
        }
    }

    // Hosts and ports, up to `/`, `?` or the end.
    let netloc_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (netloc, tail) = rest.split_at(netloc_end);
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    if !netloc.is_empty() {
        for chunk in netloc.split(',') {
            let (host, port) = if let Some(bracketed) = chunk.strip_prefix('[') {
                let close =
                    bracketed.find(']').ok_or_else(|| malformed("missing `]` after an IPv6 address in the host"))?;
                let host = &bracketed[..close];
                if host.is_empty() {
                    return Err(malformed("empty IPv6 address in the host"));
                }
                let after = &bracketed[close + 1..];
                let port = match after.strip_prefix(':') {
                    Some(port) => port,
                    None if after.is_empty() => "",
                    None => {
                        return Err(malformed(
                            "unexpected characters after an IPv6 address in the host (expected `:port`)",
                        ));
                    }
                };
                (host, port)
            } else {
                chunk.split_once(':').unwrap_or((chunk, ""))
            };
            hosts.push(percent_decode(host, "the host")?);
            ports.push(percent_decode(port, "the port")?);
        }
    }
    if hosts.iter().any(|h| !h.is_empty()) || hosts.len() > 1 {
        let hosts: Vec<&str> = hosts.iter().map(|h| if h.is_empty() { "localhost" } else { h.as_str() }).collect();
        opts.set("host", hosts.join(","), Origin::Url)?;
    }
    if ports.iter().any(|p| !p.is_empty()) || ports.len() > 1 {
        opts.set("port", ports.join(","), Origin::Url)?;
    }

    // Database name.
    let mut tail = tail;
    if let Some(path) = tail.strip_prefix('/') {
        let end = path.find('?').unwrap_or(path.len());
        let dbname = percent_decode(&path[..end], "the database name")?;
        if !dbname.is_empty() {
            opts.set("dbname", dbname, Origin::Url)?;
        }
        tail = &path[end..];
    }

    // Query parameters.
    if let Some(query) = tail.strip_prefix('?') {
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let Some((key, value)) = param.split_once('=') else {
                return Err(malformed("a query parameter has no `=` (expected `?key=value&...`)"));
            };
            if value.contains('=') {
                return Err(malformed("a query parameter has more than one `=` (percent-encode it as %3D)"));
            }
            let key = percent_decode(key, "a query parameter name")?;
            let value = percent_decode(value, &format!("the `{}` query parameter", shorten(&key)))?;
            if key == "password" {
                secrets.push(value.clone());
            }
            if key == "ssl" {
                // libpq's JDBC-compatible spelling of sslmode=require.
                if value != "true" {
                    return Err(ConfigError::InvalidValue {
                        origin: Origin::Url.to_string(),
                        option: "ssl".to_owned(),
                        reason: "the only accepted value is `true` (meaning sslmode=require)".to_owned(),
                    });
                }
                opts.set("sslmode", "require".to_owned(), Origin::Url)?;
            } else {
                opts.set(&key, value, Origin::Url)?;
            }
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes; `what` names the part of the URI for error messages.
fn percent_decode(s: &str, what: &str) -> Result<String, ConfigError> {
    let malformed = |reason: String| ConfigError::Malformed { origin: Origin::Url.to_string(), reason };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| malformed(format!("invalid percent-encoding in {what}")))?;
            if byte == 0 {
                return Err(malformed(format!("forbidden %00 in {what}")));
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| malformed(format!("{what} is not valid UTF-8 once percent-decoded")))
}

/// Connection settings for tokio-postgres plus the TLS settings it cannot hold.
///
/// `Debug` never shows the password (tokio-postgres's own `Debug` redacts it too).
#[derive(Clone)]
pub struct PgConfig {
    pg: tokio_postgres::Config,
    ssl_mode: SslMode,
    verification: Verification,
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
        let mut opts = Options::default();
        if let Some(url) = url {
            parse_conninfo(url, &mut opts, secrets)?;
        }
        for known in KNOWN {
            let Some(var) = known.env else { continue };
            if opts.is_set(known.key) {
                continue;
            }
            if let Some(value) = env(var) {
                if known.key == "password" {
                    secrets.push(value.clone());
                }
                opts.set(known.key, value, Origin::Env(var))?;
            }
        }

        // Defaults.
        if opts.get("host").is_none() && opts.get("hostaddr").is_none() {
            opts.set("host", "localhost".to_owned(), Origin::Default)?;
        }
        if opts.get("user").is_none() {
            let user = env("USER")
                .or_else(|| env("USERNAME"))
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "postgres".to_owned());
            opts.set("user", user, Origin::Default)?;
        }
        if opts.get("dbname").is_none() {
            let user = opts.get("user").map(|(u, _)| u.to_owned()).unwrap_or_default();
            opts.set("dbname", user, Origin::Default)?;
        }

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
        for (key, (value, origin)) in &opts.values {
            if OURS.contains(key) || value.is_empty() {
                continue;
            }
            let pair = format!("{key}={}", quote(value));
            let invalid = |reason: &str| ConfigError::InvalidValue {
                origin: origin.to_string(),
                option: (*key).to_owned(),
                reason: reason.to_owned(),
            };
            let expected = known(key).map_or("a valid value", |k| k.expected);
            if *key == "port" {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_certs::CA_PEM;
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const PW: &str = "s3cr3t-pw";

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name: &str| map.get(name).cloned()
    }

    fn parse(url: &str, vars: &[(&str, &str)]) -> Result<PgConfig, ConfigError> {
        PgConfig::from_env_and_url(Some(url), &env_of(vars))
    }

    fn ok(url: &str, vars: &[(&str, &str)]) -> PgConfig {
        match parse(url, vars) {
            Ok(c) => c,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn err(url: &str, vars: &[(&str, &str)]) -> ConfigError {
        match parse(url, vars) {
            Ok(c) => panic!("{url}: expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    fn hosts(c: &PgConfig) -> Vec<String> {
        c.pg()
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => format!("unix:{}", path.display()),
            })
            .collect()
    }

    /// A directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "coldquery-config-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("dir");
            }
            std::fs::write(&path, contents).expect("write");
            path
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn uri_with_everything() {
        let c = ok(&format!("postgres://bob:{PW}@db.example.com:6543/app?sslmode=require&application_name=cq"), &[]);
        assert_eq!(hosts(&c), ["db.example.com"]);
        assert_eq!(c.pg().get_ports(), [6543]);
        assert_eq!(c.pg().get_user(), Some("bob"));
        assert_eq!(c.pg().get_password(), Some(PW.as_bytes()));
        assert_eq!(c.pg().get_dbname(), Some("app"));
        assert_eq!(c.pg().get_application_name(), Some("cq"));
        assert_eq!(c.ssl_mode(), SslMode::Require);
        assert_eq!(c.pg().get_ssl_mode(), PgSslMode::Require);
        assert!(matches!(c.verification, Verification::EncryptOnly));
        assert_eq!(
            c.redacted(),
            "host=db.example.com port=6543 dbname=app user=bob application_name=cq sslmode=require"
        );
        assert!(!format!("{c:?}").contains(PW), "{c:?}");
        assert!(format!("{c:?}").contains("<redacted>"));
    }

    #[test]
    fn uri_percent_decoding_sockets_and_defaults() {
        let c = ok("postgresql://us%40er:p%23w@%2Fvar%2Frun%2Fpostgresql/my%20db", &[]);
        assert_eq!(c.pg().get_user(), Some("us@er"));
        assert_eq!(c.pg().get_password(), Some("p#w".as_bytes()));
        assert_eq!(hosts(&c), ["unix:/var/run/postgresql"]);
        assert_eq!(c.pg().get_dbname(), Some("my db"));
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
        // No TLS over Unix sockets (libpq never tries).
        assert_eq!(c.pg().get_ssl_mode(), PgSslMode::Disable);
        assert_eq!(c.redacted(), "host=/var/run/postgresql port=5432 dbname='my db' user=us@er sslmode=prefer");

        let c = ok("postgres:///app?host=/tmp&port=5433", &[("USER", "carol")]);
        assert_eq!(hosts(&c), ["unix:/tmp"]);
        assert_eq!(c.pg().get_ports(), [5433]);
        assert_eq!(c.pg().get_user(), Some("carol"));

        let c = ok("postgres://", &[]);
        assert_eq!(hosts(&c), ["localhost"]);
        assert_eq!(c.pg().get_user(), Some("postgres"));
        assert_eq!(c.pg().get_dbname(), Some("postgres"));
    }

    #[test]
    fn uri_ipv6_and_several_hosts() {
        let c = ok("postgres://[::1]:5433,[fe80::1],db2:7000/db", &[]);
        assert_eq!(hosts(&c), ["::1", "fe80::1", "db2"]);
        assert_eq!(c.pg().get_ports(), [5433, 5432, 7000]);
        assert_eq!(
            c.redacted(),
            format!("host=::1,fe80::1,db2 port=5433,5432,7000 dbname=db user=postgres sslmode=prefer")
        );

        let c = ok("postgres://h1,h2/db", &[("PGPORT", "6000")]);
        assert_eq!(hosts(&c), ["h1", "h2"]);
        assert_eq!(c.pg().get_ports(), [5432, 5432]);
    }

    #[test]
    fn uri_ssl_true_means_require() {
        assert_eq!(ok("postgres://h/db?ssl=true", &[]).ssl_mode(), SslMode::Require);
        let e = err("postgres://h/db?ssl=yes", &[]);
        assert!(e.to_string().contains("`ssl`"), "{e}");
    }

    #[test]
    fn key_value_strings_with_libpq_quoting() {
        let c = ok(
            r"host=db.internal port = 5433 dbname='my db' user=bob password='it\'s \\ s3cr3t-pw' application_name=a\ b",
            &[],
        );
        assert_eq!(hosts(&c), ["db.internal"]);
        assert_eq!(c.pg().get_ports(), [5433]);
        assert_eq!(c.pg().get_dbname(), Some("my db"));
        assert_eq!(c.pg().get_password(), Some(r"it's \ s3cr3t-pw".as_bytes()));
        assert_eq!(c.pg().get_application_name(), Some("a b"));
        assert!(!c.redacted().contains(PW));
        assert!(!format!("{c:?}").contains(PW));

        // Last value wins, as in libpq.
        let c = ok("host=a host=b sslmode=disable", &[]);
        assert_eq!(hosts(&c), ["b"]);
        assert_eq!(c.ssl_mode(), SslMode::Disable);
        assert_eq!(c.pg().get_ssl_mode(), PgSslMode::Disable);

        // Values that tokio-postgres must get back intact.
        let c = ok(r"options='-c search_path=a\'b' connect_timeout=9 hostaddr=127.0.0.1", &[]);
        assert_eq!(c.pg().get_options(), Some("-c search_path=a'b"));
        assert_eq!(c.pg().get_connect_timeout(), Some(&std::time::Duration::from_secs(9)));
        assert!(c.pg().get_hosts().is_empty(), "hostaddr alone needs no default host");
        assert_eq!(
            c.redacted(),
            "hostaddr=127.0.0.1 port=5432 dbname=postgres user=postgres connect_timeout=9 sslmode=prefer"
        );
    }

    #[test]
    fn pg_variables_when_there_is_no_url() {
        let vars = [
            ("PGHOST", "pg.example.com"),
            ("PGPORT", "6432"),
            ("PGUSER", "alice"),
            ("PGPASSWORD", PW),
            ("PGDATABASE", "shop"),
            ("PGSSLMODE", "disable"),
            ("PGAPPNAME", "tool"),
            ("PGCONNECT_TIMEOUT", "7"),
            ("USER", "ignored"),
        ];
        let c = PgConfig::from_env_and_url(None, &env_of(&vars)).expect("config");
        assert_eq!(hosts(&c), ["pg.example.com"]);
        assert_eq!(c.pg().get_ports(), [6432]);
        assert_eq!(c.pg().get_user(), Some("alice"));
        assert_eq!(c.pg().get_password(), Some(PW.as_bytes()));
        assert_eq!(c.pg().get_dbname(), Some("shop"));
        assert_eq!(c.pg().get_application_name(), Some("tool"));
        assert_eq!(c.pg().get_connect_timeout(), Some(&std::time::Duration::from_secs(7)));
        assert_eq!(c.ssl_mode(), SslMode::Disable);
        assert_eq!(
            c.redacted(),
            "host=pg.example.com port=6432 dbname=shop user=alice application_name=tool connect_timeout=7 sslmode=disable"
        );
    }

    #[test]
    fn pg_variables_fill_in_what_the_url_leaves_out() {
        let vars = [("PGUSER", "alice"), ("PGDATABASE", "envdb"), ("PGPORT", "6000"), ("PGHOST", "envhost")];
        let c = ok("postgres://urlhost/", &vars);
        assert_eq!(hosts(&c), ["urlhost"]);
        assert_eq!(c.pg().get_ports(), [6000]);
        assert_eq!(c.pg().get_user(), Some("alice"));
        assert_eq!(c.pg().get_dbname(), Some("envdb"));

        let c = ok("postgres://bob@urlhost:5999/urldb", &vars);
        assert_eq!(c.pg().get_ports(), [5999]);
        assert_eq!(c.pg().get_user(), Some("bob"));
        assert_eq!(c.pg().get_dbname(), Some("urldb"));

        let c = ok("dbname=kv", &[("PGSSLMODE", "require"), ("PGPASSWORD", PW)]);
        assert_eq!(c.ssl_mode(), SslMode::Require);
        assert_eq!(c.pg().get_password(), Some(PW.as_bytes()));
        // An empty value in the URL still counts as given: the variable does not apply.
        let c = ok("postgres://h/db?sslmode=", &[("PGSSLMODE", "require")]);
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
    }

    #[test]
    fn defaults() {
        let c = PgConfig::from_env_and_url(None, &env_of(&[("USER", "carol")])).expect("config");
        assert_eq!(c.redacted(), "host=localhost port=5432 dbname=carol user=carol sslmode=prefer");
        assert_eq!(c.pg().get_ssl_mode(), PgSslMode::Prefer);
        let c = PgConfig::from_env_and_url(None, &env_of(&[])).expect("config");
        assert_eq!(c.redacted(), "host=localhost port=5432 dbname=postgres user=postgres sslmode=prefer");
        // An empty or blank URL is no setting at all.
        let c = ok("   ", &[("PGUSER", "dave")]);
        assert_eq!(c.pg().get_user(), Some("dave"));
    }

    #[test]
    fn network_defaults_unless_the_url_says_otherwise() {
        let c = ok("postgres://h/db", &[]);
        assert_eq!(c.pg().get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        assert_eq!(c.pg().get_keepalives_interval(), Some(DEFAULT_KEEPALIVES_INTERVAL));
        assert_eq!(c.pg().get_keepalives_retries(), Some(DEFAULT_KEEPALIVES_RETRIES));
        assert!(c.pg().get_keepalives());
        assert_eq!(c.pg().get_tcp_user_timeout(), Some(&DEFAULT_TCP_USER_TIMEOUT));
        assert_eq!(c.step_timeout(), DEFAULT_TCP_USER_TIMEOUT);

        // libpq counts tcp_user_timeout in milliseconds (tokio-postgres in seconds).
        let c = ok(
            "postgres://h/db?keepalives_idle=7&keepalives_interval=2&keepalives_retries=9&tcp_user_timeout=2500",
            &[],
        );
        assert_eq!(c.pg().get_keepalives_idle(), Duration::from_secs(7));
        assert_eq!(c.pg().get_keepalives_interval(), Some(Duration::from_secs(2)));
        assert_eq!(c.pg().get_keepalives_retries(), Some(9));
        assert_eq!(c.pg().get_tcp_user_timeout(), Some(&Duration::from_millis(2500)));
        assert_eq!(c.step_timeout(), Duration::from_millis(2500));

        // 0 turns TCP_USER_TIMEOUT off; the steps keep the default bound.
        let c = ok("host=h tcp_user_timeout=0 keepalives=0", &[]);
        assert_eq!(c.pg().get_tcp_user_timeout(), None);
        assert!(!c.pg().get_keepalives());
        assert_eq!(c.step_timeout(), DEFAULT_TCP_USER_TIMEOUT);
        // An empty value means the default.
        let c = ok("postgres://h/db?tcp_user_timeout=", &[]);
        assert_eq!(c.pg().get_tcp_user_timeout(), Some(&DEFAULT_TCP_USER_TIMEOUT));

        let e = err("postgres://h/db?tcp_user_timeout=soon", &[]);
        assert!(e.to_string().contains("`tcp_user_timeout`") && e.to_string().contains("milliseconds"), "{e}");
    }

    #[test]
    fn all_five_ssl_modes() {
        let dir = TempDir::new();
        let ca = dir.write("ca.crt", CA_PEM);
        let expected_pg =
            [PgSslMode::Disable, PgSslMode::Prefer, PgSslMode::Require, PgSslMode::Require, PgSslMode::Require];
        for (mode, pg_mode) in SslMode::ALL.into_iter().zip(expected_pg) {
            assert_eq!(SslMode::from_str(mode.as_str()).expect("parse"), mode);
            assert_eq!(mode.to_string(), mode.as_str());
            let url = format!("postgres://h/db?sslmode={mode}&sslrootcert={}", ca.display());
            let c = ok(&url, &[]);
            assert_eq!(c.ssl_mode(), mode);
            assert_eq!(c.pg().get_ssl_mode(), pg_mode);
            let v = &c.verification;
            match mode {
                SslMode::Disable => assert!(matches!(v, Verification::Off), "{v:?}"),
                SslMode::VerifyFull => assert!(matches!(v, Verification::Full(_)), "{v:?}"),
                // libpq: with a root file, prefer and require verify like verify-ca.
                _ => assert!(matches!(v, Verification::Chain(_)), "{v:?}"),
            }
            c.tls_connector().expect("tls_connector");
            let kv = ok(&format!("host=h sslmode={mode}  sslrootcert='{}'", ca.display()), &[]);
            assert_eq!(kv.ssl_mode(), mode);
            let env = PgConfig::from_env_and_url(
                None,
                &env_of(&[("PGSSLMODE", mode.as_str()), ("PGSSLROOTCERT", &ca.display().to_string())]),
            )
            .expect("env");
            assert_eq!(env.ssl_mode(), mode);
        }
        assert!(SslMode::from_str("Require").is_err(), "case-sensitive, as libpq");
        assert!(SslMode::from_str("allow").is_err());
    }

    #[test]
    fn root_certificates() {
        let dir = TempDir::new();
        let ca = dir.write("ca.crt", CA_PEM);
        let c = ok(&format!("postgres://h/db?sslmode=verify-ca&sslrootcert={}", ca.display()), &[]);
        assert_eq!(
            c.redacted(),
            format!("host=h port=5432 dbname=db user=postgres sslmode=verify-ca sslrootcert={}", ca.display())
        );
        // require without roots: encrypt only.
        let c = ok("postgres://h/db?sslmode=require", &[]);
        assert!(matches!(c.verification, Verification::EncryptOnly));

        // libpq's default file, found through HOME.
        let home = TempDir::new();
        let default = home.write(".postgresql/root.crt", CA_PEM);
        let home_var = home.path().display().to_string();
        let c = ok("postgres://h/db?sslmode=require", &[("HOME", &home_var)]);
        assert!(matches!(c.verification, Verification::Chain(_)));
        assert!(c.redacted().ends_with(&format!("sslrootcert={}", default.display())), "{}", c.redacted());
        let c = ok("postgres://h/db?sslmode=verify-full", &[("HOME", &home_var)]);
        assert!(matches!(c.verification, Verification::Full(_)));
        // ...but not with sslmode=disable.
        let c = ok("postgres://h/db?sslmode=disable", &[("HOME", &home_var)]);
        assert!(matches!(c.verification, Verification::Off));
        assert!(!c.redacted().contains("sslrootcert"));

        // sslrootcert=system: the web roots, verify-full by default.
        let c = ok("postgres://h/db?sslrootcert=system", &[]);
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        assert!(matches!(c.verification, Verification::Full(Roots::System)));
        assert!(c.redacted().ends_with("sslmode=verify-full sslrootcert=system"));
        c.tls_connector().expect("tls_connector");
        let c = PgConfig::from_env_and_url(None, &env_of(&[("PGSSLROOTCERT", "system")])).expect("env");
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);

        // Only Unix sockets: no TLS, so no roots needed (libpq never tries TLS there).
        let c = ok("host=/run/postgresql sslmode=verify-full", &[]);
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(c.pg().get_ssl_mode(), PgSslMode::Disable);
        c.tls_connector().expect("connector");
    }

    #[test]
    fn application_name() {
        let mut c = ok("postgres://h/db?application_name=mine", &[]);
        c.set_fallback_application_name("coldquery");
        assert_eq!(c.pg().get_application_name(), Some("mine"));
        let mut c = ok("postgres://h/db", &[]);
        c.set_fallback_application_name("coldquery");
        assert_eq!(c.pg().get_application_name(), Some("coldquery"));
    }

    /// Every error names its setting and never shows the password, in Display or Debug.
    #[test]
    fn errors_name_the_setting_and_never_the_password() {
        let dir = TempDir::new();
        let junk = dir.write("junk.crt", "this is not a certificate\n");
        let no_home = TempDir::new();
        let no_home_var = no_home.path().display().to_string();
        /// A connection string, the environment, and what the message must mention.
        type Case<'a> = (String, Vec<(&'a str, &'a str)>, Vec<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (format!("postgres://u:{PW}@host:notaport/db"), vec![], vec!["`port`", "DATABASE_URL", "1 to 65535"]),
            (format!("postgres://u:{PW}@host:0/db"), vec![], vec!["`port`"]),
            (format!("postgres://u:{PW}@[::1"), vec![], vec!["malformed", "IPv6"]),
            ("postgres://[::1".to_owned(), vec![], vec!["malformed", "IPv6"]),
            (format!("postgres://u:{PW}@[::1]x/db"), vec![], vec!["malformed", "IPv6"]),
            ("garbage".to_owned(), vec![], vec!["malformed", "key=value"]),
            (format!("total garbage {PW}"), vec![], vec!["malformed", "missing `=`"]),
            (format!("mysql://u:{PW}@h/db"), vec![], vec!["malformed", "`mysql`", "postgres://"]),
            (
                format!("postgres://u:{PW}@h/db?sslmode=bogus"),
                vec![],
                vec!["`sslmode`", "\"bogus\"", SSL_MODES, "DATABASE_URL"],
            ),
            (format!("host=h password={PW} sslmode=bogus"), vec![], vec!["`sslmode`", SSL_MODES]),
            (format!("host=h password='{PW}"), vec![], vec!["malformed", "unterminated"]),
            (format!("host=h password={PW} port=x"), vec![], vec!["`port`"]),
            (format!("postgres://u:{PW}@h/db?bogus_option=1"), vec![], vec!["`bogus_option`"]),
            (format!("postgres://u:{PW}@h/db?noequals"), vec![], vec!["malformed", "`=`"]),
            (format!("postgres://u:{PW}@h/db?a=b=c"), vec![], vec!["malformed", "`=`"]),
            (format!("postgres://u:{PW}@h/d%zzb"), vec![], vec!["malformed", "percent-encoding", "database name"]),
            (format!("postgres://u:{PW}%00@h/db"), vec![], vec!["malformed", "%00", "password"]),
            (format!("postgres://u:{PW}@h/db?connect_timeout=soon"), vec![], vec!["`connect_timeout`", "seconds"]),
            (
                format!("postgres://u:{PW}@h/db?target_session_attrs=primary"),
                vec![],
                vec!["`target_session_attrs`", "read-write"],
            ),
            (format!("postgres://u:{PW}@h/db?hostaddr=not-an-ip"), vec![], vec!["`hostaddr`"]),
            (format!("postgres://u:{PW}@a,b/db?port=1,2,3"), vec![], vec!["`port`", "3 ports for 2 hosts"]),
            (format!("postgres://u:{PW}@a,b/db?hostaddr=127.0.0.1"), vec![], vec!["`hostaddr`"]),
            (format!("postgres://u:{PW}@h/db?sslnegotiation=direct"), vec![], vec!["`sslnegotiation`", "prefer"]),
            (
                format!("postgres://u:{PW}@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/root.crt"),
                vec![],
                vec!["`sslrootcert`", "/nonexistent/root.crt", "DATABASE_URL"],
            ),
            (
                format!("postgres://u:{PW}@h/db?sslmode=require&sslrootcert={}", junk.display()),
                vec![],
                vec!["`sslrootcert`", "no PEM certificate"],
            ),
            (
                format!("postgres://u:{PW}@h/db?sslmode=verify-full"),
                vec![],
                vec!["`sslmode=verify-full`", "sslrootcert", "system"],
            ),
            (
                format!("postgres://u:{PW}@h/db?sslmode=verify-ca"),
                vec![("HOME", no_home_var.as_str())],
                vec!["`sslmode=verify-ca`", "root.crt", "does not exist"],
            ),
            (
                format!("postgres://u:{PW}@h/db?sslmode=require&sslrootcert=system"),
                vec![],
                vec!["`sslmode=require`", "verify-full"],
            ),
            // A password with an unencoded '/' is mis-split by libpq's rules: still no echo.
            (format!("postgres://u:{PW}/x@h/db"), vec![], vec!["`port`"]),
            // Settings from PG* variables are named by their variable.
            ("postgres://h/db".to_owned(), vec![("PGPASSWORD", PW), ("PGPORT", "x")], vec!["`port`", "PGPORT"]),
            (
                "postgres://h/db".to_owned(),
                vec![("PGPASSWORD", PW), ("PGSSLMODE", "bogus")],
                vec!["`sslmode`", "PGSSLMODE"],
            ),
            (
                "postgres://h/db".to_owned(),
                vec![("PGPASSWORD", PW), ("PGSSLROOTCERT", "/nonexistent/r.crt")],
                vec!["`sslrootcert`", "PGSSLROOTCERT"],
            ),
        ];
        for (url, vars, needles) in &cases {
            let e = err(url, vars);
            let (display, debug) = (e.to_string(), format!("{e:?}"));
            for text in [&display, &debug] {
                assert!(!text.contains(PW), "{url}: password leaked: {text}");
                assert!(!text.contains("s3cr3t"), "{url}: part of the password leaked: {text}");
            }
            for needle in needles {
                assert!(display.contains(needle), "{url}: {display:?} should mention {needle:?}");
            }
        }
    }

    #[test]
    fn scrubbing_is_a_second_line_of_defence() {
        let e = ConfigError::Malformed { origin: "x".into(), reason: format!("oops {PW}") };
        let e = e.redact(&[PW.to_owned()]);
        assert_eq!(e.to_string(), "x is malformed: oops ***");
    }
}
