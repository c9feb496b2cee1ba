//! Users, sessions, API keys and rights, end to end against the real panel binary: every
//! server route as admin token, admin user, owner, subuser with and without each right,
//! another user, an expired session, a revoked key and a cross-origin cookie; the events
//! socket of one user never carrying another user's server; sessions surviving `kill -9`;
//! secrets never in the store or the log in clear; and a login flood.

mod common;

use async_tungstenite::tungstenite::Message as WsMsg;
use futures_lite::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use common::agent::{Conn, ok_response, standard_response};
use common::{Harness, Panel, PanelOpts, create_server_answered, eventually, online_agent, run};

/// A panel whose API budget does not get in the way of hundreds of requests from one IP.
fn opts() -> PanelOpts {
    PanelOpts::default()
        .arg("--admin-rate", 100000)
        .arg("--admin-burst", 100000)
}

/// How a test client proves who it is.
#[derive(Clone, Debug)]
enum Cred {
    None,
    Bearer(String),
    /// A session cookie sent from the panel's own origin.
    Cookie(String),
    /// A session cookie sent by a page of another origin.
    CrossOrigin(String),
}

async fn call(
    p: &Panel,
    cred: &Cred,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let origin = p.base_url();
    let (auth, cookie);
    let mut headers: Vec<(&str, &str)> = Vec::new();
    match cred {
        Cred::None => {}
        Cred::Bearer(t) => {
            auth = format!("Bearer {t}");
            headers.push(("Authorization", &auth));
        }
        Cred::Cookie(c) => {
            cookie = format!("ctrl_session={c}");
            headers.push(("Cookie", &cookie));
            headers.push(("Origin", &origin));
        }
        Cred::CrossOrigin(c) => {
            cookie = format!("ctrl_session={c}");
            headers.push(("Cookie", &cookie));
            headers.push(("Origin", "https://evil.example"));
        }
    }
    let (status, _, body) = p.raw(method, path, &headers, body).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn call_json(p: &Panel, cred: &Cred, method: &str, path: &str, body: Value) -> (u16, Value) {
    call(p, cred, method, path, Some(body.to_string().as_bytes())).await
}

/// Logs in; the session id from `Set-Cookie` (checked for its attributes).
async fn login(p: &Panel, name: &str, password: &str) -> String {
    let body = json!({"username": name, "password": password}).to_string();
    let (status, headers, raw) = p
        .raw("POST", "/api/auth/login", &[], Some(body.as_bytes()))
        .await;
    assert_eq!(
        status,
        200,
        "login {name}: {}",
        String::from_utf8_lossy(&raw)
    );
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["user"]["name"], name);
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .expect("set-cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    cookie
        .strip_prefix("ctrl_session=")
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned()
}

/// Creates a user as admin; returns its id.
async fn add_user(p: &Panel, name: &str, password: &str, admin: bool) -> String {
    let (st, v) = p
        .admin(
            "POST",
            "/api/users",
            Some(json!({"name": name, "password": password, "admin": admin})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v.get("password").is_none(),
        "a given password is not echoed"
    );
    v["user"]["id"].as_str().unwrap().to_owned()
}

/// A fake agent that answers what the routes under test send.
fn responder(conn: &Conn) -> common::agent::AutoResponder {
    conn.auto_respond(|cmd| {
        let id = cmd["id"].as_str()?;
        let p = &cmd["payload"];
        match cmd["action"].as_str()? {
            "get_logs" => Some(ok_response(id, json!({"lines": []}))),
            "read_file_chunk" => Some(ok_response(
                id,
                json!({"path": p["path"], "offset": 0, "size": 0, "eof": true,
                       "content": "", "encoding": "base64"}),
            )),
            "write_file_chunk" => {
                use base64::Engine;
                let n = base64::engine::general_purpose::STANDARD
                    .decode(p["content"].as_str().unwrap_or_default())
                    .map_or(0, |b| b.len() as u64);
                let written = p["offset"].as_u64().unwrap_or(0) + n;
                Some(ok_response(
                    id,
                    json!({"path": p["path"], "written": written}),
                ))
            }
            _ => standard_response(cmd),
        }
    })
}

/// What a route needs, as the route table says.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    View,
    Perm(&'static str),
    Manage,
    Admin,
}

/// Every per-server route (but DELETE of the server and the subuser routes, driven apart).
fn server_routes(s: &str) -> Vec<(&'static str, String, Need, Option<Value>)> {
    let r = |m, p: &str, n, b| (m, format!("/api/servers/{s}{p}"), n, b);
    vec![
        r("GET", "", Need::View, None),
        r("GET", "/info", Need::View, None),
        r("GET", "/logs", Need::Perm("console.read"), None),
        r(
            "POST",
            "/command",
            Need::Perm("console.write"),
            Some(json!({"command": "say hi"})),
        ),
        r(
            "POST",
            "/power",
            Need::Perm("power"),
            Some(json!({"action": "start"})),
        ),
        r("GET", "/files?path=/server", Need::Perm("files.read"), None),
        r(
            "GET",
            "/files/content?path=/server/a.txt",
            Need::Perm("files.read"),
            None,
        ),
        r(
            "GET",
            "/files/download?path=/server/a.txt",
            Need::Perm("files.read"),
            None,
        ),
        r(
            "PUT",
            "/files/content?path=/server/a.txt",
            Need::Perm("files.write"),
            Some(json!({"content": "x"})),
        ),
        r(
            "PUT",
            "/files/upload?path=/server/a.txt",
            Need::Perm("files.write"),
            Some(json!("raw")),
        ),
        r(
            "POST",
            "/files/rename",
            Need::Perm("files.write"),
            Some(json!({"from": "/server/a.txt", "to": "/server/b.txt"})),
        ),
        r(
            "POST",
            "/files/mkdir",
            Need::Perm("files.write"),
            Some(json!({"path": "/server/d"})),
        ),
        r(
            "DELETE",
            "/files?path=/server/b.txt",
            Need::Perm("files.write"),
            None,
        ),
        r("POST", "/reinstall", Need::Manage, None),
        r("GET", "/users", Need::Manage, None),
    ]
}

/// Who calls, and what they may do on the server under test.
#[derive(Clone, Debug)]
enum Role {
    Admin,
    Owner,
    Subuser(Vec<&'static str>),
    Stranger,
}

fn expected(role: &Role, need: Need) -> u16 {
    match (role, need) {
        (Role::Admin, _) => 200,
        (Role::Stranger, _) => 404,
        (Role::Owner, Need::Admin) => 403,
        (Role::Owner, _) => 200,
        (Role::Subuser(_), Need::View) => 200,
        (Role::Subuser(p), Need::Perm(x)) if p.contains(&x) => 200,
        (Role::Subuser(_), _) => 403,
    }
}

async fn drive(
    p: &Panel,
    cred: &Cred,
    role: &Role,
    routes: &[(&str, String, Need, Option<Value>)],
) {
    for (m, path, need, body) in routes {
        let raw = body.as_ref().map(|b| b.to_string().into_bytes());
        let (st, v) = call(p, cred, m, path, raw.as_deref()).await;
        let want = expected(role, *need);
        assert_eq!(st, want, "{role:?} {cred:?} {m} {path}: {v}");
        match want {
            404 => assert_eq!(v["error"]["code"], "NOT_FOUND", "{v}"),
            403 => assert_eq!(v["error"]["code"], "PERMISSION_DENIED", "{v}"),
            _ => {}
        }
    }
}

#[test]
fn every_route_answers_each_caller_exactly() {
    let h = Harness::with("users-matrix", opts());
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        let _answers = responder(&conn);
        let owner = add_user(p, "owner", "owner-password", false).await;
        let sub = add_user(p, "sub", "sub-password", false).await;
        add_user(p, "stranger", "stranger-password", false).await;
        add_user(p, "boss", "boss-password", true).await;
        let (st, v) = p
            .admin(
                "POST",
                "/api/servers",
                Some(
                    json!({"agentId": a.id, "serverId": "srv-a", "ownerId": owner,
                            "eggConfig": common::egg()}),
                ),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["server"]["ownerId"], owner.as_str());
        let owner_c = Cred::Cookie(login(p, "owner", "owner-password").await);
        let sub_c = Cred::Cookie(login(p, "sub", "sub-password").await);
        let stranger_c = Cred::Cookie(login(p, "stranger", "stranger-password").await);
        let boss_c = Cred::Cookie(login(p, "boss", "boss-password").await);
        let admin = Cred::Bearer(p.admin_token.clone());
        let mut routes = server_routes("srv-a");
        routes.push((
            "PATCH",
            "/api/servers/srv-a".into(),
            Need::Admin,
            Some(json!({"ownerId": owner})),
        ));

        drive(p, &admin, &Role::Admin, &routes).await;
        drive(p, &boss_c, &Role::Admin, &routes).await;
        drive(p, &owner_c, &Role::Owner, &routes).await;
        drive(p, &stranger_c, &Role::Stranger, &routes).await;
        // A user with no access at all is not even told the server exists.
        let (st, v) = call(p, &stranger_c, "GET", "/api/servers", None).await;
        assert_eq!(
            (st, v["servers"].as_array().unwrap().len()),
            (200, 0),
            "{v}"
        );

        // The subuser with no right, then with each right alone, then with all of them.
        let mut grants: Vec<Vec<&str>> = vec![vec![]];
        grants.extend(
            [
                "console.read",
                "console.write",
                "power",
                "files.read",
                "files.write",
            ]
            .into_iter()
            .map(|r| vec![r]),
        );
        grants.push(vec![
            "console.read",
            "console.write",
            "power",
            "files.read",
            "files.write",
        ]);
        for g in grants {
            let (st, v) = call_json(
                p,
                &owner_c,
                "PUT",
                &format!("/api/servers/srv-a/users/{sub}"),
                json!({"permissions": g}),
            )
            .await;
            assert_eq!(st, 200, "{v}");
            let (st, v) = call(p, &sub_c, "GET", "/api/servers", None).await;
            assert_eq!(st, 200);
            assert_eq!(v["servers"][0]["permissions"], json!(g), "{v}");
            drive(p, &sub_c, &Role::Subuser(g), &routes).await;
        }
        // A subuser cannot manage access; an unknown right is refused.
        let (st, _) = call_json(
            p,
            &sub_c,
            "PUT",
            &format!("/api/servers/srv-a/users/{sub}"),
            json!({"permissions": ["power"]}),
        )
        .await;
        assert_eq!(st, 403);
        let (st, v) = call_json(
            p,
            &owner_c,
            "PUT",
            &format!("/api/servers/srv-a/users/{sub}"),
            json!({"permissions": ["root"]}),
        )
        .await;
        assert_eq!((st, &v["error"]["code"]), (400, &json!("INVALID_MESSAGE")));

        // Admin-only routes: users get 403, admins 200.
        let admin_only = [
            ("GET", "/api/agents"),
            ("GET", "/api/users"),
            ("GET", "/metrics"),
            ("GET", "/api/eggs"),
            ("POST", "/api/agents/registration-tokens"),
        ];
        for (m, path) in admin_only {
            let body = (m == "POST").then_some(&b"{}"[..]);
            for c in [&owner_c, &sub_c, &stranger_c] {
                let (st, v) = call(p, c, m, path, body).await;
                assert_eq!(st, 403, "{c:?} {m} {path}: {v}");
                assert_eq!(v["error"]["code"], "PERMISSION_DENIED");
            }
            for c in [&admin, &boss_c] {
                assert_eq!(call(p, c, m, path, body).await.0, 200, "{c:?} {m} {path}");
            }
        }
        let create = json!({"agentId": a.id, "serverId": "srv-x", "eggConfig": common::egg()});
        assert_eq!(
            call_json(p, &owner_c, "POST", "/api/servers", create)
                .await
                .0,
            403
        );

        // No credential: 401 everywhere but the open routes.
        for (m, path, _, _) in &routes {
            let (st, v) = call(p, &Cred::None, m, path, None).await;
            assert_eq!(
                (st, &v["error"]["code"]),
                (401, &json!("AUTH_FAILED")),
                "{m} {path}"
            );
        }
        assert_eq!(
            call(p, &Cred::None, "GET", "/api/auth/me", None).await.0,
            401
        );
        assert_eq!(call(p, &Cred::None, "GET", "/healthz", None).await.0, 200);

        // A cookie sent by another origin: every state change is 403 CROSS_ORIGIN (reads
        // are harmless: the other page cannot see the answer).
        let cross = match &owner_c {
            Cred::Cookie(c) => Cred::CrossOrigin(c.clone()),
            _ => unreachable!(),
        };
        for (m, path, _, body) in routes.iter().filter(|r| r.0 != "GET") {
            let raw = body.as_ref().map(|b| b.to_string().into_bytes());
            let (st, v) = call(p, &cross, m, path, raw.as_deref()).await;
            assert_eq!(
                (st, &v["error"]["code"]),
                (403, &json!("CROSS_ORIGIN")),
                "{m} {path}"
            );
        }
        assert_eq!(
            call(p, &cross, "POST", "/api/auth/logout", Some(b"{}"))
                .await
                .0,
            403
        );
        // Sec-Fetch-Site: same-origin is accepted in place of Origin.
        let Cred::Cookie(c) = &owner_c else {
            unreachable!()
        };
        let cookie = format!("ctrl_session={c}");
        let (st, _, _) = p
            .raw(
                "POST",
                "/api/servers/srv-a/power",
                &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
                Some(br#"{"action":"stop"}"#),
            )
            .await;
        assert_eq!(st, 200);

        // API keys: a user's rights, shown once, listed without token, revocable.
        let (st, v) = call_json(p, &sub_c, "POST", "/api/auth/keys", json!({"name": "ci"})).await;
        assert_eq!(st, 200, "{v}");
        let key = Cred::Bearer(v["key"]["token"].as_str().unwrap().to_owned());
        let key_id = v["key"]["id"].as_str().unwrap().to_owned();
        let (_, listed) = call(p, &sub_c, "GET", "/api/auth/keys", None).await;
        assert_eq!(listed["keys"][0]["id"], key_id.as_str());
        assert!(listed["keys"][0].get("token").is_none(), "{listed}");
        let (st, me) = call(p, &key, "GET", "/api/auth/me", None).await;
        assert_eq!((st, &me["user"]["name"]), (200, &json!("sub")));
        drive(
            p,
            &key,
            &Role::Subuser(vec![
                "console.read",
                "console.write",
                "power",
                "files.read",
                "files.write",
            ]),
            &routes,
        )
        .await;
        // Another user cannot revoke it (it does not exist for them).
        assert_eq!(
            call(
                p,
                &stranger_c,
                "DELETE",
                &format!("/api/auth/keys/{key_id}"),
                None
            )
            .await
            .0,
            404
        );
        assert_eq!(
            call(
                p,
                &sub_c,
                "DELETE",
                &format!("/api/auth/keys/{key_id}"),
                None
            )
            .await
            .0,
            200
        );
        for (m, path, _, _) in &routes {
            assert_eq!(
                call(p, &key, m, path, None).await.0,
                401,
                "revoked key: {m} {path}"
            );
        }

        // Removing the subuser: the server disappears for them (404), live.
        assert_eq!(
            call(
                p,
                &owner_c,
                "DELETE",
                &format!("/api/servers/srv-a/users/{sub}"),
                None
            )
            .await
            .0,
            200
        );
        drive(p, &sub_c, &Role::Stranger, &routes).await;
        assert_eq!(
            call(
                p,
                &owner_c,
                "DELETE",
                &format!("/api/servers/srv-a/users/{sub}"),
                None
            )
            .await
            .0,
            404
        );

        // A new owner: the old one becomes a stranger.
        let stranger_id = p.admin("GET", "/api/users", None).await.1["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "stranger")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (st, v) = call_json(
            p,
            &boss_c,
            "PATCH",
            "/api/servers/srv-a",
            json!({"ownerId": stranger_id}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        drive(p, &owner_c, &Role::Stranger, &routes).await;
        drive(p, &stranger_c, &Role::Owner, &routes).await;
        let (st, _) = call_json(
            p,
            &boss_c,
            "PATCH",
            "/api/servers/srv-a",
            json!({"ownerId": "u-nobody"}),
        )
        .await;
        assert_eq!(st, 404);

        // Logout ends the session; deleting a user ends theirs.
        assert_eq!(
            call(p, &owner_c, "POST", "/api/auth/logout", Some(b"{}"))
                .await
                .0,
            200
        );
        assert_eq!(call(p, &owner_c, "GET", "/api/auth/me", None).await.0, 401);
        assert_eq!(
            call(
                p,
                &admin,
                "DELETE",
                &format!("/api/users/{stranger_id}"),
                None
            )
            .await
            .0,
            200
        );
        assert_eq!(
            call(p, &stranger_c, "GET", "/api/servers", None).await.0,
            401
        );
        assert_eq!(
            call(p, &admin, "GET", "/api/servers/srv-a/info", None)
                .await
                .1["server"]["ownerId"],
            Value::Null
        );

        // DELETE of the server: admin only.
        assert_eq!(
            call(p, &sub_c, "DELETE", "/api/servers/srv-a", None)
                .await
                .0,
            404
        );
        assert_eq!(
            call(p, &boss_c, "DELETE", "/api/servers/srv-a", None)
                .await
                .0,
            200
        );
    });
}

#[test]
fn login_failures_look_alike_and_are_throttled() {
    let h = Harness::with("users-login", opts());
    let p = &h.panel;
    run(async {
        add_user(p, "alice", "alice-password", false).await;
        let attempt = |name: &'static str, pw: &'static str| async move {
            let body = json!({"username": name, "password": pw}).to_string();
            let (st, _, b) = p
                .raw("POST", "/api/auth/login", &[], Some(body.as_bytes()))
                .await;
            (st, serde_json::from_slice::<Value>(&b).unwrap())
        };
        let unknown = attempt("nobody", "whatever-pw").await;
        let wrong = attempt("alice", "wrong-password").await;
        assert_eq!(unknown.0, 401);
        assert_eq!(
            unknown, wrong,
            "the same answer for an unknown user and a wrong password"
        );
        assert_eq!(unknown.1["error"]["code"], "AUTH_FAILED");
        // Keep failing: the per-IP budget runs out, with a clear 429.
        let mut last = (0, Value::Null);
        for _ in 0..20 {
            last = attempt("alice", "wrong-password").await;
            if last.0 == 429 {
                break;
            }
        }
        assert_eq!(last.0, 429, "{}", last.1);
        assert_eq!(last.1["error"]["code"], "RATE_LIMITED");
        // Even the right password is refused while throttled.
        assert_eq!(attempt("alice", "alice-password").await.0, 429);
    });
}

#[test]
fn an_expired_session_is_refused() {
    let h = Harness::with("users-expiry", opts().arg("--session-idle-secs", 1));
    let p = &h.panel;
    run(async {
        add_user(p, "eve", "eve-password", false).await;
        let id = login(p, "eve", "eve-password").await;
        let live = Sub::open(p, &id).await;
        let c = Cred::Cookie(id);
        assert_eq!(call(p, &c, "GET", "/api/auth/me", None).await.0, 200);
        // Past the idle limit (the session was last seen at login).
        eventually("the session to expire", || async {
            (call(p, &c, "GET", "/api/auth/me", None).await.0 == 401).then_some(())
        })
        .await;
        assert_eq!(call(p, &c, "GET", "/api/servers", None).await.0, 401);
        // The socket opened with it is closed by the session sweep.
        assert_eq!(live.closed().await, Some(1008));
    });
}

/// A subscriber of `/api/events` that collects text frames and how the socket ended.
struct Sub {
    frames: async_channel::Receiver<Result<String, Option<u16>>>,
    _task: smol::Task<()>,
}

impl Sub {
    async fn open(p: &Panel, cookie: &str) -> Sub {
        let c = format!("ctrl_session={cookie}");
        let origin = p.base_url();
        let ws = common::net::ws_connect(
            &p.events_url(""),
            p.tls.clone(),
            &[("Cookie", &c), ("Origin", &origin)],
        )
        .await
        .expect("events socket");
        let (tx, rx) = async_channel::unbounded();
        let task = smol::spawn(async move {
            let mut ws = ws;
            while let Some(m) = ws.next().await {
                let item = match m {
                    Ok(WsMsg::Text(t)) => Ok(t.as_str().to_owned()),
                    Ok(WsMsg::Close(c)) => Err(c.map(|c| u16::from(c.code))),
                    Ok(_) => continue,
                    Err(_) => Err(None),
                };
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    break;
                }
            }
        });
        Sub {
            frames: rx,
            _task: task,
        }
    }

    /// The next text frame (panics on close).
    async fn next(&self) -> String {
        match common::within(common::DEADLINE, "an event", self.frames.recv()).await {
            Ok(Ok(t)) => t,
            other => panic!("socket ended: {other:?}"),
        }
    }

    /// Frames up to and including the first containing `marker`.
    async fn until(&self, marker: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let f = self.next().await;
            let done = f.contains(marker);
            out.push(f);
            if done {
                return out;
            }
        }
    }

    /// The close code the panel sent.
    async fn closed(&self) -> Option<u16> {
        loop {
            match common::within(common::DEADLINE, "the socket to close", self.frames.recv()).await
            {
                Ok(Ok(_)) => continue,
                Ok(Err(code)) => return code,
                Err(_) => return None,
            }
        }
    }
}

fn log_event(server: &str, message: &str) -> Value {
    json!({"type": "event", "timestamp": "2025-01-23T10:05:30Z", "event": "server_log",
           "serverId": server, "data": {"serverId": server, "logLevel": "INFO", "message": message}})
}

fn status_event(server: &str, marker: &str) -> Value {
    json!({"type": "event", "timestamp": "2025-01-23T10:05:30Z", "event": "server_status_changed",
           "serverId": server, "data": {"serverId": server, "previousStatus": marker,
                                       "currentStatus": "running"}})
}

#[test]
fn events_reach_only_those_who_may_see_them() {
    let h = Harness::with("users-events", opts());
    let p = &h.panel;
    run(async {
        let (a, conn) = online_agent(p, "node-1").await;
        let ua = add_user(p, "usera", "usera-password", false).await;
        let ub = add_user(p, "userb", "userb-password", false).await;
        let uc = add_user(p, "userc", "userc-password", false).await;
        create_server_answered(p, &conn, &a.id, "srv-a").await;
        create_server_answered(p, &conn, &a.id, "srv-b").await;
        for (s, u) in [("srv-a", &ua), ("srv-b", &ub)] {
            let (st, v) = p
                .admin(
                    "PATCH",
                    &format!("/api/servers/{s}"),
                    Some(json!({"ownerId": u})),
                )
                .await;
            assert_eq!(st, 200, "{v}");
        }
        // C: console on srv-a; srv-b without console.read.
        for (s, perms) in [
            ("srv-a", json!(["console.read"])),
            ("srv-b", json!(["power"])),
        ] {
            let (st, v) = p
                .admin(
                    "PUT",
                    &format!("/api/servers/{s}/users/{uc}"),
                    Some(json!({"permissions": perms})),
                )
                .await;
            assert_eq!(st, 200, "{v}");
        }
        let ca = login(p, "usera", "usera-password").await;
        let sa = Sub::open(p, &ca).await;
        let sb = Sub::open(p, &login(p, "userb", "userb-password").await).await;
        let sc = Sub::open(p, &login(p, "userc", "userc-password").await).await;
        // Wait until every socket is registered: each sees a marker it may see.
        eventually("subscribers registered", || async {
            conn.send_json(&status_event("srv-b", "sync-b")).await;
            conn.send_json(&status_event("srv-a", "sync-a")).await;
            futures_lite::future::or(
                async {
                    futures_lite::future::zip(
                        sb.next(),
                        futures_lite::future::zip(sa.next(), sc.next()),
                    )
                    .await;
                    Some(())
                },
                async {
                    async_io::Timer::after(Duration::from_millis(300)).await;
                    None
                },
            )
            .await
        })
        .await;
        conn.send_json(&status_event("srv-b", "ready-b")).await;
        conn.send_json(&status_event("srv-a", "ready-a")).await;
        sb.until("ready-b").await;
        sa.until("ready-a").await;
        sc.until("ready-a").await;

        // A's server logs a lot; B's logs a little; then a marker on B's server.
        for i in 0..200 {
            conn.send_json(&log_event("srv-a", &format!("secret of A {i}")))
                .await;
            if i % 50 == 0 {
                conn.send_json(&log_event("srv-b", &format!("line of B {i}")))
                    .await;
            }
        }
        conn.send_json(&status_event("srv-b", "end-b")).await;
        conn.send_json(&status_event("srv-a", "end-a")).await;
        let b_frames = sb.until("end-b").await;
        assert!(
            b_frames
                .iter()
                .all(|f| !f.contains("srv-a") && !f.contains("secret of A")),
            "{b_frames:?}"
        );
        assert_eq!(
            b_frames.iter().filter(|f| f.contains("line of B")).count(),
            4
        );
        let a_frames = sa.until("end-a").await;
        assert_eq!(
            a_frames
                .iter()
                .filter(|f| f.contains("secret of A"))
                .count(),
            200
        );
        assert!(a_frames.iter().all(|f| !f.contains("srv-b")));
        // C reads srv-a's console, sees srv-b's status but never its console.
        let c_frames = sc.until("end-a").await;
        assert_eq!(
            c_frames
                .iter()
                .filter(|f| f.contains("secret of A"))
                .count(),
            200
        );
        assert!(c_frames.iter().any(|f| f.contains("end-b")));
        assert!(
            c_frames.iter().all(|f| !f.contains("line of B")),
            "{c_frames:?}"
        );

        // C loses srv-a: from now on nothing of srv-a reaches C's live socket.
        let (st, _) = p
            .admin("DELETE", &format!("/api/servers/srv-a/users/{uc}"), None)
            .await;
        assert_eq!(st, 200);
        conn.send_json(&log_event("srv-a", "after removal")).await;
        conn.send_json(&status_event("srv-b", "end2-b")).await;
        let c_frames = sc.until("end2-b").await;
        assert!(
            c_frames.iter().all(|f| !f.contains("srv-a")),
            "{c_frames:?}"
        );

        // Logging out closes the socket opened with that session (1008).
        let (st, _, _) = p
            .raw(
                "POST",
                "/api/auth/logout",
                &[
                    ("Cookie", &format!("ctrl_session={ca}")),
                    ("Origin", &p.base_url()),
                ],
                Some(b"{}"),
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(sa.closed().await, Some(1008));

        // A cookie-authenticated socket from another origin is refused before the upgrade.
        let cb = login(p, "userb", "userb-password").await;
        let c = format!("ctrl_session={cb}");
        let refused = common::net::ws_connect(
            &p.events_url(""),
            p.tls.clone(),
            &[("Cookie", &c), ("Origin", "https://evil.example")],
        )
        .await;
        assert!(refused.is_err(), "cross-origin socket must be refused");
    });
}

#[test]
fn users_and_sessions_survive_kill_9_and_secrets_are_never_in_clear() {
    let mut h = Harness::with("users-durable", opts());
    let (cookie, key) = run(async {
        let p = &h.panel;
        add_user(p, "dora", "dora-very-secret-pw", false).await;
        let (st, v) = p
            .admin("POST", "/api/users", Some(json!({"name": "gen"})))
            .await;
        assert_eq!(st, 200);
        let generated = v["password"]
            .as_str()
            .expect("a generated password")
            .to_owned();
        let cookie = login(p, "dora", "dora-very-secret-pw").await;
        login(p, "gen", &generated).await;
        let (st, v) = call(
            p,
            &Cred::Cookie(cookie.clone()),
            "POST",
            "/api/auth/keys",
            Some(b"{}"),
        )
        .await;
        assert_eq!(st, 200);
        let (st, t) = p
            .admin("POST", "/api/agents/registration-tokens", Some(json!({})))
            .await;
        assert_eq!(st, 200);
        let reg = t["token"].as_str().unwrap().to_owned();
        (
            cookie,
            vec![
                v["key"]["token"].as_str().unwrap().to_owned(),
                generated,
                reg,
            ],
        )
    });
    h.panel.kill9();
    // Nothing secret in the database file or in the log, in clear.
    let db = std::fs::read(h.panel.data_dir.join("panel.redb")).unwrap();
    let log = h.panel.log.lock().join("\n");
    let secret_part = key[0].rsplit('_').next().unwrap().to_owned();
    for s in [
        cookie.as_str(),
        "dora-very-secret-pw",
        &key[0],
        &secret_part,
        &key[1],
        &key[2],
    ] {
        assert!(
            !db.windows(s.len()).any(|w| w == s.as_bytes()),
            "`{s}` in the store"
        );
        assert!(!log.contains(s), "`{s}` in the log");
    }
    assert!(
        db.windows(9).any(|w| w == b"$argon2id"),
        "the hash is there"
    );
    h.restart();
    let p = &h.panel;
    run(async {
        let (st, me) = call(
            p,
            &Cred::Cookie(cookie.clone()),
            "GET",
            "/api/auth/me",
            None,
        )
        .await;
        assert_eq!((st, &me["user"]["name"]), (200, &json!("dora")), "{me}");
        assert_eq!(
            call(
                p,
                &Cred::Bearer(key[0].clone()),
                "GET",
                "/api/auth/me",
                None
            )
            .await
            .0,
            200
        );
        login(p, "dora", "dora-very-secret-pw").await;
        // The registration token is single use, and survived the restart.
        let body = serde_json::to_vec(&ctrl_io::registration_request("node-r")).unwrap();
        let auth = format!("Bearer {}", key[2]);
        let (st, _, b) = p
            .raw(
                "POST",
                "/api/agents/register",
                &[("Authorization", &auth)],
                Some(&body),
            )
            .await;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
        let (st, _, _) = p
            .raw(
                "POST",
                "/api/agents/register",
                &[("Authorization", &auth)],
                Some(&body),
            )
            .await;
        assert_eq!(st, 401, "a used registration token");
        // A user's session cannot register an agent.
        let (st, _, _) = p
            .raw(
                "POST",
                "/api/agents/register",
                &[("Authorization", &format!("Bearer {}", key[0]))],
                Some(&body),
            )
            .await;
        assert_eq!(st, 403);
    });
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// Hundreds of concurrent wrong passwords: the panel keeps answering others, the hashes in
/// flight stay bounded (the rest are refused with 429), and memory stays bounded. Prints
/// the figures for BENCHMARKS.md (`--nocapture`).
#[test]
fn a_login_flood_leaves_the_panel_answering() {
    let h = Harness::with("users-flood", opts());
    let p = &h.panel;
    run(async {
        add_user(p, "victim", "victim-password", false).await;
        let pid = p.pid().as_raw();
        // The same number of concurrent connections asking for nothing: what connections
        // alone cost, to compare with.
        let idle = rss_kib(pid);
        let cheap: Vec<_> = (0..200)
            .map(|_| {
                let (base, tls) = (p.base_url(), p.tls.clone());
                smol::spawn(async move {
                    common::net::raw(&base, &tls, "GET", "/healthz", &[], None)
                        .await
                        .map_or(0, |r| r.0)
                })
            })
            .collect();
        for c in cheap {
            assert_eq!(c.await, 200);
        }
        let before = rss_kib(pid);
        eprintln!("200 concurrent /healthz connections: RSS {idle} KiB -> {before} KiB");
        let started = Instant::now();
        let body = json!({"username": "victim", "password": "wrong-guess"}).to_string();
        let mut counts = std::collections::BTreeMap::new();
        let mut worst_health = Duration::ZERO;
        let mut peak = before;
        for _round in 0..2 {
            let flood: Vec<_> = (0..200)
                .map(|_| {
                    let (b, base, tls) = (body.clone(), p.base_url(), p.tls.clone());
                    smol::spawn(async move {
                        common::net::raw(
                            &base,
                            &tls,
                            "POST",
                            "/api/auth/login",
                            &[],
                            Some(b.as_bytes()),
                        )
                        .await
                        .map_or(0, |r| r.0)
                    })
                })
                .collect();
            // While it runs, others are served.
            for _ in 0..5 {
                let t = Instant::now();
                assert_eq!(p.admin("GET", "/api/servers", None).await.0, 200);
                assert_eq!(call(p, &Cred::None, "GET", "/healthz", None).await.0, 200);
                worst_health = worst_health.max(t.elapsed());
                peak = peak.max(rss_kib(pid));
            }
            for f in flood {
                *counts.entry(f.await).or_insert(0u32) += 1;
            }
            peak = peak.max(rss_kib(pid));
        }
        let after = rss_kib(pid);
        eprintln!(
            "login flood: 400 wrong passwords in {:?}; answers {counts:?}; RSS {before} KiB before, \
             peak {peak} KiB, {after} KiB after; worst /api/servers+/healthz during the flood {worst_health:?}",
            started.elapsed()
        );
        assert_eq!(
            counts.keys().copied().collect::<Vec<_>>(),
            vec![401, 429],
            "{counts:?}"
        );
        // At most 2 hashes run and 32 wait: 34 × 19 MiB is the ceiling of hash memory.
        assert!(
            peak - before < 34 * 19 * 1024 + 64 * 1024,
            "RSS grew {} KiB",
            peak - before
        );
        // The right password still works once the per-account budget refills; other accounts
        // from elsewhere are unaffected: the admin API answered throughout.
        assert_eq!(p.admin("GET", "/api/users", None).await.0, 200);
    });
}
