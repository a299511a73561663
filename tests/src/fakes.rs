//! In-memory fakes of the core traits: [`FakeExecutor`] ([`Executor`]) and [`FakeSessions`]
//! ([`SessionStore`]). For the write policy use [`coldquery_core::DefaultDeny`] itself.
//!
//! The fakes are state-based, in the style of bb8's hand-written fake managers rather than a
//! mocking framework: they record what they are asked, answer from a queue of results and
//! errors the test pushes, and otherwise behave like the real thing in the ways callers can
//! observe (owner binding, the session limit, aborted transactions, savepoints). Both are
//! cheap handles over shared state: clone one, give the clone to the code under test, inspect
//! the original.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use coldquery_core::{
    Access, CancellationToken, Error, ErrorKind, Executor, Ident, Limits, OnError, Origin, Owner, Param, PoolStatus,
    QueryResult, Result, RowSink, SavepointOp, SessionEnd, SessionId, SessionInfo, SessionStore, Statement, Streamed,
    TxOptions, TxState, commit_failed_after_error, session_not_found, unknown_savepoint,
};

/// What the next call answers.
#[derive(Debug, Clone)]
enum Outcome {
    Result(QueryResult),
    Error(Error),
    /// Waits until the call's cancellation token fires, then fails with `CANCELLED`.
    Hang,
}

fn pop_outcome(queue: &mut VecDeque<Outcome>) -> Outcome {
    queue.pop_front().unwrap_or_else(|| Outcome::Result(QueryResult::default()))
}

/// Resolves an outcome outside any lock.
async fn resolve(outcome: Outcome, cancel: &CancellationToken) -> Result<QueryResult> {
    match outcome {
        Outcome::Result(result) => Ok(result),
        Outcome::Error(error) => Err(error),
        Outcome::Hang => {
            cancel.cancelled().await;
            Err(cancelled())
        }
    }
}

fn cancelled() -> Error {
    Error::new(ErrorKind::Cancelled, "the call was cancelled; the statement was cancelled on the server")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a recorded statement was asked to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// [`Executor::run`] with this access.
    Run(Access),
    /// Statement `index` (0-based) of an [`Executor::batch`] begun with `options`.
    Batch {
        /// Position in the batch.
        index: usize,
        /// The batch's transaction options.
        options: TxOptions,
    },
    /// Statement `index` (0-based) of an [`Executor::preview`] (always rolled back).
    Preview {
        /// Position in the preview.
        index: usize,
    },
    /// [`Executor::stream`] (a read whose rows go to a sink; its limits record the timeout).
    Stream,
}

/// One statement the [`FakeExecutor`] was asked to run.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// `run` (with its access) or `batch` (with the statement's index).
    pub mode: CallMode,
    /// The SQL text.
    pub sql: String,
    /// Where the SQL came from.
    pub origin: Origin,
    /// The bind parameters.
    pub params: Vec<Param>,
    /// The limits passed with the call.
    pub limits: Limits,
}

impl RecordedCall {
    /// The access of a `run` call (a stream is a read); `None` for a batch statement.
    pub fn access(&self) -> Option<Access> {
        match self.mode {
            CallMode::Run(access) => Some(access),
            CallMode::Stream => Some(Access::ReadOnly),
            CallMode::Batch { .. } | CallMode::Preview { .. } => None,
        }
    }
}

#[derive(Debug)]
struct ExecState {
    calls: Vec<RecordedCall>,
    outcomes: VecDeque<Outcome>,
    pool: PoolStatus,
}

/// A fake [`Executor`]: records every statement and answers from a queue.
///
/// Each statement (a `run`, or each statement of a `batch`) takes the next queued outcome; with
/// the queue empty it returns an empty [`QueryResult`] (no fields, no rows). A call whose
/// cancellation token is already cancelled returns `CANCELLED` without being recorded.
#[derive(Debug, Clone)]
pub struct FakeExecutor {
    state: Arc<Mutex<ExecState>>,
}

impl Default for FakeExecutor {
    fn default() -> FakeExecutor {
        FakeExecutor::new()
    }
}

impl FakeExecutor {
    /// The pool status reported until [`FakeExecutor::set_pool_status`] changes it.
    pub const POOL_STATUS: PoolStatus = PoolStatus { size: 10, connections: 2, idle: 2, in_use: 0, waiting: 0 };

