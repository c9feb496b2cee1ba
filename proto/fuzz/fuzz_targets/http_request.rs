//! Arbitrary bytes through the panel's HTTP/1.1 request reader, as a keep-alive connection
//! reads them (request after request until an error or the end of input). Besides "never
//! panics, never hangs":
//! - every accepted request respects the limits (body size, path shape);
//! - every refusal maps to one of the statuses the server sends;
//! - the outcome does not depend on how the bytes arrive: the input split into chunks at
//!   positions derived from the data reads exactly as the input in one piece.
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use libfuzzer_sys::fuzz_target;
use panel::http::parse::{Conn, Limits, ReadError};

const LIMITS: Limits = Limits {
    max_header_bytes: 1024,
    max_body_bytes: 512,
};
/// Requests read per input at most (each consumes input, so this only bounds the work).
const MAX_REQUESTS: usize = 64;

/// Serves reads from fixed chunks, one chunk per read, then end of stream; drops writes.
struct Script(VecDeque<Vec<u8>>);

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Some(chunk) = self.0.front_mut() else {
            return Poll::Ready(Ok(0));
        };
        let n = buf.len().min(chunk.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        chunk.drain(..n);
        if chunk.is_empty() {
            self.0.pop_front();
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Script {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Every request the connection yields, then how it ended, as comparable text.
fn read_all(chunks: VecDeque<Vec<u8>>) -> Vec<String> {
    let mut conn = Conn::new(Script(chunks));
    let peer = "127.0.0.1:9".parse().unwrap();
    let mut out = Vec::new();
    for _ in 0..MAX_REQUESTS {
        match futures_lite::future::block_on(conn.read_request(&LIMITS, peer)) {
            Ok(p) => {
                let r = &p.request;
                assert!(r.body.len() <= LIMITS.max_body_bytes, "body over the limit");
                assert!(r.path.starts_with('/') || r.path == "*", "path {:?}", r.path);
                out.push(format!(
                    "{} {:?} {:?} {:?} {:?} ka={}",
                    r.method, r.path, r.query, r.headers, r.body, p.keep_alive
                ));
                if !p.keep_alive {
                    break;
                }
            }
            Err(ReadError::Http(e)) => {
                let status = e.to_response().status;
                assert!(
                    [400, 413, 417, 431, 501, 505].contains(&status),
                    "unexpected status {status} for {e:?}"
                );
                out.push(format!("http {e:?}"));
                break;
            }
            Err(ReadError::Eof) => {
                out.push("eof".into());
                break;
            }
            Err(ReadError::Io(e)) => panic!("in-memory reads do not fail: {e}"),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = read_all(VecDeque::from([input.to_vec()]));
    // Split where the seed says: chunk lengths 1..=16 from a small xorshift stream.
    let mut state = u32::from(seed) | 0x100;
    let mut chunks = VecDeque::new();
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (1 + (state % 16) as usize).min(rest.len());
        chunks.push_back(rest[..n].to_vec());
        rest = &rest[n..];
    }
    let split = read_all(chunks);
    assert_eq!(whole, split, "the outcome depends on how the input is split");
});
