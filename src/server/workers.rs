//! Connection threads: every accepted webhook connection is served, start to finish, by
//! one of a few threads that each run their own single-threaded tokio runtime (the model
//! of actix-web and of thread-per-core servers), instead of by tokio's work-stealing pool.
//!
//! A review is short and synchronous, and the API server keeps its connections open and
//! sends one review at a time on each: there is nothing for work stealing to balance
//! within a connection, and its cost is paid on every request (workers waking each other
//! to look for work, tasks and buffers moving between cores). Side by side under the same
//! load (README, Performance), pass-through reviews got 12 % faster this way, with a tenth
//! less CPU each. A new connection goes to the thread with the fewest open, so load
//! spreads as connections come.

use std::{
    future::Future,
    io,
    num::NonZeroUsize,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use tokio::{runtime, sync::oneshot, task::JoinSet};

/// Run on a connection thread, by that thread, when connections have closed on it since
/// the last time: see [`on_connections_closed`].
static TIDY: OnceLock<fn()> = OnceLock::new();

/// How often a connection thread looks whether connections closed on it.
const TIDY_INTERVAL: Duration = Duration::from_secs(5);

/// Sets what each connection thread runs, on itself, at most every [`TIDY_INTERVAL`] and
/// only after connections closed on it: the binary gives back the memory the allocator
/// keeps for the thread (a thread that goes quiet after a burst of connections would
/// otherwise hold it). Set once, before serving; later calls are ignored.
pub fn on_connections_closed(hook: fn()) {
    let _ = TIDY.set(hook);
}

/// Runs the [`TIDY`] hook on this thread after connections closed on it; never returns.
async fn tidy(closed: Arc<AtomicUsize>) {
    let Some(hook) = TIDY.get() else {
        return std::future::pending().await;
    };
    let mut seen = 0;
    let mut tick = tokio::time::interval(TIDY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = closed.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            hook();
        }
    }
}

/// The connection threads, stopped (their leftover tasks dropped) when this is dropped.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: runtime::Handle,
    /// Connections this thread is serving now.
    open: Arc<AtomicUsize>,
    /// Connections this thread has finished serving.
    closed: Arc<AtomicUsize>,
    /// Dropping it ends the thread.
    _stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Workers {
    /// Starts `count` threads, each with a runtime for IO and timers.
    pub fn start(count: NonZeroUsize) -> io::Result<Workers> {
        let workers = (0..count.get())
            .map(|index| {
                let runtime = runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let handle = runtime.handle().clone();
                let (stop, stopped) = oneshot::channel::<()>();
                let closed = Arc::<AtomicUsize>::default();
                let tidy = tidy(closed.clone());
                let thread = std::thread::Builder::new()
                    .name(format!("tandem-conn-{index}"))
                    .spawn(move || {
                        // Tasks spawned through the handle run while this thread is in
                        // block_on, until `_stop` is dropped; dropping the runtime then
                        // drops what is left.
                        runtime.block_on(async {
                            tokio::select! {
                                _ = stopped => {}
                                () = tidy => {}
                            }
                        });
                    })?;
                Ok(Worker {
                    handle,
                    open: Arc::default(),
                    closed,
                    _stop: stop,
                    thread,
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(Workers { workers })
    }

    /// How many threads there are.
    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Runs the future `serve` makes, one connection's task, on the thread serving the
    /// fewest, owned by `tasks`; `serve` is told that thread's index (below
    /// [`count`](Self::count)). The task is first polled on that thread: a socket it
    /// registers then belongs to that thread's runtime.
    pub fn spawn<F>(&self, tasks: &mut JoinSet<()>, serve: impl FnOnce(usize) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (index, worker) = self
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, worker)| worker.open.load(Ordering::Relaxed))
            .expect("at least one worker");
        let open = Open::count(&worker.open, &worker.closed);
        let serve = serve(index);
        tasks.spawn_on(
            async move {
                let _open = open;
                serve.await;
            },
            &worker.handle,
        );
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut self.workers)
            .into_iter()
            .map(|worker| worker.thread)
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// One open connection of a worker, for as long as its task lives.
struct Open {
    open: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl Open {
    fn count(open: &Arc<AtomicUsize>, closed: &Arc<AtomicUsize>) -> Open {
        open.fetch_add(1, Ordering::Relaxed);
        Open {
            open: open.clone(),
            closed: closed.clone(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::Barrier;

    use super::*;

    fn thread_name() -> String {
        std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn open_connections_are_spread_over_the_threads_and_a_freed_one_is_reused() {
        let workers = Workers::start(NonZeroUsize::new(2).unwrap()).unwrap();
        let mut tasks = JoinSet::new();
        // Two connections open at once land on the two threads.
        let both_open = Arc::new(Barrier::new(3));
        let (names, mut named) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..2 {
            let (both_open, names) = (both_open.clone(), names.clone());
            workers.spawn(&mut tasks, |_| async move {
                names.send(thread_name()).unwrap();
                both_open.wait().await;
            });
        }
        let mut first = vec![named.recv().await.unwrap(), named.recv().await.unwrap()];
        first.sort();
        assert_eq!(first, ["tandem-conn-0", "tandem-conn-1"]);

        // One stays open; once the other has closed, the next goes where it was.
        let (close, closed) = oneshot::channel::<()>();
        let names2 = names.clone();
        workers.spawn(&mut tasks, |_| async move {
            names2.send(thread_name()).unwrap();
            let _ = closed.await;
        });
        let staying = named.recv().await.unwrap();
        both_open.wait().await;
        while tasks.len() > 1 {
            tasks.join_next().await.unwrap().unwrap();
        }
        workers.spawn(&mut tasks, |_| async move {
            names.send(thread_name()).unwrap();
        });
        let next = named.recv().await.unwrap();
        assert_ne!(next, staying, "the thread with no open connection takes it");
        close.send(()).unwrap();
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }

    #[tokio::test]
    async fn dropping_the_workers_stops_their_threads_and_drops_leftover_tasks() {
        let workers = Workers::start(NonZeroUsize::new(2).unwrap()).unwrap();
        let mut tasks = JoinSet::new();
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        workers.spawn(&mut tasks, |_| async move {
            started.send(()).unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        running.recv().await.unwrap();
        // Drop joins the threads: returning at all means they stopped.
        tokio::task::spawn_blocking(move || drop(workers))
            .await
            .unwrap();
        let ended = tasks.join_next().await.unwrap().unwrap_err();
        assert!(ended.is_cancelled(), "{ended}");
    }

    static TIDIED_ON: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    fn record() {
        TIDIED_ON.lock().unwrap().push(thread_name());
    }

    #[tokio::test]
    async fn a_thread_whose_connections_closed_runs_the_hook_on_itself() {
        on_connections_closed(record);
        let workers = Workers::start(NonZeroUsize::new(1).unwrap()).unwrap();
        let mut tasks = JoinSet::new();
        workers.spawn(&mut tasks, |_| async {});
        tasks.join_next().await.unwrap().unwrap();
        tokio::time::sleep(TIDY_INTERVAL + Duration::from_secs(1)).await;
        let tidied = TIDIED_ON.lock().unwrap().clone();
        assert!(tidied.contains(&"tandem-conn-0".to_string()), "{tidied:?}");
        // Only ever on a connection thread (other tests' workers may have run it too).
        assert!(
            tidied.iter().all(|t| t.starts_with("tandem-conn-")),
            "{tidied:?}"
        );
    }
}
