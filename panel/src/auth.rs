//! Who may do what: the admin token, agent and refresh JWTs, and events tickets.
//!
//! - The admin token comes from `PANEL_ADMIN_TOKEN`, or is generated on first start and
//!   printed once; only its SHA-256 is stored, and a presented token is hashed and compared
//!   in constant time.
//! - The JWT signing key is generated once into `DATA/jwt.key` (0600) and never leaves it.
//! - Agent tokens: scope `agent`, 24 h. Refresh tokens: scope `refresh`, single use; each
//!   rotation issues a new pair in the same family, and presenting an already-used refresh
//!   token revokes the family (every token of that agent) — the classic theft signal.
//! - Events tickets: random, in memory, single use, 30 s — for browsers that cannot set an
//!   `Authorization` header on a WebSocket.

use parking_lot::Mutex;
use ring::digest;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::ErrorCode;
use proto::jwt::{self, Claims, JwtError, Key, Keyring, Scope};

use crate::store::{Rotation, Store, StoreError, TokenFamily};
use crate::users::Principal;

/// Agent token lifetime: the spec's 24 h rotation period.
pub const AGENT_TOKEN_TTL: u64 = 24 * 3600;
/// Refresh token lifetime: an agent offline longer than this must register again.
pub const REFRESH_TOKEN_TTL: u64 = 30 * 24 * 3600;
/// Events ticket lifetime.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
const MAX_TICKETS: usize = 10_000;
const KEY_FILE: &str = "jwt.key";

/// Why authentication failed or could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing or invalid admin token")]
    BadAdminToken,
    /// No credential, or one that is unknown, expired or revoked (token, key, session).
    #[error("missing, invalid or expired credentials")]
    BadCredentials,
    #[error("token refused: {0}")]
    Token(#[from] JwtError),
    #[error("token subject does not match X-Agent-ID")]
    AgentMismatch,
    #[error("token missing its family")]
    NoFamily,
    #[error("token family revoked; register the agent again")]
    Revoked,
    #[error("refresh token reused; every token of agent {0} is revoked")]
    Reused(String),
    #[error("unknown agent")]
    UnknownAgent,
    #[error("unknown or expired ticket")]
    BadTicket,
    #[error("too many outstanding tickets")]
    TooManyTickets,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{0}: must hold exactly 32 bytes; delete it to generate a new key (all agents must register again)"
    )]
    KeyFileCorrupt(String),
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Store(_) | AuthError::KeyFile { .. } | AuthError::KeyFileCorrupt(_) => {
                ErrorCode::InternalError
            }
            AuthError::TooManyTickets => ErrorCode::RateLimited,
            _ => ErrorCode::AuthFailed,
        }
    }
}

/// Where the admin token came from, so that start-up can say the right thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenOrigin {
    /// Generated just now; this is the only time it is shown.
    Generated(String),
    /// From `PANEL_ADMIN_TOKEN`.
    Environment,
    /// Generated on an earlier start (only its hash is stored).
    Stored,
}

/// An agent's freshly issued token pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub agent_id: String,
    pub token: String,
    pub refresh_token: String,
}

pub struct Auth {
    store: Arc<Store>,
    keyring: Keyring,
    admin_hash: [u8; 32],
    tickets: Mutex<HashMap<String, (Instant, Principal)>>,
}

