//! Resource history for charts: per server (cpu, memory, disk, network) and per node (cpu,
//! memory, disk, servers), the last hour at one point per step (5 s) and the last day at one
//! point per coarse step (12 steps: 1 min), kept in memory and in redb so it survives a
//! panel restart.
//!
//! Server figures come from the agents' `resource_update` events (the hub hands each one to
//! [`History::server_sample`]), node figures from the heartbeat's pong
//! ([`History::tick`]'s `nodes`). Every step [`History::tick`] appends the latest figures
//! that are still fresh; when a coarse step ends, each series gets the mean of its fine
//! points of that step and one row per series is written: that step's fine points and its
//! coarse point (`store::history`). Rows that fall out of the windows are deleted then, a
//! deleted server's at the next write. Shutdown writes the step in progress ([`History::flush`]);
//! a crash loses at most one coarse step.
//!
//! Memory is bounded: every series holds at most [`FINE_POINTS`] + [`COARSE_POINTS`] points
//! of 24 bytes; its buffers grow with the points it holds (see [`ring`]).

pub mod ring;

use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

use proto::message::ResourceUpdate;
use proto::quantity::Bytes;
use proto::time::format_rfc3339;

use crate::store::{Store, StoreError};
use ring::{POINT_BYTES, Point, Ring};

/// Points of the fine series: an hour at 5 s.
pub const FINE_POINTS: usize = 720;
/// Fine steps per coarse step (5 s → 1 min).
pub const COARSE_EVERY: u64 = 12;
/// Points of the coarse series: a day at 1 min.
pub const COARSE_POINTS: usize = 1440;

/// Whose series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Server,
    Node,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Server => 's',
            Kind::Node => 'a',
        }
    }
}

/// `?range=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Hour,
    Day,
}

impl Range {
    pub fn parse(s: &str) -> Option<Range> {
        match s {
            "1h" => Some(Range::Hour),
            "24h" | "1d" => Some(Range::Day),
            _ => None,
        }
    }
}

/// Whose series: kind and id.
type SeriesId = (Kind, String);

/// One node's figures at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample {
    pub agent_id: String,
    pub cpu: f64,
    pub memory: f64,
    pub disk: f64,
    pub servers: u64,
}

/// A server's latest figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerFigures {
    /// Unix seconds it arrived.
    pub at: u64,
    pub cpu: f64,
    pub memory: u64,
    pub disk: u64,
    /// Bytes/s since the previous sample.
    pub rx_rate: f64,
    pub tx_rate: f64,
    /// Cumulative counters of the last sample.
    rx: Option<(u64, u64)>,
}

#[derive(Default)]
struct Series {
    fine: Ring,
    coarse: Ring,
}

#[derive(Default)]
struct Inner {
    series: HashMap<(Kind, String), Series>,
    latest: HashMap<String, ServerFigures>,
    /// Players online per server at its last status query (for `/metrics`).
    players: HashMap<String, u32>,
    /// Series forgotten since the last write (their rows go then).
    forgotten: Vec<(Kind, String)>,
    /// The coarse slot the last tick was in.
    slot: Option<u64>,
}

pub struct History {
    /// Seconds per fine step (5; tests use less).
    step: u64,
    inner: Mutex<Inner>,
    store: Arc<Store>,
}

impl History {
    /// The history with what `store` kept (rows of unknown servers or agents, or out of the
    /// windows, are deleted).
    pub fn load(store: Arc<Store>, step_secs: u64, now: u64) -> Result<History, StoreError> {
        let h = History {
            step: step_secs.max(1),
            inner: Mutex::new(Inner::default()),
            store,
        };
        let mut stale = Vec::new();
        {
            let mut inner = h.inner.lock();
            for (key, bytes) in h.store.history_rows()? {
                let Some((kind, fine, id, _slot)) = parse_key(&key) else {
                    stale.push(key);
                    continue;
                };
                let known = match kind {
                    Kind::Server => h.store.server(id).is_some(),
                    Kind::Node => h.store.agent(id).is_some(),
                };
                let from = h.window_start(fine, now);
                let points: Vec<Point> = Point::decode_all(&bytes)
                    .filter(|p| u64::from(p.t) >= from)
                    .collect();
                if !known || points.is_empty() {
                    stale.push(key);
                    continue;
                }
                let s = inner.series.entry((kind, id.to_owned())).or_default();
                for p in points {
                    if fine {
                        s.fine.push(p, FINE_POINTS);
                    } else {
                        s.coarse.push(p, COARSE_POINTS);
                    }
                }
            }
        }
        if !stale.is_empty() {
            h.store.history_write(&[], &stale, &[])?;
        }
        Ok(h)
    }

