//! Printing results the way psql does: data on stdout, and everything that is not data —
//! truncation, timing, session state, warnings — on stderr, so a pipe gets only the rows.
//! Query results are rendered from the tool's JSON with each value in PostgreSQL's text form
//! ([`crate::pgtext`]): aligned (psql's default), unaligned (`-A`), expanded (`-x`), CSV that
//! `COPY … FROM … CSV` loads back, Markdown, or the tool's JSON untouched.

use std::io::Write;

use clap::ValueEnum;
use coldquery_core::{Error, ErrorKind, Field, QueryResult, RowSink};
use coldquery_tools::{cell, table_of};
use serde_json::{Map, Value};

use crate::pgtext;
use crate::statements::command_tag;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people (psql's default).
    Table,
    /// `|`-separated columns (psql -A).
    Unaligned,
    /// The tool's structured result as JSON.
    Json,
    /// Rows as CSV, values in PostgreSQL's text form (`COPY ... CSV` loads it back).
    Csv,
    /// Rows as a Markdown table.
    Markdown,
}

/// How results are printed: psql's `\pset` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Style {
    pub(crate) format: Format,
    /// `-t`: no header and no row-count footer.
    pub(crate) tuples_only: bool,
    /// `-x`: one `column | value` block per row.
    pub(crate) expanded: bool,
    /// How NULL is shown (`--null`, `\pset null`); empty by default, as in psql.
    pub(crate) null: String,
    /// `-q`: no command tags.
    pub(crate) quiet: bool,
}

impl Default for Style {
    fn default() -> Style {
        Style { format: Format::Table, tuples_only: false, expanded: false, null: String::new(), quiet: false }
    }
}

/// What produced a result, for its notices and tag.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Origin<'a> {
    /// The statement, for psql's command tag.
    pub(crate) sql: Option<&'a str>,
    /// The row cap in force for this call, to say which limit a truncation hit.
    pub(crate) max_rows: Option<usize>,
    /// The largest `--max-rows` allowed.
    pub(crate) max_rows_limit: Option<usize>,
    /// The byte budget (`--max-result-bytes`).
    pub(crate) max_result_bytes: Option<usize>,
}

/// A rendered result: data for stdout, notices for stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Renders a tool's successful result.
pub(crate) fn render(value: &Value, style: &Style, origin: &Origin<'_>) -> Rendered {
    let mut out = Rendered::default();
    let is_query = value.get("fields").is_some() && value.get("rows").is_some() && value.get("command").is_some();
    if style.format == Format::Json {
        out.stdout = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()) + "\n";
    } else if is_query {
        out.stdout = query_result(value, style, origin.sql);
    } else if let Some(plan) = value.get("plan").and_then(Value::as_str) {
        // A text plan is lines of text: print them as psql prints EXPLAIN; in CSV and Markdown
        // one row per line under `QUERY PLAN`, as psql --csv does.
        out.stdout = match style.format {
            Format::Csv | Format::Markdown => {
                let rows = plan.trim_end().lines().map(|line| vec![Some(line.to_owned())]).collect();
                let grid = Grid {
                    columns: vec!["QUERY PLAN".to_owned()],
                    numeric: vec![false],
                    rows,
                    header: !style.tuples_only,
                    footer: false,
                    first_record: 0,
                };
                render_grid(&grid, style)
            }
            _ => plan.trim_end().to_owned() + "\n",
        };
        if let Some(summary) = value.get("summary") {
            out.stderr.push_str(&format!("summary: {}\n", compact(summary)));
        }
    } else if let Some(text) = described(value, style) {
        out.stdout = text;
    } else {
        out.stdout = other(value, style);
    }
    if is_query {
        out.stderr.push_str(&notices(value, origin));
    }
    out
}

