//! The file module's one error type, and its single mapping to a wire code.
//!
//! Every message names the *container* path (`/server/...`) the request used, never the
//! volume's location on the host: these messages travel to the panel and to operators.

use nix::errno::Errno;
use proto::ErrorCode;

/// Everything that can go wrong with a file operation on a server's volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The path itself is malformed (not under `/server`, `..`, NUL, too long, ...).
    #[error("invalid path {0}")]
    InvalidPath(String),

    /// Resolution left the volume or went through a link the operation may not follow.
    #[error("`{path}` leads outside the server's files or through a link that may not be followed")]
    Escapes { path: String },

    /// The final component is a symbolic link and the operation refuses to act through it.
    #[error("`{path}` is a symbolic link; replace or remove the link first")]
    Symlink { path: String },

    #[error("`{path}` does not exist")]
    NotFound { path: String },

    #[error("`{path}` is a directory")]
    IsDirectory { path: String },

    #[error("`{path}` (or one of its parents) is not a directory")]
    NotDirectory { path: String },

    /// Devices, FIFOs and sockets are never opened: reading a FIFO would block forever.
    #[error("`{path}` is not a regular file")]
    NotRegularFile { path: String },

    #[error("`{path}` is {size} bytes, over the {limit}-byte limit for one request")]
    TooLarge { path: String, size: u64, limit: u64 },

    #[error(
        "writing `{path}` would bring the server's files to {needed} bytes, over its disk limit of {limit} bytes"
    )]
    DiskLimit {
        path: String,
        needed: u64,
        limit: u64,
    },

    #[error("the disk holding the server's files is full (or over quota) while writing `{path}`")]
    NoSpace { path: String },

    #[error("permission denied on `{path}`")]
    PermissionDenied { path: String },

    /// The tree is nested deeper than the walk is willing to hold directory fds for.
    #[error("the server's files are nested deeper than {max_depth} directories")]
    TooDeep { max_depth: usize },

    /// The volume root itself could not be opened (missing, not a directory, ...).
    #[error("the server's files are unavailable: {0}")]
    VolumeUnavailable(Errno),

    #[error("I/O error on `{path}`: {errno}")]
    Io { path: String, errno: Errno },

    #[error("`{path}` already exists")]
    Exists { path: String },

    #[error("`{from}` cannot be moved into itself (`{to}`)")]
    IntoItself { from: String, to: String },

    /// A directory holds more entries than one delete is willing to remove.
    #[error("`{path}` holds more than {max} entries; delete its subdirectories first")]
    TooManyEntries { path: String, max: u64 },

    /// A chunk for an upload the agent does not know (never begun, finished, cancelled,
    /// abandoned, or lost with an agent restart): uploads start at offset 0.
    #[error("upload {upload_id} is not in progress; start it again from offset 0")]
    UnknownUpload { upload_id: String },

    #[error("upload {upload_id}: chunk at offset {got}, expected {expected}")]
    UploadOffset {
        upload_id: String,
        expected: u64,
        got: u64,
    },

    #[error("upload {upload_id} is for another path")]
    UploadPath { upload_id: String },

    #[error("{max} uploads are already in progress for this server; retry when one is done")]
    TooManyUploads { max: usize },

    /// A backup archive that a restore refuses: the entry and why. Nothing of the volume
    /// was changed.
    #[error("the archive is refused at `{entry}`: {reason}")]
    BadArchive { entry: String, reason: String },

    /// The upload's temp file was removed or replaced (by the server) before it was done.
    #[error("the temp file of upload {upload_id} was changed by someone else")]
    UploadTampered { upload_id: String },
}

impl FileError {
    /// The wire code for this error; the only place file errors become codes.
    pub fn code(&self) -> ErrorCode {
        match self {
            FileError::InvalidPath(_)
            | FileError::Escapes { .. }
            | FileError::Symlink { .. }
            | FileError::IsDirectory { .. }
            | FileError::NotDirectory { .. }
            | FileError::NotRegularFile { .. }
            | FileError::IntoItself { .. } => ErrorCode::InvalidPath,
            FileError::Exists { .. }
            | FileError::UnknownUpload { .. }
            | FileError::UploadOffset { .. }
            | FileError::UploadTampered { .. } => ErrorCode::Conflict,
            FileError::UploadPath { .. } => ErrorCode::InvalidMessage,
            FileError::BadArchive { .. } => ErrorCode::InvalidArchive,
            FileError::TooManyUploads { .. } => ErrorCode::Busy,
            FileError::NotFound { .. } => ErrorCode::FileNotFound,
            FileError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            FileError::DiskLimit { .. }
            | FileError::NoSpace { .. }
            | FileError::TooDeep { .. }
            | FileError::TooManyEntries { .. } => ErrorCode::InsufficientResources,
            FileError::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            FileError::VolumeUnavailable(_) | FileError::Io { .. } => ErrorCode::InternalError,
        }
    }

    /// Maps an errno from a step on `path` (a container path) to the matching variant.
    ///
    /// `ELOOP` (a symlink met under `RESOLVE_NO_SYMLINKS`/`O_NOFOLLOW`, or a loop) and `EXDEV`
    /// (`RESOLVE_BENEATH` caught an escape or a magic link) both mean "not allowed here".
    pub(crate) fn from_errno(path: &str, errno: Errno) -> FileError {
        let path = path.to_owned();
        match errno {
            Errno::ENOENT => FileError::NotFound { path },
            Errno::ELOOP | Errno::EXDEV => FileError::Escapes { path },
            Errno::ENOTDIR => FileError::NotDirectory { path },
            Errno::EISDIR => FileError::IsDirectory { path },
            Errno::EACCES | Errno::EPERM => FileError::PermissionDenied { path },
            Errno::ENOSPC | Errno::EDQUOT => FileError::NoSpace { path },
            Errno::ENAMETOOLONG => FileError::InvalidPath(format!("`{path}`: name too long")),
            Errno::EEXIST | Errno::ENOTEMPTY => FileError::Exists { path },
            errno => FileError::Io { path, errno },
        }
    }

    /// Same as [`FileError::from_errno`] for a `std::io::Error`.
    pub(crate) fn from_io(path: &str, e: &std::io::Error) -> FileError {
        FileError::from_errno(path, Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }
}
