//! ColdQuery's integration tests, in one test binary (one link): each module exercises a layer
//! against a real PostgreSQL started by the harness (`coldquery_tests::harness`).

mod pg_layer;
mod support;
