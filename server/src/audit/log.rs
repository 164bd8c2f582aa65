//! The decision log's one writer: requests hand it their decisions and wait; it takes every
//! decision waiting (up to [`MAX_BATCH`]; under load, those arriving within `GROUP_WINDOW`),
//! numbers, chains and signs them, appends them in one transaction and answers each request.
//! One commit per batch keeps the log's CPU off the risk routes under load. Another replica
//! appending first (PostgreSQL) shows as a sequence-number conflict: the writer reads the head
//! again and retries.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use volcast_store::{DecisionStore as _, NewDecision, Store, StoreError};

use super::{BODY_VERSION, BodyHead, GENESIS, Pending, Signer};
use crate::auth::sha256_hex;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Most decisions in one transaction.
pub const MAX_BATCH: usize = 512;

/// Decisions waiting for the writer before requests wait for room.
const CHANNEL: usize = 1024;

/// Attempts of a batch whose sequence numbers another writer took. Between attempts the writer
/// backs off for a random while, growing with each loss (see [`backoff`]), so two busy replicas
/// stop taking turns to lose.
const ATTEMPTS: usize = 20;

/// The wait after the `attempt`-th lost race: random, up to 1 ms doubled per loss, at most 64 ms.
fn backoff(attempt: usize) -> std::time::Duration {
    let cap_us = 1000u64 << attempt.min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    // The clock's low bits as the jitter: enough to break the lockstep of two writers.
    std::time::Duration::from_micros(nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) % cap_us)
}

/// How long the writer waits for more decisions once busy (group commit).
const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// Input windows (and artifacts) remembered as stored, so a repeated window is not sent again.
const REMEMBERED: usize = 4096;

tokio::task_local! {
    /// Set once a request's decisions are in the writer's hands (see [`watch_hand_over`]).
    static HANDED_OVER: Arc<std::sync::atomic::AtomicBool>;
}

/// Whether a request's decisions were handed to the writer.
#[derive(Debug, Clone, Default)]
pub struct HandedOver(Arc<std::sync::atomic::AtomicBool>);

impl HandedOver {
    /// Whether [`DecisionLog::append`] has handed decisions of the watched future to the writer,
    /// which then commits them whatever becomes of the future.
    #[must_use]
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// `fut`, watched: the flag turns true once it hands decisions to the writer. The request
/// timeout reads it so as never to withhold an answer that is being logged.
pub fn watch_hand_over<F: Future>(fut: F) -> (HandedOver, impl Future<Output = F::Output>) {
    let flag = HandedOver::default();
    let scoped = HANDED_OVER.scope(Arc::clone(&flag.0), fut);
    (flag, scoped)
}

struct Job {
    pending: Vec<Pending>,
    reply: oneshot::Sender<Result<(), String>>,
}

/// Handle on the writer; cloned into the state.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    tx: mpsc::Sender<JobBox>,
    signer: Arc<Signer>,
}

/// A job, boxed for `Debug`.
struct JobBox(Job);

impl std::fmt::Debug for JobBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("decisions", &self.0.pending.len())
            .finish()
    }
}

impl DecisionLog {
    /// Records the signing key in the store and starts the writer.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be written or read.
    pub async fn start(store: Store, signer: Signer, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let now = crate::follower::wall_clock_ms();
        store
            .record_signing_key(&signer.key_id, &signer.public_hex, now)
            .await?;
        // The first record of a key id is kept: one that names another key under this id was
        // altered, and every record this server signs would then fail against it.
        if let Some((_, stored, _)) = store
            .signing_keys()
            .await?
            .into_iter()
            .find(|(id, _, _)| *id == signer.key_id)
            && stored != signer.public_hex
        {
            return Err(StoreError::Conflict(format!(
                "the store's signing_keys row for this server's key {} holds another public key \
                 ({stored}): the table was altered; the decision log will not start on it",
                signer.key_id
            )));
        }
        let head = checked_head(store.head().await?).map_err(StoreError::Conflict)?;
        let signer = Arc::new(signer);
        let (tx, rx) = mpsc::channel(CHANNEL);
        tokio::spawn(writer(store, Arc::clone(&signer), rx, head, metrics));
        Ok(Self { tx, signer })
    }

