//! [`PgSessions`]: transactions that live across tool calls (SPEC §4), each on its own
//! connection from a pool separate from the shared one, so open sessions never starve
//! sessionless calls.
//!
//! Each session is a small state machine (open / aborted / lost, plus "active" while a call
//! runs). It is what makes `commit` honest: tokio-postgres returns `Ok` for a COMMIT that
//! PostgreSQL turned into a ROLLBACK (the transaction had failed), so the state is tracked
//! here and probed before COMMIT. A session is never reconnected transparently.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bb8::PooledConnection;
use coldquery_core::{
    CancellationToken, Error, ErrorKind, Footprint, Ident, Limits, OnError, Owner, QueryResult, Result, SavepointOp,
    SessionEnd, SessionId, SessionInfo, SessionStore, SqlBuilder, Statement, TxOptions, TxState,
    commit_failed_after_error, session_not_found, unknown_savepoint,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::begin::begin_sql;
use crate::begin::{self, Setup};
use crate::errors;
use crate::executor::elapsed_ms;
use crate::manager::{Manager, PgConn};
use crate::options::PgOptions;
use crate::pool::Shared;
use crate::reset::{Ended, end_and_reset};
use crate::run::{self, Protocol};
use crate::step::{no_answer, within};

/// PostgreSQL ends a session idle in its transaction this long after ColdQuery's own TTL, in
/// case ColdQuery itself hangs or dies.
const BACKSTOP_MARGIN: Duration = Duration::from_secs(60);

/// How many distinct function names a session remembers for the check at its end; a session
/// that calls more is treated as having called something no reset clears.
const MAX_FOOTPRINT: usize = 4096;

/// Run before each statement of a session: the grammar the classifier parses with, in case
/// something the session ran changed it (only a function could: SET of it is refused).
const REPIN_GRAMMAR: &str = "SELECT set_config('standard_conforming_strings', 'on', true)";

/// [`REPIN_GRAMMAR`] for a session with `on_error: rollback_statement`, after the savepoint that
/// a failing statement is rolled back to (so a failing pin is rolled back too).
const SAVEPOINT_AND_REPIN: &str =
    "SAVEPOINT coldquery_statement; SELECT set_config('standard_conforming_strings', 'on', true)";

/// The savepoints ColdQuery makes in a session's transaction (`coldquery_guard`,
/// `coldquery_statement`, `coldquery_preview`) start with this: a caller's savepoint of the same
/// name would be rolled back or released in their place, so callers cannot use it.
const RESERVED_SAVEPOINT_PREFIX: &str = "coldquery_";

/// The [`SessionStore`] over PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSessions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    pool: bb8::Pool<Manager>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    permits: Arc<Semaphore>,
    max: usize,
    ttl: Duration,
    busy_wait: Duration,
}

#[derive(Debug)]
struct Slot {
    id: SessionId,
    owner: Owner,
    /// The server process the session's transaction runs in.
    backend_pid: Option<i32>,
    options: TxOptions,
    created: Instant,
    active: AtomicBool,
    state: Mutex<SlotState>,
    live: tokio::sync::Mutex<Live>,
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug)]
struct SlotState {
    tx: Tx,
    last_used: Instant,
    statements: u64,
    savepoints: Vec<Ident>,
    /// The functions the session's statements may have called (see [`Footprint`]); `None` once
    /// more than [`MAX_FOOTPRINT`] names were seen.
    footprint: Option<Footprint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    Open,
    Aborted,
    Lost,
}

/// The session's connection. Dropped without [`Live::release`] it is poisoned, so a
/// connection with an open transaction can never go back to the pool as it is.
#[derive(Debug)]
struct Live {
    conn: Option<PooledConnection<'static, Manager>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.poison();
        }
    }
}

impl Live {
    fn conn(&mut self) -> Result<&mut PgConn> {
        self.conn.as_deref_mut().ok_or_else(session_not_found)
    }

    /// Returns a cleaned connection to the session pool.
    fn release(&mut self) {
        drop(self.conn.take());
    }
}

