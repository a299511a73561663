//! `cargo xtask bench` (SPEC §8): the performance harness. It starts a throwaway
//! PostgreSQL, builds `coldquery-mcp` and the measuring client
//! (`coldquery-mcp/examples/bench_client.rs`, which creates the tables and times the raw driver,
//! the library, stdio, HTTP and the Node reference server in one interleaved run), runs
//! `pgbench` with 16 clients on `SELECT 1` for comparison, then prints a table of medians and
//! ratios and writes them as JSON. The Node reference server of issue 13 and the Node.js it runs
//! on are npm packages, pinned, installed once into `~/.cache/coldquery`.
//!
//! `--smoke` (what CI runs) uses debug builds, a small "large" table and a few calls per
//! scenario, and checks that every scenario ran and returned what it should; it never asserts
//! a time. The full run uses release builds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{Context, Result, bail};
use serde_json::{Value, json};

use crate::throwaway::Throwaway;
use crate::{build_debug_programs, cargo, npm_cache, pinned_node, root, run, target_dir};

/// The reference server issue 13 compares with (`query` tool, one read-only transaction per call)
/// and the driver it runs on, pinned (it asks for `pg@^8.13.0`).
const NODE_REFERENCE: &[&str] = &["@modelcontextprotocol/server-postgres@0.6.2", "pg@8.23.1"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Smoke,
}

/// `cargo xtask bench [--smoke] [--out PATH]`.
pub(crate) fn bench(args: &[String]) -> Result<()> {
    let mut mode = Mode::Full;
    let mut out = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => mode = Mode::Smoke,
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs a path")?)),
            other => bail!("unknown bench argument {other} (expected --smoke or --out PATH)"),
        }
    }
    let out = out.unwrap_or_else(|| target_dir().join("bench").join("bench.json"));
    run_bench(mode, &out)
}

/// The CI step: `cargo xtask bench --smoke`.
pub(crate) fn smoke() -> Result<()> {
    run_bench(Mode::Smoke, &target_dir().join("bench").join("smoke.json"))
}

