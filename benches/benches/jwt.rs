//! HS256 JWT sign and verify, ours (`proto::jwt`) vs the `jsonwebtoken` crate, side by side in
//! one run, on the same claims, secret and header (`alg`, `typ`, `kid`).
//!
//! - `jwt_sign/{proto,jsonwebtoken}`: claims → token.
//! - `jwt_verify/{proto,jsonwebtoken}`: token → checked claims (signature, `exp` with 30 s
//!   leeway, and the expected scope — `jsonwebtoken` checks the scope after decoding, as a
//!   caller would have to).
//! - `jwt_reject/{proto,jsonwebtoken}`: a token with a bad signature (the cost of a forged
//!   token, which is what an attacker controls).

use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, black_box, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use proto::jwt::{Claims, Key, Keyring, Scope};

const SECRET: &[u8] = b"bench secret: 32 bytes of entropy";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn claims(now: u64) -> Claims {
    Claims {
        sub: "agent_5b0c1d5e-7a61-4f0e-9b7f-3c1b2a9d8e70".into(),
        iat: now,
        exp: now + 86_400,
        jti: "q3v0k6mV1sNn2Y0fHc1b7w".into(),
        scope: Scope::Agent,
        fam: None,
    }
}

struct Jwt {
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

fn jsonwebtoken_setup() -> Jwt {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = proto::jwt::LEEWAY_SECS;
    validation.set_required_spec_claims(&["exp", "iat", "sub"]);
    Jwt {
        header,
        encoding: EncodingKey::from_secret(SECRET),
        decoding: DecodingKey::from_secret(SECRET),
        validation,
    }
}

fn jsonwebtoken_verify(j: &Jwt, token: &str) -> Option<Claims> {
    let data = jsonwebtoken::decode::<Claims>(token, &j.decoding, &j.validation).ok()?;
    (data.claims.scope == Scope::Agent).then_some(data.claims)
}

fn sign(c: &mut Criterion) {
    let ring = Keyring::new(Key::new("k1", SECRET));
    let j = jsonwebtoken_setup();
    let claims = claims(now());
    let mut g = c.benchmark_group("jwt_sign");
    g.bench_with_input(BenchmarkId::new("proto", "agent"), &claims, |b, c| {
        b.iter(|| black_box(ring.sign(black_box(c))))
    });
    g.bench_with_input(
        BenchmarkId::new("jsonwebtoken", "agent"),
        &claims,
        |b, c| {
            b.iter(|| {
                black_box(jsonwebtoken::encode(&j.header, black_box(c), &j.encoding).unwrap())
            })
        },
    );
    g.finish();
}

fn verify(c: &mut Criterion) {
    let ring = Keyring::new(Key::new("k1", SECRET));
    let j = jsonwebtoken_setup();
    let now = now();
    let ours = ring.sign(&claims(now));
    let theirs = jsonwebtoken::encode(&j.header, &claims(now), &j.encoding).unwrap();
    // Each verifier gets a token it accepts; both are checked once here, outside the timing.
    assert!(ring.verify(&ours, Scope::Agent, now).is_ok());
    assert!(jsonwebtoken_verify(&j, &theirs).is_some());

    let mut g = c.benchmark_group("jwt_verify");
    g.bench_with_input(BenchmarkId::new("proto", "agent"), &ours, |b, t| {
        b.iter(|| black_box(ring.verify(black_box(t), Scope::Agent, now).unwrap()))
    });
    g.bench_with_input(
        BenchmarkId::new("jsonwebtoken", "agent"),
        &theirs,
        |b, t| b.iter(|| black_box(jsonwebtoken_verify(&j, black_box(t)).unwrap())),
    );
    g.finish();

    let (signed, _) = ours.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", "A".repeat(43));
    assert!(ring.verify(&forged, Scope::Agent, now).is_err());
    assert!(jsonwebtoken_verify(&j, &forged).is_none());
    let mut g = c.benchmark_group("jwt_reject");
    g.bench_with_input(
        BenchmarkId::new("proto", "bad_signature"),
        &forged,
        |b, t| b.iter(|| black_box(ring.verify(black_box(t), Scope::Agent, now).is_err())),
    );
    g.bench_with_input(
        BenchmarkId::new("jsonwebtoken", "bad_signature"),
        &forged,
        |b, t| b.iter(|| black_box(jsonwebtoken_verify(&j, black_box(t)).is_none())),
    );
    g.finish();
}

criterion_group!(benches, sign, verify);
criterion_main!(benches);
