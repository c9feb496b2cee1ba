//! The web UI: the plain HTML, CSS and ES-module files of `panel/ui/`, embedded in the binary
//! and served as they are (no build step, no CDN, no third-party code).
//!
//! `GET /assets/<file>` serves one file with a strong `ETag` and `Cache-Control: no-cache`:
//! module URLs carry no content hash (the modules import each other by plain relative paths),
//! so the browser revalidates each file and gets a body-less `304` while the binary is the
//! same. Every other `GET`/`HEAD` that no route knows answers the `index.html` shell, so
//! client-side routes (`/servers/x`, `/nodes`) survive a reload — except `/api/…`, `/ws/…`,
//! `/healthz` and `/metrics`, whose unknown paths keep the API's JSON `404`. Every UI answer
//! carries the strict security headers (a CSP that allows only this origin, no inline code).
//!
//! A browser that accepts gzip gets each file gzipped (compressed once, when the first UI
//! request comes; about 147 KiB become about 55 KiB on a first visit, see BENCHMARKS.md),
//! with its own `ETag` and `Vary: Accept-Encoding`; later visits revalidate with `304`s.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use proto::ErrorCode;

use crate::http::{Handler, Method, Request, Response, handler};

/// One embedded file, by its path below `panel/ui/`.
pub struct Asset {
    pub path: &'static str,
    pub body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        }),*]
    };
}

/// Every file of `panel/ui/` (a unit test keeps this list and the directory equal).
pub const FILES: &[Asset] = assets![
    "index.html",
    "icon.svg",
    "app.css",
    "app.js",
    "api.js",
    "events.js",
    "console.js",
    "chart.js",
    "dialog.js",
    "dom.js",
    "format.js",
    "session.js",
    "pages/login.js",
    "pages/dashboard.js",
    "pages/server.js",
    "pages/files.js",
    "pages/access.js",
    "pages/nodes.js",
    "pages/node.js",
    "pages/users.js",
    "pages/eggs.js",
    "pages/create-server.js",
    "pages/keys.js",
    "pages/backups.js",
    "pages/schedule.js",
    "pages/transfer.js",
    "pages/failover.js",
    "pages/not-found.js",
];

/// The shell answered for every client-side route.
const SHELL: &str = "index.html";

/// The UI's Content-Security-Policy: this origin only, no inline scripts or styles.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

/// Headers on every UI response (assets, shell, 304s).
const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("strict-transport-security", "max-age=31536000"),
];

/// A file ready to serve: its bytes, type and strong validator, and its gzipped bytes
/// with their own validator when that saves at least [`MIN_SAVING`].
struct Entry {
    body: &'static [u8],
    content_type: &'static str,
    etag: String,
    gzip: Option<(Vec<u8>, String)>,
}

/// Bytes gzip must save before a file gets a compressed variant (tiny files do not).
const MIN_SAVING: usize = 256;

/// `body` gzipped at the best level, if that saves at least [`MIN_SAVING`] bytes.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(body).ok()?;
    let out = enc.finish().ok()?;
    (out.len().saturating_add(MIN_SAVING) <= body.len()).then_some(out)
}

/// Whether an `Accept-Encoding` value allows gzip: `gzip` (or `x-gzip`), else `*`, with a
/// weight that is not zero (RFC 9110 §12.5.3).
fn accepts_gzip(header: &str) -> bool {
    let (mut gz, mut star) = (None, None);
    for item in header.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            let p = p.trim();
            let q = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="));
            q.is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|v| v <= 0.0))
        });
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gz = Some(!refused);
        } else if coding == "*" {
            star = Some(!refused);
        }
    }
    gz.or(star).unwrap_or(false)
}

static TABLE: LazyLock<HashMap<&'static str, Entry>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|a| {
            let digest = ring::digest::digest(&ring::digest::SHA256, a.body);
            let hex: String = digest.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let entry = Entry {
                body: a.body,
                content_type: content_type(a.path),
                etag: format!("\"{hex}\""),
                gzip: gzip(a.body).map(|z| (z, format!("\"{hex}-gz\""))),
            };
            (a.path, entry)
        })
        .collect()
});

