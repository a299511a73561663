//! Preview, then confirm: which writes need a confirmation, and the tokens that carry it.
//!
//! A preview (`preview: true`) runs a write in a transaction or savepoint that is always rolled
//! back and returns a token. The token is an HMAC, under a key drawn when the process starts,
//! of everything the write will be: the tool and action, the statement text, its parameters,
//! the caller (the session owner key) and the session, if any, plus an expiry and a nonce.
//! Repeating the call with `confirm: <token>` runs it once; a token for another statement,
//! other parameters, another caller or session, from another process, expired, or already
//! used is refused. Which writes need one is the server's setting ([`ConfirmWrites`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coldquery_core::{Error, ErrorKind, Result};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Which writes need a confirmation token (`--confirm-writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfirmWrites {
    /// None: writes run as the Default-Deny policy allows (the library's default).
    #[default]
    Off,
    /// Destructive ones: DROP, TRUNCATE, `ALTER … DROP`, DELETE/UPDATE without WHERE, MERGE
    /// that deletes (the MCP server's default).
    Destructive,
    /// Every write of `pg_query` and `pg_schema`.
    All,
}

impl ConfirmWrites {
    /// The valid spellings, for error messages.
    pub const CHOICES: &'static str = "off, destructive, all";

    /// Parses `off`, `destructive` or `all`.
    pub fn parse(text: &str) -> Option<ConfirmWrites> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Some(ConfirmWrites::Off),
            "destructive" => Some(ConfirmWrites::Destructive),
            "all" => Some(ConfirmWrites::All),
            _ => None,
        }
    }

    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmWrites::Off => "off",
            ConfirmWrites::Destructive => "destructive",
            ConfirmWrites::All => "all",
        }
    }

    /// Why a write needs a token under this setting, if it does.
    pub(crate) fn requires(self, destructive: Option<&str>) -> Option<String> {
        match (self, destructive) {
            (ConfirmWrites::Off, _) | (ConfirmWrites::Destructive, None) => None,
            (_, Some(why)) => Some(format!("this statement is destructive ({why})")),
            (ConfirmWrites::All, None) => Some("this server confirms every write (--confirm-writes all)".to_owned()),
        }
    }
}

/// Everything a token is bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub(crate) tool: &'a str,
    pub(crate) action: &'a str,
    /// The statement(s), exactly as they will run.
    pub(crate) statement: &'a str,
    /// Their parameters, as given.
    pub(crate) params: &'a [Value],
    /// The session owner key.
    pub(crate) owner: &'a str,
    pub(crate) session: Option<&'a str>,
}

/// The process's confirmation key and the tokens already used.
#[derive(Debug)]
pub(crate) struct Confirmations {
    key: [u8; 32],
    /// Nonce → expiry (Unix seconds) of every redeemed token not yet expired.
    used: Mutex<HashMap<String, u64>>,
}

/// How a token starts; the format is `cq1.<expiry>.<nonce>.<mac>`.
const PREFIX: &str = "cq1";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn refused(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::WriteDenied, message).with_hint(
        "preview the write again (the same call with preview: true instead of confirm), check what it would do, then repeat the call with confirm set to the new token",
    )
}

