//! Prometheus metrics (SPEC §6): tool calls by tool, action and outcome, a latency histogram,
//! denials, truncations and timeouts, plus gauges of the pool and the sessions read at scrape
//! time. Written by hand in the text exposition format; no label ever holds caller text other
//! than an action name that looks like one (and the number of series is capped).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use coldquery_core::{ErrorKind, PoolStatus};
use coldquery_tools::ToolOutput;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The most distinct (tool, action, outcome) series kept; later ones count as action `other`.
const MAX_SERIES: usize = 512;

/// Error kinds counted as denials.
const DENIALS: [ErrorKind; 3] = [ErrorKind::WriteDenied, ErrorKind::ReadOnlyViolation, ErrorKind::StatementNotAllowed];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct State {
    calls: BTreeMap<(String, String, String), u64>,
    latency: BTreeMap<String, Histogram>,
    denials: BTreeMap<(String, String), u64>,
    truncations: BTreeMap<String, u64>,
    timeouts: BTreeMap<String, u64>,
    cancellations: u64,
    unknown_tools: u64,
}

/// Counters of the server's activity.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

/// A label value as the caller sent it only if it looks like an action name.
fn action_label(action: &str) -> String {
    if !action.is_empty()
        && action.len() <= 32
        && action.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        action.to_owned()
    } else if action.is_empty() {
        "none".to_owned()
    } else {
        "invalid".to_owned()
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Records one finished tool call.
    pub fn record_call(&self, tool: &str, action: &str, output: &ToolOutput, took: Duration) {
        let kind = output.error().map(|error| error.kind());
        let outcome = kind.map_or("ok", ErrorKind::code).to_owned();
        let mut action = action_label(action);
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.calls.len() >= MAX_SERIES
            && !state.calls.contains_key(&(tool.to_owned(), action.clone(), outcome.clone()))
        {
            action = "other".to_owned();
        }
        *state.calls.entry((tool.to_owned(), action, outcome.clone())).or_default() += 1;
        let histogram = state.latency.entry(tool.to_owned()).or_default();
        let seconds = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.buckets[i] += 1;
            }
        }
        histogram.sum += seconds;
        histogram.count += 1;
        match kind {
            Some(kind) if DENIALS.contains(&kind) => {
                *state.denials.entry((tool.to_owned(), outcome)).or_default() += 1;
            }
            Some(ErrorKind::Timeout) => *state.timeouts.entry(tool.to_owned()).or_default() += 1,
            Some(ErrorKind::Cancelled) => state.cancellations += 1,
            Some(_) => {}
            None => {
                if output.member("truncated").and_then(serde_json::Value::as_bool) == Some(true) {
                    *state.truncations.entry(tool.to_owned()).or_default() += 1;
                }
            }
        }
    }

    /// Records a call of a tool that does not exist.
    pub fn record_unknown_tool(&self) {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).unknown_tools += 1;
    }

    /// The text exposition, with the pool and session gauges as of now.
    pub fn render(&self, pool: PoolStatus, sessions: (usize, usize)) -> String {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP coldquery_tool_calls_total Tool calls by tool, action and outcome (ok or the error code).\n# TYPE coldquery_tool_calls_total counter"
        );
        for ((tool, action, outcome), n) in &state.calls {
            let _ = writeln!(
                out,
                "coldquery_tool_calls_total{{tool=\"{}\",action=\"{}\",outcome=\"{}\"}} {n}",
                escape(tool),
                escape(action),
                escape(outcome)
            );
        }

        let _ = writeln!(
            out,
            "# HELP coldquery_tool_call_duration_seconds Tool call latency.\n# TYPE coldquery_tool_call_duration_seconds histogram"
        );
        for (tool, histogram) in &state.latency {
            let tool = escape(tool);
            for (bound, n) in BUCKETS.iter().zip(histogram.buckets) {
                let _ =
                    writeln!(out, "coldquery_tool_call_duration_seconds_bucket{{tool=\"{tool}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "coldquery_tool_call_duration_seconds_bucket{{tool=\"{tool}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "coldquery_tool_call_duration_seconds_sum{{tool=\"{tool}\"}} {}", histogram.sum);
            let _ = writeln!(out, "coldquery_tool_call_duration_seconds_count{{tool=\"{tool}\"}} {}", histogram.count);
        }

        let _ = writeln!(
            out,
            "# HELP coldquery_denials_total Calls refused by the write policy or the statement classifier.\n# TYPE coldquery_denials_total counter"
        );
        for ((tool, code), n) in &state.denials {
            let _ = writeln!(out, "coldquery_denials_total{{tool=\"{}\",code=\"{}\"}} {n}", escape(tool), escape(code));
        }
        let _ = writeln!(
            out,
            "# HELP coldquery_truncations_total Results cut at max_rows or the byte budget.\n# TYPE coldquery_truncations_total counter"
        );
        for (tool, n) in &state.truncations {
            let _ = writeln!(out, "coldquery_truncations_total{{tool=\"{}\"}} {n}", escape(tool));
        }
        let _ = writeln!(
            out,
            "# HELP coldquery_timeouts_total Statements cancelled by their timeout.\n# TYPE coldquery_timeouts_total counter"
        );
        for (tool, n) in &state.timeouts {
            let _ = writeln!(out, "coldquery_timeouts_total{{tool=\"{}\"}} {n}", escape(tool));
        }
        let _ = writeln!(
            out,
            "# HELP coldquery_cancellations_total Calls cancelled by their client.\n# TYPE coldquery_cancellations_total counter\ncoldquery_cancellations_total {}",
            state.cancellations
        );
        let _ = writeln!(
            out,
            "# HELP coldquery_unknown_tool_calls_total Calls of tools that do not exist.\n# TYPE coldquery_unknown_tool_calls_total counter\ncoldquery_unknown_tool_calls_total {}",
            state.unknown_tools
        );
        let gauges = [
            ("coldquery_pool_size", "Maximum connections of the shared pool.", pool.size as usize),
            ("coldquery_pool_connections", "Open connections of the shared pool.", pool.connections as usize),
            ("coldquery_pool_idle", "Idle connections of the shared pool.", pool.idle as usize),
            ("coldquery_pool_in_use", "Connections of the shared pool lent out.", pool.in_use as usize),
            ("coldquery_pool_waiting", "Calls waiting for a connection of the shared pool.", pool.waiting as usize),
            ("coldquery_sessions_open", "Open sessions (transactions across calls).", sessions.0),
            ("coldquery_sessions_max", "Maximum open sessions.", sessions.1),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }

    /// The (tool, action) pairs seen so far (for tests and diagnostics).
    pub fn actions_seen(&self) -> BTreeSet<(String, String)> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.calls.keys().map(|(tool, action, _)| (tool.clone(), action.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coldquery_core::Error;
    use coldquery_tools::TextFormat;
    use serde_json::json;

    fn output(value: serde_json::Value) -> ToolOutput {
        ToolOutput::new(Ok(value), TextFormat::Json)
    }

    fn failed(kind: ErrorKind) -> ToolOutput {
        ToolOutput::new(Err(Error::new(kind, "m")), TextFormat::Json)
    }

    #[test]
    fn calls_denials_truncations_and_timeouts_are_counted() {
        let metrics = Metrics::default();
        let ms = Duration::from_millis(3);
        metrics.record_call("pg_query", "read", &output(json!({"rows": [], "truncated": true})), ms);
        metrics.record_call("pg_query", "write", &failed(ErrorKind::WriteDenied), ms);
        metrics.record_call("pg_query", "read", &failed(ErrorKind::Timeout), ms);
        metrics.record_call("pg_query", "re\"ad\n", &failed(ErrorKind::InvalidArgument), ms);
        let pool = PoolStatus { size: 15, connections: 2, idle: 1, in_use: 1, waiting: 3 };
        let text = metrics.render(pool, (1, 10));
        for line in [
            "coldquery_tool_calls_total{tool=\"pg_query\",action=\"read\",outcome=\"ok\"} 1",
            "coldquery_tool_calls_total{tool=\"pg_query\",action=\"write\",outcome=\"WRITE_DENIED\"} 1",
            "coldquery_tool_calls_total{tool=\"pg_query\",action=\"invalid\",outcome=\"INVALID_ARGUMENT\"} 1",
            "coldquery_denials_total{tool=\"pg_query\",code=\"WRITE_DENIED\"} 1",
            "coldquery_truncations_total{tool=\"pg_query\"} 1",
            "coldquery_timeouts_total{tool=\"pg_query\"} 1",
            "coldquery_tool_call_duration_seconds_bucket{tool=\"pg_query\",le=\"0.005\"} 4",
            "coldquery_tool_call_duration_seconds_bucket{tool=\"pg_query\",le=\"0.001\"} 0",
            "coldquery_tool_call_duration_seconds_count{tool=\"pg_query\"} 4",
            "coldquery_pool_in_use 1",
            "coldquery_pool_waiting 3",
            "coldquery_sessions_open 1",
            "coldquery_sessions_max 10",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn series_are_capped() {
        let metrics = Metrics::default();
        for i in 0..(MAX_SERIES + 10) {
            let action = format!("a{i}");
            metrics.record_call("pg_query", &action, &output(json!({})), Duration::ZERO);
        }
        let seen = metrics.actions_seen();
        assert_eq!(seen.len(), MAX_SERIES + 1);
        assert!(seen.contains(&("pg_query".to_owned(), "other".to_owned())));
    }
}
