//! Taking a backup and restoring one: the panel drives the agent a chunk at a time over its
//! connection (`backup_read`, `restore_chunk`), so the archive is never whole in memory on
//! either side and no second channel or credential exists.
//!
//! - Take: the egg's `backup.before` lines go to the console (if the server runs), then
//!   `backup_read`s pull the tar.gz into `DATA/backups/<serverId>/<backupId>.part`, hashed
//!   (SHA-256) as it is written, then `backup.after`; the file is fsynced, renamed into
//!   place and recorded; the oldest beyond `--backup-keep` are removed. Any failure sends
//!   `backup_cancel` and removes the partial file.
//! - Restore: the file is read in pieces and sent as `restore_chunk`s (the last one
//!   `final`: the agent then unpacks and swaps in). Any failure sends `restore_cancel`; the
//!   agent leaves the server's files as they were.
//! - Progress and outcome go to `/api/events` as panel events ([`publish`]).

use async_io::Timer;
use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proto::ErrorCode;
use proto::egg::BackupHooks;
use proto::message::{
    Action, BackupCancel, BackupRead, Response, RestoreCancel, RestoreChunk, SendCommand,
};
use proto::time::unix_now;
use proto::validate::{MAX_CHUNK_LENGTH, MAX_WRITE_CHUNK};

use super::{Api, ApiError, blocking};
use crate::store::{BackupRecord, ServerRecord};

/// Bytes between two `backup_progress` events.
const PROGRESS_EVERY: u64 = 16 << 20;
/// Times a chunk is sent again while the agent answers `RATE_LIMITED`.
const RATE_RETRIES: u32 = 50;
/// Room kept in a frame for the envelope and the other payload members.
const ENVELOPE_RESERVE: usize = 4096;

/// Holds a server's "one long operation at a time" place until dropped.
pub(crate) struct BusyGuard {
    api: Arc<Api>,
    server: String,
}

impl BusyGuard {
    pub(crate) fn take(api: &Arc<Api>, server: &str) -> Result<BusyGuard, ApiError> {
        if !api.busy.lock().insert(server.to_owned()) {
            return Err(ApiError::new(
                ErrorCode::Busy,
                format!("server {server} has a backup, restore or transfer in progress"),
            ));
        }
        Ok(BusyGuard {
            api: api.clone(),
            server: server.to_owned(),
        })
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.api.busy.lock().remove(&self.server);
    }
}

/// Sends a panel event (`"type":"event"`, top-level `serverId`) to the subscribers of the
/// server's agent.
pub(crate) fn publish(api: &Api, agent: &str, server: &str, event: &str, data: Value) {
    let frame = json!({
        "type": "event",
        "timestamp": proto::time::now_rfc3339(),
        "event": event,
        "agentId": agent,
        "serverId": server,
        "data": data,
    });
    let msg = async_tungstenite::tungstenite::Message::Text(frame.to_string().into());
    api.events.publish(agent, Some(server), Some(event), &msg);
}

/// Sends `action` to `agent` about `server`, again after a pause while it answers
/// `RATE_LIMITED`; a refusal is the `Err`.
pub(crate) async fn command(
    api: &Api,
    agent: &str,
    server: &str,
    action: Action<'static>,
) -> Result<Response<'static>, ApiError> {
    let mut attempt = 0u32;
    loop {
        let r = api.hub.command(agent, Some(server), action.clone()).await?;
        let limited = !r.success
            && r.error
                .as_ref()
                .is_some_and(|e| e.known_code() == Some(ErrorCode::RateLimited));
        if !limited || attempt >= RATE_RETRIES {
            return if r.success {
                Ok(r)
            } else {
                Err(ApiError::from_agent(&r))
            };
        }
        attempt += 1;
        Timer::after(Duration::from_millis(10 * u64::from(attempt.min(20)))).await;
    }
}

/// A fresh id for a backup, restore or move: `<prefix>-<12 alphanumerics>`.
pub(super) fn new_id(prefix: &str) -> String {
    let r: String = proto::jwt::random_id()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("{prefix}-{}", r.to_ascii_lowercase())
}

/// The egg's backup hooks, if it has any.
fn hooks(rec: &ServerRecord) -> BackupHooks {
    rec.egg_config
        .get("backup")
        .and_then(|v| BackupHooks::deserialize(v).ok())
        .unwrap_or_default()
}

/// Sends console lines; a server that does not run (`CONFLICT`) takes none, quietly.
async fn console(api: &Api, rec: &ServerRecord, lines: &[String]) {
    for line in lines {
        let action = Action::SendCommand(SendCommand {
            command: Cow::Owned(line.clone()),
        });
        match command(api, &rec.agent_id, &rec.server_id, action).await {
            Ok(_) => {}
            Err(ApiError::Agent { code, .. }) if code == ErrorCode::Conflict.as_str() => return,
            Err(e) => log::warn!("server {}: backup hook `{line}`: {e}", rec.server_id),
        }
    }
}

