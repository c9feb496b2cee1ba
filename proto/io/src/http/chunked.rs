//! The chunked transfer-coding decoder (RFC 9112 §7.1), without I/O: the caller feeds it
//! whatever bytes arrived and it consumes what it can. Being sans-I/O makes it the same code
//! for every reader and lets the fuzz target (`proto/fuzz`, target `chunked`) drive it
//! directly.
//!
//! Bounds: a chunk-size line is at most [`MAX_CHUNK_LINE`] bytes, the body at most the
//! caller's `max_body` (checked with the chunk size *before* any data is taken, in checked
//! arithmetic: `1` then `FFFFFFFFFFFFFFFF` cannot wrap past the limit), the trailer section
//! at most [`MAX_HEAD`] bytes.

use super::{MAX_CHUNK_LINE, MAX_HEAD, find};
use crate::ClientError;

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data: this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// The body is complete.
    Done,
}

/// Decodes one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    max_body: usize,
    trailer_bytes: usize,
}

fn bad(why: impl Into<String>) -> ClientError {
    ClientError::Http(why.into())
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `max_body` bytes.
    pub fn new(max_body: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            max_body,
            trailer_bytes: 0,
        }
    }

    /// The last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes as much of `input` as it can, appending chunk data to `body`, and returns how
    /// many bytes it consumed. Bytes after the end of the body are left unconsumed (they
    /// belong to the next response); so is a partial line, which must be offered again with
    /// more bytes after it.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, ClientError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            let used = match self.state {
                State::Done => return Ok(at),
                State::Size => match line(rest, MAX_CHUNK_LINE, "chunk-size line")? {
                    None => return Ok(at),
                    Some(l) => {
                        let size = chunk_size(l)?;
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            self.admit(body.len(), size)?;
                            State::Data(size)
                        };
                        l.len() + 2
                    }
                },
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    // `take` <= `left`, which fits in usize: `admit` checked it against
                    // `max_body`.
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    body.extend_from_slice(&rest[..take]);
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    take
                }
                State::DataEnd => match rest {
                    [] | [b'\r'] => return Ok(at),
                    [b'\r', b'\n', ..] => {
                        self.state = State::Size;
                        2
                    }
                    _ => return Err(bad("chunk data not followed by CRLF")),
                },
                State::Trailers => {
                    let room = MAX_HEAD.saturating_sub(self.trailer_bytes);
                    match line(rest, room, "trailer section")? {
                        None => return Ok(at),
                        Some([]) => {
                            self.state = State::Done;
                            2
                        }
                        Some(l) => {
                            self.trailer_bytes += l.len() + 2;
                            l.len() + 2
                        }
                    }
                }
            };
            at += used;
        }
    }

    /// Refuses a chunk of `size` bytes that would take the body over the limit.
    fn admit(&self, have: usize, size: u64) -> Result<(), ClientError> {
        let total = (have as u64).checked_add(size);
        if total.is_none_or(|t| t > self.max_body as u64) {
            return Err(bad(format!(
                "chunked body over the limit of {} bytes",
                self.max_body
            )));
        }
        Ok(())
    }
}