impl PgSessions {
    pub(crate) fn new(shared: Arc<Shared>, pool: bb8::Pool<Manager>, options: &PgOptions) -> PgSessions {
        let max = options.max_sessions;
        let inner = Arc::new(Inner {
            shared,
            pool,
            slots: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(max)),
            max,
            ttl: options.session_ttl,
            busy_wait: options.busy_wait,
        });
        tokio::spawn(reap(Arc::downgrade(&inner)));
        PgSessions { inner }
    }
}

/// Rolls back sessions idle longer than the TTL.
async fn reap(inner: Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(inner) => (inner.ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(30)),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let expired: Vec<Arc<Slot>> = {
            let slots = inner.slots.lock().expect("slots lock");
            slots.values().filter(|s| s.expired(inner.ttl)).cloned().collect()
        };
        for slot in expired {
            // A session in the middle of a call is not idle.
            if let Ok(mut live) = slot.live.try_lock()
                && slot.expired(inner.ttl)
            {
                inner.remove(&slot);
                inner.end_quietly(&slot, &mut live).await;
                tracing::info!(session = %slot.id, "session expired and was rolled back");
            }
        }
    }
}

impl Slot {
    fn expired(&self, ttl: Duration) -> bool {
        !self.active.load(Ordering::Acquire) && self.state.lock().expect("state lock").last_used.elapsed() >= ttl
    }

    fn info(&self, ttl: Duration) -> SessionInfo {
        let state = self.state.lock().expect("state lock");
        let idle = state.last_used.elapsed();
        SessionInfo {
            id: self.id.clone(),
            transaction_state: if state.tx != Tx::Open {
                TxState::Aborted
            } else if self.active.load(Ordering::Acquire) {
                TxState::Active
            } else {
                TxState::Idle
            },
            // Rounded up: a fresh session shows the full TTL, and 0 only once it is due.
            expires_in_seconds: {
                let left = ttl.saturating_sub(idle);
                left.as_secs() + u64::from(left.subsec_nanos() > 0)
            },
            age_seconds: self.created.elapsed().as_secs(),
            idle_seconds: idle.as_secs(),
            options: self.options,
            statements: state.statements,
        }
    }

    fn set_tx(&self, tx: Tx) {
        self.state.lock().expect("state lock").tx = tx;
    }

    fn tx(&self) -> Tx {
        self.state.lock().expect("state lock").tx
    }

    /// The functions the session may have called, or one that no connection passes as clean.
    fn footprint(&self) -> Footprint {
        let state = self.state.lock().expect("state lock");
        state.footprint.clone().unwrap_or_else(Footprint::unknown)
    }

    fn remember(&self, footprint: &Footprint) {
        let mut state = self.state.lock().expect("state lock");
        if let Some(known) = &mut state.footprint {
            *known = Footprint::union([&*known, footprint]);
            if known.functions.len() > MAX_FOOTPRINT {
                state.footprint = None;
            }
        }
    }

    fn touch(&self) {
        self.state.lock().expect("state lock").last_used = Instant::now();
    }

    /// Refuses a statement when the transaction is aborted (until it is rolled back) or lost.
    fn accepts_statements(&self) -> Result<()> {
        match self.tx() {
            Tx::Open => Ok(()),
            Tx::Aborted => Err(aborted_error()),
            Tx::Lost => Err(lost_error()),
        }
    }
}

/// Marks a session active for the duration of a call.
struct ActiveGuard<'a>(&'a Slot);

impl<'a> ActiveGuard<'a> {
    fn new(slot: &'a Slot) -> ActiveGuard<'a> {
        slot.active.store(true, Ordering::Release);
        ActiveGuard(slot)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.store(false, Ordering::Release);
    }
}

impl Inner {
    fn find(&self, owner: &Owner, id: &SessionId) -> Result<Arc<Slot>> {
        let slot = self.slots.lock().expect("slots lock").get(id.as_str()).cloned();
        match slot {
            Some(slot) if slot.owner == *owner && !slot.expired(self.ttl) => Ok(slot),
            _ => Err(session_not_found()),
        }
    }

    fn remove(&self, slot: &Slot) {
        self.slots.lock().expect("slots lock").remove(slot.id.as_str());
    }

