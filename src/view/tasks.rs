//! Background work for the viewer, one facility for all of it.
//!
//! The frame loop must never wait, so everything slow runs on named threads:
//! the pipeline, decoding the selected image, loading thumbnails, text
//! search, exports, the folder dialog. Two shapes cover them:
//!
//! - [`Task`]: one job with a result (a pipeline run, an export). It can be
//!   cancelled (a [`CancelToken`] the job checks), dropping it cancels it, and
//!   a panic inside it comes back as an error for the UI instead of a thread
//!   that silently died (which used to leave "working…" forever).
//! - [`Worker`]: one long-lived thread serving requests where only the latest
//!   matters (decode the image just clicked, embed the query just typed).
//!   A new request replaces a pending one, so clicking through a hundred
//!   images queues at most one decode: the work is bounded by construction.
//!   The thread keeps what its closure owns between requests (an open
//!   thumbnail store, a loaded text tower).
//!
//! Systems poll both once per frame; nothing here blocks. The window does
//! not draw when nothing moves (see [`super::redraw`]), so a job that ends
//! wakes it: [`wake_window_with`] says how, and [`jobs_ended`] lets the
//! frame after the wake know there was one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::progress::{CancelToken, is_cancelled};

/// How to wake the window's event loop; set by the viewer when it starts.
type WakeWindow = Box<dyn Fn() + Send + Sync>;
static WAKE_WINDOW: RwLock<Option<WakeWindow>> = RwLock::new(None);
static JOBS_ENDED: AtomicU64 = AtomicU64::new(0);

/// Makes every background job that ends (a [`Task`] done, a [`Worker`]
/// answer ready) call `wake`, so a window waiting for input draws the result
/// at once. Replaces the previous hook (one window at a time).
pub fn wake_window_with(wake: impl Fn() + Send + Sync + 'static) {
    *WAKE_WINDOW
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Box::new(wake));
}

/// How many background jobs have ended so far, in this process.
pub fn jobs_ended() -> u64 {
    JOBS_ENDED.load(Ordering::Acquire)
}

/// Called once a job's outcome is where `poll` finds it.
fn job_ended() {
    JOBS_ENDED.fetch_add(1, Ordering::AcqRel);
    let wake = WAKE_WINDOW
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(wake) = wake.as_ref() {
        wake();
    }
}

/// How a background job ended, in words for the user when it failed.
pub type Outcome<T> = Result<T, TaskError>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskError {
    /// The user (or a newer request) cancelled it.
    Cancelled,
    /// It returned an error: the message says what to do.
    Failed(String),
    /// It panicked: a bug, reported rather than hidden.
    Crashed(String),
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::Cancelled => write!(f, "cancelled"),
            TaskError::Failed(message) => write!(f, "{message}"),
            TaskError::Crashed(message) => write!(
                f,
                "embedscope hit an internal error ({message}). Please report it; you can retry."
            ),
        }
    }
}

/// Runs `job`, turning an error or a panic into a [`TaskError`].
fn run_caught<T>(job: impl FnOnce() -> anyhow::Result<T>) -> Outcome<T> {
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) if is_cancelled(&err) => Err(TaskError::Cancelled),
        Ok(Err(err)) => Err(TaskError::Failed(format!("{err:#}"))),
        Err(payload) => Err(TaskError::Crashed(panic_message(payload.as_ref()))),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// One background job. Poll it each frame; drop it to cancel it.
pub struct Task<T> {
    name: &'static str,
    cancel: CancelToken,
    result: Arc<Mutex<Option<Outcome<T>>>>,
    taken: bool,
}

