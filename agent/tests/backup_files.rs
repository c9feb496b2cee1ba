//! Backups and restores on a volume, without Docker: a round trip restores byte-identical
//! files (links, modes, nesting), and hostile archives crafted here — `..`, absolute paths,
//! links out, hard links, devices, FIFOs, the agent's own directories, over the disk limit,
//! truncated, abandoned — are refused without touching anything outside the volume and
//! without changing the volume.

use agent::files::{FileError, RESTORE_DIR, Volume};
use e2e::TempDir;
use flate2::Compression;
use flate2::write::GzEncoder;
use proto::ErrorCode;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

struct Fixture {
    _tmp: TempDir,
    root: PathBuf,
    outside: PathBuf,
    volume: Volume,
}

fn fixture(tag: &str) -> Fixture {
    let tmp = TempDir::new(tag);
    let root = tmp.path().join("volume");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"do not touch").unwrap();
    let volume = Volume::open(&root).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        outside,
        volume,
    }
}

impl Fixture {
    fn secret_intact(&self) {
        assert_eq!(
            std::fs::read(self.outside.join("secret")).unwrap(),
            b"do not touch"
        );
    }
}

/// Every entry under `dir`: path → ("f", content) | ("l", target) | ("d", "").
fn snapshot(dir: &Path) -> BTreeMap<String, (char, Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Length and a position-weighted checksum: enough to tell the contents apart.
fn ring_free_digest(bytes: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}:{h:x}", bytes.len()).into_bytes()
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (char, Vec<u8>, u32)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
        if rel == RESTORE_DIR {
            continue; // the agent's (empty) staging parent
        }
        let md = std::fs::symlink_metadata(&p).unwrap();
        let mode = md.permissions().mode() & 0o777;
        if md.file_type().is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            out.insert(rel, ('l', t.to_string_lossy().as_bytes().to_vec(), 0));
        } else if md.is_dir() {
            out.insert(rel, ('d', Vec::new(), mode));
            walk(base, &p, out);
        } else {
            // Content by digest: a failure message stays readable.
            let bytes = std::fs::read(&p).unwrap();
            let digest = ring_free_digest(&bytes);
            out.insert(rel, ('f', digest, mode));
        }
    }
}

fn populate(root: &Path) {
    std::fs::create_dir_all(root.join("world/region")).unwrap();
    std::fs::write(root.join("server.properties"), b"motd=hello\n").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("world/region/r.0.0.mca"), &big).unwrap();
    std::fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    symlink("world/region", root.join("latest")).unwrap();
    symlink("../server.properties", root.join("world/props")).unwrap();
    let long = "n".repeat(120);
    std::fs::create_dir_all(root.join(format!("deep/{long}/{long}"))).unwrap();
    std::fs::write(root.join(format!("deep/{long}/{long}/f")), b"long names").unwrap();
    // The agent's own directories are never archived.
    std::fs::create_dir_all(root.join(".ctrl-uploads")).unwrap();
    std::fs::write(root.join(".ctrl-uploads/partial"), b"temp").unwrap();
}

fn archive(volume: &Volume) -> Vec<u8> {
    let (bytes, packed) = volume.archive(Vec::new()).unwrap();
    assert!(packed.entries >= 8, "{packed:?}");
    bytes
}

#[test]
fn a_backup_restores_byte_identical_files_and_replaces_what_was_there() {
    let a = fixture("bk-src");
    populate(&a.root);
    let bytes = archive(&a.volume);
    let mut expected = snapshot(&a.root);
    expected.retain(|k, _| !k.starts_with(".ctrl-uploads"));

    let b = fixture("bk-dst");
    std::fs::write(b.root.join("stale.txt"), b"old").unwrap();
    std::fs::create_dir_all(b.root.join("world")).unwrap();
    std::fs::write(b.root.join("world/old.dat"), b"old").unwrap();
    let done = b.volume.restore(&bytes[..], "r1", None).unwrap();
    assert!(done.entries >= 8 && done.bytes > 300_000, "{done:?}");
    let got = snapshot(&b.root);
    assert_eq!(got, expected);
    let staging: Vec<_> = std::fs::read_dir(b.root.join(RESTORE_DIR))
        .unwrap()
        .collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
    b.secret_intact();
}

/// A tar.gz made of raw headers, so nothing in the builder sanitises the hostile parts.
struct Crafted {
    tar: tar::Builder<Vec<u8>>,
}

