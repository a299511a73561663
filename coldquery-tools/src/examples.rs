//! Documented example calls, one or more per action, with the results they produced on the
//! `--ephemeral` demo database. They live in `examples.json` (so `cargo xtask docs` can refresh
//! the results) and feed `docs/tools.md`; an integration test re-runs every example and checks
//! that the documented result still has the shape of the real one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The session id the examples show; the example runner substitutes the real one.
pub const EXAMPLE_SESSION_ID: &str = "cqs_6f1c0e2a9b3d4c5e8f7a6b5c4d3e2f1a";

/// One documented call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The tool.
    pub tool: String,
    /// The action.
    pub action: String,
    /// What the example shows, one sentence.
    pub title: String,
    /// The arguments.
    pub args: Value,
    /// The result it produced (or its error body).
    pub result: Value,
}

/// The source of the examples, as stored in the repository.
pub const EXAMPLES_JSON: &str = include_str!("examples.json");

/// Every example, in documentation order.
pub fn examples() -> Vec<Example> {
    serde_json::from_str(EXAMPLES_JSON).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_parse() {
        let parsed: Vec<Example> = serde_json::from_str(EXAMPLES_JSON).expect("examples.json is valid");
        assert!(!parsed.is_empty());
    }
}
