//! A throwaway PostgreSQL with the demo schema for the steps that need one (the embedding
//! example, the deployment check, the bench). It is `coldquery-pg`'s `throwaway` example, built
//! with the workspace's other programs and run as a child: xtask does not link the driver, so it compiles in seconds and
//! its fast checks run before anything heavy is built.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::Value;

use crate::error::{Context, Result, bail, ensure};
use crate::{build_debug_programs, target_dir};

/// A running throwaway PostgreSQL; [`Throwaway::stop`] (or drop) stops it and deletes its
/// directory, and so does this process dying (the child's stdin closes).
#[derive(Debug)]
pub(crate) struct Throwaway {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// The libpq URI of the demo database, as the superuser.
    pub(crate) url: String,
    /// The TCP port on 127.0.0.1.
    pub(crate) port: u16,
    /// The cluster's directory (`postgres.log` is there).
    pub(crate) dir: PathBuf,
    /// The superuser's name.
    pub(crate) user: String,
    /// The database holding the demo schema.
    pub(crate) database: String,
    /// The installed `pgbench`, if any.
    pub(crate) pgbench: Option<PathBuf>,
}

impl Throwaway {
    /// Builds the example, starts it and waits until the server accepts connections.
    pub(crate) fn start() -> Result<Throwaway> {
        build_debug_programs()?;
        let program = target_dir().join("debug").join("examples").join("throwaway");
        let mut child = Command::new(&program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {}", program.display()))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        let read = child.stdout.take().map(|out| BufReader::new(out).read_line(&mut line));
        let mut database = Throwaway {
            child: Some(child),
            stdin,
            url: String::new(),
            port: 0,
            dir: PathBuf::new(),
            user: String::new(),
            database: String::new(),
            pgbench: None,
        };
        if !matches!(read, Some(Ok(n)) if n > 0) {
            let status = database.finish()?;
            bail!("could not start a throwaway PostgreSQL ({status}; its error is above)");
        }
        let ready: Value = serde_json::from_str(&line).with_context(|| format!("throwaway printed {line:?}"))?;
        let text = |key: &str| ready[key].as_str().map(str::to_owned).with_context(|| format!("no {key} in {line}"));
        database.url = text("url")?;
        database.dir = PathBuf::from(text("dir")?);
        database.user = text("user")?;
        database.database = text("database")?;
        database.port = ready["port"].as_u64().and_then(|p| u16::try_from(p).ok()).context("no port")?;
        database.pgbench = ready["pgbench"].as_str().map(PathBuf::from);
        Ok(database)
    }

    /// Stops the server and deletes its directory, waiting until both are done.
    pub(crate) fn stop(mut self) -> Result<()> {
        let status = self.finish()?;
        ensure!(status.success(), "stopping the throwaway PostgreSQL failed ({status})");
        Ok(())
    }

    fn finish(&mut self) -> Result<std::process::ExitStatus> {
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else {
            bail!("the throwaway PostgreSQL is already stopped");
        };
        Ok(child.wait()?)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.finish();
        }
    }
}
