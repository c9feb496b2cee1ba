//! Reading the lifetime of the agent's own JWT, to refresh it before it expires.
//!
//! The agent never verifies its token (it has no key; the panel does that): it only decodes
//! the payload segment to learn `exp` (and `iat`, when present) and schedule the refresh at
//! 80 % of the lifetime.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::time::Duration;

/// Fraction of the lifetime after which the token is refreshed.
const REFRESH_AT: f64 = 0.8;
/// Never wait less than this between refreshes, whatever the token says.
const MIN_DELAY: Duration = Duration::from_secs(5);

/// The times carried by a JWT, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub exp: u64,
    pub iat: Option<u64>,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
}

/// Why a token's lifetime could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not a JWT (expected three dot-separated segments)")]
    Shape,
    #[error("token payload is not base64url: {0}")]
    Base64(String),
    #[error("token payload is not JSON claims: {0}")]
    Json(String),
    #[error("token has no `exp` claim")]
    NoExp,
}

/// Decodes `exp`/`iat` from the payload segment, without verifying the signature.
pub fn lifetime(token: &str) -> Result<Lifetime, TokenError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Shape);
    };
    // Some encoders pad; base64url without padding is the JWT rule.
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| TokenError::Base64(e.to_string()))?;
    let claims: Claims =
        serde_json::from_slice(&bytes).map_err(|e| TokenError::Json(e.to_string()))?;
    let secs = |v: f64| (v.is_finite() && v >= 0.0).then_some(v as u64);
    let exp = claims.exp.and_then(secs).ok_or(TokenError::NoExp)?;
    Ok(Lifetime {
        exp,
        iat: claims.iat.and_then(secs),
    })
}

/// How long to wait, from `now` (Unix seconds), before refreshing a token with `life`.
/// `received` is when the agent got the token, used as the start when there is no `iat`.
pub fn refresh_delay(life: Lifetime, received: u64, now: u64) -> Duration {
    let start = life.iat.unwrap_or(received).min(life.exp);
    let total = (life.exp - start) as f64;
    let at = start + (total * REFRESH_AT) as u64;
    Duration::from_secs(at.saturating_sub(now)).max(MIN_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_exp_and_iat() {
        let t = jwt(r#"{"sub":"agent-1","scope":"agent","iat":1000,"exp":87400}"#);
        assert_eq!(
            lifetime(&t).unwrap(),
            Lifetime {
                exp: 87_400,
                iat: Some(1000)
            }
        );
        let t = jwt(r#"{"exp":2000}"#);
        assert_eq!(lifetime(&t).unwrap().iat, None);
    }

    #[test]
    fn refuses_tokens_without_a_readable_exp() {
        assert_eq!(lifetime("abc"), Err(TokenError::Shape));
        assert_eq!(lifetime("a.b.c.d"), Err(TokenError::Shape));
        assert!(matches!(lifetime("a.!!!.c"), Err(TokenError::Base64(_))));
        assert!(matches!(
            lifetime(&format!("a.{}.c", URL_SAFE_NO_PAD.encode("nope"))),
            Err(TokenError::Json(_))
        ));
        assert_eq!(lifetime(&jwt(r#"{"iat":5}"#)), Err(TokenError::NoExp));
        assert_eq!(lifetime(&jwt(r#"{"exp":-5}"#)), Err(TokenError::NoExp));
    }

    #[test]
    fn refresh_is_scheduled_at_80_percent_of_the_lifetime() {
        let life = Lifetime {
            exp: 1000 + 86_400,
            iat: Some(1000),
        };
        // 80 % of 24 h = 69120 s after iat.
        assert_eq!(refresh_delay(life, 1000, 1000), Duration::from_secs(69_120));
        assert_eq!(
            refresh_delay(life, 1000, 1000 + 60_000),
            Duration::from_secs(9_120)
        );
        // Past the point (or expired): soon, but never a tight loop.
        assert_eq!(refresh_delay(life, 1000, 200_000), MIN_DELAY);
        // Without iat, the lifetime starts when the token was received.
        let life = Lifetime {
            exp: 2000,
            iat: None,
        };
        assert_eq!(refresh_delay(life, 1000, 1000), Duration::from_secs(800));
    }
}
