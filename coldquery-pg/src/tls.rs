//! TLS for PostgreSQL connections: a rustls client configuration per libpq's `sslmode`.
//!
//! | `sslmode`                      | what is checked                                         |
//! |--------------------------------|---------------------------------------------------------|
//! | `disable`                      | nothing: no TLS (a connector is still built, unused)    |
//! | `prefer`, `require` (no roots) | encrypt only: any certificate, handshake still signed   |
//! | `prefer`, `require` (roots)    | as `verify-ca` (libpq's rule when a root file exists)   |
//! | `verify-ca`                    | the chain against the roots; the host name is ignored   |
//! | `verify-full`                  | the chain and the host name                             |
//!
//! The ring crypto provider is always named explicitly: nothing here depends on a
//! process-wide default provider.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The ALPN protocol name PostgreSQL 17+ expects (and libpq 17+ always sends).
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Where the trusted root certificates come from.
#[derive(Clone)]
pub(crate) enum Roots {
    /// A PEM file (`sslrootcert=<path>` or libpq's default `~/.postgresql/root.crt`).
    File {
        /// The file the roots were read from.
        path: PathBuf,
        /// The roots it held.
        store: Arc<RootCertStore>,
    },
    /// `sslrootcert=system`: the public web roots (webpki-roots).
    System,
}

impl Roots {
    /// Reads the PEM certificates of `path` (at least one must be usable).
    pub(crate) fn from_pem_file(path: &Path) -> Result<Roots, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(file);
        let mut certs = Vec::new();
        for cert in rustls_pemfile::certs(&mut reader) {
            certs.push(cert.map_err(|e| format!("not a valid PEM file: {e}"))?);
        }
        if certs.is_empty() {
            return Err("the file holds no PEM certificate".to_owned());
        }
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err("none of the file's certificates can be used as a trust anchor".to_owned());
        }
        Ok(Roots::File { path: path.to_path_buf(), store: Arc::new(store) })
    }

    /// The value to show for `sslrootcert`: the path, or `system`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Roots::File { path, .. } => path.display().to_string(),
            Roots::System => "system".to_owned(),
        }
    }

    fn store(&self) -> Arc<RootCertStore> {
        match self {
            Roots::File { store, .. } => Arc::clone(store),
            Roots::System => Arc::new(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
        }
    }
}

impl fmt::Debug for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::File { path, store } => {
                f.debug_struct("File").field("path", path).field("certificates", &store.len()).finish()
            }
            Roots::System => f.write_str("System"),
        }
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub(crate) enum Verification {
    /// No TLS will be attempted (`sslmode=disable`, or only Unix-socket hosts).
    Off,
    /// Encrypt, accept any certificate (`prefer` / `require` without roots).
    EncryptOnly,
    /// Check the chain against the roots, not the host name (`verify-ca`).
    Chain(Roots),
    /// Check the chain and the host name (`verify-full`).
    Full(Roots),
}

/// The ring provider, named explicitly (never the process default).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls client configuration for `verification`.
///
/// [`Verification::Off`] still yields a configuration (tokio-postgres wants a connector
/// even when it will not use it); it verifies fully against the web roots, so it fails
/// closed should it ever be used.
pub(crate) fn client_config(verification: &Verification) -> Result<ClientConfig, rustls::Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let webpki = |roots: &Roots| {
        WebPkiServerVerifier::builder_with_provider(roots.store(), Arc::clone(&provider))
            .build()
            .map_err(|e| rustls::Error::General(format!("cannot use the root certificates: {e}")))
    };
    let lenient = |chain| Lenient { chain, algorithms: provider.signature_verification_algorithms };
    let mut config = match verification {
        Verification::Off => builder.with_webpki_verifier(webpki(&Roots::System)?).with_no_client_auth(),
        Verification::EncryptOnly => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(lenient(None))).with_no_client_auth()
        }
        Verification::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(lenient(Some(webpki(roots)?))))
            .with_no_client_auth(),
        Verification::Full(roots) => builder.with_webpki_verifier(webpki(roots)?).with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(config)
}

