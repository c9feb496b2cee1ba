//! What a user may do on a server: the five subuser rights of the interface contract, plus
//! `view` (any access at all) and `manage` (owner or admin: subusers, reinstall, backups).
//!
//! Rights are a bit set so that checking one is a mask, and the set a subscriber holds can
//! be kept per server in the events index without allocation.

use serde::{Deserialize, Serialize};

/// One right a subuser can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Perm {
    #[serde(rename = "console.read")]
    ConsoleRead,
    #[serde(rename = "console.write")]
    ConsoleWrite,
    #[serde(rename = "power")]
    Power,
    #[serde(rename = "files.read")]
    FilesRead,
    #[serde(rename = "files.write")]
    FilesWrite,
}

impl Perm {
    /// Every grantable right, in display order.
    pub const ALL: [Perm; 5] = [
        Perm::ConsoleRead,
        Perm::ConsoleWrite,
        Perm::Power,
        Perm::FilesRead,
        Perm::FilesWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Perm::ConsoleRead => "console.read",
            Perm::ConsoleWrite => "console.write",
            Perm::Power => "power",
            Perm::FilesRead => "files.read",
            Perm::FilesWrite => "files.write",
        }
    }

    pub fn parse(s: &str) -> Option<Perm> {
        Perm::ALL.into_iter().find(|p| p.as_str() == s)
    }

    fn bit(self) -> u8 {
        match self {
            Perm::ConsoleRead => 1,
            Perm::ConsoleWrite => 2,
            Perm::Power => 4,
            Perm::FilesRead => 8,
            Perm::FilesWrite => 16,
        }
    }
}

/// What a route needs on the server in its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRight {
    /// Any access (the server is listed for the caller).
    View,
    Perm(Perm),
    /// Owner or admin.
    Manage,
    /// Admins only (delete, change the owner).
    Admin,
}

/// The rights a caller holds on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms(u8);

const VIEW: u8 = 32;
const MANAGE: u8 = 64;
const ADMIN: u8 = 128;

impl Perms {
    /// No access: the server does not exist for the caller.
    pub const NONE: Perms = Perms(0);
    /// Owner and admins.
    pub const ALL: Perms = Perms(31 | VIEW | MANAGE);
    /// Admins: every right, including the admin-only ones.
    pub const ADMIN: Perms = Perms(31 | VIEW | MANAGE | ADMIN);

    /// A subuser's rights (a subuser always sees the server).
    pub fn subuser(perms: &[Perm]) -> Perms {
        Perms(perms.iter().fold(VIEW, |acc, p| acc | p.bit()))
    }

    pub fn is_empty(self) -> bool {
        self.0 & VIEW == 0
    }

    pub fn has(self, right: ServerRight) -> bool {
        match right {
            ServerRight::View => self.0 & VIEW != 0,
            ServerRight::Perm(p) => self.0 & p.bit() != 0,
            ServerRight::Manage => self.0 & MANAGE != 0,
            ServerRight::Admin => self.0 & ADMIN != 0,
        }
    }

    /// The grantable rights held, as the wire names them.
    pub fn names(self) -> Vec<&'static str> {
        Perm::ALL
            .into_iter()
            .filter(|p| self.0 & p.bit() != 0)
            .map(Perm::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subuser_rights_are_what_was_granted_and_view() {
        let p = Perms::subuser(&[Perm::ConsoleRead, Perm::FilesWrite]);
        assert!(p.has(ServerRight::View));
        assert!(p.has(ServerRight::Perm(Perm::ConsoleRead)));
        assert!(!p.has(ServerRight::Perm(Perm::ConsoleWrite)));
        assert!(!p.has(ServerRight::Manage));
        assert_eq!(p.names(), ["console.read", "files.write"]);
        assert!(!Perms::subuser(&[]).is_empty());
        assert!(Perms::NONE.is_empty());
        assert!(Perms::ALL.has(ServerRight::Manage));
        assert!(!Perms::ALL.has(ServerRight::Admin));
        assert!(Perms::ADMIN.has(ServerRight::Admin));
        assert_eq!(Perms::ALL.names().len(), 5);
        for p in Perm::ALL {
            assert_eq!(Perm::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        assert_eq!(Perm::parse("admin"), None);
    }
}