/// The notices of a query result: truncation naming the limit and the flag that lifts it,
/// and the session's state.
fn notices(value: &Value, origin: &Origin<'_>) -> String {
    let mut out = String::new();
    if value.get("truncated") == Some(&Value::Bool(true)) {
        let shown = value.get("row_count").and_then(Value::as_u64).unwrap_or(0);
        let limit = match (origin.max_rows, origin.max_result_bytes) {
            (Some(rows), _) if shown as usize >= rows => format!("the row limit --max-rows {rows}"),
            (_, Some(bytes)) => format!("the byte budget --max-result-bytes {bytes}"),
            _ => "the row limit or the byte budget".to_owned(),
        };
        let ceiling = origin.max_rows_limit.map(|c| format!(" (up to {c})")).unwrap_or_default();
        out.push_str(&format!(
            "coldquery: only the first {shown} rows are shown: more rows exist, and the result was cut at {limit}. \
             Raise it with --max-rows N{ceiling} or --max-result-bytes SIZE, or fetch everything with --all.\n"
        ));
    }
    // The prompt shows the transaction's state; a notice only when it is about to expire.
    if let Some(session) = value.get("session").and_then(Value::as_object)
        && session.contains_key("warning")
    {
        out.push_str(&session_line(session));
    }
    out
}