/// The media type of a file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Paths that belong to the API, agents and monitoring: never answered with the shell.
fn is_reserved(path: &str) -> bool {
    ["/api", "/ws", "/healthz", "/metrics"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// Whether `If-None-Match` (a list of entity tags, or `*`) matches `etag`. The comparison
/// is weak, as RFC 9110 requires for this header: `W/"x"` matches `"x"`.
fn none_match_hits(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The router's fallback: assets, the shell, or the API's JSON 404.
pub fn fallback() -> Handler {
    handler(|req: Request| async move { respond(&req).into() })
}

fn respond(req: &Request) -> Response {
    if is_reserved(&req.path) {
        return Response::error(ErrorCode::NotFound, format!("no route for {}", req.path));
    }
    if req.method != Method::Get && req.method != Method::Head {
        return Response::error(
            ErrorCode::MethodNotAllowed,
            format!(
                "{} is not allowed on {} (allowed: GET, HEAD)",
                req.method, req.path
            ),
        )
        .with_header("allow", "GET, HEAD");
    }
    let name = match req.path.strip_prefix("/assets/") {
        Some(SHELL) => None,
        Some(name) => Some(name),
        None => Some(SHELL),
    };
    match name.and_then(|n| TABLE.get(n)) {
        Some(entry) => serve(req, entry),
        None => Response::error(ErrorCode::NotFound, format!("no asset {}", req.path)),
    }
}

fn serve(req: &Request, entry: &Entry) -> Response {
    let gz = entry
        .gzip
        .as_ref()
        .filter(|_| req.header("accept-encoding").is_some_and(accepts_gzip));
    let (body, etag) = match gz {
        Some((z, tag)) => (z.as_slice(), tag),
        None => (entry.body, &entry.etag),
    };
    let fresh = req
        .header("if-none-match")
        .is_some_and(|h| none_match_hits(h, etag));
    let mut resp = if fresh {
        Response {
            status: 304,
            headers: Vec::new(),
            body: Vec::new(),
        }
    } else {
        let mut r = Response::text(200, entry.content_type, body);
        if gz.is_some() {
            r.headers.push(("content-encoding".into(), "gzip".into()));
        }
        r
    };
    resp.headers.push(("etag".into(), etag.clone()));
    resp.headers
        .push(("cache-control".into(), "no-cache".into()));
    resp.headers.push(("vary".into(), "accept-encoding".into()));
    for (name, value) in SECURITY_HEADERS {
        resp.headers.push(((*name).into(), (*value).into()));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Everything the UI may weigh before compression (issue 11).
    const BUDGET: usize = 150 * 1024;

    fn req(method: Method, path: &str, inm: Option<&str>) -> Request {
        Request {
            method,
            path: path.into(),
            query: String::new(),
            headers: inm
                .map(|v| vec![("if-none-match".to_string(), v.to_string())])
                .unwrap_or_default(),
            body: Vec::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            params: Vec::new(),
            stream: None,
        }
    }

    fn files_on_disk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                files_on_disk(&e.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }

    #[test]
    fn every_file_of_the_ui_directory_is_embedded_and_nothing_else() {
        let mut on_disk = Vec::new();
        files_on_disk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("ui"),
            "",
            &mut on_disk,
        );
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        for a in FILES {
            assert_ne!(
                content_type(a.path),
                "application/octet-stream",
                "{}",
                a.path
            );
        }
    }

    #[test]
    fn all_assets_fit_the_150_kib_budget() {
        let total: usize = FILES.iter().map(|a| a.body.len()).sum();
        eprintln!("UI assets: {} files, {total} bytes", FILES.len());
        assert!(
            total <= BUDGET,
            "UI assets weigh {total} bytes, over the {BUDGET}-byte budget"
        );
    }

    /// The CSP forbids inline code; these patterns would also put hostile text into the DOM
    /// as markup. `el.style.x = …` (CSSOM) stays allowed by the CSP and is not matched.
    #[test]
    fn no_inline_code_and_no_markup_sinks() {
        for a in FILES {
            let text = std::str::from_utf8(a.body).unwrap();
            for bad in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "setAttribute('style'",
                "setAttribute(\"style\"",
                "style=",
                "<style",
                "javascript:",
            ] {
                assert!(!text.contains(bad), "{} contains {bad:?}", a.path);
            }
        }
        let shell = std::str::from_utf8(TABLE[SHELL].body).unwrap();
        for (i, _) in shell.match_indices("<script") {
            let tag = &shell[i..i + shell[i..].find('>').unwrap()];
            assert!(tag.contains("src="), "inline script in index.html: {tag}");
        }
        // No inline event handlers (` onclick=`…) in the shell.
        for (i, _) in shell.match_indices(" on") {
            let word: String = shell[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            assert!(
                !shell[i + 1 + word.len()..].starts_with('='),
                "inline handler {word} in index.html"
            );
        }
    }

    #[test]
    fn reserved_paths_are_the_apis() {
        for p in [
            "/api",
            "/api/",
            "/api/nope",
            "/ws/x",
            "/healthz",
            "/metrics",
            "/metrics/x",
        ] {
            assert!(is_reserved(p), "{p}");
        }
        for p in [
            "/",
            "/apiary",
            "/servers/api",
            "/login",
            "/wsx",
            "/healthzz",
        ] {
            assert!(!is_reserved(p), "{p}");
        }
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let tag = "\"abc\"";
        assert!(none_match_hits("\"abc\"", tag));
        assert!(none_match_hits("W/\"abc\"", tag));
        assert!(none_match_hits("\"x\", \"abc\"", tag));
        assert!(none_match_hits("*", tag));
        assert!(!none_match_hits("\"abcd\"", tag));
        assert!(!none_match_hits("abc", tag));
        assert!(!none_match_hits("", tag));
    }

    #[test]
    fn accept_encoding_weights() {
        for yes in [
            "gzip",
            "gzip, deflate, br, zstd",
            "br;q=1.0, GZIP;q=0.5",
            "*",
            "x-gzip",
        ] {
            assert!(accepts_gzip(yes), "{yes}");
        }
        for no in [
            "",
            "br",
            "identity",
            "gzip;q=0",
            "gzip; q=0.000, *",
            "*;q=0",
            "gzipx",
        ] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }

    #[test]
    fn gzip_variants_have_their_own_etag_and_the_same_bytes() {
        use std::io::Read;
        let with = |ae: Option<&str>, inm: Option<&str>| {
            let mut r = req(Method::Get, "/assets/app.js", inm);
            if let Some(v) = ae {
                r.headers.push(("accept-encoding".into(), v.into()));
            }
            respond(&r)
        };
        let plain = with(None, None);
        let zipped = with(Some("gzip, deflate, br"), None);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(zipped.header("content-encoding"), Some("gzip"));
        for r in [&plain, &zipped] {
            assert_eq!(r.header("vary"), Some("accept-encoding"));
            assert_eq!(r.header("content-security-policy"), Some(CSP));
        }
        let (tag, ztag) = (
            plain.header("etag").unwrap(),
            zipped.header("etag").unwrap(),
        );
        assert_ne!(tag, ztag);
        assert!(zipped.body.len() < plain.body.len() / 2);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(zipped.body.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain.body);
        // Each variant revalidates against its own tag only.
        assert_eq!(with(Some("gzip"), Some(ztag)).status, 304);
        assert_eq!(with(Some("gzip"), Some(tag)).status, 200);
        assert_eq!(with(None, Some(ztag)).status, 200);
        assert_eq!(with(None, Some(tag)).status, 304);
        // The tiny icon is not worth a variant.
        let icon = respond(&{
            let mut r = req(Method::Get, "/assets/icon.svg", None);
            r.headers.push(("accept-encoding".into(), "gzip".into()));
            r
        });
        assert_eq!(icon.header("content-encoding"), None);
    }

    #[test]
    fn shell_assets_and_errors() {
        let shell = respond(&req(Method::Get, "/servers/x", None));
        assert_eq!(shell.status, 200);
        assert_eq!(
            shell.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(shell.header("content-security-policy"), Some(CSP));
        let js = respond(&req(Method::Get, "/assets/pages/login.js", None));
        assert_eq!(js.status, 200);
        assert_eq!(
            js.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        let etag = js.header("etag").unwrap().to_string();
        let again = respond(&req(Method::Get, "/assets/pages/login.js", Some(&etag)));
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        for p in [
            "/assets/nope.js",
            "/assets/index.html",
            "/assets/../app.js",
            "/assets/",
        ] {
            assert_eq!(respond(&req(Method::Get, p, None)).status, 404, "{p}");
        }
        let post = respond(&req(Method::Post, "/login", None));
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        let api = respond(&req(Method::Get, "/api/nope", None));
        assert_eq!(api.status, 404);
        assert_eq!(api.header("content-type"), Some("application/json"));
    }
}
