//! `proto::jwt`: one test per rejection case, rotation, leeway boundaries, and property tests
//! (arbitrary input never panics; any change to a valid token is refused; claims round-trip).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proto::ErrorCode;
use proto::jwt::{
    Claims, JwtError, Key, Keyring, LEEWAY_SECS, MAX_TOKEN_LEN, Scope, peek_unverified, random_id,
    sign,
};
use ring::hmac;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn keyring() -> Keyring {
    Keyring::new(Key::new("k1", SECRET))
}

fn claims(scope: Scope) -> Claims {
    Claims {
        sub: "agent-1".into(),
        iat: NOW,
        exp: NOW + 3600,
        jti: "jti-1".into(),
        scope,
        fam: None,
    }
}

/// A token with arbitrary header and payload JSON, correctly signed with `secret`.
fn forge(secret: &[u8], header: &str, payload: &str) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    token
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#;
const PAYLOAD: &str =
    r#"{"sub":"agent-1","iat":1700000000,"exp":1700003600,"jti":"jti-1","scope":"agent"}"#;

fn verify(token: &str) -> Result<Claims, JwtError> {
    keyring().verify(token, Scope::Agent, NOW)
}

fn verify_header(header: &str) -> Result<Claims, JwtError> {
    verify(&forge(SECRET, header, PAYLOAD))
}

fn verify_payload(payload: &str) -> Result<Claims, JwtError> {
    verify(&forge(SECRET, HEADER, payload))
}

// ---- accepted tokens --------------------------------------------------------------------

#[test]
fn signed_token_verifies_for_every_scope() {
    let ring = keyring();
    for &scope in Scope::ALL {
        let mut c = claims(scope);
        c.fam = Some("family-1".into());
        let token = ring.sign(&c);
        assert_eq!(ring.verify(&token, scope, NOW), Ok(c));
    }
}

#[test]
fn header_is_exactly_alg_typ_kid() {
    let token = keyring().sign(&claims(Scope::Agent));
    let header = token.split('.').next().unwrap();
    let header = URL_SAFE_NO_PAD.decode(header).unwrap();
    assert_eq!(header, HEADER.as_bytes());
}

#[test]
fn forged_canonical_token_verifies() {
    // The test helper itself is right: a token built by hand in the documented shape passes.
    assert_eq!(verify_payload(PAYLOAD), Ok(claims(Scope::Agent)));
}

#[test]
fn header_field_order_and_whitespace_do_not_matter() {
    let header = r#" { "kid" : "k1" , "typ" : "JWT" , "alg" : "HS256" } "#;
    assert_eq!(verify_header(header), Ok(claims(Scope::Agent)));
}

#[test]
fn fam_null_is_no_family() {
    let payload = r#"{"sub":"agent-1","iat":1700000000,"exp":1700003600,"jti":"jti-1","scope":"agent","fam":null}"#;
    assert_eq!(verify_payload(payload), Ok(claims(Scope::Agent)));
}

#[test]
fn strings_with_escapes_round_trip() {
    let ring = keyring();
    let mut c = claims(Scope::Operator);
    c.sub = "quote\" back\\slash \u{1} tab\t ünï 🎮".into();
    c.jti = "\u{7f}\u{2028}".into();
    c.fam = Some("\"".into());
    let token = ring.sign(&c);
    assert_eq!(ring.verify(&token, Scope::Operator, NOW), Ok(c));
}

#[test]
fn kid_with_quotes_is_escaped_in_header() {
    let ring = Keyring::new(Key::new("k\"1\\", SECRET));
    let token = ring.sign(&claims(Scope::Agent));
    assert_eq!(
        ring.verify(&token, Scope::Agent, NOW),
        Ok(claims(Scope::Agent))
    );
}

// ---- length and shape -------------------------------------------------------------------

#[test]
fn rejects_token_longer_than_max() {
    assert_eq!(
        verify(&"a".repeat(MAX_TOKEN_LEN + 1)),
        Err(JwtError::TooLong)
    );
}

