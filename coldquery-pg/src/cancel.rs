//! Sending CancelRequests the way libpq does: write the request, then wait for the server to
//! close the socket.
//!
//! tokio-postgres's `CancelToken::cancel_query` shuts its socket down right after writing. A
//! PgBouncer before 1.19.1 that is still forwarding the request then crashes
//! ("disconnect_client(): bad client state: 0", pgbouncer/pgbouncer#801), taking every client
//! down with it. So ColdQuery opens the socket itself and hands tokio-postgres a stream whose
//! shutdown waits for the server's end-of-file instead of closing first. When the connection
//! string names several hosts, which one the connection went to is unknown here, so
//! tokio-postgres's own cancel (which knows) is used.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::CancelToken;
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;

use crate::tls::PgTls;

/// How long one CancelRequest may take, connecting included, at most (the step timeout when
/// that is shorter): the cancel travels the same network path as the statement, so when that
/// path is stalled the cancel stalls too.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach the server again to cancel a running statement: the TLS set-up and, for a
/// single-host connection string, the address.
#[derive(Clone)]
pub(crate) struct Canceller {
    tls: PgTls,
    target: Option<Target>,
    /// How long a CancelRequest may take, and how long the cancelled statement then has to end.
    limit: Duration,
}

#[derive(Debug, Clone)]
enum Target {
    Tcp {
        connect_to: String,
        port: u16,
        hostname: String,
    },
    #[cfg(unix)]
    Unix {
        path: std::path::PathBuf,
    },
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canceller").field("target", &self.target).finish_non_exhaustive()
    }
}

impl Canceller {
    /// The canceller for connections made from `pg` with `tls`.
    pub(crate) fn new(tls: PgTls, pg: &tokio_postgres::Config, step: Duration) -> Canceller {
        Canceller { tls, target: single_target(pg), limit: step.min(CANCEL_TIMEOUT) }
    }

    /// How long a CancelRequest may take, and how long a cancelled statement has to end
    /// before its connection is given up: 5 s, or the step timeout when shorter.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Sends a CancelRequest for the connection of `token`. True when the server (or pooler)
    /// took it; whether a statement was actually cancelled is never known from this alone.
    pub(crate) async fn cancel(&self, token: &CancelToken) -> bool {
        let sent = async {
            match &self.target {
                None => token.cancel_query(self.tls.clone()).await.is_ok(),
                Some(target) => self.cancel_at(target, token).await.is_ok(),
            }
        };
        tokio::time::timeout(self.limit, sent).await.unwrap_or(false)
    }

    async fn cancel_at(&self, target: &Target, token: &CancelToken) -> io::Result<()> {
        let mut tls = self.tls.clone();
        match target {
            Target::Tcp { connect_to, port, hostname } => {
                let stream = tokio::net::TcpStream::connect((connect_to.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                let connect =
                    MakeTlsConnect::<WaitForClose<tokio::net::TcpStream>>::make_tls_connect(&mut tls, hostname)
                        .map_err(io::Error::other)?;
                token.cancel_query_raw(WaitForClose(stream), connect).await.map_err(io::Error::other)
            }
            #[cfg(unix)]
            Target::Unix { path } => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                let connect = MakeTlsConnect::<WaitForClose<tokio::net::UnixStream>>::make_tls_connect(&mut tls, "")
                    .map_err(io::Error::other)?;
                token.cancel_query_raw(WaitForClose(stream), connect).await.map_err(io::Error::other)
            }
        }
    }
}

/// The one place the connection can have gone to, if there is exactly one.
fn single_target(pg: &tokio_postgres::Config) -> Option<Target> {
    let hosts = pg.get_hosts();
    let addrs = pg.get_hostaddrs();
    let ports = pg.get_ports();
    if hosts.len() > 1 || addrs.len() > 1 || ports.len() > 1 {
        return None;
    }
    let port = ports.first().copied().unwrap_or(5432);
    match (hosts.first(), addrs.first()) {
        (_, Some(addr)) => Some(Target::Tcp {
            connect_to: addr.to_string(),
            port,
            hostname: match hosts.first() {
                Some(Host::Tcp(name)) => name.clone(),
                _ => String::new(),
            },
        }),
        (Some(Host::Tcp(name)), None) => Some(Target::Tcp { connect_to: name.clone(), port, hostname: name.clone() }),
        #[cfg(unix)]
        (Some(Host::Unix(dir)), None) => Some(Target::Unix { path: dir.join(format!(".s.PGSQL.{port}")) }),
        _ => None,
    }
}

/// A stream whose shutdown does not close: it waits until the peer closes (libpq's `PQcancel`
/// does the same), so the server or pooler has handled the request before the socket goes.
#[derive(Debug)]
struct WaitForClose<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for WaitForClose<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WaitForClose<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Poll::Ready(Err(e)) = Pin::new(&mut self.0).poll_flush(cx) {
            return Poll::Ready(Err(e));
        }
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.0).poll_read(cx, &mut buf) {
                // End of file: the peer has handled the request and closed.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                // A reset after the request was written still means it was delivered.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
