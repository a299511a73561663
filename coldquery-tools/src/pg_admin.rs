//! `pg_admin` (being written).

use coldquery_core::{Error, Result};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::ctx::{Ctx, parse_args};

/// Arguments of `pg_admin`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgAdminArgs {
    /// The action.
    pub action: String,
}

pub(crate) async fn run(_ctx: &Ctx<'_>, args: Value) -> Result<Value> {
    let args: PgAdminArgs = parse_args("pg_admin", args)?;
    Err(Error::invalid(format!("pg_admin: action '{}' is not available yet", args.action)))
}