    /// The signing key.
    #[must_use]
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Appends `pending` (in order) and returns once they are committed.
    ///
    /// # Errors
    /// [`ApiError::DecisionLog`] when they could not be appended: the answer must not be served.
    pub async fn append(&self, pending: Vec<Pending>) -> Result<(), ApiError> {
        if pending.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(JobBox(Job { pending, reply }))
            .await
            .map_err(|_| ApiError::DecisionLog("the writer stopped".into()))?;
        // From here the writer commits them whatever becomes of this request.
        let _ = HANDED_OVER.try_with(|h| h.store(true, std::sync::atomic::Ordering::Release));
        answer
            .await
            .map_err(|_| ApiError::DecisionLog("the writer stopped".into()))?
            .map_err(ApiError::DecisionLog)
    }
}

/// The chain's end as the writer knows it.
struct Head {
    seq: i64,
    hash: String,
}

impl Head {
    fn of(h: Option<(i64, String)>) -> Self {
        h.map_or_else(
            || Self {
                seq: 0,
                hash: GENESIS.to_owned(),
            },
            |(seq, hash)| Self { seq, hash },
        )
    }
}

/// Numbers, chains and signs `jobs`' decisions after `head`.
fn chain(
    jobs: &[Job],
    head: &Head,
    signer: &Signer,
    stored_inputs: &HashSet<String>,
    stored_models: &HashSet<String>,
) -> (Vec<NewDecision>, Head) {
    let (mut seq, mut prev) = (head.seq, head.hash.clone());
    let mut out = Vec::new();
    let mut inputs_now = HashSet::new();
    let mut models_now = HashSet::new();
    for p in jobs.iter().flat_map(|j| &j.pending) {
        seq += 1;
        let text = BodyHead {
            version: BODY_VERSION,
            seq,
            id: &p.id,
            prev_hash: &prev,
            at: p.at,
            time: volcast_core::time::format_ms(p.at),
            caller: p.caller.as_deref(),
            route: p.route,
            asset: &p.asset,
            defaults: &p.defaults,
            candles: &p.inputs.window,
            model: &p.model,
            signer: &signer.key_id,
        }
        .text(&p.request, &p.answer);
        let hash = sha256_hex(text.as_bytes());
        let sha = &p.inputs.window.hash;
        let inputs = (!stored_inputs.contains(sha) && inputs_now.insert(sha.clone()))
            .then(|| (sha.clone(), p.inputs.json()));
        let model =
            (!stored_models.contains(&p.model.id) && models_now.insert(p.model.id.clone())).then(|| {
                // Absolute, so a replay finds it whatever the working directory then.
                let dir = std::fs::canonicalize(&p.model_dir)
                    .map_or_else(|_| p.model_dir.clone(), |d| d.display().to_string());
                (p.model.id.clone(), p.model.hash.clone(), dir)
            });
        out.push(NewDecision {
            row: volcast_store::DecisionRow {
                seq,
                id: p.id.clone(),
                at: p.at,
                asset: p.asset.clone(),
                signature: signer.sign(&hash),
                hash: hash.clone(),
                body: text,
                signer: signer.key_id.clone(),
            },
            inputs,
            model,
        });
        prev = hash;
    }
    (out, Head { seq, hash: prev })
}