#[test]
fn rejects_oversize_token_even_if_correctly_signed() {
    let ring = keyring();
    let mut c = claims(Scope::Agent);
    c.sub = "x".repeat(MAX_TOKEN_LEN);
    let token = ring.sign(&c);
    assert!(token.len() > MAX_TOKEN_LEN);
    assert_eq!(
        ring.verify(&token, Scope::Agent, NOW),
        Err(JwtError::TooLong)
    );
}

#[test]
fn accepts_token_of_exactly_max_len() {
    let ring = keyring();
    // Grow `sub` until the token is exactly MAX_TOKEN_LEN (base64 grows 4 chars per 3 bytes,
    // so try a few lengths).
    let token = (2900..3100)
        .map(|n| {
            let mut c = claims(Scope::Agent);
            c.sub = "s".repeat(n);
            (c.clone(), ring.sign(&c))
        })
        .find(|(_, t)| t.len() == MAX_TOKEN_LEN);
    let (c, token) = token.expect("some sub length gives a maximal token");
    assert_eq!(ring.verify(&token, Scope::Agent, NOW), Ok(c));
}

#[test]
fn rejects_empty_token() {
    assert_eq!(verify(""), Err(JwtError::Malformed));
}

#[test]
fn rejects_one_segment() {
    assert_eq!(verify("abc"), Err(JwtError::Malformed));
}

#[test]
fn rejects_two_segments() {
    let token = keyring().sign(&claims(Scope::Agent));
    let two = token.rsplit_once('.').unwrap().0;
    assert_eq!(verify(two), Err(JwtError::Malformed));
}

#[test]
fn rejects_four_segments() {
    let token = keyring().sign(&claims(Scope::Agent));
    assert_eq!(verify(&format!("{token}.abc")), Err(JwtError::Malformed));
}

#[test]
fn rejects_empty_segments() {
    let token = keyring().sign(&claims(Scope::Agent));
    let parts: Vec<&str> = token.split('.').collect();
    for i in 0..3 {
        let mut p = parts.clone();
        p[i] = "";
        assert_eq!(
            verify(&p.join(".")),
            Err(JwtError::Malformed),
            "segment {i}"
        );
    }
    assert_eq!(verify(".."), Err(JwtError::Malformed));
}

#[test]
fn rejects_bad_base64_in_header() {
    let token = keyring().sign(&claims(Scope::Agent));
    let (_, rest) = token.split_once('.').unwrap();
    // '+' and '/' are the non-URL alphabet; '=' padding is not allowed; '!' is not base64.
    for bad in ["eyJ+", "eyJ/", "eyJhbGciOiJIUzI1NiJ9==", "eyJ!"] {
        assert_eq!(
            verify(&format!("{bad}.{rest}")),
            Err(JwtError::Malformed),
            "{bad}"
        );
    }
}

#[test]
fn rejects_padded_base64() {
    // A correctly signed token whose header segment carries '=' padding.
    let mut header = URL_SAFE_NO_PAD.encode(HEADER);
    let pad = (4 - header.len() % 4) % 4;
    assert_ne!(pad, 0, "the header needs padding in standard base64");
    header.push_str(&"=".repeat(pad));
    let mut token = format!("{header}.{}", URL_SAFE_NO_PAD.encode(PAYLOAD));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), token.as_bytes());
    token = format!("{token}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(verify(&token), Err(JwtError::Malformed));
}

#[test]
fn rejects_bad_base64_in_payload() {
    // Signed over a payload segment that is not base64url: the signature is fine, decoding
    // is not.
    let header = URL_SAFE_NO_PAD.encode(HEADER);
    let mut token = format!("{header}.not*base64");
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), token.as_bytes());
    token = format!("{token}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(verify(&token), Err(JwtError::Malformed));
}

