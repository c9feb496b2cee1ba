//! Docker's multiplexed stdout/stderr framing, and the output stream built on it.
//!
//! Without a TTY, logs and attach output arrive as frames: an 8-byte header (stream type,
//! three zero bytes, big-endian u32 payload length) then the payload. Chunk boundaries on
//! the socket have nothing to do with frame boundaries, so the [`Demuxer`] is a small state
//! machine fed arbitrary chunks. It hands out payload slices as soon as they arrive
//! (zero-copy, `Bytes::split_to`) instead of buffering whole frames: memory stays bounded
//! whatever length a header claims, and output is never delayed. A frame may therefore come
//! out in several pieces; consumers split lines themselves anyway.

use super::error::DockerError;
use bytes::{Buf, Bytes, BytesMut};
use futures_lite::Stream;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

const HEADER_LEN: usize = 8;

/// Which of the container's streams a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Stdin,
    Stdout,
    Stderr,
    /// Docker's own error channel inside the stream (e.g. a log driver failure).
    System,
}

impl StreamKind {
    fn from_byte(b: u8) -> Option<StreamKind> {
        match b {
            0 => Some(StreamKind::Stdin),
            1 => Some(StreamKind::Stdout),
            2 => Some(StreamKind::Stderr),
            3 => Some(StreamKind::System),
            _ => None,
        }
    }
}

/// The stream did not follow the framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemuxError {
    #[error("bad frame header {0:02x?}")]
    BadHeader([u8; HEADER_LEN]),
    #[error("the stream ended inside a frame")]
    Truncated,
}

/// Incremental decoder for the multiplexed framing. Feed chunks with [`Demuxer::push`],
/// drain pieces with [`Demuxer::next_frame`] until it returns `None`, repeat.
#[derive(Debug, Default)]
pub struct Demuxer {
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// The frame being read and how many payload bytes it still owes.
    current: Option<(StreamKind, usize)>,
    pending: Bytes,
    failed: bool,
}

impl Demuxer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next chunk from the wire. Undrained input is kept in front of it.
    pub fn push(&mut self, chunk: Bytes) {
        if self.failed {
            return;
        }
        if self.pending.is_empty() {
            self.pending = chunk;
        } else {
            let mut joined = BytesMut::with_capacity(self.pending.len() + chunk.len());
            joined.extend_from_slice(&self.pending);
            joined.extend_from_slice(&chunk);
            self.pending = joined.freeze();
        }
    }

    /// The next piece of payload, `None` when more input is needed. After an error the
    /// demuxer stays failed and yields nothing more: the stream can no longer be trusted.
    pub fn next_frame(&mut self) -> Option<Result<(StreamKind, Bytes), DemuxError>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some((kind, remaining)) = self.current {
                if self.pending.is_empty() {
                    return None;
                }
                let n = remaining.min(self.pending.len());
                let data = self.pending.split_to(n);
                self.current = (remaining > n).then_some((kind, remaining - n));
                return Some(Ok((kind, data)));
            }
            if self.pending.is_empty() {
                return None;
            }
            let n = (HEADER_LEN - self.header_len).min(self.pending.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&self.pending[..n]);
            self.pending.advance(n);
            self.header_len += n;
            if self.header_len < HEADER_LEN {
                return None;
            }
            self.header_len = 0;
            match self.parse_header() {
                Ok(frame) => self.current = frame,
                Err(e) => {
                    self.failed = true;
                    self.pending = Bytes::new();
                    return Some(Err(e));
                }
            }
        }
    }

    /// `Ok` when the input so far ended on a frame boundary; call at end of stream.
    pub fn finish(&self) -> Result<(), DemuxError> {
        if self.failed || self.header_len > 0 || self.current.is_some() || !self.pending.is_empty()
        {
            Err(DemuxError::Truncated)
        } else {
            Ok(())
        }
    }

    /// A complete header: the frame to read, or `None` for an empty frame.
    fn parse_header(&self) -> Result<Option<(StreamKind, usize)>, DemuxError> {
        let h = self.header;
        let kind = StreamKind::from_byte(h[0]).ok_or(DemuxError::BadHeader(h))?;
        if h[1..4] != [0, 0, 0] {
            return Err(DemuxError::BadHeader(h));
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        Ok((len > 0).then_some((kind, len)))
    }
}

/// Raw byte chunks from a container stream (an HTTP body or a hijacked socket).
pub(crate) type ChunkSource = Pin<Box<dyn Stream<Item = Result<Bytes, DockerError>> + Send>>;

/// A container's output as `(StreamKind, bytes)` pieces, demultiplexed when the container
/// has no TTY. With a TTY Docker sends raw bytes and every piece is `Stdout`.
pub struct OutputStream {
    source: ChunkSource,
    demux: Option<Demuxer>,
    done: bool,
}

impl OutputStream {
    pub(crate) fn new(source: ChunkSource, tty: bool) -> Self {
        Self {
            source,
            demux: (!tty).then(Demuxer::new),
            done: false,
        }
    }
}

impl Stream for OutputStream {
    type Item = Result<(StreamKind, Bytes), DockerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(d) = &mut this.demux
                && let Some(item) = d.next_frame()
            {
                return Poll::Ready(Some(item.map_err(protocol)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.source.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => match &mut this.demux {
                    Some(d) => d.push(chunk),
                    None if chunk.is_empty() => {}
                    None => return Poll::Ready(Some(Ok((StreamKind::Stdout, chunk)))),
                },
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.done = true;
                    if let Some(Err(e)) = this.demux.as_ref().map(Demuxer::finish) {
                        return Poll::Ready(Some(Err(protocol(e))));
                    }
                }
            }
        }
    }
}