    /// An executor with an empty queue.
    pub fn new() -> FakeExecutor {
        FakeExecutor {
            state: Arc::new(Mutex::new(ExecState {
                calls: Vec::new(),
                outcomes: VecDeque::new(),
                pool: FakeExecutor::POOL_STATUS,
            })),
        }
    }

    /// Queues a result for the next statement.
    pub fn push_result(&self, result: QueryResult) {
        lock(&self.state).outcomes.push_back(Outcome::Result(result));
    }

    /// Queues an error for the next statement.
    pub fn push_error(&self, error: Error) {
        lock(&self.state).outcomes.push_back(Outcome::Error(error));
    }

    /// Makes the next statement wait until its call is cancelled, then fail with `CANCELLED`.
    pub fn push_hang(&self) {
        lock(&self.state).outcomes.push_back(Outcome::Hang);
    }

    /// Queued outcomes not yet used.
    pub fn pending(&self) -> usize {
        lock(&self.state).outcomes.len()
    }

    /// Every statement asked so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.state).calls.clone()
    }

    /// The SQL text of every statement asked so far, in order.
    pub fn sql(&self) -> Vec<String> {
        lock(&self.state).calls.iter().map(|call| call.sql.clone()).collect()
    }

    /// Returns and forgets the statements recorded so far.
    pub fn take_calls(&self) -> Vec<RecordedCall> {
        std::mem::take(&mut lock(&self.state).calls)
    }

    /// Changes what [`Executor::pool_status`] reports.
    pub fn set_pool_status(&self, status: PoolStatus) {
        lock(&self.state).pool = status;
    }

    /// Records one statement and takes its outcome.
    fn record(&self, mode: CallMode, statement: &Statement, limits: &Limits) -> Outcome {
        let mut state = lock(&self.state);
        state.calls.push(RecordedCall {
            mode,
            sql: statement.sql.text().to_owned(),
            origin: statement.sql.origin(),
            params: statement.params.clone(),
            limits: *limits,
        });
        pop_outcome(&mut state.outcomes)
    }
}

#[async_trait]
impl Executor for FakeExecutor {
    async fn run(
        &self,
        access: Access,
        statement: &Statement,
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<QueryResult> {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let outcome = self.record(CallMode::Run(access), statement, limits);
        resolve(outcome, cancel).await
    }

    async fn batch(
        &self,
        statements: &[Statement],
        options: &TxOptions,
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<Vec<QueryResult>> {
        let mut results = Vec::with_capacity(statements.len());
        for (index, statement) in statements.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(cancelled().with_operation_index(index));
            }
            let mode = CallMode::Batch { index, options: *options };
            let outcome = self.record(mode, statement, limits);
            match resolve(outcome, cancel).await {
                Ok(result) => results.push(result),
                Err(error) if error.operation_index().is_some() => return Err(error),
                Err(error) => return Err(error.with_operation_index(index)),
            }
        }
        Ok(results)
    }

    async fn preview(
        &self,
        statements: &[Statement],
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<Vec<QueryResult>> {
        let mut results = Vec::with_capacity(statements.len());
        for (index, statement) in statements.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(cancelled().with_operation_index(index));
            }
            let outcome = self.record(CallMode::Preview { index }, statement, limits);
            match resolve(outcome, cancel).await {
                Ok(result) => results.push(result),
                Err(error) if error.operation_index().is_some() => return Err(error),
                Err(error) => return Err(error.with_operation_index(index)),
            }
        }
        Ok(results)
    }

    /// Takes the next queued outcome like [`Executor::run`] and hands its rows to `sink`.
    async fn stream(
        &self,
        statement: &Statement,
        timeout: std::time::Duration,
        sink: &mut dyn RowSink,
        cancel: &CancellationToken,
    ) -> Result<Streamed> {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        let limits = Limits { max_rows: usize::MAX, max_bytes: usize::MAX, timeout, lock_timeout: None };
        let outcome = self.record(CallMode::Stream, statement, &limits);
        let result = resolve(outcome, cancel).await?;
        sink.columns(&result.fields)?;
        let rows = result.rows.len() as u64;
        for row in result.rows {
            sink.row(row)?;
        }
        Ok(Streamed { fields: result.fields, rows, duration_ms: result.duration_ms })
    }

    fn pool_status(&self) -> PoolStatus {
        lock(&self.state).pool
    }
}

