//! Bearer tokens for the HTTP transport (SPEC §6): each token names a principal. Tokens come
//! from `--auth-token` (principal `default`) and `--auth-token-file` (`principal token` lines,
//! `#` comments). Lookup compares against every token in constant time, so neither the
//! position of a match nor the length of a common prefix shows in the timing.

use std::fmt;
use std::path::Path;

use coldquery_config::ConfigError;

/// An authenticated caller of the HTTP transport (or `anonymous` when auth is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// The principal of every request when no token is configured.
pub const ANONYMOUS: &str = "anonymous";

/// Configured tokens and the principal each names. `Debug` never shows a token.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens").field("principals", &self.principals()).finish()
    }
}

/// Equality in time that depends only on the lengths, not on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

fn valid_principal(name: &str) -> bool {
    // No ':' so that owner keys (`http:<principal>:<mcp session>`) cannot collide.
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

const TOKEN_SETTING: &str = "--auth-token (COLDQUERY_AUTH_TOKEN)";
const FILE_SETTING: &str = "--auth-token-file (COLDQUERY_AUTH_TOKEN_FILE)";

impl Tokens {
    /// Parses a token file: `principal token` per line, blank lines and `#` comments ignored.
    pub fn parse_file(text: &str) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, token] = fields[..] else {
                return Err(format!("line {}: expected 'principal token' (two fields)", number + 1));
            };
            tokens.add(name, token).map_err(|e| format!("line {}: {e}", number + 1))?;
        }
        Ok(tokens)
    }

    fn add(&mut self, principal: &str, token: &str) -> Result<(), String> {
        if !valid_principal(principal) {
            return Err(format!(
                "principal '{principal}' must be 1-64 characters of letters, digits, '_', '-', '.', '@'"
            ));
        }
        if token.is_empty() || token.chars().any(char::is_whitespace) {
            return Err(format!("the token of '{principal}' is empty or contains whitespace"));
        }
        if self.entries.iter().any(|(name, _)| name == principal) {
            return Err(format!("principal '{principal}' is listed twice"));
        }
        if self.lookup(token).is_some() {
            return Err(format!("the token of '{principal}' is also another principal's token"));
        }
        self.entries.push((principal.to_owned(), token.as_bytes().to_vec()));
        Ok(())
    }

    /// From `--auth-token` and `--auth-token-file` (both may be given).
    pub fn from_settings(token: Option<&str>, file: Option<&Path>) -> Result<Tokens, ConfigError> {
        let mut tokens = match file {
            None => Tokens::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    setting: FILE_SETTING.into(),
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                let tokens = Tokens::parse_file(&text).map_err(|e| ConfigError {
                    setting: FILE_SETTING.into(),
                    message: format!("{}: {e}", path.display()),
                })?;
                if tokens.is_empty() {
                    return Err(ConfigError {
                        setting: FILE_SETTING.into(),
                        message: format!("{} holds no 'principal token' line", path.display()),
                    });
                }
                tokens
            }
        };
        if let Some(token) = token {
            let token = token.trim();
            if token.is_empty() {
                return Err(ConfigError { setting: TOKEN_SETTING.into(), message: "is empty".into() });
            }
            tokens.add("default", token).map_err(|e| ConfigError { setting: TOKEN_SETTING.into(), message: e })?;
        }
        Ok(tokens)
    }

    /// True when no token is configured (authentication off).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principals' names.
    pub fn principals(&self) -> Vec<&str> {
        self.entries.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The principal whose token this is. Every token is compared, in constant time.
    pub fn lookup(&self, presented: &str) -> Option<Principal> {
        let mut found = None;
        for (name, token) in &self.entries {
            if constant_time_eq(token, presented.as_bytes()) {
                found = Some(name);
            }
        }
        found.map(|name| Principal(name.clone()))
    }

    /// The principal named by an `Authorization` header value (`Bearer <token>`).
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Principal> {
        let value = authorization?.trim();
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.lookup(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_names_principals() {
        let tokens = Tokens::parse_file("# team tokens\n\nalice  s3cret-a\nbob\ts3cret-b # not a comment\n");
        assert!(tokens.is_err(), "three fields on a line are refused");
        let tokens = Tokens::parse_file("# team tokens\n\nalice  s3cret-a\n  bob\ts3cret-b\n").unwrap();
        assert_eq!(tokens.principals(), vec!["alice", "bob"]);
        assert_eq!(tokens.authenticate(Some("Bearer s3cret-b")), Some(Principal("bob".into())));
        assert_eq!(tokens.authenticate(Some("bearer s3cret-a")), Some(Principal("alice".into())));
        assert_eq!(tokens.authenticate(Some("Bearer s3cret")), None);
        assert_eq!(tokens.authenticate(Some("Bearer s3cret-ab")), None);
        assert_eq!(tokens.authenticate(Some("Basic s3cret-a")), None);
        assert_eq!(tokens.authenticate(Some("s3cret-a")), None);
        assert_eq!(tokens.authenticate(None), None);
    }

    #[test]
    fn malformed_token_files_are_refused() {
        for text in ["alice", "alice a b", "al:ice token", "alice t\nalice u", "alice t\nbob t"] {
            assert!(Tokens::parse_file(text).is_err(), "{text}");
        }
    }

    #[test]
    fn debug_never_shows_tokens() {
        let tokens = Tokens::from_settings(Some("top-secret-value"), None).unwrap();
        assert!(!format!("{tokens:?}").contains("top-secret"));
        assert_eq!(tokens.principals(), vec!["default"]);
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
