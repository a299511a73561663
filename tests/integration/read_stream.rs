//! `Tools::read_stream` over the real PostgreSQL: every row in order with no cap, values as a
//! collected read renders them (server-rendered types too), refused exactly as `pg_query read`
//! refuses, and stopped on the server when the sink fails, the timeout passes or the caller
//! cancels; JSON arrays given for array parameters round-trip on every path.

use std::time::{Duration, Instant};

use coldquery_core::{Error, ErrorKind, Field, RowSink};
use coldquery_tests::harness::test_db;
use coldquery_tools::ToolConfig;
use serde_json::{Value, json};

use crate::support::{call, caller, code, count, options, sessionless_read, tools};

/// Collects what a stream hands over, or fails after `fail_after` rows.
#[derive(Default)]
struct Collect {
    fields: Option<Vec<Field>>,
    rows: Vec<Vec<Value>>,
    fail_after: Option<usize>,
}

impl RowSink for Collect {
    fn columns(&mut self, fields: &[Field]) -> coldquery_core::Result<()> {
        assert!(self.fields.is_none(), "columns come once");
        self.fields = Some(fields.to_vec());
        Ok(())
    }

    fn row(&mut self, values: Vec<Value>) -> coldquery_core::Result<()> {
        assert!(self.fields.is_some(), "columns come before rows");
        if self.fail_after.is_some_and(|n| self.rows.len() >= n) {
            return Err(Error::new(ErrorKind::Cancelled, "the sink is full"));
        }
        self.rows.push(values);
        Ok(())
    }
}

fn stream_args(sql: &str) -> Value {
    json!({"sql": sql})
}

#[tokio::test]
async fn a_stream_hands_every_row_in_order_past_every_cap() {
    let db = test_db().await;
    // A small row cap and byte budget: a collected read is cut, a stream is not.
    let config = ToolConfig { max_rows: 10, max_rows_limit: 10, max_result_bytes: 4096, ..ToolConfig::default() };
    let (tools, _database) = tools(&db, &options(), config, false).await;
    let me = caller("stream");
    let sql = "SELECT g AS id, 'row ' || g AS name, ARRAY[g, -g] AS pair, g * interval '1 minute' AS span,
                      inet '10.0.0.1' + g AS addr, CASE WHEN g % 3 = 0 THEN NULL ELSE g * 1.5 END AS amount
               FROM generate_series(1, 25000) g ORDER BY g";
    let collected = sessionless_read(&tools, &me, sql).await;
    assert_eq!(collected["truncated"], true, "{collected}");

    let mut sink = Collect::default();
    let started = Instant::now();
    let summary = tools.read_stream(&me, stream_args(sql), &mut sink).await.expect("the stream runs");
    let elapsed = started.elapsed();
    assert_eq!(summary["row_count"], 25000, "{summary}");
    assert_eq!(summary["truncated"], false);
    assert_eq!(summary["command"], "SELECT");
    assert_eq!(sink.rows.len(), 25000);
    let fields = sink.fields.as_ref().unwrap();
    assert_eq!(serde_json::to_value(fields).unwrap(), collected["fields"], "the same columns as a read");
    for (i, row) in sink.rows.iter().enumerate() {
        assert_eq!(row[0], json!(i + 1), "row {i} in order");
    }
    // Values as a collected read renders them, server-rendered types (interval, inet) included.
    let first: Vec<Value> = collected["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            Value::Array(vec![
                row["id"].clone(),
                row["name"].clone(),
                row["pair"].clone(),
                row["span"].clone(),
                row["addr"].clone(),
                row["amount"].clone(),
            ])
        })
        .collect();
    for (i, expected) in first.iter().enumerate() {
        assert_eq!(&Value::Array(sink.rows[i].clone()), expected, "row {i}");
    }
    assert_eq!(sink.rows[24999][3], json!("416:40:00"), "{:?}", sink.rows[24999]);
    assert_eq!(sink.rows[2][5], Value::Null);
    coldquery_tests::figures::record(
        "read_stream_rows",
        json!({"rows": sink.rows.len(), "ms": elapsed.as_secs_f64() * 1000.0}),
    );
}

