//! ColdQuery's integration tests, in one test binary (one link): each module exercises a layer
//! against a real PostgreSQL started by the harness (`coldquery_tests::harness`).

mod agent_safety;
mod docs;
mod escape;
mod faults;
mod locale;
mod network;
mod pg_layer;
mod pgbouncer;
mod read_policy;
mod read_stream;
mod sessions;
mod support;
mod tools_admin;
mod tools_monitor;
mod tools_query;
mod tools_schema;
mod typed_outputs;
