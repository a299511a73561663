//! The stdio transport with back-pressure: at most [`MAX_OUTSTANDING`] requests are read ahead
//! of their answers.
//!
//! rmcp's service loop reads the next request while earlier ones run, and hands each answer to
//! a task of its own that waits for stdout. A client that keeps writing requests but stops
//! reading stdout would make every answer (up to the result byte cap each) wait in memory, with
//! no bound. This wrapper stops reading stdin while [`MAX_OUTSTANDING`] requests are unanswered
//! (running, or answered but not yet written); the client's further requests wait in the pipe,
//! where the kernel bounds them, and reading resumes as soon as answers are written.
//!
//! It also drops notifications and responses that arrive before the handshake (an `initialize`
//! request, or a 2026-07-28 request carrying its protocol version): rmcp ends the connection on
//! them, and a client that sends `notifications/initialized` too early would lose its server.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use rmcp::RoleServer;
use rmcp::model::{ClientNotification, ClientRequest, GetMeta, JsonRpcMessage, ProtocolVersion, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests read and not yet answered, at most.
pub const MAX_OUTSTANDING: usize = 16;

/// A server transport that reads a request only while fewer than [`MAX_OUTSTANDING`] are
/// unanswered.
pub struct Bounded<T> {
    inner: T,
    slots: Arc<Semaphore>,
    /// The slot each unanswered request holds, by id (a list: a client may reuse an id).
    held: Arc<Mutex<HashMap<RequestId, Vec<OwnedSemaphorePermit>>>>,
    /// An `initialize` or a 2026-07-28 request has been read: the main loop serves from now on.
    started: bool,
}

impl<T> std::fmt::Debug for Bounded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bounded")
            .field("free", &self.slots.available_permits())
            .field("started", &self.started)
            .finish()
    }
}

impl<T> Bounded<T> {
    /// `inner` with back-pressure.
    pub fn new(inner: T) -> Bounded<T> {
        Bounded { inner, slots: Arc::new(Semaphore::new(MAX_OUTSTANDING)), held: Arc::default(), started: false }
    }
}

/// Whether rmcp leaves its handshake on `request`: an `initialize`, or a request other than
/// `ping` and `server/discover` with complete 2026-07-28 metadata naming a known version.
fn starts_the_session(request: &ClientRequest) -> bool {
    match request {
        ClientRequest::InitializeRequest(_) => true,
        ClientRequest::PingRequest(_) | ClientRequest::DiscoverRequest(_) => false,
        other => {
            let meta = other.get_meta();
            meta.missing_required_keys(&ProtocolVersion::V_2026_07_28).is_empty()
                && meta.protocol_version().is_some_and(|v| ProtocolVersion::KNOWN_VERSIONS.contains(&v))
        }
    }
}

/// Frees the slot of request `id`, if it still holds one.
fn release(held: &Mutex<HashMap<RequestId, Vec<OwnedSemaphorePermit>>>, id: &RequestId) {
    let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(permits) = held.get_mut(id) {
        permits.pop();
        if permits.is_empty() {
            held.remove(id);
        }
    }
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for Bounded<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let answers = match &item {
            JsonRpcMessage::Response(response) => Some(response.id.clone()),
            JsonRpcMessage::Error(error) => error.id.clone(),
            _ => None,
        };
        let held = self.held.clone();
        let send = self.inner.send(item);
        async move {
            let sent = send.await;
            // Written (or failed for good): the request no longer holds memory here.
            if let Some(id) = answers {
                release(&held, &id);
            }
            sent
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            // Waits here, not reading stdin, while the answers are not being taken.
            let slot = self.slots.clone().acquire_owned().await.ok()?;
            let message = self.inner.receive().await?;
            match &message {
                JsonRpcMessage::Request(request) => {
                    self.started |= starts_the_session(&request.request);
                    let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                    held.entry(request.id.clone()).or_default().push(slot);
                }
                _ if !self.started => {
                    tracing::warn!("a notification or response before initialize is ignored");
                    continue;
                }
                // rmcp drops the answer of a cancelled request instead of sending it.
                JsonRpcMessage::Notification(notification) => {
                    if let ClientNotification::CancelledNotification(cancelled) = &notification.notification
                        && let Some(id) = &cancelled.params.request_id
                    {
                        release(&self.held, id);
                    }
                }
                _ => {}
            }
            return Some(message);
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}