/// Something that happened to a [`FakeSessions`] session, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// `begin` with these options.
    Begin(TxOptions),
    /// A statement sent in the session (including ones that failed).
    Run {
        /// The SQL text.
        sql: String,
        /// The bind parameters.
        params: Vec<Param>,
    },
    /// A savepoint operation on the named savepoint.
    Savepoint(SavepointOp, String),
    /// `end` asked for COMMIT or ROLLBACK.
    End(SessionEnd),
    /// Rolled back by `close_owner` or `close_all`.
    ForcedRollback,
}

#[derive(Debug)]
struct FakeSession {
    id: SessionId,
    owner: Owner,
    options: TxOptions,
    state: TxState,
    open: bool,
    statements: u64,
    savepoints: Vec<String>,
    events: Vec<SessionEvent>,
}

impl FakeSession {
    fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.id.clone(),
            transaction_state: self.state,
            expires_in_seconds: FakeSessions::TTL_SECONDS,
            age_seconds: 0,
            idle_seconds: 0,
            options: self.options,
            statements: self.statements,
        }
    }

    /// The refusal of an aborted session, if it is aborted.
    fn aborted_error(&self) -> Option<Error> {
        (self.state == TxState::Aborted).then(|| {
            Error::new(ErrorKind::SessionAborted, "the session's transaction failed; nothing more runs in it")
                .with_hint("call pg_tx with action 'rollback' (or 'rollback_to' a savepoint) and retry")
        })
    }

    /// A failed statement aborts the transaction unless each statement runs under a savepoint.
    fn fail(&mut self) {
        if self.options.on_error == OnError::Abort {
            self.state = TxState::Aborted;
        }
    }
}

#[derive(Debug)]
struct SessionsState {
    max: usize,
    next_id: u64,
    sessions: Vec<FakeSession>,
    outcomes: VecDeque<Outcome>,
    begin_errors: VecDeque<Error>,
    end_errors: VecDeque<Error>,
}

impl SessionsState {
    /// The open session `id` of `owner`.
    fn find(&mut self, owner: &Owner, id: &SessionId) -> Option<&mut FakeSession> {
        self.sessions.iter_mut().find(|session| session.open && &session.id == id && &session.owner == owner)
    }

    fn open_count(&self) -> usize {
        self.sessions.iter().filter(|session| session.open).count()
    }

    fn any(&self, id: &str) -> Option<&FakeSession> {
        self.sessions.iter().find(|session| session.id.as_str() == id)
    }

    fn force_rollback(&mut self, filter: impl Fn(&FakeSession) -> bool) -> usize {
        let mut closed = 0;
        for session in self.sessions.iter_mut().filter(|session| session.open && filter(session)) {
            session.open = false;
            session.events.push(SessionEvent::ForcedRollback);
            closed += 1;
        }
        closed
    }
}

/// A fake [`SessionStore`] with deterministic ids (`sess-1`, `sess-2`...), owner binding, a
/// session limit and no TTL (`expires_in_seconds` is always [`FakeSessions::TTL_SECONDS`]).
///
/// Statements run in a session take the next queued outcome (an empty [`QueryResult`] when
/// the queue is empty). A failed statement marks the session aborted unless it was begun with
/// `on_error: rollback_statement`; an aborted session refuses statements (`SESSION_ABORTED`,
/// nothing recorded) until `rollback_to` a savepoint, and its COMMIT fails with
/// `COMMIT_FAILED` (the session is closed either way). Another owner's session, or a closed
/// one, is `session_not_found()`.
#[derive(Debug, Clone)]
pub struct FakeSessions {
    state: Arc<Mutex<SessionsState>>,
}

impl FakeSessions {
    /// What every [`SessionInfo`] reports as `expires_in_seconds`.
    pub const TTL_SECONDS: u64 = 300;

    /// Session `sess-N` runs in the fake server process `BACKEND_PID_BASE + N`.
    pub const BACKEND_PID_BASE: i32 = 90_000;

    /// A store allowing at most `max_sessions` open sessions.
    pub fn new(max_sessions: usize) -> FakeSessions {
        FakeSessions {
            state: Arc::new(Mutex::new(SessionsState {
                max: max_sessions,
                next_id: 1,
                sessions: Vec::new(),
                outcomes: VecDeque::new(),
                begin_errors: VecDeque::new(),
                end_errors: VecDeque::new(),
            })),
        }
    }

