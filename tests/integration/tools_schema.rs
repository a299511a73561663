//! `pg_schema` against a real PostgreSQL: every list target and describe target over a small
//! shop schema (keys, foreign keys, checks, indexes, a trigger, RLS policies, partitions, a
//! view, a materialized view, functions, sequences, an enum and a domain, comments), and DDL
//! through a session and through autocommit, checked from a side connection.

use coldquery_tests::harness::{TestDb, test_db};
use coldquery_tools::{ToolConfig, Tools};
use insta::assert_json_snapshot;
use serde_json::{Value, json};

use crate::support::{call, caller, code, count, options, tools};

/// The shop schema every test starts from (run from a side connection as the superuser).
const SHOP: &str = r#"
CREATE SCHEMA shop;
COMMENT ON SCHEMA shop IS 'the shop';
CREATE TYPE shop.order_status AS ENUM ('new', 'paid', 'shipped');
COMMENT ON TYPE shop.order_status IS 'where an order is';
CREATE DOMAIN shop.positive_int AS integer CHECK (VALUE > 0);
CREATE SEQUENCE shop.invoice_no START 1000 INCREMENT 10;
CREATE TABLE shop.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL DEFAULT 'anonymous'
);
CREATE TABLE shop.orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES shop.customers (id) ON DELETE CASCADE,
    status shop.order_status NOT NULL DEFAULT 'new',
    quantity shop.positive_int NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    total numeric(12, 2) GENERATED ALWAYS AS (price * quantity) STORED,
    note text,
    placed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_note_short CHECK (length(note) < 200)
);
COMMENT ON TABLE shop.orders IS 'customer orders';
COMMENT ON COLUMN shop.orders.note IS 'free text from the customer';
CREATE INDEX orders_placed_at_idx ON shop.orders (placed_at DESC);
CREATE UNIQUE INDEX orders_customer_note_idx ON shop.orders (customer_id, note) WHERE note IS NOT NULL;
CREATE TABLE shop.order_lines (
    order_id bigint NOT NULL REFERENCES shop.orders (id),
    line int NOT NULL,
    item text NOT NULL,
    PRIMARY KEY (order_id, line)
);
CREATE FUNCTION shop.touch_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.placed_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION shop.touch_order() IS 'keeps placed_at fresh';
CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.touch_order();
CREATE FUNCTION shop.order_count(customer bigint) RETURNS bigint LANGUAGE sql STABLE
    RETURN (SELECT count(*) FROM shop.orders WHERE customer_id = customer);
CREATE FUNCTION shop.order_count(customer bigint, wanted shop.order_status) RETURNS bigint LANGUAGE sql STABLE
    AS 'SELECT count(*) FROM shop.orders WHERE customer_id = $1 AND status = $2';
ALTER TABLE shop.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_visible ON shop.orders FOR SELECT USING (customer_id > 0);
CREATE POLICY orders_cheap ON shop.orders AS RESTRICTIVE FOR INSERT TO coldquery_rw WITH CHECK (price < 1000000);
CREATE TABLE shop.events (id bigint NOT NULL, at date NOT NULL, payload text) PARTITION BY RANGE (at);
CREATE TABLE shop.events_2024 PARTITION OF shop.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE shop.events_2025 PARTITION OF shop.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE VIEW shop.paid_orders AS SELECT id, customer_id, price FROM shop.orders WHERE status = 'paid';
COMMENT ON VIEW shop.paid_orders IS 'orders that are paid';
CREATE MATERIALIZED VIEW shop.order_totals AS SELECT customer_id, sum(price) AS spent FROM shop.orders GROUP BY customer_id;
CREATE INDEX order_totals_customer_idx ON shop.order_totals (customer_id);
CREATE TABLE public."Order""s" (id int PRIMARY KEY);
"#;

async fn shop() -> (TestDb, Tools, tokio_postgres::Client) {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(SHOP).await.expect("the shop schema is created");
    let (tools, _database) = tools(&db, &options(), ToolConfig::default(), false).await;
    (db, tools, side)
}

