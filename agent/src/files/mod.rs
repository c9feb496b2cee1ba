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
//! Everything here blocks; async callers wrap calls in `smol::unblock`.

pub mod acl;
mod error;
mod path;
mod resolve;
mod usage;
mod volume;

pub use error::FileError;
pub use path::{CONTAINER_ROOT, RelPath, to_relative};
pub use resolve::Resolver;
pub use usage::{DiskUsageCache, MAX_WALK_DEPTH};
pub use volume::{
    DEFAULT_MAX_READ_BYTES, DEFAULT_USAGE_MAX_AGE, FileContent, Listing, MAX_LIST_SCAN,
    MAX_PAGE_ENTRIES, MAX_WRITE_BYTES, Page, Volume, WriteOptions,
};
