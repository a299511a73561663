//! The streamable HTTP transport (SPEC §6): `/mcp` (rmcp's service, both protocol eras) behind
//! bearer authentication, `Host` and `Origin` validation and a body size limit; `/health` and
//! `/ready` without a token for orchestrators; `/metrics` with a token.
//!
//! Legacy MCP sessions (`Mcp-Session-Id`, protocol revisions up to 2025-11-25) are bound to the
//! principal that created them: another principal presenting the id gets 404, as for an unknown
//! session. A legacy `DELETE` rolls back the ColdQuery sessions that MCP session opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use coldquery_core::{Access, CancellationToken, Limits, Sql, Statement};
use coldquery_tools::Tools;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;

use crate::auth::{ANONYMOUS, Principal, Tokens};
use crate::config::{AllowedHosts, HttpConfig};
use crate::metrics::Metrics;
use crate::server::{ColdQueryServer, http_owner};

const SESSION_HEADER: &str = "mcp-session-id";

/// What the HTTP handlers share.
#[derive(Clone)]
struct AppState {
    tools: Tools,
    metrics: Arc<Metrics>,
    tokens: Arc<Tokens>,
    /// Legacy MCP session id → the principal that created it.
    mcp_sessions: Arc<Mutex<HashMap<String, String>>>,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

/// Bearer authentication: sets the request's [`Principal`], or answers 401 with a
/// `WWW-Authenticate` challenge. Without configured tokens every request is `anonymous`.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let principal = if state.tokens.is_empty() {
        Some(Principal(ANONYMOUS.to_owned()))
    } else {
        let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        state.tokens.authenticate(authorization)
    };
    match principal {
        Some(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        None => {
            let presented = request.headers().contains_key(header::AUTHORIZATION);
            let challenge = if presented {
                r#"Bearer realm="coldquery", error="invalid_token", error_description="the bearer token is not valid""#
            } else {
                r#"Bearer realm="coldquery""#
            };
            tracing::warn!(path = %request.uri().path(), presented, "unauthenticated request refused");
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": "send 'Authorization: Bearer <token>' with a token configured on the server"}),
            );
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            response
        }
    }
}

/// Binds legacy MCP sessions to their principal and rolls back a session's transactions when
/// its client deletes it.
async fn bind_mcp_sessions(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(Principal(principal)) = request.extensions().get::<Principal>().cloned() else {
        return json_response(StatusCode::UNAUTHORIZED, json!({"error": "unauthorized"}));
    };
    let session = request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(session) = &session {
        let bound = state.mcp_sessions.lock().unwrap_or_else(|p| p.into_inner()).get(session).cloned();
        if bound.is_some_and(|owner| owner != principal) {
            tracing::warn!(principal = %principal, "request for another principal's MCP session refused");
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": "Session not found"}}),
            );
        }
    }
    let method = request.method().clone();
    let response = next.run(request).await;
    match (&session, method) {
        (None, Method::POST) => {
            if let Some(created) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
                state.mcp_sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(created.to_owned(), principal);
            }
        }
        (Some(session), Method::DELETE) if response.status().is_success() => {
            state.mcp_sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(session);
            let closed = state.tools.sessions().close_owner(&http_owner(&principal, Some(session))).await;
            tracing::info!(principal = %principal, closed, "MCP session deleted; its open transactions were rolled back");
        }
        _ => {}
    }
    response
}

/// The start of rmcp's plain-text answer (status 415) to a body that is not a JSON-RPC message.
const UNPARSABLE_BODY: &str = "fail to deserialize request body";