    /// Queues a result for the next statement run in any session.
    pub fn push_result(&self, result: QueryResult) {
        lock(&self.state).outcomes.push_back(Outcome::Result(result));
    }

    /// Queues an error for the next statement run in any session.
    pub fn push_error(&self, error: Error) {
        lock(&self.state).outcomes.push_back(Outcome::Error(error));
    }

    /// Makes the next statement wait until its call is cancelled, then fail with `CANCELLED`
    /// (which aborts the session like any failure).
    pub fn push_hang(&self) {
        lock(&self.state).outcomes.push_back(Outcome::Hang);
    }

    /// Makes the next `begin` fail with `error` (e.g. `UNAVAILABLE`).
    pub fn fail_next_begin(&self, error: Error) {
        lock(&self.state).begin_errors.push_back(error);
    }

    /// Makes the next `end` fail with `error` after closing the session (e.g.
    /// `COMMIT_OUTCOME_UNKNOWN`).
    pub fn fail_next_end(&self, error: Error) {
        lock(&self.state).end_errors.push_back(error);
    }

    /// The SQL of every statement sent in session `id` (open or closed), in order.
    pub fn statements(&self, id: &str) -> Vec<String> {
        self.events(id)
            .into_iter()
            .filter_map(|event| match event {
                SessionEvent::Run { sql, .. } => Some(sql),
                _ => None,
            })
            .collect()
    }

    /// Everything that happened to session `id` (open or closed), in order; empty if unknown.
    pub fn events(&self, id: &str) -> Vec<SessionEvent> {
        lock(&self.state).any(id).map(|session| session.events.clone()).unwrap_or_default()
    }

    /// The savepoint operations of session `id`, in order.
    pub fn savepoints(&self, id: &str) -> Vec<(SavepointOp, String)> {
        self.events(id)
            .into_iter()
            .filter_map(|event| match event {
                SessionEvent::Savepoint(op, name) => Some((op, name)),
                _ => None,
            })
            .collect()
    }

    /// The transaction state of open session `id`; `None` when closed or unknown.
    pub fn state_of(&self, id: &str) -> Option<TxState> {
        lock(&self.state).any(id).filter(|session| session.open).map(|session| session.state)
    }

    /// True while session `id` is open.
    pub fn is_open(&self, id: &str) -> bool {
        self.state_of(id).is_some()
    }
}

#[async_trait]
impl SessionStore for FakeSessions {
    async fn begin(&self, owner: &Owner, options: &TxOptions) -> Result<SessionInfo> {
        let mut state = lock(&self.state);
        if let Some(error) = state.begin_errors.pop_front() {
            return Err(error);
        }
        if state.open_count() >= state.max {
            return Err(Error::new(
                ErrorKind::SessionLimit,
                format!("{} sessions are open, the most this server allows", state.max),
            )
            .with_hint("commit or roll back a session you no longer need, then begin again"));
        }
        let id = SessionId::new(format!("sess-{}", state.next_id));
        state.next_id += 1;
        let session = FakeSession {
            id,
            owner: owner.clone(),
            options: *options,
            state: TxState::Idle,
            open: true,
            statements: 0,
            savepoints: Vec::new(),
            events: vec![SessionEvent::Begin(*options)],
        };
        let info = session.info();
        state.sessions.push(session);
        Ok(info)
    }