/// The line at the start of `rest` (without CRLF), `None` if it is not complete yet; longer
/// than `max` is an error, as is a control character other than tab in it.
fn line<'a>(rest: &'a [u8], max: usize, what: &str) -> Result<Option<&'a [u8]>, ClientError> {
    let window = &rest[..rest.len().min(max.saturating_add(2))];
    match find(window, b"\r\n") {
        Some(end) => {
            let l = &rest[..end];
            if l.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(bad(format!("control character in the {what}")));
            }
            Ok(Some(l))
        }
        None if window.len() < max.saturating_add(2) => Ok(None),
        None => Err(bad(format!("{what} longer than {max} bytes"))),
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits, optional whitespace, then extensions (ignored).
fn chunk_size(line: &[u8]) -> Result<u64, ClientError> {
    let digits = line.split(|b| *b == b';').next().unwrap_or(&[]);
    let digits = digits.trim_ascii();
    if digits.is_empty() {
        return Err(bad("empty chunk size"));
    }
    let mut size: u64 = 0;
    for &b in digits {
        let d = (b as char).to_digit(16).ok_or_else(|| {
            bad(format!(
                "bad chunk size {:?}",
                String::from_utf8_lossy(line)
            ))
        })?;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(d)))
            .ok_or_else(|| bad("chunk size does not fit in 64 bits"))?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed `step` bytes at a time, as a network would deliver it; returns the
    /// body and how many bytes of `input` were consumed.
    fn decode_in_steps(
        input: &[u8],
        step: usize,
        max_body: usize,
    ) -> Result<(Vec<u8>, usize), ClientError> {
        let mut dec = ChunkedDecoder::new(max_body);
        let mut body = Vec::new();
        let (mut consumed, mut offered) = (0, 0);
        while !dec.is_done() {
            if offered == input.len() {
                return Err(bad("input ended"));
            }
            offered = (offered + step).min(input.len());
            consumed += dec.decode(&input[consumed..offered], &mut body)?;
        }
        Ok((body, consumed))
    }

    #[test]
    fn decodes_chunks_with_extensions_and_trailers_at_any_split() {
        let raw = b"5;x=y\r\nhello\r\n6 \r\n world\r\n000\r\nX-Trailer: 1\r\n\r\nNEXT";
        for step in 1..=raw.len() {
            let (body, used) = decode_in_steps(raw, step, 1 << 20).unwrap();
            assert_eq!(body, b"hello world", "step {step}");
            assert_eq!(&raw[used..], b"NEXT", "the next response is left alone");
        }
    }

    #[test]
    fn a_chunk_size_that_would_wrap_the_total_is_refused() {
        // 1 + 0xFFFF_FFFF_FFFF_FFFF wraps to 0 in unchecked u64 arithmetic.
        let raw = b"1\r\na\r\nFFFFFFFFFFFFFFFF\r\nbbbb\r\n0\r\n\r\n";
        let e = decode_in_steps(raw, raw.len(), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        let e = decode_in_steps(b"10000000000000000\r\n", 64, usize::MAX).unwrap_err();
        assert!(e.to_string().contains("64 bits"), "{e}");
    }

    #[test]
    fn the_body_limit_counts_every_chunk() {
        let raw = b"4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";
        assert_eq!(decode_in_steps(raw, 3, 8).unwrap().0, b"abcdefgh");
        assert!(decode_in_steps(raw, 3, 7).is_err());
    }

    #[test]
    fn refuses_malformed_chunking() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-1\r\n",
            b"0x5\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\nhello\r\n",
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX: \x01\r\n\r\n",
        ] {
            for step in [1, 4096] {
                assert!(
                    matches!(
                        decode_in_steps(bad, step, 1 << 20),
                        Err(ClientError::Http(_))
                    ),
                    "{:?} step {step}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
    }

    #[test]
    fn lines_and_trailers_are_bounded() {
        let long_line = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(MAX_CHUNK_LINE));
        let e = decode_in_steps(long_line.as_bytes(), 100, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        // Without a CRLF at all, the decoder gives up once the line cannot fit any more.
        let mut dec = ChunkedDecoder::new(1 << 20);
        assert!(dec.decode(&[b'1'; MAX_CHUNK_LINE], &mut Vec::new()).is_ok());
        assert!(
            dec.decode(&[b'1'; 2 * MAX_CHUNK_LINE], &mut Vec::new())
                .is_err()
        );
        // Endless trailers of short lines stop at the trailer limit.
        let mut raw = b"0\r\n".to_vec();
        while raw.len() < MAX_HEAD + 100 {
            raw.extend_from_slice(b"X: y\r\n");
        }
        let e = decode_in_steps(&raw, 4096, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("trailer"), "{e}");
    }

    #[test]
    fn large_chunks_arrive_in_pieces() {
        let data = vec![7u8; 100_000];
        let mut raw = format!("{:x}\r\n", data.len()).into_bytes();
        raw.extend_from_slice(&data);
        raw.extend_from_slice(b"\r\n0\r\n\r\n");
        let (body, used) = decode_in_steps(&raw, 16 * 1024, 1 << 20).unwrap();
        assert_eq!((body, used), (data, raw.len()));
    }
}
