//! Container paths (`/server/...`) turned into validated paths relative to the volume root.
//!
//! The rules themselves (under `/server`, no `..`, no NUL, 4096-byte and 255-byte-component
//! caps, `.` and repeated slashes dropped) live in [`proto::validate::server_path`] so the
//! panel and the agent can never disagree; this module wraps the result in a type that the
//! resolver can trust, and re-checks the invariants it relies on.

use super::error::FileError;
use proto::validate::{ValidationError, server_path};

/// The container path prefix under which a server's files are mounted.
pub const CONTAINER_ROOT: &str = "/server";

/// A validated path relative to the volume root: components separated by single `/`,
/// none of them empty, `.` or `..`; the empty string is the root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath {
    rel: String,
}

/// Validates a container path and returns it relative to the volume root.
///
/// `..` is rejected outright even though `RESOLVE_BENEATH` and the component walk would also
/// stop it: a path that tries to climb is malformed, not merely unlucky.
pub fn to_relative(container_path: &str) -> Result<RelPath, FileError> {
    let rel = server_path(container_path).map_err(|e| match e {
        ValidationError::Path(msg) => FileError::InvalidPath(msg),
        other => FileError::InvalidPath(other.to_string()),
    })?;
    // Defence in depth: the resolver's safety argument rests on these invariants.
    let sound = rel.is_empty()
        || rel
            .split('/')
            .all(|c| !(c.is_empty() || c == "." || c == ".." || c.contains('\0')));
    if !sound {
        return Err(FileError::InvalidPath(format!(
            "`{container_path}`: not a normalised path"
        )));
    }
    Ok(RelPath { rel })
}

impl RelPath {
    /// The volume root (`/server`).
    pub fn root() -> RelPath {
        RelPath { rel: String::new() }
    }

    /// True for the volume root.
    pub fn is_root(&self) -> bool {
        self.rel.is_empty()
    }

    /// The relative path, `""` for the root.
    pub fn as_str(&self) -> &str {
        &self.rel
    }

    /// The components, in order; empty for the root.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.rel.split('/').filter(|c| !c.is_empty())
    }

    /// The path as the container sees it; the only form that may appear in messages.
    pub fn container_path(&self) -> String {
        if self.rel.is_empty() {
            CONTAINER_ROOT.to_owned()
        } else {
            format!("{CONTAINER_ROOT}/{}", self.rel)
        }
    }

    /// Splits into the parent directory and the final name; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &str)> {
        if self.rel.is_empty() {
            return None;
        }
        Some(match self.rel.rsplit_once('/') {
            Some((parent, name)) => (
                RelPath {
                    rel: parent.to_owned(),
                },
                name,
            ),
            None => (RelPath::root(), self.rel.as_str()),
        })
    }

    /// The path as `openat2` wants it: `.` for the root.
    pub(crate) fn for_syscall(&self) -> &str {
        if self.rel.is_empty() { "." } else { &self.rel }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_splits() {
        let p = to_relative("/server//world/./region/").unwrap();
        assert_eq!(p.as_str(), "world/region");
        assert_eq!(p.container_path(), "/server/world/region");
        let (parent, name) = p.split_last().unwrap();
        assert_eq!(parent.as_str(), "world");
        assert_eq!(name, "region");
        let rel = to_relative("/server/a").unwrap();
        let (parent, name) = rel.split_last().unwrap();
        assert!(parent.is_root());
        assert_eq!(name, "a");
        assert!(to_relative("/server").unwrap().split_last().is_none());
        assert_eq!(to_relative("/server/").unwrap().for_syscall(), ".");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "server",
            "/serverx",
            "/etc/passwd",
            "/server/../etc",
            "/server/a/../../b",
            "/server/a\0b",
        ] {
            let err = to_relative(bad).unwrap_err();
            assert!(matches!(err, FileError::InvalidPath(_)), "{bad:?}: {err:?}");
        }
        assert!(to_relative(&format!("/server/{}", "a".repeat(256))).is_err());
        assert!(to_relative(&format!("/server/{}", "a/".repeat(2100))).is_err());
        assert!(to_relative(&format!("/server/{}", "a".repeat(255))).is_ok());
    }
}