fn run_bench(mode: Mode, out: &Path) -> Result<()> {
    let started = Instant::now();
    let profile = match mode {
        Mode::Full => {
            // Two invocations: built together, the binary would get the client features the
            // example's dev-dependencies turn on, and would not be the binary that ships.
            run(
                "build coldquery-mcp (release)",
                cargo().args(["build", "--release", "--locked", "-p", "coldquery-mcp", "--bin", "coldquery-mcp"]),
            )?;
            run(
                "build bench_client (release)",
                cargo().args(["build", "--release", "--locked", "-p", "coldquery-mcp", "--example", "bench_client"]),
            )?;
            "release"
        }
        // The smoke times nothing: the test build's programs will do (and cost nothing more).
        Mode::Smoke => {
            build_debug_programs()?;
            "debug"
        }
    };
    let server = target_dir().join(profile).join("coldquery-mcp");
    let node = pinned_node()?;
    let node_reference = npm_cache("node-reference", NODE_REFERENCE)?
        .join("node_modules/@modelcontextprotocol/server-postgres/dist/index.js");
    let client = target_dir().join(profile).join("examples").join("bench_client");

    let dir = out.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for log in ["server-stdio.log", "server-http.log", "server-node.log"] {
        let _ = std::fs::remove_file(dir.join(log));
    }
    let measurements = dir.join("measurements.json");

    let database = Throwaway::start()?;
    let pg_log = database.dir.join("postgres.log");
    let mut client_cmd = Command::new(&client);
    client_cmd
        .arg("--database-url")
        .arg(&database.url)
        .arg("--server")
        .arg(&server)
        .arg("--node")
        .arg(&node)
        .arg("--node-reference")
        .arg(&node_reference)
        .arg("--pg-log")
        .arg(&pg_log)
        .arg("--out")
        .arg(&measurements);
    if mode == Mode::Smoke {
        client_cmd.arg("--smoke");
    }
    let measured = run("bench_client", &mut client_cmd);
    let pgbench = measured.as_ref().ok().map(|()| pgbench(mode, &database, &dir));
    database.stop()?;
    measured?;

    let measurements: Value = serde_json::from_str(
        &std::fs::read_to_string(&measurements).with_context(|| format!("reading {}", measurements.display()))?,
    )
    .context("bench_client wrote malformed JSON")?;
    let report = report(measurements, pgbench.flatten(), profile);
    std::fs::write(out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    print_table(&report);
    eprintln!("bench: wrote {} in {:.1?}", out.display(), started.elapsed());
    let problems = check(&report);
    if !problems.is_empty() {
        let list = problems.join("\n  ");
        match mode {
            Mode::Smoke => bail!("bench smoke: the results are not sane:\n  {list}"),
            Mode::Full => eprintln!("bench: warning, unexpected results:\n  {list}"),
        }
    }
    Ok(())
}

/// `pgbench` with 16 clients on a `SELECT 1` script, if it is installed: its tps, or `None`.
fn pgbench(mode: Mode, database: &Throwaway, dir: &Path) -> Option<Value> {
    let Some(pgbench) = &database.pgbench else {
        eprintln!("bench: pgbench is not installed; skipping the pgbench comparison");
        return None;
    };
    let script = dir.join("select1.sql");
    std::fs::write(&script, "SELECT 1;\n").ok()?;
    let seconds = if mode == Mode::Full { 5 } else { 1 };
    let output = Command::new(pgbench)
        .args([
            "-n",
            "-c",
            "16",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-h",
            "127.0.0.1",
            "-p",
            &database.port.to_string(),
        ])
        .args(["-U", &database.user, "-f"])
        .arg(&script)
        .arg(&database.database)
        .output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            eprintln!("bench: pgbench failed: {}", String::from_utf8_lossy(&output.stderr));
            return None;
        }
        Err(e) => {
            eprintln!("bench: could not run pgbench: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    // "tps = 41234.567890 (without initial connection time)"
    let tps = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tps = "))
        .find_map(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())?;
    Some(json!({"clients": 16, "threads": 2, "seconds": seconds, "protocol": "simple", "tps": tps.round()}))
}

/// The measurements with the run's provenance, pgbench and the ratios the targets use.
fn report(mut m: Value, pgbench: Option<Value>, profile: &str) -> Value {
    let variant = |m: &Value, scenario: &str, name: &str, field: &str| -> Option<f64> {
        m["scenarios"].as_array()?.iter().find(|s| s["name"] == scenario)?["variants"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == name)?[field]
            .as_f64()
    };
    if let Some(scenarios) = m["scenarios"].as_array_mut() {
        for s in scenarios {
            let raw = s["variants"].as_array().and_then(|vs| vs.iter().find(|v| v["name"] == "raw_tx"));
            let Some(raw_p50) = raw.and_then(|r| r["p50_us"].as_f64()).filter(|p| *p > 0.0) else { continue };
            for v in s["variants"].as_array_mut().into_iter().flatten() {
                if let Some(p50) = v["p50_us"].as_f64() {
                    v["p50_vs_raw_tx"] = json!(ratio(p50, raw_p50));
                }
            }
        }
    }
    let p50 = |scenario, name| variant(&m, scenario, name, "p50_us");
    let over = |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| ratio(a, b));
    // What the server adds to a call: its p50 less the client's floor (over the same transport)
    // and the raw driver's p50.
    let overhead = |transport, floor| match (p50("select1", transport), p50("select1", floor), p50("select1", "raw_tx"))
    {
        (Some(s), Some(f), Some(r)) => Some((s - f - r).round()),
        _ => None,
    };
    let calls_per_s = |scenario, name| variant(&m, scenario, name, "calls_per_s");
    let select1_cpu = |field: &str| {
        m["scenarios"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "select1"))
            .and_then(|s| s[field].as_f64())
    };
    let http16 = m["http_concurrent"]["calls_per_s"].as_f64();
    let tps = pgbench.as_ref().and_then(|p| p["tps"].as_f64());
    let derived = json!({
        "select1_server_overhead_stdio_us": overhead("stdio", "floor_stdio"),
        "select1_server_overhead_http_us": overhead("http", "floor_http"),
        "select1_http_floor_over_stdio_floor": over(p50("select1", "floor_http"), p50("select1", "floor_stdio")),
        "select1_http_p50_over_stdio_p50": over(p50("select1", "http"), p50("select1", "stdio")),
        "capped_1m_over_1k_library": over(p50("capped_1m", "library"), p50("capped_1k", "library")),
        "capped_1m_over_1k_stdio": over(p50("capped_1m", "stdio"), p50("capped_1k", "stdio")),
        "capped_1m_over_1k_raw_tx": over(p50("capped_1m", "raw_tx"), p50("capped_1k", "raw_tx")),
        "http16_percent_of_pgbench_tps": over(http16.map(|h| h * 100.0), tps),
        "select1_stdio_over_node_calls_per_s":
            over(calls_per_s("select1", "stdio"), calls_per_s("select1", "node_stdio")),
        "read_10k_10_stdio_over_node_calls_per_s":
            over(calls_per_s("read_10k_10", "stdio"), calls_per_s("read_10k_10", "node_stdio")),
        "select1_server_cpu_node_over_stdio":
            over(select1_cpu("node_server_cpu_us_per_call"), select1_cpu("stdio_server_cpu_us_per_call")),
    });
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let mut report = json!({
        "commit": commit,
        "uncommitted_changes": dirty,
        "profile": profile,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "load_average": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_owned()),
        "pgbench": pgbench,
        "node_reference": {"packages": NODE_REFERENCE, "node": crate::NODE_PACKAGE},
        "derived": derived,
    });
    if let (Some(report), Some(measured)) = (report.as_object_mut(), m.as_object_mut()) {
        report.append(measured);
    }
    report
}

