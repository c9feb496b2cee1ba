//! The client side of HTTP/1.1: parsing a response head ([`head`]), the one chunked decoder
//! ([`chunked`], sans I/O so it can be fuzzed), and a buffered connection that reads whole
//! responses ([`conn`]) for the REST client.
//!
//! Everything here treats the server as hostile: every size from the wire (`Content-Length`,
//! chunk sizes, the running body total) goes through checked arithmetic and a limit, heads,
//! chunk lines and trailers are bounded, and a response that is not exactly what HTTP/1.1
//! allows is an error ([`crate::ClientError::Http`]), never a panic or an unbounded buffer.

pub mod chunked;
pub mod conn;
pub mod head;

pub use chunked::ChunkedDecoder;
pub use conn::{HttpConn, ReadOptions, Response};
pub use head::{Framing, Head, parse_head};

/// Largest response head accepted (status line + headers), and largest trailer section.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line (size, extensions), without its CRLF.
pub const MAX_CHUNK_LINE: usize = 1024;
/// Interim (1xx) responses skipped before the real answer; more is a misbehaving server.
pub const MAX_INTERIM: usize = 8;

/// Position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
