//! Running a local PostgreSQL from the binaries on PATH: finding them, running them as the
//! unprivileged `postgres` OS user when we are root, and reading the server log. Shared by
//! [`crate::ephemeral`] and the test harness, so both start clusters the same way.

use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The OS user PostgreSQL runs as when we are root (it refuses to run as root).
pub const SERVER_USER: &str = "postgres";

/// A PostgreSQL server program: from `PATH`, else from the newest Debian
/// `/usr/lib/postgresql/<major>/bin` (Debian puts only client wrappers on `PATH`).
pub fn find_pg_binary(name: &str) -> Option<PathBuf> {
    if let Some(found) = find_on_path(name) {
        return Some(found);
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin").join(name)))
        })
        .filter(|(_, path)| path.is_file())
        .collect();
    majors.sort();
    majors.pop().map(|(_, path)| path)
}

/// The first log line written since `offset` that means the postmaster gave up. It reads the
/// log's English text: the clusters started with these functions set `lc_messages=C`.
pub fn startup_failure(log: &Path, offset: u64) -> Option<String> {
    let mut file = std::fs::File::open(log).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|line| {
            line.contains("PANIC:")
                || line.contains("database system is shut down")
                || (line.contains("FATAL:")
                    && !line.contains("the database system is starting up")
                    && !line.contains("not yet accepting connections"))
        })
        .map(str::to_owned)
}

pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| format!("(no log: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|e| format!("finding a free port: {e}"))
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

pub fn is_root() -> bool {
    match Command::new("id").arg("-u").stderr(Stdio::null()).output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim() == "0",
        _ => std::env::var("USER").is_ok_and(|user| user == "root"),
    }
}

pub fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `program`, run as the `postgres` OS user through `runuser` when we are root.
pub fn as_server_user(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", SERVER_USER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// True when the server's share directory has `pg_stat_statements` (so it can be preloaded).
pub fn pg_stat_statements_installed(postgres: &Path) -> bool {
    let mut share_dirs = Vec::new();
    if let Some(pg_config) = find_on_path("pg_config")
        && let Ok(output) = Command::new(pg_config).arg("--sharedir").output()
        && output.status.success()
    {
        share_dirs.push(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    }
    if let Ok(output) = Command::new(postgres).arg("--version").output() {
        // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        let version = String::from_utf8_lossy(&output.stdout).into_owned();
        if let Some(major) = version.split_whitespace().nth(2).and_then(|number| number.split('.').next()) {
            share_dirs.push(PathBuf::from(format!("/usr/share/postgresql/{major}")));
        }
    }
    if let Some(prefix) =
        std::fs::canonicalize(postgres).ok().and_then(|bin| bin.parent().and_then(Path::parent).map(Path::to_path_buf))
    {
        share_dirs.push(prefix.join("share"));
        share_dirs.push(prefix.join("share/postgresql"));
    }
    share_dirs.iter().any(|dir| dir.join("extension/pg_stat_statements.control").is_file())
}

/// The watchdog shell script that owns a local server, run as `sh -c SCRIPT sh <dir> <postgres>
/// -D <data>`: it starts `postgres` on `start <port>`, stops it on `stop <signal>` or when its
/// stdin closes (our process ended, however it ended), then deletes `<dir>`.
pub const POSTGRES_WATCHDOG: &str = r#"dir=$1
shift
pid=
while read -r cmd arg; do
  case $cmd in
    start) "$@" -p "$arg" >>"$dir/postgres.log" 2>&1 &
           pid=$!
           echo started ;;
    stop) if [ -n "$pid" ]; then kill "-$arg" "$pid" 2>/dev/null; wait "$pid"; fi
          pid=
          echo stopped ;;
  esac
done
if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null; wait "$pid"; fi
rm -rf "$dir"
"#;
