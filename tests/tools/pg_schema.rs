//! `pg_schema` over fakes: outputs and the SQL each action issues — catalog queries with their
//! bind parameters, and DDL built from quoted identifiers.

use coldquery_core::{Field, QueryResult};
use coldquery_tools::ToolConfig;
use insta::assert_json_snapshot;
use serde_json::{Value, json};

use crate::support::{Fixture, code, transcript};

/// A result whose columns are the keys of the first object, and whose rows are the objects'
/// values, as the executor would return a catalog query.
fn objects(items: &[Value]) -> QueryResult {
    let keys: Vec<String> =
        items.first().and_then(Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default();
    QueryResult {
        fields: keys.iter().map(|k| Field { name: k.clone(), type_name: "text".into() }).collect(),
        rows: items.iter().map(|item| keys.iter().map(|k| item[k].clone()).collect()).collect(),
        ..QueryResult::default()
    }
}

/// The one row a list query returns: the total and the page as JSON.
fn page(total: u64, items: Value) -> QueryResult {
    objects(&[json!({"total": total, "items": items})])
}

async fn begin(f: &Fixture) -> String {
    f.call("pg_tx", json!({"action": "begin"})).await["session_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn list_tables_by_default() {
    let f = Fixture::new();
    f.executor.push_result(page(
        2,
        json!([
            {"schema": "public", "name": "Order\"s", "kind": "table", "owner": "app", "row_estimate": 10, "is_partition": false, "comment": null, "total_bytes": null, "total_size": null},
            {"schema": "shop", "name": "orders", "kind": "table", "owner": "app", "row_estimate": null, "is_partition": false, "comment": "customer orders", "total_bytes": null, "total_size": null},
        ]),
    ));
    let t = transcript(&f, "pg_schema", json!({"action": "list"})).await;
    assert_eq!(t["output"]["total"], 2);
    assert_eq!(t["output"]["truncated"], false);
    assert!(t["output"]["items"][0].get("total_bytes").is_none(), "sizes only when asked");
    assert_eq!(t["sql"][0]["params"], json!([null, null, 100, 0, false]));
    assert_eq!(t["sql"][0]["mode"], "Run(ReadOnly)");
    assert_json_snapshot!("list_tables", t);
}

#[tokio::test]
async fn list_pages_filters_and_sizes() {
    let f = Fixture::new();
    f.executor.push_result(page(
        5,
        json!([{"schema": "shop", "name": "orders", "table": "orders", "method": "btree", "unique": false, "primary": false,
                "valid": true, "definition": "CREATE INDEX ...", "total_bytes": 8192, "total_size": "8192 bytes"}]),
    ));
    let args = json!({"action": "list", "target": "indexes", "schema": "shop", "pattern": "ord%", "limit": 1, "offset": 2, "include_sizes": true});
    let t = transcript(&f, "pg_schema", args).await;
    let out = &t["output"];
    assert_eq!(out["truncated"], true);
    assert_eq!(out["next_offset"], 3);
    assert_eq!(out["items"][0]["total_bytes"], 8192);
    assert_eq!(t["sql"][0]["params"], json!(["shop", "ord%", 1, 2, true]));
    assert_json_snapshot!("list_indexes_paged", t);

    // A page past the end still knows the total.
    f.executor.push_result(page(5, json!([])));
    let out = f.call("pg_schema", json!({"action": "list", "target": "views", "offset": 10})).await;
    assert_eq!((out["total"].as_u64(), out["truncated"].as_bool()), (Some(5), Some(false)));
    assert_eq!(out["items"], json!([]));
}

/// One catalog query per target, each with the list parameters bound (never in the text).
#[tokio::test]
async fn list_every_target_issues_one_parameterised_query() {
    let f = Fixture::new();
    let mut issued = serde_json::Map::new();
    for target in [
        "tables",
        "views",
        "materialized_views",
        "schemas",
        "functions",
        "sequences",
        "indexes",
        "triggers",
        "constraints",
        "extensions",
        "types",
    ] {
        let t =
            transcript(&f, "pg_schema", json!({"action": "list", "target": target, "pattern": "x'; DROP TABLE t; --"}))
                .await;
        assert_eq!(code(&t["output"]), "ok", "{target}: {}", t["output"]);
        assert_eq!(t["output"]["target"], target);
        assert_eq!(t["sql"].as_array().unwrap().len(), 1, "{target}");
        let call = &t["sql"][0];
        assert_eq!(call["origin"], "Catalog");
        assert_eq!(call["params"][1], "x'; DROP TABLE t; --", "the pattern is a parameter");
        assert!(!call["sql"].as_str().unwrap().contains("DROP TABLE"), "{target}");
        issued.insert(target.to_owned(), json!({"sql": call["sql"], "params": call["params"]}));
    }
    assert_json_snapshot!("list_sql_per_target", issued);
}

#[tokio::test]
async fn list_in_a_session_runs_in_it() {
    let f = Fixture::new();
    let id = begin(&f).await;
    f.sessions.push_result(page(1, json!([{"name": "shop", "owner": "app", "comment": null}])));
    let out = f.call("pg_schema", json!({"action": "list", "target": "schemas", "session_id": id})).await;
    assert_eq!(out["items"][0]["name"], "shop");
    assert_eq!(out["session"]["id"], id.as_str());
    assert_eq!(f.sessions.statements(&id).len(), 1);
    assert!(f.executor.sql().is_empty(), "nothing ran on the shared pool");
    let out = f.call("pg_schema", json!({"action": "list", "session_id": "nope"})).await;
    assert_eq!(code(&out), "SESSION_NOT_FOUND");
}

fn table_results(f: &Fixture) {
    let push = |items: Vec<Value>| f.executor.push_result(objects(&items));
    push(vec![json!({"oid": 16384, "schema": "public", "name": "Order\"s", "kind": "partitioned_table"})]);
    push(vec![json!({
        "schema": "public", "name": "Order\"s", "kind": "partitioned_table", "owner": "app", "persistence": "permanent",
        "row_estimate": null, "rls_enabled": true, "rls_forced": false, "partition_key": "RANGE (placed_at)",
        "partition_of": null, "partition_bound": null, "has_children": true, "total_bytes": 0, "table_bytes": 0,
        "index_bytes": 0, "total_size": "0 bytes", "comment": "orders"
    })]);
    push(vec![
        json!({"position": 1, "name": "id", "type": "bigint", "nullable": false, "default": null, "identity": "always", "generated": null, "comment": null}),
        json!({"position": 2, "name": "placed_at", "type": "date", "nullable": false, "default": "now()", "identity": null, "generated": null, "comment": "when"}),
    ]);
    let constraint = |name: &str, kind: &str, definition: &str| {
        json!({"name": name, "type": kind, "columns": ["id"], "definition": definition, "deferrable": false,
               "initially_deferred": false, "validated": true, "references_schema": null, "references_table": null,
               "references_columns": null, "on_update": null, "on_delete": null})
    };
    let mut fk = constraint("orders_customer_fkey", "foreign_key", "FOREIGN KEY (id) REFERENCES customers(id)");
    fk["references_schema"] = json!("public");
    fk["references_table"] = json!("customers");
    fk["references_columns"] = json!(["id"]);
    fk["on_update"] = json!("NO ACTION");
    fk["on_delete"] = json!("CASCADE");
    push(vec![
        constraint("orders_id_check", "check", "CHECK (id > 0)"),
        fk,
        constraint("orders_pkey", "primary_key", "PRIMARY KEY (id, placed_at)"),
        constraint("orders_x_key", "unique", "UNIQUE (id)"),
        constraint("orders_excl", "exclusion", "EXCLUDE USING gist (id WITH =)"),
    ]);
    push(vec![json!({"schema": "public", "table": "lines", "name": "lines_order_fkey", "columns": ["order_id"],
                     "references_columns": ["id"], "definition": "FOREIGN KEY ...", "on_update": "NO ACTION", "on_delete": "NO ACTION"})]);
    push(vec![
        json!({"name": "orders_pkey", "definition": "CREATE UNIQUE INDEX ...", "method": "btree", "unique": true,
                     "primary": true, "valid": true, "constraint": "orders_pkey", "size_bytes": 8192, "size": "8192 bytes", "scans": 3}),
    ]);
    push(vec![
        json!({"name": "touch", "timing": "BEFORE", "events": ["INSERT"], "level": "ROW", "function": "public.touch",
                     "enabled": "enabled", "definition": "CREATE TRIGGER ..."}),
    ]);
    push(vec![
        json!({"name": "own", "type": "permissive", "command": "SELECT", "roles": ["public"], "using": "(id > 0)", "with_check": null}),
    ]);
    push(vec![
        json!({"schema": "public", "name": "orders_2024", "kind": "table", "bound": "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')"}),
    ]);
}

#[tokio::test]
async fn describe_table_gathers_every_section() {
    let f = Fixture::new();
    table_results(&f);
    let t = transcript(&f, "pg_schema", json!({"action": "describe", "name": "Order\"s", "schema": "public"})).await;
    let out = &t["output"];
    assert_eq!(code(out), "ok", "{out}");
    assert_eq!(out["primary_key"]["name"], "orders_pkey");
    assert_eq!(out["foreign_keys"][0]["references_table"], "customers");
    assert!(out["check_constraints"][0].get("references_table").is_none());
    assert_eq!(out["partitioning"]["partitions"][0]["name"], "orders_2024");
    assert_eq!(out["row_level_security"]["policies"][0]["name"], "own");
    assert_eq!(f.executor.pending(), 0, "every section was asked for");
    // The name and schema are bind parameters of the lookup; later queries use the oid.
    assert_eq!(t["sql"][0]["params"], json!(["public", "Order\"s"]));
    for call in t["sql"].as_array().unwrap()[1..].iter() {
        assert_eq!(call["params"], json!([16384]));
    }
    assert_json_snapshot!("describe_table", t);
}

#[tokio::test]
async fn describe_resolves_through_search_path_and_accepts_schema_dot_name() {
    let f = Fixture::new();
    let t = transcript(&f, "pg_schema", json!({"action": "describe", "name": "orders"})).await;
    assert_eq!(t["sql"][0]["params"], json!([null, "orders"]), "NULL schema: search_path decides");
    let t = transcript(&f, "pg_schema", json!({"action": "describe", "name": "shop.orders"})).await;
    assert_eq!(t["sql"][0]["params"], json!(["shop", "orders"]));
    let t = transcript(&f, "pg_schema", json!({"action": "describe", "name": "\"a.b\""})).await;
    assert_eq!(t["sql"][0]["params"], json!([null, "a.b"]), "a quoted part may contain a dot");
    let t = transcript(&f, "pg_schema", json!({"action": "describe", "name": "a.b", "schema": "s"})).await;
    assert_eq!(t["sql"][0]["params"], json!(["s", "a.b"]), "with 'schema', the name is literal");
}

#[tokio::test]
async fn describe_unknown_and_wrong_kind() {
    let f = Fixture::new();
    let t = transcript(&f, "pg_schema", json!({"action": "describe", "name": "nope", "schema": "shop"})).await;
    assert_eq!(code(&t["output"]), "INVALID_ARGUMENT");
    assert_eq!(t["sql"].as_array().unwrap().len(), 1, "only the lookup ran");
    assert_json_snapshot!("describe_unknown", t["output"]);

    f.executor.push_result(objects(&[json!({"oid": 1, "schema": "shop", "name": "v", "kind": "view"})]));
    let out = f.call("pg_schema", json!({"action": "describe", "name": "v", "schema": "shop"})).await;
    assert_eq!(code(&out), "INVALID_ARGUMENT");
    assert_json_snapshot!("describe_wrong_kind", out);

    let out = f.call("pg_schema", json!({"action": "describe", "target": "function", "name": "nope"})).await;
    assert_eq!(code(&out), "INVALID_ARGUMENT");
    assert!(out["error"]["hint"].as_str().unwrap().contains("'functions'"));
}

#[tokio::test]
async fn describe_view_function_sequence_and_type() {
    let f = Fixture::new();
    let push = |items: Vec<Value>| f.executor.push_result(objects(&items));

    push(vec![json!({"oid": 7, "schema": "shop", "name": "totals", "kind": "materialized_view"})]);
    push(vec![json!({"schema": "shop", "name": "totals", "kind": "materialized_view", "owner": "app",
                     "definition": " SELECT 1;", "populated": true, "comment": null})]);
    push(vec![
        json!({"position": 1, "name": "n", "type": "integer", "nullable": true, "default": null, "identity": null, "generated": null, "comment": null}),
    ]);
    push(vec![]);
    let view = transcript(
        &f,
        "pg_schema",
        json!({"action": "describe", "target": "materialized_view", "name": "totals", "schema": "shop"}),
    )
    .await;

    push(vec![
        json!({"schema": "shop", "name": "n", "signature": "shop.n(a integer)", "arguments": "a integer", "returns": "integer",
               "kind": "function", "language": "sql", "volatility": "immutable", "strict": false, "security_definer": false,
               "parallel": "unsafe", "owner": "app", "source": "SELECT a", "definition": "CREATE OR REPLACE FUNCTION ...", "comment": null}),
    ]);
    let function = transcript(&f, "pg_schema", json!({"action": "describe", "target": "function", "name": "n"})).await;

    push(vec![json!({"oid": 9, "schema": "shop", "name": "seq", "kind": "sequence"})]);
    push(vec![
        json!({"schema": "shop", "name": "seq", "owner": "app", "data_type": "bigint", "start": 1, "increment": 1,
                     "min_value": 1, "max_value": 9_223_372_036_854_775_807_i64, "cache": 1, "cycle": false, "last_value": 41,
                     "owned_by": null, "comment": null}),
    ]);
    let sequence = transcript(
        &f,
        "pg_schema",
        json!({"action": "describe", "target": "sequence", "name": "seq", "schema": "shop"}),
    )
    .await;

    push(vec![json!({"schema": "shop", "name": "status", "sql_name": "shop.status", "kind": "enum", "owner": "app",
                     "labels": ["new", "paid"], "base_type": null, "nullable": null, "default": null, "constraints": null,
                     "subtype": null, "attributes": null, "comment": null})]);
    let ty = transcript(
        &f,
        "pg_schema",
        json!({"action": "describe", "target": "type", "name": "status", "schema": "shop"}),
    )
    .await;

    for t in [&view, &function, &sequence, &ty] {
        assert_eq!(code(&t["output"]), "ok", "{t}");
    }
    assert_eq!(view["output"]["indexes"], json!([]), "a materialized view shows its indexes");
    assert_eq!(function["output"]["overloads"][0]["signature"], "shop.n(a integer)");
    assert_eq!(function["sql"][0]["params"], json!([null, "n"]));
    assert_eq!(sequence["output"]["last_value"], 41);
    assert_eq!(ty["output"]["labels"], json!(["new", "paid"]));
    assert_json_snapshot!(
        "describe_others",
        json!({"view": view, "function": function, "sequence": sequence, "type": ty})
    );
}

#[tokio::test]
async fn invalid_arguments_name_the_parameter_and_send_nothing() {
    let f = Fixture::new();
    let cases = [
        json!({"action": "list", "name": "x"}),
        json!({"action": "list", "limit": 0}),
        json!({"action": "list", "limit": 5000}),
        json!({"action": "list", "target": "views", "include_sizes": true}),
        json!({"action": "list", "target": "table"}),
        json!({"action": "list", "schema": ""}),
        json!({"action": "list", "autocommit": true}),
        json!({"action": "list", "target": "rows"}),
        json!({"action": "list", "colour": "red"}),
        json!({"action": "describe"}),
        json!({"action": "describe", "name": "t", "target": "tables"}),
        json!({"action": "describe", "name": "t", "target": "index"}),
        json!({"action": "describe", "name": "a.b.c"}),
        json!({"action": "describe", "name": "t", "pattern": "x"}),
        json!({"action": "create", "autocommit": true}),
        json!({"action": "create", "name": "t", "autocommit": true}),
        json!({"action": "create", "name": "t", "definition": "a int", "cascade": true, "autocommit": true}),
        json!({"action": "create", "target": "view", "name": "v", "definition": "SELECT 1", "if_not_exists": true, "autocommit": true}),
        json!({"action": "create", "target": "index", "name": "i", "schema": "s", "definition": "ON t (a)", "autocommit": true}),
        json!({"action": "create", "target": "tables", "name": "t", "definition": "a int", "autocommit": true}),
        json!({"action": "create", "sql": "CREATE TABLE t (a int)", "name": "t", "autocommit": true}),
        json!({"action": "alter", "name": "t", "autocommit": true}),
        json!({"action": "alter", "target": "schema", "name": "s", "definition": "RENAME TO t", "if_exists": true, "autocommit": true}),
        json!({"action": "drop", "name": "t", "definition": "(int)", "autocommit": true}),
        json!({"action": "drop", "name": "t", "if_not_exists": true, "autocommit": true}),
        json!({"action": "drop", "name": "t", "limit": 1, "autocommit": true}),
        json!({"action": "drop", "name": "", "autocommit": true}),
        json!({"action": "drop", "name": "x".repeat(64), "autocommit": true}),
        json!({"action": "truncate", "name": "t"}),
    ];
    let mut messages = Vec::new();
    for args in cases {
        let out = f.call("pg_schema", args.clone()).await;
        assert_eq!(code(&out), "INVALID_ARGUMENT", "{args}: {out}");
        messages.push(json!({"args": args, "message": out["error"]["message"]}));
    }
    assert!(f.executor.sql().is_empty(), "nothing was sent");
    assert_json_snapshot!("invalid_arguments", messages);
}

#[tokio::test]
async fn ddl_without_session_or_autocommit_is_denied_and_sends_nothing() {
    let f = Fixture::new();
    let id = begin(&f).await;
    for args in [
        json!({"action": "create", "name": "t", "definition": "a int"}),
        json!({"action": "create", "sql": "CREATE TABLE t (a int)"}),
        json!({"action": "alter", "name": "t", "definition": "ADD COLUMN b int", "autocommit": false}),
        json!({"action": "drop", "name": "t"}),
        json!({"action": "drop", "sql": "DROP TABLE t"}),
    ] {
        let t = transcript(&f, "pg_schema", args.clone()).await;
        assert_eq!(code(&t["output"]), "WRITE_DENIED", "{args}");
        assert_eq!(t["sql"], json!([]), "{args}: a denied write sends nothing");
    }
    assert!(f.sessions.statements(&id).is_empty());
    let out = f.call("pg_schema", json!({"action": "drop", "name": "t"})).await;
    let hint = out["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("session_id") && hint.contains("autocommit: true"), "{hint}");
    assert_json_snapshot!("ddl_denied", out);

    // Read-only server mode refuses DDL whatever the flags.
    let ro = Fixture::with(ToolConfig::default(), true);
    let out = ro.call("pg_schema", json!({"action": "drop", "name": "t", "autocommit": true})).await;
    assert_eq!(code(&out), "WRITE_DENIED");
    assert!(ro.executor.sql().is_empty());
}

#[tokio::test]
async fn raw_ddl_must_be_one_statement_of_the_verb() {
    let f = Fixture::new();
    let cases = [
        ("create", "DROP TABLE t", "STATEMENT_NOT_ALLOWED"),
        ("drop", "CREATE TABLE t (a int)", "STATEMENT_NOT_ALLOWED"),
        ("alter", "DELETE FROM t", "STATEMENT_NOT_ALLOWED"),
        ("create", "SELECT 1", "STATEMENT_NOT_ALLOWED"),
        ("create", "CREATE TABLE a (x int); DROP TABLE b", "STATEMENT_NOT_ALLOWED"),
        ("drop", "COMMIT", "STATEMENT_NOT_ALLOWED"),
        ("create", "CREATE TEMP TABLE x (a int)", "STATEMENT_NOT_ALLOWED"),
        ("create", "CREAT TABLE t (a int)", "DATABASE_ERROR"),
        ("create", "  ", "INVALID_ARGUMENT"),
    ];
    for (action, sql, expected) in cases {
        let out = f.call("pg_schema", json!({"action": action, "sql": sql, "autocommit": true})).await;
        assert_eq!(code(&out), expected, "{action} {sql}: {out}");
    }
    assert!(f.executor.sql().is_empty(), "nothing was sent");
    let out = f.call("pg_schema", json!({"action": "create", "sql": "DROP TABLE t", "autocommit": true})).await;
    assert_json_snapshot!("raw_wrong_verb", out);

    // CONCURRENTLY cannot run in a transaction block: in a session it is refused, with
    // autocommit it runs.
    let id = begin(&f).await;
    let sql = "CREATE INDEX CONCURRENTLY i ON t (a)";
    let out = f.call("pg_schema", json!({"action": "create", "sql": sql, "session_id": id})).await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{out}");
    assert!(f.sessions.statements(&id).is_empty());
    let out = f.call("pg_schema", json!({"action": "create", "sql": sql, "autocommit": true})).await;
    assert_eq!(out["command"], "CREATE INDEX");
    assert_eq!(f.executor.sql(), [sql]);
}

#[tokio::test]
async fn raw_ddl_runs_in_a_session_or_with_autocommit() {
    let f = Fixture::new();
    let id = begin(&f).await;
    let out =
        f.call("pg_schema", json!({"action": "alter", "sql": "COMMENT ON TABLE t IS 'x'", "session_id": id})).await;
    assert_eq!(out["command"], "COMMENT");
    assert_eq!(out["statement"], "COMMENT ON TABLE t IS 'x'");
    assert_eq!(out["session"]["id"], id.as_str());
    assert_eq!(f.sessions.statements(&id), ["COMMENT ON TABLE t IS 'x'"]);
    assert!(f.executor.sql().is_empty());

    let t = transcript(&f, "pg_schema", json!({"action": "drop", "sql": "DROP TABLE IF EXISTS t", "autocommit": true}))
        .await;
    assert_eq!(t["sql"][0]["mode"], "Run(Autocommit)");
    assert_eq!(t["sql"][0]["origin"], "Caller");
    assert_json_snapshot!("raw_drop_autocommit", t);
}

/// The statements the structured form builds: identifiers quoted, keywords static, the
/// definition appended as caller SQL.
#[tokio::test]
async fn structured_ddl_statements() {
    let f = Fixture::new();
    let cases = [
        json!({"action": "create", "name": "Order\"s", "schema": "public", "definition": "id bigint PRIMARY KEY, note text"}),
        json!({"action": "create", "name": "t", "definition": "a int", "if_not_exists": true}),
        json!({"action": "create", "target": "view", "name": "v", "schema": "s", "definition": "SELECT 1 AS one"}),
        json!({"action": "create", "target": "materialized_view", "name": "m", "definition": "SELECT 1 AS one", "if_not_exists": true}),
        json!({"action": "create", "target": "index", "name": "t_a_idx", "definition": "ON s.t (a)", "if_not_exists": true}),
        json!({"action": "create", "target": "schema", "name": "New Schema", "if_not_exists": true}),
        json!({"action": "create", "target": "sequence", "name": "s.seq", "definition": "START 100 INCREMENT 5"}),
        json!({"action": "create", "target": "function", "name": "f", "schema": "s", "definition": "(a int) RETURNS int LANGUAGE sql AS $$ SELECT a; $$"}),
        json!({"action": "create", "target": "type", "name": "mood", "definition": "AS ENUM ('sad', 'ok')"}),
        json!({"action": "create", "target": "extension", "name": "hstore", "if_not_exists": true}),
        json!({"action": "alter", "name": "t", "schema": "s", "definition": "ADD COLUMN b text", "if_exists": true}),
        json!({"action": "alter", "target": "index", "name": "s.i", "definition": "RENAME TO j"}),
        json!({"action": "alter", "target": "schema", "name": "s", "definition": "RENAME TO s2"}),
        json!({"action": "alter", "target": "function", "name": "f", "definition": "(int) IMMUTABLE"}),
        json!({"action": "alter", "target": "type", "name": "mood", "definition": "ADD VALUE 'happy'"}),
        json!({"action": "drop", "name": "t", "schema": "s", "if_exists": true, "cascade": true}),
        json!({"action": "drop", "target": "view", "name": "v"}),
        json!({"action": "drop", "target": "materialized_view", "name": "m", "if_exists": true}),
        json!({"action": "drop", "target": "index", "name": "i", "schema": "s"}),
        json!({"action": "drop", "target": "schema", "name": "s", "cascade": true}),
        json!({"action": "drop", "target": "sequence", "name": "seq"}),
        json!({"action": "drop", "target": "function", "name": "f", "definition": "(int, text)"}),
        json!({"action": "drop", "target": "type", "name": "mood"}),
        json!({"action": "drop", "target": "extension", "name": "hstore", "if_exists": true}),
    ];
    let mut built = Vec::new();
    for mut args in cases {
        args["autocommit"] = json!(true);
        let t = transcript(&f, "pg_schema", args.clone()).await;
        assert_eq!(code(&t["output"]), "ok", "{args}: {}", t["output"]);
        assert_eq!(t["sql"].as_array().unwrap().len(), 1);
        assert_eq!(t["output"]["statement"], t["sql"][0]["sql"], "the result shows the statement executed");
        assert_eq!(t["sql"][0]["params"], json!([]));
        built.push(json!({"args": args, "statement": t["output"]["statement"], "command": t["output"]["command"], "origin": t["sql"][0]["origin"]}));
    }
    assert_json_snapshot!("structured_ddl", built);
}

#[tokio::test]
async fn structured_ddl_in_a_session() {
    let f = Fixture::new();
    let id = begin(&f).await;
    let out =
        f.call("pg_schema", json!({"action": "create", "name": "t", "definition": "a int", "session_id": id})).await;
    assert_eq!(out["statement"], "CREATE TABLE \"t\" (a int)");
    assert_eq!(out["command"], "CREATE TABLE");
    assert_eq!(f.sessions.statements(&id), ["CREATE TABLE \"t\" (a int)"]);
    assert!(f.executor.sql().is_empty());
    assert_json_snapshot!("structured_in_session", out, {".session.id" => "[id]"});
}

/// Injection through names comes out as one quoted identifier; through the definition it
/// cannot add a statement.
#[tokio::test]
async fn injection_attempts_are_quoted_or_refused() {
    let f = Fixture::new();
    let payload = "t\"; DROP TABLE x; --";
    let out = f
        .call("pg_schema", json!({"action": "drop", "name": payload, "schema": "s\" CASCADE --", "autocommit": true}))
        .await;
    assert_eq!(out["statement"], r#"DROP TABLE "s"" CASCADE --"."t""; DROP TABLE x; --""#);
    assert_eq!(out["command"], "DROP");

    for definition in
        ["a int); DROP TABLE x; --", "a int); CREATE TABLE y (b int", "a int) ; COMMIT; CREATE TABLE z (c int"]
    {
        let out = f
            .call("pg_schema", json!({"action": "create", "name": "t", "definition": definition, "autocommit": true}))
            .await;
        assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED", "{definition}: {out}");
    }
    // Nor through the definitions of other targets and verbs.
    let out = f.call("pg_schema", json!({"action": "create", "target": "view", "name": "v", "definition": "SELECT 1; DROP VIEW w", "autocommit": true})).await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED");
    let out = f
        .call(
            "pg_schema",
            json!({"action": "alter", "name": "t", "definition": "RENAME TO u; DROP TABLE x", "autocommit": true}),
        )
        .await;
    assert_eq!(code(&out), "STATEMENT_NOT_ALLOWED");
    assert_eq!(f.executor.sql().len(), 1, "only the quoted drop was sent");

    let t = transcript(&f, "pg_schema", json!({"action": "describe", "name": payload, "schema": "x' OR '1'='1"})).await;
    assert_eq!(t["sql"][0]["params"], json!(["x' OR '1'='1", payload]), "names are bind parameters");
    assert!(!t["sql"][0]["sql"].as_str().unwrap().contains("DROP"));
    let denied = f
        .call(
            "pg_schema",
            json!({"action": "create", "name": "t", "definition": "a int); DROP TABLE x; --", "autocommit": true}),
        )
        .await;
    assert_json_snapshot!("definition_injection", denied);
}
