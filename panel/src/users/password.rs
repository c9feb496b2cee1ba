//! Password hashing: Argon2id with the OWASP parameters (19 MiB, 2 passes, 1 lane), run on
//! blocking threads and bounded.
//!
//! One hash costs ~19 MiB and tens of milliseconds of a core, so a login flood could eat a
//! small panel's memory and CPU. Hashes run on [`MAX_CONCURRENT`] dedicated threads (not
//! the shared blocking pool: each of its many threads would keep its own 19 MiB malloc
//! arena); at most [`MAX_WAITING`] more wait in a bounded queue; beyond that a login is
//! refused at once with [`Busy`] (answered 429), so memory stays bounded whatever the flood.
//!
//! An unknown user name is verified against a dummy hash with the same parameters, so the
//! answer takes the same time as for a wrong password.

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{Arc, OnceLock};

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

/// The OWASP-recommended Argon2id parameters: 19 MiB, 2 passes, 1 lane, 32-byte output.
fn owasp() -> Params {
    Params::new(19 * 1024, 2, 1, Some(32)).expect("static Argon2 parameters are valid")
}

/// Largest memory cost (KiB) a stored hash may ask for: the OWASP cost with headroom for
/// stronger parameters later, not unbounded.
const MAX_M_COST: u32 = 4 * 19 * 1024;

thread_local! {
    /// The Argon2 working memory of this (hashing) thread, kept between hashes: allocating
    /// 19 MiB per hash makes glibc keep every freed copy in per-thread arenas.
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2 of `password` and `salt` into `out`, in this thread's reused working memory.
fn compute(
    alg: Algorithm,
    version: Version,
    params: Params,
    pwd: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> bool {
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let n = params.block_count();
    BLOCKS.with(|b| {
        let mut blocks = b.borrow_mut();
        if blocks.len() < n {
            blocks.resize(n, Block::new());
        }
        Argon2::new(alg, version, params)
            .hash_password_into_with_memory(pwd, salt, out, &mut blocks[..n])
            .is_ok()
    })
}

/// Hashes `password` now, on this thread: an Argon2id PHC string.
pub fn hash_now(password: &str) -> String {
    let salt = SaltString::encode_b64(&secret::random_bytes::<16>())
        .expect("16 bytes is a valid salt length");
    let mut raw_salt = [0u8; 16];
    let raw_salt = salt
        .decode_b64(&mut raw_salt)
        .expect("a salt we just encoded decodes");
    let mut out = [0u8; 32];
    let ok = compute(
        Algorithm::Argon2id,
        Version::V0x13,
        owasp(),
        password.as_bytes(),
        raw_salt,
        &mut out,
    );
    assert!(ok, "Argon2 with valid parameters and salt cannot fail");
    let hash = Output::new(&out).expect("32 bytes is a valid output length");
    format!(
        "$argon2id$v=19$m={},t=2,p=1${}${hash}",
        19 * 1024,
        salt.as_str()
    )
}

/// Whether `password` matches the PHC string `phc` (false for a malformed `phc`).
pub fn verify_now(password: &str, phc: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(alg), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(h.algorithm),
        Params::try_from(&h),
        h.salt,
        h.hash,
    ) else {
        return false;
    };
    let version = match h.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    compute(alg, version, params, password.as_bytes(), salt, &mut out)
        && Output::new(&out).is_ok_and(|o| o == expected)
}

/// A new random password for a user (shown once).
pub fn generate() -> String {
    secret::token(15)
}

type Job = Box<dyn FnOnce() + Send>;

/// The bounded hashing service: a queue and its worker threads.
pub struct Hasher {
    jobs: async_channel::Sender<Job>,
    /// Made on first use, on a worker (never on the executor).
    dummy: Arc<OnceLock<String>>,
}

impl Default for Hasher {
    fn default() -> Self {
        let (jobs, queue) = async_channel::bounded::<Job>(MAX_WAITING);
        for i in 0..MAX_CONCURRENT {
            let queue = queue.clone();
            // The workers end when the Hasher (the only sender) is dropped.
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    while let Ok(job) = queue.recv_blocking() {
                        job();
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start password hashing thread {i}: {e}");
            }
        }
        Hasher {
            jobs,
            dummy: Arc::new(OnceLock::new()),
        }
    }
}

impl Hasher {
    /// Hashes waiting for a worker now.
    pub fn waiting(&self) -> usize {
        self.jobs.len()
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (tx, rx) = async_channel::bounded(1);
        let job: Job = Box::new(move || {
            let _ = tx.try_send(f());
        });
        self.jobs.try_send(job).map_err(|_| Busy)?;
        rx.recv().await.map_err(|_| Busy)
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no user
    /// (so both cost the same); `false` for the dummy.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        let known = phc.is_some();
        let dummy = self.dummy.clone();
        let ok = self
            .run(move || {
                let phc =
                    phc.unwrap_or_else(|| dummy.get_or_init(|| hash_now(&generate())).clone());
                verify_now(&password, &phc)
            })
            .await?;
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
    fn hashes_interoperate_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_now("pw-interop");
        let theirs_view = PasswordHash::new(&ours).unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, owasp());
        assert!(
            reference
                .verify_password(b"pw-interop", &theirs_view)
                .is_ok()
        );
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = reference
            .hash_password(b"pw-interop", &salt)
            .unwrap()
            .to_string();
        assert!(verify_now("pw-interop", &theirs));
        assert!(!verify_now("pw-interop!", &theirs));
    }

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
            assert!(!hasher.verify("anything".into(), None).await.unwrap());
            assert!(hasher.dummy.get().unwrap().starts_with("$argon2id$"));
            let h = hasher.hash("pw-123456".into()).await.unwrap();
            assert!(hasher.verify("pw-123456".into(), Some(h)).await.unwrap());
        });
        // Occupy both workers, then every queue place, with jobs that wait for a release.
        let (release, gate) = async_channel::unbounded::<()>();
        let hold = |n: usize| {
            (0..n).all(|_| {
                let gate = gate.clone();
                hasher
                    .jobs
                    .try_send(Box::new(move || {
                        let _ = gate.recv_blocking();
                    }))
                    .is_ok()
            })
        };
        assert!(hold(MAX_CONCURRENT));
        while hasher.waiting() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(hold(MAX_WAITING));
        assert_eq!(hasher.waiting(), MAX_WAITING);
        assert_eq!(smol::block_on(hasher.verify("x".into(), None)), Err(Busy));
        release.close();
    }
}