    pub fn step_secs(&self) -> u64 {
        self.step
    }

    fn coarse_secs(&self) -> u64 {
        self.step * COARSE_EVERY
    }

    /// Oldest time a fine (or coarse) point may have at `now`.
    fn window_start(&self, fine: bool, now: u64) -> u64 {
        let span = if fine {
            self.step * FINE_POINTS as u64
        } else {
            self.coarse_secs() * COARSE_POINTS as u64
        };
        now.saturating_sub(span)
    }

    /// A `resource_update` of a server (already checked to be its agent's).
    pub fn server_sample(&self, u: &ResourceUpdate<'_>, now: u64) {
        let bytes = |q: &str| Bytes::parse(q).map(|b| b.0).unwrap_or(0);
        let mut inner = self.inner.lock();
        let prev = inner.latest.get(u.server_id.as_ref()).copied();
        let rx = u.network.as_ref().map(|n| (n.rx, n.tx));
        let (rx_rate, tx_rate) = match (prev, rx) {
            (Some(p), Some((r, t))) if now > p.at => match p.rx {
                Some((pr, pt)) => {
                    let secs = (now - p.at) as f64;
                    (
                        r.saturating_sub(pr) as f64 / secs,
                        t.saturating_sub(pt) as f64 / secs,
                    )
                }
                None => (0.0, 0.0),
            },
            (Some(p), _) => (p.rx_rate, p.tx_rate),
            _ => (0.0, 0.0),
        };
        let figures = ServerFigures {
            at: now,
            cpu: if u.cpu.is_finite() {
                u.cpu.max(0.0)
            } else {
                0.0
            },
            memory: bytes(&u.memory.used),
            disk: bytes(&u.disk.used),
            rx_rate,
            tx_rate,
            rx,
        };
        match inner.latest.get_mut(u.server_id.as_ref()) {
            Some(slot) => *slot = figures,
            None => {
                inner.latest.insert(u.server_id.to_string(), figures);
            }
        }
    }

    /// The latest figures of a server, if it sent any within three steps (or 15 s).
    pub fn server_now(&self, server_id: &str, now: u64) -> Option<ServerFigures> {
        let f = *self.inner.lock().latest.get(server_id)?;
        (now.saturating_sub(f.at) <= self.freshness()).then_some(f)
    }

    /// Players online, from a `get_status` answer.
    pub fn set_players(&self, server_id: &str, online: u32) {
        self.inner
            .lock()
            .players
            .insert(server_id.to_owned(), online);
    }

    pub fn players(&self, server_id: &str) -> Option<u32> {
        self.inner.lock().players.get(server_id).copied()
    }

    fn freshness(&self) -> u64 {
        (3 * self.step).max(15)
    }

    /// Drops a deleted server's (or agent's) series and, at the next write, its rows.
    pub fn forget(&self, kind: Kind, id: &str) {
        let mut inner = self.inner.lock();
        inner.series.remove(&(kind, id.to_owned()));
        if kind == Kind::Server {
            inner.latest.remove(id);
            inner.players.remove(id);
        }
        inner.forgotten.push((kind, id.to_owned()));
    }

    /// One step at `now`: the fresh server figures and `nodes` become points; at the end
    /// of a coarse step, the coarse points are made and the rows written (blocking: call it
    /// off the executor).
    pub fn tick(&self, now: u64, nodes: &[NodeSample]) -> Result<(), StoreError> {
        let t = now - now % self.step;
        let Ok(t32) = u32::try_from(t) else {
            return Ok(());
        };
        let slot = t / self.coarse_secs();
        let ended = {
            let mut inner = self.inner.lock();
            let fresh = self.freshness();
            let servers: Vec<(String, Point)> = inner
                .latest
                .iter()
                .filter(|(_, f)| now.saturating_sub(f.at) <= fresh)
                .map(|(id, f)| {
                    let v = [
                        f.cpu as f32,
                        f.memory as f32,
                        f.disk as f32,
                        f.rx_rate as f32,
                        f.tx_rate as f32,
                    ];
                    (id.clone(), Point { t: t32, v })
                })
                .collect();
            for (id, p) in servers {
                let s = inner.series.entry((Kind::Server, id)).or_default();
                s.fine.push(p, FINE_POINTS);
            }
            for n in nodes {
                let v = [
                    n.cpu as f32,
                    n.memory as f32,
                    n.disk as f32,
                    n.servers as f32,
                    0.0,
                ];
                let s = inner
                    .series
                    .entry((Kind::Node, n.agent_id.clone()))
                    .or_default();
                s.fine.push(Point { t: t32, v }, FINE_POINTS);
            }
            let previous = inner.slot.replace(slot);
            previous.filter(|p| *p < slot)
        };
        match ended {
            Some(done) => self.close_slot(done, now),
            None => Ok(()),
        }
    }