/// JSON-RPC over HTTP answers a body that is not a message with 400 and an error object; rmcp
/// answers 415 (a media-type status, though the media type was right) with plain text. This
/// rewrites that answer: -32700 for a body that is not JSON, -32600 for JSON that is no JSON-RPC
/// message (batches included, which MCP does not have).
async fn json_rpc_body_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let text = String::from_utf8_lossy(&bytes);
    let Some(detail) = text.strip_prefix(UNPARSABLE_BODY).map(str::trim) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let (code, message) = if detail.starts_with("unrecognized JSON-RPC message") {
        (-32600, "Invalid Request: the body is JSON but not one JSON-RPC request, notification or response")
    } else {
        (-32700, "Parse error: the body is not valid JSON")
    };
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message, "data": {"detail": detail}}}),
    )
}

async fn health() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn ready(State(state): State<AppState>) -> Response {
    let limits = Limits { max_rows: 1, max_bytes: 1024, timeout: Duration::from_secs(5), lock_timeout: None };
    let probe = Statement::new(Sql::catalog("SELECT 1"));
    let result = tokio::time::timeout(
        Duration::from_secs(6),
        state.tools.executor().run(Access::ReadOnly, &probe, &limits, &CancellationToken::new()),
    )
    .await;
    match result {
        Ok(Ok(_)) => json_response(StatusCode::OK, json!({"status": "ready"})),
        Ok(Err(error)) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "code": error.kind().code(), "message": error.message()}),
        ),
        Err(_) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "message": "the database did not answer within 6 s"}),
        ),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(state.tools.executor().pool_status(), state.tools.sessions().counts());
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], text)
        .into_response()
}

/// A request body must arrive within this time.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How often MCP sessions that rmcp expired (idle clients that never sent DELETE) are looked for.
const EXPIRED_SESSION_SWEEP: Duration = Duration::from_secs(30);

/// Rolls back the ColdQuery sessions of legacy MCP sessions that rmcp closed for inactivity,
/// and forgets those MCP sessions, as a `DELETE` would.
async fn roll_back_expired_mcp_sessions(
    state: AppState,
    manager: Arc<LocalSessionManager>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(EXPIRED_SESSION_SWEEP);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let known: Vec<(String, String)> = state
            .mcp_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect();
        for (session, principal) in known {
            let id: rmcp::transport::common::server_side_http::SessionId = session.as_str().into();
            if !matches!(manager.has_session(&id).await, Ok(false)) {
                continue;
            }
            state.mcp_sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&session);
            let closed = state.tools.sessions().close_owner(&http_owner(&principal, Some(&session))).await;
            if closed > 0 {
                tracing::info!(closed, "rolled back the sessions of an MCP session that expired");
            }
        }
    }
}

/// The HTTP application. `shutdown` ends every MCP session and stream when cancelled.
pub fn router(
    server: ColdQueryServer,
    metrics: Arc<Metrics>,
    config: &HttpConfig,
    shutdown: CancellationToken,
) -> Router {
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_origins(config.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(config.max_request_bytes)
        .with_cancellation_token(shutdown.clone());
    mcp_config = match &config.allowed_hosts {
        AllowedHosts::Any => mcp_config.disable_allowed_hosts(),
        AllowedHosts::Only(hosts) => mcp_config.with_allowed_hosts(hosts.clone()),
    };
    let state = AppState {
        tools: server.tools().clone(),
        metrics,
        tokens: Arc::new(config.tokens.clone()),
        mcp_sessions: Arc::new(Mutex::new(HashMap::new())),
    };
    // One server value for every MCP session and stateless request: it is a set of handles.
    let manager = Arc::new(LocalSessionManager::default());
    tokio::spawn(roll_back_expired_mcp_sessions(state.clone(), manager.clone(), shutdown));
    let mcp = StreamableHttpService::new(move || Ok(server.clone()), manager, mcp_config);
    let protected = Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn(json_rpc_body_errors))
        // A client that trickles its body is cut off instead of holding a task forever.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(middleware::from_fn_with_state(state.clone(), bind_mcp_sessions))
        .route("/metrics", get(metrics_text))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new().route("/health", get(health)).route("/ready", get(ready)).merge(protected).with_state(state)
}
