//! The panel's executor: two run queues drained by the same thread(s), the urgent one first.
//!
//! Why: with one executor thread saturated by the events fan-out (40,000 events/s to 1,001
//! subscribers), a REST command crossed that thread four times — the request, the agent's
//! writer, the agent's reader routing the answer, the HTTP reply — and each time its task
//! queued behind every event task woken meanwhile: p50 ~90 ms, p99 300–500 ms
//! (BENCHMARKS.md, "Round 3", item 5). Here a task is scheduled into the urgent queue while
//! its [`Lane`] is raised, and runners always take urgent work first:
//!
//! - a plain REST connection raises its lane for good once it has served a request
//!   ([`mark_urgent`], called by the HTTP server; not for WebSocket upgrades: agents and
//!   `/api/events` subscribers carry the event load);
//! - an agent's connection task is urgent while a command waits for that agent
//!   ([`Lane::raise`], held by the command): its writer sends the command and its reader
//!   routes the answer without queueing behind the fan-out.
//!
//! Fairness: after [`URGENT_STREAK`] urgent runs in a row a runner takes one normal task, so
//! a flood of urgent work slows the events but cannot stop them. Every [`BUDGET`] runs a
//! runner yields to the reactor (`async_io::block_on` polls `epoll` without blocking when its
//! future yields), so sockets that became ready are noticed while the queues are busy.
//!
//! Topology: [`block_on`] runs the main future as a task and drives both queues and the
//! reactor on the calling thread (so a socket noticed by the reactor wakes its task on the
//! same thread: no futex, no context switch), plus `SMOL_THREADS` more general runners, plus
//! one runner for urgent tasks only (`panel-urgent`, asleep unless a command is moving): it
//! takes a command's next step at once while the general runner is busy with the fan-out.
//! Library users that never call [`block_on`] (tests) get runner threads started on the
//! first [`spawn`].

use async_task::Runnable;
use concurrent_queue::ConcurrentQueue;
use event_listener::Event;
use futures_lite::future;
use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

/// A task of this executor (its metadata is its [`Lane`]).
pub type Task<T> = async_task::Task<T, Lane>;

/// Runs between two non-blocking polls of the reactor.
pub const BUDGET: u32 = 64;
/// Urgent runs in a row after which a waiting normal task gets its turn.
pub const URGENT_STREAK: u32 = 16;

/// A task's priority: urgent while raised (a count, so overlapping reasons nest).
#[derive(Clone, Default)]
pub struct Lane(Arc<AtomicU32>);

impl Lane {
    pub fn is_urgent(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }

    /// Urgent until the returned guard is dropped.
    pub fn raise(&self) -> Raised {
        self.0.fetch_add(1, Ordering::Relaxed);
        Raised(self.clone())
    }

    /// Urgent for the rest of the task's life (idempotent).
    fn raise_for_good(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < u32::MAX / 2).then_some(u32::MAX / 2 + n)
            });
    }
}

/// Keeps a [`Lane`] urgent while alive.
pub struct Raised(Lane);

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// The lane of the task this thread is polling, if it was spawned here.
    static CURRENT: RefCell<Option<Lane>> = const { RefCell::new(None) };
}

/// The lane of the task being polled on this thread (`None` outside [`spawn`]ed tasks).
pub fn current_lane() -> Option<Lane> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Makes the current task urgent for the rest of its life (no-op outside [`spawn`]ed tasks).
pub fn mark_urgent() {
    CURRENT.with(|c| {
        if let Some(lane) = &*c.borrow() {
            lane.raise_for_good();
        }
    });
}

/// The two run queues and the runners' wake-up.
struct Queues {
    urgent: ConcurrentQueue<Runnable<Lane>>,
    normal: ConcurrentQueue<Runnable<Lane>>,
    /// Notified when work is queued; idle runners wait on it.
    work: Event,
    /// Notified when urgent work is queued; the urgent runner waits on it.
    urgent_work: Event,
}

static QUEUES: LazyLock<Queues> = LazyLock::new(Queues::new);

/// Set once runner threads exist (by [`block_on`] or the first [`spawn`]).
static RUNNERS: OnceLock<()> = OnceLock::new();

impl Queues {
    fn new() -> Queues {
        Queues {
            urgent: ConcurrentQueue::unbounded(),
            normal: ConcurrentQueue::unbounded(),
            work: Event::new(),
            urgent_work: Event::new(),
        }
    }

