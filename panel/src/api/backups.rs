//! Backup routes: take, list, download, restore, delete, the per-server schedule and the
//! loop that runs it, and the transfer route (see `moves.rs`). The work itself is in
//! `backup_run.rs`.

use futures_lite::stream;
use serde::Deserialize;
use serde_json::json;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use proto::ErrorCode;
use proto::time::unix_now;
use proto::validate;

use super::backup_run::{self, BusyGuard, backup_json, backup_path};
use super::{Api, ApiError, Caller, Need, add, blocking, body, moves};
use crate::http::{Method, Reply, Request, Response, Router, Streamed};
use crate::store::{BackupRecord, Schedule, ServerRecord};
use crate::users::rights::{Perm, ServerRight};

/// Shortest schedule interval (seconds).
pub const MIN_INTERVAL: u64 = 60;
/// Longest schedule interval (seconds): a year.
pub const MAX_INTERVAL: u64 = 366 * 24 * 3600;
/// How often the schedule loop looks for due backups.
const SCHEDULE_TICK: Duration = Duration::from_secs(15);
/// Bytes per piece of a download.
const DOWNLOAD_PIECE: usize = 64 * 1024;

/// The backup and transfer rows of the route table, with the right each needs.
pub(super) fn routes(r: &mut Router, api: &Arc<Api>) {
    use Method::{Delete, Get, Post, Put};
    use ServerRight::{Admin, Manage, View};
    let server = Need::Server;
    let files_read = Need::Server(ServerRight::Perm(Perm::FilesRead));
    let base = "/api/servers/{id}/backups";
    let one = format!("{base}/{{bid}}");
    add(r, api, Post, base, server(Manage), create);
    add(r, api, Get, base, files_read, list);
    add(
        r,
        api,
        Get,
        &format!("{one}/download"),
        files_read,
        download,
    );
    add(
        r,
        api,
        Post,
        &format!("{one}/restore"),
        server(Manage),
        restore,
    );
    add(r, api, Delete, &one, server(Manage), delete);
    let schedule = "/api/servers/{id}/backup-schedule";
    add(r, api, Put, schedule, server(Manage), set_schedule);
    add(r, api, Get, schedule, server(View), get_schedule);
    add(
        r,
        api,
        Post,
        "/api/servers/{id}/transfer",
        server(Admin),
        moves::transfer,
    );
}

/// `POST /api/servers/{id}/backups`: takes a backup now.
async fn create(api: Arc<Api>, _: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?.clone();
    let _busy = BusyGuard::take(&api, &rec.server_id)?;
    let b = backup_run::take(&api, &rec).await?;
    Ok(Response::json(200, &json!({"success": true, "backup": backup_json(&b)})).into())
}

/// `GET /api/servers/{id}/backups`: newest first.
async fn list(api: Arc<Api>, _: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?.clone();
    let all: Vec<_> = api
        .store
        .backups_of(&rec.server_id)
        .iter()
        .map(backup_json)
        .collect();
    Ok(Response::json(200, &json!({"success": true, "backups": all})).into())
}

/// The backup named in the path, of the server named in the path.
fn named(
    api: &Api,
    req: &Request,
    caller: &Caller,
) -> Result<(ServerRecord, BackupRecord), ApiError> {
    let rec = caller.server()?.clone();
    let bid = req.param("bid").unwrap_or_default();
    validate::transfer_id("backupId", bid)?;
    let b = api.store.backup(&rec.server_id, bid).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("server {} has no backup `{bid}`", rec.server_id),
        )
    })?;
    Ok((rec, b))
}

/// `GET …/backups/{bid}/download`: the archive, streamed from the store.
async fn download(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let (rec, b) = named(&api, &req, &caller)?;
    let path = backup_path(&api, &rec.server_id, &b.id);
    let file = blocking(move || std::fs::File::open(path))
        .await
        .map_err(|e| ApiError::new(ErrorCode::InternalError, format!("archive: {e}")))?;
    let head = Response::text(200, "application/gzip", Vec::new())
        .with_header(
            "content-disposition",
            &format!("attachment; filename=\"{}-{}.tar.gz\"", rec.server_id, b.id),
        )
        .with_header("cache-control", "no-store")
        .with_header("x-content-type-options", "nosniff");
    let body = stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = blocking(move || {
            let mut buf = vec![0u8; DOWNLOAD_PIECE];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        match read {
            Ok((_, buf)) if buf.is_empty() => None,
            Ok((file, buf)) => Some((Ok(buf), Some(file))),
            Err(e) => Some((Err(format!("reading the archive: {e}")), None)),
        }
    });
    Ok(Reply::Stream(Streamed {
        head,
        length: b.size,
        body: Box::pin(body),
    }))
}