async fn schema(tools: &Tools, args: Value) -> Value {
    call(tools, &caller("alice"), "pg_schema", args).await
}

/// The values of `key` in a list of objects.
fn names(items: &Value, key: &str) -> Vec<String> {
    items.as_array().unwrap_or(&Vec::new()).iter().filter_map(|i| i[key].as_str().map(str::to_owned)).collect()
}

/// A catalog query from the side connection, as a boolean.
async fn exists(side: &tokio_postgres::Client, sql: &str) -> bool {
    side.query_one(sql, &[]).await.expect("side query").get(0)
}

#[tokio::test]
async fn every_list_target_lists_the_shop() {
    let (_db, tools, _side) = shop().await;
    let expected: &[(&str, &[&str])] = &[
        ("tables", &["customers", "events", "events_2024", "events_2025", "order_lines", "orders"]),
        ("views", &["paid_orders"]),
        ("materialized_views", &["order_totals"]),
        ("functions", &["order_count", "order_count", "touch_order"]),
        ("sequences", &["customers_id_seq", "invoice_no", "orders_id_seq"]),
        (
            "indexes",
            &[
                "customers_email_key",
                "customers_pkey",
                "order_lines_pkey",
                "order_totals_customer_idx",
                "orders_customer_note_idx",
                "orders_pkey",
                "orders_placed_at_idx",
            ],
        ),
        ("triggers", &["orders_touch"]),
        ("types", &["order_status", "positive_int"]),
    ];
    for (target, want) in expected {
        let out = schema(&tools, json!({"action": "list", "target": target, "schema": "shop"})).await;
        assert_eq!(code(&out), "ok", "{target}: {out}");
        let got = names(&out["items"], "name");
        assert_eq!(got, *want, "{target}");
        assert_eq!(out["total"], want.len(), "{target}");
        assert_eq!(out["truncated"], false);
    }

    let out =
        schema(&tools, json!({"action": "list", "target": "constraints", "schema": "shop", "pattern": "orders%"}))
            .await;
    let constraints: Vec<(String, String)> = out["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["type"].as_str().unwrap().to_owned()))
        .collect();
    for (name, kind) in [
        ("orders_customer_id_fkey", "foreign_key"),
        ("orders_note_short", "check"),
        ("orders_pkey", "primary_key"),
        ("orders_price_check", "check"),
    ] {
        assert!(constraints.contains(&(name.to_owned(), kind.to_owned())), "{name} in {constraints:?}");
    }

    let out = schema(&tools, json!({"action": "list", "target": "schemas"})).await;
    assert_eq!(names(&out["items"], "name"), ["public", "shop"], "system schemas are left out");
    let out = schema(&tools, json!({"action": "list", "target": "extensions"})).await;
    let extensions = names(&out["items"], "name");
    assert!(extensions.contains(&"hstore".to_owned()) && extensions.contains(&"plpgsql".to_owned()), "{extensions:?}");

    // Without a schema: every user schema, no system ones; the types of extensions are left out.
    let out = schema(&tools, json!({"action": "list"})).await;
    let tables: Vec<String> = out["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}.{}", t["schema"].as_str().unwrap(), t["name"].as_str().unwrap()))
        .collect();
    assert!(tables.contains(&"public.Order\"s".to_owned()) && tables.contains(&"shop.orders".to_owned()), "{tables:?}");
    assert!(!tables.iter().any(|t| t.starts_with("pg_") || t.starts_with("information_schema")), "{tables:?}");
    let out = schema(&tools, json!({"action": "list", "target": "types", "pattern": "hstore"})).await;
    assert_eq!(out["total"], 0, "extension types are listed with the extension: {out}");
    // A system schema named explicitly is listed.
    let out = schema(&tools, json!({"action": "list", "schema": "pg_catalog", "pattern": "pg_clas_"})).await;
    assert_eq!(names(&out["items"], "name"), ["pg_class"]);
}

