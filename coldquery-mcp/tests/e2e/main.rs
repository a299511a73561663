//! End-to-end tests of the `coldquery-mcp` binary: each test spawns the real binary against a
//! fresh harness database and talks to it with rmcp's client, over stdio (child process) or
//! streamable HTTP, checking the effects from a side connection to PostgreSQL.

mod agent;
mod cli;
mod clients;
mod container;
mod down;
mod elicit;
mod fuzz;
mod http;
mod killed;
mod lean;
mod progress;
mod soak;
mod stdio;
mod support;
