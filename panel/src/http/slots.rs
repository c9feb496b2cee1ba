//! Connection slots per client IP, so that slow clients cannot lock a prompt one out.
//!
//! A connection is *pending* from accept until its first request is complete, then
//! *established*. Both kinds are bounded per IP by the same cap, separately:
//!
//! - established connections (real clients, possibly idle in keep-alive or upgraded to a
//!   WebSocket) are refused beyond the cap with 429 once their first request is read;
//! - pending connections (TLS handshake or first request still in progress) never refuse a
//!   newcomer: when an IP already has `cap` of them, the *oldest* is evicted (closed) to make
//!   room. A client that sends its request promptly is therefore served even while hundreds
//!   of slow clients of the same IP hold connections open; the slow ones only push each other
//!   out. Memory stays bounded: at most `2 × cap` connections per IP.
//!
//! Eviction is a dropped channel sender: the pending connection's receiver wakes with an error.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use parking_lot::Mutex;

/// Wakes (with an error) when the pending connection holding it is evicted.
pub type Eviction = async_channel::Receiver<()>;

/// Where one connection stands against its IP's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// No per-IP cap is configured.
    Unlimited,
    /// First request not complete yet; `id` finds it in its IP's queue.
    Pending { ip: IpAddr, id: u64 },
    /// Counted against the IP's established connections.
    Established { ip: IpAddr },
    /// Its first request arrived while the IP was at its cap (it gets a 429), or it was
    /// evicted: counts nowhere.
    Uncounted,
}

#[derive(Default)]
struct PerIp {
    established: usize,
    /// Oldest first; dropping a sender evicts that connection.
    pending: VecDeque<(u64, async_channel::Sender<()>)>,
}

/// The per-IP slot table of one server.
pub struct Slots {
    cap: usize,
    map: Mutex<HashMap<IpAddr, PerIp>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// What [`Slots::admit`] decided for a new connection.
pub struct Admitted {
    pub slot: Slot,
    /// `Some` for a pending connection: wakes when it is evicted.
    pub eviction: Option<Eviction>,
    /// Whether admitting it evicted an older pending connection of the same IP.
    pub evicted_other: bool,
}

impl Slots {
    /// `cap` connections per IP of each kind; 0 = unlimited (nothing is tracked).
    pub fn new(cap: usize) -> Slots {
        Slots {
            cap,
            map: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// A new connection from `ip`: pending, evicting that IP's oldest pending connection if
    /// it already has `cap` of them.
    pub fn admit(&self, ip: IpAddr) -> Admitted {
        if self.cap == 0 {
            return Admitted {
                slot: Slot::Unlimited,
                eviction: None,
                evicted_other: false,
            };
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = async_channel::bounded(1);
        let evicted = {
            let mut map = self.map.lock();
            let per = map.entry(ip).or_default();
            let evicted = if per.pending.len() >= self.cap {
                per.pending.pop_front()
            } else {
                None
            };
            per.pending.push_back((id, tx));
            evicted
        };
        // Dropped outside the lock: this wakes the evicted connection.
        let evicted_other = evicted.is_some();
        drop(evicted);
        Admitted {
            slot: Slot::Pending { ip, id },
            eviction: Some(rx),
            evicted_other,
        }
    }

    /// The connection's first request is complete: it becomes established if its IP is below
    /// the cap (`true`), else it counts nowhere and must be refused (`false`).
    pub fn establish(&self, slot: &mut Slot) -> bool {
        let Slot::Pending { ip, id } = *slot else {
            return matches!(slot, Slot::Unlimited | Slot::Established { .. });
        };
        let mut map = self.map.lock();
        let per = map.entry(ip).or_default();
        per.pending.retain(|(p, _)| *p != id);
        if per.established < self.cap {
            per.established += 1;
            *slot = Slot::Established { ip };
            true
        } else {
            *slot = Slot::Uncounted;
            if per.pending.is_empty() && per.established == 0 {
                map.remove(&ip);
            }
            false
        }
    }

    /// The connection is gone: frees whatever it held.
    pub fn release(&self, slot: Slot) {
        let ip = match slot {
            Slot::Pending { ip, .. } | Slot::Established { ip } => ip,
            Slot::Unlimited | Slot::Uncounted => return,
        };
        let mut map = self.map.lock();
        let Some(per) = map.get_mut(&ip) else { return };
        match slot {
            Slot::Pending { id, .. } => per.pending.retain(|(p, _)| *p != id),
            _ => per.established = per.established.saturating_sub(1),
        }
        if per.pending.is_empty() && per.established == 0 {
            map.remove(&ip);
        }
    }

    /// (established, pending) connections of `ip`.
    pub fn count(&self, ip: IpAddr) -> (usize, usize) {
        self.map
            .lock()
            .get(&ip)
            .map_or((0, 0), |p| (p.established, p.pending.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn the_oldest_pending_connection_makes_room() {
        let slots = Slots::new(2);
        let a = slots.admit(IP);
        let b = slots.admit(IP);
        assert!(!a.evicted_other && !b.evicted_other);
        let c = slots.admit(IP);
        assert!(c.evicted_other);
        // `a` was the oldest: its receiver now fails, `b`'s does not.
        assert!(a.eviction.unwrap().recv_blocking().is_err());
        assert!(b.eviction.as_ref().unwrap().try_recv().is_err());
        assert!(!b.eviction.unwrap().is_closed());
        assert_eq!(slots.count(IP), (0, 2));
        slots.release(a.slot);
        assert_eq!(
            slots.count(IP),
            (0, 2),
            "an evicted slot frees nothing twice"
        );
    }

    #[test]
    fn established_connections_are_capped_and_released() {
        let slots = Slots::new(1);
        let mut a = slots.admit(IP).slot;
        let mut b = slots.admit(IP).slot;
        assert!(slots.establish(&mut a));
        assert!(!slots.establish(&mut b), "over the cap");
        assert_eq!(b, Slot::Uncounted);
        assert_eq!(slots.count(IP), (1, 0));
        slots.release(b);
        slots.release(a);
        assert_eq!(slots.count(IP), (0, 0));
        assert!(slots.map.lock().is_empty(), "no entry left behind");
    }

    #[test]
    fn unlimited_tracks_nothing() {
        let slots = Slots::new(0);
        let mut a = slots.admit(IP);
        assert!(a.eviction.is_none());
        assert!(slots.establish(&mut a.slot));
        slots.release(a.slot);
        assert!(slots.map.lock().is_empty());
    }
}
