//! Catalog SQL, each query written once: introspection (`schema`), administration (`admin`),
//! monitoring (`monitor`). Every query here is a fixed `&'static str` ([`coldquery_core::Sql::catalog`])
//! whose inputs are bind parameters; `pg_schema`, `pg_admin`, `pg_monitor` and the resources
//! all read from here.

pub(crate) mod admin;
pub(crate) mod monitor;
pub(crate) mod policy;
pub(crate) mod preview;
pub(crate) mod schema;
