//! Embedding ColdQuery's tools in a Rust program — the example to copy.
//!
//! It connects with `DATABASE_URL` (or the libpq `PG*` variables), builds [`Tools`] with the
//! Default-Deny write policy, reads, shows a write being refused without consent, opens a
//! session, writes in it, commits, and reads the committed rows. Every call takes and returns
//! the same JSON an MCP client would send and see.
//!
//! ```sh
//! DATABASE_URL=postgres://user@localhost/db cargo run -p coldquery-tools --example embed
//! ```
//!
//! It creates a table `coldquery_embed_example` and drops it at the end. Any failure ends the
//! program with exit code 1 and the error on stderr.

// An example program reports on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use coldquery_core::{DefaultDeny, Owner};
use coldquery_pg::{Database, PgConfig, PgOptions};
use coldquery_tools::{Caller, ToolConfig, Tools};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Connect: DATABASE_URL or PG*, with libpq's sslmode rules. `connect` checks the server
    //    is reachable with these credentials before building the pools.
    let config = PgConfig::from_env()?;
    let database = Database::connect(&config, &PgOptions::default()).await?;

    // 2. The tools over the executor (sessionless calls), the session store, and the policy.
    //    `read_only: true` would refuse every write whatever the arguments.
    let policy = Arc::new(DefaultDeny { read_only: false });
    let tools = Tools::new(database.executor, database.sessions, policy, ToolConfig::default());

    // Sessions belong to an owner: another caller cannot use (or even see) this one's.
    let caller = Caller::new(Owner::new("embed-example"), "embed-example");

    // 3. A read runs in a READ ONLY transaction that is always rolled back.
    let server = call(
        &tools,
        &caller,
        "pg_query",
        json!({
            "action": "read",
            "sql": "SELECT current_database() AS database, current_setting('server_version') AS version",
        }),
    )
    .await?;
    let row = &server["rows"][0];
    println!("connected to {} (PostgreSQL {})", text(&row["database"]), text(&row["version"]));

    // 4. DDL with explicit consent (`autocommit`, below).
    autocommit(&tools, &caller, "DROP TABLE IF EXISTS coldquery_embed_example").await?;
    autocommit(
        &tools,
        &caller,
        "CREATE TABLE coldquery_embed_example (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text NOT NULL)",
    )
    .await?;

    // 5. Default-Deny: a write with neither a session nor autocommit is refused, nothing is sent.
    let denied = tools
        .call(
            &caller,
            "pg_query",
            json!({
                "action": "write",
                "sql": "INSERT INTO coldquery_embed_example (note) VALUES ('never')",
            }),
        )
        .await?;
    let refusal = denied.error().ok_or("a write without consent is refused")?;
    println!("without consent: {} ({})", refusal.kind().code(), refusal.message());

    // 6. A session: a transaction that stays open across calls until commit or rollback.
    let begun = call(&tools, &caller, "pg_tx", json!({"action": "begin", "isolation_level": "read_committed"})).await?;
    let session_id = begun["session_id"].as_str().ok_or("begin returned no session_id")?.to_owned();
    println!("began session {session_id}");

    for note in ["first", "second"] {
        // Values are always bind parameters ($1...), never formatted into the SQL.
        let inserted = call(
            &tools,
            &caller,
            "pg_query",
            json!({
                "action": "write",
                "sql": "INSERT INTO coldquery_embed_example (note) VALUES ($1) RETURNING id",
                "params": [note],
                "session_id": session_id,
            }),
        )
        .await?;
        println!(
            "inserted id {} in the session (state: {})",
            inserted["rows"][0]["id"],
            text(&inserted["session"]["transaction_state"])
        );
    }

    // Inside the session its own rows are visible; outside, nothing is until commit.
    let outside = call(
        &tools,
        &caller,
        "pg_query",
        json!({
            "action": "read",
            "sql": "SELECT count(*) AS n FROM coldquery_embed_example",
        }),
    )
    .await?;
    println!("rows visible outside the session before commit: {}", outside["rows"][0]["n"]);

    let committed = call(&tools, &caller, "pg_tx", json!({"action": "commit", "session_id": session_id})).await?;
    println!("commit: {}", text(&committed["status"]));

    // 7. The committed rows, rendered as the tools render text content (markdown here).
    let rows = tools
        .call(
            &caller,
            "pg_query",
            json!({
                "action": "read",
                "sql": "SELECT id, note FROM coldquery_embed_example ORDER BY id",
                "format": "markdown",
            }),
        )
        .await?;
    let table = rows.text();
    let rows = rows.value()?;
    print!("{table}");
    if rows["row_count"] != 2 {
        return Err(format!("expected 2 committed rows, found {}", rows["row_count"]).into());
    }

    autocommit(&tools, &caller, "DROP TABLE coldquery_embed_example").await?;
    println!("done");
    Ok(())
}

/// Calls a tool; its typed error (`coldquery_core::Error`: kind, message, hint...) propagates
/// with `?`.
async fn call(tools: &Tools, caller: &Caller, tool: &str, args: Value) -> Result<Value, Box<dyn std::error::Error>> {
    let output = tools.call(caller, tool, args).await?;
    Ok(output.value()?)
}

/// Runs one write with explicit consent: `autocommit: true` commits it on its own, outside
/// any session.
async fn autocommit(tools: &Tools, caller: &Caller, sql: &str) -> Result<Value, Box<dyn std::error::Error>> {
    call(tools, caller, "pg_query", json!({"action": "write", "sql": sql, "autocommit": true})).await
}

/// A JSON string without its quotes (other values as JSON).
fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}