impl<T: Send + 'static> Task<T> {
    /// Starts `job` on a thread named `embedscope-<name>`.
    pub fn spawn(
        name: &'static str,
        job: impl FnOnce(&CancelToken) -> anyhow::Result<T> + Send + 'static,
    ) -> Self {
        let cancel = CancelToken::new();
        let result = Arc::new(Mutex::new(None));
        let (token, slot) = (cancel.clone(), result.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("embedscope-{name}"))
            .spawn(move || {
                let outcome = run_caught(|| job(&token));
                *lock(&slot) = Some(outcome);
                job_ended();
            });
        if let Err(err) = spawned {
            *lock(&result) = Some(Err(TaskError::Failed(format!(
                "could not start a thread for {name}: {err}"
            ))));
            job_ended();
        }
        Self {
            name,
            cancel,
            result,
            taken: false,
        }
    }

    /// The outcome, once, when the job has ended.
    pub fn poll(&mut self) -> Option<Outcome<T>> {
        if self.taken {
            return None;
        }
        let outcome = lock(&self.result).take();
        self.taken = outcome.is_some();
        outcome
    }

    /// Asks the job to stop at its next check.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The token the job checks (also for progress sinks that stop early).
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // A replaced or abandoned job stops instead of working for nobody.
        self.cancel.cancel();
    }
}

/// A long-lived thread that serves the latest request: `request` replaces a
/// pending one, `poll` returns answers in order.
pub struct Worker<Req, Resp> {
    shared: Arc<WorkerShared<Req, Resp>>,
}

struct WorkerShared<Req, Resp> {
    state: Mutex<WorkerState<Req, Resp>>,
    wake: Condvar,
}

struct WorkerState<Req, Resp> {
    pending: Option<(u64, Req)>,
    answers: Vec<(u64, Outcome<Resp>)>,
    next_id: u64,
    /// Cancels the request being worked on when a newer one arrives.
    current: Option<CancelToken>,
    busy: bool,
    closed: bool,
}

/// Ticket of a request, to match it with its answer.
pub type RequestId = u64;

