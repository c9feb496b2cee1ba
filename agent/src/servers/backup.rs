//! Backups and restores, driven by the panel a chunk at a time over the agent's one
//! authenticated connection (no second channel, no extra credentials to scope).
//!
//! - Backup: the first `backup_read` starts `Volume::archive` on a blocking thread writing
//!   into a bounded queue of [`QUEUE`] pieces of [`PIECE`] bytes; each read takes what the
//!   frame allows. The queue is the backpressure: the archiver waits for the panel, so at
//!   most a few hundred KiB are ever held, whatever the volume's size.
//! - Restore: the first `restore_chunk` (offset 0, server stopped) starts `Volume::restore`
//!   on a blocking thread reading from a bounded queue; each chunk is queued; the final one
//!   queues the end marker and waits for the unpack and the swap (under the server's power
//!   lock, so nothing starts it meanwhile). The swap runs only after the end marker: a
//!   cancelled or abandoned restore leaves the files as they were.
//! - Sessions idle for [`IDLE`] are dropped (the sweep), and all are dropped with the
//!   panel's connection; dropping one ends its thread at its next queue operation.

use super::{Inner, Outcome, ServerError, power};
use crate::files::{FileError, Volume};
use base64::Engine as _;
use parking_lot::Mutex;
use proto::message::{BackupRead, RestoreChunk};
use proto::validate;
use serde_json::json;
use smol::Task;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes the archiver hands over at once.
pub const PIECE: usize = 64 * 1024;
/// Pieces queued between a thread and the panel's chunks.
pub const QUEUE: usize = 4;
/// A session no chunk touched for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(120);
/// Sessions (backups and restores together) one agent runs at once.
pub const MAX_SESSIONS: usize = 8;

type Piece = Result<Vec<u8>, FileError>;

struct BackupSession {
    server: String,
    rx: async_channel::Receiver<Piece>,
    /// Bytes already handed out (the next read's offset).
    offset: u64,
    /// Bytes taken from the queue but not yet handed out.
    pending: Vec<u8>,
    touched: Instant,
}

struct RestoreSession {
    server: String,
    tx: async_channel::Sender<Vec<u8>>,
    done: Task<Result<crate::files::Unpacked, FileError>>,
    offset: u64,
    touched: Instant,
}

/// The sessions in progress.
#[derive(Default)]
pub(super) struct Sessions {
    backups: Mutex<HashMap<String, BackupSession>>,
    restores: Mutex<HashMap<String, RestoreSession>>,
}

impl Sessions {
    fn count(&self) -> usize {
        self.backups.lock().len() + self.restores.lock().len()
    }

    /// Drops sessions idle for longer than `idle` (all of them with `Duration::ZERO`).
    pub(super) fn sweep(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let fresh = |t: Instant| idle > Duration::ZERO && now.duration_since(t) < idle;
        let mut n = 0;
        self.backups.lock().retain(|_, s| {
            let keep = fresh(s.touched);
            n += usize::from(!keep);
            keep
        });
        self.restores.lock().retain(|_, s| {
            let keep = fresh(s.touched);
            n += usize::from(!keep);
            keep
        });
        n
    }
}

fn session_err(what: &str, reason: impl Into<String>) -> ServerError {
    ServerError::Session {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

fn admit(inner: &Inner, what: &str) -> Result<(), ServerError> {
    if inner.sessions.count() >= MAX_SESSIONS {
        return Err(ServerError::Busy {
            server_id: what.to_owned(),
            action: "backup or restore (too many at once)",
        });
    }
    Ok(())
}

/// `backup_read`: the next piece of the server's archive.
pub(super) async fn read(inner: &Inner, sid: &str, req: BackupRead<'static>) -> Outcome {
    validate::backup_read(&req)?;
    let server = inner.get(sid)?;
    let id = req.backup_id.into_owned();
    let what = format!("backup {id}");
    let taken = inner.sessions.backups.lock().remove(&id);
    let mut session = match taken {
        Some(s) if s.server == sid => s,
        Some(s) => {
            inner.sessions.backups.lock().insert(id.clone(), s);
            return Err(session_err(&what, "belongs to another server"));
        }
        None if req.offset == 0 => {
            admit(inner, &what)?;
            start_archive(sid, server.volume.clone())
        }
        None => return Err(session_err(&what, "is not in progress; start again from 0")),
    };
    if req.offset != session.offset {
        return Err(session_err(
            &what,
            format!("read at {}, expected {}", req.offset, session.offset),
        ));
    }
    let room = inner
        .cfg
        .policy
        .max_frame_bytes
        .saturating_sub(super::files::ENVELOPE_RESERVE)
        / 4
        * 3;
    let want = usize::try_from(req.length).unwrap_or(usize::MAX).min(room);
    let mut eof = false;
    while session.pending.len() < want {
        match session.rx.recv().await {
            Ok(Ok(piece)) => session.pending.extend_from_slice(&piece),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                eof = true;
                break;
            }
        }
    }
    let n = want.min(session.pending.len());
    let bytes: Vec<u8> = session.pending.drain(..n).collect();
    let offset = session.offset;
    session.offset += n as u64;
    let eof = eof && session.pending.is_empty();
    if !eof {
        session.touched = Instant::now();
        inner.sessions.backups.lock().insert(id.clone(), session);
    }
    Ok(json!({
        "backupId": id,
        "offset": offset,
        "eof": eof,
        "content": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "encoding": "base64",
    }))
}

/// `backup_cancel`: drops an archive in progress (unknown ones too: it may be done).
pub(super) async fn cancel_backup(inner: &Inner, sid: &str, id: &str) -> Outcome {
    validate::transfer_id("backupId", id)?;
    let mut map = inner.sessions.backups.lock();
    let cancelled = map.get(id).is_some_and(|s| s.server == sid) && map.remove(id).is_some();
    Ok(json!({"backupId": id, "cancelled": cancelled}))
}

fn start_archive(sid: &str, volume: Arc<Volume>) -> BackupSession {
    let (tx, rx) = async_channel::bounded(QUEUE);
    let sid_owned = sid.to_owned();
    smol::unblock(move || {
        let out = QueueWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(PIECE),
        };
        match volume.archive(out) {
            Ok((mut out, packed)) => {
                if out.flush().is_ok() {
                    log::info!(
                        "server {sid_owned}: archived {} entries, {} bytes",
                        packed.entries,
                        packed.bytes
                    );
                }
            }
            Err(e) => {
                let _ = tx.send_blocking(Err(e));
            }
        }
    })
    .detach();
    BackupSession {
        server: sid.to_owned(),
        rx,
        offset: 0,
        pending: Vec::new(),
        touched: Instant::now(),
    }
}