#[test]
fn rejects_non_canonical_signature_encoding() {
    // The last of 43 base64 characters carries 2 unused bits; setting them must not give a
    // second spelling of the same signature.
    let token = keyring().sign(&claims(Scope::Agent));
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let last = sig.as_bytes()[42];
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    let twin = ALPHABET[index | 1] as char;
    assert_ne!(
        twin as u8, last,
        "canonical encodings have the low bits clear"
    );
    let forged = format!("{signed}.{}{twin}", &sig[..42]);
    assert_eq!(verify(&forged), Err(JwtError::BadSignature));
}

// ---- header -----------------------------------------------------------------------------

#[test]
fn rejects_header_that_is_not_json() {
    assert_eq!(verify_header("not json"), Err(JwtError::BadHeader));
}

#[test]
fn rejects_header_that_is_not_utf8() {
    let mut token = URL_SAFE_NO_PAD.encode(b"{\"alg\":\"HS256\xff\"}");
    token.push_str(".e30.AAAA");
    assert_eq!(verify(&token), Err(JwtError::BadHeader));
}

#[test]
fn rejects_header_with_trailing_bytes() {
    assert_eq!(
        verify_header(&format!("{HEADER}{{}}")),
        Err(JwtError::BadHeader)
    );
}

#[test]
fn rejects_alg_none() {
    let header = r#"{"alg":"none","typ":"JWT","kid":"k1"}"#;
    assert_eq!(verify_header(header), Err(JwtError::UnsupportedAlg));
}

#[test]
fn rejects_alg_none_with_empty_signature() {
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(PAYLOAD)
    );
    assert_eq!(verify(&token), Err(JwtError::Malformed));
}

#[test]
fn rejects_other_algorithms() {
    for alg in [
        "HS384", "HS512", "RS256", "ES256", "EdDSA", "hs256", "HS256 ", "",
    ] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#);
        assert_eq!(
            verify_header(&header),
            Err(JwtError::UnsupportedAlg),
            "{alg}"
        );
    }
}

