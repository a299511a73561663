//! Running one statement: extended protocol only, capped while fetching, cancelled on the
//! server when its deadline passes or the caller cancels, and rendered losslessly.
//!
//! Dropping a tokio-postgres future does not stop the statement on the server (it runs on,
//! holding the connection, and the next statement waits behind it), so every interruption here
//! sends a CancelRequest and then waits for the statement to end.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use coldquery_core::{CancellationToken, Error, ErrorKind, Field, Limits, QueryResult, RowSink, Statement};
use futures_util::{StreamExt, pin_mut};
use postgres_types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use serde_json::Value;
use tokio_postgres::{CancelToken, Client, Column, Row, RowStream};

use crate::begin::{Setup, check};
use crate::cancel::Canceller;
use crate::decode::{self, Plan};
use crate::errors;
use crate::manager::{Leftover, PgConn, Prepared};
use crate::pool::Shared;
use crate::step::{no_answer, within};

/// How the statement is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Parse into a named statement, then bind and execute: two round trips, but the result
    /// columns are known even when no row comes back. Used inside transactions, where even
    /// PgBouncer in transaction mode keeps the same server connection. A [`Prelude`] goes out
    /// just before the Parse, in the same round trip.
    Prepared { prelude: Option<Prelude> },
    /// One unnamed statement in one round trip (`query_typed`): safe behind PgBouncer 1.18 in
    /// transaction mode outside a transaction.
    Unnamed,
}

/// Constant SQL (a savepoint, a setting pinned again) sent as a simple query just before a
/// statement's Parse, in the same round trip. If it fails, or gets no answer within `step`
/// (it waits for no lock), the statement is not run and that is the error reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prelude {
    pub(crate) sql: &'static str,
    pub(crate) step: Duration,
}

/// Rows fetched and not yet rendered.
#[derive(Debug)]
pub(crate) struct Fetched {
    columns: Vec<(String, Type)>,
    rows: Collected,
    truncated: bool,
    pub(crate) rows_affected: Option<u64>,
}

/// Rows as they arrive. When every column is of a type decoded here, each row is decoded at
/// once — while the server is still sending the next ones — and its bytes are freed: kept
/// whole and decoded column by column afterwards, a 10 000 × 10 read took 20 ms of CPU instead
/// of 12, most of the difference page faults (88 555 against 4 032 over 33 reads). Otherwise
/// the rows are kept for [`render`], which has the server render the other types.
#[derive(Debug, Default)]
struct Collected {
    kept: Vec<Row>,
    decoded: Vec<Vec<Value>>,
    /// Whether rows are decoded on arrival, known from the first row's columns.
    decode_now: Option<bool>,
    /// The first row's columns (a statement run unprepared is described by its rows).
    columns: Option<Vec<(String, Type)>>,
}

impl Collected {
    fn push(&mut self, row: Row) {
        let columns = row.columns();
        if self.columns.is_none() {
            self.columns = Some(describe(columns));
        }
        let decode_now =
            *self.decode_now.get_or_insert_with(|| columns.iter().all(|c| decode::plan(c.type_()) == Plan::Native));
        if decode_now {
            let values = columns.iter().enumerate().map(|(i, c)| decode_native(c.type_(), raw_value(&row, i)));
            self.decoded.push(values.collect());
        } else {
            self.kept.push(row);
        }
    }

    fn len(&self) -> usize {
        self.kept.len() + self.decoded.len()
    }
}

/// Runs `statement` on `conn`; rows beyond the caps are read and discarded (a write must
/// complete). On interruption or a fatal error the connection is poisoned.
pub(crate) async fn fetch(
    conn: &mut PgConn,
    tls: &Canceller,
    statement: &Statement,
    limits: &Limits,
    cancel: &CancellationToken,
    protocol: Protocol,
) -> Result<Fetched, Error> {
    let token = conn.client.cancel_token();
    let work = fetch_rows(&conn.client, statement, limits, protocol);
    let (result, suspect) = bounded(work, &token, tls, cancel, limits).await;
    if suspect {
        conn.poison();
    }
    result
}