/// Where a server's backups live.
pub(super) fn server_dir(api: &Api, server: &str) -> PathBuf {
    api.backups.dir.join(server)
}

/// The archive file of a backup.
pub(super) fn backup_path(api: &Api, server: &str, backup: &str) -> PathBuf {
    server_dir(api, server).join(format!("{backup}.tar.gz"))
}

/// Takes a backup of `rec` from its agent (see the module docs).
pub(super) async fn take(api: &Arc<Api>, rec: &ServerRecord) -> Result<BackupRecord, ApiError> {
    let id = new_id("bk");
    let hooks = hooks(rec);
    console(api, rec, &hooks.before).await;
    let pulled = pull(api, rec, &id).await;
    console(api, rec, &hooks.after).await;
    let (size, sha256) = match pulled {
        Ok(done) => done,
        Err(e) => {
            let cancel = Action::BackupCancel(BackupCancel {
                backup_id: Cow::Owned(id.clone()),
            });
            let _ = api
                .hub
                .command(&rec.agent_id, Some(&rec.server_id), cancel)
                .await;
            let part = server_dir(api, &rec.server_id).join(format!("{id}.part"));
            let _ = blocking(move || std::fs::remove_file(part)).await;
            publish(
                api,
                &rec.agent_id,
                &rec.server_id,
                "backup_failed",
                json!({"serverId": rec.server_id, "backupId": id, "error": e.to_string()}),
            );
            return Err(e);
        }
    };
    let record = BackupRecord {
        id,
        server_id: rec.server_id.clone(),
        size,
        sha256,
        created_at: unix_now(),
    };
    let (store, r) = (api.store.clone(), record.clone());
    blocking(move || store.put_backup(&r)).await?;
    prune(api, &rec.server_id).await;
    publish(
        api,
        &rec.agent_id,
        &rec.server_id,
        "backup_completed",
        json!({"serverId": rec.server_id, "backup": backup_json(&record)}),
    );
    Ok(record)
}

/// The API's view of a backup.
pub(super) fn backup_json(b: &BackupRecord) -> Value {
    json!({
        "id": b.id,
        "size": b.size,
        "sha256": b.sha256,
        "createdAt": proto::time::format_rfc3339(b.created_at),
    })
}

/// An archive file being written and hashed.
struct Sink {
    file: std::fs::File,
    hash: ring::digest::Context,
}

fn io_err(what: &str, e: std::io::Error) -> ApiError {
    log::error!("backup store: {what}: {e}");
    ApiError::new(
        ErrorCode::InternalError,
        format!("the backup store failed ({what}; see the panel log)"),
    )
}

/// Pulls the archive into `<id>.part`, then fsyncs and renames it; (size, sha256).
async fn pull(api: &Arc<Api>, rec: &ServerRecord, id: &str) -> Result<(u64, String), ApiError> {
    let dir = server_dir(api, &rec.server_id);
    let part = dir.join(format!("{id}.part"));
    let p = part.clone();
    let file = blocking(move || {
        std::fs::create_dir_all(&dir)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
    })
    .await
    .map_err(|e| io_err("creating the archive file", e))?;
    let mut sink = Sink {
        file,
        hash: ring::digest::Context::new(&ring::digest::SHA256),
    };
    let length = chunk_length(api);
    let mut offset = 0u64;
    let mut reported = 0u64;
    loop {
        let action = Action::BackupRead(BackupRead {
            backup_id: Cow::Owned(id.to_owned()),
            offset,
            length,
        });
        let r = command(api, &rec.agent_id, &rec.server_id, action).await?;
        let (bytes, eof) = decode_piece(&r, offset)?;
        offset = offset
            .checked_add(bytes.len() as u64)
            .ok_or_else(|| malformed("the archive's size overflows"))?;
        sink = blocking(move || {
            sink.file.write_all(&bytes)?;
            sink.hash.update(&bytes);
            Ok::<_, std::io::Error>(sink)
        })
        .await
        .map_err(|e| io_err("writing the archive", e))?;
        if offset - reported >= PROGRESS_EVERY {
            reported = offset;
            publish(
                api,
                &rec.agent_id,
                &rec.server_id,
                "backup_progress",
                json!({"serverId": rec.server_id, "backupId": id, "bytes": offset}),
            );
        }
        if eof {
            break;
        }
    }
    let final_path = backup_path(api, &rec.server_id, id);
    let sha = blocking(move || {
        sink.file.sync_all()?;
        drop(sink.file);
        std::fs::rename(&part, &final_path)?;
        if let Some(dir) = final_path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok::<_, std::io::Error>(hex(sink.hash.finish().as_ref()))
    })
    .await
    .map_err(|e| io_err("finishing the archive", e))?;
    Ok((offset, sha))
}