async fn writer(
    store: Store,
    signer: Arc<Signer>,
    mut rx: mpsc::Receiver<JobBox>,
    head: Option<(i64, String)>,
    metrics: Arc<Metrics>,
) {
    let mut head = Head::of(head);
    let mut stored_inputs = HashSet::new();
    let mut stored_models = HashSet::new();
    let mut last_commit = std::time::Instant::now();
    // Set when a batch failed and reading the head again failed too: the store is down.
    let mut down: Option<String> = None;
    loop {
        if let Some(error) = down.take() {
            match until_back(&store, &mut rx, &error, &metrics).await {
                Some(h) => head = Head::of(h),
                None => return,
            }
        }
        let Some(JobBox(first)) = rx.recv().await else {
            return;
        };
        let mut jobs = vec![first];
        let mut n = jobs[0].pending.len();
        // Under load (the last commit was recent) wait a little for more decisions: a commit
        // (with its fsync) costs about as much CPU as 2 to 3 appends, so grouping them frees
        // the risk routes' CPU. A lone decision on an idle service is appended at once.
        let busy = last_commit.elapsed() < GROUP_WINDOW;
        let deadline = tokio::time::Instant::now() + GROUP_WINDOW;
        while n < MAX_BATCH {
            let next = if busy {
                tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten()
            } else {
                rx.try_recv().ok()
            };
            match next {
                Some(JobBox(j)) => {
                    n += j.pending.len();
                    jobs.push(j);
                }
                None => break,
            }
        }
        let mut outcome = Err("not attempted".to_owned());
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let (records, next) = chain(&jobs, &head, &signer, &stored_inputs, &stored_models);
            // Committed or not is unknown when the append hung, or failed after it may have
            // reached the store (its connection lost mid-way): settled by `resolve`, the
            // requests kept waiting.
            let why = match tokio::time::timeout(APPEND_DEADLINE, store.append_decisions(&records)).await {
                Ok(Ok(())) => {
                    remember(&records, &mut stored_inputs, &mut stored_models);
                    head = next;
                    outcome = Ok(());
                    break;
                }
                Ok(Err(StoreError::Conflict(m))) => {
                    tracing::info!("another writer extended the decision log ({m}); reading its head again");
                    outcome = Err(format!("{ATTEMPTS} attempts lost to other writers: {m}"));
                    match read_head(&store).await {
                        Ok(h) => head = Head::of(h),
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                    continue;
                }
                Ok(Err(e)) if e.outcome_unknown() => format!("failed mid-way ({e})"),
                Ok(Err(e)) => {
                    outcome = Err(e.to_string());
                    break;
                }
                Err(_) => format!("hung for {APPEND_DEADLINE:?}"),
            };
            tracing::error!(
                "an append to the decision log {why}; sending it again to learn whether it was committed"
            );
            outcome = if resolve(&store, &mut rx, &records, &metrics).await {
                remember(&records, &mut stored_inputs, &mut stored_models);
                head = next;
                Ok(())
            } else {
                Err(format!(
                    "the append {why} and its sequence numbers went to another writer"
                ))
            };
            break;
        }
        match &outcome {
            Ok(()) => {
                metrics.decisions_logged.inc_by(n as u64);
            }
            Err(e) => {
                metrics.decision_log_failures.inc_by(n as u64);
                tracing::error!(
                    decisions = n,
                    "cannot append to the decision log, answers withheld: {e}"
                );
            }
        }
        // The replies first: a store that is failing must not hold the answers past their wait.
        for j in jobs {
            let _ = j.reply.send(outcome.clone());
        }
        if let Err(e) = outcome {
            // The head may have moved under us: read it again before the next batch. If that
            // fails too, the store is down: answer at once until it is back.
            match read_head(&store).await {
                Ok(h) => head = Head::of(h),
                Err(again) => {
                    tracing::error!(
                        "the decision log's store is unavailable ({again}): answers are withheld at once until it is back"
                    );
                    down = Some(e);
                }
            }
        }
        last_commit = std::time::Instant::now();
    }
}

/// Notes the windows and artifacts `records` stored, so they are not sent again.
fn remember(
    records: &[NewDecision],
    stored_inputs: &mut HashSet<String>,
    stored_models: &mut HashSet<String>,
) {
    if stored_inputs.len() > REMEMBERED {
        stored_inputs.clear();
    }
    if stored_models.len() > REMEMBERED {
        stored_models.clear();
    }
    for r in records {
        if let Some((sha, _)) = &r.inputs {
            stored_inputs.insert(sha.clone());
        }
        if let Some((id, _, _)) = &r.model {
            stored_models.insert(id.clone());
        }
    }
}

