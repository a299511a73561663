//! A throwaway PostgreSQL with the demo schema ([`coldquery_pg::cluster::ephemeral`]) for
//! programs that do not link the driver: `cargo xtask` starts it for the embedding example, the
//! deployment check and the bench, so that xtask itself compiles in seconds and its fast checks
//! run before anything heavy is built.
//!
//! It prints one JSON line on stdout once the server accepts connections —
//! `{"url", "port", "dir", "user", "database", "pgbench"}` (`dir` holds `postgres.log`;
//! `pgbench` is the path of the installed `pgbench`, or null) — then keeps the server until its
//! stdin closes (the caller is done, or died), stops it and deletes its directory. A failure to
//! start is printed on stderr with a non-zero exit.

use std::process::ExitCode;

use coldquery_pg::cluster::ephemeral::{DEMO_DATABASE, Ephemeral};
use coldquery_pg::cluster::local::{SUPERUSER, find_pg_binary};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let database = match Ephemeral::start().await {
        Ok(database) => database,
        Err(e) => {
            eprintln!("throwaway: could not start a throwaway PostgreSQL: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ready = serde_json::json!({
        "url": database.url(),
        "port": database.port(),
        "dir": database.dir(),
        "user": SUPERUSER,
        "database": DEMO_DATABASE,
        "pgbench": find_pg_binary("pgbench"),
    });
    // The one line the caller waits for (stdout is its pipe; nothing else is written there).
    #[allow(clippy::print_stdout)]
    {
        println!("{ready}");
    }
    let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())).await;
    match database.stop().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throwaway: stopping the throwaway PostgreSQL: {e}");
            ExitCode::FAILURE
        }
    }
}
