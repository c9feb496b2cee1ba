//! File transfers through the agent, a chunk per command, never a whole file in memory.
//!
//! - Download: the first `read_file_chunk` gives the size (the `Content-Length`); then up to
//!   [`WINDOW`] chunks are in flight at once, each its own task, handed to the HTTP server
//!   in order as a [`Streamed`] body. A piece the agent shortened (its frame budget) makes
//!   the pieces after it be asked for again from where it ended, at its size. A file that
//!   changes size, or a chunk that fails, ends the body early (the client sees a short
//!   body). A client that goes away drops the stream, which cancels the chunks in flight.
//! - Upload: the request body, pulled from its [`BodyStream`], is cut into chunks of up to
//!   512 KiB (less when the agent frame limit is smaller); each is sent as a
//!   `write_file_chunk` while the next is read from the client, the last one with `final`.
//!   Any failure (the client hanging up, the agent refusing) sends `cancel_upload`, so the
//!   agent removes its temp file at once.
//! - Chunk commands the agent answers `RATE_LIMITED` are retried after a short pause.
//! - At most [`MAX_TRANSFERS`] run at once on the panel (`BUSY` beyond), so their buffers
//!   are bounded together, not only each.

use async_io::Timer;
use base64::Engine as _;
use futures_lite::{future, stream};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use proto::ErrorCode;
use proto::message::{
    Action, CancelUpload, ChunkWritten, ContentEncoding, FileChunk, ReadFileChunk, Response,
    WriteFileChunk,
};
use proto::validate::{MAX_CHUNK_LENGTH, MAX_WRITE_CHUNK};

use super::{Api, ApiError};
use crate::http::{BodyStream, Streamed};
use crate::hub::HubError;
use crate::store::ServerRecord;

/// Download chunks in flight at once.
pub const WINDOW: usize = 4;
/// Transfers (uploads and downloads) the panel runs at once; beyond, `BUSY`. Each holds a
/// few MiB at most (its chunks in flight), so this bounds them all together.
pub const MAX_TRANSFERS: usize = 32;
/// Times a chunk is sent again while the agent answers `RATE_LIMITED`.
const RATE_RETRIES: u32 = 50;
/// Room kept in a frame for the command's envelope and the other payload members.
const ENVELOPE_RESERVE: usize = 4096;

/// What a transfer step gives: the result, or the agent's refusal (passed on as 502).
type Answered<T> = Result<Result<T, Response<'static>>, HubError>;

/// An answer the agent should never give, as an error response the API passes on.
fn malformed(what: &str, detail: impl std::fmt::Display) -> Response<'static> {
    Response::err(
        Cow::Borrowed("-"),
        Cow::Owned(proto::time::now_rfc3339()),
        ErrorCode::InternalError,
        format!("the agent's answer to {what} is malformed: {detail}"),
    )
}

/// One of the [`MAX_TRANSFERS`] places, held for a transfer's whole life.
struct Slot(Arc<Api>);

impl Slot {
    fn take(api: &Arc<Api>) -> Result<Slot, ApiError> {
        use std::sync::atomic::Ordering;
        let taken = api
            .transfers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_TRANSFERS).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Slot(api.clone())),
            Err(_) => Err(ApiError::new(
                ErrorCode::Busy,
                format!(
                    "{MAX_TRANSFERS} file transfers are in progress on this panel; retry shortly"
                ),
            )),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0
            .transfers
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The agent and server a transfer is about.
#[derive(Clone)]
struct Target {
    api: Arc<Api>,
    agent: String,
    server: String,
}

impl Target {
    fn of(api: &Arc<Api>, rec: &ServerRecord) -> Target {
        Target {
            api: api.clone(),
            agent: rec.agent_id.clone(),
            server: rec.server_id.clone(),
        }
    }