/// The longest the writer waits for one append before giving it up as hung (a connection whose
/// peer is gone, with no reset, never answers). Longer than any lock a healthy store should hold
/// the log behind (the blocked-store test holds one for 33 s).
const APPEND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// An append given up as hung, or failed mid-way (its connection lost), may have been
/// committed, or may still be (a statement the server
/// has, behind a lock, runs when the lock goes). Resolved by sending the same records again:
/// their sequence numbers and ids are unique, so the batch is committed at most once, and the
/// second send waits behind whatever still holds the first. It comes back stored (committed
/// now), or refused as a conflict: committed if its last record is stored, not committed if its
/// first sequence number went to another writer's record; a conflict that is neither (a
/// deadlock) and any failure are tried again every [`PROBE_EVERY`], each send bounded by
/// [`APPEND_DEADLINE`]. Meanwhile the batch's requests wait and every new request is answered at
/// once (503, nothing written). Whether the batch is committed.
async fn resolve(
    store: &Store,
    rx: &mut mpsc::Receiver<JobBox>,
    records: &[NewDecision],
    metrics: &Metrics,
) -> bool {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return true;
    };
    let _down = Down::mark(metrics);
    let probe = async {
        loop {
            match tokio::time::timeout(APPEND_DEADLINE, store.append_decisions(records)).await {
                Ok(Ok(())) => return true,
                Ok(Err(StoreError::Conflict(_))) => {
                    // The head first: a first send committing between the two reads is then
                    // found by the look-up, never taken for another writer's record.
                    let head = read_head(store).await;
                    let found = crate::within(HEAD_READ_TIMEOUT, store.decision(&last.row.id)).await;
                    match (found, head) {
                        (Ok(Some(_)), _) => return true,
                        (Ok(None), Ok(Some((seq, _)))) if seq >= first.row.seq => return false,
                        _ => tracing::warn!(
                            "the hung append is not resolved yet: its numbers are neither its own nor taken"
                        ),
                    }
                }
                Ok(Err(e)) => tracing::warn!("cannot resolve the hung append yet: {e}"),
                Err(_) => {
                    tracing::warn!(
                        "cannot resolve the hung append yet: no answer within {APPEND_DEADLINE:?}"
                    );
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    };
    tokio::pin!(probe);
    let mut open = true;
    loop {
        tokio::select! {
            committed = &mut probe => return committed,
            job = rx.recv(), if open => match job {
                Some(JobBox(job)) => refuse(job, "the store hangs: an earlier append is unresolved", metrics),
                None => open = false,
            },
        }
    }
}

/// Answers `job` at once with `error`: its decisions withheld, nothing written, and counted.
fn refuse(job: Job, error: &str, metrics: &Metrics) {
    metrics.decision_log_failures.inc_by(job.pending.len() as u64);
    let _ = job.reply.send(Err(error.to_owned()));
}

/// `volcast_decision_log_down` at 1 for as long as it lives (the writer answering every request
/// at once), back to 0 when it is dropped.
struct Down<'a>(&'a Metrics);

impl<'a> Down<'a> {
    fn mark(metrics: &'a Metrics) -> Self {
        metrics.decision_log_down.set(1);
        Self(metrics)
    }
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.decision_log_down.set(0);
    }
}

/// How long the writer waits between reads of the head while the store is down.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest a read of the head may take: a read is safe to give up, unlike an append, whose
/// outcome would then be unknown (a network partition can hang a query on a connection already
/// open, past the pool's wait for one).
const HEAD_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn read_head(store: &Store) -> Result<Option<(i64, String)>, String> {
    checked_head(crate::within(HEAD_READ_TIMEOUT, store.head()).await?)
}

/// The head read, refused where no sequence number is left after it.
fn checked_head(head: Option<(i64, String)>) -> Result<Option<(i64, String)>, String> {
    match head {
        // A head past half the range, which no log reaches one decision at a time (a row
        // written by hand at the top of it): the next sequence numbers wrapped to negative ones,
        // each append then conflicting with the last.
        Some((seq, _)) if seq > i64::MAX / 2 => Err(format!(
            "the log's head is at seq {seq}: no sequence number is left after it (a row written \
             by hand?); nothing more can be logged"
        )),
        head => Ok(head),
    }
}

/// While the store is down (`error`, the last append's failure): answers every request at once
/// with the failure (its answers withheld, nothing written), instead of holding each for a try of
/// its own, and reads the head every [`PROBE_EVERY`] until a read succeeds. The head then, or
/// `None` once every handle on the log is gone.
async fn until_back(
    store: &Store,
    rx: &mut mpsc::Receiver<JobBox>,
    error: &str,
    metrics: &Metrics,
) -> Option<Option<(i64, String)>> {
    let error = format!("the store is unavailable: {error}");
    let _down = Down::mark(metrics);
    let probe = async {
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            match read_head(store).await {
                Ok(h) => return h,
                Err(e) => tracing::warn!("the decision log's store is still unavailable: {e}"),
            }
        }
    };
    tokio::pin!(probe);
    loop {
        tokio::select! {
            h = &mut probe => {
                tracing::info!("the decision log's store is back");
                return Some(h);
            }
            job = rx.recv() => refuse(job?.0, &error, metrics),
        }
    }
}
