//! Output a script can pipe and load back: a CSV export of awkward values that `COPY … FROM
//! STDIN CSV` loads into an identical table (compared from a side connection), truncation that
//! is never silent and says which flag lifts it, `-c`, `-f` and `\i`.

use bytes::Bytes;
use coldquery_tests::harness::test_db;
use futures_util::SinkExt;

use crate::support::{run, run_with};

/// A table of the values that do not survive a naive export: NULL next to the empty string,
/// arrays with NULLs, quotes, commas and empty elements, nested arrays, JSON, timestamps with
/// and without a zone, bytea, numeric scale, and text that looks like COPY's end marker.
const TABLE: &str = "CREATE TABLE src (
    id int PRIMARY KEY, note text, tags text[], matrix int[][], doc jsonb, docs jsonb[], at timestamptz,
    local_at timestamp, day date, span interval, raw bytea, amount numeric(10, 3), ratio float8, small float4,
    flag bool, flags bool[])";

const ROWS: &str = "INSERT INTO src VALUES
    (1, '', '{a,\"b c\",NULL,\"\",\"NULL\",\"q\\\"x\",\"back\\\\slash\",\"com,ma\"}', '{{1,2},{3,NULL}}',
     '{\"k\": [1, \"two\", null], \"s\": \"a,\\\"b\\\"\"}', ARRAY['{\"a\": 1}'::jsonb, '[]'], '2026-01-02 03:04:05.678901+00',
     '2026-01-02 03:04:05.5', '2026-12-31', '1 day 02:03:04', '\\x00ff10', 12.340, 0.1, 0.1, true, '{t,f,NULL}'),
    (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, E'line one\\nline two, with \"quotes\"', '{}', '{}', '\"just a string\"', '{}', 'infinity', '-infinity',
     '0044-03-15 BC', '-1 mon', '\\x', 0, 'NaN', '-Infinity', false, '{}'),
    (4, '\\.', '{\" lead\",\"trail \"}', '{{7}}', '{}', '{null}', '2026-06-01 12:00:00+02', '2026-06-01 12:00:00',
     '2026-06-01', '0', '\\x5c2e', -1.5, 1e300, 3.25, NULL, '{NULL}')";

#[tokio::test]
async fn a_csv_export_loads_back_with_copy_into_an_identical_table() {
    let db = test_db().await;
    let client = db.client().await;
    client.batch_execute(TABLE).await.unwrap();
    client.batch_execute(ROWS).await.unwrap();
    // Enough rows that the default cap (500) would cut the export.
    client
        .batch_execute("INSERT INTO src (id, note, tags) SELECT g, 'row ' || g, ARRAY['x', g::text] FROM generate_series(10, 1209) g")
        .await
        .unwrap();

    let out = run(&db, &["--csv", "--all", "-c", "SELECT * FROM src ORDER BY id"]).await.expect(0);
    assert_eq!(out.stderr, "", "nothing but data on stdout, nothing on stderr");
    assert!(out.stdout.starts_with("id,note,tags,matrix,doc,docs,at,"), "{}", &out.stdout[..200]);

    client.batch_execute("CREATE TABLE dst (LIKE src)").await.unwrap();
    let sink = client.copy_in("COPY dst FROM STDIN (FORMAT csv, HEADER true)").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(out.stdout.clone())).await.unwrap();
    let loaded = sink.finish().await.unwrap_or_else(|e| panic!("COPY refused the export: {e}\n{}", out.stdout));
    assert_eq!(loaded, 1204);

    // Identical, value for value (NULL is not the empty string; IS DISTINCT FROM sees NULLs).
    let differing: i64 = client
        .query_one(
            "SELECT count(*) FROM src FULL JOIN dst USING (id)
             WHERE src IS NULL OR dst IS NULL
                OR (src.note, src.tags, src.matrix, src.doc, src.docs, src.at, src.local_at, src.day, src.span,
                    src.raw, src.amount, src.ratio, src.small, src.flag, src.flags)
                   IS DISTINCT FROM
                   (dst.note, dst.tags, dst.matrix, dst.doc, dst.docs, dst.at, dst.local_at, dst.day, dst.span,
                    dst.raw, dst.amount, dst.ratio, dst.small, dst.flag, dst.flags)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(differing, 0, "every row came back as it was");
    let empty_not_null: i64 =
        client.query_one("SELECT count(*) FROM dst WHERE id = 1 AND note = ''", &[]).await.unwrap().get(0);
    assert_eq!(empty_not_null, 1);
}