#[tokio::test]
async fn list_pages_patterns_and_sizes() {
    let (_db, tools, _side) = shop().await;
    let first = schema(&tools, json!({"action": "list", "schema": "shop", "limit": 4})).await;
    assert_eq!(
        (first["total"].as_u64(), first["truncated"].as_bool(), first["next_offset"].as_u64()),
        (Some(6), Some(true), Some(4))
    );
    let second = schema(&tools, json!({"action": "list", "schema": "shop", "limit": 4, "offset": 4})).await;
    assert_eq!(names(&second["items"], "name"), ["order_lines", "orders"]);
    assert_eq!(second["truncated"], false);
    let past = schema(&tools, json!({"action": "list", "schema": "shop", "offset": 50})).await;
    assert_eq!((past["total"].as_u64(), past["items"].as_array().map(Vec::len)), (Some(6), Some(0)));

    // ILIKE: case-insensitive, with _ and %; quotes in a pattern are just characters.
    let out = schema(&tools, json!({"action": "list", "pattern": "EVENTS\\_20%"})).await;
    assert_eq!(names(&out["items"], "name"), ["events_2024", "events_2025"]);
    let out = schema(&tools, json!({"action": "list", "pattern": "order\"s"})).await;
    assert_eq!(names(&out["items"], "name"), ["Order\"s"]);
    let out = schema(&tools, json!({"action": "list", "pattern": "x' OR '1'='1"})).await;
    assert_eq!(out["total"], 0);

    let out =
        schema(&tools, json!({"action": "list", "schema": "shop", "pattern": "orders", "include_sizes": true})).await;
    let orders = &out["items"][0];
    assert!(orders["total_bytes"].as_i64().unwrap() > 0, "{orders}");
    assert!(orders["total_size"].is_string());
    assert_eq!(orders["comment"], "customer orders");
    let out = schema(&tools, json!({"action": "list", "target": "indexes", "schema": "shop", "pattern": "orders_pkey", "include_sizes": true})).await;
    assert!(out["items"][0]["total_bytes"].as_i64().unwrap() > 0, "{out}");
    let out =
        schema(&tools, json!({"action": "list", "target": "sequences", "schema": "shop", "pattern": "orders_id_seq"}))
            .await;
    assert_eq!(out["items"][0]["owned_by"], json!({"schema": "shop", "table": "orders", "column": "id"}));
}

/// Sizes, scan counts and the owner depend on the server, not on the schema.
fn redact_table(mut out: Value) -> Value {
    out["owner"] = json!("[owner]");
    for key in ["total_bytes", "table_bytes", "index_bytes", "total"] {
        out["sizes"][key] = json!("[size]");
    }
    for index in out["indexes"].as_array_mut().unwrap() {
        for key in ["size_bytes", "size", "scans"] {
            index[key] = json!("[volatile]");
        }
    }
    out
}

#[tokio::test]
async fn describe_the_orders_table() {
    let (_db, tools, _side) = shop().await;
    let out = schema(&tools, json!({"action": "describe", "name": "orders", "schema": "shop"})).await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["primary_key"]["columns"], json!(["id"]));
    assert_eq!(out["foreign_keys"][0]["references_table"], "customers");
    assert_eq!(out["foreign_keys"][0]["on_delete"], "CASCADE");
    assert_eq!(names(&out["referenced_by"], "table"), ["order_lines"]);
    assert_eq!(names(&out["check_constraints"], "name"), ["orders_note_short", "orders_price_check"]);
    assert_eq!(out["row_level_security"]["enabled"], true);
    assert_eq!(names(&out["row_level_security"]["policies"], "name"), ["orders_cheap", "orders_visible"]);
    assert_eq!(names(&out["triggers"], "name"), ["orders_touch"]);
    assert!(
        out["indexes"].as_array().unwrap().iter().all(|i| i["valid"] == true && i["size_bytes"].as_i64() > Some(0))
    );
    let total = &out["columns"][5];
    assert_eq!(
        (total["name"].as_str(), total["generated"].as_str()),
        (Some("total"), Some("(price * (quantity)::numeric)"))
    );
    assert_eq!(out["partitioning"], Value::Null);
    assert_json_snapshot!("describe_orders", redact_table(out));

    let customers = schema(&tools, json!({"action": "describe", "name": "shop.customers"})).await;
    assert_eq!(customers["columns"][0]["identity"], "always");
    assert_eq!(names(&customers["unique_constraints"], "name"), ["customers_email_key"]);
    assert_eq!(names(&customers["referenced_by"], "table"), ["orders"]);
}

