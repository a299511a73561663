//! `pg_monitor` (being written).

use coldquery_core::{Error, Result};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::ctx::{Ctx, parse_args};

/// Arguments of `pg_monitor`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgMonitorArgs {
    /// The action.
    pub action: String,
}

pub(crate) async fn run(_ctx: &Ctx<'_>, args: Value) -> Result<Value> {
    let args: PgMonitorArgs = parse_args("pg_monitor", args)?;
    Err(Error::invalid(format!("pg_monitor: action '{}' is not available yet", args.action)))
}
