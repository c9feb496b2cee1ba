//! The JWT verifier on arbitrary input, two ways:
//! - the raw input as a token (shape, base64 and header parsing; a signature cannot be
//!   guessed, so nothing may verify);
//! - the input split into a header and a claims document that are then correctly signed, so
//!   the fuzzer reaches the header and claims parsers behind the signature check. Whatever
//!   verifies must re-sign to a token that verifies to the same claims, and the claims
//!   parser must agree with serde_json on the same document.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use proto::jwt::{Claims, Key, Keyring, Scope, peek_unverified};
use ring::hmac;

const SECRET: &[u8] = b"fuzz secret, 32 bytes, not real!";
const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new(Key::new("k1", SECRET));
    let scope = Scope::ALL[usize::from(data.first().copied().unwrap_or(0)) % Scope::ALL.len()];

    let raw = String::from_utf8_lossy(data);
    assert!(
        ring.verify(&raw, scope, NOW).is_err(),
        "an unsigned token verified"
    );
    let _ = peek_unverified(&raw);

    // `header \xff payload`, correctly signed.
    let (header, payload) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#[..], data),
    };
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);

    let now = NOW;
    match ring.verify(&token, scope, now) {
        Ok(claims) => {
            assert_eq!(claims.scope, scope);
            assert!(claims.exp + proto::jwt::LEEWAY_SECS >= now);
            let again = ring.sign(&claims);
            assert_eq!(ring.verify(&again, scope, now), Ok(claims.clone()));
            assert_eq!(peek_unverified(&token), Ok(claims));
        }
        Err(_) => {
            let _ = peek_unverified(&token);
        }
    }

    // With the standard header, the claims parser agrees with serde_json.
    if !data.contains(&0xff) && token.len() <= proto::jwt::MAX_TOKEN_LEN {
        let ours = peek_unverified(&token).ok();
        let theirs = serde_json::from_slice::<Claims>(payload)
            .ok()
            .filter(|c| !c.sub.is_empty() && !c.jti.is_empty() && c.exp > c.iat);
        assert_eq!(ours, theirs, "claims parser disagrees with serde_json");
    }
});
