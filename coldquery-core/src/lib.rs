//! ColdQuery's core: the seams every other crate is built on.
//!
//! This crate knows no database driver, no MCP and no CLI. It defines:
//! - the [`Executor`], [`SessionStore`] and [`WritePolicy`] traits that `coldquery-pg`
//!   implements and `coldquery-tools` is written against;
//! - the identifier sanitizer ([`Ident`], [`QualifiedName`]), the only way a name reaches SQL;
//! - SQL provenance ([`Sql`]): fixed catalog SQL, SQL built from static fragments and
//!   identifiers, or caller SQL — never a `String` of unknown origin;
//! - the value and result model ([`Param`], [`QueryResult`]) and the error model ([`Error`]).

mod error;
mod exec;
mod ident;
mod policy;
mod session;
mod sql;
mod tx;
mod value;

pub mod units;

pub use error::{Error, ErrorKind, Result};
pub use exec::{
    Access, Executor, Footprint, GUARD_REFUSAL, GUARD_REFUSAL_END, Guard, Limits, PoolStatus, RowSink, Statement,
    Streamed,
};
pub use ident::{Ident, IdentError, MAX_IDENT_BYTES, QualifiedName};
pub use policy::{DefaultDeny, WriteIntent, WritePolicy, WriteTarget};
pub use session::{
    Owner, SavepointOp, SessionEnd, SessionId, SessionInfo, SessionStore, TxState, commit_failed_after_error,
    session_not_found, unknown_savepoint,
};
pub use sql::{CallerSql, MAX_SQL_BYTES, Origin, Sql, SqlBuilder};
pub use tokio_util::sync::CancellationToken;
pub use tx::{Isolation, OnError, TxOptions};
pub use value::{Field, Param, QueryResult, parse_own_json, quote_array_element};
