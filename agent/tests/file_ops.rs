//! The file manager's operations on a volume, without Docker: chunked reads, chunked uploads
//! (order, disk limit, cancel, sweep, tampering), rename, delete and mkdir — each with the
//! server's hostile moves (links planted at either end, in the parents, in the staging
//! directory) and both resolvers (openat2 and the component walk).

use agent::files::{ChunkWrite, FileError, MAX_UPLOADS, Resolver, STAGING_DIR, Volume};
use e2e::TempDir;
use proto::ErrorCode;
use std::os::unix::fs::symlink;
use std::time::Duration;

const RESOLVERS: [Resolver; 2] = [Resolver::Openat2, Resolver::Walk];

/// A volume directory, a sibling "outside" directory holding a secret, and the volume.
struct Fixture {
    _tmp: TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
    volume: Volume,
}

fn fixture(tag: &str, resolver: Resolver) -> Fixture {
    let tmp = TempDir::new(tag);
    let root = tmp.path().join("volume");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"do not touch").unwrap();
    let volume = Volume::open_with(&root, resolver).unwrap();
    assert_eq!(volume.resolver(), resolver);
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

    fn chunk(
        &self,
        path: &str,
        id: &str,
        offset: u64,
        bytes: &[u8],
        is_final: bool,
    ) -> Result<u64, FileError> {
        self.volume.write_chunk(ChunkWrite {
            path,
            upload_id: id,
            offset,
            bytes,
            is_final,
            disk_limit: Some(1 << 20),
        })
    }

    fn staging_entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.root.join(STAGING_DIR)) {
            Ok(d) => d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn code(r: Result<impl std::fmt::Debug, FileError>) -> ErrorCode {
    r.expect_err("must fail").code()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn chunks_reassemble_the_file_and_end_with_eof() {
    for r in RESOLVERS {
        let f = fixture("chunk-read", r);
        let data = pattern(100_000);
        std::fs::write(f.root.join("world.bin"), &data).unwrap();
        let mut got = Vec::new();
        let mut offset = 0u64;
        loop {
            let c = f
                .volume
                .read_chunk("/server/world.bin", offset, 30_000)
                .unwrap();
            assert_eq!(c.size, 100_000);
            offset += c.bytes.len() as u64;
            got.extend_from_slice(&c.bytes);
            if c.eof {
                break;
            }
            assert_eq!(c.bytes.len(), 30_000);
        }
        assert_eq!(got, data);
        let past = f
            .volume
            .read_chunk("/server/world.bin", 1 << 40, 10)
            .unwrap();
        assert!(past.eof && past.bytes.is_empty());
        let empty = f.root.join("empty");
        std::fs::write(&empty, b"").unwrap();
        let c = f.volume.read_chunk("/server/empty", 0, 10).unwrap();
        assert!(c.eof && c.bytes.is_empty() && c.size == 0);

        std::fs::create_dir(f.root.join("dir")).unwrap();
        assert_eq!(
            code(f.volume.read_chunk("/server/dir", 0, 10)),
            ErrorCode::InvalidPath
        );
        nix::unistd::mkfifo(
            &f.root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert_eq!(
            code(f.volume.read_chunk("/server/fifo", 0, 10)),
            ErrorCode::InvalidPath
        );
        symlink(f.outside.join("secret"), f.root.join("out")).unwrap();
        assert_eq!(
            code(f.volume.read_chunk("/server/out", 0, 10)),
            ErrorCode::InvalidPath
        );
        assert_eq!(
            code(f.volume.read_chunk("/server/nope", 0, 10)),
            ErrorCode::FileNotFound
        );
    }
}

#[test]
fn an_upload_lands_atomically_and_leaves_no_temp_file() {
    for r in RESOLVERS {
        let f = fixture("upload", r);
        std::fs::write(f.root.join("old.txt"), b"old").unwrap();
        let data = pattern(50_000);
        let mut offset = 0u64;
        for piece in data.chunks(16_384) {
            offset = f
                .chunk("/server/a/b/new.bin", "u1", offset, piece, false)
                .unwrap();
        }
        assert_eq!(offset, 50_000);
        assert_eq!(f.staging_entries(), vec!["u1".to_string()]);
        assert!(
            !f.root.join("a/b/new.bin").exists(),
            "not in place before final"
        );
        assert_eq!(
            f.chunk("/server/a/b/new.bin", "u1", offset, b"", true)
                .unwrap(),
            50_000
        );
        assert_eq!(std::fs::read(f.root.join("a/b/new.bin")).unwrap(), data);
        assert!(f.staging_entries().is_empty());
        assert_eq!(f.volume.uploads_in_progress(), 0);
        // A one-chunk upload replaces an existing file.
        f.chunk("/server/old.txt", "u2", 0, b"new", true).unwrap();
        assert_eq!(std::fs::read(f.root.join("old.txt")).unwrap(), b"new");
        // The sweep removes the empty staging directory.
        f.volume.sweep_uploads(Duration::from_secs(600));
        assert!(!f.root.join(STAGING_DIR).exists());
    }
}

#[test]
fn chunks_out_of_order_unknown_or_for_another_path_are_refused() {
    let f = fixture("upload-order", Resolver::Openat2);
    assert_eq!(
        code(f.chunk("/server/x", "u1", 5, b"abc", false)),
        ErrorCode::Conflict,
        "an upload starts at 0"
    );
    f.chunk("/server/x", "u1", 0, b"abc", false).unwrap();
    assert_eq!(
        code(f.chunk("/server/y", "u1", 3, b"def", false)),
        ErrorCode::InvalidMessage
    );
    // Another path's chunk did not end the upload; a gap does, with its temp file.
    f.chunk("/server/x", "u1", 3, b"def", false).unwrap();
    assert_eq!(
        code(f.chunk("/server/x", "u1", 10, b"ghi", false)),
        ErrorCode::Conflict
    );
    assert!(f.staging_entries().is_empty());
    assert_eq!(
        code(f.chunk("/server/x", "u1", 6, b"ghi", true)),
        ErrorCode::Conflict,
        "gone after the gap"
    );
    assert!(!f.root.join("x").exists());
    assert_eq!(
        code(f.chunk(&format!("/server/{STAGING_DIR}/u9"), "u9", 0, b"", true)),
        ErrorCode::InvalidPath
    );
}

#[test]
fn uploads_are_bounded_cancellable_and_swept() {
    let f = fixture("upload-bounds", Resolver::Openat2);
    for i in 0..MAX_UPLOADS {
        f.chunk(&format!("/server/f{i}"), &format!("u{i}"), 0, b"x", false)
            .unwrap();
    }
    assert_eq!(
        code(f.chunk("/server/g", "ux", 0, b"x", false)),
        ErrorCode::Busy
    );
    assert!(f.volume.cancel_upload("u0"));
    assert!(!f.volume.cancel_upload("u0"));
    assert_eq!(f.staging_entries().len(), MAX_UPLOADS - 1);
    // Idle uploads go with the sweep; so does a leftover of an earlier agent run.
    std::fs::write(f.root.join(STAGING_DIR).join("old-run"), b"junk").unwrap();
    assert_eq!(f.volume.sweep_uploads(Duration::from_secs(600)), 1);
    assert_eq!(f.volume.uploads_in_progress(), MAX_UPLOADS - 1);
    assert_eq!(f.volume.sweep_uploads(Duration::ZERO), MAX_UPLOADS - 1);
    assert_eq!(f.volume.uploads_in_progress(), 0);
    assert!(!f.root.join(STAGING_DIR).exists());
    f.chunk("/server/g", "u5", 0, b"x", false).unwrap();
    assert_eq!(f.volume.cancel_uploads(), 1);
    assert!(f.staging_entries().is_empty());
}

#[test]
fn an_upload_over_the_disk_limit_is_refused_and_removed() {
    let f = fixture("upload-disk", Resolver::Openat2);
    std::fs::write(f.root.join("big"), pattern(700_000)).unwrap();
    f.volume.measure_now().unwrap();
    let piece = pattern(200_000);
    f.chunk("/server/new", "u1", 0, &piece, false).unwrap();
    assert_eq!(
        code(f.chunk("/server/new", "u1", 200_000, &piece, false)),
        ErrorCode::InsufficientResources
    );
    assert!(f.staging_entries().is_empty());
    // Replacing the big file with a bigger one counts the difference only.
    let bigger = pattern(900_000);
    let mut offset = 0;
    for p in bigger.chunks(300_000) {
        offset = f.chunk("/server/big", "u2", offset, p, false).unwrap();
    }
    f.chunk("/server/big", "u2", offset, b"", true).unwrap();
    assert_eq!(std::fs::read(f.root.join("big")).unwrap(), bigger);
}

#[test]
fn links_planted_at_the_target_or_the_temp_file_never_lead_out() {
    for r in RESOLVERS {
        let f = fixture("upload-links", r);
        // A target that is a link: refused before anything is written.
        symlink(f.outside.join("secret"), f.root.join("link")).unwrap();
        assert_eq!(
            code(f.chunk("/server/link", "u1", 0, b"evil", true)),
            ErrorCode::InvalidPath
        );
        // A parent that is a link.
        symlink(&f.outside, f.root.join("outdir")).unwrap();
        assert_eq!(
            code(f.chunk("/server/outdir/secret", "u2", 0, b"evil", true)),
            ErrorCode::InvalidPath
        );
        // A link planted at the target while the upload runs: refused at the end.
        f.chunk("/server/late", "u3", 0, b"evil", false).unwrap();
        symlink(f.outside.join("secret"), f.root.join("late")).unwrap();
        assert_eq!(
            code(f.chunk("/server/late", "u3", 4, b"", true)),
            ErrorCode::InvalidPath
        );
        // The temp file swapped for a link: the bytes still go to the agent's own file,
        // and the swapped name is not renamed into place.
        f.chunk("/server/swap", "u4", 0, b"evil", false).unwrap();
        let temp = f.root.join(STAGING_DIR).join("u4");
        std::fs::remove_file(&temp).unwrap();
        symlink(f.outside.join("secret"), &temp).unwrap();
        f.chunk("/server/swap", "u4", 4, b"more", false).unwrap();
        assert_eq!(
            code(f.chunk("/server/swap", "u4", 8, b"", true)),
            ErrorCode::Conflict
        );
        assert!(!f.root.join("swap").exists());
        // The staging directory swapped for a link to the outside.
        f.volume.cancel_uploads();
        f.volume.sweep_uploads(Duration::ZERO);
        let _ = std::fs::remove_file(&temp);
        let _ = std::fs::remove_dir(f.root.join(STAGING_DIR));
        symlink(&f.outside, f.root.join(STAGING_DIR)).unwrap();
        assert_eq!(
            code(f.chunk("/server/s", "secret", 0, b"evil", true)),
            ErrorCode::InvalidPath
        );
        f.secret_intact();
        assert_eq!(std::fs::read_dir(&f.outside).unwrap().count(), 1);
    }
}

#[test]
fn rename_moves_links_as_links_and_refuses_escapes_overwrites_and_loops() {
    for r in RESOLVERS {
        let f = fixture("rename", r);
        let v = &f.volume;
        std::fs::create_dir_all(f.root.join("dir/sub")).unwrap();
        std::fs::write(f.root.join("a.txt"), b"a").unwrap();
        std::fs::write(f.root.join("b.txt"), b"b").unwrap();
        v.rename("/server/a.txt", "/server/dir/sub/a2.txt").unwrap();
        assert_eq!(std::fs::read(f.root.join("dir/sub/a2.txt")).unwrap(), b"a");
        assert_eq!(
            code(v.rename("/server/b.txt", "/server/dir/sub/a2.txt")),
            ErrorCode::Conflict
        );
        assert_eq!(
            code(v.rename("/server/dir", "/server/dir/sub/x")),
            ErrorCode::InvalidPath
        );
        assert_eq!(
            code(v.rename("/server/dir", "/server/dir")),
            ErrorCode::InvalidPath
        );
        assert_eq!(
            code(v.rename("/server", "/server/x")),
            ErrorCode::InvalidPath
        );
        assert_eq!(
            code(v.rename("/server/b.txt", "/server")),
            ErrorCode::InvalidPath
        );
        assert_eq!(
            code(v.rename("/server/nope", "/server/x")),
            ErrorCode::FileNotFound
        );
        assert_eq!(
            code(v.rename("/server/../etc/passwd", "/server/x")),
            ErrorCode::InvalidPath
        );
        // A link at the last component moves as the link.
        symlink(f.outside.join("secret"), f.root.join("l")).unwrap();
        v.rename("/server/l", "/server/dir/l2").unwrap();
        let meta = std::fs::symlink_metadata(f.root.join("dir/l2")).unwrap();
        assert!(meta.file_type().is_symlink());
        // A link in either parent is never followed.
        symlink(&f.outside, f.root.join("outdir")).unwrap();
        assert_eq!(
            code(v.rename("/server/outdir/secret", "/server/stolen")),
            ErrorCode::InvalidPath
        );
        assert_eq!(
            code(v.rename("/server/b.txt", "/server/outdir/planted")),
            ErrorCode::InvalidPath
        );
        assert!(!f.root.join("stolen").exists());
        assert!(!f.outside.join("planted").exists());
        f.secret_intact();
    }
}

#[test]
fn delete_removes_trees_without_following_links() {
    for r in RESOLVERS {
        let f = fixture("delete", r);
        let v = &f.volume;
        std::fs::create_dir_all(f.root.join("tree/a/b/c")).unwrap();
        std::fs::write(f.root.join("tree/a/b/c/deep.txt"), b"deep").unwrap();
        std::fs::write(f.root.join("tree/top.txt"), b"top").unwrap();
        for i in 0..2500 {
            std::fs::write(f.root.join(format!("tree/a/many-{i}")), b"").unwrap();
        }
        symlink(&f.outside, f.root.join("tree/a/to-outside")).unwrap();
        symlink(f.outside.join("secret"), f.root.join("tree/secret-link")).unwrap();
        v.delete("/server/tree").unwrap();
        assert!(!f.root.join("tree").exists());
        f.secret_intact();
        // A link itself is removed, not its target.
        symlink(f.outside.join("secret"), f.root.join("l")).unwrap();
        v.delete("/server/l").unwrap();
        assert!(std::fs::symlink_metadata(f.root.join("l")).is_err());
        f.secret_intact();
        // Through a linked parent: refused.
        symlink(&f.outside, f.root.join("outdir")).unwrap();
        assert_eq!(
            code(v.delete("/server/outdir/secret")),
            ErrorCode::InvalidPath
        );
        f.secret_intact();
        assert_eq!(code(v.delete("/server")), ErrorCode::InvalidPath);
        assert_eq!(code(v.delete("/server/nope")), ErrorCode::FileNotFound);
        assert!(f.root.exists());
    }
}

#[test]
fn delete_handles_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let f = fixture("delete-bytes", Resolver::Openat2);
    std::fs::create_dir_all(f.root.join("d")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"bad-\xff-name");
    std::fs::create_dir(f.root.join("d").join(odd)).unwrap();
    std::fs::write(f.root.join("d").join(odd).join("x"), b"x").unwrap();
    f.volume.delete("/server/d").unwrap();
    assert!(!f.root.join("d").exists());
}

#[test]
fn create_directory_makes_parents_and_refuses_existing_and_links() {
    for r in RESOLVERS {
        let f = fixture("mkdir", r);
        let v = &f.volume;
        v.create_directory("/server/a/b/c").unwrap();
        assert!(f.root.join("a/b/c").is_dir());
        assert_eq!(code(v.create_directory("/server/a/b")), ErrorCode::Conflict);
        std::fs::write(f.root.join("file"), b"").unwrap();
        assert_eq!(
            code(v.create_directory("/server/file")),
            ErrorCode::Conflict
        );
        assert_eq!(code(v.create_directory("/server")), ErrorCode::Conflict);
        symlink(&f.outside, f.root.join("outdir")).unwrap();
        assert_eq!(
            code(v.create_directory("/server/outdir/new")),
            ErrorCode::InvalidPath
        );
        symlink(f.outside.join("nothing"), f.root.join("dangling")).unwrap();
        assert_eq!(
            code(v.create_directory("/server/dangling")),
            ErrorCode::Conflict
        );
        assert!(!f.outside.join("new").exists() && !f.outside.join("nothing").exists());
    }
}

#[test]
fn deleting_frees_disk_usage_at_once() {
    let f = fixture("delete-usage", Resolver::Openat2);
    std::fs::write(f.root.join("big"), pattern(500_000)).unwrap();
    assert_eq!(f.volume.measure_now().unwrap(), 500_000);
    f.volume.delete("/server/big").unwrap();
    assert_eq!(f.volume.cached_disk_usage().unwrap(), 0);
}
