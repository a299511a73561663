//! Failures and exit codes: 0 ok, 1 a tool (or the database) reported an error, 2 the command
//! line or the configuration is wrong and nothing was run.

use serde_json::{Map, Value, json};

/// The process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Everything succeeded.
    Ok = 0,
    /// A tool call failed (bad SQL, a denied write, an unreachable database...).
    ToolError = 1,
    /// A usage or configuration error: nothing was run.
    Usage = 2,
}

/// Something that stops a command, with the SPEC §2 error object shown to the user.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
    /// `{"code"?, "message", "hint"?, "sqlstate"?, "detail"?, "position"?, ...}`.
    pub(crate) error: Value,
}

impl Failure {
    /// A command line the CLI cannot use (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        let message = message.into();
        Failure { exit: Exit::Usage, error: json!({"message": message}), message }
    }

    /// A setting that cannot be used (exit 2).
    pub(crate) fn config(message: impl Into<String>) -> Failure {
        Failure::usage(message)
    }

    /// A failure with one of the SPEC §2 codes (exit 1).
    pub(crate) fn tool(code: &str, message: impl Into<String>) -> Failure {
        let message = message.into();
        Failure { exit: Exit::ToolError, error: json!({"code": code, "message": message}), message }
    }

    /// From a tool's error body `{"error": {...}}` (exit 1).
    pub(crate) fn from_error_json(body: &Value) -> Failure {
        let error = match body.get("error") {
            Some(Value::Object(object)) => Value::Object(object.clone()),
            _ => json!({"code": "INTERNAL", "message": body.to_string()}),
        };
        let message = error["message"].as_str().unwrap_or("the call failed").to_owned();
        Failure { exit: Exit::ToolError, error, message }
    }

    /// The error as the user sees it on stderr: `error[CODE]: message` and one line per
    /// further field (hint, detail, sqlstate, position, operation_index).
    pub(crate) fn render_text(&self) -> String {
        render_error_text(&self.error)
    }

    /// The error body `{"error": {...}}` as pretty JSON.
    pub(crate) fn render_json(&self) -> String {
        let body = json!({"error": self.error});
        serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string())
    }
}

/// Renders a SPEC §2 error object as text lines.
pub(crate) fn render_error_text(error: &Value) -> String {
    let empty = Map::new();
    let object = error.as_object().unwrap_or(&empty);
    let message = object.get("message").and_then(Value::as_str).unwrap_or("the call failed");
    let mut out = match object.get("code").and_then(Value::as_str) {
        Some(code) => format!("error[{code}]: {message}\n"),
        None => format!("error: {message}\n"),
    };
    for (key, value) in object {
        if key == "code" || key == "message" {
            continue;
        }
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("{key}: {text}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_errors_show_code_and_every_field() {
        let failure = Failure::from_error_json(&json!({"error": {
            "code": "DATABASE_ERROR", "message": "relation \"nope\" does not exist",
            "hint": "check the name", "sqlstate": "42P01", "position": 15
        }}));
        assert_eq!(failure.exit, Exit::ToolError);
        assert_eq!(
            failure.render_text(),
            "error[DATABASE_ERROR]: relation \"nope\" does not exist\nhint: check the name\nsqlstate: 42P01\nposition: 15\n"
        );
        assert_eq!(Failure::usage("bad").render_text(), "error: bad\n");
        assert_eq!(Failure::usage("bad").exit as i32, 2);
        assert_eq!(
            Failure::tool("UNAVAILABLE", "down").render_json(),
            "{\n  \"error\": {\n    \"code\": \"UNAVAILABLE\",\n    \"message\": \"down\"\n  }\n}"
        );
    }
}