    async fn lock<'a>(&self, slot: &'a Slot) -> Result<tokio::sync::MutexGuard<'a, Live>> {
        tokio::time::timeout(self.busy_wait, slot.live.lock()).await.map_err(|_| {
            Error::new(ErrorKind::SessionBusy, "the session is running another call")
                .with_hint("a session runs one statement at a time; wait for the other call to finish and retry")
        })
    }

    /// Rolls back, cleans and returns the connection (or discards it).
    async fn end_quietly(&self, slot: &Slot, live: &mut Live) {
        if let Ok(conn) = live.conn() {
            rollback_and_reset(conn, slot.tx() == Tx::Lost, &slot.footprint(), self.shared.step).await;
        }
        live.release();
    }

    /// Closes a session whose connection did not answer a step within the step timeout: its
    /// state is unknown, so the connection is closed (PostgreSQL then rolls back) and the
    /// session is gone.
    fn lose(&self, slot: &Slot, live: &mut Live, doing: &str) -> Error {
        slot.set_tx(Tx::Lost);
        if let Ok(conn) = live.conn() {
            conn.poison();
        }
        self.remove(slot);
        live.release();
        no_answer(self.shared.step, doing).with_hint(
            "the session's connection stopped answering, so it was closed and PostgreSQL rolls its transaction back; \
             begin a new session and redo the work",
        )
    }
}

/// Ends the transaction and cleans the connection for its next owner. A connection whose
/// ROLLBACK fails (or that is known to be lost) is poisoned: returned to the pool as it is, it
/// could hand an open transaction to the next caller (bb8 does not reset connections).
///
/// The ROLLBACK and the reset go in one message, so that behind a transaction pooler the reset
/// cleans the server connection the session ran on (see [`end_and_reset`]).
async fn rollback_and_reset(conn: &mut PgConn, lost: bool, footprint: &Footprint, step: Duration) {
    if lost {
        conn.poison();
        return;
    }
    if let Ended::Failed(_) = end_and_reset(conn, "ROLLBACK", footprint, step).await {
        conn.poison();
    }
}

fn lost_error() -> Error {
    Error::new(
        ErrorKind::SessionAborted,
        "the session's connection to PostgreSQL was lost, so PostgreSQL rolled its transaction back; the session is closed",
    )
    .with_hint("begin a new session and redo the work; ColdQuery never reconnects a session silently")
}

fn aborted_error() -> Error {
    Error::new(
        ErrorKind::SessionAborted,
        "the session's transaction is aborted because an earlier statement failed; statements are ignored until it is rolled back",
    )
    .with_hint("call pg_tx rollback (or rollback_to a savepoint made before the failure)")
}

fn random_id() -> Result<SessionId> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("no OS randomness: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(SessionId::new(format!("cqs_{hex}")))
}

#[async_trait]
impl SessionStore for PgSessions {
    async fn begin(&self, owner: &Owner, options: &TxOptions) -> Result<SessionInfo> {
        let inner = &self.inner;
        let permit = inner.permits.clone().try_acquire_owned().map_err(|_| {
            Error::new(
                ErrorKind::SessionLimit,
                format!("all {} sessions are open", inner.max),
            )
            .with_hint("commit or roll back a session you no longer need (pg_tx list shows yours); sessionless reads still work")
        })?;
        let pin = Setup::session(inner.ttl + BACKSTOP_MARGIN, options.lock_timeout);
        // As in the executor: a connection that a transaction pooler moved to another server
        // process since its last transaction is replaced (its cached type lookups may be gone).
        let step = inner.shared.step;
        let conn = begin::begin(|| inner.shared.get(&inner.pool), begin_sql(options).text(), &pin, None, step).await?;
        let backend_pid = conn.backend();
        let slot = Arc::new(Slot {
            id: random_id()?,
            owner: owner.clone(),
            backend_pid,
            options: *options,
            created: Instant::now(),
            active: AtomicBool::new(false),
            state: Mutex::new(SlotState {
                tx: Tx::Open,
                last_used: Instant::now(),
                statements: 0,
                savepoints: Vec::new(),
                footprint: Some(Footprint::default()),
            }),
            live: tokio::sync::Mutex::new(Live { conn: Some(conn) }),
            _permit: permit,
        });
        inner.slots.lock().expect("slots lock").insert(slot.id.as_str().to_owned(), slot.clone());
        Ok(slot.info(inner.ttl))
    }

