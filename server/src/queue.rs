//! The inference queue: a bounded channel in front of one worker thread that owns the model and
//! batches whatever requests are waiting (up to `max_batch` inputs, waiting at most `max_wait`
//! for more) into one forward pass. A full queue answers 429 at once instead of growing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use volcast_model::inference::{ModelInput, Prediction};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model_info::Predictor;

/// Queue settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Most inputs in one forward pass (a larger single job still runs whole).
    pub max_batch: usize,
    /// Longest wait for more jobs once one has arrived.
    pub max_wait: Duration,
    /// Jobs waiting before 429.
    pub capacity: usize,
    /// `Retry-After` when full.
    pub retry_after: Duration,
}

struct Job {
    inputs: Vec<ModelInput>,
    reply: oneshot::Sender<Result<Vec<Prediction>, String>>,
}

/// What the worker is doing, for `/readyz`: a forward pass that never ends, or a worker that has
/// died, leaves every request timing out while the service still looked ready.
#[derive(Debug)]
struct Pulse {
    /// When the queue started; the origin of `busy_since`.
    started: Instant,
    /// Milliseconds after `started`, plus one, at which the forward pass running began (0: none).
    busy_since: std::sync::atomic::AtomicU64,
    /// Whether the worker thread has ended.
    stopped: std::sync::atomic::AtomicBool,
}

impl Pulse {
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }
}

/// Marks the worker stopped when it ends, by returning or by a panic.
struct StoppedOnDrop(Arc<Pulse>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.stopped.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The worker's state as `/readyz` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Waiting for jobs, or running a forward pass begun this long ago.
    Running(Option<Duration>),
    /// The worker thread has ended: nothing will be answered.
    Stopped,
}

/// Handle to the queue; cheap to clone. The worker stops when every handle is gone.
#[derive(Clone)]
pub struct BatchQueue {
    tx: SyncSender<Job>,
    retry_after: Duration,
    metrics: Arc<Metrics>,
    pulse: Arc<Pulse>,
}

impl std::fmt::Debug for BatchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchQueue").finish_non_exhaustive()
    }
}

impl BatchQueue {
    /// Starts the worker thread with `predictor`.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(
        predictor: Box<dyn Predictor>,
        config: QueueConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = sync_channel(config.capacity.max(1));
        let worker_metrics = Arc::clone(&metrics);
        let pulse = Arc::new(Pulse {
            started: Instant::now(),
            busy_since: std::sync::atomic::AtomicU64::new(0),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        let worker_pulse = Arc::clone(&pulse);
        let handle = std::thread::Builder::new()
            .name("volcast-inference".into())
            .spawn(move || {
                let _stopped = StoppedOnDrop(Arc::clone(&worker_pulse));
                worker(predictor, &rx, config, &worker_metrics, &worker_pulse);
            })?;
        Ok((
            Self {
                tx,
                retry_after: config.retry_after,
                metrics,
                pulse,
            },
            handle,
        ))
    }

    /// What the worker is doing.
    #[must_use]
    pub fn worker_state(&self) -> WorkerState {
        use std::sync::atomic::Ordering::Relaxed;
        if self.pulse.stopped.load(Relaxed) {
            return WorkerState::Stopped;
        }
        let since = self.pulse.busy_since.load(Relaxed);
        WorkerState::Running(
            (since != 0).then(|| Duration::from_millis(self.pulse.now().saturating_sub(since))),
        )
    }

    /// Forecasts `inputs` in the next forward pass.
    ///
    /// # Errors
    /// [`ApiError::QueueFull`] when the queue holds `capacity` jobs; [`ApiError::Internal`] when
    /// the worker is gone or the forward pass failed.
    pub async fn predict(&self, inputs: Vec<ModelInput>) -> Result<Vec<Prediction>, ApiError> {
        let n = inputs.len();
        let (reply, answer) = oneshot::channel();
        // Counted before the send: the worker may take the job and count it out before
        // `try_send` returns, which read -1 for a moment.
        self.metrics.queue_depth.inc();
        match self.tx.try_send(Job { inputs, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.queue_depth.dec();
                self.metrics.queue_rejections.inc();
                return Err(ApiError::QueueFull {
                    retry_after: self.retry_after,
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.dec();
                return Err(ApiError::Internal("the inference worker has stopped".into()));
            }
        };
        let out = answer
            .await
            .map_err(|_| ApiError::Internal("the inference worker dropped a request".into()))?
            .map_err(ApiError::Internal)?;
        if out.len() == n {
            Ok(out)
        } else {
            Err(ApiError::Internal(format!(
                "the model returned {} predictions for {n} inputs",
                out.len()
            )))
        }
    }
}

/// `job`, unless nobody waits for its answer any more (the request timed out or its client left):
/// such a job is dropped unrun, so dead jobs neither cost a forward pass nor hold the queue.
fn live(job: Job, metrics: &Metrics) -> Option<Job> {
    if job.reply.is_closed() {
        metrics.queue_depth.dec();
        None
    } else {
        Some(job)
    }
}

fn worker(
    mut predictor: Box<dyn Predictor>,
    rx: &Receiver<Job>,
    config: QueueConfig,
    metrics: &Metrics,
    pulse: &Pulse,
) {
    use std::sync::atomic::Ordering::Relaxed;
    // A job that would have taken the batch past `max_batch`: the next batch's first.
    let mut held: Option<Job> = None;
    while let Some(first) = held.take().or_else(|| rx.recv().ok()) {
        let Some(first) = live(first, metrics) else {
            continue;
        };
        let mut size = first.inputs.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while size < config.max_batch {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        None
                    } else {
                        rx.recv_timeout(deadline - now).ok()
                    }
                }
            };
            let Some(job) = next else { break };
            let Some(job) = live(job, metrics) else {
                continue;
            };
            if size + job.inputs.len() > config.max_batch {
                held = Some(job);
                break;
            }
            size += job.inputs.len();
            jobs.push(job);
        }
        metrics.queue_depth.dec_by(jobs.len() as i64);
        pulse.busy_since.store(pulse.now(), Relaxed);
        run_batch(predictor.as_mut(), jobs, size, metrics, pulse);
    }
    tracing::info!("inference worker stopped");
}