    /// Sends `action`, again after a pause while the agent answers `RATE_LIMITED`.
    async fn command(&self, action: Action<'static>) -> Result<Response<'static>, HubError> {
        let mut attempt = 0u32;
        loop {
            let r = self
                .api
                .hub
                .command(&self.agent, Some(&self.server), action.clone())
                .await?;
            let limited = !r.success
                && r.error
                    .as_ref()
                    .is_some_and(|e| e.known_code() == Some(ErrorCode::RateLimited));
            if !limited || attempt >= RATE_RETRIES {
                return Ok(r);
            }
            attempt += 1;
            Timer::after(Duration::from_millis(10 * u64::from(attempt.min(20)))).await;
        }
    }
}

/// One piece read.
struct Piece {
    offset: u64,
    size: u64,
    bytes: Vec<u8>,
}

impl Target {
    async fn read(&self, path: String, offset: u64, length: u64) -> Answered<Piece> {
        let action = Action::ReadFileChunk(ReadFileChunk {
            path: Cow::Owned(path),
            offset,
            length,
        });
        let r = self.command(action).await?;
        if !r.success {
            return Ok(Err(r));
        }
        let chunk: FileChunk = match r.data_as() {
            Ok(c) => c,
            Err(e) => return Ok(Err(malformed("read_file_chunk", e))),
        };
        let bytes = match chunk.encoding {
            ContentEncoding::Base64 => {
                match base64::engine::general_purpose::STANDARD.decode(chunk.content.as_bytes()) {
                    Ok(b) => b,
                    Err(e) => return Ok(Err(malformed("read_file_chunk", e))),
                }
            }
            ContentEncoding::Utf8 => chunk.content.into_bytes(),
        };
        Ok(Ok(Piece {
            offset: chunk.offset,
            size: chunk.size,
            bytes,
        }))
    }
}

/// Starts a download: reads the first piece (its answer sizes the response); the rest is
/// read as the response is written. The agent's refusal of the first piece is the `Err`.
pub async fn download(
    api: Arc<Api>,
    rec: &ServerRecord,
    path: String,
) -> Result<Result<Streamed, Response<'static>>, ApiError> {
    let slot = Slot::take(&api)?;
    let target = Target::of(&api, rec);
    let first = match target.read(path.clone(), 0, MAX_CHUNK_LENGTH).await? {
        Ok(p) => p,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let got = first.bytes.len() as u64;
    if first.offset != 0 || got > first.size {
        return Ok(Err(malformed(
            "read_file_chunk",
            "the first piece does not fit",
        )));
    }
    let head = crate::http::Response::text(200, "application/octet-stream", Vec::new())
        .with_header("content-disposition", &content_disposition(&path))
        .with_header("cache-control", "no-store")
        .with_header("x-content-type-options", "nosniff");
    let length = first.size;
    let state = Download {
        target,
        path,
        size: first.size,
        delivered: got,
        requested: got,
        // A shortened first piece shows what fits in the agent's frames.
        chunk: if got < first.size && got > 0 {
            got.min(MAX_CHUNK_LENGTH)
        } else {
            MAX_CHUNK_LENGTH
        },
        pending: VecDeque::new(),
        first: Some(first.bytes).filter(|b| !b.is_empty()),
        failed: false,
        _slot: slot,
    };
    Ok(Ok(Streamed {
        head,
        length,
        body: Box::pin(stream::unfold(state, Download::step)),
    }))
}

/// A chunk in flight: where it starts, how much was asked, and its task (dropping it
/// cancels the command).
type InFlight = (u64, u64, crate::exec::Task<Answered<Piece>>);

/// A download in progress (see the module docs).
struct Download {
    target: Target,
    path: String,
    size: u64,
    /// Bytes handed to the HTTP server.
    delivered: u64,
    /// Where the next chunk to ask for starts.
    requested: u64,
    /// Length of each chunk asked for.
    chunk: u64,
    pending: VecDeque<InFlight>,
    first: Option<Vec<u8>>,
    failed: bool,
    _slot: Slot,
}

impl Download {
    async fn step(mut self) -> Option<(Result<Vec<u8>, String>, Download)> {
        if self.failed {
            return None;
        }
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        if self.delivered >= self.size {
            return None;
        }
        self.refill();
        let (offset, asked, task) = self.pending.pop_front()?;
        let piece = match task.await {
            Ok(Ok(p)) => p,
            Ok(Err(refusal)) => {
                let why = refusal
                    .error
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .unwrap_or_default();
                return self.fail(format!("the agent refused a chunk: {why}"));
            }
            Err(e) => return self.fail(e.to_string()),
        };
        let got = piece.bytes.len() as u64;
        if piece.size != self.size {
            let why = format!(
                "the file changed size during the download ({} -> {} bytes)",
                self.size, piece.size
            );
            return self.fail(why);
        }
        if piece.offset != offset || got == 0 || got > asked {
            return self.fail(format!(
                "the agent answered {got} bytes at {} for {asked} at {offset}",
                piece.offset
            ));
        }
        if got < asked {
            // Shortened to fit the agent's frames: what was asked after it starts past a
            // gap. Ask again from here, at the size the agent sends.
            self.pending.clear();
            self.chunk = got;
            self.requested = offset + got;
        }
        self.delivered = offset + got;
        Some((Ok(piece.bytes), self))
    }

