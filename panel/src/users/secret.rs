//! Random secrets and their digests: session ids, API key secrets, registration tokens,
//! generated passwords. Only a secret's SHA-256 (hex) is ever stored.

use base64::Engine;
use ring::rand::SecureRandom;

/// `N` bytes from the OS generator.
///
/// # Panics
/// If the OS generator fails (a broken kernel); predictable secrets would be worse.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the OS random number generator failed");
    b
}

/// `bytes` random bytes as base64url (no padding).
pub fn token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the OS random number generator failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A short lowercase alphanumeric id (`u-…`, `k-…`): not secret, just unique.
pub fn id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let raw = random_bytes::<12>();
    let s: String = raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{s}")
}

/// Hex SHA-256 of a secret: the only form in which secrets are stored.
pub fn digest(secret: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two digests.
pub fn same(a: &str, b: &str) -> bool {
    #[allow(deprecated)]
    ring::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}