/// `POST …/backups/{bid}/restore`: the server must be stopped; its files are
/// replaced by the backup's, or left as they were on any failure.
async fn restore(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let (rec, b) = named(&api, &req, &caller)?;
    let _busy = BusyGuard::take(&api, &rec.server_id)?;
    let data = backup_run::push(&api, &rec.agent_id, &rec.server_id, &b).await?;
    Ok(Response::json(
        200,
        &json!({"success": true, "backup": backup_json(&b), "data": data}),
    )
    .into())
}

/// `DELETE …/backups/{bid}`.
async fn delete(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let (rec, b) = named(&api, &req, &caller)?;
    let _busy = BusyGuard::take(&api, &rec.server_id)?;
    backup_run::remove(&api, &b).await?;
    Ok(Response::json(200, &json!({"success": true})).into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScheduleBody {
    interval_secs: Option<u64>,
}

fn schedule_json(s: Option<Schedule>) -> serde_json::Value {
    match s {
        Some(s) => json!({
            "intervalSecs": s.interval_secs,
            "nextAt": proto::time::format_rfc3339(s.next_at),
        }),
        None => json!(null),
    }
}

/// `PUT /api/servers/{id}/backup-schedule`: `{"intervalSecs": N}` (60 s to a
/// year; the first run N seconds from now) or `{"intervalSecs": null}` (no schedule).
async fn set_schedule(api: Arc<Api>, req: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?.clone();
    let body: ScheduleBody = body(&req)?;
    let schedule = match body.interval_secs {
        None => None,
        Some(n) if (MIN_INTERVAL..=MAX_INTERVAL).contains(&n) => Some(Schedule {
            interval_secs: n,
            next_at: unix_now().saturating_add(n),
        }),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidMessage,
                format!("intervalSecs must be {MIN_INTERVAL} to {MAX_INTERVAL}, or null"),
            ));
        }
    };
    let (store, sid) = (api.store.clone(), rec.server_id.clone());
    blocking(move || store.set_schedule(&sid, schedule)).await?;
    Ok(Response::json(
        200,
        &json!({"success": true, "schedule": schedule_json(schedule)}),
    )
    .into())
}

/// `GET /api/servers/{id}/backup-schedule` .
async fn get_schedule(api: Arc<Api>, _: Request, caller: Caller) -> Result<Reply, ApiError> {
    let rec = caller.server()?.clone();
    let s = api.store.schedule(&rec.server_id);
    Ok(Response::json(200, &json!({"success": true, "schedule": schedule_json(s)})).into())
}

/// Runs due scheduled backups, one server at a time, forever. A run that cannot happen
/// (agent offline, busy) is logged and retried at the next interval; the next run is
/// recorded before the backup starts, so a crash never repeats it in a loop.
pub async fn schedule_loop(api: Arc<Api>) {
    loop {
        async_io::Timer::after(SCHEDULE_TICK).await;
        let now = unix_now();
        for (sid, s) in api.store.due_schedules(now) {
            let next = Schedule {
                interval_secs: s.interval_secs,
                next_at: now.saturating_add(s.interval_secs),
            };
            let store = api.store.clone();
            let id = sid.clone();
            if let Err(e) = blocking(move || store.set_schedule(&id, Some(next))).await {
                log::error!("backup schedule of {sid}: {e}");
                continue;
            }
            let Some(rec) = api.store.server(&sid) else {
                let store = api.store.clone();
                let _ = blocking(move || store.set_schedule(&sid, None)).await;
                continue;
            };
            let outcome = match BusyGuard::take(&api, &sid) {
                Ok(_busy) => backup_run::take(&api, &rec).await.map(drop),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => log::info!("server {sid}: scheduled backup taken"),
                Err(e) => log::warn!("server {sid}: scheduled backup failed: {e}"),
            }
        }
    }
}