    /// Keeps [`WINDOW`] chunks in flight.
    fn refill(&mut self) {
        while self.pending.len() < WINDOW && self.requested < self.size {
            let len = self.chunk.min(self.size - self.requested);
            let (target, path, offset) = (self.target.clone(), self.path.clone(), self.requested);
            let task = crate::exec::spawn(async move { target.read(path, offset, len).await });
            self.pending.push_back((offset, len, task));
            self.requested += len;
        }
    }

    fn fail(mut self, why: String) -> Option<(Result<Vec<u8>, String>, Download)> {
        self.failed = true;
        self.pending.clear();
        let why = format!("download of {}: {why}", self.path);
        Some((Err(why), self))
    }
}

/// `Content-Disposition: attachment` for the last component of `path`: an ASCII
/// `filename` (anything else, quotes, `\`, `;` and `%` become `_`) and the exact name as
/// RFC 8187 `filename*`.
pub fn content_disposition(path: &str) -> String {
    let name = path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("download");
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " !#$&'()+,-.=@[]^_`{}~".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// A fresh upload id (`A-Z a-z 0-9`, 24 characters).
fn upload_id() -> String {
    proto::jwt::random_id()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect()
}

/// Cuts a streamed body into chunks of a given size.
struct Chunker {
    body: BodyStream,
    leftover: Vec<u8>,
    ended: bool,
}

impl Chunker {
    /// The next chunk of at most `size` bytes, and whether the body ended with it.
    async fn next(&mut self, size: usize) -> Result<(Vec<u8>, bool), ApiError> {
        let mut out = std::mem::take(&mut self.leftover);
        while out.len() < size && !self.ended {
            match self.body.next().await.map_err(ApiError::Body)? {
                Some(piece) if out.is_empty() => out = piece,
                Some(piece) => out.extend_from_slice(&piece),
                None => self.ended = true,
            }
        }
        if out.len() > size {
            self.leftover = out.split_off(size);
        }
        Ok((out, self.ended && self.leftover.is_empty()))
    }
}

/// The sending side of an upload.
struct Upload<'a> {
    target: Target,
    path: &'a str,
    id: String,
    offset: u64,
    begun: bool,
}

impl Upload<'_> {
    async fn write(&mut self, bytes: Vec<u8>, is_final: bool) -> Answered<u64> {
        let len = bytes.len() as u64;
        let content = base64::engine::general_purpose::STANDARD.encode(&bytes);
        drop(bytes);
        let action = Action::WriteFileChunk(WriteFileChunk {
            path: Cow::Owned(self.path.to_owned()),
            upload_id: Cow::Owned(self.id.clone()),
            offset: self.offset,
            content: Cow::Owned(content),
            encoding: ContentEncoding::Base64,
            is_final,
        });
        self.begun = true;
        let r = self.target.command(action).await?;
        if !r.success {
            return Ok(Err(r));
        }
        let written: ChunkWritten = match r.data_as() {
            Ok(w) => w,
            Err(e) => return Ok(Err(malformed("write_file_chunk", e))),
        };
        if Some(written.written) != self.offset.checked_add(len) {
            return Ok(Err(malformed(
                "write_file_chunk",
                format!(
                    "{} bytes written, {} expected",
                    written.written,
                    self.offset + len
                ),
            )));
        }
        self.offset = written.written;
        Ok(Ok(self.offset))
    }

    /// Drops the upload on the agent (best effort: the agent also drops it on its own).
    async fn cancel(&self) {
        let action = Action::CancelUpload(CancelUpload {
            upload_id: Cow::Owned(self.id.clone()),
        });
        if let Err(e) = self.target.command(action).await {
            log::debug!("cancel_upload {} failed: {e}", self.id);
        }
    }
}

