//! Process-wide shutdown signal.
//!
//! One [`Shutdown`] is created at start-up and cloned into every part of the panel that must
//! stop cleanly (the HTTP accept loop, agent sockets, the event hub). Triggering is
//! idempotent and observable both synchronously ([`Shutdown::is_triggered`]) and
//! asynchronously ([`Shutdown::wait`]). `SIGTERM`/`SIGINT` become a trigger the way the agent
//! does it: they are blocked in every thread and a dedicated thread takes them with
//! `sigwait(2)` — no signal handler, so nothing has to be async-signal-safe and no `unsafe`
//! code is needed.

use nix::sys::signal::{SigSet, Signal};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A cloneable, idempotent "stop now" flag that tasks can await.
///
/// Implemented as a never-used channel whose closing *is* the signal: `trigger` closes it,
/// so every pending and future `wait` resolves at once without any polling.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: async_channel::Sender<()>,
    rx: async_channel::Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A fresh, untriggered shutdown flag.
    pub fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Shutdown { tx, rx }
    }

    /// Fires the signal (idempotent).
    pub fn trigger(&self) {
        self.tx.close();
    }

    /// Whether [`trigger`](Self::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once triggered (immediately if it already was).
    pub async fn wait(&self) {
        // Nothing is ever sent, so `recv` only returns once the channel is closed.
        let _ = self.rx.recv().await;
    }

    /// Makes `SIGTERM` and `SIGINT` trigger this shutdown.
    ///
    /// Blocks both signals in the calling thread — and so in every thread created after it,
    /// which inherit the mask: call this before any other thread exists (`main` does, before
    /// the executor starts) — and starts a thread that waits for them. A second signal after
    /// the first one is still just a trigger (idempotent); the process is expected to exit on
    /// its own once everything has stopped. Child processes start with an empty mask (the
    /// standard library resets it). Calling this more than once in a process is an error.
    pub fn on_signals(&self) -> io::Result<()> {
        self.watch_signals().map(drop)
    }

    fn watch_signals(&self) -> io::Result<JoinHandle<()>> {
        static INSTALLED: AtomicBool = AtomicBool::new(false);
        if INSTALLED.swap(true, Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "signal handling is already set up in this process",
            ));
        }
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.thread_block().map_err(io::Error::from)?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("panel-signals".into())
            .spawn(move || {
                loop {
                    match set.wait() {
                        Ok(sig) => {
                            log::info!("{sig} received; shutting down");
                            me.trigger();
                        }
                        Err(e) => {
                            log::error!("waiting for signals failed: {e}");
                            return;
                        }
                    }
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_is_idempotent_and_wakes_waiters() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let clone = s.clone();
        let waiter = std::thread::spawn(move || smol::block_on(clone.wait()));
        s.trigger();
        s.trigger();
        waiter.join().unwrap();
        assert!(s.is_triggered());
        // Already triggered: resolves immediately.
        smol::block_on(s.wait());
    }

    #[test]
    fn untriggered_wait_does_not_resolve() {
        let s = Shutdown::new();
        let resolved = smol::block_on(futures_lite::future::or(
            async {
                s.wait().await;
                true
            },
            async {
                futures_lite::future::yield_now().await;
                false
            },
        ));
        assert!(!resolved);
    }

    #[test]
    fn sigterm_triggers_shutdown() {
        let s = Shutdown::new();
        let watcher = s.watch_signals().unwrap();
        // Second installation is refused rather than silently stacking watchers.
        assert!(Shutdown::new().on_signals().is_err());
        // Sent to the watcher thread itself: other threads of the test harness do not block
        // SIGTERM, so a process-wide signal would end the test process.
        use std::os::unix::thread::JoinHandleExt;
        nix::sys::pthread::pthread_kill(watcher.as_pthread_t(), Signal::SIGTERM).unwrap();
        smol::block_on(s.wait());
        assert!(s.is_triggered());
    }
}
