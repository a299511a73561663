//! ColdQuery's MCP server: a thin adapter that serves [`coldquery_tools::Tools`] to MCP clients
//! over stdio and streamable HTTP with rmcp.
//!
//! This is the only crate that knows rmcp. It does four things and no SQL:
//! - [`server`]: the rmcp [`rmcp::ServerHandler`] — tools, resources and prompts from the tools
//!   registry, results as `structuredContent` plus JSON text, the caller's session owner and the
//!   request's cancellation handed down;
//! - [`http`]: `/mcp` behind bearer tokens, `Host`/`Origin` validation and a body limit, plus
//!   `/health`, `/ready` and `/metrics`;
//! - [`stdio`]: the stdio transport with back-pressure (a client that stops reading stdout
//!   stops the server reading stdin, instead of queueing answers without bound), over
//!   [`lines`], the wire of JSON-RPC lines that decodes tool calls and writes tool results
//!   directly;
//! - [`config`]: flags with environment variables, validated fail-closed;
//! - [`mod@run`]: start-up and shutdown (every open session rolled back before exit).
//!
//! Observability lives in [`metrics`] (Prometheus text) and the JSON-lines audit log
//! ([`coldquery_tools::JsonLinesAudit`]).

pub mod auth;
pub mod config;
mod convert;
pub mod http;
pub mod lines;
pub mod metrics;
pub mod run;
pub mod server;
pub mod stdio;

pub use config::{Args, Config, ConfigError, LogFormat, Transport};
pub use run::{RunError, run, shutdown_on_signals};
pub use server::{Channel, ColdQueryServer};
