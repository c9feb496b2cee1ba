//! Validation of everything a command carries: ids, egg configs, file paths, signals.
//!
//! Both sides run these: the panel before it sends anything (`CONFIG_INVALID`, 400), the agent
//! before it touches Docker or the disk (it trusts the panel, not the contents). Each error
//! names the field and says what is wrong with it.

use crate::ErrorCode;
use crate::egg::EggConfig;
use crate::quantity::{Bytes, MilliCpu, QuantityError};

/// Longest id (server or agent).
pub const MAX_ID_LEN: usize = 64;
/// Longest file path accepted in a command.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest console line accepted by `send_command`.
pub const MAX_CONSOLE_LINE: usize = 4096;
/// Most bytes one `read_file_chunk` asks for.
pub const MAX_CHUNK_LENGTH: u64 = 256 * 1024;
/// Most raw bytes one `write_file_chunk` carries (its base64 still fits a 1 MiB frame).
pub const MAX_WRITE_CHUNK: usize = 512 * 1024;
/// Longest upload id.
pub const MAX_UPLOAD_ID_LEN: usize = 64;
/// Console lines `get_logs` answers by default and at most.
pub const DEFAULT_LOG_LINES: usize = 150;
pub const MAX_LOG_LINES: usize = 1000;
const MAX_NAME_LEN: usize = 64;
const MAX_IMAGE_LEN: usize = 255;
const MAX_PORTS: usize = 64;
const MAX_ENV_VARS: usize = 128;
const MAX_ENV_NAME: usize = 128;
const MAX_ENV_VALUE: usize = 32 * 1024;
const MAX_STARTUP: usize = 8 * 1024;
/// Docker's own minimum memory limit (it refuses less when creating the container).
pub const MIN_MEMORY: u64 = 6 << 20;
/// Largest uid or gid a server may run as: `(uid_t)-1` means "no id" to the kernel.
pub const MAX_USER_ID: u32 = u32::MAX - 1;
/// Variables the agent sets itself; an egg may use but not define them.
pub const RESERVED_ENV: &[&str] = &["SERVER_MEMORY", "SERVER_PORT", "SERVER_IP", "STARTUP"];

/// Which id a [`ValidationError::InvalidId`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Server,
    Agent,
}

impl IdKind {
    fn field(self) -> &'static str {
        match self {
            IdKind::Server => "serverId",
            IdKind::Agent => "agentId",
        }
    }
}

/// A precise validation failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("{}: {reason}", .kind.field())]
    InvalidId { kind: IdKind, reason: String },
    #[error("eggConfig.{field}: {reason}")]
    Egg { field: String, reason: String },
    #[error("eggConfig.limits.{field}: {source}")]
    Quantity {
        field: &'static str,
        source: QuantityError,
    },
    #[error(
        "eggConfig.startup: placeholder {{{{{name}}}}} does not match any environment variable"
    )]
    UnresolvedPlaceholder { name: String },
    #[error("path: {0}")]
    Path(String),
    #[error(
        "signal: `{0}` is not a supported signal (SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGKILL, SIGUSR1, SIGUSR2)"
    )]
    Signal(String),
    #[error("command: {0}")]
    ConsoleLine(String),
    /// A field of a file or console payload (`length`, `uploadId`, `lines`, ...).
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

impl ValidationError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ValidationError::Path(_) => ErrorCode::InvalidPath,
            ValidationError::InvalidId { .. }
            | ValidationError::Signal(_)
            | ValidationError::ConsoleLine(_)
            | ValidationError::Field { .. } => ErrorCode::InvalidMessage,
            ValidationError::Egg { .. }
            | ValidationError::Quantity { .. }
            | ValidationError::UnresolvedPlaceholder { .. } => ErrorCode::ConfigInvalid,
        }
    }
}

