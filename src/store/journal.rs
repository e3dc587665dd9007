//! The journal: every write of the call path, in order, through one task that commits them in
//! batches (group commit).
//!
//! A call writes about ten small rows (the call, its answer, the push attempt, the verification
//! events, the verdict, the end). One commit each made the database the limit at a few hundred
//! calls per second: on a disk every commit waits for a flush, and several connections writing
//! at once wait for SQLite's lock in its busy handler's sleeps. Here a call task hands its
//! writes to the journal and goes on ([`Store::record`]); the journal takes everything queued,
//! runs it in one transaction on its connection, commits once, and answers whoever waits
//! ([`Store::commit`], [`Store::begin_push`], [`Store::flush`]).
//!
//! - Order: one queue per writer and a call's writes always on the same writer, so they land
//!   in the order they were made (the row before its updates), and a push check sees the
//!   attempts queued before it. On PostgreSQL a push check commits on its own; on SQLite it
//!   takes its turn in the batch (see [`Writer::next_batch`]).
//! - A statement that fails for a reason of its own (a constraint) would spoil the batch
//!   (PostgreSQL aborts the transaction): the batch is rolled back and each write runs alone,
//!   so only the bad one fails.
//! - The database unreachable or busy: whoever waits gets the error at once (a push check
//!   cannot wait; the call goes on unverified), the records are kept and written when the
//!   database answers again, retried with backoff. The queue holds [`QUEUE`] writes; beyond
//!   that a record is dropped, counted in [`JournalStats::lost`] and logged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::attempts::{PushCheck, begin_push_on, end_push_on};
use super::audit::{
    SecurityEvent, VerificationEvent, insert_security_event, insert_verification_event,
};
use super::calls::{
    NewCall, TransferOutcome, finish_call_on, insert_call_on, mark_answered_on, record_verdict_on,
    set_transfer_mode_on,
};
use super::evidence::insert_evidence;
use super::{Backend, PushDecision, Store, StoreError};
use crate::config::Transfer;
use crate::identity::{Method, Verdict};

/// Writes the queue holds while the database is slow or away (about 10,000 calls' worth).
pub const QUEUE: usize = 100_000;
/// The most writes in one transaction (a push check waits for its whole batch).
const MAX_BATCH: usize = 256;
/// The first wait before retrying a batch the database refused for a transient reason.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Writer tasks (each with its own connection) on PostgreSQL: a write there is a network round
/// trip, so one connection's latency, not the server, limits the rate. A call's writes always
/// go to the same writer (by its id), so they stay in order; push checks on different writers
/// are kept atomic by their advisory locks, as between instances. SQLite has one writer.
const POSTGRES_WRITERS: usize = 4;
/// Lost or failed records are logged at most this often (with the count since).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A row the call path writes without waiting ([`Store::record`]).
#[derive(Debug, Clone)]
pub enum Record {
    /// A new call ([`Store::insert_call`]).
    Call(NewCall),
    /// idgate answered the call.
    Answered {
        /// idgate's call id.
        id: Uuid,
        /// When.
        at: SystemTime,
    },
    /// The verdict (status, reason, method: never the person).
    Verdict {
        /// idgate's call id.
        id: Uuid,
        /// The verdict.
        verdict: Verdict,
        /// When it was reached.
        at: SystemTime,
    },
    /// The hand-off mode changed (a refused REFER fell back to B2BUA).
    TransferMode {
        /// idgate's call id.
        id: Uuid,
        /// The mode used now.
        mode: Transfer,
    },
    /// How the hand-off ended, and when the call ended.
    Ended {
        /// idgate's call id.
        id: Uuid,
        /// The outcome.
        outcome: TransferOutcome,
        /// When.
        at: SystemTime,
    },
    /// How an allowed push ended ([`Store::end_push`]).
    PushEnded {
        /// The attempt [`Store::begin_push`] returned.
        attempt: Uuid,
        /// `completed`, `declined`, `not-in-call`, `timeout`, ...
        outcome: String,
        /// When.
        at: SystemTime,
    },
    /// One step of a verification.
    VerificationEvent(VerificationEvent),
    /// A spoofing attempt or fraud signal.
    SecurityEvent(SecurityEvent),
    /// A provider's evidence of a completed order (JSON).
    Evidence {
        /// idgate's call id.
        call_id: Uuid,
        /// The method.
        method: Method,
        /// The provider's completion data.
        data: String,
        /// When.
        at: SystemTime,
    },
}

