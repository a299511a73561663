//! The configuration vocabulary the binaries share: every `COLDQUERY_*` environment variable
//! (SPEC §5), so that both refuse a misspelt one instead of silently ignoring it. Each binary
//! tests that every variable its command line reads is listed here.

use crate::ConfigError;

/// Every `COLDQUERY_*` variable a ColdQuery binary reads. The CLI accepts the server's
/// transport settings too (a shell may hold both), and ignores them.
pub const VARIABLES: &[&str] = &[
    "COLDQUERY_TRANSPORT",
    "COLDQUERY_LISTEN",
    "COLDQUERY_LOG_FORMAT",
    "COLDQUERY_EPHEMERAL",
    "COLDQUERY_READ_ONLY",
    "COLDQUERY_MAX_SESSIONS",
    "COLDQUERY_SESSION_TTL",
    "COLDQUERY_POOL_SIZE",
    "COLDQUERY_ACQUIRE_TIMEOUT",
    "COLDQUERY_STATEMENT_TIMEOUT",
    "COLDQUERY_MAX_ROWS",
    "COLDQUERY_MAX_ROWS_LIMIT",
    "COLDQUERY_MAX_RESULT_BYTES",
    "COLDQUERY_AUDIT_LOG",
    "COLDQUERY_AUTH_TOKEN",
    "COLDQUERY_AUTH_TOKEN_FILE",
    "COLDQUERY_INSECURE_NO_AUTH",
    "COLDQUERY_ALLOWED_HOSTS",
    "COLDQUERY_ALLOWED_ORIGINS",
    "COLDQUERY_MAX_REQUEST_BYTES",
    "COLDQUERY_DENY_FUNCTIONS",
    "COLDQUERY_ALLOW_FUNCTIONS",
    "COLDQUERY_ALLOW_EXTENSIONS",
    "COLDQUERY_READ_DATABASE_URL",
    "COLDQUERY_CONFIRM_WRITES",
    "COLDQUERY_CONFIRM_TTL",
    "COLDQUERY_LOCK_TIMEOUT",
    "COLDQUERY_TOOL_LAYOUT",
    "COLDQUERY_ALLOW_ROLES",
    "COLDQUERY_CONFIRM_ROWS",
];

/// The first `COLDQUERY_*` name among `names` that is not a setting (the test harness's
/// `COLDQUERY_TEST_*` variables excepted).
fn unknown_variable<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names.into_iter().find(|name| {
        name.starts_with("COLDQUERY_") && !name.starts_with("COLDQUERY_TEST_") && !VARIABLES.contains(name)
    })
}

/// Refuses a `COLDQUERY_*` variable that is not a setting (a misspelt one must not be silently
/// ignored: `COLDQUERY_READONLY` would leave writes allowed). `names` are the variable names of
/// the environment.
pub fn check_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), ConfigError> {
    match unknown_variable(names) {
        Some(name) => Err(ConfigError::new(
            name,
            format!("unknown environment variable; the COLDQUERY_ settings are {}", VARIABLES.join(", ")),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_settings_are_found() {
        assert_eq!(unknown_variable(["PATH", "COLDQUERY_READ_ONLY", "COLDQUERY_TEST_DATABASE_URL"]), None);
        assert_eq!(unknown_variable(["HOME", "COLDQUERY_READONLY"]), Some("COLDQUERY_READONLY"));
        let error = check_variables(["COLDQUERY_READONLY"]).unwrap_err();
        assert_eq!(error.setting, "COLDQUERY_READONLY");
        assert!(error.to_string().contains("unknown environment variable"), "{error}");
        assert!(check_variables(["PATH", "COLDQUERY_TEST_DATABASE_URL"]).is_ok());
    }
}
