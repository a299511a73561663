//! `cargo xtask`: the project's automation. `cargo xtask ci` is the whole CI — GitHub Actions
//! and `.ci/run` call it and nothing else, so local runs and CI cannot drift.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("deps") => check_dependency_graph(),
        Some("install") => install_prerequisites(),
        _ => {
            eprintln!("usage: cargo xtask <ci | deps | install>");
            eprintln!("  ci       fmt, clippy, dependency graph, all tests, docs (what CI runs)");
            eprintln!("  deps     check that each crate depends only on what its layer may know");
            eprintln!("  install  install system packages the build and tests need (libclang-dev, pgbouncer)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("\n==> {step}");
    let started = Instant::now();
    let status = cmd.status().with_context(|| format!("could not start {step}"))?;
    eprintln!("<== {step}: {status} in {:.1?}", started.elapsed());
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn ci() -> Result<()> {
    let started = Instant::now();
    install_prerequisites()?;
    run("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    check_dependency_graph()?;
    run(
        "clippy",
        cargo().args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]),
    )?;
    // With CI set, the test harness treats a missing PostgreSQL as a failure, never a skip.
    run(
        "tests",
        cargo().args(["test", "--workspace", "--all-targets", "--locked"]).env("CI", env::var("CI").unwrap_or_else(|_| "true".into())),
    )?;
    run("doctests", cargo().args(["test", "--workspace", "--doc", "--locked"]))?;
    run(
        "docs",
        cargo().args(["doc", "--workspace", "--no-deps", "--locked"]).env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    eprintln!("\nci: all steps passed in {:.1?}", started.elapsed());
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program} >/dev/null 2>&1")]).status().is_ok_and(|s| s.success())
}

fn libclang_present() -> bool {
    Command::new("sh")
        .args(["-c", "ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1"])
        .status()
        .is_ok_and(|s| s.success())
        || env::var_os("LIBCLANG_PATH").is_some()
}

/// Installs what a fresh machine lacks: libclang (bindgen, for the `pg_query` crate) and
/// pgbouncer (the transaction-pooling tests). PostgreSQL's server binaries are expected on PATH.
fn install_prerequisites() -> Result<()> {
    let mut missing = Vec::new();
    if !libclang_present() {
        missing.push("libclang-dev");
    }
    if !have("pgbouncer") && !Path::new("/usr/sbin/pgbouncer").exists() {
        missing.push("pgbouncer");
    }
    if !missing.is_empty() {
        let root_user = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
        if !root_user || !have("apt-get") {
            bail!("missing system packages {missing:?}; install them (Debian: apt-get install -y {})", missing.join(" "));
        }
        run("apt-get update", Command::new("apt-get").args(["update", "-qq"]))?;
        run(
            "apt-get install",
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    for program in ["initdb", "postgres", "pg_ctl"] {
        if !have(program) {
            bail!("PostgreSQL's {program} is not on PATH; the tests start a throwaway cluster with it");
        }
    }
    Ok(())
}

/// The layering of ARCHITECTURE.md, checked on the real dependency graph: a crate must not
/// depend, even indirectly, on what its layer may not know.
fn check_dependency_graph() -> Result<()> {
    eprintln!("\n==> dependency graph");
    const RULES: &[(&str, &[&str])] = &[
        ("coldquery-core", &["tokio-postgres", "bb8", "bb8-postgres", "rmcp", "clap", "axum", "pg_query", "coldquery-pg", "coldquery-tools"]),
        ("coldquery-pg", &["rmcp", "clap", "axum", "coldquery-tools", "coldquery-mcp"]),
        ("coldquery-tools", &["tokio-postgres", "bb8", "bb8-postgres", "rmcp", "clap", "axum", "coldquery-pg", "coldquery-mcp"]),
        ("coldquery-cli", &["rmcp", "coldquery-mcp"]),
        ("coldquery-mcp", &["clap_complete"]),
    ];
    let mut violations = Vec::new();
    for (krate, forbidden) in RULES {
        let out = cargo()
            .args(["tree", "--locked", "-p", krate, "-e", "normal", "--prefix", "none", "--format", "{p}"])
            .output()
            .context("could not run cargo tree")?;
        if !out.status.success() {
            bail!("cargo tree -p {krate} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if forbidden.contains(&name) {
                violations.push(format!("{krate} depends on {name}"));
            }
        }
    }
    violations.sort();
    violations.dedup();
    if !violations.is_empty() {
        bail!("layer violations:\n  {}", violations.join("\n  "));
    }
    eprintln!("<== dependency graph: ok");
    Ok(())
}