fn egg_err(field: impl Into<String>, reason: impl Into<String>) -> ValidationError {
    ValidationError::Egg {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Server and agent ids: 1–64 of `A-Z a-z 0-9 _ -`, starting with a letter or digit. They end
/// up in container names, labels and directory names, so nothing else is allowed.
pub fn id(kind: IdKind, s: &str) -> Result<(), ValidationError> {
    let fail = |reason: &str| {
        Err(ValidationError::InvalidId {
            kind,
            reason: reason.to_owned(),
        })
    };
    if s.is_empty() {
        return fail("must not be empty");
    }
    if s.len() > MAX_ID_LEN {
        return fail("must be at most 64 characters");
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return fail("must start with a letter or digit");
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return fail("may contain only letters, digits, '_' and '-'");
    }
    Ok(())
}

/// A validated egg, with its quantities parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EggLimits {
    pub memory: Bytes,
    pub cpu: MilliCpu,
    pub disk: Bytes,
}

/// One port binding of an egg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortBinding {
    pub container: u16,
    pub host: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Everything the agent needs from an egg after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEgg {
    pub limits: EggLimits,
    pub ports: Vec<PortBinding>,
    /// `user` as numbers (`uid`, `gid`; a lone uid is its own gid), when the egg sets one.
    pub user: Option<(u32, u32)>,
}

/// Checks an egg completely: name, image reference, ports, environment, limits, startup line
/// and the optional extensions.
pub fn egg(egg: &EggConfig<'_>) -> Result<ValidEgg, ValidationError> {
    egg_name(&egg.name)?;
    image_reference(&egg.image).map_err(|r| egg_err("image", r))?;
    let ports = ports(egg)?;
    environment(egg)?;
    let limits = limits(egg)?;
    startup(egg)?;
    extensions(egg)?;
    let user = egg.user.as_deref().map(user_ids).transpose()?;
    Ok(ValidEgg {
        limits,
        ports,
        user,
    })
}

fn egg_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(egg_err("name", "must be 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b" ._-".contains(&c))
    {
        return Err(egg_err(
            "name",
            "may contain only letters, digits, spaces, '.', '_' and '-'",
        ));
    }
    Ok(())
}

fn ports(egg: &EggConfig<'_>) -> Result<Vec<PortBinding>, ValidationError> {
    if egg.ports.0.len() > MAX_PORTS {
        return Err(egg_err("ports", "at most 64 port bindings"));
    }
    let mut out: Vec<PortBinding> = Vec::with_capacity(egg.ports.0.len());
    for (key, host) in &egg.ports.0 {
        let field = format!("ports[\"{key}\"]");
        let (num, protocol) = match key.split_once('/') {
            None => (&**key, Protocol::Tcp),
            Some((n, "tcp")) => (n, Protocol::Tcp),
            Some((n, "udp")) => (n, Protocol::Udp),
            Some(_) => return Err(egg_err(field, "protocol must be /tcp or /udp")),
        };
        let container = port_number(num)
            .ok_or_else(|| egg_err(&field, "container port must be an integer 1..=65535"))?;
        let host = u16::try_from(*host)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| egg_err(&field, "host port must be an integer 1..=65535"))?;
        let binding = PortBinding {
            container,
            host,
            protocol,
        };
        if out
            .iter()
            .any(|b| b.protocol == protocol && (b.container == container || b.host == host))
        {
            return Err(egg_err(
                field,
                format!("duplicate {} port binding", protocol.as_str()),
            ));
        }
        out.push(binding);
    }
    Ok(out)
}

fn port_number(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// POSIX-ish variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ENV_NAME
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn environment(egg: &EggConfig<'_>) -> Result<(), ValidationError> {
    let vars = &egg.environment.0;
    if vars.len() > MAX_ENV_VARS {
        return Err(egg_err("environment", "at most 128 variables"));
    }
    for (i, (name, value)) in vars.iter().enumerate() {
        let field = format!("environment.{name}");
        if !env_name(name) {
            return Err(egg_err(
                field,
                "name must match [A-Za-z_][A-Za-z0-9_]* (at most 128 characters)",
            ));
        }
        if RESERVED_ENV.contains(&&**name) {
            return Err(egg_err(
                field,
                "is set by the agent and cannot be overridden",
            ));
        }
        if vars[..i].iter().any(|(n, _)| n == name) {
            return Err(egg_err(field, "is defined twice"));
        }
        if value.len() > MAX_ENV_VALUE || value.contains('\0') {
            return Err(egg_err(
                field,
                "value must be at most 32 KiB and contain no NUL",
            ));
        }
    }
    Ok(())
}

fn limits(egg: &EggConfig<'_>) -> Result<EggLimits, ValidationError> {
    let q = |field: &'static str| move |source| ValidationError::Quantity { field, source };
    let memory = Bytes::parse(&egg.limits.memory).map_err(q("memory"))?;
    let disk = Bytes::parse(&egg.limits.disk).map_err(q("disk"))?;
    let cpu = MilliCpu::parse(&egg.limits.cpu).map_err(q("cpu"))?;
    if memory.0 < MIN_MEMORY {
        return Err(egg_err(
            "limits.memory",
            "must be at least 6m (Docker's minimum)",
        ));
    }
    if disk.0 == 0 {
        return Err(q("disk")(QuantityError::Zero(egg.limits.disk.to_string())));
    }
    if cpu.0 < 10 {
        return Err(egg_err("limits.cpu", "must be at least 0.01 cores"));
    }
    Ok(EggLimits { memory, cpu, disk })
}

fn startup(egg: &EggConfig<'_>) -> Result<(), ValidationError> {
    let line = &*egg.startup;
    if line.trim().is_empty() {
        return Err(egg_err("startup", "must not be empty"));
    }
    if line.len() > MAX_STARTUP || line.contains('\0') {
        return Err(egg_err(
            "startup",
            "must be at most 8 KiB and contain no NUL",
        ));
    }
    for name in placeholders(line).map_err(|r| egg_err("startup", r))? {
        if !RESERVED_ENV[..3].contains(&name) && egg.environment.get(name).is_none() {
            return Err(ValidationError::UnresolvedPlaceholder {
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// The `{{VAR}}` names in a startup line, in order. `{{` without a matching `}}`, or an
/// invalid name between them, is an error.
pub fn placeholders(line: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "`{{` without a closing `}}`".to_owned())?;
        let name = after[..end].trim();
        if !env_name(name) {
            return Err(format!(
                "`{{{{{}}}}}` is not a valid placeholder name",
                &after[..end]
            ));
        }
        out.push(name);
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Replaces every `{{VAR}}` using `lookup`; call after [`egg`] has validated the line.
pub fn substitute<'v>(line: &str, lookup: impl Fn(&str) -> Option<&'v str>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push_str(lookup(after[..end].trim()).unwrap_or(""));
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn extensions(egg: &EggConfig<'_>) -> Result<(), ValidationError> {
    crate::eggs::check::wire(egg).map_err(|e| egg_err(e.field, e.reason))?;
    if let Some(stop) = &egg.stop {
        if let Some(cmd) = &stop.command {
            console_line(cmd).map_err(|r| egg_err("stop.command", r.to_string()))?;
        }
        if let Some(sig) = &stop.signal {
            signal(sig).map_err(|_| egg_err("stop.signal", format!("`{sig}` is not supported")))?;
        }
    }
    if let Some(b) = &egg.backup {
        backup_hooks(b)?;
    }
    if let Some(q) = &egg.query {
        if q.kind != "minecraft" {
            return Err(egg_err("query.type", "only \"minecraft\" is supported"));
        }
        if q.port == 0 {
            return Err(egg_err("query.port", "must be 1..=65535"));
        }
    }
    Ok(())
}

/// `backup.before` / `backup.after`: at most [`crate::egg::MAX_BACKUP_HOOKS`] console lines each.
fn backup_hooks(b: &crate::egg::BackupHooks) -> Result<(), ValidationError> {
    for (field, lines) in [("backup.before", &b.before), ("backup.after", &b.after)] {
        if lines.len() > crate::egg::MAX_BACKUP_HOOKS {
            return Err(egg_err(field, "at most 16 console lines"));
        }
        for line in lines {
            console_line(line).map_err(|r| egg_err(field, r.to_string()))?;
        }
    }
    Ok(())
}

/// `uid` or `uid:gid`, parsed as numbers: digits only, each at most [`MAX_USER_ID`], and a
/// uid that is not 0 however it is spelled (`"00"`, `"0000000000"`). A lone uid is its own
/// gid. Group 0 is left to the agent's node policy.
pub fn user_ids(user: &str) -> Result<(u32, u32), ValidationError> {
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    let (Some(uid), Some(gid)) = (numeric_id(u), numeric_id(g)) else {
        return Err(egg_err(
            "user",
            format!("must be numeric `uid` or `uid:gid`, each 1..={MAX_USER_ID}"),
        ));
    };
    if uid == 0 {
        return Err(egg_err("user", "servers never run as root (uid 0)"));
    }
    Ok((uid, gid))
}

/// A decimal id: ASCII digits only (leading zeros allowed), at most [`MAX_USER_ID`].
fn numeric_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 10 {
        return None;
    }
    let n: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    u32::try_from(n).ok().filter(|&n| n <= MAX_USER_ID)
}

/// The signals a stop or kill may name, with their numbers (Linux).
pub fn signal(name: &str) -> Result<(&'static str, i32), ValidationError> {
    let bare = name.strip_prefix("SIG").unwrap_or(name);
    Ok(match bare {
        "TERM" => ("SIGTERM", 15),
        "INT" => ("SIGINT", 2),
        "QUIT" => ("SIGQUIT", 3),
        "HUP" => ("SIGHUP", 1),
        "KILL" => ("SIGKILL", 9),
        "USR1" => ("SIGUSR1", 10),
        "USR2" => ("SIGUSR2", 12),
        _ => return Err(ValidationError::Signal(name.to_owned())),
    })
}

/// A console line: no newline or NUL (it is one line), at most 4 KiB.
pub fn console_line(line: &str) -> Result<(), ValidationError> {
    if line.len() > MAX_CONSOLE_LINE {
        return Err(ValidationError::ConsoleLine(
            "must be at most 4096 bytes".into(),
        ));
    }
    if line.contains(['\n', '\r', '\0']) {
        return Err(ValidationError::ConsoleLine(
            "must be a single line without NUL".into(),
        ));
    }
    Ok(())
}

fn field_err(field: &'static str, reason: impl Into<String>) -> ValidationError {
    ValidationError::Field {
        field,
        reason: reason.into(),
    }
}

/// `read_file_chunk`: a valid path, a length of 1 to [`MAX_CHUNK_LENGTH`] bytes, and an
/// `offset + length` that does not overflow.
pub fn read_chunk(c: &crate::ReadFileChunk<'_>) -> Result<(), ValidationError> {
    server_path(&c.path)?;
    if c.length == 0 || c.length > MAX_CHUNK_LENGTH {
        return Err(field_err("length", "must be 1 to 262144 bytes"));
    }
    if c.offset
        .checked_add(c.length)
        .is_none_or(|end| end > i64::MAX as u64)
    {
        return Err(field_err("offset", "is past any possible file size"));
    }
    Ok(())
}

/// An upload id: 1–64 of `A-Z a-z 0-9 _ -` (it names the temp file on the agent).
pub fn upload_id(id: &str) -> Result<(), ValidationError> {
    token_id("uploadId", id)
}

/// A backup or restore id (`backupId`, `restoreId`): the rules of [`upload_id`].
pub fn transfer_id(field: &'static str, id: &str) -> Result<(), ValidationError> {
    token_id(field, id)
}

fn token_id(field: &'static str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > MAX_UPLOAD_ID_LEN {
        return Err(field_err(field, "must be 1 to 64 characters"));
    }
    if !id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Err(field_err(
            field,
            "may contain only letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

/// `backup_read`: a valid id, 1 to [`MAX_CHUNK_LENGTH`] bytes, no overflowing offset.
pub fn backup_read(c: &crate::BackupRead<'_>) -> Result<(), ValidationError> {
    transfer_id("backupId", &c.backup_id)?;
    if c.length == 0 || c.length > MAX_CHUNK_LENGTH {
        return Err(field_err("length", "must be 1 to 262144 bytes"));
    }
    if c.offset.checked_add(c.length).is_none() {
        return Err(field_err("offset", "is past any possible archive size"));
    }
    Ok(())
}

/// `restore_chunk`, before its content is decoded: a valid id, base64 content of at most
/// [`MAX_WRITE_CHUNK`] bytes once decoded, no overflowing offset.
pub fn restore_chunk(c: &crate::RestoreChunk<'_>) -> Result<(), ValidationError> {
    transfer_id("restoreId", &c.restore_id)?;
    if c.content.len() > MAX_WRITE_CHUNK.div_ceil(3) * 4 {
        return Err(field_err(
            "content",
            "must be at most 524288 bytes per chunk",
        ));
    }
    if c.offset.checked_add(c.content.len() as u64).is_none() {
        return Err(field_err("offset", "is past any possible archive size"));
    }
    Ok(())
}

/// `write_file_chunk`, before its content is decoded: a path below `/server` (not the root
/// itself), a valid upload id, content of at most [`MAX_WRITE_CHUNK`] bytes once decoded,
/// and an end offset that does not overflow.
pub fn write_chunk(c: &crate::WriteFileChunk<'_>) -> Result<(), ValidationError> {
    if server_path(&c.path)?.is_empty() {
        return Err(ValidationError::Path(
            "`/server` itself is a directory".into(),
        ));
    }
    upload_id(&c.upload_id)?;
    let max_encoded = match c.encoding {
        crate::ContentEncoding::Utf8 => MAX_WRITE_CHUNK,
        crate::ContentEncoding::Base64 => MAX_WRITE_CHUNK.div_ceil(3) * 4,
    };
    if c.content.len() > max_encoded {
        return Err(field_err(
            "content",
            "must be at most 524288 bytes per chunk",
        ));
    }
    if c.offset
        .checked_add(c.content.len() as u64)
        .is_none_or(|end| end > i64::MAX as u64)
    {
        return Err(field_err("offset", "is past any possible file size"));
    }
    Ok(())
}

/// `rename_file`: both paths valid, neither the root, and not a directory into itself
/// (`to` below `from`). Returns both relative to `/server`.
pub fn rename(r: &crate::RenameFile<'_>) -> Result<(String, String), ValidationError> {
    let from = server_path(&r.from)?;
    let to = server_path(&r.to)?;
    if from.is_empty() || to.is_empty() {
        return Err(ValidationError::Path(
            "`/server` itself cannot be moved or replaced".into(),
        ));
    }
    if to
        .strip_prefix(&from)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        return Err(ValidationError::Path(format!(
            "`{}` cannot be moved onto or into itself",
            truncate(&r.from)
        )));
    }
    Ok((from, to))
}

/// `delete_file` and `create_directory`: a path below `/server`, not the root itself.
pub fn file_target(path: &str) -> Result<String, ValidationError> {
    let rel = server_path(path)?;
    if rel.is_empty() {
        return Err(ValidationError::Path(
            "`/server` itself cannot be deleted or created".into(),
        ));
    }
    Ok(rel)
}

/// `get_logs`'s `lines`: absent is [`DEFAULT_LOG_LINES`]; 1 to [`MAX_LOG_LINES`].
pub fn log_lines(lines: Option<u64>) -> Result<usize, ValidationError> {
    match lines {
        None => Ok(DEFAULT_LOG_LINES),
        Some(n) if (1..=MAX_LOG_LINES as u64).contains(&n) => Ok(n as usize),
        Some(_) => Err(field_err("lines", "must be 1 to 1000")),
    }
}

/// A container file path: `/server` or below, no NUL, no `..`, at most 4096 bytes. Returns
/// the path relative to `/server` (`""` for the root), with `.` and empty components removed.
pub fn server_path(path: &str) -> Result<String, ValidationError> {
    let fail = |r: &str| Err(ValidationError::Path(format!("`{}`: {r}", truncate(path))));
    if path.len() > MAX_PATH_LEN {
        return fail("is longer than 4096 bytes");
    }
    if path.contains('\0') {
        return fail("contains NUL");
    }
    let Some(rest) = path.strip_prefix("/server") else {
        return fail("must be under /server");
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return fail("must be under /server");
    }
    let mut parts = Vec::new();
    for comp in rest.split('/') {
        match comp {
            "" | "." => {}
            ".." => return fail("must not contain `..`"),
            c if c.len() > 255 => return fail("has a component longer than 255 bytes"),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].replace('\0', "\\0")
}

/// Docker image references: `[domain[:port]/]path[:tag][@digest]`, following the grammar of
/// the distribution/reference package (lowercase path components, tag `[\w][\w.-]{0,127}`,
/// digest `algorithm:hex`).
pub fn image_reference(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("must not be empty".into());
    }
    if image.len() > MAX_IMAGE_LEN {
        return Err("must be at most 255 characters".into());
    }
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (alg, hex) = d
            .split_once(':')
            .ok_or_else(|| format!("digest `{d}` must be algorithm:hex"))?;
        let alg_ok = !alg.is_empty()
            && alg
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+._-".contains(&c));
        if !alg_ok || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("digest `{d}` is malformed"));
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let b = t.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
        if !ok {
            return Err(format!("tag `{t}` is invalid"));
        }
    }
    let mut comps: Vec<&str> = name.split('/').collect();
    if comps.len() > 1 {
        let first = comps[0];
        if first.contains(['.', ':']) || first == "localhost" {
            domain(first)?;
            comps.remove(0);
        }
    }
    for c in comps {
        path_component(c)?;
    }
    Ok(())
}

/// The registry an image reference pulls from (`host` or `host:port`, as written), or
/// `None` for Docker Hub (a first component without `.` or `:` that is not `localhost`).
pub fn image_registry(image: &str) -> Option<&str> {
    let name = image.split_once('@').map_or(image, |(n, _)| n);
    let (first, _) = name.split_once('/')?;
    (first.contains(['.', ':']) || first == "localhost").then_some(first)
}

/// A registry as written in an image reference: `host` or `host:port`.
pub fn registry_host(registry: &str) -> Result<(), String> {
    domain(registry)
}

fn domain(d: &str) -> Result<(), String> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port
        && port_number(p).is_none()
    {
        return Err(format!("registry port in `{d}` is invalid"));
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("registry `{d}` is invalid"))
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component(c: &str) -> Result<(), String> {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let bad = || {
        Err(format!(
            "name component `{c}` must be lowercase letters, digits and separators"
        ))
    };
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}
