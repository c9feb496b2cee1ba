//! Agent registration (`POST /api/agents/register`) and token refresh with rotation and
//! reuse detection (`POST /api/agents/refresh`), against the real panel binary.

mod common;

use common::agent::Conn;
use common::{ClientError, Harness, assert_error, run};
use serde_json::{Value, json};

fn body() -> Value {
    json!({
        "name": "node-01",
        "hostname": "192.168.1.100",
        "port": 8080,
        "capabilities": {
            "maxMemory": "16GB",
            "maxCpuCores": 8,
            "dockerVersion": "24.0.0",
            "supportedArchitectures": ["amd64", "arm64"]
        }
    })
}

#[test]
fn register_returns_the_spec_response_and_lists_the_agent() {
    let h = Harness::start("reg-ok");
    let p = &h.panel;
    run(async {
        let (st, v) = p.admin("POST", "/api/agents/register", Some(body())).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["success"], true, "{v}");
        let a = &v["agent"];
        let id = a["id"].as_str().expect("agent.id");
        assert!(!id.is_empty());
        let token = a["token"].as_str().expect("agent.token");
        let refresh = a["refreshToken"].as_str().expect("agent.refreshToken");
        assert_eq!(token.split('.').count(), 3, "token is a JWT: {token}");
        assert_ne!(token, refresh);
        let url = a["websocketUrl"].as_str().expect("agent.websocketUrl");
        assert!(
            url.starts_with("wss://") && url.ends_with("/ws/agents"),
            "websocketUrl {url}"
        );
        let claims = proto::jwt::peek_unverified(token).expect("agent token decodes");
        assert_eq!(claims.sub, id);
        assert_eq!(claims.scope, proto::jwt::Scope::Agent);
        // 24 h lifetime (the spec's rotation period).
        assert_eq!(claims.exp - claims.iat, 24 * 3600, "{claims:?}");

        // A second registration gets a different id.
        let (st2, v2) = p.admin("POST", "/api/agents/register", Some(body())).await;
        assert_eq!(st2, 200, "{v2}");
        assert_ne!(v2["agent"]["id"], a["id"]);

        let entry = p.agent_entry(id).await.expect("agent listed");
        assert_eq!(entry["name"], "node-01", "{entry}");
        assert_eq!(entry["hostname"], "192.168.1.100", "{entry}");
        assert_eq!(entry["status"], "offline", "never connected: {entry}");
        assert_eq!(entry["capabilities"], body()["capabilities"], "{entry}");

        // And the token it got is accepted on the WebSocket.
        let conn = Conn::connect_with(p, token, id).await;
        assert!(conn.is_ok(), "fresh agent token refused: {:?}", conn.err());
        p.wait_agent_status(id, "online").await;
    });
}

#[test]
fn register_without_or_with_a_wrong_admin_token_is_401() {
    let h = Harness::start("reg-401");
    let p = &h.panel;
    run(async {
        let b = serde_json::to_vec(&body()).unwrap();
        let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
            ("no header", vec![]),
            ("wrong token", vec![("Authorization", "Bearer nope".into())]),
            (
                "token with one char changed",
                vec![(
                    "Authorization",
                    format!("Bearer {}x", &p.admin_token[..p.admin_token.len() - 1]),
                )],
            ),
            (
                "right token, wrong scheme",
                vec![("Authorization", format!("Basic {}", p.admin_token))],
            ),
            ("empty bearer", vec![("Authorization", "Bearer ".into())]),
        ];
        for (what, headers) in cases {
            let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (st, _, resp) = p.raw("POST", "/api/agents/register", &hdrs, Some(&b)).await;
            let v: Value = serde_json::from_slice(&resp)
                .unwrap_or_else(|e| panic!("{what}: non-JSON body: {e}"));
            assert_error(st, &v, 401, "AUTH_FAILED");
        }
        // Nothing was registered.
        let (st, v) = p.admin("GET", "/api/agents", None).await;
        assert_eq!(st, 200);
        assert_eq!(v["agents"].as_array().unwrap().len(), 0, "{v}");

        // Every operator route needs the admin token.
        for (m, path) in [
            ("GET", "/api/agents"),
            ("GET", "/api/servers"),
            ("POST", "/api/servers"),
            ("GET", "/api/servers/srv-1"),
            ("POST", "/api/servers/srv-1/power"),
            ("POST", "/api/events/ticket"),
        ] {
            let (st, v) = p.rest.json(m, path, None, Some(&json!({}))).await.unwrap();
            assert_error(st, &v, 401, "AUTH_FAILED");
        }
    });
}

