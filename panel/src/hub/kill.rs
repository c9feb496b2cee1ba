//! The "end this connection" signal of one agent connection, as small as a signal can be.
//!
//! Every live connection has one, and the reader and the writer each wait on it for the
//! connection's whole life, so its size is paid once per agent. The process-wide
//! [`Shutdown`](crate::shutdown::Shutdown) is a closed-channel signal: an `async-channel`
//! (cache-padded queue and three events) costs about 770 bytes per instance. [`Kill`] is a
//! flag and one lazily allocated `event-listener` event: 16 bytes inline, about 100 more
//! once something waits.

use event_listener::Event;
use std::sync::atomic::{AtomicBool, Ordering};

/// An idempotent, awaitable "stop" flag (same API as `Shutdown`, not cloneable: it lives
/// inside the shared `Conn`).
#[derive(Debug, Default)]
pub(super) struct Kill {
    fired: AtomicBool,
    event: Event,
}

impl Kill {
    pub fn new() -> Kill {
        Kill::default()
    }

    /// Fires the signal (idempotent): every current and future [`wait`](Self::wait) resolves.
    pub fn trigger(&self) {
        if !self.fired.swap(true, Ordering::SeqCst) {
            self.event.notify(usize::MAX);
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Resolves once triggered (at once if it already was).
    pub async fn wait(&self) {
        loop {
            if self.is_triggered() {
                return;
            }
            // Listen first, then check again: a trigger in between is not missed.
            let listener = self.event.listen();
            if self.is_triggered() {
                return;
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;
    use std::sync::Arc;

    #[test]
    fn wakes_every_waiter_and_stays_fired() {
        let kill = Arc::new(Kill::new());
        assert!(!kill.is_triggered());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let k = kill.clone();
                smol::spawn(async move { k.wait().await })
            })
            .collect();
        let mut pending = Box::pin(kill.wait());
        assert!(future::block_on(future::poll_once(&mut pending)).is_none());
        kill.trigger();
        kill.trigger();
        assert!(kill.is_triggered());
        future::block_on(async {
            pending.await;
            for w in waiters {
                w.await;
            }
            // A wait after the trigger resolves at once.
            kill.wait().await;
        });
    }

    #[test]
    fn is_small() {
        assert!(std::mem::size_of::<Kill>() <= 16);
    }
}