/// Runs `work` until it ends, the caller cancels or the call's deadline passes; then the
/// statement is cancelled on the server ([`interrupt`]). Returns its result and whether the
/// connection is suspect.
async fn bounded<T>(
    work: impl Future<Output = (Result<T, Error>, bool)>,
    token: &CancelToken,
    tls: &Canceller,
    cancel: &CancellationToken,
    limits: &Limits,
) -> (Result<T, Error>, bool) {
    pin_mut!(work);
    tokio::select! {
        biased;
        result = &mut work => result,
        () = cancel.cancelled() => interrupt(token, tls, work, ErrorKind::Cancelled, limits).await,
        () = tokio::time::sleep(limits.timeout) => interrupt(token, tls, work, ErrorKind::Timeout, limits).await,
    }
}

/// Sends a CancelRequest and waits for the statement to end (or gives the connection up).
async fn interrupt<T>(
    token: &CancelToken,
    tls: &Canceller,
    work: impl Future<Output = (Result<T, Error>, bool)>,
    kind: ErrorKind,
    limits: &Limits,
) -> (Result<T, Error>, bool) {
    // Both waits are bounded (`Canceller::limit`): on a stalled network neither the cancel nor
    // the statement's end ever arrives, and the connection is then given up.
    let sent = tls.cancel(token).await;
    let ended = tokio::time::timeout(tls.limit(), work).await;
    // The statement finished before the cancel took effect: its result is the truth (for an
    // autocommit write, it committed). The cancel may still land on a later statement, so the
    // connection is not reused.
    if let Ok((Ok(fetched), _)) = ended {
        return (Ok(fetched), true);
    }
    let message = match kind {
        ErrorKind::Timeout => format!(
            "the statement ran longer than its timeout of {} ms and was cancelled on the server",
            limits.timeout.as_millis()
        ),
        _ => "the call was cancelled; the statement was cancelled on the server".to_owned(),
    };
    let err = Error::new(kind, message).with_sqlstate("57014").with_hint(match kind {
        ErrorKind::Timeout => "narrow the query (WHERE, LIMIT), or pass a larger timeout_ms",
        _ => "run it again if you still need the result",
    });
    // The connection is trusted again only if the statement ended because of our cancel.
    let clean = sent && matches!(&ended, Ok((Err(e), false)) if e.sqlstate() == Some("57014"));
    (Err(err), !clean)
}

async fn fetch_rows(
    client: &Client,
    statement: &Statement,
    limits: &Limits,
    protocol: Protocol,
) -> (Result<Fetched, Error>, bool) {
    let params: Vec<TextParam> = statement.params.iter().map(|p| TextParam(p.to_text())).collect();
    let sql = statement.sql.text();
    let started = match protocol {
        Protocol::Prepared { prelude } => match after(client, prelude, client.prepare(sql)).await {
            Err(failed) => return failed,
            Ok(Ok(prepared)) => {
                if prepared.params().len() != params.len() {
                    return (Err(placeholder_mismatch(prepared.params().len(), params.len())), false);
                }
                let columns = describe(prepared.columns());
                let params = array_params(prepared.params(), &statement.params, params);
                client
                    .query_raw(&prepared, params.iter().map(|p| p as &(dyn ToSql + Sync)))
                    .await
                    .map(|stream| (Some(columns), stream))
            }
            Ok(Err(e)) => Err(e),
        },
        Protocol::Unnamed => {
            // The server types an unnamed statement's parameters only when it binds them: a
            // JSON array it could not read as an array literal is sent again as one. The
            // refused bind ran nothing, and the implicit transaction it aborted is over.
            let mut texts: Vec<Option<String>> = statement.params.iter().map(coldquery_core::Param::to_text).collect();
            let mut retries = 2 * statement.params.len();
            // What the server said of each array in the form the caller gave (JSON text): the
            // clearest report when no other form of it is accepted either.
            let mut refusals: Vec<Option<tokio_postgres::Error>> = statement.params.iter().map(|_| None).collect();
            loop {
                let params: Vec<TextParam> = texts.iter().cloned().map(TextParam).collect();
                let started =
                    client.query_typed_raw(sql, params.iter().map(|p| (p as &(dyn ToSql + Sync), Type::UNKNOWN))).await;
                let error = match started {
                    Ok(stream) => break Ok((None, stream)),
                    Err(error) => error,
                };
                match refused_array(&error, &statement.params, &texts) {
                    Some(i) if retries > 0 && next_array_form(&statement.params[i], &mut texts[i]) => {
                        refusals[i].get_or_insert(error);
                        retries -= 1;
                    }
                    Some(i) => break Err(refusals[i].take().unwrap_or(error)),
                    None => break Err(error),
                }
            }
        }
    };
    let (columns, stream) = match started {
        Ok(started) => started,
        Err(e) => return (Err(errors::map(&e, "running the statement")), errors::is_fatal(&e)),
    };
    pin_mut!(stream);
    let (rows, truncated) = match collect(stream.as_mut(), limits).await {
        Ok(collected) => collected,
        Err(e) => return (Err(errors::map(&e, "reading rows")), errors::is_fatal(&e)),
    };
    let columns = columns.or_else(|| rows.columns.clone()).unwrap_or_default();
    let rows_affected = stream.rows_affected();
    (Ok(Fetched { columns, rows, truncated, rows_affected }), false)
}