#[tokio::test]
async fn describe_partitions_views_functions_sequences_and_types() {
    let (_db, tools, _side) = shop().await;
    let events = schema(&tools, json!({"action": "describe", "name": "events", "schema": "shop"})).await;
    assert_eq!(events["kind"], "partitioned_table");
    assert_eq!(events["partitioning"]["partition_key"], "RANGE (at)");
    assert_eq!(names(&events["partitioning"]["partitions"], "name"), ["events_2024", "events_2025"]);
    let part = schema(&tools, json!({"action": "describe", "name": "events_2024", "schema": "shop"})).await;
    assert_eq!(part["partitioning"]["partition_of"], json!({"schema": "shop", "name": "events"}));
    assert_eq!(part["partitioning"]["partition_bound"], "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')");

    let view =
        schema(&tools, json!({"action": "describe", "target": "view", "name": "paid_orders", "schema": "shop"})).await;
    assert_eq!(view["kind"], "view");
    assert!(view["definition"].as_str().unwrap().contains("'paid'::shop.order_status"), "{view}");
    assert_eq!(names(&view["columns"], "name"), ["id", "customer_id", "price"]);
    assert_eq!(view["comment"], "orders that are paid");
    assert!(view.get("indexes").is_none() && view.get("populated").is_none());
    let matview = schema(
        &tools,
        json!({"action": "describe", "target": "materialized_view", "name": "order_totals", "schema": "shop"}),
    )
    .await;
    assert_eq!((matview["kind"].as_str(), matview["populated"].as_bool()), (Some("materialized_view"), Some(true)));
    assert_eq!(names(&matview["indexes"], "name"), ["order_totals_customer_idx"]);

    let function =
        schema(&tools, json!({"action": "describe", "target": "function", "name": "order_count", "schema": "shop"}))
            .await;
    assert_eq!(
        names(&function["overloads"], "signature"),
        ["shop.order_count(customer bigint)", "shop.order_count(customer bigint, wanted shop.order_status)"]
    );
    let first = &function["overloads"][0];
    assert_eq!(
        (first["language"].as_str(), first["volatility"].as_str(), first["returns"].as_str()),
        (Some("sql"), Some("stable"), Some("bigint"))
    );
    assert!(first["source"].as_str().unwrap().contains("count(*)"), "{first}");
    let trigger_fn =
        schema(&tools, json!({"action": "describe", "target": "function", "name": "shop.touch_order"})).await;
    assert_eq!(trigger_fn["overloads"][0]["comment"], "keeps placed_at fresh");
    assert!(
        trigger_fn["overloads"][0]["definition"]
            .as_str()
            .unwrap()
            .starts_with("CREATE OR REPLACE FUNCTION shop.touch_order()")
    );

    let sequence =
        schema(&tools, json!({"action": "describe", "target": "sequence", "name": "invoice_no", "schema": "shop"}))
            .await;
    assert_eq!((sequence["start"].as_i64(), sequence["increment"].as_i64()), (Some(1000), Some(10)));
    assert_eq!(sequence["owned_by"], Value::Null);

    let status =
        schema(&tools, json!({"action": "describe", "target": "type", "name": "order_status", "schema": "shop"})).await;
    assert_eq!((status["kind"].as_str(), status["labels"].clone()), (Some("enum"), json!(["new", "paid", "shipped"])));
    assert_eq!(status["comment"], "where an order is");
    let domain =
        schema(&tools, json!({"action": "describe", "target": "type", "name": "positive_int", "schema": "shop"})).await;
    assert_eq!(
        (domain["base_type"].as_str(), domain["constraints"].clone()),
        (Some("integer"), json!(["CHECK (VALUE > 0)"]))
    );
}

