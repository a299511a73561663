//! A TCP fault proxy owned by a test, on loopback only: it forwards every connection to one
//! upstream address, and on command stalls (stops forwarding both ways while the sockets stay
//! open), resets (RST on both sides: `SO_LINGER` 0, then close) or slows (adds latency to each
//! chunk it forwards). A fault can also be armed to strike when a chunk going one way contains
//! some bytes, e.g. the CommandComplete of a `COMMIT` (so that exactly its acknowledgement is
//! lost).
//!
//! A stall here is a stall of the application, not of TCP: the proxy's kernel still
//! acknowledges what ColdQuery sends, so keepalives and `TCP_USER_TIMEOUT` never fire; what
//! ends a wait is ColdQuery's own bounds (statement deadlines, the step timeout). Those are
//! the bounds that matter for a peer that is alive but stuck (a hung pooler, a paused VM), and
//! the kernel's bounds cover a dead host the same way in production.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Stop forwarding both ways; the sockets stay open.
    Stall,
    /// Reset every open connection (RST to both peers).
    Reset,
}

/// Which way a chunk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (ColdQuery) to the server (PostgreSQL): requests.
    ToServer,
    /// From the server to the client: replies.
    ToClient,
}

#[derive(Debug, Clone, Default)]
struct Mode {
    stalled: bool,
    latency: Duration,
    /// A fault armed to strike before forwarding a chunk that contains these bytes.
    trigger: Option<(Direction, Vec<u8>, Fault)>,
}

/// What the proxy did, for the test's figures.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections reset.
    pub resets: AtomicU64,
    /// Faults that struck (commands and armed triggers).
    pub faults: AtomicU64,
}

/// The proxy. Dropping it stops accepting; open connections end with the test's runtime.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped to reset every open connection.
    resets: watch::Sender<u64>,
    counters: Arc<Counters>,
    accept: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::default());
        let (resets, _) = watch::channel(0u64);
        let counters = Arc::new(Counters::default());
        let accept = {
            let (mode, resets, counters) = (mode.clone(), resets.clone(), counters.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let (mode, resets, counters) = (mode.clone(), resets.clone(), counters.clone());
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(upstream).await {
                            forward(client, server, mode, resets, counters).await;
                        }
                    });
                }
            })
        };
        Ok(FaultProxy { addr, mode, resets, counters, accept })
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding both ways, on every connection (open or new); the sockets stay open.
    pub fn stall(&self) {
        self.counters.faults.fetch_add(1, Ordering::Relaxed);
        self.mode.send_modify(|m| m.stalled = true);
    }

    /// Forwards again (what was held is delivered), with no trigger armed.
    pub fn heal(&self) {
        self.mode.send_modify(|m| {
            m.stalled = false;
            m.trigger = None;
        });
    }

    /// Resets every open connection: both peers get an RST; what the proxy held is lost. New
    /// connections are forwarded as before (unless stalled).
    pub fn reset(&self) {
        self.counters.faults.fetch_add(1, Ordering::Relaxed);
        self.resets.send_modify(|n| *n += 1);
    }

    /// Adds `latency` before each chunk is forwarded, both ways (zero to stop).
    pub fn set_latency(&self, latency: Duration) {
        self.mode.send_modify(|m| m.latency = latency);
    }

    /// Arms `fault` to strike, once, before a chunk going `direction` that contains `pattern`
    /// is forwarded (a stall holds that chunk; a reset loses it).
    pub fn arm(&self, direction: Direction, pattern: &[u8], fault: Fault) {
        self.mode.send_modify(|m| m.trigger = Some((direction, pattern.to_vec(), fault)));
    }

    /// True while an armed fault has not struck yet.
    pub fn armed(&self) -> bool {
        self.mode.borrow().trigger.is_some()
    }

    /// What the proxy did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    mode: watch::Sender<Mode>,
    resets: watch::Sender<u64>,
    counters: Arc<Counters>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut reset_rx = resets.subscribe();
    reset_rx.mark_unchanged();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // The write halves stay here so that a reset can set SO_LINGER 0 on both sockets.
    let client_write = Arc::new(tokio::sync::Mutex::new(client_write));
    let server_write = Arc::new(tokio::sync::Mutex::new(server_write));
    let up = pump(client_read, server_write.clone(), Direction::ToServer, mode.clone(), resets.clone(), &counters);
    let down = pump(server_read, client_write.clone(), Direction::ToClient, mode, resets, &counters);
    // The pumps are dropped with this select (releasing the write halves' locks).
    let reset = tokio::select! {
        biased;
        _ = reset_rx.changed() => true,
        _ = async { tokio::join!(up, down) } => false,
    };
    if reset {
        counters.resets.fetch_add(1, Ordering::Relaxed);
        for half in [client_write, server_write] {
            let half = half.lock().await;
            let stream: &TcpStream = (*half).as_ref();
            let _ = stream.set_zero_linger();
        }
    }
}

/// Forwards one direction until end of file, holding chunks while stalled.
async fn pump(
    mut from: OwnedReadHalf,
    to: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    direction: Direction,
    mode: watch::Sender<Mode>,
    resets: watch::Sender<u64>,
    counters: &Counters,
) {
    let mut rx = mode.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !flowing(&mut rx).await {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.lock().await.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        // An armed fault strikes before this chunk is forwarded.
        let mut struck = None;
        mode.send_if_modified(|m| {
            let fault = match &m.trigger {
                Some((d, pattern, fault)) if *d == direction && contains(chunk, pattern) => *fault,
                _ => return false,
            };
            struck = Some(fault);
            m.trigger = None;
            if fault == Fault::Stall {
                m.stalled = true;
            }
            true
        });
        if let Some(fault) = struck {
            counters.faults.fetch_add(1, Ordering::Relaxed);
            if fault == Fault::Reset {
                resets.send_modify(|n| *n += 1);
                // Waits here until the reset drops this pump.
                std::future::pending::<()>().await;
            }
        }
        let latency = rx.borrow().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if !flowing(&mut rx).await {
            return;
        }
        if to.lock().await.write_all(chunk).await.is_err() {
            return;
        }
    }
}

/// Waits while stalled; false once the proxy is gone.
async fn flowing(rx: &mut watch::Receiver<Mode>) -> bool {
    rx.wait_for(|m| !m.stalled).await.is_ok()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
