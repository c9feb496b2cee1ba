//! Automatic failover: a failover-enabled server whose node is `dead` is recreated on a
//! healthy node from its latest backup, one epoch later; and when the dead node returns,
//! its stale copy is stopped and quarantined, so two copies never serve at once.
//!
//! - [`pause`]: the mass-death brake (pure);
//! - [`recreate`]: one server onto another node (placement, create, restore, start,
//!   commit with the epoch bump; undone on failure before the commit);
//! - [`reconcile`]: a node (re)connects: quarantine its stale copies first, then send it
//!   its failover list (what it fences when cut off), then start again the servers its
//!   self-fencing stopped;
//! - [`run`]: the loop that watches node health and drives both.
//!
//! What it promises (README, "Failover"): the server back on a healthy node from its
//! latest backup — whatever changed since that backup is lost — and never two copies
//! running, as far as the nodes' self-fencing (`agent run --fence-after-secs`, shorter than
//! `panel --dead-after-secs`) holds. A server without a backup is not failed over: an
//! empty copy would look like a working server with its world gone; an event says why.

pub mod pause;
mod reconcile;
mod recreate;
mod run;

pub(crate) use reconcile::send_list;
pub use run::run;

use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::{write_counter, write_gauge, write_header, write_sample};
use pause::Pause;

/// Failover's shared state: the pause switch, what is in flight, counters.
#[derive(Default)]
pub struct Failover {
    pause: Mutex<Pause>,
    /// Servers being failed over now.
    moving: Mutex<HashSet<String>>,
    /// Per server, the (dead agent, epoch) whose failover ended without success (refused or
    /// failed) and when: retried after [`run::RETRY_SECS`].
    tried: Mutex<HashMap<String, (String, u64, u64)>>,
    /// Agents with a reconciliation in flight.
    reconciling: Mutex<HashSet<String>>,
    /// Agents that acknowledged an empty failover list since the panel started: a new
    /// connection of theirs needs no list (no command per connection in a reconnect storm).
    empty_lists: Mutex<HashSet<String>>,
    done: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    quarantined: AtomicU64,
    pauses: AtomicU64,
}

impl Failover {
    pub fn is_paused(&self) -> bool {
        self.pause.lock().is_paused()
    }

    /// `POST /api/failover/resume`: whether it was paused.
    pub fn resume(&self) -> bool {
        let was = self.pause.lock().resume();
        if was {
            log::warn!("failover resumed by an operator");
        }
        was
    }

    /// `GET /api/failover`.
    pub fn to_json(&self) -> Value {
        let mut v = self.pause.lock().to_json();
        let mut moving: Vec<String> = self.moving.lock().iter().cloned().collect();
        moving.sort();
        if let Value::Object(m) = &mut v {
            m.insert("inProgress".into(), json!(moving));
            m.insert(
                "totals".into(),
                json!({
                    "done": self.done.load(Ordering::Relaxed),
                    "failed": self.failed.load(Ordering::Relaxed),
                    "refused": self.refused.load(Ordering::Relaxed),
                    "quarantined": self.quarantined.load(Ordering::Relaxed),
                    "pauses": self.pauses.load(Ordering::Relaxed),
                }),
            );
        }
        v
    }

    /// The failover part of `/metrics`.
    pub fn render(&self, out: &mut String) {
        write_gauge(
            out,
            "panel_failover_paused",
            "1 while failover is paused (many nodes dead at once; POST /api/failover/resume).",
            &[],
            u64::from(self.is_paused()),
        );
        write_header(
            out,
            "panel_failovers_total",
            "Failovers of servers off dead nodes, by outcome.",
            "counter",
        );
        for (outcome, c) in [
            ("done", &self.done),
            ("failed", &self.failed),
            ("refused", &self.refused),
        ] {
            write_sample(
                out,
                "panel_failovers_total",
                &[("outcome", outcome)],
                c.load(Ordering::Relaxed),
            );
        }
        write_counter(
            out,
            "panel_quarantined_copies_total",
            "Stale copies stopped and quarantined on returning nodes.",
            &[],
            self.quarantined.load(Ordering::Relaxed),
        );
        write_counter(
            out,
            "panel_failover_pauses_total",
            "Times failover paused for a mass death.",
            &[],
            self.pauses.load(Ordering::Relaxed),
        );
    }
}
