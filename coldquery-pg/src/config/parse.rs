//! libpq's connection-string syntax: a URI (`postgres://` / `postgresql://`) or `key=value`
//! pairs, then the `PG*` variables for whatever the string leaves out, then libpq's defaults —
//! gathered into [`Options`], each value with where it came from. Nothing here checks a value
//! beyond its syntax (`pg_config.rs` does).

use std::collections::BTreeMap;

use super::known::{KNOWN, known};
use super::{ConfigError, Origin, shorten};

/// Gathers the options libpq's way: the connection string `url` first (last value of a key
/// wins), then the `PG*` variable of each option it leaves unset, then the defaults — host
/// `localhost` (unless a `hostaddr` is given), user `$USER` (else `postgres`), database = user.
/// Every password met is pushed to `secrets`, so that error messages can be scrubbed of it.
pub(super) fn gather(
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Vec<String>,
) -> Result<Options, ConfigError> {
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
        let user =
            env("USER").or_else(|| env("USERNAME")).filter(|u| !u.is_empty()).unwrap_or_else(|| "postgres".to_owned());
        opts.set("user", user, Origin::Default)?;
    }
    if opts.get("dbname").is_none() {
        let user = opts.get("user").map(|(u, _)| u.to_owned()).unwrap_or_default();
        opts.set("dbname", user, Origin::Default)?;
    }
    Ok(opts)
}

/// The options gathered so far: the last value of each key wins (as in libpq). An empty
/// value counts as set (so no `PG*` variable fills it in) but means "the default".
#[derive(Default)]
pub(super) struct Options {
    values: BTreeMap<&'static str, (String, Origin)>,
}

impl Options {
    fn set(&mut self, key: &str, value: String, origin: Origin) -> Result<(), ConfigError> {
        let known = known(key)
            .ok_or_else(|| ConfigError::UnknownOption { origin: origin.to_string(), option: describe_option(key) })?;
        self.values.insert(known.key, (value, origin));
        Ok(())
    }

    /// True when `key` was given, even empty.
    pub(super) fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The value of `key` unless unset or empty.
    pub(super) fn get(&self, key: &str) -> Option<(&str, Origin)> {
        self.values.get(key).filter(|(v, _)| !v.is_empty()).map(|(v, o)| (v.as_str(), *o))
    }

    /// Every option given, empty ones included, in name order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&'static str, &str, Origin)> {
        self.values.iter().map(|(key, (value, origin))| (*key, value.as_str(), *origin))
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
