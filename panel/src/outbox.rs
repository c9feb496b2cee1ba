//! The outgoing side of a WebSocket connection: a bounded frame queue that costs nothing
//! while idle, and a writer step that sends everything already queued with one flush.
//!
//! Every agent connection and every events subscriber has one writer task fed by one bounded
//! queue. Those queues are empty almost all the time, so their bound must not be a
//! per-connection cost: `async_channel::bounded(n)` allocates and initialises all `n` slots
//! up front (about 64 B each, 16 KiB for 256 frames, per connection). [`Outbox`] is a
//! `VecDeque` behind a `parking_lot::Mutex` that starts empty, grows only with what is
//! actually queued and gives a large buffer back once it has drained: the bound is a limit,
//! not an allocation. Wake-ups use `event-listener` (the primitive `async-channel` is built
//! on): the writer waits for frames; command senders may wait for room (backpressure).
//!
//! Sending frame by frame flushes once per frame, i.e. one TLS record and one `writev` per
//! frame; at high event rates that syscall cost is the panel's main cost. [`write_batch`]
//! instead feeds the frame it was woken for plus whatever is already queued (at most
//! [`BATCH_FRAMES`] frames / [`BATCH_BYTES`] bytes) and flushes once.
//!
//! Batching what is already queued only helps once a writer falls behind. At ordinary rates
//! (events trickling in from a thousand agents) the writer is woken for every single frame
//! and each becomes its own TLS record and `writev` — on loopback the kernel even charges
//! the receiver's TCP processing to that `writev`. A [`Linger`] turns that into one flush
//! per period: a frame arriving within [`SUBSCRIBER_LINGER`] of the previous flush waits
//! for the rest of that period and goes out with everything queued meanwhile; a frame after
//! a quiet spell, or while the writer is behind (the last batch was full), goes out at once.
//! So a busy stream costs at most one flush per period, a sparse one nothing extra.

use async_tungstenite::WebSocketSender;
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use event_listener::Event;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::SinkExt;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most frames one flush carries.
pub const BATCH_FRAMES: usize = 256;
/// Events subscribers' flush period (see [`Linger`]).
pub const SUBSCRIBER_LINGER: Duration = Duration::from_millis(2);
/// Most payload bytes one flush carries (a batch stops after the frame that crosses it).
pub const BATCH_BYTES: usize = 64 * 1024;
/// A drained queue keeps a buffer of at most this many slots (a burst's larger buffer is
/// freed), so an idle connection holds only a few slots.
const KEEP_SLOTS: usize = 64;

/// Why [`Outbox::try_push`] refused a frame (which is handed back).
#[derive(Debug, PartialEq, Eq)]
pub enum TryPushError<T> {
    Full(T),
    Closed(T),
}

/// The queue was closed; the item is handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed<T>(pub T);

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// A bounded multi-producer, single-consumer FIFO that allocates only what it holds.
pub struct Outbox<T> {
    state: Mutex<State<T>>,
    cap: usize,
    /// A drained queue frees its buffer when it holds more slots than this.
    keep: usize,
    /// Notified when an item is queued or the queue closes (the consumer waits here).
    readable: Event,
    /// Notified when room is made or the queue closes (waiting producers wait here).
    writable: Event,
}

impl<T> Outbox<T> {
    /// An empty queue holding at most `cap` items (at least 1). Allocates nothing yet.
    pub fn new(cap: usize) -> Self {
        Outbox {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            cap: cap.max(1),
            keep: KEEP_SLOTS,
            readable: Event::new(),
            writable: Event::new(),
        }
    }

