//! Connection settings (SPEC §5): `DATABASE_URL` — a libpq URI (`postgres://`,
//! `postgresql://`) or a libpq `key=value` string — else the libpq `PG*` variables, with
//! `sslmode` and `sslrootcert` as libpq means them.
//!
//! tokio-postgres parses neither `sslmode=verify-ca|verify-full` nor `sslrootcert`, so the
//! connection string is parsed here (libpq's rules), the TLS settings are taken out, and the
//! rest is handed to tokio-postgres as a re-quoted `key=value` string. One job a file:
//!
//! - this file: the vocabulary the others share — [`SslMode`], [`ConfigError`] and where a
//!   setting came from (`Origin`);
//! - `known.rs`: the options ColdQuery accepts, their `PG*` variables and valid values;
//! - `parse.rs`: libpq's syntax — the URI, `key=value` strings, the `PG*` variables and the
//!   defaults, gathered into one set of options;
//! - `pg_config.rs`: [`PgConfig`] — those options checked and turned into the driver's settings
//!   and the TLS verification, and shown back without the password.
//!
//! No error message and no `Debug` output ever contains the password: messages name the
//! setting at fault and never echo values taken from the URI's user/host part.

mod known;
mod parse;
mod pg_config;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use tokio_postgres::config::SslMode as PgSslMode;

pub use pg_config::{
    DEFAULT_KEEPALIVES_IDLE, DEFAULT_KEEPALIVES_INTERVAL, DEFAULT_KEEPALIVES_RETRIES, DEFAULT_TCP_USER_TIMEOUT,
    PgConfig,
};

use known::supported_options;

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

/// At most 40 characters of `s`, for echoing a (non-secret) bad value.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}