/// Runs one forward pass and answers its jobs; the pass is noted over in `pulse` before any
/// answer goes out.
fn run_batch(
    predictor: &mut dyn Predictor,
    mut jobs: Vec<Job>,
    size: usize,
    metrics: &Metrics,
    pulse: &Pulse,
) {
    let mut inputs = Vec::with_capacity(size);
    let mut lengths = Vec::with_capacity(jobs.len());
    for job in &mut jobs {
        lengths.push(job.inputs.len());
        inputs.append(&mut job.inputs);
    }
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| predictor.predict(&inputs)));
    pulse.busy_since.store(0, std::sync::atomic::Ordering::Relaxed);
    metrics.batch_size.observe(size as f64);
    metrics.inference_seconds.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(predictions) if predictions.len() == size => {
            let mut rest = predictions.into_iter();
            for (job, n) in jobs.into_iter().zip(lengths) {
                // A dropped receiver (client gone, timeout) is not an error.
                let _ = job.reply.send(Ok(rest.by_ref().take(n).collect()));
            }
        }
        Ok(predictions) => {
            let message = format!(
                "forward pass returned {} rows for {size} inputs",
                predictions.len()
            );
            tracing::error!("{message}");
            for job in jobs {
                let _ = job.reply.send(Err(message.clone()));
            }
        }
        Err(_) => {
            tracing::error!(batch = size, "forward pass panicked");
            for job in jobs {
                let _ = job.reply.send(Err("forward pass panicked".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records the size of every forward pass.
    struct Sizes(Arc<Mutex<Vec<usize>>>);

    impl Predictor for Sizes {
        fn predict(&mut self, inputs: &[ModelInput]) -> Vec<Prediction> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(inputs.len());
            predictions(inputs)
        }
    }

    /// One constant prediction per input.
    fn predictions(inputs: &[ModelInput]) -> Vec<Prediction> {
        inputs
            .iter()
            .map(|_| Prediction {
                variance: vec![1.0],
                quantiles: vec![vec![1.0]],
                shortage_probability: vec![0.5],
            })
            .collect()
    }

    fn input() -> ModelInput {
        ModelInput {
            statics: [0.0; volcast_core::features::N_STATIC],
            sequence: Vec::new(),
        }
    }

    /// A job that would take a batch past `max_batch` waits for the next forward pass: one of 1
    /// and one of 64 with `max_batch` 64 are two passes, never one of 65.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_never_holds_more_than_max_batch_inputs() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let config = QueueConfig {
            max_batch: 64,
            max_wait: Duration::from_millis(300),
            capacity: 8,
            retry_after: Duration::from_secs(1),
        };
        let (queue, _worker) = BatchQueue::start(
            Box::new(Sizes(Arc::clone(&sizes))),
            config,
            Arc::new(Metrics::new()),
        )
        .unwrap();
        let one = tokio::spawn({
            let queue = queue.clone();
            async move { queue.predict(vec![input()]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let many = queue.predict((0..64).map(|_| input()).collect()).await.unwrap();
        assert_eq!(many.len(), 64);
        assert_eq!(one.await.unwrap().unwrap().len(), 1);
        let sizes = sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        assert_eq!(sizes, [1, 64]);
    }

    /// Passes a forward pass only once released (the first), recording every pass's size.
    struct Gated {
        sizes: Arc<Mutex<Vec<usize>>>,
        started: std::sync::mpsc::Sender<()>,
        release: Mutex<Receiver<()>>,
    }

    impl Predictor for Gated {
        fn predict(&mut self, inputs: &[ModelInput]) -> Vec<Prediction> {
            let first = {
                let mut sizes = self
                    .sizes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                sizes.push(inputs.len());
                sizes.len() == 1
            };
            if first {
                let _ = self.started.send(());
                let _ = self
                    .release
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .recv();
            }
            predictions(inputs)
        }
    }

    /// A queue of one job at a time whose first forward pass waits to be released: the queue,
    /// its worker, the signal that the pass started and the release.
    fn gated_queue(
        sizes: &Arc<Mutex<Vec<usize>>>,
    ) -> (
        BatchQueue,
        JoinHandle<()>,
        Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let config = QueueConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            capacity: 1,
            retry_after: Duration::from_secs(1),
        };
        let (queue, worker) = BatchQueue::start(
            Box::new(Gated {
                sizes: Arc::clone(sizes),
                started: started_tx,
                release: Mutex::new(release_rx),
            }),
            config,
            Arc::new(Metrics::new()),
        )
        .unwrap();
        (queue, worker, started_rx, release_tx)
    }

    /// A job whose request gave up while it waited (a timeout, a client gone) is dropped unrun:
    /// it costs no forward pass, and once the worker reaches it the queue has room again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_nobody_waits_for_is_dropped_unrun() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (queue, _worker, started_rx, release_tx) = gated_queue(&sizes);
        let a = tokio::spawn({
            let queue = queue.clone();
            async move { queue.predict(vec![input()]).await }
        });
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .unwrap()
            .unwrap();
        // B waits in the queue behind A's pass, and its request gives up.
        let b = tokio::time::timeout(Duration::from_millis(50), queue.predict(vec![input()])).await;
        assert!(b.is_err(), "B timed out");
        release_tx.send(()).unwrap();
        assert_eq!(a.await.unwrap().unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(queue.predict(vec![input()]).await.unwrap().len(), 1);
        let sizes = sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        assert_eq!(sizes, [1, 1], "A and C ran; B did not");
    }

    /// `/readyz` reads how long the forward pass running has run, and whether the worker ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_worker_says_how_long_its_pass_has_run_and_when_it_ended() {
        let (queue, worker, started_rx, release_tx) = gated_queue(&Arc::default());
        assert_eq!(queue.worker_state(), WorkerState::Running(None));
        let a = tokio::spawn({
            let queue = queue.clone();
            async move { queue.predict(vec![input()]).await }
        });
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        let WorkerState::Running(Some(busy)) = queue.worker_state() else {
            panic!("{:?}", queue.worker_state());
        };
        assert!(busy >= Duration::from_millis(100), "{busy:?}");
        release_tx.send(()).unwrap();
        assert_eq!(a.await.unwrap().unwrap().len(), 1);
        assert_eq!(queue.worker_state(), WorkerState::Running(None));
        let pulse = Arc::clone(&queue.pulse);
        drop(queue);
        tokio::task::spawn_blocking(move || worker.join())
            .await
            .unwrap()
            .unwrap();
        assert!(pulse.stopped.load(std::sync::atomic::Ordering::Relaxed));
    }
}