    fn schedule(&self, runnable: Runnable<Lane>) {
        let urgent = runnable.metadata().is_urgent();
        // Unbounded queues only fail when closed, and these never are.
        if urgent {
            let _ = self.urgent.push(runnable);
            self.urgent_work.notify(1);
        } else {
            let _ = self.normal.push(runnable);
        }
        self.work.notify(1);
    }

    /// The next task: urgent first, but a normal one after a long urgent streak.
    fn next(&self, streak: &mut u32) -> Option<Runnable<Lane>> {
        if *streak >= URGENT_STREAK {
            *streak = 0;
            if let Ok(r) = self.normal.pop() {
                return Some(r);
            }
        }
        if let Ok(r) = self.urgent.pop() {
            *streak += 1;
            return Some(r);
        }
        *streak = 0;
        self.normal.pop().ok()
    }

    fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.normal.is_empty()
    }

    /// Runs tasks forever (inside `async_io::block_on`, which drives the reactor).
    async fn run(&self) {
        let mut ran = 0u32;
        let mut streak = 0u32;
        loop {
            match self.next(&mut streak) {
                Some(r) => {
                    run_one(r);
                    ran += 1;
                    if ran >= BUDGET {
                        ran = 0;
                        future::yield_now().await;
                    }
                }
                None => {
                    ran = 0;
                    let listener = self.work.listen();
                    if self.is_empty() {
                        listener.await;
                    }
                }
            }
        }
    }
}

impl Queues {
    /// Runs urgent tasks only, forever: the thread that takes a command's next step while
    /// the general runners are deep in the events fan-out.
    async fn run_urgent(&self) {
        loop {
            match self.urgent.pop() {
                Ok(r) => run_one(r),
                Err(_) => {
                    let listener = self.urgent_work.listen();
                    if self.urgent.is_empty() {
                        listener.await;
                    }
                }
            }
        }
    }
}

/// Runs one task with its lane as the thread's current one (a panic ends only that task).
fn run_one(runnable: Runnable<Lane>) {
    let prev = CURRENT.with(|c| c.replace(Some(runnable.metadata().clone())));
    if std::panic::catch_unwind(AssertUnwindSafe(|| runnable.run())).is_err() {
        log::error!("a panel task panicked");
    }
    CURRENT.with(|c| c.replace(prev));
}

/// General runner threads besides the one calling [`block_on`]: `SMOL_THREADS` if set, else
/// cores − 2 (none on 2 cores: there one general thread cost 22–35 % less CPU per event than
/// two — fewer futex wake-ups and context switches; BENCHMARKS.md, "Round 2" and "Round 4").
///
/// Read here rather than written into the environment by `main`: child processes (`panel
/// up`'s agent) would inherit it, and `SMOL_THREADS=0` leaves smol's global executor in the
/// agent without a thread.
fn extra_threads() -> usize {
    std::env::var("SMOL_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(0, |n| n.get().saturating_sub(2))
        })
}

fn start_runners(n: usize) {
    // Without the reactor: it only runs tasks (sockets it polls register with the reactor
    // the other runners drive). Driving the reactor from this mostly idle thread made it
    // the one that noticed every readable socket, a cross-thread wake-up per event
    // (BENCHMARKS.md, "Round 4").
    let spawned = std::thread::Builder::new()
        .name("panel-urgent".into())
        .spawn(|| future::block_on(QUEUES.run_urgent()));
    if let Err(e) = spawned {
        log::error!("cannot start the urgent executor thread: {e}");
    }
    for i in 1..=n {
        let spawned = std::thread::Builder::new()
            .name(format!("panel-exec-{i}"))
            .spawn(|| async_io::block_on(QUEUES.run()));
        if let Err(e) = spawned {
            log::error!("cannot start executor thread {i}: {e}");
        }
    }
}

/// Spawns `future` on the panel's executor, in the normal lane until something raises it.
pub fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNNERS.get_or_init(|| start_runners(extra_threads().max(1)));
    spawn_on(&QUEUES, Lane::default(), future)
}

/// Spawns `future` into `queues` with `lane` as its priority.
fn spawn_on<F>(queues: &'static Queues, lane: Lane, future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (runnable, task) = async_task::Builder::new()
        .metadata(lane)
        .spawn(move |_| future, move |r| queues.schedule(r));
    runnable.schedule();
    task
}

