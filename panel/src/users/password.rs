//! Password hashing: Argon2id with the OWASP parameters (19 MiB, 2 passes, 1 lane), run on
//! blocking threads and bounded.
//!
//! One hash costs ~19 MiB and tens of milliseconds of a core, so a login flood could eat a
//! small panel's memory and CPU. At most [`MAX_CONCURRENT`] hashes run at once; at most
//! [`MAX_WAITING`] more wait for a turn; beyond that a login is refused at once with
//! [`Busy`] (answered 429), so memory stays bounded whatever the flood.
//!
//! An unknown user name is verified against a dummy hash with the same parameters, so the
//! answer takes the same time as for a wrong password.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use smol::lock::Semaphore;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::secret;

/// Hashes running at once.
pub const MAX_CONCURRENT: usize = 2;
/// Hash requests waiting for a turn before new ones are refused.
pub const MAX_WAITING: usize = 32;
/// Longest password accepted (bytes); anything longer is refused before hashing.
pub const MAX_PASSWORD: usize = 1024;
/// Shortest password a user may set.
pub const MIN_PASSWORD: usize = 8;

/// Too many hashes queued: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many logins in progress; try again shortly")]
pub struct Busy;

/// The OWASP-recommended Argon2id configuration.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` now, on this thread (for the command line and the dummy hash).
pub fn hash_now(password: &str) -> String {
    let salt = SaltString::encode_b64(&secret::random_bytes::<16>())
        .expect("16 bytes is a valid salt length");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with valid parameters and salt cannot fail")
        .to_string()
}

/// Whether `password` matches the PHC string `phc` (false for a malformed `phc`).
pub fn verify_now(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A new random password for a user (shown once).
pub fn generate() -> String {
    secret::token(15)
}

/// The bounded hashing service.
pub struct Hasher {
    turns: Semaphore,
    queued: AtomicUsize,
    dummy: OnceLock<String>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            turns: Semaphore::new(MAX_CONCURRENT),
            queued: AtomicUsize::new(0),
            dummy: OnceLock::new(),
        }
    }
}

/// Releases a queue place when the request finishes (or is cancelled).
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hasher {
    fn dummy(&self) -> String {
        self.dummy.get_or_init(|| hash_now(&generate())).clone()
    }

    /// Hashes waiting or running now.
    pub fn in_flight(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let limit = MAX_CONCURRENT + MAX_WAITING;
        if self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Busy);
        }
        let _place = Place(&self.queued);
        let _turn = self.turns.acquire().await;
        Ok(smol::unblock(f).await)
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no user
    /// (so both cost the same); `false` for the dummy.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy());
        let ok = self.run(move || verify_now(&password, &phc)).await?;
        Ok(ok && known)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move || hash_now(&password)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_with_owasp_parameters_and_verifies() {
        let h = hash_now("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_now("correct horse", &h));
        assert!(!verify_now("correct horsE", &h));
        assert!(!verify_now("x", "not a phc string"));
        // Same password, different salt.
        assert_ne!(h, hash_now("correct horse"));
    }

    #[test]
    fn the_dummy_never_verifies_and_the_queue_is_bounded() {
        let hasher = Hasher::default();
        smol::block_on(async {
            let dummy = hasher.dummy();
            assert!(!hasher.verify("anything".into(), None).await.unwrap());
            // Even the dummy's own password (unknowable in practice) is refused for no user.
            assert!(dummy.starts_with("$argon2id$"));
            let h = hasher.hash("pw-123456".into()).await.unwrap();
            assert!(hasher.verify("pw-123456".into(), Some(h)).await.unwrap());
        });
        // Fill every place: the next request is refused at once, not queued.
        hasher
            .queued
            .store(MAX_CONCURRENT + MAX_WAITING, Ordering::Release);
        assert_eq!(smol::block_on(hasher.verify("x".into(), None)), Err(Busy));
        assert_eq!(hasher.in_flight(), MAX_CONCURRENT + MAX_WAITING);
    }
}
