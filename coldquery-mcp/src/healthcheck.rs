//! `coldquery-mcp healthcheck`: the container's health probe. It sends `GET /health` (or
//! `/ready`) to the server on this machine and exits 0 when the answer is `200`, 1 otherwise,
//! so an image needs neither curl nor a shell for its `HEALTHCHECK`.
//!
//! It reads the same `COLDQUERY_LISTEN` as the server, so the image's environment is all it
//! needs; a wildcard listen address (`0.0.0.0`, `[::]`) is probed on the matching loopback
//! address. It is plain HTTP/1.1 over a std `TcpStream`: no runtime, no database, no token
//! (`/health` and `/ready` need none).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use coldquery_core::units::parse_duration;
use coldquery_mcp::config::DEFAULT_LISTEN;

/// Which endpoint is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Probe {
    /// `/health`: the process serves HTTP (liveness; the database is not consulted).
    Health,
    /// `/ready`: the database answers too (readiness).
    Ready,
}

impl Probe {
    fn path(self) -> &'static str {
        match self {
            Probe::Health => "/health",
            Probe::Ready => "/ready",
        }
    }
}

/// The health probe's command line.
#[derive(Debug, Parser)]
#[command(
    name = "coldquery-mcp healthcheck",
    about = "Probe the HTTP server on this machine: exit 0 when GET /health (or /ready) answers 200, else 1."
)]
struct HealthcheckArgs {
    /// The server's listen address; a wildcard address is probed on loopback.
    #[arg(long, env = "COLDQUERY_LISTEN", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,

    /// The endpoint to probe.
    #[arg(long, value_enum, default_value = "health")]
    probe: Probe,

    /// How long connecting and reading the answer may take in all (longer than the 6 s `/ready`
    /// gives the database, so a database that does not answer shows as 503, not as a timeout).
    #[arg(long, value_name = "DURATION", default_value = "8s")]
    timeout: String,
}

/// The address to probe for a listen address: wildcards become the loopback of their family.
fn probe_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

/// Sends one `GET` and returns the status code of the answer.
fn get_status(address: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    let mut stream =
        TcpStream::connect_timeout(&address, timeout).map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("cannot set a timeout on the connection to {address}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("cannot send the request to {address}: {e}"))?;
    // The status line is all that is needed: read a little, never the whole body.
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() && !head[..read].contains(&b'\n') {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(format!("no answer from {address}{path}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|code| code.parse::<u16>().ok())) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("{address}{path} did not answer with an HTTP status line")),
    }
}

/// Runs `coldquery-mcp healthcheck ARGS...` (`args` starts with `healthcheck`) and returns the
/// exit status: 0 healthy, 1 not, 2 for a bad command line or listen address.
pub(crate) fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let args = match HealthcheckArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { 2 } else { 0 };
        }
    };
    let Ok(listen) = args.listen.trim().parse::<SocketAddr>() else {
        eprintln!("coldquery-mcp healthcheck: '{}' is not an address:port (COLDQUERY_LISTEN)", args.listen.trim());
        return 2;
    };
    let timeout = match parse_duration(&args.timeout) {
        Ok(timeout) if !timeout.is_zero() => timeout,
        _ => {
            eprintln!("coldquery-mcp healthcheck: '{}' is not a duration such as 3s (--timeout)", args.timeout);
            return 2;
        }
    };
    let address = probe_address(listen);
    let path = args.probe.path();
    match get_status(address, path, timeout) {
        Ok(200) => {
            eprintln!("coldquery-mcp healthcheck: GET http://{address}{path}: 200");
            0
        }
        Ok(code) => {
            eprintln!("coldquery-mcp healthcheck: GET http://{address}{path}: {code}");
            1
        }
        Err(message) => {
            eprintln!("coldquery-mcp healthcheck: {message}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn run(args: &[&str]) -> i32 {
        main(std::iter::once("healthcheck").chain(args.iter().copied()).map(Into::into))
    }

    /// A one-shot HTTP server on loopback answering `response`; returns its address.
    fn answer_once(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut request = [0u8; 512];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        address
    }

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        assert_eq!(probe_address("0.0.0.0:19002".parse().unwrap()).to_string(), "127.0.0.1:19002");
        assert_eq!(probe_address("[::]:19002".parse().unwrap()).to_string(), "[::1]:19002");
        assert_eq!(probe_address("10.1.2.3:80".parse().unwrap()).to_string(), "10.1.2.3:80");
    }

    #[test]
    fn exit_status_follows_the_answer() {
        let ok = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(run(&["--listen", &ok.to_string()]), 0);
        let unavailable = answer_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(run(&["--listen", &unavailable.to_string(), "--probe", "ready"]), 1);
        let garbage = answer_once("SSH-2.0-OpenSSH\r\n");
        assert_eq!(run(&["--listen", &garbage.to_string()]), 1);
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert_eq!(run(&["--listen", &format!("127.0.0.1:{port}"), "--timeout", "500ms"]), 1);
    }

    #[test]
    fn bad_settings_are_usage_errors() {
        assert_eq!(run(&["--listen", "localhost"]), 2);
        assert_eq!(run(&["--timeout", "soon"]), 2);
        assert_eq!(run(&["--probe", "deep"]), 2);
    }
}
