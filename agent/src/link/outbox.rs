//! The event outbox between the servers (producers) and the link's writer (the consumer).
//!
//! Producers never block: a game server printing logs must not stall because the panel is
//! slow or away. Policy:
//! - `server_status_changed` events go to their own queue and are never dropped (they are a
//!   handful per operator action or crash, so the queue stays small).
//! - Everything else (logs, resource updates) goes to a ring of fixed capacity (default
//!   4096); when it is full the oldest entry is evicted and counted.
//! - Both queues share one sequence, and the consumer always takes the older head, so events
//!   leave in the order they were produced.
//! - The consumer takes an event *in flight*; it is only gone once acknowledged. If the
//!   connection dies before that (or the writer is cancelled), [`Outbox::requeue_in_flight`]
//!   puts it back at the front for the next connection.

use parking_lot::Mutex;
use proto::{Event, EventKind};
use std::collections::VecDeque;

/// Default capacity of the droppable ring.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Ring slots kept allocated once a backlog has drained (a few KiB).
const KEEP_CAPACITY: usize = 64;

/// An event with its place in the production order.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: u64,
    pub event: Event<'static>,
}

#[derive(Debug)]
struct Inner {
    status: VecDeque<Queued>,
    ring: VecDeque<Queued>,
    in_flight: Option<Queued>,
    next_seq: u64,
    capacity: usize,
    evicted: u64,
    closed: bool,
}

/// The outbox. Share it in an `Arc`; there is one consumer at a time.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    /// A doorbell: one token means "something may be queued". With a single consumer this
    /// loses no wake-ups: a push between the consumer's check and its wait leaves the token.
    bell_tx: async_channel::Sender<()>,
    bell_rx: async_channel::Receiver<()>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new(DEFAULT_CAPACITY)
    }
}

