//! Tests of [`PgConfig`] as callers use it: connection strings and `PG*` variables in, the
//! driver's settings, the TLS verification and the redacted text out; every error message
//! checked for the setting it names and for the password it must never show.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as PgSslMode};

use super::known::SSL_MODES;
use super::*;
use crate::tls::test_certs::CA_PEM;
use crate::tls::{Roots, Verification};

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
    assert_eq!(c.redacted(), "host=db.example.com port=6543 dbname=app user=bob application_name=cq sslmode=require");
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
    let c =
        ok("postgres://h/db?keepalives_idle=7&keepalives_interval=2&keepalives_retries=9&tcp_user_timeout=2500", &[]);
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