fn ratio(a: f64, b: f64) -> f64 {
    (a / b * 100.0).round() / 100.0
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").current_dir(root()).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// What every run must show, whatever the times: each scenario ran without errors and returned
/// the rows it should.
fn check(report: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let expected_rows: &[(&str, u64, Option<bool>)] = &[
        ("select1", 1, Some(false)),
        ("read_10k_10", 10_000, Some(false)),
        ("read_100k_default_cap", 500, None),
        ("read_100k_ceiling", 10_000, None),
        ("capped_1k", 500, None),
        ("capped_1m", 500, None),
        ("write_cycle", 1, None),
    ];
    let scenarios = report["scenarios"].as_array().cloned().unwrap_or_default();
    for (name, rows, truncated) in expected_rows {
        let Some(scenario) = scenarios.iter().find(|s| s["name"] == *name) else {
            problems.push(format!("scenario {name} is missing"));
            continue;
        };
        for v in scenario["variants"].as_array().into_iter().flatten() {
            let who = format!("{name}/{}", v["name"].as_str().unwrap_or("?"));
            if v["errors"].as_u64() != Some(0) {
                problems.push(format!("{who}: {} errors, first: {}", v["errors"], v["first_error"]));
            }
            if v["calls"].as_u64().unwrap_or(0) == 0 || v["p50_us"].as_f64().unwrap_or(0.0) <= 0.0 {
                problems.push(format!("{who}: no timed calls"));
            }
            if v["rows"].as_u64() != Some(*rows) {
                problems.push(format!("{who}: {} rows, expected {rows}", v["rows"]));
            }
            if let Some(truncated) = truncated
                && v["truncated"].as_bool() != Some(*truncated)
            {
                problems.push(format!("{who}: truncated is {}, expected {truncated}", v["truncated"]));
            }
        }
    }
    for name in ["select1", "read_10k_10"] {
        let has_node = scenarios.iter().any(|s| {
            s["name"] == name && s["variants"].as_array().is_some_and(|vs| vs.iter().any(|v| v["name"] == "node_stdio"))
        });
        if !has_node {
            problems.push(format!("{name}: the Node reference server did not run"));
        }
    }
    let concurrent = &report["http_concurrent"];
    if concurrent["calls"].as_u64().unwrap_or(0) == 0 || concurrent["errors"].as_u64() != Some(0) {
        problems.push(format!(
            "16 HTTP clients: {} calls, {} errors, first: {}",
            concurrent["calls"], concurrent["errors"], concurrent["first_error"]
        ));
    }
    for startup in ["startup", "startup_node"] {
        for field in ["median_ms", "first_select1_median_ms"] {
            if report[startup][field].as_f64().unwrap_or(0.0) <= 0.0 {
                problems.push(format!("no start-up time {startup}.{field}"));
            }
        }
    }
    for (what, field) in [
        ("memory_stdio", "idle_rss_kib"),
        ("memory_stdio", "peak_after_100k_kib"),
        ("memory_node", "idle_rss_kib"),
        ("memory_node", "peak_after_10k_kib"),
        ("memory_node", "peak_after_100k_all_rows_kib"),
    ] {
        if report[what][field].as_u64().unwrap_or(0) == 0 {
            problems.push(format!("{what}.{field} was not read"));
        }
    }
    if let Some(tps) = report["pgbench"].get("tps")
        && tps.as_f64().unwrap_or(0.0) <= 0.0
    {
        problems.push("pgbench reported no tps".to_owned());
    }
    problems
}

fn ms(us: &Value) -> String {
    us.as_f64().map_or_else(|| "-".to_owned(), |us| format!("{:.3}", us / 1000.0))
}

fn num(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |x| format!("{}", (x * 100.0).round() / 100.0)),
        other => other.to_string(),
    }
}