/// The checks rustls's own verifier is too strict for, with the ring provider's `algorithms`:
///
/// - `prefer` / `require` without roots (`chain` is `None`): any certificate is accepted;
/// - `verify-ca` (`chain` is the standard webpki verification): a certificate valid for another
///   name is accepted. `WebPkiServerVerifier` checks the chain (and revocation) before the name,
///   so a name error means the chain was already found good; any other error is passed on.
///
/// Either way the handshake signatures are verified, so the peer must hold the key of the
/// certificate it presents.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The TLS connector to give tokio-postgres (and bb8-postgres): [`MakeRustlsConnect`]
/// that also works for Unix-socket hosts.
///
/// tokio-postgres asks for a connector with an empty host name for a Unix socket (or a
/// `hostaddr` without `host`), which `MakeRustlsConnect` rejects even though no TLS will
/// happen there; this wrapper substitutes a placeholder name in that case. tokio-postgres
/// itself refuses a TLS handshake without a host name, so the placeholder is never
/// verified against.
#[derive(Clone)]
pub(crate) struct PgTls {
    inner: MakeRustlsConnect,
}

impl PgTls {
    /// Wraps a rustls client configuration.
    pub(crate) fn new(config: ClientConfig) -> PgTls {
        PgTls { inner: MakeRustlsConnect::new(config) }
    }
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTls").finish_non_exhaustive()
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        let hostname = if hostname.is_empty() { "localhost" } else { hostname };
        <MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(&mut self.inner, hostname)
    }
}

#[cfg(test)]
pub(crate) mod test_certs {
    //! Throwaway test material (made once with openssl, used only by tests): a CA, a server
    //! certificate it signed for `db.test` with its key, and an unrelated CA. All ECDSA
    //! P-256, valid from 2000-01-01 to 2100-01-01, so the tests do not depend on the clock.

    /// The test CA (`CN=ColdQuery Test CA`).
    pub(crate) const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBajCCARGgAwIBAgIBATAKBggqhkjOPQQDAjAcMRowGAYDVQQDDBFDb2xkUXVl
cnkgVGVzdCBDQTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFowHDEa
MBgGA1UEAwwRQ29sZFF1ZXJ5IFRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMB
BwNCAASGmQqCMj4JEmBwuuz2/bzfgW6zY8FDTNFlLRrwFZmRPpV/i3Nu8VeA08KC
XF12Lm3T1qT8DgaxzdzhuJpc6TVDo0IwQDAPBgNVHRMBAf8EBTADAQH/MA4GA1Ud
DwEB/wQEAwIBBjAdBgNVHQ4EFgQUAmFXXV8mM73HBmAAlnCp5/yQeFIwCgYIKoZI
zj0EAwIDRwAwRAIgb9PEqSMMZkbhb4YJ56wRPyklcR3xKuJMRg5eTJkkOw0CICTC
XSrj1+wUlUZHjjcRB4SyPAZkKIZfIEsKzFjDCPa7
-----END CERTIFICATE-----
";
    /// The server certificate for `db.test`, signed by [`CA_PEM`].
    pub(crate) const SERVER_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBqjCCAVCgAwIBAgIBAjAKBggqhkjOPQQDAjAcMRowGAYDVQQDDBFDb2xkUXVl
cnkgVGVzdCBDQTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFowEjEQ
MA4GA1UEAwwHZGIudGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABK48F1Cv
C6Io3YWMQX6sbmDNPH6Wn03cayrZKqRqGgelyzI3J6riiZgl5X7yUqSLTPTyZLWw
wKctmVihOuHoZEejgYowgYcwDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4Aw
EwYDVR0lBAwwCgYIKwYBBQUHAwEwEgYDVR0RBAswCYIHZGIudGVzdDAfBgNVHSME
GDAWgBQCYVddXyYzvccGYACWcKnn/JB4UjAdBgNVHQ4EFgQURY5Wyd+Hyx+pKBDf
MG+td0cBqJAwCgYIKoZIzj0EAwIDSAAwRQIhANQn4g7RYRRvhzsUfnjydgamfj8b
MIllWCEAAuMVjyZbAiBO7NYyOHh4+VtTkscGTj/L8MiKVJmhMQAPTKI4iekdDA==
-----END CERTIFICATE-----
";
    /// The server's PKCS#8 private key (test-only, never used outside these tests).
    pub(crate) const SERVER_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNgfQSmhAQ2NsX2qQ
7zgD8GqhdpIlo89QPpnxMN5hJrKhRANCAASuPBdQrwuiKN2FjEF+rG5gzTx+lp9N
3Gsq2SqkahoHpcsyNyeq4omYJeV+8lKki0z08mS1sMCnLZlYoTrh6GRH
-----END PRIVATE KEY-----
";
    /// An unrelated CA (`CN=Other Test CA`).
    pub(crate) const OTHER_CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBYzCCAQmgAwIBAgIBAzAKBggqhkjOPQQDAjAYMRYwFAYDVQQDDA1PdGhlciBU
ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAxMDAwMDAwWjAYMRYwFAYD
VQQDDA1PdGhlciBUZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE/Fk/
GfV8P6YJya8WtnRXI0NabPZMH3EHTykRwZndz7ANsSMNarlR/wqqh8+jRknHmMqf
CPRRZ+4Voh52S/dasKNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMC
AQYwHQYDVR0OBBYEFK+xKDUmHgCd/b9btKxT/wRTRtrKMAoGCCqGSM49BAMCA0gA
MEUCIDfBQzqCfYNQvkNbrdMo2BSxVdWSixO+cI1nm0AXjUp5AiEA6POcznlVnknS
czIAEW7njmzQjc1fXY2EGfzWPK85dqI=
-----END CERTIFICATE-----
";
}

