//! Unit tests of `coldquery-tools` over the in-memory fakes (no database): every action's
//! output and the SQL it issues, snapshotted with insta, and each tool's input schema.

mod fuzz;
mod pg_admin;
mod pg_monitor;
mod pg_query;
mod pg_schema;
mod pg_tx;
mod registry;
mod support;
