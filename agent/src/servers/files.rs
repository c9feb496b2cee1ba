//! The file actions on a server's volume (confined by `files`): `list_files`, `get_file`,
//! `write_file`, the chunked `read_file_chunk` / `write_file_chunk` / `cancel_upload`, and
//! `rename_file`, `delete_file`, `create_directory`.
//!
//! Answers are sized before they are built: a listing is paged and a chunk shortened so
//! each fits in one frame, and a file whose content would not fit (base64 grows it by a third, JSON escaping
//! control characters by up to six times) is refused with `PAYLOAD_TOO_LARGE`.

use super::{Inner, Outcome, ServerError};
use crate::files::{
    ChunkWrite, DEFAULT_MAX_READ_BYTES, MAX_PAGE_ENTRIES, Page, UPLOAD_IDLE, WriteOptions,
};
use base64::Engine;
use proto::codec::json_string_len;
use proto::validate;
use proto::{
    ContentEncoding, FileContent, FileList, ListFiles, ReadFileChunk, RenameFile, WriteFileChunk,
};
use serde_json::json;

/// Room kept in a frame for everything around the entries or the content: the envelope
/// (id, timestamp, agent and server ids) and the data's other members.
pub(super) const ENVELOPE_RESERVE: usize = 4096;

/// The bytes left for a listing's entries or a file's content in one frame.
fn room(inner: &Inner, path: &str) -> usize {
    inner
        .cfg
        .policy
        .max_frame_bytes
        .saturating_sub(ENVELOPE_RESERVE)
        .saturating_sub(json_string_len(path))
}

pub(super) async fn list(inner: &Inner, sid: &str, req: ListFiles<'static>) -> Outcome {
    let server = inner.get(sid)?;
    let path = req.path.into_owned();
    let page = Page {
        offset: req.offset.unwrap_or(0),
        limit: req.limit.map_or(MAX_PAGE_ENTRIES, |l| {
            usize::try_from(l).unwrap_or(usize::MAX)
        }),
        max_bytes: room(inner, &path),
    };
    let volume = server.volume.clone();
    let p = path.clone();
    let listing = smol::unblock(move || volume.list(&p, page)).await?;
    let data = FileList {
        server_id: sid.to_owned(),
        path,
        entries: listing.entries,
        total: listing.total,
        next_offset: listing.next_offset,
        truncated: listing.truncated,
    };
    serde_json::to_value(&data).map_err(|e| ServerError::BadContent(e.to_string()))
}

pub(super) async fn get(inner: &Inner, sid: &str, path: String) -> Outcome {
    let server = inner.get(sid)?;
    let room = room(inner, &path);
    let volume = server.volume.clone();
    let p = path.clone();
    let max_read = DEFAULT_MAX_READ_BYTES.min(room as u64);
    let content = smol::unblock(move || volume.read(&p, max_read)).await?;
    let wire = json_string_len(&content.content);
    if wire > room {
        return Err(ServerError::TooLargeForFrame {
            what: format!(
                "the content of `{path}` ({} bytes, {})",
                content.size,
                match content.encoding {
                    ContentEncoding::Utf8 => "text",
                    ContentEncoding::Base64 => "base64",
                }
            ),
            bytes: wire,
            limit: room,
        });
    }
    let data = FileContent {
        server_id: sid.to_owned(),
        path,
        content: content.content,
        encoding: content.encoding,
        size: content.size,
    };
    serde_json::to_value(&data).map_err(|e| ServerError::BadContent(e.to_string()))
}

pub(super) async fn write(
    inner: &Inner,
    sid: &str,
    path: String,
    content: &str,
    encoding: ContentEncoding,
) -> Outcome {
    let server = inner.get(sid)?;
    let bytes = match encoding {
        ContentEncoding::Utf8 => content.as_bytes().to_vec(),
        ContentEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(content)
            .map_err(|e| ServerError::BadContent(format!("invalid base64: {e}")))?,
    };
    let volume = server.volume.clone();
    let opts = WriteOptions {
        disk_limit: Some(server.meta.disk),
        create_parents: true,
    };
    let p = path.clone();
    let size = smol::unblock(move || volume.write(&p, &bytes, opts)).await?;
    Ok(json!({"serverId": sid, "path": path, "size": size}))
}

