//! End-to-end tests of the `coldquery` binary against a real PostgreSQL (the test harness's
//! database, or a throwaway one with `--ephemeral`): one test binary, one module per concern.

mod commands;
mod connection;
mod ephemeral;
mod errors;
mod export;
mod formats;
mod pty;
mod shell;
mod support;