fn sha256(data: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Constant-time equality of two digests (ring's comparison, so the time does not depend on
/// where they differ).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    #[allow(deprecated)]
    ring::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A random 256-bit secret in base64url, for the admin token.
fn random_token() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the OS random number generator failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Loads `DATA/jwt.key`, creating it (0600, exclusive create) on first start.
fn load_or_create_key(data_dir: &Path) -> Result<Key, AuthError> {
    let path = data_dir.join(KEY_FILE);
    let io_err = |source| AuthError::KeyFile {
        path: path.display().to_string(),
        source,
    };
    let secret: Vec<u8> = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            let (_, secret) = Key::generate("tmp");
            f.write_all(&secret).map_err(io_err)?;
            f.sync_all().map_err(io_err)?;
            // Make the new directory entry durable too: tokens signed with this key are
            // handed out right after start-up.
            std::fs::File::open(data_dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err)?;
            secret.to_vec()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::metadata(&path).map_err(io_err)?;
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err)?;
            }
            std::fs::read(&path).map_err(io_err)?
        }
        Err(e) => return Err(io_err(e)),
    };
    if secret.len() != 32 {
        return Err(AuthError::KeyFileCorrupt(path.display().to_string()));
    }
    // The kid names the key without revealing it: the first 4 bytes of its SHA-256.
    let h = sha256(&secret);
    let kid = format!("k{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3]);
    Ok(Key::new(kid, &secret))
}

impl Auth {
    /// Sets up the admin token and the signing key. `env_token` is `PANEL_ADMIN_TOKEN`.
    pub fn init(
        data_dir: &Path,
        store: Arc<Store>,
        env_token: Option<String>,
    ) -> Result<(Auth, AdminTokenOrigin), AuthError> {
        let key = load_or_create_key(data_dir)?;
        let (admin_hash, origin) = match env_token.filter(|t| !t.is_empty()) {
            Some(t) => {
                let h = sha256(t.as_bytes());
                if store.admin_token_hash()? != Some(h) {
                    store.set_admin_token_hash(&h)?;
                }
                (h, AdminTokenOrigin::Environment)
            }
            None => match store.admin_token_hash()? {
                Some(h) => (h, AdminTokenOrigin::Stored),
                None => {
                    let t = random_token();
                    let h = sha256(t.as_bytes());
                    store.set_admin_token_hash(&h)?;
                    (h, AdminTokenOrigin::Generated(t))
                }
            },
        };
        Ok((
            Auth {
                store,
                keyring: Keyring::new(key),
                admin_hash,
                tickets: Mutex::new(HashMap::new()),
            },
            origin,
        ))
    }

    /// Whether `presented` (a bearer token) is the admin token.
    pub fn check_admin(&self, presented: Option<&str>) -> Result<(), AuthError> {
        let Some(p) = presented else {
            return Err(AuthError::BadAdminToken);
        };
        if p.len() > 1024 {
            return Err(AuthError::BadAdminToken);
        }
        if digests_equal(&sha256(p.as_bytes()), &self.admin_hash) {
            Ok(())
        } else {
            Err(AuthError::BadAdminToken)
        }
    }

    fn pair(&self, agent_id: &str, family: &str, refresh_jti: &str, now: u64) -> TokenPair {
        let mut access = Claims::new(agent_id, Scope::Agent, now, AGENT_TOKEN_TTL);
        access.fam = Some(family.to_owned());
        let mut refresh = Claims::new(agent_id, Scope::Refresh, now, REFRESH_TOKEN_TTL);
        refresh.fam = Some(family.to_owned());
        refresh.jti = refresh_jti.to_owned();
        TokenPair {
            agent_id: agent_id.to_owned(),
            token: self.keyring.sign(&access),
            refresh_token: self.keyring.sign(&refresh),
        }
    }

    /// A new token family for a newly registered agent: the family state to store and the
    /// tokens to hand out (only after the state is stored).
    pub fn new_family(&self, agent_id: &str, now: u64) -> (TokenFamily, TokenPair) {
        let family = TokenFamily {
            family: jwt::random_id(),
            refresh_jti: jwt::random_id(),
            revoked: false,
            issued_at: now,
        };
        let pair = self.pair(agent_id, &family.family, &family.refresh_jti, now);
        (family, pair)
    }