impl Record {
    /// The id that picks the writer: the call's, so a call's writes stay in order.
    fn key(&self) -> Option<Uuid> {
        match self {
            Record::Call(call) => Some(call.id),
            Record::Answered { id, .. }
            | Record::Verdict { id, .. }
            | Record::TransferMode { id, .. }
            | Record::Ended { id, .. } => Some(*id),
            // Written only after its push check has committed: any writer keeps the order.
            Record::PushEnded { attempt, .. } => Some(*attempt),
            Record::VerificationEvent(event) => Some(event.call_id),
            Record::SecurityEvent(event) => event.call_id,
            Record::Evidence { call_id, .. } => Some(*call_id),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Record::Call(_) => "insert_call",
            Record::Answered { .. } => "mark_answered",
            Record::Verdict { .. } => "record_verdict",
            Record::TransferMode { .. } => "set_transfer_mode",
            Record::Ended { .. } => "finish_call",
            Record::PushEnded { .. } => "end_push",
            Record::VerificationEvent(_) => "record_verification_event",
            Record::SecurityEvent(_) => "record_security_event",
            Record::Evidence { .. } => "record_evidence",
        }
    }
}

/// What the journal has done since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Writes committed.
    pub written: AtomicU64,
    /// Writes the database refused for a reason of their own (logged).
    pub failed: AtomicU64,
    /// Records dropped: the queue was full (the database away for long) or the journal stopped.
    pub lost: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Writes waiting now.
    pub queued: AtomicU64,
}

enum Work {
    Record(Record),
    Push(PushCheck),
    Flush,
}

enum Done {
    Written,
    Push(PushDecision),
}

struct Job {
    work: Work,
    /// Who waits for the result; `None` for [`Store::record`].
    reply: Option<oneshot::Sender<Result<Done, StoreError>>>,
}

/// The sending side, held by every [`Store`] clone.
#[derive(Debug, Clone)]
pub(super) struct Journal {
    /// One queue per writer task.
    writers: Arc<[mpsc::Sender<Job>]>,
    stats: Arc<JournalStats>,
    /// When a lost record was last logged (ms since `start`), so a flood logs once in a while.
    last_loss_log: Arc<AtomicU64>,
    start: Instant,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Journal {
    /// Starts the writer task on `pool` (needs a tokio runtime). The task ends when every
    /// [`Journal`] clone is dropped and the queue is empty.
    pub(super) fn start(pool: AnyPool, backend: Backend) -> Journal {
        let writers = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_WRITERS,
        };
        Self::with_capacity(pool, backend, writers, QUEUE)
    }

    fn with_capacity(pool: AnyPool, backend: Backend, writers: usize, capacity: usize) -> Journal {
        let stats = Arc::new(JournalStats::default());
        let per_writer = capacity.div_ceil(writers.max(1));
        let writers = (0..writers.max(1))
            .map(|_| {
                let (jobs, queue) = mpsc::channel(per_writer);
                tokio::spawn(run(pool.clone(), backend, queue, Arc::clone(&stats)));
                jobs
            })
            .collect();
        Journal {
            writers,
            stats,
            last_loss_log: Arc::new(AtomicU64::new(0)),
            start: Instant::now(),
        }
    }

    /// The writer for `key` (a call id); writer 0 for writes of no call.
    fn writer(&self, key: Option<Uuid>) -> &mpsc::Sender<Job> {
        let n = self.writers.len() as u128;
        let i = key.map_or(0, |id| (id.as_u128() % n) as usize);
        &self.writers[i]
    }

