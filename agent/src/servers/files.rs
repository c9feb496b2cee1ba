//! `list_files`, `get_file` and `write_file` on a server's volume (confined by `files`).
//!
//! Answers are sized before they are built: a listing is paged so each page fits in one
//! frame, and a file whose content would not fit (base64 grows it by a third, JSON escaping
//! control characters by up to six times) is refused with `PAYLOAD_TOO_LARGE`.

use super::{Inner, Outcome, ServerError};
use crate::files::{DEFAULT_MAX_READ_BYTES, MAX_PAGE_ENTRIES, Page, WriteOptions};
use base64::Engine;
use proto::codec::json_string_len;
use proto::{ContentEncoding, FileContent, FileList, ListFiles};
use serde_json::json;

/// Room kept in a frame for everything around the entries or the content: the envelope
/// (id, timestamp, agent and server ids) and the data's other members.
const ENVELOPE_RESERVE: usize = 4096;

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