/// A writer that hands full pieces to the queue (blocking while it is full).
struct QueueWriter {
    tx: async_channel::Sender<Piece>,
    buf: Vec<u8>,
}

impl QueueWriter {
    fn push(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .send_blocking(Ok(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "backup dropped"))
    }
}

impl Write for QueueWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.push()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.push()
    }
}

/// `restore_chunk`: one piece of the archive to restore; the final one swaps it in.
pub(super) async fn chunk(inner: &Inner, sid: &str, req: RestoreChunk<'static>) -> Outcome {
    validate::restore_chunk(&req)?;
    let server = inner.get(sid)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(req.content.as_bytes())
        .map_err(|e| ServerError::BadContent(format!("invalid base64: {e}")))?;
    let id = req.restore_id.into_owned();
    let what = format!("restore {id}");
    let taken = inner.sessions.restores.lock().remove(&id);
    let mut session = match taken {
        Some(s) if s.server == sid => s,
        Some(s) => {
            inner.sessions.restores.lock().insert(id.clone(), s);
            return Err(session_err(&what, "belongs to another server"));
        }
        None if req.offset == 0 => {
            admit(inner, &what)?;
            must_be_stopped(inner, sid).await?;
            let volume = server.volume.clone();
            let disk = server.meta.disk;
            let (tx, rx) = async_channel::bounded(QUEUE);
            let rid = id.clone();
            let done = smol::unblock(move || {
                let input = QueueReader {
                    rx,
                    buf: Vec::new(),
                    at: 0,
                    ended: false,
                };
                volume.restore(input, &rid, Some(disk))
            });
            RestoreSession {
                server: sid.to_owned(),
                tx,
                done,
                offset: 0,
                touched: Instant::now(),
            }
        }
        None => return Err(session_err(&what, "is not in progress; start again from 0")),
    };
    if req.offset != session.offset {
        return Err(session_err(
            &what,
            format!("chunk at {}, expected {}", req.offset, session.offset),
        ));
    }
    let len = bytes.len() as u64;
    if !bytes.is_empty() && session.tx.send(bytes).await.is_err() {
        // The unpacker stopped early: its error says why.
        return Err(finished(session.done.await, &what));
    }
    session.offset = session.offset.saturating_add(len);
    if !req.is_final {
        session.touched = Instant::now();
        let written = session.offset;
        inner.sessions.restores.lock().insert(id.clone(), session);
        return Ok(json!({"restoreId": id, "written": written}));
    }
    // The swap must not race a start: hold the power lock, check it is still stopped.
    let _power = power::claim(&server, "restore")?;
    must_be_stopped(inner, sid).await?;
    // The end marker: an empty piece (a closed queue without it is an abandoned restore).
    let _ = session.tx.send(Vec::new()).await;
    drop(session.tx);
    let unpacked = session.done.await?;
    log::info!(
        "server {sid}: restored {} entries, {} bytes",
        unpacked.entries,
        unpacked.bytes
    );
    Ok(json!({
        "restoreId": id,
        "written": session.offset,
        "entries": unpacked.entries,
        "bytes": unpacked.bytes,
    }))
}

fn finished(r: Result<crate::files::Unpacked, FileError>, what: &str) -> ServerError {
    match r {
        Err(e) => e.into(),
        Ok(_) => session_err(what, "ended before its final chunk"),
    }
}

/// `restore_cancel`: drops a restore in progress; the files stay as they were.
pub(super) async fn cancel_restore(inner: &Inner, sid: &str, id: &str) -> Outcome {
    validate::transfer_id("restoreId", id)?;
    let taken = {
        let mut map = inner.sessions.restores.lock();
        match map.get(id) {
            Some(s) if s.server == sid => map.remove(id),
            _ => None,
        }
    };
    let cancelled = taken.is_some();
    if let Some(s) = taken {
        drop(s.tx);
        let _ = s.done.await; // the unpacker sees no end marker and removes its staging
    }
    Ok(json!({"restoreId": id, "cancelled": cancelled}))
}

async fn must_be_stopped(inner: &Inner, sid: &str) -> Result<(), ServerError> {
    let server = inner.get(sid)?;
    let docker = inner.docker().await?;
    if docker
        .container_inspect(&server.container_id)
        .await?
        .state
        .running
    {
        return Err(ServerError::MustBeStopped {
            server_id: sid.to_owned(),
            action: "restore",
        });
    }
    Ok(())
}

/// A reader over the queue: pieces until the empty end marker; a queue closed without it
/// is an error (the restore was abandoned, nothing may be swapped in).
struct QueueReader {
    rx: async_channel::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Read for QueueReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv_blocking() {
                Ok(piece) if piece.is_empty() => self.ended = true,
                Ok(piece) => {
                    self.buf = piece;
                    self.at = 0;
                }
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the restore was abandoned before its final chunk",
                    ));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