    async fn run(
        &self,
        owner: &Owner,
        id: &SessionId,
        statement: &Statement,
        _limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<(QueryResult, SessionInfo)> {
        let outcome = {
            let mut state = lock(&self.state);
            let session = state.find(owner, id).ok_or_else(session_not_found)?;
            if let Some(error) = session.aborted_error() {
                return Err(error);
            }
            if cancel.is_cancelled() {
                return Err(cancelled());
            }
            session
                .events
                .push(SessionEvent::Run { sql: statement.sql.text().to_owned(), params: statement.params.clone() });
            session.statements += 1;
            pop_outcome(&mut state.outcomes)
        };
        let result = resolve(outcome, cancel).await;
        let mut state = lock(&self.state);
        // The session may have been closed meanwhile (close_owner); then it is gone.
        match (result, state.find(owner, id)) {
            (Ok(result), Some(session)) => Ok((result, session.info())),
            (Ok(_), None) => Err(session_not_found()),
            (Err(error), Some(session)) => {
                session.fail();
                Err(error)
            }
            (Err(error), None) => Err(error),
        }
    }

    async fn end(&self, owner: &Owner, id: &SessionId, end: SessionEnd) -> Result<SessionInfo> {
        let mut state = lock(&self.state);
        let injected = state.end_errors.pop_front();
        let session = state.find(owner, id).ok_or_else(session_not_found)?;
        session.open = false;
        session.events.push(SessionEvent::End(end));
        if let Some(error) = injected {
            return Err(error);
        }
        if end == SessionEnd::Commit && session.state == TxState::Aborted {
            return Err(commit_failed_after_error());
        }
        Ok(session.info())
    }

    async fn savepoint(&self, owner: &Owner, id: &SessionId, op: SavepointOp, name: &Ident) -> Result<SessionInfo> {
        let mut state = lock(&self.state);
        let session = state.find(owner, id).ok_or_else(session_not_found)?;
        if op != SavepointOp::RollbackTo
            && let Some(error) = session.aborted_error()
        {
            return Err(error);
        }
        let position = session.savepoints.iter().rposition(|saved| saved == name.as_str());
        if op != SavepointOp::Create && position.is_none() {
            return Err(unknown_savepoint(name));
        }
        session.events.push(SessionEvent::Savepoint(op, name.as_str().to_owned()));
        match (op, position) {
            (SavepointOp::Create, _) => session.savepoints.push(name.as_str().to_owned()),
            (SavepointOp::Release, Some(at)) => session.savepoints.truncate(at),
            (SavepointOp::RollbackTo, Some(at)) => {
                session.savepoints.truncate(at + 1);
                session.state = TxState::Idle;
            }
            // Refused above, before anything was recorded.
            (SavepointOp::Release | SavepointOp::RollbackTo, None) => {}
        }
        Ok(session.info())
    }

    /// Recorded as its parts: the savepoint `coldquery_preview`, each statement, the rollback
    /// to the savepoint and its release.
    async fn preview(
        &self,
        owner: &Owner,
        id: &SessionId,
        statements: &[Statement],
        limits: &Limits,
        cancel: &CancellationToken,
    ) -> Result<Vec<QueryResult>> {
        let name = Ident::new("coldquery_preview").expect("a valid name");
        self.savepoint(owner, id, SavepointOp::Create, &name).await?;
        let mut results = Vec::with_capacity(statements.len());
        let mut failure = None;
        for (index, statement) in statements.iter().enumerate() {
            match self.run(owner, id, statement, limits, cancel).await {
                Ok((result, _)) => results.push(result),
                Err(error) => {
                    failure = Some(error.with_operation_index(index));
                    break;
                }
            }
        }
        self.savepoint(owner, id, SavepointOp::RollbackTo, &name).await?;
        self.savepoint(owner, id, SavepointOp::Release, &name).await?;
        failure.map_or(Ok(results), Err)
    }

    async fn status(&self, owner: &Owner, id: &SessionId) -> Result<SessionInfo> {
        lock(&self.state).find(owner, id).map(|session| session.info()).ok_or_else(session_not_found)
    }

    async fn list(&self, owner: &Owner) -> Vec<SessionInfo> {
        lock(&self.state)
            .sessions
            .iter()
            .filter(|session| session.open && &session.owner == owner)
            .map(FakeSession::info)
            .collect()
    }

    async fn close_owner(&self, owner: &Owner) -> usize {
        lock(&self.state).force_rollback(|session| &session.owner == owner)
    }

    async fn close_all(&self) -> usize {
        lock(&self.state).force_rollback(|_| true)
    }

    fn counts(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.open_count(), state.max)
    }