    /// Verifies an agent token for the WebSocket upgrade: signature, expiry, scope `agent`,
    /// `sub` equal to `X-Agent-ID`, family not revoked.
    pub fn verify_agent(&self, token: &str, agent_id: &str, now: u64) -> Result<Claims, AuthError> {
        let claims = self.keyring.verify(token, Scope::Agent, now)?;
        if claims.sub != agent_id {
            return Err(AuthError::AgentMismatch);
        }
        let fam = claims.fam.as_deref().ok_or(AuthError::NoFamily)?;
        if !self.store.has_agent(agent_id) {
            return Err(AuthError::UnknownAgent);
        }
        if !self.store.family_active(agent_id, fam) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// Whether tokens of `family` still work for `agent_id` (checked again while connected).
    pub fn family_active(&self, agent_id: &str, family: &str) -> bool {
        self.store.family_active(agent_id, family)
    }

    /// Rotates a refresh token (blocking: commits durably). On reuse the family is revoked
    /// and [`AuthError::Reused`] names the agent so that its live socket can be closed.
    pub fn refresh(&self, refresh_token: &str, now: u64) -> Result<TokenPair, AuthError> {
        let claims = self.keyring.verify(refresh_token, Scope::Refresh, now)?;
        let fam = claims.fam.as_deref().ok_or(AuthError::NoFamily)?;
        let new_jti = jwt::random_id();
        match self
            .store
            .rotate_refresh(&claims.sub, fam, &claims.jti, &new_jti, now)
        {
            Ok(Rotation::Rotated) => Ok(self.pair(&claims.sub, fam, &new_jti, now)),
            Ok(Rotation::ReuseDetected) => Err(AuthError::Reused(claims.sub)),
            Ok(Rotation::Revoked) => Err(AuthError::Revoked),
            Err(StoreError::UnknownAgent(_)) => Err(AuthError::UnknownAgent),
            Err(e) => Err(e.into()),
        }
    }

    /// A single-use events ticket valid for [`TICKET_TTL`], standing for `who`.
    pub fn issue_ticket(&self, now: Instant, who: Principal) -> Result<String, AuthError> {
        let mut t = self.tickets.lock();
        if t.len() >= MAX_TICKETS {
            t.retain(|_, (exp, _)| *exp > now);
            if t.len() >= MAX_TICKETS {
                return Err(AuthError::TooManyTickets);
            }
        }
        let ticket = jwt::random_id();
        t.insert(ticket.clone(), (now + TICKET_TTL, who));
        Ok(ticket)
    }

    /// Consumes a ticket; succeeds once, before it expires, with whom it stands for.
    pub fn redeem_ticket(&self, ticket: &str, now: Instant) -> Result<Principal, AuthError> {
        match self.tickets.lock().remove(ticket) {
            Some((exp, who)) if exp > now => Ok(who),
            _ => Err(AuthError::BadTicket),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{agent, temp_dir};

    fn setup(
        tag: &str,
        env: Option<&str>,
    ) -> (Auth, AdminTokenOrigin, Arc<Store>, std::path::PathBuf) {
        let dir = temp_dir(tag);
        let store = Arc::new(Store::open(&dir).unwrap());
        let (auth, origin) = Auth::init(&dir, store.clone(), env.map(Into::into)).unwrap();
        (auth, origin, store, dir)
    }

    fn register(auth: &Auth, store: &Store, id: &str, now: u64) -> TokenPair {
        let (family, pair) = auth.new_family(id, now);
        let mut rec = agent(id, "8g");
        rec.tokens = family;
        store.put_agent(&rec).unwrap();
        pair
    }

    #[test]
    fn admin_token_generated_once_and_only_hash_stored() {
        let (auth, origin, store, dir) = setup("auth-admin", None);
        let AdminTokenOrigin::Generated(token) = origin else {
            panic!("first start must generate a token");
        };
        assert!(auth.check_admin(Some(&token)).is_ok());
        assert_eq!(
            store.admin_token_hash().unwrap(),
            Some(sha256(token.as_bytes()))
        );
        // Same length, one character different: refused through the constant-time path.
        let mut wrong = token.clone().into_bytes();
        wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
        let wrong = String::from_utf8(wrong).unwrap();
        assert!(matches!(
            auth.check_admin(Some(&wrong)),
            Err(AuthError::BadAdminToken)
        ));
        assert!(auth.check_admin(Some("")).is_err());
        assert!(auth.check_admin(None).is_err());
        drop(auth);
        // Restart: the token is not regenerated, and still works.
        let (auth2, origin2) = Auth::init(&dir, store.clone(), None).unwrap();
        assert_eq!(origin2, AdminTokenOrigin::Stored);
        assert!(auth2.check_admin(Some(&token)).is_ok());
        // The environment overrides it.
        let (auth3, origin3) = Auth::init(&dir, store, Some("from-env".into())).unwrap();
        assert_eq!(origin3, AdminTokenOrigin::Environment);
        assert!(auth3.check_admin(Some("from-env")).is_ok());
        assert!(auth3.check_admin(Some(&token)).is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn signing_key_is_private_and_stable() {
        let (auth, _, store, dir) = setup("auth-key", Some("t"));
        let pair = register(&auth, &store, "a1", 1000);
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(auth);
        let (auth2, _) = Auth::init(&dir, store, None).unwrap();
        // Tokens issued before a restart still verify.
        assert!(auth2.verify_agent(&pair.token, "a1", 1001).is_ok());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn agent_token_checks() {
        let (auth, _, store, dir) = setup("auth-agent", Some("t"));
        let pair = register(&auth, &store, "a1", 1000);
        assert_eq!(
            auth.verify_agent(&pair.token, "a1", 1000).unwrap().sub,
            "a1"
        );
        assert!(matches!(
            auth.verify_agent(&pair.token, "a2", 1000),
            Err(AuthError::AgentMismatch)
        ));
        assert!(matches!(
            auth.verify_agent(&pair.refresh_token, "a1", 1000),
            Err(AuthError::Token(JwtError::WrongScope))
        ));
        assert!(matches!(
            auth.verify_agent(&pair.token, "a1", 1000 + AGENT_TOKEN_TTL + 3600),
            Err(AuthError::Token(JwtError::Expired))
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn refresh_rotates_and_reuse_revokes_the_family() {
        let (auth, _, store, dir) = setup("auth-refresh", Some("t"));
        let first = register(&auth, &store, "a1", 1000);
        let second = auth.refresh(&first.refresh_token, 1100).unwrap();
        assert_eq!(second.agent_id, "a1");
        assert_ne!(second.refresh_token, first.refresh_token);
        // Both access tokens are still valid (same family, not expired).
        assert!(auth.verify_agent(&second.token, "a1", 1100).is_ok());
        let third = auth.refresh(&second.refresh_token, 1200).unwrap();
        assert!(auth.verify_agent(&third.token, "a1", 1200).is_ok());
        // Replaying an old refresh token: reuse detected, family revoked.
        assert!(matches!(
            auth.refresh(&first.refresh_token, 1300),
            Err(AuthError::Reused(a)) if a == "a1"
        ));
        assert!(matches!(
            auth.verify_agent(&third.token, "a1", 1300),
            Err(AuthError::Revoked)
        ));
        assert!(matches!(
            auth.refresh(&third.refresh_token, 1300),
            Err(AuthError::Revoked)
        ));
        // An agent token is not a refresh token.
        assert!(matches!(
            auth.refresh(&third.token, 1300),
            Err(AuthError::Token(JwtError::WrongScope))
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn tickets_are_single_use_and_expire() {
        let (auth, _, _, dir) = setup("auth-ticket", Some("t"));
        let now = Instant::now();
        let t = auth.issue_ticket(now, Principal::AdminToken).unwrap();
        assert_eq!(auth.redeem_ticket(&t, now).unwrap(), Principal::AdminToken);
        assert!(auth.redeem_ticket(&t, now).is_err());
        let t2 = auth.issue_ticket(now, Principal::AdminToken).unwrap();
        assert!(
            auth.redeem_ticket(&t2, now + TICKET_TTL + Duration::from_secs(1))
                .is_err()
        );
        assert!(auth.redeem_ticket("made-up", now).is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