/// `session <id>: <state>, expires in N s` and the warning, if any.
pub(crate) fn session_line(session: &Map<String, Value>) -> String {
    let mut out = format!(
        "session {}: {}, expires in {} s\n",
        session.get("id").map(cell).unwrap_or_default(),
        session.get("transaction_state").map(cell).unwrap_or_default(),
        session.get("expires_in_seconds").map(cell).unwrap_or_default(),
    );
    if let Some(warning) = session.get("warning").and_then(Value::as_str) {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

/// A query result's columns and rows, each value in PostgreSQL's text form.
struct Grid {
    columns: Vec<String>,
    numeric: Vec<bool>,
    rows: Vec<Vec<Option<String>>>,
    /// Print the column names (off with `-t`, and for every chunk of a stream but the first).
    header: bool,
    /// Print the row count (off with `-t`, and for a stream's chunks: it prints the total).
    footer: bool,
    /// The number of rows printed before this grid (a stream prints chunks).
    first_record: usize,
}

/// PostgreSQL's number types, right-aligned in a grid.
const NUMERIC_TYPES: [&str; 8] = ["int2", "int4", "int8", "float4", "float8", "numeric", "oid", "money"];

fn grid_of(value: &Value) -> Grid {
    let fields: Vec<(String, String)> = value["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap_or_default().to_owned(),
                        f["type"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // Row objects use de-duplicated keys (`a`, `a_2`); the grid shows the columns' own names.
    let (keys, rows) = table_of(value).unwrap_or_default();
    let types: Vec<&str> = if keys.len() == fields.len() {
        fields.iter().map(|(_, t)| t.as_str()).collect()
    } else {
        vec![""; keys.len()]
    };
    let columns: Vec<String> =
        if keys.len() == fields.len() { fields.iter().map(|(n, _)| n.clone()).collect() } else { keys.clone() };
    let rows =
        rows.iter().map(|row| row.iter().zip(&types).map(|(v, t)| pgtext::text(v, t)).collect::<Vec<_>>()).collect();
    let numeric = types.iter().map(|t| NUMERIC_TYPES.contains(t)).collect();
    Grid { columns, numeric, rows, header: true, footer: true, first_record: 0 }
}

fn query_result(value: &Value, style: &Style, sql: Option<&str>) -> String {
    let has_columns = value["fields"].as_array().is_some_and(|f| !f.is_empty());
    if !has_columns {
        // A statement without a result set (INSERT without RETURNING, DDL...): its tag.
        if style.quiet || style.format == Format::Csv {
            return String::new();
        }
        let command = value["command"].as_str().unwrap_or("OK");
        return command_tag(sql.unwrap_or(command), command, value["rows_affected"].as_u64()) + "\n";
    }
    let mut grid = grid_of(value);
    grid.header = !style.tuples_only;
    grid.footer = !style.tuples_only;
    render_grid(&grid, style)
}

fn render_grid(grid: &Grid, style: &Style) -> String {
    match (style.format, style.expanded) {
        (Format::Csv, _) => csv(grid, style),
        (Format::Markdown, _) => markdown(grid, style),
        (Format::Unaligned, false) => unaligned(grid, style),
        (Format::Unaligned, true) => expanded(grid, style, false),
        (_, true) => expanded(grid, style, true),
        _ => aligned(grid, style),
    }
}

/// Rows a stream prints at a time, like psql's `FETCH_COUNT`: each chunk of an aligned table
/// is aligned on its own, so nothing waits for the whole result.
const STREAM_CHUNK_ROWS: usize = 1000;
/// Bytes of text a stream holds before printing them, at most (plus one row).
const STREAM_CHUNK_BYTES: usize = 256 * 1024;

/// Prints a streamed read (`--all`) as its rows arrive, in the chosen format: the same text as
/// [`render`] prints for a collected result, except that an aligned table is aligned per chunk
/// of rows. Holds one chunk at most.
pub(crate) struct StreamPrinter {
    style: Style,
    columns: Vec<String>,
    types: Vec<String>,
    numeric: Vec<bool>,
    /// The row objects' keys (`--format json`).
    keys: Vec<String>,
    pending: Vec<Vec<Option<String>>>,
    /// JSON text of pending rows (`--format json`).
    pending_json: String,
    pending_bytes: usize,
    printed: usize,
    /// stdout was closed (`| head`): the stream stopped, and that is not an error.
    closed: bool,
}

impl StreamPrinter {
    pub(crate) fn new(style: &Style) -> StreamPrinter {
        StreamPrinter {
            style: style.clone(),
            columns: Vec::new(),
            types: Vec::new(),
            numeric: Vec::new(),
            keys: Vec::new(),
            pending: Vec::new(),
            pending_json: String::new(),
            pending_bytes: 0,
            printed: 0,
            closed: false,
        }
    }

    /// True when stdout went away and the stream was stopped for that.
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }

    fn write(&mut self, text: &str) -> coldquery_core::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
            self.closed = true;
            return Err(Error::new(ErrorKind::Cancelled, "stdout was closed; the read was stopped"));
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> coldquery_core::Result<()> {
        self.pending_bytes = 0;
        if self.style.format == Format::Json {
            let text = std::mem::take(&mut self.pending_json);
            return if text.is_empty() { Ok(()) } else { self.write(&text) };
        }
        let rows = std::mem::take(&mut self.pending);
        if rows.is_empty() && self.printed > 0 {
            return Ok(());
        }
        let count = rows.len();
        let grid = Grid {
            columns: self.columns.clone(),
            numeric: self.numeric.clone(),
            rows,
            header: !self.style.tuples_only && self.printed == 0,
            footer: false,
            first_record: self.printed,
        };
        let text = render_grid(&grid, &self.style);
        self.printed += count;
        self.write(&text)
    }

    /// Prints what is left and the footer (the row count, or the end of the JSON object).
    pub(crate) fn finish(&mut self, summary: &Value) -> coldquery_core::Result<()> {
        if self.closed {
            return Ok(());
        }
        let total = summary.get("row_count").and_then(Value::as_u64).unwrap_or(0);
        if self.style.format == Format::Json {
            self.flush_chunk()?;
            let tail = format!(
                "{}],\n  \"row_count\": {total},\n  \"truncated\": false,\n  \"command\": {},\n  \"rows_affected\": null,\n  \"duration_ms\": {}\n}}\n",
                if total > 0 { "\n  " } else { "" },
                summary.get("command").unwrap_or(&Value::Null),
                summary.get("duration_ms").unwrap_or(&Value::Null),
            );
            return self.write(&tail);
        }
        if self.columns.is_empty() {
            return Ok(());
        }
        self.flush_chunk()?;
        let footer = match (self.style.format, self.style.expanded) {
            _ if self.style.tuples_only => false,
            (Format::Table | Format::Unaligned, false) => true,
            (Format::Table | Format::Unaligned, true) => total == 0,
            _ => false,
        };
        if footer {
            let total = usize::try_from(total).unwrap_or(usize::MAX);
            return self.write(&row_count(total));
        }
        Ok(())
    }
}

impl RowSink for StreamPrinter {
    fn columns(&mut self, fields: &[Field]) -> coldquery_core::Result<()> {
        self.columns = fields.iter().map(|f| f.name.clone()).collect();
        self.types = fields.iter().map(|f| f.type_name.clone()).collect();
        self.numeric = self.types.iter().map(|t| NUMERIC_TYPES.contains(&t.as_str())).collect();
        if self.style.format == Format::Json {
            self.keys = QueryResult { fields: fields.to_vec(), ..QueryResult::default() }.keys();
            let fields = serde_json::to_string(fields).unwrap_or_else(|_| "[]".to_owned());
            return self.write(&format!("{{\n  \"fields\": {fields},\n  \"rows\": ["));
        }
        Ok(())
    }

    fn row(&mut self, values: Vec<Value>) -> coldquery_core::Result<()> {
        if self.style.format == Format::Json {
            let mut object = Map::with_capacity(values.len());
            for (key, value) in self.keys.iter().zip(values) {
                object.insert(key.clone(), value);
            }
            let separator = if self.printed == 0 { "\n    " } else { ",\n    " };
            self.pending_json.push_str(separator);
            self.pending_json.push_str(&Value::Object(object).to_string());
            self.printed += 1;
            if self.pending_json.len() >= STREAM_CHUNK_BYTES {
                self.flush_chunk()?;
            }
            return Ok(());
        }
        let texts: Vec<Option<String>> = values.iter().zip(&self.types).map(|(v, t)| pgtext::text(v, t)).collect();
        self.pending_bytes += texts.iter().map(|t| t.as_ref().map_or(0, String::len) + 1).sum::<usize>();
        self.pending.push(texts);
        if self.pending.len() >= STREAM_CHUNK_ROWS || self.pending_bytes >= STREAM_CHUNK_BYTES {
            self.flush_chunk()?;
        }
        Ok(())
    }
}

fn row_count(n: usize) -> String {
    format!("({n} {})\n", if n == 1 { "row" } else { "rows" })
}

fn shown<'a>(value: &'a Option<String>, style: &'a Style) -> &'a str {
    value.as_deref().unwrap_or(&style.null)
}

/// psql's aligned format; control characters are escaped so a value stays on one line.
fn aligned(grid: &Grid, style: &Style) -> String {
    let texts: Vec<Vec<String>> =
        grid.rows.iter().map(|row| row.iter().map(|v| one_line(shown(v, style))).collect()).collect();
    let widths: Vec<usize> = (0..grid.columns.len())
        .map(|i| {
            let header = if grid.header { grid.columns[i].chars().count() } else { 0 };
            texts.iter().map(|row| row[i].chars().count()).chain([header]).max().unwrap_or(0)
        })
        .collect();
    let pad = |text: &str, i: usize, right: bool| {
        let fill = " ".repeat(widths[i] - text.chars().count());
        if right { format!("{fill}{text}") } else { format!("{text}{fill}") }
    };
    let line = |cells: Vec<String>| format!(" {} ", cells.join(" | ")).trim_end().to_owned();
    let mut out = String::new();
    if grid.header {
        out.push_str(&line(grid.columns.iter().enumerate().map(|(i, c)| pad(c, i, false)).collect()));
        out.push('\n');
        out.push_str(&widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
        out.push('\n');
    }
    for row in &texts {
        out.push_str(&line(row.iter().enumerate().map(|(i, t)| pad(t, i, grid.numeric[i])).collect()));
        out.push('\n');
    }
    if grid.footer {
        out.push_str(&row_count(grid.rows.len()));
    }
    out
}

/// psql's `\x`: a block per row.
fn expanded(grid: &Grid, style: &Style, aligned: bool) -> String {
    let width = grid.columns.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (n, row) in grid.rows.iter().enumerate() {
        if aligned && !style.tuples_only {
            out.push_str(&format!(
                "-[ RECORD {} ]{}\n",
                grid.first_record + n + 1,
                "-".repeat(width.saturating_sub(2).max(1))
            ));
        } else if grid.first_record + n > 0 {
            out.push('\n');
        }
        for (column, value) in grid.columns.iter().zip(row) {
            let text = one_line(shown(value, style));
            if aligned {
                out.push_str(format!("{column:<width$} | {text}").trim_end());
            } else {
                out.push_str(&format!("{column}|{text}"));
            }
            out.push('\n');
        }
    }
    if grid.rows.is_empty() && grid.footer {
        out.push_str("(0 rows)\n");
    }
    out
}

/// psql's `-A`: `|`-separated, values as they are.
fn unaligned(grid: &Grid, style: &Style) -> String {
    let mut out = String::new();
    if grid.header {
        out.push_str(&grid.columns.join("|"));
        out.push('\n');
    }
    for row in &grid.rows {
        out.push_str(&row.iter().map(|v| shown(v, style)).collect::<Vec<_>>().join("|"));
        out.push('\n');
    }
    if grid.footer {
        out.push_str(&row_count(grid.rows.len()));
    }
    out
}

/// CSV as `COPY … TO … (FORMAT csv, HEADER)` writes it (no header with `-t`).
fn csv(grid: &Grid, style: &Style) -> String {
    let mut out = String::new();
    if grid.header {
        for (i, column) in grid.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            pgtext::csv_field(Some(column), "", &mut out);
        }
        out.push('\n');
    }
    for row in &grid.rows {
        for (i, value) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            pgtext::csv_field(value.as_deref(), &style.null, &mut out);
        }
        out.push('\n');
    }
    out
}

fn markdown(grid: &Grid, style: &Style) -> String {
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', "<br>");
    let mut out = String::new();
    // A Markdown table needs its header (even with -t); a stream's later chunks continue it.
    if grid.first_record == 0 {
        out.push_str(&format!("| {} |\n", grid.columns.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")));
        out.push_str(&format!("|{}\n", " --- |".repeat(grid.columns.len())));
    }
    for row in &grid.rows {
        out.push_str(&format!("| {} |\n", row.iter().map(|v| esc(shown(v, style))).collect::<Vec<_>>().join(" | ")));
    }
    out
}

/// Results that are not a query's (describe, lists, health...): `key  value` lines with each
/// list of objects as a grid (table format), or the list as CSV / Markdown / unaligned.
fn other(value: &Value, style: &Style) -> String {
    match style.format {
        Format::Table => table(value),
        _ => match table_of(value) {
            Some((columns, rows)) => {
                let grid = Grid {
                    numeric: vec![false; columns.len()],
                    rows: rows
                        .iter()
                        .map(|row| row.iter().map(|v| if v.is_null() { None } else { Some(cell(v)) }).collect())
                        .collect(),
                    columns,
                    header: !style.tuples_only,
                    footer: !style.tuples_only,
                    first_record: 0,
                };
                match style.format {
                    Format::Csv => csv(&grid, style),
                    Format::Markdown => markdown(&grid, style),
                    _ => unaligned(&grid, style),
                }
            }
            None => serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()) + "\n",
        },
    }
}

/// psql's `\d` layout for a described table or view (table format only): the columns, then
/// indexes, constraints, references and triggers, one line each. `None` for anything else,
/// which is shown as its fields.
fn described(value: &Value, style: &Style) -> Option<String> {
    if style.format != Format::Table || style.expanded {
        return None;
    }
    let target = value.get("target")?.as_str()?;
    let columns = value.get("columns")?.as_array()?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut rows = Vec::new();
    for column in columns {
        let default = match (column["identity"].as_str(), column["generated"].as_str(), column["default"].as_str()) {
            (Some("always"), _, _) => "generated always as identity".to_owned(),
            (Some(_), _, _) => "generated by default as identity".to_owned(),
            (None, Some(expression), _) => format!("generated always as ({expression}) stored"),
            (None, None, Some(default)) => default.to_owned(),
            _ => String::new(),
        };
        let nullable = if column["nullable"] == false { "not null" } else { "" };
        rows.push(serde_json::json!({"Column": column["name"], "Type": column["type"], "Nullable": nullable,
                                     "Default": default}));
    }
    let kind = match (target, value["kind"].as_str()) {
        ("view", Some("materialized_view")) => "Materialized view",
        ("view", _) => "View",
        ("table", Some("partitioned_table")) => "Partitioned table",
        ("table", Some("foreign_table")) => "Foreign table",
        ("table", _) => "Table",
        _ => return None,
    };
    let mut out = format!("{kind} \"{}.{}\"\n", text(&value["schema"]), text(&value["name"]));
    let grid = rows_grid(&Value::Array(rows));
    // psql prints no row count under \d.
    out.push_str(grid.trim_end().rsplit_once('\n').map_or(grid.as_str(), |(body, _)| body));
    out.push('\n');
    // psql: a partition names its parent and bound, a partitioned table its key.
    let partitioning = &value["partitioning"];
    if let Some(parent) = partitioning["partition_of"].as_object() {
        let name = |key: &str| parent.get(key).and_then(Value::as_str).unwrap_or_default();
        let bound = partitioning["partition_bound"].as_str().unwrap_or_default();
        out.push_str(&format!("Partition of: {}.{} {bound}\n", name("schema"), name("name")));
    }
    if let Some(key) = partitioning["partition_key"].as_str() {
        out.push_str(&format!("Partition key: {key}\n"));
    }
    let items = |key: &str| value.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut section = |title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            out.push_str(&format!("{title}:\n"));
            for line in lines {
                out.push_str(&format!("    {line}\n"));
            }
        }
    };
    let unique_constraints: Vec<String> = items("unique_constraints").iter().map(|c| text(&c["name"])).collect();
    let indexes = items("indexes")
        .iter()
        .map(|index| {
            let definition = text(&index["definition"]);
            let method = definition.split_once(" USING ").map_or(definition.as_str(), |(_, rest)| rest).to_owned();
            let name = text(&index["name"]);
            let kind = if index["primary"] == true {
                "PRIMARY KEY, "
            } else if unique_constraints.contains(&name) {
                "UNIQUE CONSTRAINT, "
            } else if index["unique"] == true {
                "UNIQUE, "
            } else {
                ""
            };
            let invalid = if index["valid"] == false { " INVALID" } else { "" };
            format!("\"{name}\" {kind}{method}{invalid}")
        })
        .collect();
    section("Indexes", indexes);
    let named = |key: &str| -> Vec<String> {
        items(key).iter().map(|c| format!("\"{}\" {}", text(&c["name"]), text(&c["definition"]))).collect()
    };
    section("Check constraints", named("check_constraints"));
    section("Exclusion constraints", named("exclusion_constraints"));
    section("Foreign-key constraints", named("foreign_keys"));
    let referenced = items("referenced_by")
        .iter()
        .map(|r| {
            format!(
                "TABLE \"{}.{}\" CONSTRAINT \"{}\" {}",
                text(&r["schema"]),
                text(&r["table"]),
                text(&r["name"]),
                text(&r["definition"])
            )
        })
        .collect();
    section("Referenced by", referenced);
    let triggers = items("triggers")
        .iter()
        .map(|t| match t["definition"].as_str() {
            Some(definition) => definition.to_owned(),
            None => text(&t["name"]),
        })
        .collect();
    section("Triggers", triggers);
    // psql's `\d+` list: `Partitions: s.p1 FOR VALUES …,` then one per line.
    let partitions: Vec<String> = partitioning["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{}.{} {}", text(&p["schema"]), text(&p["name"]), text(&p["bound"])))
        .collect();
    if !partitions.is_empty() {
        out.push_str(&format!("Partitions: {}\n", partitions.join(",\n            ")));
    } else if partitioning["partition_key"].is_string() {
        out.push_str("Number of partitions: 0\n");
    }
    if let Some(definition) = value.get("definition").and_then(Value::as_str) {
        out.push_str(&format!("View definition:\n{}\n", definition.trim_end()));
    }
    if let Some(comment) = value.get("comment").and_then(Value::as_str) {
        out.push_str(&format!("Comment: {comment}\n"));
    }
    Some(out)
}