/// `work` with `prelude` sent just before it (when given), both in one round trip: `work`'s
/// result, or, when the prelude failed or got no answer, the error to report and whether the
/// connection is suspect (`work`'s statement then ran in an aborted transaction: not at all).
async fn after<T>(
    client: &Client,
    prelude: Option<Prelude>,
    work: impl Future<Output = T>,
) -> Result<T, (Result<Fetched, Error>, bool)> {
    let Some(Prelude { sql, step }) = prelude else { return Ok(work.await) };
    let before = async {
        match within(step, client.batch_execute(sql)).await {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err((Err(errors::map(&e, "preparing the statement")), errors::is_fatal(&e))),
            None => Err((Err(no_answer(step, "preparing the statement")), true)),
        }
    };
    // Polled in order, the prelude's message is queued before the work's; a failed prelude
    // ends the wait at once.
    let (_, result) = futures_util::future::try_join(before, async { Ok(work.await) }).await?;
    Ok(result)
}

/// Rolls a read back before its statement ran; true when the connection is suspect.
async fn end_early(tx: tokio_postgres::Transaction<'_>, step: Duration) -> bool {
    !matches!(within(step, tx.rollback()).await, Some(Ok(())))
}

/// Reads `stream` to its end, keeping at most `max_rows` rows and `max_bytes` of raw row data;
/// true when some were left out.
async fn collect(mut stream: Pin<&mut RowStream>, limits: &Limits) -> Result<(Collected, bool), tokio_postgres::Error> {
    let mut rows = Collected::default();
    let mut bytes = 0usize;
    let mut truncated = false;
    while let Some(row) = stream.next().await.transpose()? {
        bytes += row.raw_size_bytes();
        if truncated || rows.len() >= limits.max_rows || bytes > limits.max_bytes {
            truncated = true;
        } else {
            rows.push(row);
        }
    }
    Ok((rows, truncated))
}

/// What a sessionless read did.
pub(crate) enum Read {
    /// The connection's server process is not the one of its last transaction (a transaction
    /// pooler moved it) and the caller asked to be told: nothing ran; use another connection.
    Moved,
    /// The rows, and the server process the read ran in.
    Fetched(Fetched, i32),
}