impl Confirmations {
    /// A fresh key from the operating system.
    pub(crate) fn new() -> Result<Confirmations> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::internal(format!("no OS randomness: {e}")))?;
        Ok(Confirmations { key, used: Mutex::new(HashMap::new()) })
    }

    fn mac(&self, binding: &Binding<'_>, expiry: u64, nonce: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        let params = Value::Array(binding.params.to_vec()).to_string();
        // Each field is length-prefixed, so no two bindings share an input.
        for field in [
            PREFIX,
            &expiry.to_string(),
            nonce,
            binding.tool,
            binding.action,
            binding.owner,
            binding.session.unwrap_or(""),
            binding.statement,
            &params,
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    /// A token for `binding`, valid for `ttl`.
    pub(crate) fn mint(&self, binding: &Binding<'_>, ttl: Duration) -> Result<String> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| Error::internal(format!("no OS randomness: {e}")))?;
        let nonce = hex(&nonce);
        let expiry = now() + ttl.as_secs().max(1);
        let mac = self.mac(binding, expiry, &nonce).finalize().into_bytes();
        Ok(format!("{PREFIX}.{expiry}.{nonce}.{}", hex(&mac)))
    }

    /// Checks `token` against `binding` and uses it up.
    pub(crate) fn redeem(&self, token: &str, binding: &Binding<'_>) -> Result<()> {
        let parts: Vec<&str> = token.trim().split('.').collect();
        let [PREFIX, expiry, nonce, mac] = parts.as_slice() else {
            return Err(refused("parameter 'confirm' is not a confirmation token from this server's preview"));
        };
        let (Ok(expiry), Some(mac)) = (expiry.parse::<u64>(), unhex(mac)) else {
            return Err(refused("parameter 'confirm' is not a confirmation token from this server's preview"));
        };
        if self.mac(binding, expiry, nonce).verify_slice(&mac).is_err() {
            return Err(refused(
                "the confirmation token does not match this call: it was issued for another statement, other parameters, another caller or session, or by another server process",
            ));
        }
        let now = now();
        if expiry < now {
            return Err(refused("the confirmation token has expired"));
        }
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        used.retain(|_, until| *until >= now);
        if used.insert((*nonce).to_owned(), expiry).is_some() {
            return Err(refused("the confirmation token was already used; a token confirms one call"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding<'a>(statement: &'a str, params: &'a [Value], owner: &'a str) -> Binding<'a> {
        Binding { tool: "pg_query", action: "write", statement, params, owner, session: None }
    }

    #[test]
    fn a_token_confirms_exactly_its_call_once() {
        let confirmations = Confirmations::new().unwrap();
        let params = [serde_json::json!(1)];
        let this = binding("DELETE FROM t", &params, "alice");
        let token = confirmations.mint(&this, Duration::from_secs(60)).unwrap();
        let kind = |r: Result<()>| r.map_err(|e| e.kind());
        for other in [
            binding("DELETE FROM u", &params, "alice"),
            binding("DELETE FROM t", &[], "alice"),
            binding("DELETE FROM t", &params, "bob"),
            Binding { session: Some("s"), ..this },
            Binding { action: "transaction", ..this },
        ] {
            assert_eq!(kind(confirmations.redeem(&token, &other)), Err(ErrorKind::WriteDenied), "{other:?}");
        }
        assert_eq!(kind(Confirmations::new().unwrap().redeem(&token, &this)), Err(ErrorKind::WriteDenied), "foreign");
        assert_eq!(kind(confirmations.redeem("cq1.x.y.z", &this)), Err(ErrorKind::WriteDenied));
        assert_eq!(kind(confirmations.redeem("", &this)), Err(ErrorKind::WriteDenied));
        assert_eq!(kind(confirmations.redeem(&token, &this)), Ok(()));
        let reused = confirmations.redeem(&token, &this).unwrap_err();
        assert!(reused.message().contains("already used"), "{reused:?}");
    }

    #[test]
    fn expired_tokens_are_refused() {
        let confirmations = Confirmations::new().unwrap();
        let this = binding("DROP TABLE t", &[], "alice");
        let expiry = now() - 1;
        let nonce = "00";
        let mac = hex(&confirmations.mac(&this, expiry, nonce).finalize().into_bytes());
        let err = confirmations.redeem(&format!("cq1.{expiry}.{nonce}.{mac}"), &this).unwrap_err();
        assert!(err.message().contains("expired"), "{err:?}");
    }

    #[test]
    fn settings() {
        assert_eq!(ConfirmWrites::parse("Destructive"), Some(ConfirmWrites::Destructive));
        assert_eq!(ConfirmWrites::parse("sometimes"), None);
        assert!(ConfirmWrites::Destructive.requires(None).is_none());
        assert!(ConfirmWrites::Off.requires(Some("TRUNCATE")).is_none());
        assert!(ConfirmWrites::Destructive.requires(Some("TRUNCATE")).unwrap().contains("TRUNCATE"));
        assert!(ConfirmWrites::All.requires(None).is_some());
    }
}