    async fn run(
        &self,
        owner: &Owner,
        id: &SessionId,
        statement: &Statement,
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<(QueryResult, SessionInfo)> {
        let inner = &self.inner;
        let slot = inner.find(owner, id)?;
        let mut live = inner.lock(&slot).await?;
        let _active = ActiveGuard::new(&slot);
        slot.accepts_statements()?;
        let per_statement = slot.options.on_error == OnError::RollbackStatement;
        let tls = inner.shared.tls.clone();
        let step = inner.shared.step;
        let conn = live.conn()?;
        slot.remember(&statement.footprint);
        if let Some(guard) = statement.guard.as_deref() {
            // The guard runs under a savepoint of its own, so that a refusal leaves the
            // session's transaction as it was.
            let guarded = within(step, async {
                let (saved, checked) = tokio::join!(
                    conn.client.batch_execute("SAVEPOINT coldquery_guard"),
                    crate::begin::check(&conn.client, &conn.prepared, guard)
                );
                let undo = match (&saved, &checked) {
                    (Ok(()), Ok(())) => "RELEASE SAVEPOINT coldquery_guard",
                    _ => "ROLLBACK TO SAVEPOINT coldquery_guard; RELEASE SAVEPOINT coldquery_guard",
                };
                let undone = conn.client.batch_execute(undo).await;
                (saved, checked, undone)
            })
            .await;
            let Some((saved, checked, undone)) = guarded else {
                return Err(inner.lose(&slot, &mut live, "checking the statement"));
            };
            if let Err(e) = saved.and(undone) {
                slot.set_tx(if errors::is_fatal(&e) { Tx::Lost } else { Tx::Aborted });
                return Err(errors::map(&e, "checking the statement"));
            }
            checked?;
        }
        let started = Instant::now();
        // The grammar pinned again (and the statement's savepoint made) in the statement's
        // first round trip. Inside a session a truncated result is drained, not cancelled: a
        // cancel would abort the caller's transaction.
        let prelude = if per_statement { SAVEPOINT_AND_REPIN } else { REPIN_GRAMMAR };
        let prelude = run::Prelude { sql: prelude, step };
        let fetched =
            run::fetch(conn, &tls, statement, limits, cancel, Protocol::Prepared { prelude: Some(prelude) }).await;
        slot.state.lock().expect("state lock").statements += 1;
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(err) => {
                let lost = conn.client.is_closed() || conn.is_poisoned();
                if lost {
                    slot.set_tx(Tx::Lost);
                    inner.remove(&slot);
                    live.release();
                    return Err(err.with_hint(
                        "the session's connection was lost, so its transaction was rolled back and the session is closed",
                    ));
                }
                if per_statement
                    && matches!(
                        within(
                            step,
                            conn.client.batch_execute(
                                "ROLLBACK TO SAVEPOINT coldquery_statement; RELEASE SAVEPOINT coldquery_statement",
                            )
                        )
                        .await,
                        Some(Ok(()))
                    )
                {
                    return Err(err.with_hint(
                        "only this statement was rolled back (on_error: rollback_statement); the session is still usable",
                    ));
                }
                // A mistake caught before execution (wrong number of parameters) never reached
                // the transaction, so it is not aborted.
                if err.kind() == ErrorKind::InvalidArgument && err.sqlstate().is_none() {
                    return Err(err.with_hint("the statement did not run; the session's transaction is unchanged"));
                }
                slot.set_tx(Tx::Aborted);
                return Err(err.with_hint(
                    "the session's transaction is now aborted; call pg_tx rollback (or rollback_to a savepoint)",
                ));
            }
        };
        if per_statement {
            match within(step, conn.client.batch_execute("RELEASE SAVEPOINT coldquery_statement")).await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    slot.set_tx(if errors::is_fatal(&e) { Tx::Lost } else { Tx::Aborted });
                    return Err(errors::map(&e, "releasing the statement savepoint"));
                }
                None => return Err(inner.lose(&slot, &mut live, "releasing the statement savepoint")),
            }
        }
        let mut result = run::render(&conn.client, fetched, step, run::Rendering::InTransaction).await;
        result.duration_ms = elapsed_ms(started);
        drop(_active);
        Ok((result, slot.info(inner.ttl)))
    }

    async fn preview(
        &self,
        owner: &Owner,
        id: &SessionId,
        statements: &[Statement],
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<Vec<QueryResult>> {
        let inner = &self.inner;
        let slot = inner.find(owner, id)?;
        let mut live = inner.lock(&slot).await?;
        let _active = ActiveGuard::new(&slot);
        slot.accepts_statements()?;
        let tls = inner.shared.tls.clone();
        let step = inner.shared.step;
        let conn = live.conn()?;
        for statement in statements {
            slot.remember(&statement.footprint);
        }
        let saved = within(step, async {
            tokio::join!(
                conn.client.batch_execute("SAVEPOINT coldquery_preview"),
                conn.client.query_typed(REPIN_GRAMMAR, &[])
            )
        })
        .await;
        let Some((saved, repinned)) = saved else {
            return Err(inner.lose(&slot, &mut live, "starting the preview"));
        };
        if let Err(e) = saved.and(repinned.map(drop)) {
            slot.set_tx(if errors::is_fatal(&e) { Tx::Lost } else { Tx::Aborted });
            return Err(errors::map(&e, "starting the preview"));
        }
        let mut results = Vec::with_capacity(statements.len());
        let mut failure = None;
        for (index, statement) in statements.iter().enumerate() {
            // Drained, never cancelled, when truncated: a cancel would abort the transaction.
            match run::fetch(conn, &tls, statement, limits, cancel, Protocol::Prepared { prelude: None }).await {
                Ok(fetched) => {
                    results.push(run::render(&conn.client, fetched, step, run::Rendering::InTransaction).await)
                }
                Err(err) => {
                    failure = Some(err.with_operation_index(index));
                    break;
                }
            }
        }
        slot.state.lock().expect("state lock").statements += 1;
        if conn.client.is_closed() || conn.is_poisoned() {
            slot.set_tx(Tx::Lost);
            inner.remove(&slot);
            live.release();
            let err = failure.unwrap_or_else(|| Error::new(ErrorKind::Unavailable, "the connection was lost"));
            return Err(err.with_hint(
                "the session's connection was lost, so its transaction was rolled back and the session is closed",
            ));
        }
        let undo = "ROLLBACK TO SAVEPOINT coldquery_preview; RELEASE SAVEPOINT coldquery_preview";
        match within(step, conn.client.batch_execute(undo)).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                slot.set_tx(if errors::is_fatal(&e) { Tx::Lost } else { Tx::Aborted });
                return Err(failure.unwrap_or_else(|| errors::map(&e, "undoing the preview")));
            }
            None => return Err(inner.lose(&slot, &mut live, "undoing the preview")),
        }
        drop(_active);
        failure.map_or(Ok(results), Err)
    }

    async fn end(&self, owner: &Owner, id: &SessionId, end: SessionEnd) -> Result<SessionInfo> {
        let inner = &self.inner;
        let slot = inner.find(owner, id)?;
        let mut live = inner.lock(&slot).await?;
        inner.remove(&slot);
        let info = slot.info(inner.ttl);
        match (end, slot.tx()) {
            (SessionEnd::Rollback, _) => {
                inner.end_quietly(&slot, &mut live).await;
                Ok(info)
            }
            (SessionEnd::Commit, Tx::Lost) => Err(Error::new(
                ErrorKind::CommitFailed,
                "nothing was committed: the session's connection had been lost, so PostgreSQL rolled the transaction back",
            )
            .with_hint("begin a new session and redo the work")),
            (SessionEnd::Commit, Tx::Aborted) => {
                inner.end_quietly(&slot, &mut live).await;
                Err(commit_failed_after_error())
            }
            (SessionEnd::Commit, Tx::Open) => commit(&slot, &mut live, inner.shared.step).await.map(|()| info),
        }
    }

    async fn savepoint(&self, owner: &Owner, id: &SessionId, op: SavepointOp, name: &Ident) -> Result<SessionInfo> {
        if name.as_str().starts_with(RESERVED_SAVEPOINT_PREFIX) {
            return Err(Error::invalid(format!(
                "savepoint names starting with '{RESERVED_SAVEPOINT_PREFIX}' are reserved for ColdQuery's own savepoints"
            ))
            .with_hint("choose another name"));
        }
        let inner = &self.inner;
        let slot = inner.find(owner, id)?;
        let mut live = inner.lock(&slot).await?;
        let _active = ActiveGuard::new(&slot);
        match (slot.tx(), op) {
            (Tx::Lost, _) => return Err(lost_error()),
            (Tx::Aborted, SavepointOp::Create | SavepointOp::Release) => return Err(aborted_error()),
            _ => {}
        }
        // Releasing or rolling back to an unknown savepoint would abort the transaction in
        // PostgreSQL; refuse it before sending anything.
        let position = slot.state.lock().expect("state lock").savepoints.iter().rposition(|s| s == name);
        if op != SavepointOp::Create && position.is_none() {
            return Err(unknown_savepoint(name));
        }
        let sql = match op {
            SavepointOp::Create => SqlBuilder::new("SAVEPOINT ").ident(name).build(),
            SavepointOp::Release => SqlBuilder::new("RELEASE SAVEPOINT ").ident(name).build(),
            SavepointOp::RollbackTo => SqlBuilder::new("ROLLBACK TO SAVEPOINT ").ident(name).build(),
        };
        let conn = live.conn()?;
        match within(inner.shared.step, conn.client.query_typed(sql.text(), &[])).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                slot.set_tx(if errors::is_fatal(&e) { Tx::Lost } else { Tx::Aborted });
                return Err(errors::map(&e, "changing a savepoint"));
            }
            None => return Err(inner.lose(&slot, &mut live, "changing a savepoint")),
        }
        {
            let mut state = slot.state.lock().expect("state lock");
            match (op, position) {
                (SavepointOp::Create, _) => state.savepoints.push(name.clone()),
                (SavepointOp::Release, Some(at)) => state.savepoints.truncate(at),
                (SavepointOp::RollbackTo, Some(at)) => {
                    state.savepoints.truncate(at + 1);
                    state.tx = Tx::Open;
                }
                _ => {}
            }
        }
        drop(_active);
        Ok(slot.info(inner.ttl))
    }

    async fn status(&self, owner: &Owner, id: &SessionId) -> Result<SessionInfo> {
        Ok(self.inner.find(owner, id)?.info(self.inner.ttl))
    }

    async fn list(&self, owner: &Owner) -> Vec<SessionInfo> {
        let slots = self.inner.slots.lock().expect("slots lock");
        let mut infos: Vec<SessionInfo> = slots
            .values()
            .filter(|s| s.owner == *owner && !s.expired(self.inner.ttl))
            .map(|s| s.info(self.inner.ttl))
            .collect();
        infos.sort_by(|a, b| b.age_seconds.cmp(&a.age_seconds).then(a.id.as_str().cmp(b.id.as_str())));
        infos
    }

    async fn close_owner(&self, owner: &Owner) -> usize {
        self.close_where(|slot| slot.owner == *owner).await
    }

    async fn close_all(&self) -> usize {
        self.close_where(|_| true).await
    }

    fn backend_owner(&self, pid: i32) -> Option<Owner> {
        let slots = self.inner.slots.lock().expect("slots lock");
        slots.values().find(|slot| slot.backend_pid == Some(pid)).map(|slot| slot.owner.clone())
    }

    fn counts(&self) -> (usize, usize) {
        (self.inner.slots.lock().expect("slots lock").len(), self.inner.max)
    }
}