/// A sessionless read: a `READ ONLY` transaction that always ends in ROLLBACK, the statement
/// bound to a portal that the server executes for at most `max_rows + 1` rows — so a capped
/// read scans only what it returns, and no CancelRequest is needed to stop it.
///
/// Round trips: `START TRANSACTION READ ONLY`; the pin, the guard and Parse/Describe
/// (pipelined); Bind; Execute with the ROLLBACK pipelined behind it. The statement and portal
/// are closed at the connection's next use ([`Leftover`]). `backend` is the server
/// process of the connection's last transaction: when `report_moved` and this one runs
/// elsewhere, nothing is executed ([`Read::Moved`]). On interruption or a fatal error the
/// connection is poisoned.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read(
    conn: &mut PgConn,
    tls: &Canceller,
    statement: &Statement,
    limits: &Limits,
    cancel: &CancellationToken,
    report_moved: bool,
    step: Duration,
) -> Result<Read, Error> {
    let token = conn.client.cancel_token();
    let backend = conn.backend();
    let work = read_rows(
        &mut conn.client,
        (&conn.prepared, &mut conn.leftover),
        (&token, tls),
        statement,
        limits,
        backend,
        report_moved,
        step,
    );
    let (result, suspect) = bounded(work, &token, tls, cancel, limits).await;
    if suspect {
        conn.poison();
    }
    if let Ok(Read::Fetched(_, pid)) = &result {
        conn.moved_to(*pid);
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn read_rows(
    client: &mut Client,
    (prepared, leftover): (&Prepared, &mut Leftover),
    (token, tls): (&CancelToken, &Canceller),
    statement: &Statement,
    limits: &Limits,
    backend: Option<i32>,
    report_moved: bool,
    step: Duration,
) -> (Result<Read, Error>, bool) {
    let tx = match within(step, client.build_transaction().read_only(true).start()).await {
        Some(Ok(tx)) => tx,
        Some(Err(e)) => return (Err(errors::map(&e, "starting a transaction")), true),
        None => return (Err(no_answer(step, "starting a transaction")), true),
    };
    let pin = Setup::call(limits);
    let checked = async {
        match statement.guard.as_deref() {
            Some(guard) => check(tx.client(), prepared, guard).await,
            None => Ok(()),
        }
    };
    let began = async { tokio::join!(pin.send(tx.client()), checked) };
    // Parse/Describe has no step bound: it may wait for a lock, which the statement's own
    // deadline bounds.
    let (began, prepared) = tokio::join!(within(step, began), tx.prepare(statement.sql.text()));
    let Some((pinned, checked)) = began else {
        return (Err(no_answer(step, "starting a transaction")), true);
    };
    let pid = match pinned {
        Ok(rows) => Setup::backend(&rows).unwrap_or_default(),
        Err(e) => return (Err(errors::map(&e, "starting a transaction")), true),
    };
    if report_moved && backend.is_some_and(|previous| previous != pid) {
        let _ = end_early(tx, step).await;
        return (Ok(Read::Moved), true);
    }
    if let Err(err) = checked {
        // On a connection's first guard (prepared, then run) the statement's Parse reaches the
        // server before the guard runs: a statement the server cannot parse aborts the
        // transaction, and the guard then reports only that (25P02). The statement's own error
        // is the one to report. (Nothing of the statement ran: it is bound only after both.)
        let err = match &prepared {
            Err(e) if err.sqlstate() == Some("25P02") => errors::map(e, "running the statement"),
            _ => err,
        };
        return (Err(err), end_early(tx, step).await);
    }
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            let fatal = errors::is_fatal(&e);
            return (Err(errors::map(&e, "running the statement")), fatal || end_early(tx, step).await);
        }
    };
    if prepared.params().len() != statement.params.len() {
        return (Err(placeholder_mismatch(prepared.params().len(), statement.params.len())), end_early(tx, step).await);
    }
    let params: Vec<TextParam> = statement.params.iter().map(|p| TextParam(p.to_text())).collect();
    let params = array_params(prepared.params(), &statement.params, params);
    let portal = match tx.bind_raw(&prepared, params.iter().map(|p| p as &(dyn ToSql + Sync))).await {
        Ok(portal) => portal,
        Err(e) => {
            let fatal = errors::is_fatal(&e);
            return (Err(errors::map(&e, "running the statement")), fatal || end_early(tx, step).await);
        }
    };
    // One more row than the cap tells a truncated result from one that fits exactly.
    let wanted = limits.max_rows.checked_add(1).and_then(|n| i32::try_from(n).ok()).unwrap_or(0);
    let stream = match tx.query_portal_raw(&portal, wanted).await {
        Ok(stream) => stream,
        Err(e) => {
            let fatal = errors::is_fatal(&e);
            return (Err(errors::map(&e, "running the statement")), fatal || end_early(tx, step).await);
        }
    };
    // The ROLLBACK goes out now, behind the Execute: it is answered in the same round trip.
    // Its step bound starts once the rows are in (the statement has its own deadline).
    let mut rollback = std::pin::pin!(tx.rollback());
    let early = futures_util::poll!(rollback.as_mut());
    pin_mut!(stream);
    // The portal stops at the row cap by itself; the byte budget can be spent long before it
    // (wide rows), and then the rest is not worth transferring: the statement is cancelled.
    let mut rows = Collected::default();
    let mut bytes = 0usize;
    let mut truncated = false;
    let mut collected = Ok(());
    let mut cancel_suspect = false;
    loop {
        match stream.next().await.transpose() {
            Ok(Some(row)) => {
                bytes += row.raw_size_bytes();
                if rows.len() >= limits.max_rows {
                    truncated = true;
                } else if bytes > limits.max_bytes {
                    truncated = true;
                    cancel_suspect = cancel_rest(token, tls, stream.as_mut()).await;
                    break;
                } else {
                    rows.push(row);
                }
            }
            Ok(None) => break,
            Err(e) => {
                collected = Err(e);
                break;
            }
        }
    }
    let rolled_back = match early {
        Poll::Ready(done) => Some(done),
        Poll::Pending => within(step, rollback).await,
    };
    let suspect = cancel_suspect || !matches!(rolled_back, Some(Ok(())));
    match collected {
        Ok(()) => {
            let columns = describe(prepared.columns());
            leftover.keep(prepared, portal);
            (Ok(Read::Fetched(Fetched { columns, rows, truncated, rows_affected: None }, pid)), suspect)
        }
        Err(e) => (Err(errors::map(&e, "reading rows")), suspect || errors::is_fatal(&e)),
    }
}