#[tokio::test]
async fn truncation_is_a_notice_on_stderr_that_names_the_limit_and_the_flag() {
    let db = test_db().await;
    let sql = "SELECT g AS n FROM generate_series(1, 2000) g";
    let out = run(&db, &["--csv", "query", "read", sql]).await.expect(0);
    assert_eq!(out.stdout.lines().count(), 501, "the header and 500 rows, nothing else");
    assert!(out.stdout.ends_with("\n500\n"), "{}", &out.stdout[out.stdout.len() - 20..]);
    assert!(out.stderr.contains("only the first 500 rows are shown"), "{}", out.stderr);
    assert!(out.stderr.contains("--max-rows 500") && out.stderr.contains("--all"), "{}", out.stderr);

    for format in [["--format", "json"], ["--format", "markdown"], ["--format", "unaligned"], ["-x", "-t"]] {
        let out = run(&db, &[format[0], format[1], "--max-rows", "3", "query", "read", sql]).await.expect(0);
        assert!(
            out.stderr.contains("only the first 3 rows are shown")
                && out.stderr.contains("--max-rows 3")
                && out.stderr.contains("--all"),
            "{format:?}: {}",
            out.stderr
        );
        assert!(!out.stdout.contains("only the first"), "{format:?}: the notice is not in the data");
    }

    let out = run(&db, &["-c", sql, "--max-rows", "7"]).await.expect(0);
    assert!(out.stdout.ends_with("(7 rows)\n"), "{}", out.stdout);
    assert!(out.stderr.contains("--max-rows 7"), "{}", out.stderr);

    let out = run(&db, &["--max-result-bytes", "2KiB", "-At", "-c", sql]).await.expect(0);
    assert!(out.stderr.contains("the byte budget --max-result-bytes 2048"), "{}", out.stderr);

    let out = run(&db, &["--all", "-At", "-c", sql]).await.expect(0);
    assert_eq!(out.stdout.lines().count(), 2000);
    assert_eq!(out.stderr, "");
}