    /// Session `sess-N` runs in the fake backend `FakeSessions::BACKEND_PID_BASE + N`.
    fn backend_owner(&self, pid: i32) -> Option<Owner> {
        let n = pid.checked_sub(FakeSessions::BACKEND_PID_BASE)?;
        let state = lock(&self.state);
        state.any(&format!("sess-{n}")).filter(|session| session.open).map(|session| session.owner.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coldquery_core::{CallerSql, Field, Sql};
    use serde_json::json;

    fn stmt(text: &'static str) -> Statement {
        Statement::new(Sql::catalog(text))
    }

    fn one_row() -> QueryResult {
        QueryResult {
            fields: vec![Field { name: "n".into(), type_name: "int4".into() }],
            rows: vec![vec![json!(1)]],
            ..QueryResult::default()
        }
    }

    fn db_error() -> Error {
        Error::new(ErrorKind::DatabaseError, "division by zero").with_sqlstate("22012")
    }

    #[tokio::test]
    async fn executor_records_calls_and_answers_from_its_queue() {
        let exec = FakeExecutor::new();
        let handle: Arc<dyn Executor> = Arc::new(exec.clone());
        let limits = Limits::default();
        let cancel = CancellationToken::new();
        exec.push_result(one_row());
        exec.push_error(db_error());

        let caller = Statement::with_params(Sql::caller(CallerSql::new("SELECT $1").unwrap()), vec![Param::Int(7)]);
        let first = handle.run(Access::ReadOnly, &caller, &limits, &cancel).await.unwrap();
        assert_eq!(first, one_row());
        let second = handle.run(Access::Autocommit, &stmt("SELECT 1/0"), &limits, &cancel).await;
        assert_eq!(second.unwrap_err(), db_error());
        // Queue empty: an empty result.
        let third = handle.run(Access::ReadOnly, &stmt("SELECT 2"), &limits, &cancel).await.unwrap();
        assert_eq!(third, QueryResult::default());
        assert_eq!(exec.pending(), 0);

        let calls = exec.calls();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].access(), Some(Access::ReadOnly));
        assert_eq!(calls[0].sql, "SELECT $1");
        assert_eq!(calls[0].origin, Origin::Caller);
        assert_eq!(calls[0].params, vec![Param::Int(7)]);
        assert_eq!(calls[0].limits, limits);
        assert_eq!(calls[1].mode, CallMode::Run(Access::Autocommit));
        assert_eq!(exec.sql(), ["SELECT $1", "SELECT 1/0", "SELECT 2"]);
        assert_eq!(exec.take_calls().len(), 3);
        assert!(exec.calls().is_empty());
        assert_eq!(handle.pool_status(), FakeExecutor::POOL_STATUS);
        let busy = PoolStatus { size: 1, connections: 1, idle: 0, in_use: 1, waiting: 0 };
        exec.set_pool_status(busy);
        assert_eq!(handle.pool_status(), busy);
    }