#[tokio::test]
async fn describe_resolution_and_unknown_objects() {
    let (_db, tools, _side) = shop().await;
    // public is on search_path, shop is not.
    let quoted = schema(&tools, json!({"action": "describe", "name": "Order\"s"})).await;
    assert_eq!((quoted["schema"].as_str(), quoted["name"].as_str()), (Some("public"), Some("Order\"s")));
    for args in [
        json!({"action": "describe", "name": "orders"}),
        json!({"action": "describe", "name": "ORDERS", "schema": "shop"}),
        json!({"action": "describe", "name": "nope", "schema": "nowhere"}),
        json!({"action": "describe", "target": "function", "name": "order_count"}),
        json!({"action": "describe", "target": "type", "name": "order_status"}),
        json!({"action": "describe", "name": "x' OR '1'='1", "schema": "shop"}),
    ] {
        let out = schema(&tools, args.clone()).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{args}: {out}");
        assert!(out["error"]["hint"].as_str().unwrap().contains("action 'list'"), "{out}");
    }
    let wrong = schema(&tools, json!({"action": "describe", "name": "paid_orders", "schema": "shop"})).await;
    assert_eq!(code(&wrong), "INVALID_ARGUMENT");
    assert_eq!(wrong["error"]["hint"], "call describe with target 'view'");
    let index = schema(&tools, json!({"action": "describe", "name": "orders_pkey", "schema": "shop"})).await;
    assert!(index["error"]["message"].as_str().unwrap().contains("is an index, not a table"), "{index}");
}