/// Runs `main` to completion on this thread, which also runs the executor's tasks and drives
/// the reactor, with `SMOL_THREADS` more runner threads (0: everything on this thread).
pub fn block_on<F>(main: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNNERS.get_or_init(|| start_runners(extra_threads()));
    let task = spawn(main);
    async_io::block_on(future::or(task, async {
        QUEUES.run().await;
        unreachable!("the executor loop never ends")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// Private queues nobody else runs: the test drains them by hand, in `next` order.
    fn queues() -> &'static Queues {
        Box::leak(Box::new(Queues::new()))
    }

    fn drain(q: &Queues) {
        let mut streak = 0;
        while let Some(r) = q.next(&mut streak) {
            run_one(r);
        }
    }

    /// A task that appends `tag` to `log` when it runs.
    fn logger(
        q: &'static Queues,
        lane: Lane,
        log: &Arc<Mutex<Vec<String>>>,
        tag: String,
    ) -> Task<()> {
        let log = log.clone();
        spawn_on(q, lane, async move { log.lock().push(tag) })
    }

    #[test]
    fn an_urgent_task_runs_before_queued_normal_ones() {
        let q = queues();
        let log = Arc::default();
        let mut tasks: Vec<_> = (0..5)
            .map(|i| logger(q, Lane::default(), &log, format!("n{i}")))
            .collect();
        let lane = Lane::default();
        let raised = lane.raise();
        tasks.push(logger(q, lane, &log, "u".into()));
        drain(q);
        assert_eq!(*log.lock(), ["u", "n0", "n1", "n2", "n3", "n4"]);
        drop(raised);
        for t in tasks {
            assert!(future::block_on(future::poll_once(t)).is_some());
        }
    }

    #[test]
    fn a_normal_task_runs_after_a_streak_of_urgent_ones() {
        let q = queues();
        let log = Arc::default();
        let lane = Lane::default();
        let _raised = lane.raise();
        let _n = logger(q, Lane::default(), &log, "n".into());
        let _u: Vec<_> = (0..40)
            .map(|i| logger(q, lane.clone(), &log, format!("u{i}")))
            .collect();
        drain(q);
        let log = log.lock();
        let at = log.iter().position(|t| t == "n").unwrap();
        assert_eq!(at, URGENT_STREAK as usize, "{log:?}");
        assert_eq!(log.len(), 41);
    }

    #[test]
    fn the_lane_is_read_when_the_task_is_woken() {
        let q = queues();
        let lane = Lane::default();
        let polls = Arc::new(AtomicU32::new(0));
        let counted = polls.clone();
        let _t = spawn_on(q, lane.clone(), async move {
            loop {
                counted.fetch_add(1, Ordering::Relaxed);
                future::yield_now().await;
            }
        });
        // Normal at first.
        assert_eq!(q.normal.len(), 1);
        let mut streak = 0;
        run_one(q.next(&mut streak).unwrap());
        // It woke itself while normal: queued normal again.
        assert_eq!((q.urgent.len(), q.normal.len()), (0, 1));
        let raised = lane.raise();
        run_one(q.next(&mut streak).unwrap());
        assert_eq!((q.urgent.len(), q.normal.len()), (1, 0));
        drop(raised);
        run_one(q.next(&mut streak).unwrap());
        assert_eq!((q.urgent.len(), q.normal.len()), (0, 1));
        assert_eq!(polls.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn mark_urgent_raises_the_running_task_for_good() {
        let q = queues();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let _t = spawn_on(q, Lane::default(), async move {
            s.lock().push(current_lane().is_some_and(|l| l.is_urgent()));
            mark_urgent();
            mark_urgent();
            // Nested raises come and go; the mark stays.
            let lane = current_lane().unwrap();
            drop(lane.raise());
            s.lock().push(lane.is_urgent());
            loop {
                future::yield_now().await;
            }
        });
        let mut streak = 0;
        run_one(q.next(&mut streak).unwrap());
        assert_eq!(*seen.lock(), [false, true]);
        assert_eq!((q.urgent.len(), q.normal.len()), (1, 0));
        assert!(
            current_lane().is_none(),
            "the lane is only current inside the task"
        );
    }

    #[test]
    fn block_on_runs_spawned_tasks_and_returns_the_main_result() {
        let out = block_on(async {
            let tasks: Vec<_> = (0..100u32).map(|i| spawn(async move { i * 2 })).collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await;
            }
            sum
        });
        assert_eq!(out, 9900);
    }
}