fn is_status(event: &Event<'_>) -> bool {
    matches!(event.kind, EventKind::ServerStatusChanged(_))
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        let (bell_tx, bell_rx) = async_channel::bounded(1);
        Outbox {
            inner: Mutex::new(Inner {
                status: VecDeque::new(),
                // Grown on demand, not preallocated: a ring of `capacity` events is ~1 MiB,
                // and cycling through a preallocated one makes all of it resident even when
                // a few events are ever queued at once.
                ring: VecDeque::new(),
                in_flight: None,
                next_seq: 0,
                capacity: capacity.max(1),
                evicted: 0,
                closed: false,
            }),
            bell_tx,
            bell_rx,
        }
    }

    /// Queues an event; never blocks. Returns `false` if a log or resource event had to be
    /// evicted to make room.
    pub fn push(&self, event: Event<'static>) -> bool {
        let mut evicted_one = false;
        {
            let mut inner = self.inner.lock();
            if inner.closed {
                return true;
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            let item = Queued { seq, event };
            if is_status(&item.event) {
                inner.status.push_back(item);
            } else {
                if inner.ring.len() >= inner.capacity {
                    inner.ring.pop_front();
                    inner.evicted += 1;
                    evicted_one = true;
                }
                inner.ring.push_back(item);
            }
        }
        let _ = self.bell_tx.try_send(());
        !evicted_one
    }

    /// Takes the oldest event, if any, and marks it in flight (replacing — and thereby
    /// acknowledging — any previous in-flight event).
    pub fn try_take(&self) -> Option<Event<'static>> {
        let mut inner = self.inner.lock();
        let take_status = match (inner.status.front(), inner.ring.front()) {
            (Some(s), Some(r)) => s.seq < r.seq,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let item = if take_status {
            inner.status.pop_front()
        } else {
            inner.ring.pop_front()
        }?;
        if inner.ring.is_empty() && inner.ring.capacity() > KEEP_CAPACITY {
            // A backlog (the panel was away) drained: give its memory back.
            inner.ring.shrink_to(KEEP_CAPACITY);
        }
        let event = item.event.clone();
        inner.in_flight = Some(item);
        Some(event)
    }

    /// Waits for the oldest event and marks it in flight. Cancel-safe. `None` once closed.
    pub async fn take(&self) -> Option<Event<'static>> {
        loop {
            if let Some(e) = self.try_take() {
                return Some(e);
            }
            if self.inner.lock().closed {
                return None;
            }
            if self.bell_rx.recv().await.is_err() {
                return None;
            }
        }
    }

    /// The in-flight event was written: forget it.
    pub fn ack(&self) {
        self.inner.lock().in_flight = None;
    }

    /// The connection died with an event in flight: put it back at the front.
    pub fn requeue_in_flight(&self) {
        let mut inner = self.inner.lock();
        if let Some(item) = inner.in_flight.take() {
            if is_status(&item.event) {
                inner.status.push_front(item);
            } else {
                // Requeued logs may push the ring one over capacity until the next push.
                inner.ring.push_front(item);
            }
            drop(inner);
            let _ = self.bell_tx.try_send(());
        }
    }

    /// Events waiting (not counting one in flight).
    pub fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.status.len() + inner.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Log/resource events evicted so far because the ring was full.
    pub fn evicted(&self) -> u64 {
        self.inner.lock().evicted
    }

    /// Wakes the consumer with `None` and drops further pushes (agent shutdown).
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.bell_tx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{ServerLog, ServerState, StatusChanged};
    use std::borrow::Cow;

    fn log(n: u32) -> Event<'static> {
        Event {
            id: None,
            timestamp: Cow::Borrowed("2025-01-23T10:00:00Z"),
            agent_id: None,
            server_id: Some(Cow::Borrowed("s1")),
            kind: EventKind::ServerLog(ServerLog {
                server_id: Cow::Borrowed("s1"),
                log_level: Cow::Borrowed("INFO"),
                message: Cow::Owned(format!("line {n}")),
                stream: None,
                dropped: None,
            }),
        }
    }

    fn status(to: ServerState) -> Event<'static> {
        Event {
            id: None,
            timestamp: Cow::Borrowed("2025-01-23T10:00:00Z"),
            agent_id: None,
            server_id: Some(Cow::Borrowed("s1")),
            kind: EventKind::ServerStatusChanged(StatusChanged {
                server_id: Cow::Borrowed("s1"),
                previous_status: ServerState::Running,
                current_status: to,
                pid: None,
                exit_code: None,
                oom_killed: None,
                reason: None,
            }),
        }
    }

    fn message(e: &Event<'_>) -> String {
        match &e.kind {
            EventKind::ServerLog(l) => l.message.to_string(),
            EventKind::ServerStatusChanged(s) => format!("status {:?}", s.current_status),
            _ => "other".into(),
        }
    }

    fn drain(o: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = o.try_take() {
            out.push(message(&e));
            o.ack();
        }
        out
    }

    #[test]
    fn full_ring_evicts_oldest_logs_but_never_status_changes() {
        let o = Outbox::new(3);
        o.push(log(0));
        o.push(status(ServerState::Stopping));
        for n in 1..=5 {
            o.push(log(n));
        }
        o.push(status(ServerState::Stopped));
        assert_eq!(o.evicted(), 3);
        assert_eq!(
            drain(&o),
            vec![
                "status Stopping",
                "line 3",
                "line 4",
                "line 5",
                "status Stopped"
            ]
        );
        assert!(o.is_empty());
    }

    #[test]
    fn status_changes_survive_any_flood() {
        let o = Outbox::new(16);
        for n in 0..10_000 {
            o.push(log(n));
            if n % 1000 == 0 {
                o.push(status(ServerState::Running));
            }
        }
        let out = drain(&o);
        assert_eq!(out.iter().filter(|m| m.starts_with("status")).count(), 10);
        assert_eq!(out.len(), 26);
        assert_eq!(o.evicted(), 10_000 - 16);
    }

    #[test]
    fn order_is_production_order_across_queues() {
        let o = Outbox::new(100);
        o.push(log(1));
        o.push(status(ServerState::Starting));
        o.push(log(2));
        o.push(status(ServerState::Running));
        assert_eq!(
            drain(&o),
            vec!["line 1", "status Starting", "line 2", "status Running"]
        );
    }

    #[test]
    fn in_flight_events_are_requeued_at_the_front() {
        let o = Outbox::new(100);
        o.push(status(ServerState::Stopped));
        o.push(log(1));
        assert_eq!(message(&o.try_take().unwrap()), "status Stopped");
        o.requeue_in_flight();
        o.requeue_in_flight(); // idempotent
        assert_eq!(drain(&o), vec!["status Stopped", "line 1"]);
        // An acknowledged event is not requeued.
        o.push(log(2));
        o.try_take().unwrap();
        o.ack();
        o.requeue_in_flight();
        assert!(o.is_empty());
    }

    #[test]
    fn take_wakes_on_push_and_ends_on_close() {
        let o = std::sync::Arc::new(Outbox::new(8));
        let consumer = {
            let o = o.clone();
            std::thread::spawn(move || {
                smol::block_on(async {
                    let mut got = Vec::new();
                    while let Some(e) = o.take().await {
                        got.push(message(&e));
                        o.ack();
                    }
                    got
                })
            })
        };
        for n in 0..3 {
            o.push(log(n));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Wait for the consumer to drain before closing, without timing assertions.
        while !o.is_empty() {
            std::thread::yield_now();
        }
        o.close();
        let got = consumer.join().unwrap();
        assert_eq!(got, vec!["line 0", "line 1", "line 2"]);
    }
}