#[test]
fn register_with_an_invalid_body_is_400() {
    let h = Harness::start("reg-400");
    let p = &h.panel;
    run(async {
        let tok = Some(p.admin_token.as_str());
        // Not JSON at all.
        let (st, resp) = p
            .rest
            .request("POST", "/api/agents/register", tok, Some(b"{not json"))
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&resp).unwrap();
        assert_error(st, &v, 400, "INVALID_MESSAGE");

        // Well-formed JSON of the wrong shape.
        let mut missing = body();
        missing.as_object_mut().unwrap().remove("capabilities");
        for bad in [json!([1, 2]), json!({}), missing] {
            let (st, v) = p.admin("POST", "/api/agents/register", Some(bad)).await;
            assert_eq!(st, 400, "{v}");
            let code = v["error"]["code"].as_str().unwrap_or_default();
            assert!(
                code == "INVALID_MESSAGE" || code == "CONFIG_INVALID",
                "code {code}: {v}"
            );
        }

        // Right shape, invalid values: CONFIG_INVALID naming the field.
        let cases = [
            ("/name", json!("has spaces"), "name"),
            ("/name", json!(""), "name"),
            ("/hostname", json!("bad host!"), "hostname"),
            ("/port", json!(0), "port"),
            ("/capabilities/maxMemory", json!("lots"), "maxMemory"),
            ("/capabilities/maxCpuCores", json!(0), "maxCpuCores"),
        ];
        for (ptr, value, field) in cases {
            let mut b = body();
            *b.pointer_mut(ptr).unwrap() = value;
            let (st, v) = p.admin("POST", "/api/agents/register", Some(b)).await;
            assert_error(st, &v, 400, "CONFIG_INVALID");
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.contains(field), "message should name {field}: {msg}");
        }
        let (_, v) = p.admin("GET", "/api/agents", None).await;
        assert_eq!(v["agents"].as_array().unwrap().len(), 0, "{v}");
    });
}

async fn refresh(p: &common::Panel, refresh_token: &str) -> (u16, Value) {
    p.rest
        .json(
            "POST",
            "/api/agents/refresh",
            None,
            Some(&json!({ "refreshToken": refresh_token })),
        )
        .await
        .unwrap()
}

fn rejected(r: Result<Conn, ClientError>) -> u16 {
    match r {
        Err(ClientError::Rejected { status, .. }) => status,
        Err(e) => panic!("expected an HTTP rejection, got {e}"),
        Ok(_) => panic!("expected a rejection, the upgrade succeeded"),
    }
}

#[test]
fn refresh_rotates_and_reuse_revokes_the_family() {
    let h = Harness::start("refresh");
    let p = &h.panel;
    run(async {
        let a = p.register("node-r").await;

        // First rotation.
        let (st, v) = refresh(p, &a.refresh_token).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["success"], true);
        assert_eq!(v["agent"]["id"], a.id.as_str());
        let t1 = v["agent"]["token"].as_str().unwrap().to_owned();
        let r1 = v["agent"]["refreshToken"].as_str().unwrap().to_owned();
        assert_ne!(t1, a.token);
        assert_ne!(r1, a.refresh_token);

        // The new agent token works.
        let c1 = Conn::connect_with(p, &t1, &a.id).await.expect("new token");
        p.wait_agent_status(&a.id, "online").await;
        c1.close().await;
        drop(c1);

        // The new refresh token rotates again.
        let (st, v) = refresh(p, &r1).await;
        assert_eq!(st, 200, "{v}");
        let t2 = v["agent"]["token"].as_str().unwrap().to_owned();
        let r2 = v["agent"]["refreshToken"].as_str().unwrap().to_owned();
        let live = Conn::connect_with(p, &t2, &a.id)
            .await
            .expect("second-generation token");
        p.wait_agent_status(&a.id, "online").await;

        // Reusing the already-used r1 is refused…
        let (st, v) = refresh(p, &r1).await;
        assert_error(st, &v, 401, "AUTH_FAILED");
        // …and revokes the whole family: the live socket is closed, the current tokens die.
        let closed = live.wait_closed().await;
        assert_eq!(
            closed.code,
            Some(1008),
            "policy close on revocation: {closed:?}"
        );
        assert_eq!(rejected(Conn::connect_with(p, &t2, &a.id).await), 401);
        let (st, v) = refresh(p, &r2).await;
        assert_error(st, &v, 401, "AUTH_FAILED");
        // Older generations stay dead.
        assert_eq!(rejected(Conn::connect_with(p, &a.token, &a.id).await), 401);

        // Re-registering is the way back; other agents are unaffected.
        let b = p.register("node-other").await;
        Conn::connect(p, &b).await;
    });
}

