//! Arbitrary bytes through the clients' HTTP/1.1 response reader and its chunked decoder
//! (`ctrl-io`). The first byte picks a split size, the rest is the input. Besides "never
//! panics, never hangs":
//! - the chunked decoder never consumes more than it was given, never returns a body over
//!   its limit, and gives the same answer fed in one piece or in small pieces;
//! - a body it decodes, re-encoded in chunks, decodes to the same body;
//! - the response reader gives the same answer whatever the sizes of the socket reads, and
//!   never a body over its limit.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use ctrl_io::http::{ChunkedDecoder, HttpConn, ReadOptions};
use futures_lite::AsyncRead;
use libfuzzer_sys::fuzz_target;

const MAX_BODY: usize = 4096;

/// Decodes `input` offered `step` bytes more at a time: `Some((body, consumed))` once the
/// body is complete, `None` when the input ends first, `Err` on a refused body.
fn decode(input: &[u8], step: usize) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut dec = ChunkedDecoder::new(MAX_BODY);
    let mut body = Vec::new();
    let (mut consumed, mut offered) = (0, 0);
    loop {
        offered = (offered + step).min(input.len());
        let used = dec.decode(&input[consumed..offered], &mut body).map_err(|_| ())?;
        consumed += used;
        assert!(consumed <= offered, "consumed more than offered");
        assert!(body.len() <= MAX_BODY, "body over the limit");
        if dec.is_done() {
            return Ok(Some((body, consumed)));
        }
        if offered == input.len() {
            return Ok(None);
        }
    }
}

fn chunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(7) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A socket that returns `step` bytes per read, then end of stream.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

fn read_response(input: &[u8], step: usize) -> Option<(u16, Vec<u8>, bool)> {
    let mut conn = HttpConn::new(Trickle { data: input, step });
    let opts = ReadOptions::body_up_to(MAX_BODY);
    let r = futures_lite::future::block_on(conn.read_response(opts)).ok()?;
    assert!(r.body.len() <= MAX_BODY, "response body over the limit");
    Some((r.status, r.body, r.keep_alive))
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 32) + 1;

    let whole = decode(input, input.len().max(1));
    let pieces = decode(input, step);
    assert_eq!(whole, pieces, "chunked: one piece and {step}-byte pieces differ");
    if let Ok(Some((body, _))) = &whole {
        let again = chunk(body);
        assert_eq!(
            decode(&again, again.len()),
            Ok(Some((body.clone(), again.len()))),
            "re-encoded body"
        );
    }

    let whole = read_response(input, usize::MAX);
    let pieces = read_response(input, step);
    assert_eq!(whole, pieces, "response: one read and {step}-byte reads differ");
});