    fn record(&self, record: Record) {
        let name = record.name();
        let writer = self.writer(record.key());
        let job = Job {
            work: Work::Record(record),
            reply: None,
        };
        // Counted before the send: the writer may take it (and count it out) at once.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = writer.try_send(job) {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            let lost = self.stats.lost.fetch_add(1, Ordering::Relaxed) + 1;
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "the write queue is full",
                mpsc::error::TrySendError::Closed(_) => "the database writer has stopped",
            };
            self.log_loss(name, why, lost);
        }
    }

    /// Logs a lost record, at most once per [`LOG_EVERY`].
    fn log_loss(&self, op: &str, why: &str, lost: u64) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_loss_log.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last_loss_log
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                op,
                lost_total = lost,
                "{why}: a database record was dropped"
            );
        }
    }

    async fn submit(
        &self,
        writer: &mpsc::Sender<Job>,
        work: Work,
        op: &'static str,
    ) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            reply: Some(reply),
        };
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if writer.send(job).await.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::WriterStopped { op });
        }
        answer.await.map_err(|_| StoreError::WriterStopped { op })?
    }

    pub(super) async fn commit(&self, record: Record) -> Result<(), StoreError> {
        let op = record.name();
        let writer = self.writer(record.key());
        self.submit(writer, Work::Record(record), op)
            .await
            .map(|_| ())
    }

    pub(super) async fn begin_push(&self, push: PushCheck) -> Result<PushDecision, StoreError> {
        let writer = self.writer(Some(push.call_id()));
        match self.submit(writer, Work::Push(push), "begin_push").await? {
            Done::Push(decision) => Ok(decision),
            // The writer answers a push check with a decision or an error, nothing else.
            Done::Written => Err(StoreError::WriterStopped { op: "begin_push" }),
        }
    }

    /// Every writer's queue up to now (one after the other: the others go on writing
    /// meanwhile, so this takes about as long as the longest queue).
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        for writer in self.writers.iter() {
            self.submit(writer, Work::Flush, "flush").await?;
        }
        Ok(())
    }
}

impl Store {
    /// Queues a write of the call path and returns at once. It is committed within
    /// milliseconds, in order with this store's other writes; a failure is logged and counted
    /// (the call goes on: a database problem never stops a call).
    pub fn record(&self, record: Record) {
        self.journal.record(record);
    }

    /// Queues a write and waits for its commit (the CLI, the API, tests).
    pub async fn commit(&self, record: Record) -> Result<(), StoreError> {
        self.journal.commit(record).await
    }

    /// Waits until every write queued before this call is committed (or has failed). Reads
    /// that must see the call path's writes (`/v1/calls`, exports) call it first.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.journal.flush().await
    }

    /// The journal's counters.
    pub fn journal_stats(&self) -> Arc<JournalStats> {
        Arc::clone(&self.journal.stats)
    }
}

async fn run(
    pool: AnyPool,
    backend: Backend,
    mut queue: mpsc::Receiver<Job>,
    stats: Arc<JournalStats>,
) {
    let mut writer = Writer {
        pool,
        backend,
        stats,
        failures: FailureLog::default(),
        pending: VecDeque::with_capacity(MAX_BATCH),
        backoff: FIRST_BACKOFF,
    };
    let mut received = Vec::with_capacity(MAX_BATCH);
    loop {
        if writer.pending.is_empty() {
            if queue.recv_many(&mut received, MAX_BATCH).await == 0 {
                return;
            }
        } else {
            // Top up without waiting, so a batch takes what has queued meanwhile.
            let room = MAX_BATCH.saturating_sub(writer.pending.len());
            while received.len() < room {
                match queue.try_recv() {
                    Ok(job) => received.push(job),
                    Err(_) => break,
                }
            }
        }
        writer.pending.extend(received.drain(..));
        let mut batch = writer.next_batch();
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = writer.write(&mut batch).await {
            // The database is away: tell every waiter now, queued ones included (a push
            // check cannot wait out an outage), keep the records, try again later.
            while let Ok(job) = queue.try_recv() {
                writer.pending.push_back(job);
            }
            writer.hold(batch, &e);
            tokio::time::sleep(writer.backoff).await;
            writer.backoff = (writer.backoff * 2).min(MAX_BACKOFF);
        } else {
            writer.backoff = FIRST_BACKOFF;
        }
    }
}

/// One writer task's state: what it has taken from its queue and not finished yet.
struct Writer {
    pool: AnyPool,
    backend: Backend,
    stats: Arc<JournalStats>,
    failures: FailureLog,
    /// Jobs in order, oldest first (records kept through an outage stay at the front).
    pending: VecDeque<Job>,
    backoff: Duration,
}