/// Where [`render`] runs. The server renders a value by receiving its binary form, which runs
/// the type's input checks — a domain's CHECK, whatever function it calls, user code included —
/// and can fail (a type without binary input, such as `pg_node_tree`). So the server renders
/// only inside a transaction that is rolled back to or rolled back afterwards: nothing that code
/// did to data stays, and a failure never aborts the caller's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rendering {
    /// Inside the caller's transaction: under a savepoint, rolled back to at the end.
    InTransaction,
    /// Outside any transaction block: in a `READ ONLY` transaction of its own, rolled back at
    /// the end (a read's values are rendered after the read's own ROLLBACK).
    Outside,
}

/// The savepoint the server renders under, rolled back to after a failed rendering.
const RENDER_SAVEPOINT: &str = "SAVEPOINT coldquery_render";

/// Renders fetched rows; types not decoded here are rendered by the server over `client`
/// (which must be usable: not inside an aborted transaction), each round trip bounded by
/// `limit` (values the server did not render, or not in time, keep their raw bytes, in hex).
pub(crate) async fn render(client: &Client, fetched: Fetched, limit: Duration, rendering: Rendering) -> QueryResult {
    let Fetched { columns, rows, truncated, rows_affected } = fetched;
    let rows = match rows.decode_now {
        Some(true) => rows.decoded,
        _ => render_guarded(client, &columns, &rows.kept, limit, rendering).await,
    };
    QueryResult {
        fields: fields_of(&columns),
        rows,
        truncated,
        // PostgreSQL reports a count for SELECT too; the tools layer, which knows the
        // statement's kind, keeps it only for DML.
        rows_affected,
        duration_ms: 0.0,
    }
}

/// [`render_rows`] with the server's renderings enclosed as [`Rendering`] says.
async fn render_guarded(
    client: &Client,
    columns: &[(String, Type)],
    rows: &[Row],
    limit: Duration,
    rendering: Rendering,
) -> Vec<Vec<Value>> {
    let by_server = columns.iter().any(|(_, ty)| decode::plan(ty) == Plan::ServerText) && !rows.is_empty();
    if !by_server {
        return render_rows(client, columns, rows, limit, false).await;
    }
    let (open, close) = match rendering {
        Rendering::InTransaction => {
            (RENDER_SAVEPOINT, "ROLLBACK TO SAVEPOINT coldquery_render; RELEASE SAVEPOINT coldquery_render")
        }
        Rendering::Outside => ("START TRANSACTION READ ONLY; SAVEPOINT coldquery_render", "ROLLBACK"),
    };
    // Not enclosed, the server renders nothing: what a rendering did could not be undone.
    let opened = matches!(tokio::time::timeout(limit, client.batch_execute(open)).await, Ok(Ok(())));
    let values = render_rows(client, columns, rows, limit, opened).await;
    // Always: a rendering that went unanswered and failed later is undone too (this runs after
    // it), and so is anything a rendering did. If this fails as well, the transaction is what
    // the next statement, or the probe in COMMIT's message, finds it to be.
    let _ = tokio::time::timeout(limit, client.batch_execute(close)).await;
    values
}

fn fields_of(columns: &[(String, Type)]) -> Vec<Field> {
    columns.iter().map(|(name, ty)| Field { name: name.clone(), type_name: ty.name().to_owned() }).collect()
}

