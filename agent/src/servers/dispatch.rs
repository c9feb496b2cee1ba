//! From a decoded command to its handler, and from the handler's outcome to the response:
//! the one place that lists which function serves which action. Commands over the rate
//! limits are answered `RATE_LIMITED` before anything runs.

use super::rate::{Class, Limited};
use super::{
    Inner, Outcome, ServerError, backup, create, cut, fence, files, install, power, status,
};
use proto::validate::{self, IdKind, ValidationError};
use proto::{Action, Command, Response};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

/// Longest error message sent (Docker's can quote anything it was given).
const MAX_ERROR_MESSAGE: usize = 2048;

/// Runs one command and turns the outcome into the response.
pub(super) async fn execute(inner: Arc<Inner>, cmd: Command<'static>) -> Response<'static> {
    let id = cmd.id.clone();
    let target = cmd.target_server().map(str::to_owned);
    let action = cmd.action.name().to_owned();
    let class = match cmd.action {
        Action::ReadFileChunk(_)
        | Action::WriteFileChunk(_)
        | Action::BackupRead(_)
        | Action::RestoreChunk(_) => Class::Chunk,
        _ => Class::Command,
    };
    let outcome = match admit(&inner, target.as_deref(), class) {
        Ok(()) => run(&inner, cmd).await,
        Err(e) => Err(e),
    };
    let now = Cow::Owned(proto::time::now_rfc3339());
    let mut resp = match outcome {
        Ok(data) => Response::ok(id, now, Some(data)),
        Err(e) => {
            log::info!(
                "{action} {}: {} ({})",
                target.as_deref().unwrap_or("-"),
                e,
                e.code()
            );
            let message = cut(scrub(&inner, &e.to_string()), MAX_ERROR_MESSAGE);
            Response::err(id, now, e.code(), message)
        }
    };
    resp.agent_id = Some(Cow::Owned(inner.agent_id.to_string()));
    resp.server_id = target.map(Cow::Owned);
    resp
}

/// Takes a token for the command from the agent's and the server's buckets (of its class). Only a valid
/// server id gets a bucket of its own (ids are short; anything else counts in total only).
fn admit(inner: &Inner, server: Option<&str>, class: Class) -> Result<(), ServerError> {
    let server = server.filter(|s| validate::id(IdKind::Server, s).is_ok());
    inner
        .rate
        .admit(server, class, Instant::now())
        .map_err(|limited| ServerError::RateLimited {
            scope: match limited {
                Limited::Server => "for this server",
                Limited::Total => "for this agent",
            },
        })
}

/// Docker's messages can quote the host path of a volume (a bind-mount error): the wire
/// gets `DATA/volumes/...` instead.
fn scrub(inner: &Inner, message: &str) -> String {
    match inner.volumes_dir().to_str() {
        Some(dir) if !dir.is_empty() => message.replace(dir, "DATA/volumes"),
        _ => message.to_owned(),
    }
}

async fn run(inner: &Inner, cmd: Command<'static>) -> Outcome {
    let sid = match &cmd.action {
        Action::CreateServer(_) | Action::FailoverServers(_) | Action::QuarantineServers(_) => {
            String::new()
        }
        Action::Unknown(name) => return Err(ServerError::UnknownAction(name.to_string())),
        _ => required_server(&cmd)?,
    };
    if !sid.is_empty() {
        fenced(inner, &sid, cmd.epoch)?;
    }
    match cmd.action {
        Action::CreateServer(c) => create::create(inner, c, cmd.epoch.unwrap_or(0)).await,
        Action::StartServer => power::start(inner, &sid).await,
        Action::StopServer(p) => {
            let p = p.unwrap_or_default();
            power::stop(inner, &sid, p.signal.as_deref(), p.timeout).await
        }
        Action::RestartServer(p) => {
            let p = p.unwrap_or_default();
            power::restart(inner, &sid, p.signal.as_deref(), p.timeout).await
        }
        Action::KillServer(p) => {
            let signal = p.and_then(|p| p.signal);
            power::kill(inner, &sid, signal.as_deref()).await
        }
        Action::DeleteServer(p) => power::delete(inner, &sid, p.is_some_and(|p| p.purge)).await,
        Action::GetStatus => status::status(inner, &sid).await,
        Action::SendCommand(c) => status::send_command(inner, &sid, &c.command).await,
        Action::ListFiles(p) => files::list(inner, &sid, p).await,
        Action::GetFile(p) => files::get(inner, &sid, p.path.into_owned()).await,
        Action::WriteFile(w) => {
            files::write(inner, &sid, w.path.into_owned(), &w.content, w.encoding).await
        }
        Action::ReinstallServer => install::reinstall(inner, &sid).await,
        Action::ReadFileChunk(r) => files::read_chunk(inner, &sid, r).await,
        Action::WriteFileChunk(w) => files::write_chunk(inner, &sid, w).await,
        Action::CancelUpload(c) => files::cancel_upload(inner, &sid, &c.upload_id).await,
        Action::RenameFile(r) => files::rename(inner, &sid, r).await,
        Action::DeleteFile(p) => files::delete(inner, &sid, p.path.into_owned()).await,
        Action::CreateDirectory(p) => {
            files::create_directory(inner, &sid, p.path.into_owned()).await
        }
        Action::GetLogs(p) => status::logs(inner, &sid, p.and_then(|p| p.lines)).await,
        Action::BackupRead(r) => backup::read(inner, &sid, r).await,
        Action::BackupCancel(c) => backup::cancel_backup(inner, &sid, &c.backup_id).await,
        Action::RestoreChunk(c) => backup::chunk(inner, &sid, c).await,
        Action::RestoreCancel(c) => backup::cancel_restore(inner, &sid, &c.restore_id).await,
        Action::FailoverServers(f) => fence::set_list(inner, f.server_ids),
        Action::QuarantineServers(q) => fence::quarantine(inner, q).await,
        Action::Unknown(name) => Err(ServerError::UnknownAction(name.to_string())),
    }
}

/// Fencing: a command carrying an epoch older than this agent's copy of the server was
/// meant for an assignment that has moved on (`STALE_EPOCH`). Commands without an epoch
/// (older panels) pass.
fn fenced(inner: &Inner, sid: &str, epoch: Option<u64>) -> Result<(), ServerError> {
    let (Some(got), Some(server)) = (epoch, inner.known(sid)) else {
        return Ok(());
    };
    if got < server.meta.epoch {
        return Err(ServerError::StaleEpoch {
            server_id: sid.to_owned(),
            got,
            current: server.meta.epoch,
        });
    }
    Ok(())
}

fn required_server(cmd: &Command<'_>) -> Result<String, ServerError> {
    let Some(id) = cmd.server_id.as_deref() else {
        return Err(ValidationError::InvalidId {
            kind: IdKind::Server,
            reason: format!("action `{}` needs a serverId", cmd.action.name()),
        }
        .into());
    };
    validate::id(IdKind::Server, id)?;
    Ok(id.to_owned())
}
