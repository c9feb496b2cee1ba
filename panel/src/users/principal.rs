//! Who is calling: the admin token, or a user through a session cookie or an API key.
//! Resolved once per request by the route gate (`api::gate`) and handed to the handler.

use crate::store::Store;

use super::rights::Perms;

/// How a user proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A session cookie; the session's key (hex SHA-256 of its id).
    Session(String),
    /// An API key, by id.
    Key(String),
}

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPrincipal {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub via: Via,
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `PANEL_ADMIN_TOKEN` (or the generated one): every right.
    AdminToken,
    User(UserPrincipal),
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::AdminToken => true,
            Principal::User(u) => u.admin,
        }
    }

    pub fn user(&self) -> Option<&UserPrincipal> {
        match self {
            Principal::AdminToken => None,
            Principal::User(u) => Some(u),
        }
    }

    /// Authenticated by a cookie, so subject to the same-origin check.
    pub fn by_cookie(&self) -> bool {
        matches!(
            self.user(),
            Some(UserPrincipal {
                via: Via::Session(_),
                ..
            })
        )
    }

    /// The caller's rights on `server_id` (which must exist).
    pub fn perms_on(&self, store: &Store, server_id: &str) -> Perms {
        match self {
            Principal::User(u) if !u.admin => store.perms_of(&u.id, server_id),
            _ => Perms::ADMIN,
        }
    }
}