#[tokio::test]
async fn ddl_in_a_session_is_visible_only_after_commit() {
    let (_db, tools, side) = shop().await;
    let alice = caller("alice");
    let id = call(&tools, &alice, "pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let created = call(
        &tools,
        &alice,
        "pg_schema",
        json!({"action": "create", "schema": "shop", "name": "Gift Cards",
        "definition": "id bigint PRIMARY KEY, code text NOT NULL UNIQUE", "session_id": id}),
    )
    .await;
    assert_eq!(code(&created), "ok", "{created}");
    assert_eq!(
        created["statement"],
        "CREATE TABLE \"shop\".\"Gift Cards\" (id bigint PRIMARY KEY, code text NOT NULL UNIQUE)"
    );
    assert_eq!(created["session"]["transaction_state"], "idle");
    let commented = call(
        &tools,
        &alice,
        "pg_schema",
        json!({"action": "alter", "sql": "COMMENT ON TABLE shop.\"Gift Cards\" IS 'prepaid'", "session_id": id}),
    )
    .await;
    assert_eq!(commented["command"], "COMMENT");
    assert!(!exists(&side, "SELECT to_regclass('shop.\"Gift Cards\"') IS NOT NULL").await, "not visible before commit");

    // Introspection inside the session sees the uncommitted table; outside it does not.
    let inside = call(
        &tools,
        &alice,
        "pg_schema",
        json!({"action": "describe", "schema": "shop", "name": "Gift Cards", "session_id": id}),
    )
    .await;
    assert_eq!(inside["comment"], "prepaid");
    assert_eq!(names(&inside["unique_constraints"], "name"), ["Gift Cards_code_key"]);
    assert_eq!(inside["session"]["id"], id.as_str());
    let outside =
        call(&tools, &alice, "pg_schema", json!({"action": "describe", "schema": "shop", "name": "Gift Cards"})).await;
    assert_eq!(code(&outside), "INVALID_ARGUMENT");
    let listed = call(
        &tools,
        &alice,
        "pg_schema",
        json!({"action": "list", "schema": "shop", "pattern": "gift%", "session_id": id}),
    )
    .await;
    assert_eq!(names(&listed["items"], "name"), ["Gift Cards"]);

    let committed = call(&tools, &alice, "pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(code(&committed), "ok", "{committed}");
    assert!(exists(&side, "SELECT obj_description('shop.\"Gift Cards\"'::regclass, 'pg_class') = 'prepaid'").await);

    // A rolled-back session leaves nothing behind.
    let id = call(&tools, &alice, "pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned();
    let dropped = call(
        &tools,
        &alice,
        "pg_schema",
        json!({"action": "drop", "schema": "shop", "name": "Gift Cards", "session_id": id}),
    )
    .await;
    assert_eq!(dropped["statement"], "DROP TABLE \"shop\".\"Gift Cards\"");
    call(&tools, &alice, "pg_tx", json!({"action": "rollback", "session_id": id})).await;
    assert!(exists(&side, "SELECT to_regclass('shop.\"Gift Cards\"') IS NOT NULL").await);
}

#[tokio::test]
async fn ddl_with_autocommit_commits_on_its_own() {
    let (_db, tools, side) = shop().await;
    let steps = [
        json!({"action": "create", "target": "schema", "name": "archive", "if_not_exists": true}),
        json!({"action": "create", "schema": "archive", "name": "old_orders", "definition": "LIKE shop.orders INCLUDING DEFAULTS"}),
        json!({"action": "alter", "schema": "archive", "name": "old_orders", "definition": "ADD COLUMN archived_at date"}),
        json!({"action": "create", "target": "index", "name": "old_orders_archived_idx", "definition": "ON archive.old_orders (archived_at)"}),
        json!({"action": "create", "target": "view", "schema": "archive", "name": "recent", "definition": "SELECT id FROM archive.old_orders WHERE archived_at > '2024-01-01'"}),
        json!({"action": "create", "target": "sequence", "schema": "archive", "name": "batch_no", "definition": "START 5"}),
        json!({"action": "create", "target": "type", "schema": "archive", "name": "reason", "definition": "AS ENUM ('late', 'lost')"}),
        json!({"action": "alter", "target": "type", "schema": "archive", "name": "reason", "definition": "ADD VALUE 'other'"}),
        json!({"action": "create", "target": "function", "schema": "archive", "name": "twice", "definition": "(a int) RETURNS int LANGUAGE sql IMMUTABLE RETURN a * 2"}),
        json!({"action": "create", "sql": "CREATE INDEX CONCURRENTLY old_orders_id_idx ON archive.old_orders (id)"}),
    ];
    for mut args in steps {
        args["autocommit"] = json!(true);
        let out = schema(&tools, args.clone()).await;
        assert_eq!(code(&out), "ok", "{args}: {out}");
    }
    assert_eq!(count(&side, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'archive' AND table_name = 'old_orders' AND column_name = 'archived_at'").await, 1);
    assert!(exists(&side, "SELECT to_regclass('archive.old_orders_archived_idx') IS NOT NULL AND to_regclass('archive.old_orders_id_idx') IS NOT NULL").await);
    assert!(exists(&side, "SELECT archive.twice(21) = 42").await);
    assert!(exists(&side, "SELECT nextval('archive.batch_no') = 5").await);
    assert!(exists(&side, "SELECT enum_range(NULL::archive.reason)::text = '{late,lost,other}'").await);

    for args in [
        json!({"action": "drop", "target": "view", "schema": "archive", "name": "recent"}),
        json!({"action": "drop", "target": "function", "schema": "archive", "name": "twice", "definition": "(int)"}),
        json!({"action": "drop", "target": "index", "schema": "archive", "name": "old_orders_archived_idx", "if_exists": true}),
        json!({"action": "drop", "target": "sequence", "schema": "archive", "name": "batch_no"}),
        json!({"action": "drop", "sql": "DROP TYPE archive.reason"}),
        json!({"action": "drop", "target": "schema", "name": "archive", "cascade": true}),
        json!({"action": "drop", "target": "schema", "name": "archive", "if_exists": true}),
    ] {
        let mut args = args;
        args["autocommit"] = json!(true);
        let out = schema(&tools, args.clone()).await;
        assert_eq!(code(&out), "ok", "{args}: {out}");
    }
    assert!(!exists(&side, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'archive')").await);
    // A database error is reported as such, with its SQLSTATE.
    let out =
        schema(&tools, json!({"action": "drop", "target": "schema", "name": "archive", "autocommit": true})).await;
    assert_eq!((code(&out).as_str(), out["error"]["sqlstate"].as_str()), ("DATABASE_ERROR", Some("3F000")), "{out}");
}

#[tokio::test]
async fn denied_and_refused_ddl_leaves_the_database_unchanged() {
    let (db, tools, side) = shop().await;
    let before = count(&side, "SELECT count(*) FROM pg_class WHERE relnamespace = 'shop'::regnamespace").await;
    for (args, expected) in [
        (json!({"action": "drop", "schema": "shop", "name": "orders", "cascade": true}), "WRITE_DENIED"),
        (json!({"action": "drop", "sql": "DROP TABLE shop.orders CASCADE", "autocommit": false}), "WRITE_DENIED"),
        (json!({"action": "create", "name": "t", "definition": "a int"}), "WRITE_DENIED"),
        (
            json!({"action": "create", "sql": "DROP TABLE shop.orders CASCADE", "autocommit": true}),
            "STATEMENT_NOT_ALLOWED",
        ),
        (json!({"action": "alter", "sql": "DELETE FROM shop.orders", "autocommit": true}), "STATEMENT_NOT_ALLOWED"),
        (
            json!({"action": "create", "name": "t", "definition": "a int); DROP TABLE shop.orders CASCADE; --", "autocommit": true}),
            "STATEMENT_NOT_ALLOWED",
        ),
        (
            json!({"action": "alter", "schema": "shop", "name": "orders", "definition": "ADD COLUMN x int; DROP TABLE shop.customers CASCADE", "autocommit": true}),
            "STATEMENT_NOT_ALLOWED",
        ),
        (
            json!({"action": "drop", "sql": "DROP TABLE shop.orders; DROP TABLE shop.customers", "autocommit": true}),
            "STATEMENT_NOT_ALLOWED",
        ),
    ] {
        let out = schema(&tools, args.clone()).await;
        assert_eq!(code(&out), expected, "{args}: {out}");
    }
    // Read-only server mode refuses DDL even with autocommit.
    let (read_only, _database) = crate::support::tools(&db, &options(), ToolConfig::default(), true).await;
    let out = call(
        &read_only,
        &caller("bob"),
        "pg_schema",
        json!({"action": "drop", "schema": "shop", "name": "orders", "autocommit": true}),
    )
    .await;
    assert_eq!(code(&out), "WRITE_DENIED");
    let after = count(&side, "SELECT count(*) FROM pg_class WHERE relnamespace = 'shop'::regnamespace").await;
    assert_eq!(before, after, "nothing was created or dropped");
    assert!(exists(&side, "SELECT to_regclass('public.t') IS NULL").await);
}

/// Names are identifiers, never SQL: a name carrying a statement creates a table with that
/// odd name, and the real tables are untouched.
#[tokio::test]
async fn injection_through_names_creates_an_oddly_named_table() {
    let (_db, tools, side) = shop().await;
    let name = "x\"; DROP TABLE shop.orders CASCADE; --";
    let out = schema(
        &tools,
        json!({"action": "create", "schema": "shop", "name": name, "definition": "id int", "autocommit": true}),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["statement"], r#"CREATE TABLE "shop"."x""; DROP TABLE shop.orders CASCADE; --" (id int)"#);
    assert!(exists(&side, "SELECT to_regclass('shop.orders') IS NOT NULL").await);
    let described = schema(&tools, json!({"action": "describe", "schema": "shop", "name": name})).await;
    assert_eq!(described["name"], name);
    let dropped = schema(&tools, json!({"action": "drop", "schema": "shop", "name": name, "autocommit": true})).await;
    assert_eq!(code(&dropped), "ok", "{dropped}");
    assert!(exists(&side, "SELECT to_regclass('shop.orders') IS NOT NULL").await);
    assert_eq!(count(&side, "SELECT count(*) FROM pg_class WHERE relname LIKE 'x\"%'").await, 0);
}