#[cfg(test)]
mod tests {
    use super::test_certs::{CA_PEM, OTHER_CA_PEM, SERVER_KEY_PEM, SERVER_PEM};
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{ClientConnection, ServerConfig, ServerConnection};

    fn roots(pem: &str) -> Roots {
        let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes()).collect::<Result<_, _>>().expect("test PEM");
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(certs);
        Roots::File { path: PathBuf::from("test.crt"), store: Arc::new(store) }
    }

    /// Runs a full TLS handshake in memory between a client using `verification` and a
    /// server presenting the `db.test` certificate; the client connects to `name`.
    fn handshake(verification: &Verification, name: &str) -> Result<(), rustls::Error> {
        let certs =
            rustls_pemfile::certs(&mut SERVER_PEM.as_bytes()).collect::<Result<Vec<_>, _>>().expect("server cert");
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut SERVER_KEY_PEM.as_bytes()).expect("server key").expect("a key");
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let client = client_config(verification)?;
        assert_eq!(client.alpn_protocols, vec![b"postgresql".to_vec()]);
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        let mut c = ClientConnection::new(Arc::new(client), name)?;
        let mut s = ServerConnection::new(Arc::new(server))?;
        for _ in 0..16 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("client write");
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).expect("server read");
            }
            let server_result = s.process_new_packets();
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("server write");
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).expect("client read");
            }
            c.process_new_packets()?;
            server_result?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    fn is_unknown_issuer(r: Result<(), rustls::Error>) -> bool {
        matches!(r, Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)))
    }

    #[test]
    fn encrypt_only_accepts_any_certificate_and_name() {
        handshake(&Verification::EncryptOnly, "db.test").expect("db.test");
        handshake(&Verification::EncryptOnly, "elsewhere.example").expect("any name");
    }

    #[test]
    fn verify_ca_checks_the_chain_but_not_the_name() {
        handshake(&Verification::Chain(roots(CA_PEM)), "db.test").expect("right name");
        handshake(&Verification::Chain(roots(CA_PEM)), "elsewhere.example").expect("wrong name");
        let r = handshake(&Verification::Chain(roots(OTHER_CA_PEM)), "db.test");
        assert!(is_unknown_issuer(r.clone()), "{r:?}");
        let r = handshake(&Verification::Chain(Roots::System), "db.test");
        assert!(is_unknown_issuer(r.clone()), "{r:?}");
    }

    #[test]
    fn verify_full_checks_the_chain_and_the_name() {
        handshake(&Verification::Full(roots(CA_PEM)), "db.test").expect("right name");
        let r = handshake(&Verification::Full(roots(CA_PEM)), "elsewhere.example");
        assert!(
            matches!(
                r,
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{r:?}"
        );
        let r = handshake(&Verification::Full(roots(OTHER_CA_PEM)), "db.test");
        assert!(is_unknown_issuer(r.clone()), "{r:?}");
        let r = handshake(&Verification::Full(Roots::System), "db.test");
        assert!(is_unknown_issuer(r.clone()), "{r:?}");
    }

    #[test]
    fn off_fails_closed_if_ever_used() {
        let r = handshake(&Verification::Off, "db.test");
        assert!(is_unknown_issuer(r.clone()), "{r:?}");
    }

    #[test]
    fn pg_tls_accepts_an_empty_host_name() {
        let mut tls = PgTls::new(client_config(&Verification::EncryptOnly).expect("config"));
        let made = <PgTls as MakeTlsConnect<tokio::net::TcpStream>>::make_tls_connect(&mut tls, "");
        assert!(made.is_ok());
        let mut plain = MakeRustlsConnect::new(client_config(&Verification::EncryptOnly).expect("config"));
        let made = <MakeRustlsConnect as MakeTlsConnect<tokio::net::TcpStream>>::make_tls_connect(&mut plain, "");
        assert!(made.is_err(), "MakeRustlsConnect rejects an empty name; PgTls exists for that");
        assert!(format!("{tls:?}").starts_with("PgTls"));
    }
}
