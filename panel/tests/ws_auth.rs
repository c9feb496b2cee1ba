//! Every way an agent WebSocket upgrade must be refused: 401 as an HTTP answer, before any
//! WebSocket frame, and the agent stays offline. A correctly forged token (same key, same
//! claims) is accepted, which proves the refusals are about the one thing each case breaks.

mod common;

use common::agent::Conn;
use common::{ClientError, Harness, Panel, b64, forge, run, unb64};
use proto::jwt::{Claims, Scope};
use serde_json::Value;

/// Connects with these headers and returns the HTTP status of the refusal.
async fn refused(p: &Panel, what: &str, headers: &[(&str, &str)]) -> u16 {
    match common::net::ws_connect(&p.ws_url(), p.tls.clone(), headers).await {
        Err(ClientError::Rejected { status, body }) => {
            // When a body made it through, it is the JSON error envelope.
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                assert_eq!(v["success"], false, "{what}: {v}");
                assert_eq!(v["error"]["code"], "AUTH_FAILED", "{what}: {v}");
            }
            status
        }
        Err(e) => panic!("{what}: expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("{what}: the upgrade was accepted"),
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn every_bad_credential_is_refused_with_401_before_the_upgrade() {
    let h = Harness::start("ws-auth");
    let p = &h.panel;
    run(async {
        let a = p.register("node-a").await;
        let b = p.register("node-b").await;
        let claims = proto::jwt::peek_unverified(&a.token).expect("agent token");
        assert_eq!(claims.scope, Scope::Agent);
        let now = proto::time::unix_now();

        // Control: a token we sign ourselves with identical claims is accepted, so every
        // refusal below is caused by exactly what that case changes.
        let same = forge(p, &claims);
        let c = Conn::connect_with(p, &same, &a.id).await;
        assert!(
            c.is_ok(),
            "re-signed identical token refused: {:?}",
            c.err()
        );
        drop(c);

        let parts: Vec<&str> = a.token.split('.').collect();
        assert_eq!(parts.len(), 3);

        // Tampered: signature changed.
        let mut sig = unb64(parts[2]);
        sig[0] ^= 1;
        let bad_sig = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
        // Tampered: claims changed (longer expiry), signature kept.
        let mut payload: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
        payload["exp"] = (claims.exp + 3600).into();
        let bad_claims = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_vec(&payload).unwrap()),
            parts[2]
        );
        // alg none, no signature; and alg none keeping the real signature.
        let none_hdr = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let alg_none = format!("{none_hdr}.{}.", parts[1]);
        let alg_none_sig = format!("{none_hdr}.{}.{}", parts[1], parts[2]);
        let none_kid_hdr = b64(format!(
            r#"{{"alg":"none","typ":"JWT","kid":{}}}"#,
            serde_json::to_string(
                serde_json::from_slice::<Value>(&unb64(parts[0])).unwrap()["kid"]
                    .as_str()
                    .unwrap()
            )
            .unwrap()
        )
        .as_bytes());
        let alg_none_kid = format!("{none_kid_hdr}.{}.", parts[1]);
        // Expired (well beyond the clock-skew leeway), correctly signed.
        let expired = forge(
            p,
            &Claims {
                iat: now - 2 * 86_400,
                exp: now - 86_400,
                ..claims.clone()
            },
        );
        // Not yet valid.
        let future = forge(
            p,
            &Claims {
                iat: now + 86_400,
                exp: now + 2 * 86_400,
                ..claims.clone()
            },
        );
        // Wrong scopes, correctly signed.
        let scoped = |scope| {
            forge(
                p,
                &Claims {
                    scope,
                    ..claims.clone()
                },
            )
        };
        let operator = scoped(Scope::Operator);
        let ticket = scoped(Scope::EventsTicket);
        let refresh_scope = scoped(Scope::Refresh);
        // Signed by some other key.
        let (other_key, _) = proto::jwt::Key::generate("kother");
        let foreign = proto::jwt::sign(&other_key, &claims);
        // Subject of another agent (forged with the real key) but a's id header.
        let other_sub = forge(
            p,
            &Claims {
                sub: b.id.clone(),
                ..claims.clone()
            },
        );

        let long = "a".repeat(proto::jwt::MAX_TOKEN_LEN + 10);
        let cases: Vec<(&str, Option<String>, Option<&str>)> = vec![
            ("missing Authorization", None, Some(&a.id)),
            ("missing X-Agent-ID", Some(bearer(&a.token)), None),
            ("empty bearer", Some("Bearer ".into()), Some(&a.id)),
            (
                "basic scheme",
                Some(format!("Basic {}", a.token)),
                Some(&a.id),
            ),
            ("garbage token", Some(bearer("not.a.jwt")), Some(&a.id)),
            ("oversized token", Some(bearer(&long)), Some(&a.id)),
            ("tampered signature", Some(bearer(&bad_sig)), Some(&a.id)),
            ("tampered claims", Some(bearer(&bad_claims)), Some(&a.id)),
            ("alg none", Some(bearer(&alg_none)), Some(&a.id)),
            (
                "alg none + signature",
                Some(bearer(&alg_none_sig)),
                Some(&a.id),
            ),
            ("alg none + kid", Some(bearer(&alg_none_kid)), Some(&a.id)),
            ("expired", Some(bearer(&expired)), Some(&a.id)),
            ("not yet valid", Some(bearer(&future)), Some(&a.id)),
            ("operator scope", Some(bearer(&operator)), Some(&a.id)),
            ("events_ticket scope", Some(bearer(&ticket)), Some(&a.id)),
            (
                "forged refresh scope",
                Some(bearer(&refresh_scope)),
                Some(&a.id),
            ),
            (
                "refresh token as agent token",
                Some(bearer(&a.refresh_token)),
                Some(&a.id),
            ),
            ("foreign key", Some(bearer(&foreign)), Some(&a.id)),
            (
                "X-Agent-ID of another agent",
                Some(bearer(&a.token)),
                Some(&b.id),
            ),
            (
                "sub of another agent",
                Some(bearer(&other_sub)),
                Some(&a.id),
            ),
            (
                "admin token as agent token",
                Some(bearer(&p.admin_token)),
                Some(&a.id),
            ),
        ];
        for (what, auth, id) in &cases {
            let mut headers = Vec::new();
            if let Some(v) = auth {
                headers.push(("Authorization", v.as_str()));
            }
            if let Some(id) = id {
                headers.push(("X-Agent-ID", *id));
            }
            assert_eq!(refused(p, what, &headers).await, 401, "{what}");
        }
        // b never connected and a's connection above was dropped: both offline, and the
        // refusals did not bring anyone online.
        let e = p.agent_entry(&b.id).await.unwrap();
        assert_eq!(e["status"], "offline", "{e}");

        // The genuine credentials still work afterwards.
        Conn::connect(p, &a).await;
        Conn::connect(p, &b).await;
    });
}

