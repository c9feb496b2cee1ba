//! Hand-written HS256 JSON Web Tokens over `ring`, for agent, refresh, operator and
//! events-ticket credentials.
//!
//! Why not a JWT library: the token format here is closed (one algorithm, one header shape,
//! one claim set), so a small, strict implementation is both easier to audit and faster than
//! a general one. Everything outside that format is refused:
//!
//! - the header must be a JSON object with exactly `alg` = `"HS256"`, `typ` = `"JWT"` and a
//!   string `kid`; `alg: "none"` or any other algorithm is [`JwtError::UnsupportedAlg`];
//!   any other header field (including `crit`, `jku`, `jwk`, `x5u`, …) or a duplicated one is
//!   [`JwtError::BadHeader`] — we understand no extensions, so we accept none;
//! - the claims must be exactly `sub`, `iat`, `exp`, `jti`, `scope` and optionally `fam`
//!   (string or `null`), each once, with `iat`/`exp` unsigned integers (seconds since the
//!   Unix epoch); anything else is [`JwtError::BadClaims`];
//! - segments are unpadded base64url with canonical trailing bits, so a token has exactly one
//!   spelling; tokens longer than [`MAX_TOKEN_LEN`] are refused before any decoding.
//!
//! The signature is checked (constant time, [`ring::hmac::verify`]) before the claims are
//! parsed, so unauthenticated claim bytes are never interpreted. The verifier requires the
//! scope the caller expects, so a refresh token can never be used as an agent token.
//! Expiry and issue time allow [`LEEWAY_SECS`] of clock skew.
//!
//! Keys rotate by `kid`: a [`Keyring`] signs with its current key and verifies with the
//! current key or any previous key still kept.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::codes::ErrorCode;

/// Clock skew tolerated on `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The longest token accepted, in bytes. Checked before anything is decoded.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Segments that decode to at most this many bytes (every real token's) are decoded into a
/// stack buffer; longer ones (up to [`MAX_TOKEN_LEN`]) into a `Vec`. Keeping the buffer
/// small matters: zeroing a buffer for a maximal segment cost more than the whole parse.
const STACK_SEGMENT_BYTES: usize = 384;

/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Length of an HMAC-SHA256 tag in unpadded base64url.
const TAG_B64_LEN: usize = 43;

/// What a token may be used for. Each endpoint accepts exactly one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// An agent's access token (WebSocket, agent endpoints).
    Agent,
    /// An agent's refresh token, only good for `POST /api/agents/refresh`.
    Refresh,
    /// An operator's token for the operator API.
    Operator,
    /// A short-lived ticket for the live events stream.
    EventsTicket,
}