    #[tokio::test]
    async fn executor_batch_takes_one_outcome_per_statement_and_stops_at_a_failure() {
        let exec = FakeExecutor::new();
        let limits = Limits::default();
        let cancel = CancellationToken::new();
        let options = TxOptions::default();
        let statements = [stmt("INSERT 1"), stmt("INSERT 2"), stmt("INSERT 3")];

        exec.push_result(one_row());
        let results = exec.batch(&statements, &options, &limits, &cancel).await.unwrap();
        assert_eq!(results, vec![one_row(), QueryResult::default(), QueryResult::default()]);

        exec.take_calls();
        exec.push_result(one_row());
        exec.push_error(db_error());
        let error = exec.batch(&statements, &options, &limits, &cancel).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::DatabaseError);
        assert_eq!(error.operation_index(), Some(1));
        let calls = exec.calls();
        assert_eq!(calls.len(), 2, "the statement after the failure is not sent");
        assert_eq!(calls[1].mode, CallMode::Batch { index: 1, options });
        assert_eq!(calls[1].access(), None);
    }

    #[tokio::test]
    async fn executor_hang_waits_for_cancellation() {
        let exec = FakeExecutor::new();
        let cancel = CancellationToken::new();
        exec.push_hang();
        let canceller = cancel.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            canceller.cancel();
        });
        let error =
            exec.run(Access::ReadOnly, &stmt("SELECT pg_sleep(60)"), &Limits::default(), &cancel).await.unwrap_err();
        task.await.unwrap();
        assert_eq!(error.kind(), ErrorKind::Cancelled);
        // Already cancelled: refused before anything is recorded.
        let error = exec.run(Access::ReadOnly, &stmt("SELECT 1"), &Limits::default(), &cancel).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Cancelled);
        assert_eq!(exec.sql(), ["SELECT pg_sleep(60)"]);
    }

    #[tokio::test]
    async fn sessions_are_bound_to_their_owner() {
        let store = FakeSessions::new(10);
        let alice = Owner::new("alice");
        let bob = Owner::new("bob");
        let limits = Limits::default();
        let cancel = CancellationToken::new();
        let a = store.begin(&alice, &TxOptions::default()).await.unwrap();
        let b = store.begin(&bob, &TxOptions::default()).await.unwrap();
        assert_eq!(a.id.as_str(), "sess-1");
        assert_eq!(b.id.as_str(), "sess-2");
        assert_eq!(a.transaction_state, TxState::Idle);
        assert_eq!(a.expires_in_seconds, FakeSessions::TTL_SECONDS);

        let not_found = session_not_found();
        let stolen = store.run(&bob, &a.id, &stmt("DELETE FROM t"), &limits, &cancel).await;
        assert_eq!(stolen.unwrap_err(), not_found);
        assert_eq!(store.status(&bob, &a.id).await.unwrap_err(), not_found);
        assert_eq!(store.end(&bob, &a.id, SessionEnd::Commit).await.unwrap_err(), not_found);
        let name = Ident::new("sp").unwrap();
        let savepoint = store.savepoint(&bob, &a.id, SavepointOp::Create, &name).await;
        assert_eq!(savepoint.unwrap_err(), not_found);
        assert!(store.statements("sess-1").is_empty(), "nothing ran for the wrong owner");
        let bobs: Vec<String> = store.list(&bob).await.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(bobs, ["sess-2"]);
        let unknown = SessionId::new("sess-99");
        assert_eq!(store.status(&alice, &unknown).await.unwrap_err(), not_found);

        let (result, info) = store.run(&alice, &a.id, &stmt("SELECT 1"), &limits, &cancel).await.unwrap();
        assert_eq!(result, QueryResult::default());
        assert_eq!(info.statements, 1);
        assert_eq!(store.end(&alice, &a.id, SessionEnd::Commit).await.unwrap().id, a.id);
        // Closed: gone for its owner too, but its history stays inspectable.
        assert_eq!(store.status(&alice, &a.id).await.unwrap_err(), not_found);
        assert_eq!(store.statements("sess-1"), ["SELECT 1"]);
        assert_eq!(
            store.events("sess-1"),
            vec![
                SessionEvent::Begin(TxOptions::default()),
                SessionEvent::Run { sql: "SELECT 1".into(), params: vec![] },
                SessionEvent::End(SessionEnd::Commit),
            ]
        );
        assert!(!store.is_open("sess-1"));
        assert!(store.is_open("sess-2"));
    }

    #[tokio::test]
    async fn sessions_limit_and_close() {
        let store = FakeSessions::new(2);
        let alice = Owner::new("alice");
        let bob = Owner::new("bob");
        let options = TxOptions::default();
        store.begin(&alice, &options).await.unwrap();
        store.begin(&alice, &options).await.unwrap();
        let error = store.begin(&bob, &options).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::SessionLimit);
        assert_eq!(store.counts(), (2, 2));

        assert_eq!(store.close_owner(&bob).await, 0);
        assert_eq!(store.close_owner(&alice).await, 2);
        assert_eq!(store.counts(), (0, 2));
        assert_eq!(store.events("sess-2").last(), Some(&SessionEvent::ForcedRollback));
        let b = store.begin(&bob, &options).await.unwrap();
        assert_eq!(b.id.as_str(), "sess-3");
        assert_eq!(store.close_all().await, 1);
        assert!(store.list(&bob).await.is_empty());

        store.fail_next_begin(Error::new(ErrorKind::Unavailable, "database unreachable"));
        assert_eq!(store.begin(&bob, &options).await.unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(store.counts(), (0, 2));
    }

    #[tokio::test]
    async fn a_failed_statement_aborts_the_session_and_commit_fails() {
        let store = FakeSessions::new(5);
        let owner = Owner::new("o");
        let limits = Limits::default();
        let cancel = CancellationToken::new();
        let s = store.begin(&owner, &TxOptions::default()).await.unwrap();

        store.push_result(one_row());
        store.push_error(db_error());
        let (result, _) = store.run(&owner, &s.id, &stmt("SELECT 1"), &limits, &cancel).await.unwrap();
        assert_eq!(result, one_row());
        let error = store.run(&owner, &s.id, &stmt("SELECT 1/0"), &limits, &cancel).await.unwrap_err();
        assert_eq!(error, db_error());
        assert_eq!(store.state_of("sess-1"), Some(TxState::Aborted));
        assert_eq!(store.status(&owner, &s.id).await.unwrap().transaction_state, TxState::Aborted);
        let refused = store.run(&owner, &s.id, &stmt("SELECT 2"), &limits, &cancel).await;
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::SessionAborted);
        assert_eq!(store.statements("sess-1"), ["SELECT 1", "SELECT 1/0"]);

        let commit = store.end(&owner, &s.id, SessionEnd::Commit).await.unwrap_err();
        assert_eq!(commit.kind(), ErrorKind::CommitFailed);
        assert!(!store.is_open("sess-1"), "a failed commit still ends the session");

        // Rollback of an aborted session is fine.
        let s = store.begin(&owner, &TxOptions::default()).await.unwrap();
        store.push_error(db_error());
        let _ = store.run(&owner, &s.id, &stmt("BAD"), &limits, &cancel).await;
        let info = store.end(&owner, &s.id, SessionEnd::Rollback).await.unwrap();
        assert_eq!(info.id, s.id);

        // An injected end failure closes the session and is returned as is.
        let s = store.begin(&owner, &TxOptions::default()).await.unwrap();
        store.fail_next_end(Error::new(ErrorKind::CommitOutcomeUnknown, "connection lost during COMMIT"));
        let error = store.end(&owner, &s.id, SessionEnd::Commit).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::CommitOutcomeUnknown);
        assert!(!store.is_open(s.id.as_str()));
    }

    #[tokio::test]
    async fn rollback_statement_sessions_survive_failures() {
        let store = FakeSessions::new(5);
        let owner = Owner::new("o");
        let options = TxOptions { on_error: OnError::RollbackStatement, ..TxOptions::default() };
        let s = store.begin(&owner, &options).await.unwrap();
        assert_eq!(s.options, options);
        store.push_error(db_error());
        let cancel = CancellationToken::new();
        let limits = Limits::default();
        assert!(store.run(&owner, &s.id, &stmt("BAD"), &limits, &cancel).await.is_err());
        assert_eq!(store.state_of("sess-1"), Some(TxState::Idle));
        let (_, info) = store.run(&owner, &s.id, &stmt("GOOD"), &limits, &cancel).await.unwrap();
        assert_eq!(info.statements, 2);
        store.end(&owner, &s.id, SessionEnd::Commit).await.unwrap();
    }

    #[tokio::test]
    async fn savepoints_are_recorded_and_rollback_to_recovers() {
        let store = FakeSessions::new(5);
        let owner = Owner::new("o");
        let limits = Limits::default();
        let cancel = CancellationToken::new();
        let s = store.begin(&owner, &TxOptions::default()).await.unwrap();
        let a = Ident::new("a").unwrap();
        let missing = Ident::new("missing").unwrap();

        store.savepoint(&owner, &s.id, SavepointOp::Create, &a).await.unwrap();
        store.push_error(db_error());
        let _ = store.run(&owner, &s.id, &stmt("BAD"), &limits, &cancel).await;
        let refused = store.savepoint(&owner, &s.id, SavepointOp::Create, &missing).await;
        assert_eq!(refused.unwrap_err().kind(), ErrorKind::SessionAborted);
        let info = store.savepoint(&owner, &s.id, SavepointOp::RollbackTo, &a).await.unwrap();
        assert_eq!(info.transaction_state, TxState::Idle);
        store.savepoint(&owner, &s.id, SavepointOp::Release, &a).await.unwrap();

        // Like the real store: an unknown savepoint is refused before anything is sent, and
        // the transaction is not aborted.
        let error = store.savepoint(&owner, &s.id, SavepointOp::Release, &a).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert_eq!(store.state_of("sess-1"), Some(TxState::Idle));
        assert_eq!(
            store.savepoints("sess-1"),
            vec![
                (SavepointOp::Create, "a".to_owned()),
                (SavepointOp::RollbackTo, "a".to_owned()),
                (SavepointOp::Release, "a".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_hanging_session_statement_is_cancelled_and_aborts() {
        let store = FakeSessions::new(5);
        let owner = Owner::new("o");
        let s = store.begin(&owner, &TxOptions::default()).await.unwrap();
        store.push_hang();
        let cancel = CancellationToken::new();
        let canceller = cancel.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            canceller.cancel();
        });
        let error =
            store.run(&owner, &s.id, &stmt("SELECT pg_sleep(60)"), &Limits::default(), &cancel).await.unwrap_err();
        task.await.unwrap();
        assert_eq!(error.kind(), ErrorKind::Cancelled);
        assert_eq!(store.state_of("sess-1"), Some(TxState::Aborted));
    }
}