impl Writer {
    /// The next transaction's jobs, from the front of `pending`.
    ///
    /// On PostgreSQL: the records up to the next push check, or that push check alone. A push
    /// check is a transaction of its own there: its advisory locks are then the only ones
    /// held, taken in one order (caller, then person), so two writers or instances never wait
    /// on each other in a cycle, as they could if one transaction held several pushes' locks.
    ///
    /// On SQLite the one writer holds the file's write lock for the whole transaction
    /// (`BEGIN IMMEDIATE`), so push checks take their turn in the batch like records: each
    /// sees the writes before it, and a busy second sees one commit per batch instead of one
    /// per push (a transaction per push made the push check, which a call waits for, queue
    /// behind hundreds of small commits under load).
    ///
    /// A push check whose caller has stopped waiting (its call timed out or ended) is not run:
    /// it would record an attempt nobody ends.
    fn next_batch(&mut self) -> Vec<Job> {
        let mut batch = Vec::new();
        let pushes_alone = self.backend == Backend::Postgres;
        while let Some(job) = self.pending.pop_front() {
            if let Work::Push(_) = job.work {
                if job.reply.as_ref().is_none_or(|r| r.is_closed()) {
                    self.done(1);
                    continue;
                }
                if !pushes_alone {
                    batch.push(job);
                    if batch.len() == MAX_BATCH {
                        break;
                    }
                    continue;
                }
                if batch.is_empty() {
                    batch.push(job);
                } else {
                    self.pending.push_front(job);
                }
                break;
            }
            batch.push(job);
            if batch.len() == MAX_BATCH {
                break;
            }
        }
        batch
    }

    /// Writes one batch: in one transaction, or each job alone if a statement failed.
    /// `Err`: the database is away (transient); nothing was written and nobody told.
    async fn write(&mut self, batch: &mut Vec<Job>) -> Result<(), StoreError> {
        let (pool, backend) = (&self.pool, self.backend);
        match in_one_transaction(pool, backend, batch).await {
            Ok(results) => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.done(batch.len());
                for (job, result) in batch.drain(..).zip(results) {
                    deliver(job, result, &self.stats, &mut self.failures);
                }
                Ok(())
            }
            Err(e) if e.is_transient() => Err(e),
            Err(_) => {
                // One write spoiled the batch: each alone, so only that one fails.
                self.done(batch.len());
                for job in batch.drain(..) {
                    let result = alone(pool, backend, &job.work).await;
                    if result.is_ok() {
                        self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    }
                    deliver(job, result, &self.stats, &mut self.failures);
                }
                Ok(())
            }
        }
    }

    /// After a failed attempt: answers every waiter in `batch` and `pending` with `e`, drops
    /// the push checks and flushes, keeps the records in order (the batch's first), and drops
    /// the oldest records beyond [`QUEUE`] (counted as lost).
    fn hold(&mut self, batch: Vec<Job>, e: &StoreError) {
        let mut kept = VecDeque::with_capacity(batch.len() + self.pending.len());
        let pending = std::mem::take(&mut self.pending);
        for mut job in batch.into_iter().chain(pending) {
            if let Some(reply) = job.reply.take() {
                // The waiter may have gone (its call ended): nothing to tell then.
                let _ = reply.send(Err(StoreError::Unavailable {
                    op: job_name(&job.work),
                    detail: e.to_string(),
                }));
            }
            if matches!(job.work, Work::Record(_)) {
                kept.push_back(job);
            } else {
                self.done(1);
            }
        }
        let waiting = kept.len();
        while kept.len() > QUEUE {
            kept.pop_front();
            self.done(1);
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
        }
        self.pending = kept;
        self.failures.unavailable(e, waiting);
    }

    /// `n` jobs left the journal (written, failed, dropped).
    fn done(&self, n: usize) {
        self.stats.queued.fetch_sub(n as u64, Ordering::Relaxed);
    }
}

/// Runs every job in one transaction. `Ok` holds each job's own result (a "no such call" is a
/// result, not a reason to roll back); `Err` means nothing was committed.
async fn in_one_transaction(
    pool: &AnyPool,
    backend: Backend,
    batch: &[Job],
) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    let mut tx = begin(pool, backend, "journal").await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        if matches!(job.work, Work::Push(_)) && job.reply.as_ref().is_none_or(|r| r.is_closed()) {
            // Its call stopped waiting while the database was busy: see `next_batch`.
            results.push(Err(StoreError::Unavailable {
                op: "begin_push",
                detail: "the call stopped waiting".to_owned(),
            }));
            continue;
        }
        let result = apply(&mut tx, backend, &job.work).await;
        if let Err(e) = &result
            && spoils_transaction(e)
        {
            let _ = tx.rollback().await;
            return Err(clone_error(e));
        }
        results.push(result);
    }
    tx.commit().await.map_err(StoreError::query("journal"))?;
    Ok(results)
}