#[tokio::test]
async fn commands_files_and_includes_run_like_psql() {
    let db = test_db().await;
    let dir = std::env::temp_dir().join(format!("coldquery-cli-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inner = dir.join("inner.sql");
    std::fs::write(&inner, "INSERT INTO t VALUES (2, NULL), (3, '');\n").unwrap();
    let outer = dir.join("outer.sql");
    std::fs::write(
        &outer,
        format!(
            "CREATE TABLE t (id int, v text);\nINSERT INTO t VALUES (1, 'a');\n\\i {}\nSELECT * FROM t ORDER BY id",
            inner.display()
        ),
    )
    .unwrap();
    // Writes outside BEGIN ... COMMIT are refused unless --autocommit says how they commit.
    let out = run(&db, &["-f", outer.to_str().unwrap()]).await.expect(1);
    assert!(out.stderr.contains("error[WRITE_DENIED]") && out.stderr.contains("--autocommit"), "{}", out.stderr);

    let out = run(&db, &["--autocommit", "--null", "NULL", "-f", outer.to_str().unwrap()]).await.expect(0);
    assert_eq!(
        out.stdout,
        "CREATE TABLE\nINSERT 0 1\nINSERT 0 2\n id | v\n----+------\n  1 | a\n  2 | NULL\n  3 |\n(3 rows)\n"
    );

    // Several -c, each with several statements; --on-error-stop stops at the first failure.
    let out = run(&db, &["-At", "-c", "SELECT 1; SELECT 2", "-c", "SELECT nope", "-c", "SELECT 3"]).await.expect(1);
    assert_eq!(out.stdout, "1\n2\n3\n");
    assert!(out.stderr.contains("LINE 1: SELECT nope\n               ^"), "{}", out.stderr);
    let out = run(&db, &["-At", "--on-error-stop", "-c", "SELECT nope", "-c", "SELECT 3"]).await.expect(1);
    assert_eq!(out.stdout, "");
    let script = "\\echo start\n\\set ON_ERROR_STOP on\nSELECT nope;\nSELECT 'not reached';\n";
    let out = run_with(&["-At"], &[("DATABASE_URL", &db.url)], Some(script)).await.expect(1);
    assert_eq!(out.stdout, "start\n", "psql's ON_ERROR_STOP stops the script");

    // SQL on stdin, the way `coldquery < file.sql` runs it.
    let out = run_with(&["-At"], &[("DATABASE_URL", &db.url)], Some("SELECT 'from stdin'")).await.expect(0);
    assert_eq!(out.stdout, "from stdin\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// FNV-1a over a byte stream: enough to tell two 50 MB outputs apart without holding them.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The process's peak resident set (VmHWM) in KiB, while it runs.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `--all` streams: a 300 000-row export (about 60 MB of CSV) goes through the real binary with
/// its peak RSS far below the data's size, and its bytes are exactly what PostgreSQL's own
/// `COPY … TO STDOUT (FORMAT csv, HEADER)` writes for the same query (compared by length, row
/// count and checksum, from a side connection).
#[tokio::test]
async fn an_export_of_any_size_streams_in_bounded_memory() {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;

    const ROWS: i64 = 300_000;
    let db = test_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE big (id int PRIMARY KEY, name text, amount numeric(12, 2), at timestamptz, tags text[],
                               flag bool, note text);
             INSERT INTO big SELECT g, 'customer ' || g || ' ' || repeat('x', 40), g * 1.25,
                    timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
                    ARRAY[md5(g::text), 'b c', NULL], g % 2 = 0,
                    CASE WHEN g % 10 = 0 THEN NULL ELSE md5(g::text) || md5((g + 1)::text) END
             FROM generate_series(1, 300000) g;
             ANALYZE big;",
        )
        .await
        .unwrap();
    let sql = "SELECT * FROM big ORDER BY id";

    // What PostgreSQL itself writes for the same query (in UTC, as the CLI prints timestamptz).
    client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    let copy = client.copy_out(&format!("COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)")).await.unwrap();
    futures_util::pin_mut!(copy);
    let (mut expected, mut expected_bytes) = (Fnv::new(), 0usize);
    while let Some(chunk) = copy.next().await {
        let chunk = chunk.unwrap();
        expected.update(&chunk);
        expected_bytes += chunk.len();
    }
    let rows: i64 = client.query_one("SELECT count(*) FROM big", &[]).await.unwrap().get(0);
    assert_eq!(rows, ROWS);

    let started = std::time::Instant::now();
    let mut command = crate::support::command();
    command.args(["--csv", "--all", "--statement-timeout", "50s", "-c", sql]).env("DATABASE_URL", &db.url);
    let mut child = command.spawn().expect("the coldquery binary starts");
    let pid = child.id().expect("a running child");
    let mut stdout = child.stdout.take().unwrap();
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        while let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        peak
    });
    let (mut got, mut got_bytes, mut lines) = (Fnv::new(), 0usize, 0usize);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = stdout.read(&mut buffer).await.unwrap();
        if n == 0 {
            break;
        }
        got.update(&buffer[..n]);
        got_bytes += n;
        lines += buffer[..n].iter().filter(|b| **b == b'\n').count();
    }
    let output = child.wait_with_output().await.unwrap();
    let elapsed = started.elapsed();
    let peak_kib = sampler.await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr, "", "nothing but data on stdout");

    assert_eq!(lines, usize::try_from(ROWS).unwrap() + 1, "the header and every row");
    assert_eq!(got_bytes, expected_bytes, "as many bytes as COPY writes");
    assert_eq!(got.0, expected.0, "byte for byte what COPY writes");
    assert!(got_bytes > 50 * 1024 * 1024, "the export is large: {got_bytes} bytes");
    // The whole result would need several times its size in memory; the stream holds a chunk.
    let bound_kib = 32 * 1024;
    assert!(peak_kib > 0, "the peak RSS was sampled");
    assert!(peak_kib < bound_kib, "peak RSS {peak_kib} KiB for {got_bytes} bytes of CSV");
    coldquery_tests::figures::record(
        "cli_export_streamed",
        serde_json::json!({
            "rows": ROWS,
            "csv_bytes": got_bytes,
            "peak_rss_kib": peak_kib,
            "bound_kib": bound_kib,
            "seconds": elapsed.as_secs_f64(),
        }),
    );
}

