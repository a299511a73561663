//! Running a local PostgreSQL from the binaries on PATH: finding them, `initdb`, the settings
//! every local cluster shares, the [`Watchdog`] that owns a running server, running them as the
//! unprivileged `postgres` OS user when we are root, and reading the server log. Shared by the
//! throwaway cluster (`ephemeral.rs`) and the test harness, so both start clusters the same way.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The OS user PostgreSQL runs as when we are root (it refuses to run as root).
pub const SERVER_USER: &str = "postgres";

/// The superuser role a local cluster is initialised with.
pub const SUPERUSER: &str = "postgres";

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

/// The last `lines` lines of the server log (or why there is none).
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| format!("(no log: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A TCP port of 127.0.0.1 that was free when probed (another process may take it first).
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|e| format!("finding a free port: {e}"))
}

/// The first `name` in a directory of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// True when this process runs as root (`id -u`, else `$USER`).
pub fn is_root() -> bool {
    match Command::new("id").arg("-u").stderr(Stdio::null()).output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim() == "0",
        _ => std::env::var("USER").is_ok_and(|user| user == "root"),
    }
}

/// True when the OS user `name` exists.
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

/// Runs `initdb` for a cluster in `<dir>/data` (as [`SERVER_USER`] when `as_root`, `dir` then
/// being theirs): superuser [`SUPERUSER`], `trust` authentication, UTF8, locale C, no syncing.
/// Returns the data directory; the error holds initdb's own output.
pub fn initdb(as_root: bool, initdb: &Path, dir: &Path) -> Result<PathBuf, String> {
    let data = dir.join("data");
    let output = as_server_user(as_root, initdb)
        .args(["-A", "trust", "--nosync", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "-D"])
        .arg(&data)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(data)
}

/// The server settings every local cluster in `dir` runs with: 127.0.0.1 and the socket in
/// `dir` only, no durability (`fsync` and the like off), UTC, the log in English, and
/// `pg_stat_statements` preloaded when `postgres` has it.
pub fn base_settings(dir: &Path, postgres: &Path) -> Vec<String> {
    let mut settings = vec![
        "listen_addresses=127.0.0.1".to_owned(),
        format!("unix_socket_directories={}", dir.display()),
        "fsync=off".to_owned(),
        "synchronous_commit=off".to_owned(),
        "full_page_writes=off".to_owned(),
        "shared_buffers=32MB".to_owned(),
        "timezone=UTC".to_owned(),
        "logging_collector=off".to_owned(),
        // Start-up failures are read from the log's text ([`startup_failure`], a port taken):
        // the cluster is ColdQuery's own, and its log speaks English whatever the
        // environment's locale.
        "lc_messages=C".to_owned(),
    ];
    if pg_stat_statements_installed(postgres) {
        settings.push("shared_preload_libraries=pg_stat_statements".to_owned());
    }
    settings
}

/// The watchdog of a local server (the `POSTGRES_WATCHDOG` script) and the pipes to it.
/// Dropping it (or [`Watchdog::finish`]) closes its stdin, so the watchdog stops PostgreSQL and
/// deletes the directory, and waits for that; the same happens when this process dies in any
/// way, since the pipe closes then too.
pub struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchdog").field("pid", &self.child.id()).field("open", &self.stdin.is_some()).finish()
    }
}

impl Watchdog {
    /// Starts the watchdog of `postgres -D <data> -c <setting>...` in `dir` (as [`SERVER_USER`]
    /// when `as_root`), in a process group of its own: a terminal's Ctrl-C must not kill it
    /// before it has cleaned up. The server starts on the first `start <port>` command.
    pub fn spawn(
        as_root: bool,
        dir: &Path,
        postgres: &Path,
        data: &Path,
        settings: &[String],
    ) -> Result<Watchdog, String> {
        let mut command = as_server_user(as_root, Path::new("sh"));
        command.arg("-c").arg(POSTGRES_WATCHDOG).arg("sh").arg(dir).arg(postgres).arg("-D").arg(data);
        for setting in settings {
            command.arg("-c").arg(setting);
        }
        let mut child = command
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting the postgres watchdog: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the postgres watchdog has no stdin/stdout pipe".to_owned());
        };
        Ok(Watchdog { child, stdin: Some(stdin), stdout: BufReader::new(stdout) })
    }

    /// Sends `line` (`start <port>`, `stop <signal>`) and waits for the answer `reply`
    /// (`started`, `stopped`).
    pub fn command(&mut self, line: &str, reply: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the postgres watchdog is closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the postgres watchdog: {e}"))?;
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).map_err(|e| format!("reading from the postgres watchdog: {e}"))?;
        if answer.trim() == reply {
            Ok(())
        } else {
            Err(format!("the postgres watchdog answered {answer:?} to {line:?}"))
        }
    }

    /// Closes the pipe (the watchdog stops postgres and deletes the directory) and waits,
    /// reporting how the watchdog ended.
    pub fn finish(mut self) -> Result<(), String> {
        self.close()
    }

    fn close(&mut self) -> Result<(), String> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|e| format!("waiting for the postgres watchdog: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("the postgres watchdog exited with {status}")) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The watchdog shell script that owns a local server, run as `sh -c SCRIPT sh <dir> <postgres>
/// -D <data>`: it starts `postgres` on `start <port>`, stops it on `stop <signal>` or when its
/// stdin closes (our process ended, however it ended), then deletes `<dir>`.
const POSTGRES_WATCHDOG: &str = r#"dir=$1
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