impl<Req: Send + 'static, Resp: Send + 'static> Worker<Req, Resp> {
    /// Starts the thread `embedscope-<name>`; `serve` answers one request
    /// (and may keep state for the next ones).
    pub fn start(
        name: &'static str,
        mut serve: impl FnMut(Req, &CancelToken) -> anyhow::Result<Resp> + Send + 'static,
    ) -> Self {
        let shared = Arc::new(WorkerShared {
            state: Mutex::new(WorkerState {
                pending: None,
                answers: Vec::new(),
                next_id: 0,
                current: None,
                busy: false,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("embedscope-{name}"))
            .spawn(move || worker_loop(&thread_shared, &mut serve));
        if let Err(err) = spawned {
            let mut state = lock(&shared.state);
            state.closed = true;
            state.answers.push((
                0,
                Err(TaskError::Failed(format!(
                    "could not start a thread for {name}: {err}"
                ))),
            ));
            drop(state);
            job_ended();
        }
        Self { shared }
    }

    /// Queues `request`, replacing (and cancelling) any older one not yet
    /// answered.
    pub fn request(&self, request: Req) -> RequestId {
        let mut state = lock(&self.shared.state);
        state.next_id += 1;
        let id = state.next_id;
        state.pending = Some((id, request));
        if let Some(current) = &state.current {
            current.cancel();
        }
        self.shared.wake.notify_one();
        id
    }

    /// Answers that arrived since the last poll, oldest first.
    pub fn poll(&self) -> Vec<(RequestId, Outcome<Resp>)> {
        std::mem::take(&mut lock(&self.shared.state).answers)
    }

    /// True while a request waits or is being served.
    pub fn busy(&self) -> bool {
        let state = lock(&self.shared.state);
        state.busy || state.pending.is_some()
    }
}

impl<Req, Resp> Drop for Worker<Req, Resp> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.closed = true;
        if let Some(current) = &state.current {
            current.cancel();
        }
        self.shared.wake.notify_one();
    }
}

fn worker_loop<Req, Resp>(
    shared: &WorkerShared<Req, Resp>,
    serve: &mut dyn FnMut(Req, &CancelToken) -> anyhow::Result<Resp>,
) {
    loop {
        let (id, request, token) = {
            let mut state = lock(&shared.state);
            loop {
                if state.closed {
                    return;
                }
                if let Some((id, request)) = state.pending.take() {
                    let token = CancelToken::new();
                    state.current = Some(token.clone());
                    state.busy = true;
                    break (id, request, token);
                }
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        let outcome = run_caught(|| serve(request, &token));
        let answered = {
            let mut state = lock(&shared.state);
            state.current = None;
            state.busy = false;
            // A superseded answer is dropped: nobody waits for it any more.
            let answered = state.pending.is_none();
            if answered {
                state.answers.push((id, outcome));
            }
            answered
        };
        if answered {
            job_ended();
        }
    }
}

/// Locks a mutex even if a panicking thread poisoned it: every value here
/// is written whole, so a poisoned one is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for<T>(mut poll: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = poll() {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "never answered");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_task_returns_its_value_once() {
        let mut task = Task::spawn("test", |_| Ok(21 * 2));
        assert_eq!(wait_for(|| task.poll()), Ok(42));
        assert_eq!(task.poll(), None);
    }

    #[test]
    fn a_panic_becomes_an_error_the_ui_can_show() {
        let mut task: Task<()> = Task::spawn("test", |_| panic!("index out of bounds"));
        let outcome = wait_for(|| task.poll());
        match outcome {
            Err(TaskError::Crashed(message)) => assert!(message.contains("out of bounds")),
            other => panic!("{other:?}"),
        }
        let failed = TaskError::Crashed("boom".into());
        assert!(failed.to_string().contains("retry"));
    }

    #[test]
    fn cancelling_stops_a_task_that_checks() {
        let mut task = Task::spawn("test", |cancel| {
            loop {
                cancel.check()?;
                std::thread::sleep(Duration::from_millis(1));
            }
            #[allow(unreachable_code)]
            Ok(())
        });
        task.cancel();
        assert_eq!(wait_for(|| task.poll()), Err(TaskError::Cancelled));
    }

    #[test]
    fn a_worker_serves_only_the_latest_request() {
        let served = Arc::new(Mutex::new(Vec::new()));
        let log = served.clone();
        let gate = Arc::new(Mutex::new(()));
        let hold = gate.lock().unwrap();
        let worker_gate = gate.clone();
        let worker = Worker::start("test", move |n: u32, _| {
            drop(worker_gate.lock().unwrap());
            log.lock().unwrap().push(n);
            Ok(n * 10)
        });
        // The first request blocks on the gate; the next ones pile up and
        // only the last survives.
        worker.request(1);
        std::thread::sleep(Duration::from_millis(20));
        for n in 2..=50 {
            worker.request(n);
        }
        drop(hold);
        let answers = wait_for(|| {
            let a = worker.poll();
            (!a.is_empty() && !worker.busy()).then_some(a)
        });
        let mut all = answers;
        all.extend(worker.poll());
        let values: Vec<u32> = all.iter().filter_map(|(_, r)| r.clone().ok()).collect();
        assert_eq!(values.last(), Some(&500));
        assert!(
            served.lock().unwrap().len() <= 2,
            "{:?}",
            served.lock().unwrap()
        );
    }

    #[test]
    fn a_worker_keeps_its_state_between_requests() {
        // What the text search relies on: the model is loaded once.
        let worker = Worker::start("test", {
            let mut loads = 0u32;
            let mut loaded: Option<u32> = None;
            move |n: u32, _| {
                let model = *loaded.get_or_insert_with(|| {
                    loads += 1;
                    100
                });
                Ok((model + n, loads))
            }
        });
        let mut answers = Vec::new();
        for n in [1, 2, 3] {
            worker.request(n);
            answers.extend(wait_for(|| {
                let a = worker.poll();
                (!a.is_empty()).then_some(a)
            }));
        }
        let values: Vec<(u32, u32)> = answers.into_iter().map(|(_, r)| r.unwrap()).collect();
        assert_eq!(values, [(101, 1), (102, 1), (103, 1)]);
    }

    #[test]
    fn a_worker_survives_a_panic() {
        let worker = Worker::start("test", |n: u32, _| {
            if n == 0 {
                panic!("zero");
            }
            Ok(n)
        });
        worker.request(0);
        let first = wait_for(|| {
            let a = worker.poll();
            (!a.is_empty()).then_some(a)
        });
        assert!(matches!(first[0].1, Err(TaskError::Crashed(_))));
        worker.request(7);
        let second = wait_for(|| {
            let a = worker.poll();
            (!a.is_empty()).then_some(a)
        });
        assert_eq!(second[0].1, Ok(7));
    }
}