#[test]
fn rejects_alg_that_is_not_a_string() {
    assert_eq!(
        verify_header(r#"{"alg":256,"typ":"JWT","kid":"k1"}"#),
        Err(JwtError::BadHeader)
    );
}

#[test]
fn rejects_missing_alg() {
    assert_eq!(
        verify_header(r#"{"typ":"JWT","kid":"k1"}"#),
        Err(JwtError::BadHeader)
    );
}

#[test]
fn rejects_missing_typ() {
    assert_eq!(
        verify_header(r#"{"alg":"HS256","kid":"k1"}"#),
        Err(JwtError::BadHeader)
    );
}

#[test]
fn rejects_wrong_typ() {
    for typ in ["jwt", "JWS", "at+jwt", ""] {
        let header = format!(r#"{{"alg":"HS256","typ":"{typ}","kid":"k1"}}"#);
        assert_eq!(verify_header(&header), Err(JwtError::BadHeader), "{typ}");
    }
}

#[test]
fn rejects_missing_kid() {
    assert_eq!(
        verify_header(r#"{"alg":"HS256","typ":"JWT"}"#),
        Err(JwtError::BadHeader)
    );
}

#[test]
fn rejects_duplicate_header_field() {
    // A parser that keeps the last (or first) duplicate could be tricked; we keep none.
    for header in [
        r#"{"alg":"HS256","alg":"none","typ":"JWT","kid":"k1"}"#,
        r#"{"alg":"none","alg":"HS256","typ":"JWT","kid":"k1"}"#,
        r#"{"alg":"HS256","typ":"JWT","kid":"k1","kid":"k1"}"#,
        r#"{"alg":"HS256","typ":"JWT","typ":"JWT","kid":"k1"}"#,
    ] {
        assert_eq!(verify_header(header), Err(JwtError::BadHeader), "{header}");
    }
}

#[test]
fn rejects_crit_header() {
    let header = r#"{"alg":"HS256","typ":"JWT","kid":"k1","crit":["exp"]}"#;
    assert_eq!(verify_header(header), Err(JwtError::BadHeader));
}

#[test]
fn rejects_unknown_header_fields() {
    for field in [
        r#""jku":"https://x""#,
        r#""jwk":{}"#,
        r#""x5u":"u""#,
        r#""cty":"JWT""#,
        r#""b64":false"#,
    ] {
        let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"k1",{field}}}"#);
        assert_eq!(verify_header(&header), Err(JwtError::BadHeader), "{field}");
    }
}

#[test]
fn rejects_unknown_kid() {
    let token = sign(&Key::new("k2", SECRET), &claims(Scope::Agent));
    assert_eq!(verify(&token), Err(JwtError::UnknownKey));
}

// ---- signature --------------------------------------------------------------------------

#[test]
fn rejects_signature_from_another_secret() {
    let token = sign(
        &Key::new("k1", b"another secret, same kid........"),
        &claims(Scope::Agent),
    );
    assert_eq!(verify(&token), Err(JwtError::BadSignature));
}

#[test]
fn rejects_truncated_signature() {
    let token = keyring().sign(&claims(Scope::Agent));
    assert_eq!(
        verify(&token[..token.len() - 1]),
        Err(JwtError::BadSignature)
    );
    assert_eq!(
        verify(&token[..token.len() - 4]),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn rejects_overlong_signature() {
    let token = keyring().sign(&claims(Scope::Agent));
    assert_eq!(verify(&format!("{token}AAAA")), Err(JwtError::BadSignature));
}

#[test]
fn rejects_tampered_payload() {
    let ring = keyring();
    let token = ring.sign(&claims(Scope::Refresh));
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let payload = payload.replace("refresh", "agent");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload),
        parts[2]
    );
    assert_eq!(
        ring.verify(&forged, Scope::Agent, NOW),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn rejects_tampered_header() {
    // Switching to a header naming another (known) key invalidates the signature.
    let mut ring = keyring();
    ring.add_previous(Key::new("k0", b"old secret......................"));
    let token = ring.sign(&claims(Scope::Agent));
    let (_, rest) = token.split_once('.').unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT","kid":"k0"}"#);
    let forged = format!("{header}.{rest}");
    assert_eq!(
        ring.verify(&forged, Scope::Agent, NOW),
        Err(JwtError::BadSignature)
    );
}

// ---- claims -----------------------------------------------------------------------------

#[test]
fn rejects_claims_that_are_not_json() {
    assert_eq!(verify_payload("nope"), Err(JwtError::BadClaims));
    assert_eq!(verify_payload("[]"), Err(JwtError::BadClaims));
    assert_eq!(verify_payload(""), Err(JwtError::Malformed)); // empty segment
}

#[test]
fn rejects_each_missing_claim() {
    for missing in ["sub", "iat", "exp", "jti", "scope"] {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(PAYLOAD).unwrap();
        v.remove(missing);
        let payload = serde_json::to_string(&v).unwrap();
        assert_eq!(
            verify_payload(&payload),
            Err(JwtError::BadClaims),
            "{missing}"
        );
    }
}

#[test]
fn rejects_unknown_claim() {
    let payload = PAYLOAD.replace('}', r#","admin":true}"#);
    assert_eq!(verify_payload(&payload), Err(JwtError::BadClaims));
    let payload = PAYLOAD.replace('}', r#","nbf":1}"#);
    assert_eq!(verify_payload(&payload), Err(JwtError::BadClaims));
}

#[test]
fn rejects_duplicate_claim() {
    let payload = PAYLOAD.replace('}', r#","scope":"operator"}"#);
    assert_eq!(verify_payload(&payload), Err(JwtError::BadClaims));
    let payload = PAYLOAD.replace('}', r#","exp":9999999999}"#);
    assert_eq!(verify_payload(&payload), Err(JwtError::BadClaims));
}

#[test]
fn rejects_claims_of_wrong_type() {
    for (from, to) in [
        (r#""iat":1700000000"#, r#""iat":"1700000000""#),
        (r#""exp":1700003600"#, r#""exp":1700003600.0"#),
        (r#""exp":1700003600"#, r#""exp":1.7000036e9"#),
        (r#""iat":1700000000"#, r#""iat":-1"#),
        (r#""exp":1700003600"#, r#""exp":18446744073709551616"#),
        (r#""sub":"agent-1""#, r#""sub":1"#),
        (r#""jti":"jti-1""#, r#""jti":null"#),
        (r#""scope":"agent""#, r#""scope":["agent"]"#),
    ] {
        let payload = PAYLOAD.replace(from, to);
        assert_ne!(payload, PAYLOAD);
        assert_eq!(verify_payload(&payload), Err(JwtError::BadClaims), "{to}");
    }
    let payload = PAYLOAD.replace('}', r#","fam":7}"#);
    assert_eq!(verify_payload(&payload), Err(JwtError::BadClaims));
}

#[test]
fn rejects_unknown_scope() {
    for scope in ["admin", "Agent", "events-ticket", ""] {
        let payload = PAYLOAD.replace(r#""agent""#, &format!(r#""{scope}""#));
        assert_eq!(
            verify_payload(&payload),
            Err(JwtError::BadClaims),
            "{scope}"
        );
    }
}

#[test]
fn rejects_empty_sub_and_jti() {
    assert_eq!(
        verify_payload(&PAYLOAD.replace(r#""agent-1""#, r#""""#)),
        Err(JwtError::BadClaims)
    );
    assert_eq!(
        verify_payload(&PAYLOAD.replace(r#""jti-1""#, r#""""#)),
        Err(JwtError::BadClaims)
    );
}

#[test]
fn rejects_exp_not_after_iat() {
    let ring = keyring();
    let mut c = claims(Scope::Agent);
    c.exp = c.iat;
    assert_eq!(
        ring.verify(&ring.sign(&c), Scope::Agent, NOW),
        Err(JwtError::BadClaims)
    );
}

#[test]
fn rejects_lone_surrogate_escape() {
    let payload = PAYLOAD.replace("agent-1", r"agent\ud800");
    assert_eq!(verify_payload(&payload), Err(JwtError::BadClaims));
}

#[test]
fn rejects_wrong_scope() {
    let ring = keyring();
    for &have in Scope::ALL {
        let token = ring.sign(&claims(have));
        for &want in Scope::ALL {
            let got = ring.verify(&token, want, NOW);
            if have == want {
                assert!(got.is_ok());
            } else {
                assert_eq!(got, Err(JwtError::WrongScope), "{have} as {want}");
            }
        }
    }
}

// ---- time -------------------------------------------------------------------------------

#[test]
fn expiry_allows_leeway_and_no_more() {
    let ring = keyring();
    let c = claims(Scope::Agent);
    let token = ring.sign(&c);
    assert!(ring.verify(&token, Scope::Agent, c.exp).is_ok());
    assert!(
        ring.verify(&token, Scope::Agent, c.exp + LEEWAY_SECS)
            .is_ok()
    );
    assert_eq!(
        ring.verify(&token, Scope::Agent, c.exp + LEEWAY_SECS + 1),
        Err(JwtError::Expired)
    );
}

#[test]
fn issue_time_allows_leeway_and_no_more() {
    let ring = keyring();
    let c = claims(Scope::Agent);
    let token = ring.sign(&c);
    assert!(
        ring.verify(&token, Scope::Agent, c.iat - LEEWAY_SECS)
            .is_ok()
    );
    assert_eq!(
        ring.verify(&token, Scope::Agent, c.iat - LEEWAY_SECS - 1),
        Err(JwtError::NotYetValid)
    );
}

#[test]
fn time_arithmetic_does_not_overflow() {
    let ring = keyring();
    let mut c = claims(Scope::Agent);
    c.exp = u64::MAX;
    let token = ring.sign(&c);
    assert!(ring.verify(&token, Scope::Agent, u64::MAX).is_ok());
    c.iat = u64::MAX - 1;
    let token = ring.sign(&c);
    assert_eq!(
        ring.verify(&token, Scope::Agent, 0),
        Err(JwtError::NotYetValid)
    );
}

// ---- keys and rotation ------------------------------------------------------------------

#[test]
fn rotation_keeps_old_tokens_valid_until_the_key_is_removed() {
    let mut ring = keyring();
    let old = ring.sign(&claims(Scope::Agent));
    let (new_key, _) = Key::generate("k2");
    ring.rotate(new_key);
    assert_eq!(ring.current().kid(), "k2");
    let new = ring.sign(&claims(Scope::Agent));
    assert!(new.starts_with(&URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT","kid":"k2"}"#)));
    assert!(ring.verify(&old, Scope::Agent, NOW).is_ok());
    assert!(ring.verify(&new, Scope::Agent, NOW).is_ok());
    assert!(ring.remove_previous("k1"));
    assert_eq!(
        ring.verify(&old, Scope::Agent, NOW),
        Err(JwtError::UnknownKey)
    );
    assert!(ring.verify(&new, Scope::Agent, NOW).is_ok());
    assert!(
        !ring.remove_previous("k2"),
        "the current key cannot be removed"
    );
}

#[test]
fn add_previous_verifies_tokens_of_that_key_only() {
    let old_key = Key::new("k0", b"old secret......................");
    let old = sign(&old_key, &claims(Scope::Agent));
    let mut ring = keyring();
    assert_eq!(
        ring.verify(&old, Scope::Agent, NOW),
        Err(JwtError::UnknownKey)
    );
    ring.add_previous(old_key);
    assert!(ring.verify(&old, Scope::Agent, NOW).is_ok());
    // Re-adding the kid with another secret replaces the key.
    ring.add_previous(Key::new("k0", b"replaced........................"));
    assert_eq!(ring.previous().len(), 1);
    assert_eq!(
        ring.verify(&old, Scope::Agent, NOW),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn generated_secret_reproduces_the_key() {
    let (key, secret) = Key::generate("gen");
    let token = sign(&key, &claims(Scope::Agent));
    let ring = Keyring::new(Key::new("gen", &secret));
    assert!(ring.verify(&token, Scope::Agent, NOW).is_ok());
    let (_, other) = Key::generate("gen");
    assert_ne!(secret, other);
}

#[test]
fn key_debug_hides_the_secret() {
    let text = format!("{:?}", Key::new("k1", b"super-secret-value"));
    assert!(text.contains("k1"));
    assert!(!text.contains("super-secret-value"));
}

// ---- misc -------------------------------------------------------------------------------

#[test]
fn peek_reads_claims_without_key_or_clock() {
    let c = claims(Scope::Refresh);
    let token = sign(&Key::new("unknown", b"whatever"), &c);
    assert_eq!(peek_unverified(&token), Ok(c));
    assert_eq!(peek_unverified("a.b"), Err(JwtError::Malformed));
    assert_eq!(
        peek_unverified(&forge(
            SECRET,
            r#"{"alg":"none","typ":"JWT","kid":"k"}"#,
            PAYLOAD
        )),
        Err(JwtError::UnsupportedAlg)
    );
}

#[test]
fn random_ids_are_22_base64url_chars_and_distinct() {
    let a = random_id();
    let b = random_id();
    assert_eq!(a.len(), 22);
    assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
    assert_ne!(a, b);
    let c = Claims::new("s", Scope::Agent, NOW, 60);
    assert_eq!((c.iat, c.exp, c.jti.len()), (NOW, NOW + 60, 22));
}

#[test]
fn every_error_is_auth_failed_on_the_wire() {
    use JwtError::*;
    for e in [
        Malformed,
        TooLong,
        BadHeader,
        UnsupportedAlg,
        UnknownKey,
        BadSignature,
        BadClaims,
        Expired,
        NotYetValid,
        WrongScope,
    ] {
        assert_eq!(e.code(), ErrorCode::AuthFailed);
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn scope_spellings() {
    for &s in Scope::ALL {
        assert_eq!(Scope::from_wire(s.as_str()), Some(s));
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
    }
    assert_eq!(Scope::EventsTicket.as_str(), "events_ticket");
}

// ---- properties -------------------------------------------------------------------------

fn arb_scope() -> impl Strategy<Value = Scope> {
    prop::sample::select(Scope::ALL)
}

fn arb_claims() -> impl Strategy<Value = Claims> {
    (
        ".{1,40}",
        0u64..u64::MAX / 2,
        1u64..u64::MAX / 2,
        ".{1,30}",
        arb_scope(),
        proptest::option::of(".{0,30}"),
    )
        .prop_map(|(sub, iat, ttl, jti, scope, fam)| Claims {
            sub,
            iat,
            exp: iat + ttl,
            jti,
            scope,
            fam,
        })
}

/// Strings over the token alphabet, so that inputs get past the first checks.
fn token_like() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.=+/-]{0,200}"
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let ring = keyring();
        prop_assert!(ring.verify(&text, Scope::Agent, NOW).is_err());
        let _ = peek_unverified(&text);
    }

    #[test]
    fn token_like_strings_never_panic(text in token_like()) {
        prop_assert!(keyring().verify(&text, Scope::Agent, NOW).is_err());
        let _ = peek_unverified(&text);
    }

    #[test]
    fn correctly_signed_arbitrary_json_never_panics(
        header in prop_oneof![Just(HEADER.to_string()), ".{0,60}"],
        payload in prop_oneof![Just(PAYLOAD.to_string()), ".{0,120}", "[{}\":,a-z0-9 \\\\]{0,120}"],
    ) {
        let token = forge(SECRET, &header, &payload);
        if let Ok(c) = keyring().verify(&token, c_scope(&payload), NOW) {
            // Anything accepted re-signs to a token with the same claims.
            prop_assert_eq!(keyring().verify(&keyring().sign(&c), c.scope, NOW), Ok(c));
        }
    }

    #[test]
    fn claims_round_trip(c in arb_claims()) {
        let ring = keyring();
        let token = ring.sign(&c);
        prop_assume!(token.len() <= MAX_TOKEN_LEN);
        prop_assert_eq!(ring.verify(&token, c.scope, c.iat), Ok(c.clone()));
        prop_assert_eq!(peek_unverified(&token), Ok(c));
    }

    #[test]
    fn any_single_byte_change_is_rejected(c in arb_claims(), pos in any::<prop::sample::Index>(), byte in 0x21u8..0x7f) {
        let ring = keyring();
        let token = ring.sign(&c);
        prop_assume!(token.len() <= MAX_TOKEN_LEN);
        let i = pos.index(token.len());
        prop_assume!(token.as_bytes()[i] != byte);
        let mut forged = token.into_bytes();
        forged[i] = byte;
        let forged = String::from_utf8(forged).unwrap();
        prop_assert!(ring.verify(&forged, c.scope, c.iat).is_err(), "{}", forged);
    }

    #[test]
    fn any_truncation_or_extension_is_rejected(c in arb_claims(), cut in any::<prop::sample::Index>(), extra in "[A-Za-z0-9_.-]{1,4}") {
        let ring = keyring();
        let token = ring.sign(&c);
        prop_assume!(token.len() < MAX_TOKEN_LEN);
        let short = &token[..cut.index(token.len())];
        prop_assert!(ring.verify(short, c.scope, c.iat).is_err());
        let long = format!("{token}{extra}");
        prop_assert!(ring.verify(&long, c.scope, c.iat).is_err());
    }
}

/// The scope a payload asks for (so accepted tokens are not refused merely for scope).
fn c_scope(payload: &str) -> Scope {
    Scope::ALL
        .iter()
        .copied()
        .find(|s| payload.contains(&format!("\"{s}\"")))
        .unwrap_or(Scope::Agent)
}
