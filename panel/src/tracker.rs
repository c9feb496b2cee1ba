//! Waiting for a group of long-lived tasks (agent and subscriber sockets) at shutdown.
//!
//! Each task holds a [`Token`]; [`Tracker::idle`] closes the group to newcomers and resolves
//! once every token is dropped. Built on a channel nobody sends on: its closing is the signal,
//! so nothing polls.

use parking_lot::Mutex;

/// Held by a tracked task for its lifetime.
pub type Token = async_channel::Sender<()>;

pub struct Tracker {
    tx: Mutex<Option<async_channel::Sender<()>>>,
    rx: async_channel::Receiver<()>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Tracker {
            tx: Mutex::new(Some(tx)),
            rx,
        }
    }

    /// A token for a new task; `None` once [`idle`](Self::idle) was called (shutting down).
    pub fn token(&self) -> Option<Token> {
        self.tx.lock().clone()
    }

    /// Refuses new tokens and waits until every outstanding one is dropped.
    pub async fn idle(&self) {
        self.tx.lock().take();
        let _ = self.rx.recv().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_waits_for_every_token() {
        let t = Tracker::new();
        let a = t.token().unwrap();
        let b = t.token().unwrap();
        smol::block_on(async {
            let waiter = async {
                t.idle().await;
                true
            };
            let dropper = async {
                drop(a);
                async_io::Timer::after(std::time::Duration::from_millis(10)).await;
                drop(b);
                false
            };
            let (idle, _) = futures_lite::future::zip(waiter, dropper).await;
            assert!(idle);
        });
        assert!(t.token().is_none(), "no new tokens after idle");
    }
}