#[tokio::test]
async fn a_stream_is_refused_exactly_like_a_read() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute(
        "CREATE TABLE kept (id int);
         INSERT INTO kept SELECT generate_series(1, 5);
         CREATE FUNCTION public.sneaky() RETURNS int LANGUAGE sql AS 'DELETE FROM kept RETURNING 1';",
    )
    .await
    .unwrap();
    let mut config = ToolConfig::default();
    // Allowed by the function policy: then the READ ONLY transaction is what stops it.
    config.functions.allow_functions("public.sneaky").unwrap();
    let (tools, _database) = tools(&db, &options(), config, false).await;
    let me = caller("refusals");
    let cases = [
        ("DELETE FROM kept", "READ_ONLY_VIOLATION"),
        ("WITH d AS (DELETE FROM kept RETURNING *) SELECT * FROM d", "READ_ONLY_VIOLATION"),
        ("SELECT pg_advisory_lock(1)", "STATEMENT_NOT_ALLOWED"),
        ("SELECT pg_terminate_backend(pg_backend_pid())", "STATEMENT_NOT_ALLOWED"),
        ("SELECT 1; SELECT 2", "STATEMENT_NOT_ALLOWED"),
        ("SELECT public.sneaky()", "READ_ONLY_VIOLATION"),
        ("SELEC 1", "DATABASE_ERROR"),
    ];
    for (sql, expected) in cases {
        let read = sessionless_read(&tools, &me, sql).await;
        let mut sink = Collect::default();
        let streamed = tools.read_stream(&me, stream_args(sql), &mut sink).await;
        let error = streamed.expect_err(sql).to_json();
        assert_eq!(code(&read), expected, "read {sql}: {read}");
        assert_eq!(error["error"]["code"], read["error"]["code"], "{sql}: {error} vs {read}");
        assert_eq!(error["error"]["sqlstate"], read["error"]["sqlstate"], "{sql}: {error} vs {read}");
        assert!(sink.rows.is_empty(), "{sql}: no row reached the sink");
    }
    assert_eq!(count(&side, "SELECT count(*) FROM kept").await, 5, "nothing was deleted");
    let locks = count(
        &side,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    assert_eq!(locks, 0);

    // Arguments a stream has no use for are refused, not ignored.
    for args in [
        json!({"sql": "SELECT 1", "session_id": "abc"}),
        json!({"sql": "SELECT 1", "max_rows": 5}),
        json!({"sql": "SELECT 1", "action": "write"}),
        json!({"sql": "SELECT 1", "nope": 1}),
        json!({"sql": "SELECT $1", "params": []}),
    ] {
        let error = tools.read_stream(&me, args.clone(), &mut Collect::default()).await.expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{args}: {error:?}");
    }
}

#[tokio::test]
async fn a_stream_stops_on_the_server_when_the_sink_fails_or_time_runs_out() {
    let db = test_db().await;
    let side = db.client().await;
    let (tools, _database) = tools(&db, &options(), ToolConfig::default(), false).await;
    let me = caller("stops");
    // In the target list, so rows come as they are made (in FROM, the set is built first).
    let endless = "SELECT generate_series(1, 200000000) AS g";
    let running = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query = '{endless}'"
    );

    let mut sink = Collect { fail_after: Some(1500), ..Collect::default() };
    let started = Instant::now();
    let error = tools.read_stream(&me, stream_args(endless), &mut sink).await.expect_err("the sink stops it");
    assert_eq!(error.message(), "the sink is full");
    assert_eq!(sink.rows.len(), 1500);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(count(&side, &running).await, 0, "the statement was cancelled on the server");

    let error = tools
        .read_stream(&me, json!({"sql": endless, "timeout_ms": 500}), &mut Collect::default())
        .await
        .expect_err("the timeout stops it");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error:?}");
    assert_eq!(count(&side, &running).await, 0, "the statement was cancelled on the server");

    // The pool is healthy afterwards.
    let out = sessionless_read(&tools, &me, "SELECT 1 AS one").await;
    assert_eq!(out["rows"][0]["one"], 1, "{out}");
}