    /// Like [`new`](Self::new), for a queue that is empty almost always (an agent
    /// connection's: a command now and then): its buffer is freed each time it drains, so an
    /// idle queue holds nothing (about 240 bytes per agent otherwise, BENCHMARKS.md round 4).
    pub fn sparse(cap: usize) -> Self {
        Outbox {
            keep: 0,
            ..Self::new(cap)
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.state.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.lock().items.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Slots currently allocated (what the queue costs right now).
    pub fn allocated(&self) -> usize {
        self.state.lock().items.capacity()
    }

    /// Queues `item` if there is room.
    pub fn try_push(&self, item: T) -> Result<(), TryPushError<T>> {
        {
            let mut s = self.state.lock();
            if s.closed {
                return Err(TryPushError::Closed(item));
            }
            if s.items.len() >= self.cap {
                return Err(TryPushError::Full(item));
            }
            s.items.push_back(item);
        }
        self.readable.notify(1);
        Ok(())
    }

    /// Queues `item`, waiting for room while the queue is full (backpressure).
    pub async fn push(&self, mut item: T) -> Result<(), Closed<T>> {
        loop {
            match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err(TryPushError::Closed(t)) => return Err(Closed(t)),
                Err(TryPushError::Full(t)) => item = t,
            }
            // Listen first, then check again: room made in between is not missed.
            let listener = self.writable.listen();
            match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err(TryPushError::Closed(t)) => return Err(Closed(t)),
                Err(TryPushError::Full(t)) => item = t,
            }
            listener.await;
        }
    }

    /// Queues `item`, dropping the oldest item when full; returns the dropped one.
    pub fn force_push(&self, item: T) -> Result<Option<T>, Closed<T>> {
        let dropped = {
            let mut s = self.state.lock();
            if s.closed {
                return Err(Closed(item));
            }
            let dropped = if s.items.len() >= self.cap {
                s.items.pop_front()
            } else {
                None
            };
            s.items.push_back(item);
            dropped
        };
        self.readable.notify(1);
        Ok(dropped)
    }

    /// Takes the oldest item, if any. Items queued before [`close`](Self::close) can still
    /// be taken.
    pub fn try_pop(&self) -> Option<T> {
        let item = {
            let mut s = self.state.lock();
            let item = s.items.pop_front()?;
            if s.items.is_empty() && s.items.capacity() > self.keep {
                s.items = VecDeque::new();
            }
            item
        };
        self.writable.notify_additional(1);
        Some(item)
    }

    /// Waits for the oldest item; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            if let Some(item) = self.try_pop() {
                return Some(item);
            }
            if self.is_closed() {
                return None;
            }
            let listener = self.readable.listen();
            if let Some(item) = self.try_pop() {
                return Some(item);
            }
            if self.is_closed() {
                return None;
            }
            listener.await;
        }
    }

    /// Refuses further pushes and wakes everyone waiting; returns false if already closed.
    pub fn close(&self) -> bool {
        let was = std::mem::replace(&mut self.state.lock().closed, true);
        self.readable.notify(usize::MAX);
        self.writable.notify(usize::MAX);
        !was
    }
}

/// What one [`write_batch`] sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub frames: u64,
    pub bytes: u64,
}

/// Payload bytes of a data frame (0 for control frames).
pub fn payload_len(m: &WsMessage) -> usize {
    match m {
        WsMessage::Text(t) => t.len(),
        WsMessage::Binary(b) => b.len(),
        _ => 0,
    }
}

/// Sends `first` and the frames already waiting in `queue` (up to [`BATCH_FRAMES`] frames /
/// [`BATCH_BYTES`] bytes) with a single flush. It never waits for more frames: a lone frame
/// goes out at once.
pub async fn write_batch<S>(
    sink: &mut WebSocketSender<S>,
    queue: &Outbox<WsMessage>,
    first: WsMessage,
) -> Result<Sent, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut sent = Sent {
        frames: 1,
        bytes: payload_len(&first) as u64,
    };
    sink.feed(first).await?;
    while (sent.frames as usize) < BATCH_FRAMES && (sent.bytes as usize) < BATCH_BYTES {
        let Some(frame) = queue.try_pop() else { break };
        sent.frames += 1;
        sent.bytes += payload_len(&frame) as u64;
        sink.feed(frame).await?;
    }
    sink.flush().await?;
    Ok(sent)
}