/// Bytes asked per `backup_read`: what fits the panel's frame limit once base64-encoded.
fn chunk_length(api: &Api) -> u64 {
    let room = api.max_frame.saturating_sub(ENVELOPE_RESERVE) / 4 * 3;
    (room as u64).clamp(1, MAX_CHUNK_LENGTH)
}

fn malformed(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InternalError,
        format!("the agent's answer to backup_read is malformed: {why}"),
    )
}

/// The bytes and `eof` of a `backup_read` answer, checked against the offset asked for.
fn decode_piece(r: &Response<'_>, offset: u64) -> Result<(Vec<u8>, bool), ApiError> {
    let data = r.data.as_ref().ok_or_else(|| malformed("no data"))?;
    if data.get("offset").and_then(Value::as_u64) != Some(offset) {
        return Err(malformed("a piece at another offset"));
    }
    let eof = data.get("eof").and_then(Value::as_bool).unwrap_or(false);
    let content = data
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no content"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content.as_bytes())
        .map_err(|e| malformed(&e.to_string()))?;
    if bytes.is_empty() && !eof {
        return Err(malformed("an empty piece before the end"));
    }
    Ok((bytes, eof))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes the oldest backups of a server beyond `--backup-keep` (record first, then file).
async fn prune(api: &Arc<Api>, server: &str) {
    let all = api.store.backups_of(server);
    for old in all.into_iter().skip(api.backups.keep) {
        if let Err(e) = remove(api, &old).await {
            log::warn!("server {server}: cannot remove old backup {}: {e}", old.id);
        }
    }
}

/// Removes a backup: its record, then its file.
pub(super) async fn remove(api: &Arc<Api>, b: &BackupRecord) -> Result<(), ApiError> {
    let (store, sid, bid) = (api.store.clone(), b.server_id.clone(), b.id.clone());
    blocking(move || store.remove_backup(&sid, &bid)).await?;
    let path = backup_path(api, &b.server_id, &b.id);
    match blocking(move || std::fs::remove_file(path)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing an archive", e)),
    }
}

/// Restores the backup `b` onto `agent` (the server's own, or a transfer's target), which
/// must have the server stopped.
pub(crate) async fn push(
    api: &Arc<Api>,
    agent: &str,
    server: &str,
    b: &BackupRecord,
) -> Result<Value, ApiError> {
    let id = new_id("rs");
    let pushed = push_chunks(api, agent, server, b, &id).await;
    if pushed.is_err() {
        let cancel = Action::RestoreCancel(RestoreCancel {
            restore_id: Cow::Owned(id.clone()),
        });
        let _ = api.hub.command(agent, Some(server), cancel).await;
    }
    pushed
}

async fn push_chunks(
    api: &Arc<Api>,
    agent: &str,
    server: &str,
    b: &BackupRecord,
    id: &str,
) -> Result<Value, ApiError> {
    let path = backup_path(api, server, &b.id);
    let mut file = blocking(move || std::fs::File::open(path))
        .await
        .map_err(|e| io_err("opening the archive", e))?;
    let piece = MAX_WRITE_CHUNK.min(api.max_frame.saturating_sub(ENVELOPE_RESERVE) / 4 * 3);
    let mut offset = 0u64;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    loop {
        let (f, bytes) = blocking(move || {
            let mut buf = vec![0u8; piece];
            let mut n = 0;
            while n < piece {
                match file.read(&mut buf[n..])? {
                    0 => break,
                    k => n += k,
                }
            }
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await
        .map_err(|e| io_err("reading the archive", e))?;
        file = f;
        let len = bytes.len() as u64;
        let is_final = offset.saturating_add(len) >= b.size || bytes.len() < piece;
        hash.update(&bytes);
        if is_final {
            // The agent swaps on the final chunk: the archive must be the one recorded.
            let sha = hex(hash.clone().finish().as_ref());
            if offset.saturating_add(len) != b.size || sha != b.sha256 {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "backup {} does not match its record (size or SHA-256): not restored",
                        b.id
                    ),
                ));
            }
        }
        let action = Action::RestoreChunk(RestoreChunk {
            restore_id: Cow::Owned(id.to_owned()),
            offset,
            content: Cow::Owned(base64::engine::general_purpose::STANDARD.encode(&bytes)),
            is_final,
        });
        let r = command(api, agent, server, action).await?;
        offset = offset.saturating_add(len);
        if is_final {
            return Ok(r.data.unwrap_or(json!({})));
        }
    }
}