#[tokio::test]
async fn json_arrays_given_for_array_parameters_round_trip() {
    let db = test_db().await;
    let side = db.client().await;
    side.batch_execute("CREATE TABLE arrs (id int, nums int[], words text[], docs jsonb[], doc jsonb)").await.unwrap();
    let (tools, _database) = tools(&db, &options(), ToolConfig::default(), false).await;
    let me = caller("arrays");
    let words = json!(["a", "b c", null, "", "NULL", "q\"x", "back\\slash", "com,ma", "{brace}"]);
    let params = json!([[1, 2, 3], words, [{"k": [1, "two"]}, [1, 2]], [1, "x", null]]);

    // A read (named statement: the server types the parameters first).
    let sql = "SELECT $1::int[] AS nums, $2::text[] AS words, $3::jsonb[] AS docs, $4::jsonb AS doc";
    let out = call(&tools, &me, "pg_query", json!({"action": "read", "sql": sql, "params": params})).await;
    assert_eq!(code(&out), "ok", "{out}");
    let expected =
        json!({"nums": [1, 2, 3], "words": words, "docs": [{"k": [1, "two"]}, [1, 2]], "doc": [1, "x", null]});
    assert_eq!(out["rows"][0], expected, "{out}");
    // Nested arrays are sub-arrays; a JSON array for a text parameter stays JSON text.
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "read", "sql": "SELECT $1::int[] AS m, $2::text AS t", "params": [[[1, 2], [3, 4]], [1, 2]]}),
    )
    .await;
    assert_eq!(out["rows"][0], json!({"m": [[1, 2], [3, 4]], "t": "[1,2]"}), "{out}");

    // An autocommit write (unnamed statement: the server types the parameters at bind).
    let insert = "INSERT INTO arrs VALUES ($1, $2, $3, $4, $5)";
    let mut write_params = json!([1]);
    write_params.as_array_mut().unwrap().extend(params.as_array().unwrap().iter().cloned());
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": insert, "params": write_params, "autocommit": true}),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    assert_eq!(out["rows_affected"], 1);
    // In a session, and through a stream.
    let begun = call(&tools, &me, "pg_tx", json!({"action": "begin"})).await;
    let id = begun["session_id"].as_str().unwrap().to_owned();
    write_params[0] = json!(2);
    let out = call(
        &tools,
        &me,
        "pg_query",
        json!({"action": "write", "sql": insert, "params": write_params, "session_id": id}),
    )
    .await;
    assert_eq!(code(&out), "ok", "{out}");
    let out = call(&tools, &me, "pg_tx", json!({"action": "commit", "session_id": id})).await;
    assert_eq!(code(&out), "ok", "{out}");
    let mut sink = Collect::default();
    tools.read_stream(&me, json!({"sql": sql, "params": params}), &mut sink).await.expect("the stream runs");
    assert_eq!(
        Value::Array(sink.rows[0].clone()),
        json!([expected["nums"], expected["words"], expected["docs"], expected["doc"]])
    );

    // What the side connection sees: both rows hold exactly the values given.
    let same: i64 = side
        .query_one(
            "SELECT count(*) FROM arrs WHERE nums = '{1,2,3}' AND words = $1::text::text[]
               AND docs = ARRAY['{\"k\": [1, \"two\"]}'::jsonb, '[1, 2]'] AND doc = '[1, \"x\", null]'",
            &[&"{a,\"b c\",NULL,\"\",\"NULL\",\"q\\\"x\",\"back\\\\slash\",\"com,ma\",\"{brace}\"}"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(same, 2, "{:?}", side.query("SELECT words::text FROM arrs", &[]).await.unwrap());
    // A JSON array that is not a valid array value is still refused clearly.
    let out =
        call(&tools, &me, "pg_query", json!({"action": "read", "sql": "SELECT $1::int[]", "params": [["x"]]})).await;
    assert_eq!(code(&out), "DATABASE_ERROR", "{out}");
    assert_eq!(out["error"]["sqlstate"], "22P02", "{out}");
}