impl PgSessions {
    async fn close_where(&self, pick: impl Fn(&Slot) -> bool) -> usize {
        let inner = &self.inner;
        let picked: Vec<Arc<Slot>> = {
            let mut slots = inner.slots.lock().expect("slots lock");
            let ids: Vec<String> = slots.iter().filter(|(_, s)| pick(s)).map(|(id, _)| id.clone()).collect();
            ids.iter().filter_map(|id| slots.remove(id)).collect()
        };
        for slot in &picked {
            match tokio::time::timeout(Duration::from_secs(5), slot.live.lock()).await {
                Ok(mut live) => inner.end_quietly(slot, &mut live).await,
                // A call still running: its connection is poisoned when the slot is dropped,
                // and closing it makes PostgreSQL roll the transaction back.
                Err(_) => tracing::warn!(session = %slot.id, "session busy at close; its connection will be discarded"),
            }
        }
        picked.len()
    }
}

/// COMMIT, reported honestly.
///
/// Each step is bounded by `step`: a probe that gets no answer means nothing was committed (the
/// COMMIT was never sent, and closing the connection rolls back); a COMMIT that gets no answer
/// may have committed or not (`COMMIT_OUTCOME_UNKNOWN`).
async fn commit(slot: &Slot, live: &mut Live, step: Duration) -> Result<()> {
    let conn = live.conn()?;
    // A failed transaction answers COMMIT with ROLLBACK and no error; a probe finds out first.
    let probed = match within(step, conn.client.query_typed("SELECT 1", &[])).await {
        Some(probed) => probed.map(drop),
        None => {
            conn.poison();
            live.release();
            slot.set_tx(Tx::Lost);
            return Err(no_answer(step, "checking the transaction before COMMIT")
                .with_kind(ErrorKind::CommitFailed)
                .with_message(format!(
                    "nothing was committed: PostgreSQL did not answer within {} ms before COMMIT, so COMMIT was \
                     never sent; the connection was closed, which rolls the transaction back",
                    step.as_millis()
                ))
                .with_hint("the session is closed; begin a new session and redo the work once PostgreSQL answers"));
        }
    };
    if let Err(e) = probed {
        let lost = errors::is_fatal(&e);
        rollback_and_reset(conn, lost, &slot.footprint(), step).await;
        live.release();
        slot.set_tx(if lost { Tx::Lost } else { Tx::Aborted });
        let message = if lost {
            "nothing was committed: the session's connection had been lost before COMMIT, so PostgreSQL rolled the transaction back"
        } else {
            "nothing was committed: the transaction had failed and was rolled back"
        };
        return Err(errors::map(&e, "checking the transaction before COMMIT")
            .with_kind(ErrorKind::CommitFailed)
            .with_message(message)
            .with_hint("the session is closed; begin a new session and redo the work"));
    }
    // COMMIT and the reset in one message: behind a transaction pooler the reset must clean the
    // server connection the session ran on (see `end_and_reset`).
    match end_and_reset(conn, "COMMIT", &slot.footprint(), step).await {
        Ended::Done => {
            live.release();
            Ok(())
        }
        Ended::NoAnswer => {
            live.release();
            Err(Error::new(
                ErrorKind::CommitOutcomeUnknown,
                format!(
                    "PostgreSQL did not acknowledge COMMIT within {} ms; whether the transaction committed is unknown",
                    step.as_millis()
                ),
            )
            .with_hint("check the data before redoing the work (the session is closed)"))
        }
        Ended::Failed(e) if errors::is_fatal(&e) => {
            live.release();
            Err(Error::new(
                ErrorKind::CommitOutcomeUnknown,
                "the connection was lost during COMMIT; whether the transaction committed is unknown",
            )
            .with_hint("check the data before redoing the work"))
        }
        Ended::Failed(e) => {
            // A COMMIT that fails (deferred constraint, serialization failure) rolls back.
            live.release();
            let db = errors::map(&e, "committing");
            let message =
                format!("nothing was committed: PostgreSQL rolled the transaction back at COMMIT: {}", db.message());
            Err(db.with_kind(ErrorKind::CommitFailed).with_message(message))
        }
    }
}