/// At most one flush per period for a writer that is not behind (see the module docs).
#[derive(Debug)]
pub struct Linger {
    period: Duration,
    last_flush: Option<Instant>,
    behind: bool,
}

impl Linger {
    pub fn new(period: Duration) -> Linger {
        Linger {
            period,
            last_flush: None,
            behind: false,
        }
    }

    /// When the next batch may be flushed: `None` for at once.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        if self.behind {
            return None;
        }
        let at = self.last_flush?.checked_add(self.period)?;
        (at > now).then_some(at)
    }

    /// Records a flush of `sent` at `now`.
    pub fn flushed(&mut self, sent: Sent, now: Instant) {
        self.last_flush = Some(now);
        self.behind = sent.frames as usize >= BATCH_FRAMES || sent.bytes as usize >= BATCH_BYTES;
    }
}

/// [`write_batch`], after waiting as `linger` says (the frames queued meanwhile join the
/// batch).
pub async fn write_batch_lingering<S>(
    sink: &mut WebSocketSender<S>,
    queue: &Outbox<WsMessage>,
    first: WsMessage,
    linger: &mut Linger,
) -> Result<Sent, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(at) = linger.due(Instant::now()) {
        async_io::Timer::at(at).await;
    }
    let sent = write_batch(sink, queue, first).await?;
    linger.flushed(sent, Instant::now());
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_tungstenite::WebSocketStream;
    use async_tungstenite::tungstenite::protocol::Role;
    use futures_lite::future;
    use std::sync::Arc;

    #[test]
    fn bounded_fifo_with_explicit_refusals() {
        let q = Outbox::new(2);
        assert_eq!(q.allocated(), 0, "an idle queue allocates nothing");
        q.try_push(1).unwrap();
        q.try_push(2).unwrap();
        assert_eq!(q.try_push(3), Err(TryPushError::Full(3)));
        assert_eq!(q.force_push(4), Ok(Some(1)));
        assert_eq!(q.len(), 2);
        assert_eq!(q.try_pop(), Some(2));
        assert!(q.close());
        assert!(!q.close());
        assert_eq!(q.try_push(5), Err(TryPushError::Closed(5)));
        assert_eq!(q.force_push(6), Err(Closed(6)));
        // What was queued before the close is still delivered, then the end.
        assert_eq!(future::block_on(q.pop()), Some(4));
        assert_eq!(future::block_on(q.pop()), None);
    }

    #[test]
    fn linger_waits_only_after_a_recent_flush_and_never_when_behind() {
        let period = Duration::from_millis(2);
        let mut l = Linger::new(period);
        let t0 = Instant::now();
        assert_eq!(l.due(t0), None, "the first frame goes out at once");
        let one = Sent {
            frames: 1,
            bytes: 10,
        };
        l.flushed(one, t0);
        assert_eq!(l.due(t0), Some(t0 + period));
        assert_eq!(l.due(t0 + period), None, "after a quiet period: at once");
        let full = Sent {
            frames: BATCH_FRAMES as u64,
            bytes: 10,
        };
        l.flushed(full, t0);
        assert_eq!(l.due(t0), None, "a writer that is behind never waits");
        let big = Sent {
            frames: 1,
            bytes: BATCH_BYTES as u64,
        };
        l.flushed(big, t0);
        assert_eq!(l.due(t0), None);
        l.flushed(one, t0);
        assert_eq!(l.due(t0), Some(t0 + period));
    }

    #[test]
    fn a_drained_burst_gives_its_buffer_back() {
        let q = Outbox::new(10_000);
        for i in 0..5_000 {
            q.try_push(i).unwrap();
        }
        assert!(q.allocated() >= 5_000);
        while q.try_pop().is_some() {}
        assert!(q.allocated() <= KEEP_SLOTS, "{}", q.allocated());
        // A sparse queue keeps nothing once drained.
        let q = Outbox::sparse(16);
        q.try_push(1).unwrap();
        q.try_push(2).unwrap();
        assert!(q.allocated() > 0);
        assert_eq!(q.try_pop(), Some(1));
        assert!(q.allocated() > 0, "not drained yet");
        assert_eq!(q.try_pop(), Some(2));
        assert_eq!(q.allocated(), 0);
    }

    #[test]
    fn waiting_producer_gets_room_and_consumer_gets_items() {
        let q = Arc::new(Outbox::new(1));
        smol::block_on(async {
            q.try_push(0u32).unwrap();
            let producer = {
                let q = q.clone();
                smol::spawn(async move {
                    for i in 1..100u32 {
                        q.push(i).await.unwrap();
                    }
                })
            };
            for want in 0..100u32 {
                assert_eq!(q.pop().await, Some(want));
            }
            producer.await;
            // A producer waiting on a full queue is released by close.
            q.try_push(7).unwrap();
            let blocked = {
                let q = q.clone();
                smol::spawn(async move { q.push(8).await })
            };
            while q.writable.total_listeners() == 0 {
                future::yield_now().await;
            }
            q.close();
            assert_eq!(blocked.await, Err(Closed(8)));
        });
    }

    /// An in-memory socket that records every write and flush the WebSocket makes.
    #[derive(Clone, Default)]
    struct Recorder(Arc<parking_lot::Mutex<(Vec<u8>, usize, usize)>>);

    impl Recorder {
        fn take(&self) -> (Vec<u8>, usize, usize) {
            std::mem::take(&mut *self.0.lock())
        }
    }

    impl futures_lite::AsyncRead for Recorder {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Pending
        }
    }

    impl futures_lite::AsyncWrite for Recorder {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut r = self.0.lock();
            r.0.extend_from_slice(buf);
            r.1 += 1;
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.0.lock().2 += 1;
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_batch_is_one_write_and_one_flush_of_everything_queued() {
        smol::block_on(async {
            let socket = Recorder::default();
            let ws = WebSocketStream::from_raw_socket(socket.clone(), Role::Server, None).await;
            let (mut sink, _stream) = ws.split();
            let q = Outbox::new(1000);
            let queued = BATCH_FRAMES + 36;
            for i in 1..queued {
                q.try_push(WsMessage::Text(format!("{i:03}").into()))
                    .unwrap();
            }
            let sent = write_batch(&mut sink, &q, WsMessage::Text("000".into()))
                .await
                .unwrap();
            assert_eq!(
                sent,
                Sent {
                    frames: BATCH_FRAMES as u64,
                    bytes: 3 * BATCH_FRAMES as u64
                }
            );
            assert_eq!(q.len(), queued - BATCH_FRAMES);
            let (raw, writes, flushes) = socket.take();
            assert_eq!(
                (writes, flushes),
                (1, 1),
                "one write and one flush per batch"
            );
            // Every frame, in order: 2-byte header + 3 bytes each.
            assert_eq!(raw.len(), 5 * BATCH_FRAMES);
            for (i, f) in raw.chunks(5).enumerate() {
                assert_eq!(f[..2], [0x81, 3]);
                assert_eq!(f[2..], *format!("{i:03}").as_bytes());
            }
            // A lone frame goes out at once.
            let q = Outbox::new(10);
            let sent = write_batch(&mut sink, &q, WsMessage::Text("x".into()))
                .await
                .unwrap();
            assert_eq!(sent.frames, 1);
            let (raw, writes, flushes) = socket.take();
            assert_eq!((raw, writes, flushes), (vec![0x81, 1, b'x'], 1, 1));
            // A batch also stops at the byte limit.
            let big = || WsMessage::Binary(vec![0u8; BATCH_BYTES / 2].into());
            let q = Outbox::new(10);
            for _ in 0..3 {
                q.try_push(big()).unwrap();
            }
            let sent = write_batch(&mut sink, &q, big()).await.unwrap();
            assert_eq!(sent.frames, 2);
            assert_eq!(q.len(), 2);
        });
    }
}
