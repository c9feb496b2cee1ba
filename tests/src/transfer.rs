//! Streaming HTTP/1.1 over TLS for the file-transfer tests: uploads generated on the fly
//! (`Content-Length` or chunked), downloads hashed as they arrive, and uploads cut off in
//! the middle. Neither side ever holds the whole file, so the test itself stays small too.
//! Also the memory readings of the processes under test (`/proc/PID/status`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
use ring::digest::{Context, SHA256};

/// A deterministic byte stream: `len` bytes from `seed`, produced piece by piece.
pub struct Generator {
    state: u64,
    left: u64,
}

impl Generator {
    pub fn new(seed: u64, len: u64) -> Generator {
        Generator {
            state: seed | 1,
            left: len,
        }
    }

    /// The next piece (at most `max` bytes); empty at the end.
    pub fn next_piece(&mut self, max: usize) -> Vec<u8> {
        let n = usize::try_from(self.left).unwrap_or(usize::MAX).min(max);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            // xorshift64*: cheap, and no two 8-byte words of a file repeat.
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let word = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            let take = (n - out.len()).min(8);
            out.extend_from_slice(&word[..take]);
        }
        self.left -= n as u64;
        out
    }

    /// SHA-256 of the whole stream (consumes it).
    pub fn sha256(mut self) -> String {
        let mut ctx = Context::new(&SHA256);
        loop {
            let piece = self.next_piece(1 << 16);
            if piece.is_empty() {
                return hex(ctx.finish().as_ref());
            }
            ctx.update(&piece);
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How an upload's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    Chunked,
}

/// An answer: status, header fields (names lower-cased), and the body's length and SHA-256
/// (the body itself is kept only when it is small, for error messages).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub len: u64,
    pub sha256: String,
    pub small_body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client for one panel (its `https://ADDR`, CA and bearer token).
pub struct Client {
    pub url: ctrl_io::Url,
    pub tls: Arc<rustls::ClientConfig>,
    pub token: String,
}

const PIECE: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(300);

impl Client {
    pub fn new(base: &str, tls: Arc<rustls::ClientConfig>, token: &str) -> Client {
        Client {
            url: ctrl_io::Url::parse(base).expect("panel URL"),
            tls,
            token: token.to_owned(),
        }
    }

    async fn connect(&self) -> io::Result<ctrl_io::TlsConn> {
        ctrl_io::connect_tls(&self.url, &self.tls)
            .await
            .map_err(io::Error::other)
    }

    /// `GET path`, the body hashed as it streams in.
    pub fn get(&self, path: &str) -> io::Result<Answer> {
        smol::block_on(with_timeout(async {
            let mut conn = self.connect().await?;
            let head = format!(
                "GET {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
                self.url.authority(),
                self.token
            );
            conn.write_all(head.as_bytes()).await?;
            conn.flush().await?;
            read_answer(&mut conn).await
        }))
    }

    /// `PUT path` with `source`'s bytes as the body, sent as they are generated.
    pub fn put(&self, path: &str, mut source: Generator, framing: Framing) -> io::Result<Answer> {
        let total = source.left;
        smol::block_on(with_timeout(async {
            let mut conn = self.connect().await?;
            let length = match framing {
                Framing::ContentLength => format!("content-length: {total}"),
                Framing::Chunked => "transfer-encoding: chunked".to_owned(),
            };
            let head = format!(
                "PUT {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/octet-stream\r\n{length}\r\nconnection: close\r\n\r\n",
                self.url.authority(),
                self.token
            );
            conn.write_all(head.as_bytes()).await?;
            loop {
                let piece = source.next_piece(PIECE);
                if piece.is_empty() {
                    break;
                }
                match framing {
                    Framing::ContentLength => conn.write_all(&piece).await?,
                    Framing::Chunked => {
                        conn.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                            .await?;
                        conn.write_all(&piece).await?;
                        conn.write_all(b"\r\n").await?;
                    }
                }
            }
            if framing == Framing::Chunked {
                conn.write_all(b"0\r\n\r\n").await?;
            }
            conn.flush().await?;
            read_answer(&mut conn).await
        }))
    }

    /// `PUT path` announcing `declared` bytes and sending none: the answer to the head alone.
    pub fn put_head_only(&self, path: &str, declared: u64) -> io::Result<Answer> {
        smol::block_on(with_timeout(async {
            let mut conn = self.connect().await?;
            let head = format!(
                "PUT {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-length: {declared}\r\n\r\n",
                self.url.authority(),
                self.token
            );
            conn.write_all(head.as_bytes()).await?;
            conn.flush().await?;
            read_answer(&mut conn).await
        }))
    }

    /// `PUT path` announcing `declared` bytes, of which only `sent` are sent before the
    /// connection is dropped.
    pub fn put_and_hang_up(&self, path: &str, declared: u64, sent: u64) -> io::Result<()> {
        smol::block_on(with_timeout(async {
            let mut conn = self.connect().await?;
            let head = format!(
                "PUT {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-length: {declared}\r\n\r\n",
                self.url.authority(),
                self.token
            );
            conn.write_all(head.as_bytes()).await?;
            let mut source = Generator::new(7, sent);
            loop {
                let piece = source.next_piece(PIECE);
                if piece.is_empty() {
                    break;
                }
                conn.write_all(&piece).await?;
            }
            conn.flush().await?;
            // Give the panel time to pass what it has to the agent, then vanish.
            smol::Timer::after(Duration::from_millis(500)).await;
            Ok(())
        }))
    }
}

async fn with_timeout<T>(fut: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    futures_lite::future::or(fut, async {
        smol::Timer::after(TIMEOUT).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "transfer timed out",
        ))
    })
    .await
}

/// Reads a response head, then its body (`content-length`, or until the connection closes),
/// hashing it.
async fn read_answer(conn: &mut ctrl_io::TlsConn) -> io::Result<Answer> {
    let mut buf = Vec::new();
    let mut piece = vec![0u8; PIECE];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("response head too large"));
        }
        let n = conn.read(&mut piece).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
        }
        buf.extend_from_slice(&piece[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let declared = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let mut ctx = Context::new(&SHA256);
    let mut len = 0u64;
    let mut small = Vec::new();
    let mut take = |bytes: &[u8], len: &mut u64| {
        ctx.update(bytes);
        *len += bytes.len() as u64;
        if small.len() < 4096 {
            small.extend_from_slice(&bytes[..bytes.len().min(4096 - small.len())]);
        }
    };
    take(&buf[head_end..], &mut len);
    loop {
        if declared.is_some_and(|d| len >= d) {
            break;
        }
        let n = match conn.read(&mut piece).await {
            Ok(n) => n,
            // Without a length, the end is the connection's end, however it closes.
            Err(_) if declared.is_none() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if declared.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {len} of {declared:?} bytes"),
                ));
            }
            break;
        }
        take(&piece[..n], &mut len);
    }
    Ok(Answer {
        status,
        headers,
        len,
        sha256: hex(ctx.finish().as_ref()),
        small_body: String::from_utf8_lossy(&small).into_owned(),
    })
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{name} missing for pid {pid}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets a process's peak RSS (`VmHWM`) to its current RSS (`/proc/PID/clear_refs` `5`),
/// so the peak read after a transfer is the transfer's own.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}