/// Streams `body` into the file `path` of the server; returns its size, or the agent's
/// refusal. On any failure the agent's upload is cancelled.
pub async fn upload(
    api: &Arc<Api>,
    rec: &ServerRecord,
    path: &str,
    body: BodyStream,
) -> Result<Result<u64, Response<'static>>, ApiError> {
    let _slot = Slot::take(api)?;
    let chunk = MAX_WRITE_CHUNK.min(api.max_frame.saturating_sub(ENVELOPE_RESERVE) / 4 * 3);
    if chunk == 0 {
        return Err(ApiError::new(
            ErrorCode::InternalError,
            "the agent frame limit is too small for uploads",
        ));
    }
    let mut chunker = Chunker {
        body,
        leftover: Vec::new(),
        ended: false,
    };
    let mut up = Upload {
        target: Target::of(api, rec),
        path,
        id: upload_id(),
        offset: 0,
        begun: false,
    };
    let result = pipeline(&mut chunker, &mut up, chunk).await;
    if !matches!(result, Ok(Ok(_))) && up.begun {
        up.cancel().await;
    }
    result
}

/// Each chunk is written while the next one is read from the client.
async fn pipeline(
    chunker: &mut Chunker,
    up: &mut Upload<'_>,
    chunk: usize,
) -> Result<Result<u64, Response<'static>>, ApiError> {
    let mut current = chunker.next(chunk).await?;
    loop {
        let (bytes, ended) = current;
        if ended {
            return Ok(up.write(bytes, true).await?);
        }
        let (sent, next) = future::zip(up.write(bytes, false), chunker.next(chunk)).await;
        if let Err(refusal) = sent? {
            return Ok(Err(refusal));
        }
        current = next?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_is_safe_and_exact() {
        assert_eq!(
            content_disposition("/server/world/level.dat"),
            "attachment; filename=\"level.dat\"; filename*=UTF-8''level.dat"
        );
        assert_eq!(
            content_disposition("/server/we\"ird näme;.txt"),
            "attachment; filename=\"we_ird n_me_.txt\"; filename*=UTF-8''we%22ird%20n%C3%A4me%3B.txt"
        );
        let evil = content_disposition("/server/a\r\nset-cookie: x=1\\%41");
        assert!(!evil.contains(['\r', '\n', '\\']), "{evil}");
        assert!(
            evil.starts_with("attachment; filename=\"a__set-cookie_ x=1__41\""),
            "{evil}"
        );
        assert_eq!(
            content_disposition("/server"),
            "attachment; filename=\"server\"; filename*=UTF-8''server"
        );
    }

    #[test]
    fn upload_ids_are_valid() {
        for _ in 0..50 {
            proto::validate::upload_id(&upload_id()).unwrap();
        }
    }

    #[test]
    fn a_body_is_cut_into_exact_chunks() {
        smol::block_on(async {
            let (tx, body) = BodyStream::channel(None);
            let feeder = smol::spawn(async move {
                for n in [3usize, 10, 1, 7] {
                    tx.send(Ok(Some(vec![n as u8; n]))).await.unwrap();
                }
                tx.send(Ok(None)).await.unwrap();
            });
            let mut c = Chunker {
                body,
                leftover: Vec::new(),
                ended: false,
            };
            let mut sizes = Vec::new();
            loop {
                let (bytes, ended) = c.next(8).await.unwrap();
                sizes.push(bytes.len());
                if ended {
                    break;
                }
            }
            feeder.await;
            assert_eq!(sizes, vec![8, 8, 5]);
            // A client that hangs up is an error, not an end.
            let (tx, body) = BodyStream::channel(Some(100));
            tx.send(Ok(Some(vec![1; 4]))).await.unwrap();
            tx.send(Err(crate::http::BodyError::Eof(4))).await.unwrap();
            let mut c = Chunker {
                body,
                leftover: Vec::new(),
                ended: false,
            };
            assert!(matches!(
                c.next(8).await,
                Err(ApiError::Body(crate::http::BodyError::Eof(4)))
            ));
        });
    }
}