/// `--all` in every format prints what the format prints without it (an aligned table per 1000
/// rows, with one header and the total), refuses what a read refuses, and stops the statement
/// on the server when stdout goes away.
#[tokio::test]
async fn all_streams_in_every_format_and_keeps_the_read_rules() {
    use tokio::io::AsyncBufReadExt;

    let db = test_db().await;
    let client = db.client().await;
    client.batch_execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2)").await.unwrap();
    let sql = "SELECT g AS n, CASE WHEN g % 2 = 0 THEN 'x' END AS v FROM generate_series(1, 2500) g";

    let out = run(&db, &["--all", "-c", sql]).await.expect(0);
    assert_eq!(out.stdout.matches(" n    | v\n").count(), 1, "one header: {}", &out.stdout[..200]);
    assert!(out.stdout.ends_with(" 2500 | x\n(2500 rows)\n"), "{}", &out.stdout[out.stdout.len() - 60..]);
    assert_eq!(out.stdout.lines().count(), 2 + 2500 + 1);
    assert_eq!(out.stderr, "");

    let out = run(&db, &["--all", "--format", "json", "query", "read", sql]).await.expect(0);
    let value = out.json();
    assert_eq!(value["row_count"], 2500);
    assert_eq!(value["rows"].as_array().unwrap().len(), 2500);
    assert_eq!(value["rows"][1], serde_json::json!({"n": 2, "v": "x"}));
    assert_eq!(value["fields"][0], serde_json::json!({"name": "n", "type": "int4"}));

    let out = run(&db, &["--all", "-x", "-c", "SELECT g AS n FROM generate_series(1, 1001) g"]).await.expect(0);
    assert!(out.stdout.contains("-[ RECORD 1001 ]"), "record numbers go on across chunks");

    // Refused exactly as a read is, and nothing changed.
    for (sql, code) in
        [("DELETE FROM kept", "READ_ONLY_VIOLATION"), ("SELECT pg_advisory_lock(1)", "STATEMENT_NOT_ALLOWED")]
    {
        let out = run(&db, &["--all", "--csv", "query", "read", sql]).await.expect(1);
        assert!(out.stderr.contains(&format!("error[{code}]")), "{sql}: {}", out.stderr);
        assert_eq!(out.stdout, "");
    }
    let out = run(&db, &["--all", "--csv", "query", "read", "SELECT 1; SELECT 2"]).await.expect(1);
    assert!(out.stderr.contains("error[STATEMENT_NOT_ALLOWED]"), "{}", out.stderr);
    let kept: i64 = client.query_one("SELECT count(*) FROM kept", &[]).await.unwrap().get(0);
    assert_eq!(kept, 2);

    // `| head`: closing stdout stops the statement on the server, and that is not an error.
    let endless = "SELECT generate_series(1, 500000000) AS n";
    let mut command = crate::support::command();
    command.args(["--all", "-At", "-c", endless]).env("DATABASE_URL", &db.url);
    let mut child = command.spawn().expect("the coldquery binary starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("1"));
    drop(lines);
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("the binary stops when stdout is closed")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let running: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'
               AND query = 'SELECT generate_series(1, 500000000) AS n'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0, "the statement was cancelled on the server");
}
