//! The egg's config-file edits, applied before every start (Wings' "configuration files"):
//! `server.properties` gets the allocated port, and so on.
//!
//! Each file is read and written through the volume's directory fd (`files::Volume`:
//! `openat2(RESOLVE_BENEATH)`, no symlink followed on writes, atomic replace, the disk
//! limit enforced), so a server that plants a symlink named like its config file cannot
//! make the agent read or write outside its files. The edits themselves are
//! `proto::eggs::apply`, with placeholders expanded only from an explicit context — the
//! egg's environment, the agent's `SERVER_*` variables, the port, memory and the servers'
//! network gateway — never from the agent's own environment or secrets. What could not be
//! done (an unreadable file, an unknown placeholder, a skipped edit) is said on the server's
//! console and in the agent's log; it never stops the start (as in Wings).

use super::plan::{self, SERVER_IP};
use super::server::Server;
use crate::files::{FileError, Volume, WriteOptions};
use base64::Engine as _;
use proto::ContentEncoding;
use proto::eggs::config::MAX_CONFIG_BYTES;
use proto::eggs::{ConfigFile, Context};
use std::sync::Arc;

/// One line to show on the console about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: &'static str,
    pub message: String,
}

/// The placeholder context of a server.
pub fn context(server: &Server, docker_interface: Option<String>) -> Context {
    let meta = &server.meta;
    let mut env = server.extras.environment.clone();
    env.extend(plan::agent_env(meta));
    Context {
        ip: SERVER_IP.into(),
        port: meta.ports.first().map_or(0, |p| p.container),
        memory_mib: meta.memory >> 20,
        env,
        docker_interface,
    }
}

/// Applies every config file of the server's egg and says on its console what went wrong.
pub async fn apply(server: &Arc<Server>, docker_interface: Option<String>) {
    if server.extras.config_files.is_empty() {
        return;
    }
    let ctx = context(server, docker_interface);
    let s = server.clone();
    let notes = smol::unblock(move || {
        let mut notes = Vec::new();
        for file in &s.extras.config_files {
            edit_file(&s.volume, file, &ctx, s.meta.disk, &mut notes);
        }
        notes
    })
    .await;
    for n in notes {
        server.say(n.level, n.message);
    }
}

/// Edits one file: read (a missing file is empty), apply, write back atomically when the
/// content changed. A file that does not exist and would stay empty is not created.
pub fn edit_file(
    volume: &Volume,
    file: &ConfigFile,
    ctx: &Context,
    disk_limit: u64,
    notes: &mut Vec<Note>,
) {
    let path = format!("{}/{}", crate::files::CONTAINER_ROOT, file.path);
    let mut note = |level, what: String| {
        notes.push(Note {
            level,
            message: format!("[agent] config file {}: {what}", file.path),
        });
    };
    let (original, existed) = match read(volume, &path) {
        Ok(bytes) => (bytes, true),
        Err(FileError::NotFound { .. }) => (Vec::new(), false),
        Err(e) => return note("WARN", format!("not edited: {e}")),
    };
    let (edited, report) = match proto::eggs::apply(file.parser, &original, &file.edits, ctx) {
        Ok(r) => r,
        Err(e) => return note("WARN", format!("not edited: {e}")),
    };
    if !report.unknown_placeholders.is_empty() {
        let names: Vec<String> = report
            .unknown_placeholders
            .iter()
            .map(|p| format!("{{{{{p}}}}}"))
            .collect();
        note(
            "WARN",
            format!("unknown placeholders left as written: {}", names.join(", ")),
        );
    }
    for skipped in &report.skipped {
        note("WARN", format!("edit skipped: {skipped}"));
    }
    if edited == original || (!existed && edited.is_empty()) {
        return;
    }
    let opts = WriteOptions {
        disk_limit: Some(disk_limit),
        create_parents: true,
    };
    if let Err(e) = volume.write(&path, &edited, opts) {
        note("WARN", format!("not written: {e}"));
    }
}

/// The raw bytes of a config file (at most what `apply` edits, one byte more to notice).
fn read(volume: &Volume, path: &str) -> Result<Vec<u8>, FileError> {
    let content = volume.read(path, MAX_CONFIG_BYTES as u64 + 1)?;
    Ok(match content.encoding {
        ContentEncoding::Utf8 => content.content.into_bytes(),
        ContentEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(content.content)
            .unwrap_or_default(),
    })
}