fn mib(kib: &Value) -> String {
    kib.as_f64().map_or_else(|| "-".to_owned(), |k| format!("{:.1} MiB", k / 1024.0))
}

/// The report as a plain-text table on stdout (the JSON has everything).
#[allow(clippy::print_stdout)]
fn print_table(r: &Value) {
    println!(
        "\ncoldquery bench ({} build, commit {}{}, {} CPUs, load {})",
        r["profile"].as_str().unwrap_or("?"),
        r["commit"].as_str().unwrap_or("?").get(..10).unwrap_or("?"),
        if r["uncommitted_changes"] == true { " + uncommitted changes" } else { "" },
        r["cpus"],
        r["load_average"].as_str().unwrap_or("?"),
    );
    println!(
        "{:<58} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "scenario / variant", "p50 ms", "p99 ms", "calls/s", "rows", "×raw_tx"
    );
    for s in r["scenarios"].as_array().into_iter().flatten() {
        println!("{}", s["title"].as_str().unwrap_or("?"));
        for v in s["variants"].as_array().into_iter().flatten() {
            let errors = v["errors"].as_u64().unwrap_or(0);
            println!(
                "  {:<56} {:>9} {:>9} {:>9} {:>7} {:>7}{}",
                v["label"].as_str().unwrap_or("?"),
                ms(&v["p50_us"]),
                ms(&v["p99_us"]),
                num(&v["calls_per_s"]),
                format!("{}{}", v["rows"], if v["truncated"] == true { "+" } else { "" }),
                num(&v["p50_vs_raw_tx"]),
                if errors > 0 { format!("  ({errors} errors)") } else { String::new() },
            );
        }
    }
    let c = &r["http_concurrent"];
    println!(
        "16 HTTP clients, SELECT 1: {} calls/s, p50 {} ms, p99 {} ms, {} errors",
        num(&c["calls_per_s"]),
        ms(&c["p50_us"]),
        ms(&c["p99_us"]),
        c["errors"]
    );
    match r["pgbench"].get("tps") {
        Some(tps) => println!("pgbench -c 16 -j 2, SELECT 1: {} tps", num(tps)),
        None => println!("pgbench: not run"),
    }
    let d = &r["derived"];
    println!(
        "SELECT 1 over stdio: server overhead (p50 - floor - raw_tx) {} µs; HTTP p50 / stdio p50 {}",
        num(&d["select1_server_overhead_stdio_us"]),
        num(&d["select1_http_p50_over_stdio_p50"])
    );
    println!(
        "SELECT 1 over HTTP: server overhead (p50 - HTTP floor - raw_tx) {} µs; HTTP floor / stdio floor {}",
        num(&d["select1_server_overhead_http_us"]),
        num(&d["select1_http_floor_over_stdio_floor"])
    );
    let select1 = r["scenarios"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "select1"));
    let cpu = |field: &str| select1.map_or_else(|| "-".to_owned(), |s| num(&s[field]));
    println!(
        "SELECT 1 over stdio: server CPU (user + system) per call {} µs; Node reference server {} µs",
        cpu("stdio_server_cpu_us_per_call"),
        cpu("node_server_cpu_us_per_call")
    );
    println!(
        "coldquery-mcp calls/s over the Node reference server's (stdio, same client): SELECT 1 {}, 10 000 x 10 read {}",
        num(&d["select1_stdio_over_node_calls_per_s"]),
        num(&d["read_10k_10_stdio_over_node_calls_per_s"])
    );
    println!(
        "capped read, large/1k p50: library {}, stdio {}, raw_tx {}",
        num(&d["capped_1m_over_1k_library"]),
        num(&d["capped_1m_over_1k_stdio"]),
        num(&d["capped_1m_over_1k_raw_tx"])
    );
    println!(
        "16 HTTP clients' calls/s as a percentage of pgbench's tps: {} %",
        num(&d["http16_percent_of_pgbench_tps"])
    );
    let conn = &r["connections"];
    println!(
        "connections opened during {} capped reads over stdio: {}; during the capped scenarios: {}",
        conn["capped_reads_stdio_1k"],
        conn["connections_during_capped_reads_stdio_1k"],
        conn["connections_during_scenarios"]
    );
    for (who, startup) in [("coldquery-mcp", &r["startup"]), ("Node reference server", &r["startup_node"])] {
        println!(
            "start-up over stdio, {who}: to initialize {} ms, to the first SELECT 1 {} ms (medians of {} starts)",
            num(&startup["median_ms"]),
            num(&startup["first_select1_median_ms"]),
            startup["samples_ms"].as_array().map_or(0, Vec::len)
        );
    }
    let m = &r["memory_stdio"];
    println!(
        "stdio server RSS: idle {}, peak after the 100k read {}, peak after the 10k x 10 read {}",
        mib(&m["idle_rss_kib"]),
        mib(&m["peak_after_100k_kib"]),
        mib(&m["peak_after_10k_kib"])
    );
    let n = &r["memory_node"];
    println!(
        "Node reference server RSS: idle {}, peak after 100k LIMIT 10000 {}, after the 10k x 10 read {}, \
         after all 100k rows {}",
        mib(&n["idle_rss_kib"]),
        mib(&n["peak_after_100k_limit_10000_kib"]),
        mib(&n["peak_after_10k_kib"]),
        mib(&n["peak_after_100k_all_rows_kib"])
    );
    let h = &r["memory_http"];
    println!(
        "HTTP server RSS: idle {}, before the 16 clients {}, peak {}",
        mib(&h["idle_rss_kib"]),
        mib(&h["before_16_clients_rss_kib"]),
        mib(&h["peak_kib"])
    );
}