/// Renders rows; types not decoded here are rendered by the server when `by_server` (under
/// [`RENDER_SAVEPOINT`]: see [`render_guarded`]), each round trip bounded by `limit`, and
/// otherwise keep their bytes, in hex.
async fn render_rows(
    client: &Client,
    columns: &[(String, Type)],
    rows: &[Row],
    limit: Duration,
    by_server: bool,
) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = rows.iter().map(|_| Vec::with_capacity(columns.len())).collect();
    for (i, (_, ty)) in columns.iter().enumerate() {
        let raw: Vec<Option<&[u8]>> = rows.iter().map(|r| raw_value(r, i)).collect();
        let values = match decode::plan(ty) {
            Plan::Native => raw.iter().map(|v| decode_native(ty, *v)).collect(),
            Plan::ServerText if by_server => server_text(client, ty, &raw, limit).await,
            Plan::ServerText => raw.iter().map(|v| v.map_or(Value::Null, |b| Value::String(decode::hex(b)))).collect(),
        };
        for (row, value) in out.iter_mut().zip(values) {
            row.push(value);
        }
    }
    out
}

/// Sends a CancelRequest for the statement whose rows `stream` carries and reads the stream to
/// its end. Returns true when the connection is suspect: the statement did not end by that
/// cancel, so a late cancel could still hit a later statement.
async fn cancel_rest(token: &CancelToken, tls: &Canceller, mut stream: Pin<&mut RowStream>) -> bool {
    let sent = tls.cancel(token).await;
    let mut cancelled = false;
    let mut suspect = false;
    while let Some(next) = stream.next().await {
        if let Err(e) = next {
            cancelled = e.code().is_some_and(|c| c.code() == "57014");
            suspect = !cancelled && errors::is_fatal(&e);
            break;
        }
    }
    suspect || !sent || !cancelled
}

/// Rows a stream renders at a time: enough to amortise the round trip of server-rendered
/// types, few enough to keep memory small whatever the result's size.
const STREAM_BATCH_ROWS: usize = 1000;
/// Raw bytes a stream renders at a time, at most (plus one row).
const STREAM_BATCH_BYTES: usize = 1024 * 1024;

/// Runs `statement` on `conn` (inside the caller's read-only transaction) and hands its rows to
/// `sink` in batches as they arrive; returns the columns and the number of rows. Values of
/// types rendered by the server go over a second connection from `helper` (this one is busy
/// with the stream). On interruption or a fatal error the connection is poisoned.
pub(crate) async fn stream(
    conn: &mut PgConn,
    tls: &Canceller,
    helper: &Shared,
    statement: &Statement,
    limits: &Limits,
    cancel: &CancellationToken,
    sink: &mut dyn RowSink,
) -> Result<(Vec<Field>, u64), Error> {
    let token = conn.client.cancel_token();
    let work = stream_rows(&conn.client, &token, tls, helper, statement, sink);
    let (result, suspect) = bounded(work, &token, tls, cancel, limits).await;
    if suspect {
        conn.poison();
    }
    result
}

async fn stream_rows(
    client: &Client,
    token: &CancelToken,
    tls: &Canceller,
    helper: &Shared,
    statement: &Statement,
    sink: &mut dyn RowSink,
) -> (Result<(Vec<Field>, u64), Error>, bool) {
    let step = helper.step;
    let params: Vec<TextParam> = statement.params.iter().map(|p| TextParam(p.to_text())).collect();
    let prepared = match client.prepare(statement.sql.text()).await {
        Ok(prepared) => prepared,
        Err(e) => return (Err(errors::map(&e, "running the statement")), errors::is_fatal(&e)),
    };
    if prepared.params().len() != params.len() {
        return (Err(placeholder_mismatch(prepared.params().len(), params.len())), false);
    }
    let params = array_params(prepared.params(), &statement.params, params);
    let columns = describe(prepared.columns());
    let fields = fields_of(&columns);
    if let Err(err) = sink.columns(&fields) {
        return (Err(err), false);
    }
    let server_rendered = columns.iter().any(|(_, ty)| decode::plan(ty) == Plan::ServerText);
    let helper = if server_rendered {
        match helper.acquire().await {
            Ok(conn) => Some(conn),
            Err(err) => return (Err(err), false),
        }
    } else {
        None
    };
    let text_client = helper.as_ref().map_or(client, |conn| &conn.client);
    let stream = match client.query_raw(&prepared, params.iter().map(|p| p as &(dyn ToSql + Sync))).await {
        Ok(stream) => stream,
        Err(e) => return (Err(errors::map(&e, "running the statement")), errors::is_fatal(&e)),
    };
    pin_mut!(stream);
    let mut batch: Vec<Row> = Vec::with_capacity(STREAM_BATCH_ROWS);
    let mut bytes = 0usize;
    let mut sent = 0u64;
    loop {
        let next = stream.next().await;
        let done = next.is_none();
        match next {
            Some(Ok(row)) => {
                bytes += row.raw_size_bytes();
                batch.push(row);
            }
            Some(Err(e)) => return (Err(errors::map(&e, "reading rows")), errors::is_fatal(&e)),
            None => {}
        }
        if done || batch.len() >= STREAM_BATCH_ROWS || bytes >= STREAM_BATCH_BYTES {
            let rows = render_guarded(text_client, &columns, &batch, step, Rendering::Outside).await;
            batch.clear();
            bytes = 0;
            for row in rows {
                if let Err(err) = sink.row(row) {
                    let suspect = if done { false } else { cancel_rest(token, tls, stream.as_mut()).await };
                    return (Err(err), suspect);
                }
                sent += 1;
            }
        }
        if done {
            break;
        }
    }
    (Ok((fields, sent)), false)
}