impl Scope {
    /// Every scope.
    pub const ALL: &'static [Scope] = &[
        Scope::Agent,
        Scope::Refresh,
        Scope::Operator,
        Scope::EventsTicket,
    ];

    /// The spelling in the `scope` claim, e.g. `"events_ticket"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Agent => "agent",
            Scope::Refresh => "refresh",
            Scope::Operator => "operator",
            Scope::EventsTicket => "events_ticket",
        }
    }

    /// Parses the spelling of the `scope` claim.
    pub fn from_wire(s: &str) -> Option<Scope> {
        match s {
            "agent" => Some(Scope::Agent),
            "refresh" => Some(Scope::Refresh),
            "operator" => Some(Scope::Operator),
            "events_ticket" => Some(Scope::EventsTicket),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claim set of every token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Subject: the agent id, operator name, …. Never empty.
    pub sub: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch; always after `iat`.
    pub exp: u64,
    /// Unique token id. Never empty.
    pub jti: String,
    /// What the token may be used for.
    pub scope: Scope,
    /// Token family id, shared by a chain of rotated refresh tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

impl Claims {
    /// Claims for `sub` valid from `now` for `ttl_secs`, with a fresh random `jti` and no
    /// family.
    pub fn new(sub: impl Into<String>, scope: Scope, now: u64, ttl_secs: u64) -> Claims {
        Claims {
            sub: sub.into(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
            jti: random_id(),
            scope,
            fam: None,
        }
    }
}

/// Why a token was refused. Every variant is `AUTH_FAILED` on the wire; the variant is for
/// logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum JwtError {
    /// Not three unpadded base64url segments, or the header is not UTF-8 JSON.
    #[error("malformed token")]
    Malformed,
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token too long")]
    TooLong,
    /// The header is not exactly `alg`, `typ: "JWT"` and `kid`.
    #[error("bad token header")]
    BadHeader,
    /// `alg` is not `HS256` (e.g. `none`).
    #[error("unsupported token algorithm")]
    UnsupportedAlg,
    /// No key with the header's `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not match.
    #[error("bad token signature")]
    BadSignature,
    /// The claims are not exactly the expected claim set, or are inconsistent.
    #[error("bad token claims")]
    BadClaims,
    /// `exp` (plus leeway) is in the past.
    #[error("token expired")]
    Expired,
    /// `iat` (minus leeway) is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// Valid, but for another scope than the one required here.
    #[error("token has the wrong scope")]
    WrongScope,
}

impl JwtError {
    /// The wire code: always [`ErrorCode::AuthFailed`].
    pub fn code(&self) -> ErrorCode {
        ErrorCode::AuthFailed
    }
}

/// An HS256 key with its id. The secret never appears in `Debug`.
#[derive(Clone)]
pub struct Key {
    kid: String,
    key: hmac::Key,
    /// The base64url header `{"alg":"HS256","typ":"JWT","kid":…}`, encoded once.
    header_b64: String,
}

impl Key {
    /// A key from a secret (use at least 32 random bytes).
    pub fn new(kid: impl Into<String>, secret: &[u8]) -> Key {
        let kid = kid.into();
        let mut header = String::with_capacity(40 + kid.len());
        header.push_str(r#"{"alg":"HS256","typ":"JWT","kid":"#);
        push_json_string(&mut header, &kid);
        header.push('}');
        Key {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            header_b64: URL_SAFE_NO_PAD.encode(header.as_bytes()),
            kid,
        }
    }

    /// A key with a fresh 256-bit secret from the OS random number generator; the secret is
    /// returned so it can be persisted.
    pub fn generate(kid: impl Into<String>) -> (Key, [u8; 32]) {
        let mut secret = [0u8; 32];
        fill_random(&mut secret);
        (Key::new(kid, &secret), secret)
    }

    /// The key id carried in the token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Signs `claims` with `key`: `{"alg":"HS256","typ":"JWT","kid":…}.claims.signature`.
///
/// The result is only accepted by [`Keyring::verify`] if it is at most [`MAX_TOKEN_LEN`]
/// bytes, `sub` and `jti` are not empty and `exp > iat`.
pub fn sign(key: &Key, claims: &Claims) -> String {
    let mut payload = String::with_capacity(96 + claims.sub.len() + claims.jti.len());
    payload.push_str(r#"{"sub":"#);
    push_json_string(&mut payload, &claims.sub);
    payload.push_str(r#","iat":"#);
    push_u64(&mut payload, claims.iat);
    payload.push_str(r#","exp":"#);
    push_u64(&mut payload, claims.exp);
    payload.push_str(r#","jti":"#);
    push_json_string(&mut payload, &claims.jti);
    payload.push_str(r#","scope":""#);
    payload.push_str(claims.scope.as_str());
    payload.push('"');
    if let Some(fam) = &claims.fam {
        payload.push_str(r#","fam":"#);
        push_json_string(&mut payload, fam);
    }
    payload.push('}');

    let mut token =
        String::with_capacity(key.header_b64.len() + payload.len() * 4 / 3 + TAG_B64_LEN + 4);
    token.push_str(&key.header_b64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload.as_bytes(), &mut token);
    let tag = hmac::sign(&key.key, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
    token
}

/// The current signing key plus older, verify-only keys, looked up by `kid`.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl Keyring {
    /// A keyring that signs and verifies with `current` only.
    pub fn new(current: Key) -> Self {
        Keyring {
            current,
            previous: Vec::new(),
        }
    }

    /// Keeps `key` for verification only. A key with the same `kid` as an earlier previous
    /// key replaces it; one with the current key's `kid` is never consulted.
    pub fn add_previous(&mut self, key: Key) {
        self.previous.retain(|k| k.kid != key.kid);
        self.previous.push(key);
    }

    /// Makes `key` the signing key; the old current key stays for verification.
    pub fn rotate(&mut self, key: Key) {
        let old = std::mem::replace(&mut self.current, key);
        if old.kid != self.current.kid {
            self.add_previous(old);
        }
    }

    /// Forgets a previous key; tokens signed with it stop verifying. Returns whether a key
    /// was removed. The current key cannot be removed.
    pub fn remove_previous(&mut self, kid: &str) -> bool {
        let before = self.previous.len();
        self.previous.retain(|k| k.kid != kid);
        self.previous.len() != before
    }

    /// The signing key.
    pub fn current(&self) -> &Key {
        &self.current
    }

    /// The verify-only keys.
    pub fn previous(&self) -> &[Key] {
        &self.previous
    }

    /// Signs with the current key.
    pub fn sign(&self, claims: &Claims) -> String {
        sign(&self.current, claims)
    }

    /// The key for `kid`: the current one first, then the previous ones.
    fn find(&self, kid: &str) -> Option<&Key> {
        if self.current.kid == kid {
            return Some(&self.current);
        }
        self.previous.iter().find(|k| k.kid == kid)
    }

    /// Verifies `token` at time `now` (seconds since the Unix epoch) and requires `expected`
    /// scope. Checks, in order: length, shape, header, key, signature, claims, scope, time.
    pub fn verify(&self, token: &str, expected: Scope, now: u64) -> Result<Claims, JwtError> {
        let parts = split(token)?;
        let key = with_decoded(parts.header, |header| {
            let kid = parse_header(header)?;
            self.find(&kid).ok_or(JwtError::UnknownKey)
        })?;

        let mut tag = [0u8; TAG_LEN];
        if parts.signature.len() != TAG_B64_LEN {
            return Err(JwtError::BadSignature);
        }
        match URL_SAFE_NO_PAD.decode_slice(parts.signature, &mut tag) {
            Ok(TAG_LEN) => {}
            _ => return Err(JwtError::BadSignature),
        }
        hmac::verify(&key.key, parts.signed.as_bytes(), &tag)
            .map_err(|_| JwtError::BadSignature)?;

        let claims = with_decoded(parts.payload, parse_claims)?;
        if claims.scope != expected {
            return Err(JwtError::WrongScope);
        }
        if now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(JwtError::Expired);
        }
        if claims.iat > now.saturating_add(LEEWAY_SECS) {
            return Err(JwtError::NotYetValid);
        }
        Ok(claims)
    }
}

/// Reads the claims of a well-formed token WITHOUT checking the signature, scope or time.
/// For the agent, to learn when its own token expires; never use it to authorise anything.
pub fn peek_unverified(token: &str) -> Result<Claims, JwtError> {
    let parts = split(token)?;
    with_decoded(parts.header, |header| parse_header(header).map(drop))?;
    with_decoded(parts.payload, parse_claims)
}

/// A random 128-bit id in unpadded base64url (22 characters), for `jti`, `fam` and other ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Fills `buf` from the OS random number generator.
///
/// # Panics
/// If the OS generator fails, which on the supported platforms (Linux `getrandom`) only
/// happens if the kernel is broken; issuing predictable secrets would be worse.
fn fill_random(buf: &mut [u8]) {
    SystemRandom::new()
        .fill(buf)
        .expect("the OS random number generator failed");
}

// ---------------------------------------------------------------------------------------------
// Token shape.

struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the signed bytes.
    signed: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    // `str::find` with a char uses a word-at-a-time memchr.
    let first = token.find('.').ok_or(JwtError::Malformed)?;
    let second = first + 1 + token[first + 1..].find('.').ok_or(JwtError::Malformed)?;
    if token[second + 1..].contains('.') {
        return Err(JwtError::Malformed);
    }
    let parts = Parts {
        header: &token[..first],
        payload: &token[first + 1..second],
        signature: &token[second + 1..],
        signed: &token[..second],
    };
    if parts.header.is_empty() || parts.payload.is_empty() || parts.signature.is_empty() {
        return Err(JwtError::Malformed);
    }
    Ok(parts)
}

/// Decodes one unpadded, canonical base64url segment and hands the bytes to `f`.
fn with_decoded<R>(
    segment: &str,
    f: impl FnOnce(&[u8]) -> Result<R, JwtError>,
) -> Result<R, JwtError> {
    if segment.len() <= STACK_SEGMENT_BYTES / 3 * 4 {
        let mut buf = [0u8; STACK_SEGMENT_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(segment.as_bytes(), &mut buf) {
            Ok(n) => f(&buf[..n]),
            Err(_) => Err(JwtError::Malformed),
        }
    } else {
        match URL_SAFE_NO_PAD.decode(segment.as_bytes()) {
            Ok(bytes) => f(&bytes),
            Err(_) => Err(JwtError::Malformed),
        }
    }
}

/// Parses the header; returns the `kid`.
fn parse_header(bytes: &[u8]) -> Result<Cow<'_, str>, JwtError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JwtError::BadHeader)?;
    let mut p = Json::new(text);
    let mut alg: Option<Cow<'_, str>> = None;
    let mut typ: Option<Cow<'_, str>> = None;
    let mut kid: Option<Cow<'_, str>> = None;
    p.object(|p, name| {
        let slot = match &*name {
            "alg" => &mut alg,
            "typ" => &mut typ,
            "kid" => &mut kid,
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p.string()?);
        Some(())
    })
    .ok_or(JwtError::BadHeader)?;
    match alg.as_deref() {
        Some("HS256") => {}
        Some(_) => return Err(JwtError::UnsupportedAlg),
        None => return Err(JwtError::BadHeader),
    }
    if typ.as_deref() != Some("JWT") {
        return Err(JwtError::BadHeader);
    }
    kid.ok_or(JwtError::BadHeader)
}

/// Parses and checks the claim set.
fn parse_claims(bytes: &[u8]) -> Result<Claims, JwtError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JwtError::BadClaims)?;
    let mut p = Json::new(text);
    let mut sub: Option<Cow<'_, str>> = None;
    let mut iat: Option<u64> = None;
    let mut exp: Option<u64> = None;
    let mut jti: Option<Cow<'_, str>> = None;
    let mut scope: Option<Scope> = None;
    let mut fam: Option<Option<Cow<'_, str>>> = None;
    p.object(|p, name| {
        match &*name {
            "sub" if sub.is_none() => sub = Some(p.string()?),
            "iat" if iat.is_none() => iat = Some(p.uint()?),
            "exp" if exp.is_none() => exp = Some(p.uint()?),
            "jti" if jti.is_none() => jti = Some(p.string()?),
            "scope" if scope.is_none() => scope = Some(Scope::from_wire(&p.string()?)?),
            "fam" if fam.is_none() => fam = Some(if p.null() { None } else { Some(p.string()?) }),
            _ => return None,
        }
        Some(())
    })
    .ok_or(JwtError::BadClaims)?;
    let claims = Claims {
        sub: sub.ok_or(JwtError::BadClaims)?.into_owned(),
        iat: iat.ok_or(JwtError::BadClaims)?,
        exp: exp.ok_or(JwtError::BadClaims)?,
        jti: jti.ok_or(JwtError::BadClaims)?.into_owned(),
        scope: scope.ok_or(JwtError::BadClaims)?,
        fam: fam.flatten().map(Cow::into_owned),
    };
    if claims.sub.is_empty() || claims.jti.is_empty() || claims.exp <= claims.iat {
        return Err(JwtError::BadClaims);
    }
    Ok(claims)
}

// ---------------------------------------------------------------------------------------------
// A strict JSON reader for flat objects of strings, unsigned integers and null (RFC 8259
// grammar for those values; duplicate and unknown keys are the callers' business).

struct Json<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Json<'a> {
    fn new(text: &'a str) -> Self {
        Json { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The whole input is one object; `field` is called with the reader positioned at each
    /// member's value and must consume it (or return `None` to refuse the document).
    fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if !self.eat(b'}') {
            loop {
                let name = self.string()?;
                if !self.eat(b':') {
                    return None;
                }
                field(self, name)?;
                if self.eat(b',') {
                    continue;
                }
                if self.eat(b'}') {
                    break;
                }
                return None;
            }
        }
        self.skip_ws();
        (self.pos == self.text.len()).then_some(())
    }

    fn null(&mut self) -> bool {
        self.skip_ws();
        if self.text.as_bytes()[self.pos..].starts_with(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// An unsigned integer without sign, fraction, exponent or leading zeros that fits u64.
    fn uint(&mut self) -> Option<u64> {
        self.skip_ws();
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(&b @ b'0'..=b'9') = bytes.get(self.pos) {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        if digits == 0 || (digits > 1 && bytes[start] == b'0') {
            return None;
        }
        match bytes.get(self.pos) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(value),
        }
    }

    /// A string; borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.skip_ws();
        let bytes = self.text.as_bytes();
        if bytes.get(self.pos) != Some(&b'"') {
            return None;
        }
        self.pos += 1;
        let start = self.pos;
        self.skip_plain();
        loop {
            match *bytes.get(self.pos)? {
                b'"' => {
                    let s = &self.text[start..self.pos];
                    self.pos += 1;
                    return Some(Cow::Borrowed(s));
                }
                b'\\' => break,
                0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
        // Slow path: unescape.
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(&self.text[start..self.pos]);
        loop {
            let run = self.pos;
            loop {
                match *bytes.get(self.pos)? {
                    b'"' | b'\\' => break,
                    0..=0x1f => return None,
                    _ => self.pos += 1,
                }
            }
            out.push_str(&self.text[run..self.pos]);
            if bytes[self.pos] == b'"' {
                self.pos += 1;
                return Some(Cow::Owned(out));
            }
            self.pos += 1; // the backslash
            let escape = *bytes.get(self.pos)?;
            self.pos += 1;
            match escape {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let first = self.hex4()?;
                    let c = match first {
                        0xD800..=0xDBFF => {
                            if !self.text.as_bytes()[self.pos..].starts_with(b"\\u") {
                                return None;
                            }
                            self.pos += 2;
                            let second = self.hex4()?;
                            if !(0xDC00..=0xDFFF).contains(&second) {
                                return None;
                            }
                            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return None,
                        _ => first,
                    };
                    out.push(char::from_u32(c)?);
                }
                _ => return None,
            }
        }
    }

    /// Skips bytes that are not `"`, `\\` or control characters, eight at a time.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let bytes = self.text.as_bytes();
        while let Some(chunk) = bytes.get(self.pos..self.pos + 8) {
            let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let quote = w ^ (ONES * u64::from(b'"'));
            let slash = w ^ (ONES * u64::from(b'\\'));
            // "Has a zero byte" / "has a byte below 0x20": the lowest flagged byte is exact
            // (later ones may be false positives, and are not used).
            let special = ((quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | (w.wrapping_sub(ONES * 0x20) & !w))
                & HIGH;
            if special != 0 {
                self.pos += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.as_bytes().get(self.pos..self.pos + 4)?;
        let mut value = 0u32;
        for &d in digits {
            value = value * 16 + (d as char).to_digit(16)?;
        }
        self.pos += 4;
        Some(value)
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(d as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// serde_json's view of a claim set, for differential testing of the hand parser.
    fn serde_claims(bytes: &[u8]) -> Option<Claims> {
        let c: Claims = serde_json::from_slice(bytes).ok()?;
        (!c.sub.is_empty() && !c.jti.is_empty() && c.exp > c.iat).then_some(c)
    }

    #[test]
    fn json_string_escaping_round_trips() {
        for s in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "ctl\u{1}\n\t",
            "ünï©ødé 🎮",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
            assert_eq!(
                Json::new(&out).string().map(Cow::into_owned).as_deref(),
                Some(s)
            );
        }
    }

    #[test]
    fn push_u64_matches_display() {
        for n in [0, 1, 9, 10, 1_700_000_000, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn claim_parser_agrees_with_serde_on_edge_cases() {
        let cases: &[&str] = &[
            r#"{"sub":"a","iat":1,"exp":2,"jti":"j","scope":"agent"}"#,
            r#" { "sub" : "a" , "iat" : 1 , "exp" : 2 , "jti" : "j" , "scope" : "agent" } "#,
            r#"{"sub":"a","iat":1,"exp":2,"jti":"j","scope":"agent","fam":null}"#,
            r#"{"sub":"a","iat":1,"exp":2,"jti":"j","scope":"agent","fam":"f"}"#,
            r#"{"sub":"\u0061\ud83c\udfae","iat":1,"exp":2,"jti":"j","scope":"refresh"}"#,
            r#"{"sub":"\ud83c","iat":1,"exp":2,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"\udfae","iat":1,"exp":2,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","iat":01,"exp":2,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","iat":1.0,"exp":2,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","iat":1e3,"exp":20000,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","iat":-1,"exp":2,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","iat":1,"exp":18446744073709551616,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","iat":1,"exp":18446744073709551615,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","sub":"b","iat":1,"exp":2,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","iat":1,"exp":2,"jti":"j","scope":"agent","x":1}"#,
            r#"{"sub":"a","iat":1,"exp":2,"jti":"j","scope":"Agent"}"#,
            r#"{"sub":"a","iat":1,"exp":2,"jti":"j"}"#,
            r#"{"sub":"a","iat":1,"exp":2,"jti":"j","scope":"agent"}x"#,
            r#"{"sub":"a","iat":1,"exp":2,"jti":"j","scope":"agent",}"#,
            r#"{"sub":"a\x","iat":1,"exp":2,"jti":"j","scope":"agent"}"#,
            "{\"sub\":\"a\u{1}\",\"iat\":1,\"exp\":2,\"jti\":\"j\",\"scope\":\"agent\"}",
            r#"{"sub":"","iat":1,"exp":2,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","iat":2,"exp":2,"jti":"j","scope":"agent"}"#,
            r#"{"sub":"a","iat":1,"exp":2,"jti":"j","scope":"agent","fam":1}"#,
            r#"{"\u0073ub":"a","iat":1,"exp":2,"jti":"j","scope":"agent"}"#,
            r#"[]"#,
            r#""#,
            r#"{"#,
        ];
        for case in cases {
            assert_eq!(
                parse_claims(case.as_bytes()).ok(),
                serde_claims(case.as_bytes()),
                "{case}"
            );
        }
    }

    fn json_fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""sub":"a""#.to_string()),
            Just(r#""iat":1"#.to_string()),
            Just(r#""exp":2"#.to_string()),
            Just(r#""jti":"j""#.to_string()),
            Just(r#""scope":"agent""#.to_string()),
            Just(r#""fam":null"#.to_string()),
            Just(r#""fam":"f""#.to_string()),
            "[a-z\"\\\\:,{} 0-9.eE\\-]{0,6}",
            r#""(sub|iat|exp|jti|scope|fam)":(-?[0-9]{1,21}(\.[0-9])?|"[a-z\\u]{0,6}"|null|true)"#,
        ]
    }

    proptest! {
        #[test]
        fn claim_parser_agrees_with_serde(
            parts in proptest::collection::vec(json_fragment(), 0..9),
            open in any::<bool>(), close in any::<bool>(),
        ) {
            let mut doc = String::new();
            if open { doc.push('{'); }
            doc.push_str(&parts.join(","));
            if close { doc.push('}'); }
            prop_assert_eq!(parse_claims(doc.as_bytes()).ok(), serde_claims(doc.as_bytes()), "{}", doc);
        }

        #[test]
        fn claim_parser_agrees_with_serde_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(parse_claims(&bytes).ok(), serde_claims(&bytes));
        }

        #[test]
        fn json_strings_round_trip(s in any::<String>()) {
            let mut out = String::new();
            push_json_string(&mut out, &s);
            prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s.clone());
            let parsed = Json::new(&out).string().map(Cow::into_owned);
            prop_assert_eq!(parsed, Some(s));
        }

        #[test]
        fn escaped_strings_parse_like_serde(s in r#"([a-z]|\\[\\/"bfnrtx]|\\u[0-9a-fA-F]{4}|\\u[dD][89abAB][0-9a-f]{2}\\u[dD][c-fC-F][0-9a-f]{2})*"#) {
            let doc = format!("\"{s}\"");
            let mut p = Json::new(&doc);
            let ours = p.string().filter(|_| p.pos == doc.len()).map(Cow::into_owned);
            prop_assert_eq!(ours, serde_json::from_str::<String>(&doc).ok());
        }
    }
}
