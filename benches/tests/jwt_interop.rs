//! `proto::jwt` interoperates with the `jsonwebtoken` crate in both directions: tokens we
//! sign verify there with the same claims, and tokens it signs (HS256, with our `kid`)
//! verify here. Tokens outside our profile that it happily produces are refused here.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use proto::jwt::{Claims, JwtError, Key, Keyring, LEEWAY_SECS, Scope};

const SECRET: &[u8] = b"interop secret, thirty-two bytes";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn samples(now: u64) -> Vec<Claims> {
    let base = Claims {
        sub: "agent_1".into(),
        iat: now,
        exp: now + 3600,
        jti: "jti_1".into(),
        scope: Scope::Agent,
        fam: None,
    };
    let mut out = vec![base.clone()];
    for &scope in Scope::ALL {
        out.push(Claims {
            scope,
            fam: Some("fam_1".into()),
            ..base.clone()
        });
    }
    out.push(Claims {
        sub: "quote\" backslash\\ control\u{1}\u{1f} ünïcødé 🎮 \u{2028}".into(),
        jti: "/slash/".into(),
        fam: Some(String::new()),
        ..base.clone()
    });
    out.push(Claims {
        sub: "x".repeat(1000),
        exp: u64::MAX / 4,
        ..base
    });
    out
}

fn header(kid: &str) -> Header {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(kid.into());
    h
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = LEEWAY_SECS;
    v.set_required_spec_claims(&["exp", "iat", "sub", "jti", "scope"]);
    v
}

#[test]
fn our_tokens_verify_under_jsonwebtoken() {
    let ring = Keyring::new(Key::new("k1", SECRET));
    for claims in samples(now()) {
        let token = ring.sign(&claims);
        let data = jsonwebtoken::decode::<Claims>(
            &token,
            &DecodingKey::from_secret(SECRET),
            &validation(),
        )
        .unwrap_or_else(|e| panic!("{e}: {claims:?}"));
        assert_eq!(data.claims, claims);
        assert_eq!(data.header.alg, Algorithm::HS256);
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        assert_eq!(data.header.kid.as_deref(), Some("k1"));
    }
}

#[test]
fn jsonwebtoken_tokens_verify_here() {
    let ring = Keyring::new(Key::new("k1", SECRET));
    let now = now();
    for claims in samples(now) {
        let token = jsonwebtoken::encode(&header("k1"), &claims, &EncodingKey::from_secret(SECRET))
            .unwrap();
        assert_eq!(ring.verify(&token, claims.scope, now), Ok(claims));
    }
}

#[test]
fn jsonwebtoken_rejects_our_token_under_another_secret() {
    let token = Keyring::new(Key::new("k1", SECRET)).sign(&samples(now())[0]);
    let err = jsonwebtoken::decode::<Claims>(
        &token,
        &DecodingKey::from_secret(b"another secret"),
        &validation(),
    )
    .unwrap_err();
    assert_eq!(
        *err.kind(),
        jsonwebtoken::errors::ErrorKind::InvalidSignature
    );
}

#[test]
fn jsonwebtoken_token_under_another_secret_is_refused() {
    let ring = Keyring::new(Key::new("k1", SECRET));
    let claims = samples(now()).remove(0);
    let token =
        jsonwebtoken::encode(&header("k1"), &claims, &EncodingKey::from_secret(b"other")).unwrap();
    assert_eq!(
        ring.verify(&token, Scope::Agent, now()),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn jsonwebtoken_tokens_outside_our_profile_are_refused() {
    let ring = Keyring::new(Key::new("k1", SECRET));
    let now = now();
    let claims = samples(now).remove(0);
    let key = EncodingKey::from_secret(SECRET);

    // No kid: we cannot pick a key.
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
    assert_eq!(
        ring.verify(&token, Scope::Agent, now),
        Err(JwtError::BadHeader)
    );

    // Another HMAC algorithm with the same secret.
    let mut h = header("k1");
    h.alg = Algorithm::HS512;
    let token = jsonwebtoken::encode(&h, &claims, &key).unwrap();
    assert_eq!(
        ring.verify(&token, Scope::Agent, now),
        Err(JwtError::UnsupportedAlg)
    );

    // An extra header field.
    let mut h = header("k1");
    h.cty = Some("JWT".into());
    let token = jsonwebtoken::encode(&h, &claims, &key).unwrap();
    assert_eq!(
        ring.verify(&token, Scope::Agent, now),
        Err(JwtError::BadHeader)
    );

    // Extra registered claims.
    let mut extra = serde_json::to_value(&claims).unwrap();
    extra["nbf"] = serde_json::json!(now);
    let token = jsonwebtoken::encode(&header("k1"), &extra, &key).unwrap();
    assert_eq!(
        ring.verify(&token, Scope::Agent, now),
        Err(JwtError::BadClaims)
    );
}

#[test]
fn expiry_agrees_with_jsonwebtoken() {
    // Both sides use the same leeway: a token that expired just beyond it fails on both.
    let now = now();
    let ring = Keyring::new(Key::new("k1", SECRET));
    let mut claims = samples(now).remove(0);
    claims.iat = now - 7200;
    claims.exp = now - LEEWAY_SECS - 5;
    let token = ring.sign(&claims);
    assert_eq!(
        ring.verify(&token, Scope::Agent, now),
        Err(JwtError::Expired)
    );
    let err =
        jsonwebtoken::decode::<Claims>(&token, &DecodingKey::from_secret(SECRET), &validation())
            .unwrap_err();
    assert_eq!(
        *err.kind(),
        jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );
}
