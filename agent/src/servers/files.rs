//! `list_files`, `get_file` and `write_file` on a server's volume (confined by `files`).

use super::{Inner, Outcome, ServerError};
use crate::files::{DEFAULT_MAX_READ_BYTES, WriteOptions};
use base64::Engine;
use proto::{ContentEncoding, FileContent, FileList};
use serde_json::json;

pub(super) async fn list(inner: &Inner, sid: &str, path: String) -> Outcome {
    let server = inner.get(sid)?;
    let volume = server.volume.clone();
    let p = path.clone();
    let listing = smol::unblock(move || volume.list(&p)).await?;
    let data = FileList {
        server_id: sid.to_owned(),
        path,
        entries: listing.entries,
        truncated: listing.truncated,
    };
    serde_json::to_value(&data).map_err(|e| ServerError::BadContent(e.to_string()))
}

pub(super) async fn get(inner: &Inner, sid: &str, path: String) -> Outcome {
    let server = inner.get(sid)?;
    let volume = server.volume.clone();
    let p = path.clone();
    let content = smol::unblock(move || volume.read(&p, DEFAULT_MAX_READ_BYTES)).await?;
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