#[test]
fn token_of_a_deleted_or_unknown_agent_is_refused() {
    let h = Harness::start("ws-unknown");
    let p = &h.panel;
    run(async {
        let a = p.register("node-a").await;
        let claims = proto::jwt::peek_unverified(&a.token).unwrap();
        // A correctly signed agent token for an id the panel never registered.
        let ghost = forge(
            p,
            &Claims {
                sub: "ghost-agent".into(),
                ..claims
            },
        );
        let auth = bearer(&ghost);
        assert_eq!(
            refused(
                p,
                "unregistered agent",
                &[("Authorization", &auth), ("X-Agent-ID", "ghost-agent")]
            )
            .await,
            401
        );
    });
}

#[test]
fn plain_http_on_the_ws_path_does_not_upgrade() {
    let h = Harness::start("ws-plain");
    let p = &h.panel;
    run(async {
        let a = p.register("node-a").await;
        // Valid credentials but no Upgrade headers: an HTTP error, not a 101.
        let auth = bearer(&a.token);
        let (st, _, _) = p
            .raw(
                "GET",
                "/ws/agents",
                &[("Authorization", &auth), ("X-Agent-ID", &a.id)],
                None,
            )
            .await;
        assert!((400..500).contains(&st), "status {st}");
        // Without credentials: 401.
        let (st, _, _) = p.raw("GET", "/ws/agents", &[], None).await;
        assert_eq!(st, 401);
    });
}
