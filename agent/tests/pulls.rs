//! Image pulls for real, from a registry served by this test (the Registry HTTP API v2,
//! just enough of it for the Engine to pull one single-layer image): a missing image is
//! pulled with `image_pull_progress` events, and a registry's refusal comes back as
//! `DOCKER_ERROR` with the registry's own words. The registry listens on 127.0.0.1, which
//! the node policy has to allow (`allowedRegistries`).

mod common;

use common::harness::*;
use proto::EventKind;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;

/// `sha256:<hex>` of `bytes` (`sha256sum`: no digest crate in the agent's tests).
fn digest(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    format!("sha256:{}", &String::from_utf8_lossy(&out.stdout)[..64])
}

/// An uncompressed layer with one file of `size` bytes.
fn layer(size: usize) -> Vec<u8> {
    let dir = e2e::TempDir::new("pull-layer");
    let data: Vec<u8> = (0..size).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.path().join("payload.bin"), data).unwrap();
    let out = Command::new("tar")
        .args(["--owner=0", "--group=0", "-C"])
        .arg(dir.path())
        .args(["-cf", "-", "payload.bin"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The blobs and manifest of one image, by digest.
struct Image {
    manifest: Vec<u8>,
    manifest_digest: String,
    blobs: Vec<(String, Vec<u8>)>,
}

fn image() -> Image {
    let layer = layer(3 << 20);
    let layer_digest = digest(&layer);
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux",
        "config": {"Labels": {"ctrl.test": "1"}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    }))
    .unwrap();
    let config_digest = digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "size": layer.len(), "digest": layer_digest}]
    }))
    .unwrap();
    Image {
        manifest_digest: digest(&manifest),
        manifest,
        blobs: vec![(config_digest, config), (layer_digest, layer)],
    }
}

/// Serves `repo` (its `1` tag) until the process ends; any other repository is unknown.
fn registry(repo: &'static str, image: Image) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let image = Arc::new(image);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let image = image.clone();
            std::thread::spawn(move || serve(conn, repo, &image));
        }
    });
    port
}

fn serve(conn: std::net::TcpStream, repo: &str, image: &Image) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        let manifests = format!("/v2/{repo}/manifests/");
        let blobs = format!("/v2/{repo}/blobs/");
        let (status, kind, body, extra): (&str, &str, Vec<u8>, String) = if path == "/v2/" {
            ("200 OK", "application/json", b"{}".to_vec(), String::new())
        } else if let Some(reference) = path.strip_prefix(&manifests) {
            if reference == "1" || reference == image.manifest_digest {
                (
                    "200 OK",
                    "application/vnd.docker.distribution.manifest.v2+json",
                    image.manifest.clone(),
                    format!("Docker-Content-Digest: {}\r\n", image.manifest_digest),
                )
            } else {
                unknown()
            }
        } else if let Some(d) = path.strip_prefix(&blobs) {
            match image.blobs.iter().find(|(digest, _)| digest == d) {
                Some((digest, bytes)) => (
                    "200 OK",
                    "application/octet-stream",
                    bytes.clone(),
                    format!("Docker-Content-Digest: {digest}\r\n"),
                ),
                None => unknown(),
            }
        } else {
            unknown()
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
             Docker-Distribution-Api-Version: registry/2.0\r\n{extra}\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method != "HEAD" && out.write_all(&body).is_err() {
            return;
        }
    }
}

fn unknown() -> (&'static str, &'static str, Vec<u8>, String) {
    let body =
        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
    (
        "404 Not Found",
        "application/json",
        body.to_vec(),
        String::new(),
    )
}

/// Removes the image this test pulled.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.0])
            .output();
    }
}

#[test]
fn a_missing_image_is_pulled_with_progress_and_refusals_carry_the_registrys_words() {
    let port = registry("ctrl-test/pullme", image());
    let registry_host = format!("127.0.0.1:{port}");
    let Some(mut h) = harness("pull", |c| {
        c.policy.allowed_registries = vec![registry_host.clone()]
    }) else {
        return;
    };
    let reference = format!("{registry_host}/ctrl-test/pullme:1");
    let _image = ImageGuard(reference.clone());
    let mut e = egg(e2e::free_port(), STARTUP);
    e["image"] = json!(reference);
    h.create("pull-1", e);
    h.drain();
    let progress: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ImagePullProgress(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty(), "no progress events");
    assert!(
        progress
            .iter()
            .all(|p| p.server_id == "pull-1" && p.image == reference)
    );
    let last = progress.last().unwrap();
    assert!(last.done, "{last:?}");
    assert_eq!((last.layers, last.layers_done), (1, 1), "{last:?}");
    assert!(
        last.total >= 3 << 20 && last.current == last.total,
        "{last:?}"
    );
    assert!(progress[..progress.len() - 1].iter().all(|p| !p.done));
    let inspect = Command::new("docker")
        .args(["image", "inspect", &reference])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "the image was pulled");

    // An image the registry does not have: its words, not a body.
    let missing = format!("{registry_host}/ctrl-test/nothing:1");
    let mut e = egg(e2e::free_port(), STARTUP);
    e["image"] = json!(missing);
    let (code, msg) = h.create_err("pull-2", e);
    assert_eq!(code, "DOCKER_ERROR", "{msg}");
    assert!(msg.contains(&missing), "{msg}");
    assert!(
        msg.contains("the registry said:") && msg.contains("manifest unknown"),
        "{msg}"
    );
    h.drain();
    let end = h
        .events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::ImagePullProgress(p) if p.server_id == "pull-2" => Some(p.clone()),
            _ => None,
        })
        .expect("a last progress event for the failed pull");
    assert!(end.done && end.status == "Pull failed", "{end:?}");
}
