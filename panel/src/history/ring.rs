//! Bounded series of points: the newest `cap` points, oldest first. The buffer grows with
//! the points it holds (doubling, from [`MIN_POINTS`], never past `cap`), so a full series
//! costs exactly `cap` points and a young one only what it holds: a panel restarted on a
//! data dir whose 10,000 nodes each have a few points of history allocated 568 MB when every
//! series took its whole day up front (BENCHMARKS.md, round 4).

use std::collections::VecDeque;

/// Figures per point: servers use all five (cpu %, memory bytes, disk bytes, network
/// receive and send bytes/s), nodes the first four (cpu %, memory %, disk %, servers).
pub const FIGURES: usize = 5;

/// One point: unix seconds and its figures. 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: u32,
    pub v: [f32; FIGURES],
}

/// The first allocation of a series, in points.
pub const MIN_POINTS: usize = 16;

/// Bytes of one encoded point.
pub const POINT_BYTES: usize = 4 + 4 * FIGURES;

impl Point {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.t.to_le_bytes());
        for f in self.v {
            out.extend_from_slice(&f.to_le_bytes());
        }
    }

    /// Points of `bytes` (a trailing partial point is ignored).
    pub fn decode_all(bytes: &[u8]) -> impl Iterator<Item = Point> + '_ {
        bytes.chunks_exact(POINT_BYTES).map(|c| {
            let word = |i: usize| [c[i], c[i + 1], c[i + 2], c[i + 3]];
            let mut v = [0f32; FIGURES];
            for (k, f) in v.iter_mut().enumerate() {
                *f = f32::from_le_bytes(word(4 + 4 * k));
            }
            Point {
                t: u32::from_le_bytes(word(0)),
                v,
            }
        })
    }

    /// The mean of `points` at time `t` (`None` if there are none).
    pub fn mean(t: u32, points: &[Point]) -> Option<Point> {
        if points.is_empty() {
            return None;
        }
        let mut v = [0f64; FIGURES];
        for p in points {
            for (acc, f) in v.iter_mut().zip(p.v) {
                *acc += f64::from(f);
            }
        }
        let n = points.len() as f64;
        Some(Point {
            t,
            v: v.map(|s| (s / n) as f32),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Ring {
    points: VecDeque<Point>,
}

impl Ring {
    /// Appends `p` (keeping at most `cap`); a point not newer than the last replaces it.
    pub fn push(&mut self, p: Point, cap: usize) {
        let len = self.points.len();
        if len == self.points.capacity() && len < cap {
            let grown = (len * 2).max(MIN_POINTS).min(cap);
            self.points.reserve_exact(grown - len);
        }
        if let Some(last) = self.points.back_mut()
            && last.t >= p.t
        {
            if last.t == p.t {
                *last = p;
            }
            return;
        }
        if self.points.len() >= cap {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    /// Points with `t >= from`, oldest first.
    pub fn since(&self, from: u32) -> impl Iterator<Item = &Point> {
        self.points.iter().filter(move |p| p.t >= from)
    }

    /// Bytes allocated for points.
    pub fn allocated(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<Point>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: u32, x: f32) -> Point {
        Point { t, v: [x; FIGURES] }
    }

    #[test]
    fn keeps_the_newest_cap_points_in_order() {
        let mut r = Ring::default();
        for t in 0..10 {
            r.push(p(t, t as f32), 4);
        }
        let ts: Vec<u32> = r.since(0).map(|p| p.t).collect();
        assert_eq!(ts, [6, 7, 8, 9]);
        assert_eq!(r.since(8).count(), 2);
        // Same time replaces, older is ignored.
        r.push(p(9, 42.0), 4);
        r.push(p(3, 1.0), 4);
        assert_eq!(r.since(9).next().unwrap().v[0], 42.0);
        assert_eq!(r.since(0).count(), 4);
        assert_eq!(r.allocated(), 4 * std::mem::size_of::<Point>());
    }

    #[test]
    fn grows_with_its_points_up_to_exactly_cap() {
        let cap = 720;
        let mut r = Ring::default();
        assert_eq!(r.allocated(), 0);
        r.push(p(0, 0.0), cap);
        assert_eq!(r.allocated(), MIN_POINTS * std::mem::size_of::<Point>());
        for t in 1..100 {
            r.push(p(t, 0.0), cap);
        }
        let young = r.allocated() / std::mem::size_of::<Point>();
        assert!((100..200).contains(&young), "{young} slots for 100 points");
        for t in 100..3000 {
            r.push(p(t, 0.0), cap);
        }
        assert_eq!(r.allocated(), cap * std::mem::size_of::<Point>());
        assert_eq!(r.since(0).count(), cap);
        assert_eq!(r.since(0).next().unwrap().t, 3000 - cap as u32);
    }

    #[test]
    fn encoding_round_trips_and_means_average() {
        let pts = [p(1, 1.5), p(2, 2.5)];
        let mut buf = Vec::new();
        for x in &pts {
            x.encode_into(&mut buf);
        }
        buf.push(7); // a torn tail
        let back: Vec<Point> = Point::decode_all(&buf).collect();
        assert_eq!(back, pts);
        assert_eq!(Point::mean(0, &pts).unwrap().v[0], 2.0);
        assert_eq!(Point::mean(0, &[]), None);
        assert_eq!(std::mem::size_of::<Point>(), POINT_BYTES);
    }
}