/// A catalog list (`\dt`, `\df`...): psql's `List of …` title over a grid in the table format,
/// the bare rows in the others.
pub(crate) fn list(title: &str, items: &Value, style: &Style) -> String {
    match style.format {
        Format::Table if style.tuples_only => {
            let grid = rows_grid(items);
            grid.lines().skip(2).filter(|line| !line.starts_with('(')).map(|line| format!("{line}\n")).collect()
        }
        Format::Table => format!("List of {title}\n{}", rows_grid(items)),
        _ => other(&serde_json::json!({ "rows": items }), style),
    }
}

/// The people's form of a non-query result.
pub(crate) fn table(value: &Value) -> String {
    let Some(object) = value.as_object() else {
        return cell(value) + "\n";
    };
    let mut grids = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in object {
        match value {
            Value::Array(items) if items.first().is_some_and(Value::is_object) => {
                grids.push(format!("{key}:\n{}", rows_grid(value)));
            }
            Value::Array(items) if items.is_empty() => pairs.push((key.clone(), "(none)".to_owned())),
            Value::Array(items) => {
                pairs.push((key.clone(), items.iter().map(cell).collect::<Vec<_>>().join(", ")));
            }
            Value::Object(inner) => flatten(key, inner, &mut pairs),
            other => pairs.push((key.clone(), cell(other))),
        }
    }
    let width = pairs.iter().map(|(key, _)| key.chars().count()).max().unwrap_or(0);
    let mut out = pairs
        .iter()
        .map(|(key, text)| format!("{key:<width$}  {}", one_line(text)).trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    for grid in grids {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&grid);
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// `a.b: value` pairs for one level of nesting; deeper values stay compact JSON.
fn flatten(prefix: &str, object: &Map<String, Value>, pairs: &mut Vec<(String, String)>) {
    if object.is_empty() {
        pairs.push((prefix.to_owned(), "{}".to_owned()));
    }
    for (key, value) in object {
        pairs.push((format!("{prefix}.{key}"), cell(value)));
    }
}

/// A list of objects as an aligned grid with a row count.
fn rows_grid(value: &Value) -> String {
    let Some((columns, rows)) = table_of(&serde_json::json!({ "rows": value })) else {
        return String::new();
    };
    let numeric = (0..columns.len())
        .map(|i| !rows.is_empty() && rows.iter().all(|row| matches!(row[i], Value::Number(_) | Value::Null)))
        .collect();
    let rows =
        rows.iter().map(|row| row.iter().map(|v| if v.is_null() { None } else { Some(cell(v)) }).collect()).collect();
    aligned(&Grid { columns, numeric, rows, header: true, footer: true, first_record: 0 }, &Style::default())
}

fn compact(value: &Value) -> String {
    match value {
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect::<Vec<_>>().join(", "),
        other => cell(other),
    }
}

/// Control characters shown escaped, so one value stays on one line of the grid.
fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r', '\t']) {
        return text.to_owned();
    }
    text.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r").replace('\t', "\\t")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result() -> Value {
        json!({
            "fields": [{"name": "id", "type": "int4"}, {"name": "name", "type": "text"}, {"name": "tags", "type": "_text"}],
            "rows": [{"id": 1, "name": "Ada", "tags": ["a", "b c"]}, {"id": 10, "name": null, "tags": null},
                     {"id": 11, "name": "", "tags": []}],
            "row_count": 3, "truncated": true, "command": "SELECT", "rows_affected": null, "duration_ms": 0.1,
            "session": {"id": "abc", "transaction_state": "idle", "expires_in_seconds": 1799}
        })
    }

    fn styled(edit: impl FnOnce(&mut Style)) -> Style {
        let mut style = Style::default();
        edit(&mut style);
        style
    }

    #[test]
    fn query_results_are_psql_grids_and_notices_go_to_stderr() {
        let origin = Origin { max_rows: Some(3), max_rows_limit: Some(10_000), ..Origin::default() };
        let out = render(&result(), &Style::default(), &origin);
        assert_eq!(
            out.stdout,
            concat!(
                " id | name | tags\n",
                "----+------+-----------\n",
                "  1 | Ada  | {a,\"b c\"}\n",
                " 10 |      |\n",
                " 11 |      | {}\n",
                "(3 rows)\n",
            )
        );
        assert!(out.stderr.contains("--max-rows 3") && out.stderr.contains("--all"), "{}", out.stderr);
        assert!(!out.stderr.contains("session abc"), "the prompt shows the state: {}", out.stderr);
        let mut expiring = result();
        expiring["session"]["warning"] = "commit soon".into();
        let out = render(&expiring, &Style::default(), &origin);
        assert!(out.stderr.contains("session abc: idle, expires in 1799 s\nwarning: commit soon\n"), "{}", out.stderr);
        let null = render(&result(), &styled(|s| s.null = "(null)".into()), &origin).stdout;
        assert!(null.contains(" 10 | (null) | (null)\n") && null.contains(" 11 |        | {}\n"), "{null}");
    }

    #[test]
    fn csv_expanded_and_unaligned() {
        let origin = Origin::default();
        let csv = render(&result(), &styled(|s| s.format = Format::Csv), &origin).stdout;
        assert_eq!(csv, "id,name,tags\n1,Ada,\"{a,\"\"b c\"\"}\"\n10,,\n11,\"\",{}\n");
        let tuples = render(&result(), &styled(|s| (s.format, s.tuples_only) = (Format::Unaligned, true)), &origin);
        assert_eq!(tuples.stdout, "1|Ada|{a,\"b c\"}\n10||\n11||{}\n");
        let expanded = render(&result(), &styled(|s| s.expanded = true), &origin).stdout;
        assert!(expanded.starts_with("-[ RECORD 1 ]--\nid   | 1\nname | Ada\n"), "{expanded}");
    }

    #[test]
    fn statements_without_rows_show_psqls_tag() {
        let value = json!({"fields": [], "rows": [], "row_count": 0, "truncated": false,
                           "command": "INSERT", "rows_affected": 3, "duration_ms": 1.0});
        let origin = Origin { sql: Some("INSERT INTO t VALUES (1)"), ..Origin::default() };
        assert_eq!(render(&value, &Style::default(), &origin).stdout, "INSERT 0 3\n");
        assert_eq!(render(&value, &styled(|s| s.quiet = true), &origin).stdout, "");
    }

    #[test]
    fn a_described_table_looks_like_psqls_d() {
        let value = json!({
            "target": "table", "schema": "public", "name": "items", "kind": "table", "comment": null,
            "columns": [
                {"name": "id", "type": "integer", "nullable": false, "default": null, "identity": "always", "generated": null},
                {"name": "qty", "type": "integer", "nullable": true, "default": "1", "identity": null, "generated": null}],
            "unique_constraints": [], "check_constraints": [{"name": "items_qty_check", "definition": "CHECK (qty > 0)"}],
            "indexes": [{"name": "items_pkey", "definition": "CREATE UNIQUE INDEX items_pkey ON public.items USING btree (id)",
                         "unique": true, "primary": true, "valid": true}],
            "foreign_keys": [], "referenced_by": [{"schema": "public", "table": "lines", "name": "lines_item_fkey",
                                                  "definition": "FOREIGN KEY (item) REFERENCES items(id)"}],
            "triggers": []
        });
        assert_eq!(
            render(&value, &Style::default(), &Origin::default()).stdout,
            concat!(
                "Table \"public.items\"\n",
                " Column | Type    | Nullable | Default\n",
                "--------+---------+----------+------------------------------\n",
                " id     | integer | not null | generated always as identity\n",
                " qty    | integer |          | 1\n",
                "Indexes:\n",
                "    \"items_pkey\" PRIMARY KEY, btree (id)\n",
                "Check constraints:\n",
                "    \"items_qty_check\" CHECK (qty > 0)\n",
                "Referenced by:\n",
                "    TABLE \"public.lines\" CONSTRAINT \"lines_item_fkey\" FOREIGN KEY (item) REFERENCES items(id)\n",
            )
        );
        let json = render(&value, &Style { format: Format::Json, ..Style::default() }, &Origin::default());
        assert!(json.stdout.contains("\"check_constraints\""), "JSON stays the tool's");
    }

    #[test]
    fn other_results_are_key_value_lines_and_grids() {
        let value = json!({
            "status": "ok", "pool": {"size": 15, "idle": 1}, "tags": ["a", "b"], "none": [],
            "checks": [{"name": "cache", "status": "ok", "detail": "line 1\nline 2"}]
        });
        assert_eq!(
            table(&value),
            concat!(
                "status     ok\n",
                "pool.size  15\n",
                "pool.idle  1\n",
                "tags       a, b\n",
                "none       (none)\n",
                "\n",
                "checks:\n",
                " name  | status | detail\n",
                "-------+--------+----------------\n",
                " cache | ok     | line 1\\nline 2\n",
                "(1 row)\n",
            )
        );
    }
}