/// `read_file_chunk`: at most `length` bytes, fewer when their base64 would not fit in one
/// frame (the answer says how many in `content`; the reader continues from there).
pub(super) async fn read_chunk(inner: &Inner, sid: &str, req: ReadFileChunk<'static>) -> Outcome {
    validate::read_chunk(&req)?;
    let server = inner.get(sid)?;
    let path = req.path.into_owned();
    let fits = room(inner, &path) / 4 * 3;
    if fits == 0 {
        return Err(ServerError::TooLargeForFrame {
            what: format!("a piece of `{path}`"),
            bytes: 4,
            limit: room(inner, &path),
        });
    }
    let max_len = usize::try_from(req.length).unwrap_or(usize::MAX).min(fits);
    let volume = server.volume.clone();
    let p = path.clone();
    let offset = req.offset;
    let chunk = smol::unblock(move || volume.read_chunk(&p, offset, max_len)).await?;
    let content = base64::engine::general_purpose::STANDARD.encode(&chunk.bytes);
    Ok(json!({
        "path": path,
        "offset": offset,
        "size": chunk.size,
        "eof": chunk.eof,
        "content": content,
        "encoding": ContentEncoding::Base64,
    }))
}

/// `write_file_chunk`: one piece of an upload (see `files::upload`).
pub(super) async fn write_chunk(inner: &Inner, sid: &str, req: WriteFileChunk<'static>) -> Outcome {
    validate::write_chunk(&req)?;
    let server = inner.get(sid)?;
    let bytes = match req.encoding {
        ContentEncoding::Utf8 => req.content.as_bytes().to_vec(),
        ContentEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(req.content.as_bytes())
            .map_err(|e| ServerError::BadContent(format!("invalid base64: {e}")))?,
    };
    let volume = server.volume.clone();
    let disk = server.meta.disk;
    let (path, id) = (req.path.into_owned(), req.upload_id.into_owned());
    let (p, offset, is_final) = (path.clone(), req.offset, req.is_final);
    let written = smol::unblock(move || {
        volume.write_chunk(ChunkWrite {
            path: &p,
            upload_id: &id,
            offset,
            bytes: &bytes,
            is_final,
            disk_limit: Some(disk),
        })
    })
    .await?;
    Ok(json!({"path": path, "written": written}))
}

/// `cancel_upload`: drops the upload and its temp file; cancelling an unknown one is not an
/// error (it may have been swept already).
pub(super) async fn cancel_upload(inner: &Inner, sid: &str, upload_id: &str) -> Outcome {
    validate::upload_id(upload_id)?;
    let server = inner.get(sid)?;
    let volume = server.volume.clone();
    let id = upload_id.to_owned();
    let cancelled = smol::unblock(move || volume.cancel_upload(&id)).await;
    Ok(json!({"uploadId": upload_id, "cancelled": cancelled}))
}

pub(super) async fn rename(inner: &Inner, sid: &str, req: RenameFile<'static>) -> Outcome {
    validate::rename(&req)?;
    let server = inner.get(sid)?;
    let volume = server.volume.clone();
    let (from, to) = (req.from.into_owned(), req.to.into_owned());
    let (f, t) = (from.clone(), to.clone());
    smol::unblock(move || volume.rename(&f, &t)).await?;
    Ok(json!({"from": from, "to": to}))
}

pub(super) async fn delete(inner: &Inner, sid: &str, path: String) -> Outcome {
    validate::file_target(&path)?;
    let server = inner.get(sid)?;
    let volume = server.volume.clone();
    let p = path.clone();
    smol::unblock(move || volume.delete(&p)).await?;
    Ok(json!({"path": path}))
}

pub(super) async fn create_directory(inner: &Inner, sid: &str, path: String) -> Outcome {
    validate::file_target(&path)?;
    let server = inner.get(sid)?;
    let volume = server.volume.clone();
    let p = path.clone();
    smol::unblock(move || volume.create_directory(&p)).await?;
    Ok(json!({"path": path}))
}

/// How often abandoned uploads are looked for.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Drops uploads idle for [`UPLOAD_IDLE`] and what earlier runs left in the servers'
/// staging directories, once a minute, for as long as the manager lives.
pub(super) async fn sweep(inner: std::sync::Weak<Inner>) {
    loop {
        smol::Timer::after(SWEEP_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let idle = inner.sessions.sweep(super::backup::IDLE);
        if idle > 0 {
            log::info!("dropped {idle} abandoned backup/restore session(s)");
        }
        let volumes = inner.volumes();
        drop(inner);
        for volume in volumes {
            let swept = smol::unblock(move || volume.sweep_uploads(UPLOAD_IDLE)).await;
            if swept > 0 {
                log::info!("removed {swept} abandoned upload(s)");
            }
        }
    }
}

/// The panel's connection dropped: every upload in progress is dropped with its temp file
/// (its next chunk would have come over that connection).
pub(super) fn cancel_all_uploads(inner: &Inner) {
    let volumes = inner.volumes();
    smol::spawn(smol::unblock(move || {
        let n: usize = volumes.iter().map(|v| v.cancel_uploads()).sum();
        if n > 0 {
            log::info!("dropped {n} upload(s) with the panel's connection");
        }
    }))
    .detach();
}