/// One job in its own transaction.
async fn alone(pool: &AnyPool, backend: Backend, work: &Work) -> Result<Done, StoreError> {
    let mut tx = begin(pool, backend, job_name(work)).await?;
    let result = apply(&mut tx, backend, work).await;
    if result.is_ok() {
        tx.commit()
            .await
            .map_err(StoreError::query(job_name(work)))?;
    } else {
        let _ = tx.rollback().await;
    }
    result
}

async fn begin(
    pool: &AnyPool,
    backend: Backend,
    op: &'static str,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
    // SQLite: take the write lock first (BEGIN IMMEDIATE), so a push check's reads and its
    // insert are one atomic step even against another process writing the file.
    match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }
    .map_err(StoreError::query(op))
}

async fn apply(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    work: &Work,
) -> Result<Done, StoreError> {
    let record = match work {
        Work::Flush => return Ok(Done::Written),
        Work::Push(push) => return begin_push_on(conn, backend, push).await.map(Done::Push),
        Work::Record(record) => record,
    };
    match record {
        Record::Call(call) => insert_call_on(conn, call).await,
        Record::Answered { id, at } => mark_answered_on(conn, *id, *at).await,
        Record::Verdict { id, verdict, at } => record_verdict_on(conn, *id, verdict, *at).await,
        Record::TransferMode { id, mode } => set_transfer_mode_on(conn, *id, *mode).await,
        Record::Ended { id, outcome, at } => finish_call_on(conn, *id, *outcome, *at).await,
        Record::PushEnded {
            attempt,
            outcome,
            at,
        } => end_push_on(conn, *attempt, outcome, *at).await,
        Record::VerificationEvent(event) => insert_verification_event(conn, event).await,
        Record::SecurityEvent(event) => insert_security_event(conn, event).await,
        Record::Evidence {
            call_id,
            method,
            data,
            at,
        } => insert_evidence(conn, *call_id, *method, data, *at).await,
    }
    .map(|()| Done::Written)
}

/// Whether a failed statement leaves the transaction unusable (PostgreSQL aborts it on any
/// error; SQLite on some). "No such row" results are not statement errors.
fn spoils_transaction(e: &StoreError) -> bool {
    matches!(e, StoreError::Query { .. } | StoreError::Duplicate { .. })
}

/// The batch's error for the retry decision (sqlx errors are not `Clone`: keep what matters).
fn clone_error(e: &StoreError) -> StoreError {
    if e.is_transient() {
        StoreError::Unavailable {
            op: "journal",
            detail: e.to_string(),
        }
    } else {
        StoreError::BatchSpoiled
    }
}

fn job_name(work: &Work) -> &'static str {
    match work {
        Work::Record(record) => record.name(),
        Work::Push(_) => "begin_push",
        Work::Flush => "flush",
    }
}

fn deliver(job: Job, result: Result<Done, StoreError>, stats: &JournalStats, log: &mut FailureLog) {
    match &result {
        Ok(_) => {
            stats.written.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) if job.reply.is_none() => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            log.failed(e);
        }
        Err(_) => {}
    }
    if let Some(reply) = job.reply {
        // The waiter may have gone (its call ended): nothing to tell then.
        let _ = reply.send(result);
    }
}

/// Logs failed records and outages without flooding the log: the first at once, then at most
/// one line per [`LOG_EVERY`] with the count since.
#[derive(Default)]
struct FailureLog {
    last: Option<Instant>,
    since_last: u64,
}

impl FailureLog {
    fn due(&mut self) -> Option<u64> {
        self.since_last += 1;
        if self.last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since_last))
    }

    fn failed(&mut self, e: &StoreError) {
        if let Some(count) = self.due() {
            tracing::warn!(error = %e, count, "a database record was not written");
        }
    }

    fn unavailable(&mut self, e: &StoreError, waiting: usize) {
        if let Some(count) = self.due() {
            tracing::warn!(
                error = %e,
                waiting,
                count,
                "the database is unavailable: records are kept and written when it answers"
            );
        }
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
