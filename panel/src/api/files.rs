//! The file manager's routes: paged listings, rename, mkdir, delete (one command each), and
//! the transfers — downloads streamed out of `read_file_chunk` answers, uploads streamed
//! into `write_file_chunk`s (see `transfer.rs`).

use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;

use proto::ErrorCode;
use proto::message::{Action, ListFiles, PathPayload, RenameFile};
use proto::validate;

use super::servers::{path_param, relay};
use super::transfer;
use super::{Api, ApiError, Caller, agent_answer, body};
use crate::http::{Reply, Request, Response};

/// A whole-number query parameter, if present.
fn number_param(req: &Request, name: &str) -> Result<Option<u64>, ApiError> {
    match req.query_param(name) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidMessage,
                format!("`{name}` must be a whole number"),
            )
        }),
    }
}

/// `GET /api/servers/{id}/files?path=P[&offset=N][&limit=N]` (admin): one page of
/// `list_files` (the agent caps `limit` at 1000 and ends a page early to fit a frame).
pub(super) async fn list(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let path = path_param(&req, Some("/server"))?;
    let action = Action::ListFiles(ListFiles {
        path: Cow::Owned(path),
        offset: number_param(&req, "offset")?,
        limit: number_param(&req, "limit")?,
    });
    relay(&api, rec, action, None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    from: String,
    to: String,
}

/// `POST /api/servers/{id}/files/rename` `{"from","to"}` (admin).
pub(super) async fn rename(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let b: RenameBody = body(&req)?;
    let r = RenameFile {
        from: Cow::Owned(b.from),
        to: Cow::Owned(b.to),
    };
    validate::rename(&r)?;
    relay(&api, rec, Action::RenameFile(r), None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathBody {
    path: String,
}

/// `POST /api/servers/{id}/files/mkdir` `{"path"}` (admin).
pub(super) async fn mkdir(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let b: PathBody = body(&req)?;
    validate::file_target(&b.path)?;
    let action = Action::CreateDirectory(PathPayload {
        path: Cow::Owned(b.path),
    });
    relay(&api, rec, action, None).await
}

/// `DELETE /api/servers/{id}/files?path=P` (admin): a file, or a directory with everything
/// in it.
pub(super) async fn delete(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let path = path_param(&req, None)?;
    validate::file_target(&path)?;
    let action = Action::DeleteFile(PathPayload {
        path: Cow::Owned(path),
    });
    relay(&api, rec, action, None).await
}

/// `GET /api/servers/{id}/files/download?path=P` (admin): the file's raw bytes, streamed.
/// Errors before the first byte (no such file, a directory, the agent offline) are JSON
/// answers; a failure later cuts the body short.
pub(super) async fn download(
    api: Arc<Api>,
    req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let path = path_param(&req, None)?;
    validate::file_target(&path)?;
    match transfer::download(api, rec, path).await? {
        Ok(streamed) => Ok(Reply::Stream(streamed)),
        Err(agent_refusal) => Ok(agent_answer(&agent_refusal).into()),
    }
}

/// `PUT /api/servers/{id}/files/upload?path=P` (admin): the raw request body (up to
/// `--max-upload-bytes`, `Content-Length` or chunked) becomes the file, streamed.
pub(super) async fn upload(
    api: Arc<Api>,
    mut req: Request,
    caller: Caller,
) -> Result<Reply, ApiError> {
    let rec = caller.server()?;
    let path = path_param(&req, None)?;
    validate::file_target(&path)?;
    let Some(stream) = req.stream.take() else {
        return Err(ApiError::new(
            ErrorCode::InternalError,
            "the upload route did not receive its body stream",
        ));
    };
    match transfer::upload(&api, rec, &path, stream).await? {
        Ok(size) => Ok(Response::json(
            200,
            &serde_json::json!({"success": true, "path": path, "size": size}),
        )
        .into()),
        Err(agent_refusal) => Ok(agent_answer(&agent_refusal).into()),
    }
}