fn placeholder_mismatch(placeholders: usize, given: usize) -> Error {
    Error::invalid(format!(
        "the statement has {placeholders} parameter placeholder(s) ($1...) but {given} value(s) were given in 'params'"
    ))
}

fn describe(columns: &[Column]) -> Vec<(String, Type)> {
    columns.iter().map(|c| (c.name().to_owned(), c.type_().clone())).collect()
}

/// A value of a type decoded here ([`Plan::Native`]); bytes it cannot decode are kept, in hex.
fn decode_native(ty: &Type, raw: Option<&[u8]>) -> Value {
    match raw {
        None => Value::Null,
        Some(bytes) => decode::decode(ty, bytes).unwrap_or_else(|_| Value::String(decode::hex(bytes))),
    }
}

fn raw_value(row: &Row, i: usize) -> Option<&[u8]> {
    row.try_get::<_, RawValue<'_>>(i).ok().and_then(|v| v.0)
}

/// Renders values of a type this module does not decode by sending them back as parameters
/// of that very type and casting them to `text` on the server: PostgreSQL's own text form.
/// Arrays of such types are cast to `text[]` instead, so they still render as JSON arrays
/// (of their elements' text forms).
async fn server_text(client: &Client, ty: &Type, raw: &[Option<&[u8]>], limit: Duration) -> Vec<Value> {
    const CHUNK: usize = 1000;
    let mut out = Vec::with_capacity(raw.len());
    let mut answering = true;
    for chunk in raw.chunks(CHUNK) {
        let present: Vec<&[u8]> = chunk.iter().flatten().copied().collect();
        let texts = if present.is_empty() {
            Ok(Vec::new())
        } else if !answering {
            Err(())
        } else {
            let texts = match tokio::time::timeout(limit, cast_to_text(client, ty, &present)).await {
                Ok(texts) => texts.map_err(drop),
                Err(_) => {
                    answering = false;
                    Err(())
                }
            };
            // A failed rendering aborted the savepoint's subtransaction: undone, so that the
            // next rendering, and the caller's transaction, go on.
            if texts.is_err() && answering {
                let undo = client.batch_execute("ROLLBACK TO SAVEPOINT coldquery_render");
                answering = matches!(tokio::time::timeout(limit, undo).await, Ok(Ok(())));
            }
            texts
        };
        let mut texts = texts.map(|t| t.into_iter());
        for value in chunk {
            out.push(match (value, &mut texts) {
                (None, _) => Value::Null,
                (Some(_), Ok(texts)) => texts.next().flatten().unwrap_or(Value::Null),
                // No binary input function for this type: keep the bytes, losslessly.
                (Some(bytes), Err(_)) => Value::String(decode::hex(bytes)),
            });
        }
    }
    out
}