    /// Coarse points for slot `done` and the write of its rows.
    fn close_slot(&self, done: u64, now: u64) -> Result<(), StoreError> {
        let start = done * self.coarse_secs();
        let end = start + self.coarse_secs();
        let (Ok(start32), Ok(end32)) = (u32::try_from(start), u32::try_from(end)) else {
            return Ok(());
        };
        let mut puts = Vec::new();
        let (forgotten, ids): (Vec<SeriesId>, Vec<SeriesId>) = {
            let mut inner = self.inner.lock();
            for ((kind, id), s) in inner.series.iter_mut() {
                let fine: Vec<Point> = s
                    .fine
                    .since(start32)
                    .filter(|p| p.t < end32)
                    .copied()
                    .collect();
                let Some(mean) = Point::mean(start32, &fine) else {
                    continue;
                };
                s.coarse.push(mean, COARSE_POINTS);
                puts.push((key(*kind, true, id, done), encode(&fine)));
                puts.push((key(*kind, false, id, done), encode(&[mean])));
            }
            let ids = inner.series.keys().cloned().collect();
            (std::mem::take(&mut inner.forgotten), ids)
        };
        // The rows that just fell out of each window (older ones were deleted at start-up
        // or when they fell out).
        let fine_slots = FINE_POINTS as u64 / COARSE_EVERY;
        let mut deletes = Vec::new();
        for (kind, id) in &ids {
            if let Some(s) = done.checked_sub(fine_slots) {
                deletes.push(key(*kind, true, id, s));
            }
            if let Some(s) = done.checked_sub(COARSE_POINTS as u64) {
                deletes.push(key(*kind, false, id, s));
            }
        }
        let prefixes: Vec<String> = forgotten
            .iter()
            .flat_map(|(k, id)| [prefix(*k, true, id), prefix(*k, false, id)])
            .collect();
        let _ = now;
        self.store.history_write(&puts, &deletes, &prefixes)
    }

    /// Writes the coarse step in progress (shutdown): its fine points so far.
    pub fn flush(&self, now: u64) -> Result<(), StoreError> {
        let slot = now / self.coarse_secs();
        let start = u32::try_from(slot * self.coarse_secs()).unwrap_or(u32::MAX);
        let (puts, forgotten) = {
            let mut inner = self.inner.lock();
            let puts: Vec<(String, Vec<u8>)> = inner
                .series
                .iter()
                .filter_map(|((kind, id), s)| {
                    let fine: Vec<Point> = s.fine.since(start).copied().collect();
                    (!fine.is_empty()).then(|| (key(*kind, true, id, slot), encode(&fine)))
                })
                .collect();
            (puts, std::mem::take(&mut inner.forgotten))
        };
        let prefixes: Vec<String> = forgotten
            .iter()
            .flat_map(|(k, id)| [prefix(*k, true, id), prefix(*k, false, id)])
            .collect();
        self.store.history_write(&puts, &[], &prefixes)
    }

    /// `{"t":ISO, ...figures}` points of a series within `range` at `now`, oldest first.
    pub fn points(&self, kind: Kind, id: &str, range: Range, now: u64) -> Vec<Value> {
        let fine = range == Range::Hour;
        let from = u32::try_from(self.window_start(fine, now)).unwrap_or(0);
        let inner = self.inner.lock();
        let Some(s) = inner.series.get(&(kind, id.to_owned())) else {
            return Vec::new();
        };
        let ring = if fine { &s.fine } else { &s.coarse };
        ring.since(from).map(|p| point_json(kind, p)).collect()
    }