fn protocol(e: DemuxError) -> DockerError {
    DockerError::Protocol(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Feeds `wire` in pieces of `size` bytes and merges consecutive pieces of the same
    /// stream, so the result is comparable whatever the split.
    fn demux_in_pieces(wire: &[u8], size: usize) -> Vec<(StreamKind, Vec<u8>)> {
        let mut d = Demuxer::new();
        let mut out: Vec<(StreamKind, Vec<u8>)> = Vec::new();
        for piece in wire.chunks(size) {
            d.push(Bytes::copy_from_slice(piece));
            while let Some(item) = d.next_frame() {
                let (kind, data) = item.unwrap();
                assert!(!data.is_empty());
                match out.last_mut() {
                    Some((k, buf)) if *k == kind => buf.extend_from_slice(&data),
                    _ => out.push((kind, data.to_vec())),
                }
            }
        }
        d.finish().unwrap();
        out
    }

    #[test]
    fn frames_survive_every_split() {
        let mut wire = frame(1, b"hello\n");
        wire.extend(frame(2, b"oops\n"));
        wire.extend(frame(1, b""));
        wire.extend(frame(1, &[7u8; 300]));
        wire.extend(frame(2, b"x"));
        let expected = vec![
            (StreamKind::Stdout, b"hello\n".to_vec()),
            (StreamKind::Stderr, b"oops\n".to_vec()),
            (StreamKind::Stdout, vec![7u8; 300]),
            (StreamKind::Stderr, b"x".to_vec()),
        ];
        for size in 1..=wire.len() {
            assert_eq!(demux_in_pieces(&wire, size), expected, "split size {size}");
        }
    }

    #[test]
    fn pieces_are_bounded_by_input_not_by_claimed_length() {
        let mut d = Demuxer::new();
        let mut header = vec![1, 0, 0, 0];
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        d.push(Bytes::from(header));
        assert!(d.next_frame().is_none());
        d.push(Bytes::from_static(b"abc"));
        let (kind, data) = d.next_frame().unwrap().unwrap();
        assert_eq!((kind, &data[..]), (StreamKind::Stdout, &b"abc"[..]));
        assert!(d.next_frame().is_none());
        assert_eq!(d.finish(), Err(DemuxError::Truncated));
    }

    #[test]
    fn bad_headers_fail_and_stay_failed() {
        let mut d = Demuxer::new();
        d.push(Bytes::from_static(b"hello world, no framing here"));
        assert!(matches!(
            d.next_frame(),
            Some(Err(DemuxError::BadHeader(_)))
        ));
        d.push(Bytes::from(frame(1, b"later")));
        assert!(d.next_frame().is_none());

        let mut d = Demuxer::new();
        d.push(Bytes::from_static(&[1, 0, 1, 0, 0, 0, 0, 1, b'x']));
        assert!(matches!(
            d.next_frame(),
            Some(Err(DemuxError::BadHeader(_)))
        ));
    }

    #[test]
    fn partial_header_at_end_is_truncation() {
        let mut d = Demuxer::new();
        d.push(Bytes::from_static(&[1, 0, 0]));
        assert!(d.next_frame().is_none());
        assert_eq!(d.finish(), Err(DemuxError::Truncated));
        assert!(Demuxer::new().finish().is_ok());
    }

    fn source(chunks: Vec<Result<Bytes, DockerError>>) -> ChunkSource {
        Box::pin(futures_lite::stream::iter(chunks))
    }

    fn collect(s: OutputStream) -> Vec<Result<(StreamKind, Bytes), DockerError>> {
        smol::block_on(futures_lite::StreamExt::collect(s))
    }

    #[test]
    fn output_stream_demuxes_or_passes_raw() {
        let mut wire = frame(1, b"out");
        wire.extend(frame(2, b"err"));
        let (a, b) = wire.split_at(5);
        let items = collect(OutputStream::new(
            source(vec![
                Ok(Bytes::copy_from_slice(a)),
                Ok(Bytes::copy_from_slice(b)),
            ]),
            false,
        ));
        let items: Vec<_> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            items,
            vec![
                (StreamKind::Stdout, Bytes::from_static(b"out")),
                (StreamKind::Stderr, Bytes::from_static(b"err"))
            ]
        );

        let items = collect(OutputStream::new(
            source(vec![Ok(Bytes::from_static(b"raw tty"))]),
            true,
        ));
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].as_ref().unwrap(),
            &(StreamKind::Stdout, Bytes::from_static(b"raw tty"))
        );
    }

    #[test]
    fn output_stream_reports_truncation_and_source_errors() {
        let items = collect(OutputStream::new(
            source(vec![Ok(Bytes::from_static(&[
                1, 0, 0, 0, 0, 0, 0, 9, b'a',
            ]))]),
            false,
        ));
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(matches!(items[1], Err(DockerError::Protocol(_))));

        let items = collect(OutputStream::new(
            source(vec![
                Err(DockerError::Protocol("x".into())),
                Ok(Bytes::from_static(b"never")),
            ]),
            true,
        ));
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
    }
}
