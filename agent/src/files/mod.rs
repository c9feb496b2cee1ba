//! File operations on a server's volume, confined beneath a directory fd.
//!
//! Paths arrive as container paths (`/server/...`), are validated into a [`RelPath`], and
//! are resolved beneath the volume's directory fd with `openat2(RESOLVE_BENEATH)` — or, on
//! kernels without it, a component-by-component `openat(O_NOFOLLOW)` walk. Nothing a
//! container does inside its own files (symlinks to `/etc`, `/proc/self/root`, rename races)
//! makes the agent read or write outside the volume.
//!
//! Link policy:
//! - reads and listings (openat2): symlinks that stay inside are followed; links that
//!   leave, and magic links, fail with `INVALID_PATH`.
//! - reads and listings (walk fallback): no symlink is followed at all (stricter).
//! - writes: no symlink anywhere on the path; a target that is a symlink is refused.
//!
//! Layout: `path` (validation), `resolve` (openat2 or the walk), `volume` (the directory
//! fd, listing, whole-file read and write), `ops` (chunked reads, rename, mkdir, recursive
//! delete), `upload` (chunked uploads), `usage` (disk usage), `acl` (sharing without root),
//! `archive` (a volume as a tar.gz, for backups), `unpack` (restores, as hostile input).
//!
//! Everything here blocks; async callers wrap calls in `smol::unblock`.

pub mod acl;
mod archive;
mod error;
mod ops;
mod path;
mod resolve;
mod unpack;
mod upload;
mod usage;
mod volume;

pub use archive::{Packed, RESERVED};
pub use error::FileError;
pub use ops::{Chunk, MAX_DELETE_ENTRIES};
pub use path::{CONTAINER_ROOT, RelPath, to_relative};
pub use resolve::Resolver;
pub use unpack::{MAX_ARCHIVE_ENTRIES, RESTORE_DIR, Unpacked};
pub use upload::{ChunkWrite, MAX_UPLOADS, STAGING_DIR, UPLOAD_IDLE};
pub use usage::{DiskUsageCache, MAX_WALK_DEPTH};
pub use volume::{
    DEFAULT_MAX_READ_BYTES, DEFAULT_USAGE_MAX_AGE, FileContent, Listing, MAX_LIST_SCAN,
    MAX_PAGE_ENTRIES, MAX_WRITE_BYTES, Page, Volume, WriteOptions,
};