    /// Bytes allocated for points, and the number of series (BENCHMARKS.md).
    pub fn allocated(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        let bytes = inner
            .series
            .values()
            .map(|s| s.fine.allocated() + s.coarse.allocated())
            .sum();
        (bytes, inner.series.len())
    }
}

fn point_json(kind: Kind, p: &Point) -> Value {
    let t = format_rfc3339(u64::from(p.t));
    let r1 = |x: f32| (f64::from(x) * 10.0).round() / 10.0;
    match kind {
        Kind::Server => json!({
            "t": t,
            "cpu": r1(p.v[0]),
            "memory": p.v[1].round() as u64,
            "disk": p.v[2].round() as u64,
            "networkRx": p.v[3].round() as u64,
            "networkTx": p.v[4].round() as u64,
        }),
        Kind::Node => json!({
            "t": t,
            "cpu": r1(p.v[0]),
            "memory": r1(p.v[1]),
            "disk": r1(p.v[2]),
            "servers": p.v[3].round() as u64,
        }),
    }
}

fn encode(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * POINT_BYTES);
    for p in points {
        p.encode_into(&mut out);
    }
    out
}

fn prefix(kind: Kind, fine: bool, id: &str) -> String {
    format!("{}{}/{id}/", kind.letter(), if fine { 'f' } else { 'c' })
}

/// `sf/<id>/0000012345`: fixed-width slots keep a series' rows in time order.
fn key(kind: Kind, fine: bool, id: &str, slot: u64) -> String {
    format!("{}{slot:010}", prefix(kind, fine, id))
}