impl Crafted {
    fn new() -> Crafted {
        Crafted {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    fn raw(mut self, kind: tar::EntryType, path: &[u8], link: &[u8], data: &[u8]) -> Crafted {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.tar.append(&h, data).unwrap();
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Crafted {
        self.raw(tar::EntryType::Regular, path.as_bytes(), b"", data)
    }

    fn gz(self) -> Vec<u8> {
        let tar = self.tar.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }
}

fn refused(f: &Fixture, archive: &[u8], code: ErrorCode, why: &str) {
    std::fs::write(f.root.join("keep.txt"), b"previous").unwrap();
    let before = snapshot(&f.root);
    let outside_before = snapshot(&f.outside);
    let err = f
        .volume
        .restore(archive, "hostile", Some(1 << 20))
        .expect_err(why);
    assert_eq!(err.code(), code, "{why}: {err}");
    let after = snapshot(&f.root);
    let staging: Vec<_> = std::fs::read_dir(f.root.join(RESTORE_DIR))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        staging.is_empty(),
        "{why}: staging left behind: {staging:?}"
    );
    assert_eq!(after, before, "{why}: the volume changed");
    assert_eq!(
        snapshot(&f.outside),
        outside_before,
        "{why}: outside changed"
    );
    f.secret_intact();
}

#[test]
fn hostile_archives_are_refused_and_change_nothing() {
    use tar::EntryType as K;
    let f = fixture("bk-hostile");
    std::fs::create_dir_all(f.root.join("world")).unwrap();
    std::fs::write(f.root.join("world/level.dat"), b"level").unwrap();
    let bad = ErrorCode::InvalidArchive;
    let ok_first = || Crafted::new().file("a.txt", b"fine");
    let cases: Vec<(Vec<u8>, ErrorCode, &str)> = vec![
        (
            ok_first().file("../outside/secret", b"pwned").gz(),
            bad,
            "dot-dot",
        ),
        (
            ok_first().file("world/../../x", b"pwned").gz(),
            bad,
            "inner dot-dot",
        ),
        (ok_first().file("/tmp/pwned", b"x").gz(), bad, "absolute"),
        (
            ok_first()
                .raw(K::Symlink, b"out", b"../outside", b"")
                .file("out/secret", b"x")
                .gz(),
            bad,
            "link out, then through it",
        ),
        (
            ok_first().raw(K::Symlink, b"abs", b"/etc", b"").gz(),
            bad,
            "absolute link",
        ),
        (
            ok_first().raw(K::Symlink, b"w/l", b"d/../..", b"").gz(),
            bad,
            "link with inner dot-dot",
        ),
        (
            ok_first()
                .raw(K::Symlink, b"d", b"world", b"")
                .file("d/evil", b"x")
                .gz(),
            bad,
            "write through an archived link",
        ),
        (
            ok_first().raw(K::Link, b"h", b"a.txt", b"").gz(),
            bad,
            "hard link",
        ),
        (
            ok_first().raw(K::Char, b"null", b"", b"").gz(),
            bad,
            "char device",
        ),
        (
            ok_first().raw(K::Block, b"sda", b"", b"").gz(),
            bad,
            "block device",
        ),
        (ok_first().raw(K::Fifo, b"pipe", b"", b"").gz(), bad, "FIFO"),
        (
            ok_first().file(".ctrl-restore/x", b"x").gz(),
            bad,
            "agent's staging",
        ),
        (
            ok_first().file("a.txt", b"twice").gz(),
            bad,
            "duplicate entry",
        ),
        (
            ok_first().file("big", &vec![0u8; (1 << 20) + 1]).gz(),
            ErrorCode::InsufficientResources,
            "over the disk limit",
        ),
        (b"not a gzip at all".to_vec(), bad, "garbage"),
    ];
    for (archive, code, why) in cases {
        refused(&f, &archive, code, why);
    }
    // Truncated: the first half of a valid archive.
    let good = ok_first().file("b.txt", &vec![7u8; 200_000]).gz();
    refused(&f, &good[..good.len() / 2], bad, "truncated");
}

#[test]
fn an_abandoned_input_swaps_nothing_in() {
    let f = fixture("bk-abandon");
    std::fs::write(f.root.join("keep.txt"), b"previous").unwrap();
    let good = Crafted::new().file("new.txt", b"new").gz();
    struct Failing<'a>(&'a [u8]);
    impl std::io::Read for Failing<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "gone",
                ));
            }
            let n = out.len().min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let err: FileError = f.volume.restore(Failing(&good), "r", None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArchive, "{err}");
    assert_eq!(std::fs::read(f.root.join("keep.txt")).unwrap(), b"previous");
    assert!(!f.root.join("new.txt").exists());
}
