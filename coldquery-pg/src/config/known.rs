//! The connection options ColdQuery accepts ([`KNOWN`]): each one's libpq name, its `PG*`
//! variable and what a valid value looks like, for parsing and for error messages.

/// The five `sslmode`s, for messages.
pub(super) const SSL_MODES: &str = "disable, prefer, require, verify-ca, verify-full";

/// A connection option ColdQuery accepts: its libpq name, its `PG*` variable, and what a
/// valid value looks like (for error messages).
pub(super) struct Known {
    /// The libpq name, e.g. `sslmode`.
    pub(super) key: &'static str,
    /// The `PG*` variable, if libpq has one.
    pub(super) env: Option<&'static str>,
    /// What a valid value looks like.
    pub(super) expected: &'static str,
}

/// Every option ColdQuery accepts, in libpq's order.
pub(super) const KNOWN: &[Known] = &[
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

/// The supported option names, for the unknown-option message.
pub(super) fn supported_options() -> String {
    let mut names: Vec<&str> = KNOWN.iter().map(|k| k.key).collect();
    names.push("ssl (URI only)");
    names.join(", ")
}

/// The option named `key`, if ColdQuery accepts it.
pub(super) fn known(key: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.key == key)
}