#[test]
fn refresh_rejects_garbage_and_wrong_scope() {
    let h = Harness::start("refresh-bad");
    let p = &h.panel;
    run(async {
        let a = p.register("node-x").await;
        // An agent token is not a refresh token.
        let (st, v) = refresh(p, &a.token).await;
        assert_error(st, &v, 401, "AUTH_FAILED");
        let (st, v) = refresh(p, "garbage").await;
        assert_error(st, &v, 401, "AUTH_FAILED");
        // Missing field → 400.
        let (st, v) = p
            .rest
            .json("POST", "/api/agents/refresh", None, Some(&json!({})))
            .await
            .unwrap();
        assert_eq!(st, 400, "{v}");
        // The refused attempts did not burn the real refresh token.
        let (st, v) = refresh(p, &a.refresh_token).await;
        assert_eq!(st, 200, "{v}");
    });
}

#[test]
fn websocket_url_follows_public_url() {
    let h = Harness::with(
        "reg-public-url",
        common::PanelOpts::default().arg("--public-url", "https://panel.example.com:9443"),
    );
    let p = &h.panel;
    run(async {
        let a = p.register("node-u").await;
        assert_eq!(a.websocket_url, "wss://panel.example.com:9443/ws/agents");
    });
    // Without --public-url it is the listening address.
    let h2 = Harness::start("reg-listen-url");
    run(async {
        let a = h2.panel.register("node-u").await;
        assert_eq!(a.websocket_url, h2.panel.ws_url());
    });
}

#[test]
fn concurrent_refreshes_with_one_token_never_both_succeed() {
    let h = Harness::start("refresh-race");
    let p = &h.panel;
    run(async {
        let a = p.register("node-race").await;
        let results =
            futures_util::future::join_all((0..4).map(|_| refresh(p, &a.refresh_token))).await;
        let ok = results.iter().filter(|(st, _)| *st == 200).count();
        assert!(ok <= 1, "one refresh token rotated {ok} times: {results:?}");
        for (st, v) in &results {
            assert!(*st == 200 || *st == 401, "{st} {v}");
        }
        if ok == 1 {
            // The losers were reuses: the family is revoked, the winner's tokens too.
            let (_, v) = results.iter().find(|(st, _)| *st == 200).unwrap();
            let t = v["agent"]["token"].as_str().unwrap();
            assert_eq!(rejected(Conn::connect_with(p, t, &a.id).await), 401);
        }
    });
}

#[test]
fn concurrent_registrations_get_distinct_ids_and_all_are_listed() {
    let h = Harness::start("reg-many");
    let p = &h.panel;
    run(async {
        let agents = futures_util::future::join_all(
            (0..20).map(|i| async move { p.register(&format!("node-{i}")).await }),
        )
        .await;
        let ids: std::collections::HashSet<_> = agents.iter().map(|a| a.id.clone()).collect();
        assert_eq!(ids.len(), 20);
        let (_, v) = p.admin("GET", "/api/agents", None).await;
        let listed: std::collections::HashSet<_> = v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, ids);
    });
}
