//! The web UI as HTTP sees it, against the real panel binary: embedded assets with content
//! types, strong ETags and 304s, the security headers, the index.html shell for client-side
//! routes, and API paths that keep their JSON 404s.

mod common;

use common::{Harness, Panel, run};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.1.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn assert_security_headers(a: &Answer, what: &str) {
    assert_eq!(header(a, "content-security-policy"), Some(CSP), "{what}");
    assert_eq!(
        header(a, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(header(a, "referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(
        header(a, "strict-transport-security"),
        Some("max-age=31536000"),
        "{what}"
    );
}

fn json_error(a: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(a.0, status, "{what}: {}", String::from_utf8_lossy(&a.2));
    assert_eq!(
        header(a, "content-type"),
        Some("application/json"),
        "{what}"
    );
    let v: serde_json::Value = serde_json::from_slice(&a.2).expect("a JSON body");
    assert_eq!(v["success"], false, "{what}");
    assert_eq!(v["error"]["code"], code, "{what}");
}

/// `HEAD path`: the raw response up to the connection's close (the shared client would wait
/// for the body `content-length` announces).
async fn head(p: &Panel, path: &str) -> String {
    let target =
        common::net::Url::parse_as(&p.base_url(), common::net::Scheme::Https).expect("url");
    let mut s = common::net::connect_tls(&target, &p.tls)
        .await
        .expect("connect");
    let req = format!(
        "HEAD {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        target.authority()
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn client_routes_get_the_shell_with_security_headers() {
    let h = Harness::start("ui-shell");
    run(async {
        for path in [
            "/",
            "/login",
            "/servers/srv-1",
            "/servers/srv-1/files?path=/server/world",
            "/nodes/abc",
            "/users",
            "/eggs",
            "/anything/else",
        ] {
            let a = h.panel.raw("GET", path, &[], None).await;
            assert_eq!(a.0, 200, "{path}");
            assert_eq!(
                header(&a, "content-type"),
                Some("text/html; charset=utf-8"),
                "{path}"
            );
            let body = String::from_utf8_lossy(&a.2);
            assert!(body.starts_with("<!doctype html>"), "{path}: {body}");
            assert!(
                body.contains(r#"<script type="module" src="/assets/app.js"></script>"#),
                "{path}"
            );
            assert_security_headers(&a, path);
            assert_eq!(header(&a, "cache-control"), Some("no-cache"), "{path}");
        }
        // HEAD: same headers and length, no body.
        let get = h.panel.raw("GET", "/nodes", &[], None).await;
        let answer = head(&h.panel, "/nodes").await;
        let (status_line, rest) = answer.split_once("\r\n").expect("a status line");
        assert_eq!(status_line, "HTTP/1.1 200 OK");
        let (fields, body) = rest.split_once("\r\n\r\n").expect("a head");
        assert!(body.is_empty(), "HEAD sent a body");
        let fields = format!("{}\r\n", fields.to_ascii_lowercase());
        assert!(fields.contains(&format!("content-length: {}\r\n", get.2.len())));
        let etag = header(&get, "etag").expect("etag").to_ascii_lowercase();
        assert!(fields.contains(&format!("etag: {etag}\r\n")), "{fields}");
    });
}

#[test]
fn assets_have_types_strong_etags_and_answer_304_when_unchanged() {
    let h = Harness::start("ui-assets");
    run(async {
        for (path, ty) in [
            ("/assets/app.js", "text/javascript; charset=utf-8"),
            ("/assets/pages/server.js", "text/javascript; charset=utf-8"),
            ("/assets/app.css", "text/css; charset=utf-8"),
            ("/assets/icon.svg", "image/svg+xml"),
        ] {
            let a = h.panel.raw("GET", path, &[], None).await;
            assert_eq!(a.0, 200, "{path}");
            assert_eq!(header(&a, "content-type"), Some(ty), "{path}");
            assert!(!a.2.is_empty(), "{path}");
            assert_security_headers(&a, path);
            assert_eq!(header(&a, "cache-control"), Some("no-cache"), "{path}");
            let etag = header(&a, "etag").expect("an ETag").to_owned();
            assert!(
                etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
                "a strong ETag: {etag}"
            );

            for inm in [
                etag.clone(),
                format!("W/{etag}"),
                format!("\"other\", {etag}"),
                "*".into(),
            ] {
                let again = h
                    .panel
                    .raw("GET", path, &[("If-None-Match", &inm)], None)
                    .await;
                assert_eq!(again.0, 304, "{path} with If-None-Match: {inm}");
                assert!(again.2.is_empty());
                assert_eq!(header(&again, "etag"), Some(etag.as_str()));
                assert_eq!(header(&again, "cache-control"), Some("no-cache"));
                assert_security_headers(&again, path);
            }
            let stale = h
                .panel
                .raw("GET", path, &[("If-None-Match", "\"stale\"")], None)
                .await;
            assert_eq!(stale.0, 200, "{path} with a stale tag");
            assert_eq!(stale.2, a.2);
        }
        let js = h.panel.raw("GET", "/assets/app.js", &[], None).await;
        let css = h.panel.raw("GET", "/assets/app.css", &[], None).await;
        assert_ne!(header(&js, "etag"), header(&css, "etag"));
    });
}

#[test]
fn unknown_assets_and_api_paths_are_json_404s_and_other_methods_405() {
    let h = Harness::start("ui-404");
    run(async {
        for path in [
            "/assets/nope.js",
            "/assets/",
            "/assets/index.html",
            "/assets/../app.js",
            "/assets/pages",
        ] {
            let a = h.panel.raw("GET", path, &[], None).await;
            json_error(&a, 404, "NOT_FOUND", path);
        }
        for path in [
            "/api",
            "/api/nope",
            "/api/servers/x/nope",
            "/ws",
            "/ws/nope",
            "/healthz/x",
            "/metrics/x",
        ] {
            let a = h.panel.raw("GET", path, &[], None).await;
            json_error(&a, 404, "NOT_FOUND", path);
            assert_eq!(header(&a, "content-security-policy"), None, "{path}");
        }
        // Real API routes are untouched by the fallback.
        let a = h.panel.raw("GET", "/healthz", &[], None).await;
        assert_eq!(a.0, 200);
        assert_eq!(header(&a, "content-type"), Some("application/json"));
        let a = h.panel.raw("GET", "/api/servers", &[], None).await;
        json_error(&a, 401, "AUTH_FAILED", "/api/servers without a token");
        let a = h.panel.raw("DELETE", "/api/servers", &[], None).await;
        json_error(&a, 405, "METHOD_NOT_ALLOWED", "DELETE /api/servers");
        // The shell is GET/HEAD only.
        let a = h.panel.raw("POST", "/login", &[], Some(b"{}")).await;
        json_error(&a, 405, "METHOD_NOT_ALLOWED", "POST /login");
        assert_eq!(header(&a, "allow"), Some("GET, HEAD"));
    });
}