fn parse_key(key: &str) -> Option<(Kind, bool, &str, u64)> {
    let (head, rest) = key.split_at_checked(2)?;
    let kind = match &head[..1] {
        "s" => Kind::Server,
        "a" => Kind::Node,
        _ => return None,
    };
    let fine = match &head[1..] {
        "f" => true,
        "c" => false,
        _ => return None,
    };
    let rest = rest.strip_prefix('/')?;
    let (id, slot) = rest.rsplit_once('/')?;
    Some((kind, fine, id, slot.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{agent, server, temp_dir};
    use proto::message::{Network, UsedPercent};

    fn update(id: &str, cpu: f64, rx: u64) -> ResourceUpdate<'static> {
        ResourceUpdate {
            server_id: id.to_owned().into(),
            cpu,
            memory: UsedPercent {
                used: "100m".into(),
                percentage: 10.0,
            },
            disk: UsedPercent {
                used: "1g".into(),
                percentage: 1.0,
            },
            network: Some(Network { tx: rx / 2, rx }),
        }
    }

    fn node(cpu: f64) -> NodeSample {
        NodeSample {
            agent_id: "a1".into(),
            cpu,
            memory: 50.0,
            disk: 20.0,
            servers: 1,
        }
    }

    #[test]
    fn keys_round_trip() {
        let k = key(Kind::Server, true, "srv-1", 42);
        assert_eq!(k, "sf/srv-1/0000000042");
        assert_eq!(parse_key(&k), Some((Kind::Server, true, "srv-1", 42)));
        assert_eq!(parse_key("x"), None);
        assert_eq!(parse_key("zf/a/1"), None);
    }

    #[test]
    fn steps_make_points_and_survive_a_restart() {
        let dir = temp_dir("history");
        let store = Arc::new(Store::open(&dir).unwrap());
        store.put_agent(&agent("a1", "8g")).unwrap();
        store.insert_server(&server("s1", "a1", 100)).unwrap();
        let base = 1_000_000_020; // a coarse-step boundary with step 5 (60 s)
        let h = History::load(store.clone(), 5, base).unwrap();
        for i in 0..15u64 {
            let now = base + i * 5;
            h.server_sample(&update("s1", i as f64, i * 1000), now);
            h.tick(now, &[node(i as f64)]).unwrap();
        }
        let fine = h.points(Kind::Server, "s1", Range::Hour, base + 70);
        assert_eq!(fine.len(), 15);
        assert_eq!(fine[1]["cpu"], 1.0);
        assert_eq!(fine[1]["memory"], 100 << 20);
        assert_eq!(fine[2]["networkRx"], 200, "1000 bytes in 5 s");
        let coarse = h.points(Kind::Node, "a1", Range::Day, base + 70);
        assert_eq!(coarse.len(), 1, "{coarse:?}");
        assert_eq!(coarse[0]["cpu"], 5.5, "mean of 0..=11");
        h.flush(base + 70).unwrap();
        drop(h);
        let h = History::load(store.clone(), 5, base + 80).unwrap();
        assert_eq!(h.points(Kind::Server, "s1", Range::Hour, base + 80), fine);
        assert_eq!(h.points(Kind::Node, "a1", Range::Day, base + 80), coarse);
        // A deleted server's rows go at the next write.
        h.forget(Kind::Server, "s1");
        assert!(
            h.points(Kind::Server, "s1", Range::Hour, base + 80)
                .is_empty()
        );
        h.flush(base + 80).unwrap();
        let h = History::load(store, 5, base + 80).unwrap();
        assert!(
            h.points(Kind::Server, "s1", Range::Hour, base + 80)
                .is_empty()
        );
        assert_eq!(h.points(Kind::Node, "a1", Range::Hour, base + 80).len(), 15);
        std::fs::remove_dir_all(dir).ok();
    }

    /// BENCHMARKS.md: memory and disk of a full day of history. Run with
    /// `cargo test --release -p panel --lib history::tests::a_full_day -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn a_full_day_of_history_memory_disk_and_time() {
        let servers: usize = std::env::var("HISTORY_SERVERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let dir = temp_dir("history-day");
        let store = Arc::new(Store::open(&dir).unwrap());
        store.put_agent(&agent("a1", "64g")).unwrap();
        let ids: Vec<String> = (0..servers).map(|i| format!("srv-{i}")).collect();
        for id in &ids {
            store.insert_server(&server(id, "a1", 100)).unwrap();
        }
        let h = History::load(store.clone(), 5, 0).unwrap();
        let start = 1_000_000_020u64;
        let steps = 24 * 3600 / 5 + 720;
        let (mut tick_ns, mut slot_ns, mut slots) = (0u128, 0u128, 0u32);
        for i in 0..steps {
            let now = start + i * 5;
            for id in &ids {
                h.server_sample(&update(id, 1.0, i * 100), now);
            }
            let t = std::time::Instant::now();
            let closing = now.is_multiple_of(60);
            h.tick(now, &[node(1.0)]).unwrap();
            let ns = t.elapsed().as_nanos();
            if closing {
                slot_ns += ns;
                slots += 1;
            } else {
                tick_ns += ns;
            }
        }
        let (bytes, series) = h.allocated();
        h.flush(start + steps * 5).unwrap();
        drop(h);
        drop(store);
        let file = std::fs::metadata(dir.join("panel.redb")).unwrap().len();
        let t = std::time::Instant::now();
        let store = Arc::new(Store::open(&dir).unwrap());
        let h = History::load(store, 5, start + steps * 5).unwrap();
        let load_ms = t.elapsed().as_millis();
        assert_eq!(h.allocated().1, series);
        println!(
            "{servers} servers + 1 node, a day at 5 s: {} B of points per series, {} KiB file              ({} B per series), tick {} µs, minute close {} ms, load {load_ms} ms",
            bytes / series,
            file / 1024,
            file / series as u64,
            tick_ns / u128::from((steps as u32 - slots).max(1)) / 1000,
            slot_ns / u128::from(slots.max(1)) / 1_000_000,
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn memory_is_bounded_per_series() {
        let dir = temp_dir("history-bound");
        let store = Arc::new(Store::open(&dir).unwrap());
        let h = History::load(store, 1, 0).unwrap();
        let start = 1_000_000_000u64;
        for i in 0..(FINE_POINTS as u64 * 3) {
            h.server_sample(&update("s1", 1.0, i), start + i);
            h.tick(start + i, &[]).unwrap();
        }
        let (bytes, n) = h.allocated();
        assert_eq!(n, 1);
        // The fine series is full (exactly its cap); the coarse one holds 180 points of its
        // 1,440 and has grown only to a power of two above that (`ring` tests the full cap).
        let point = std::mem::size_of::<Point>();
        let coarse_points = FINE_POINTS * 3 / COARSE_EVERY as usize;
        assert_eq!(
            bytes,
            (FINE_POINTS + coarse_points.next_power_of_two()) * point
        );
        assert!(bytes <= (FINE_POINTS + COARSE_POINTS) * point);
        assert_eq!(
            h.points(
                Kind::Server,
                "s1",
                Range::Hour,
                start + FINE_POINTS as u64 * 3
            )
            .len(),
            FINE_POINTS
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