async fn cast_to_text(
    client: &Client,
    ty: &Type,
    values: &[&[u8]],
) -> Result<Vec<Option<Value>>, tokio_postgres::Error> {
    let is_array = matches!(ty.kind(), Kind::Array(_));
    let mut sql = coldquery_core::SqlBuilder::new("SELECT ");
    for n in 1..=values.len() {
        if n > 1 {
            sql.push(", ");
        }
        sql.placeholder(n).push(if is_array { "::text[]" } else { "::text" });
    }
    let sql = sql.build();
    let params: Vec<RawParam<'_>> = values.iter().map(|v| RawParam(v)).collect();
    let row = client
        .query_typed(
            sql.text(),
            params.iter().map(|p| (p as &(dyn ToSql + Sync), ty.clone())).collect::<Vec<_>>().as_slice(),
        )
        .await?;
    let row = row.into_iter().next();
    Ok((0..values.len())
        .map(|i| {
            let raw = row.as_ref().and_then(|r| raw_value(r, i))?;
            let text_type = if is_array { Type::TEXT_ARRAY } else { Type::TEXT };
            Some(decode::decode(&text_type, raw).unwrap_or_else(|_| Value::String(decode::hex(raw))))
        })
        .collect())
}

/// The parameters with each JSON array that the server typed as an array (`$1::int[]`, a
/// `text[]` column) sent as a PostgreSQL array literal instead of JSON text, which the array's
/// input function would refuse. JSON arrays for `json`/`jsonb`/`text` parameters stay JSON.
fn array_params(types: &[Type], given: &[coldquery_core::Param], params: Vec<TextParam>) -> Vec<TextParam> {
    params
        .into_iter()
        .zip(given)
        .zip(types)
        .map(|((param, value), ty)| match array_literal(ty, value) {
            Some(literal) => TextParam(Some(literal)),
            None => param,
        })
        .collect()
}

fn array_literal(ty: &Type, value: &coldquery_core::Param) -> Option<String> {
    let element = match ty.kind() {
        Kind::Array(element) => element,
        Kind::Domain(base) => return array_literal(base, value),
        _ => return None,
    };
    let json_elements = matches!(*element, Type::JSON | Type::JSONB);
    value.array_literal(json_elements)
}

/// The JSON array parameter whose bind an unnamed statement's `error` refused, if any: the
/// server types such a statement's parameters only when it binds them, and reports a value
/// its type cannot read as `invalid_text_representation` (22P02), quoting the value.
///
/// Which parameter it was is in the message only; it is found by the value ColdQuery sent,
/// which the message quotes verbatim in any language (the words and the quotation marks
/// around it are the server's `lc_messages`, and are not read). When one array's text
/// contains another's, the longer one is the one quoted.
fn refused_array(
    error: &tokio_postgres::Error,
    given: &[coldquery_core::Param],
    texts: &[Option<String>],
) -> Option<usize> {
    let db = error.as_db_error()?;
    if *db.code() != tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION {
        return None;
    }
    given
        .iter()
        .zip(texts)
        .enumerate()
        .filter(|(_, (param, _))| param.array_literal(false).is_some())
        .filter_map(|(i, (_, text))| {
            text.as_deref().filter(|text| db.message().contains(text)).map(|text| (i, text.len()))
        })
        .max_by_key(|&(i, len)| (len, std::cmp::Reverse(i)))
        .map(|(i, _)| i)
}

/// Turns a refused JSON array parameter into its next form, returning false when it has none:
/// JSON text, then an array literal with nested arrays as sub-arrays, then one whose elements
/// are all JSON values (a `jsonb[]` parameter).
fn next_array_form(param: &coldquery_core::Param, text: &mut Option<String>) -> bool {
    let Some(current) = text.as_deref() else { return false };
    let next = if param.to_text().as_deref() == Some(current) {
        param.array_literal(false)
    } else if param.array_literal(false).as_deref() == Some(current) {
        param.array_literal(true).filter(|literal| literal != current)
    } else {
        None
    };
    match next {
        Some(next) => {
            *text = Some(next);
            true
        }
        None => false,
    }
}

/// A parameter sent in text format with an unspecified type, so the server infers it.
#[derive(Debug)]
struct TextParam(Option<String>);

impl ToSql for TextParam {
    fn to_sql(&self, _ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> postgres_types::Format {
        postgres_types::Format::Text
    }

    to_sql_checked!();
}

/// Raw binary bytes sent back with their own type.
#[derive(Debug)]
struct RawParam<'a>(&'a [u8]);

impl ToSql for RawParam<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column's raw binary value, whatever its type.
struct RawValue<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawValue(Some(raw)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawValue(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}
