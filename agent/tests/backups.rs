//! Backups and restores through the servers layer on the real Docker Engine, driven as the
//! panel drives them (`backup_read`, `restore_chunk`), and `--name-prefix`: containers
//! carry the agent's prefix and adoption takes only those.

mod common;

use base64::Engine as _;
use common::harness::*;
use proto::ServerState;
use serde_json::json;
use std::io::Write;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The whole archive, read as the panel reads it.
fn pull(h: &Harness, sid: &str, id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let d = h.ok(
            sid,
            "backup_read",
            Some(json!({"backupId": id, "offset": out.len(), "length": 262144})),
        );
        assert_eq!(d["offset"], out.len() as u64);
        out.extend(B64.decode(d["content"].as_str().unwrap()).unwrap());
        if d["eof"] == true {
            return out;
        }
    }
}

/// Sends `archive` as restore chunks; the outcome of the final one.
fn push(h: &Harness, sid: &str, id: &str, archive: &[u8]) -> proto::Response<'static> {
    let pieces: Vec<&[u8]> = archive.chunks(100_000).collect();
    let mut offset = 0;
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let r = h.send(
            Some(sid),
            "restore_chunk",
            Some(
                json!({"restoreId": id, "offset": offset, "content": B64.encode(p), "final": last}),
            ),
        );
        if last || !r.success {
            return r;
        }
        offset += p.len();
    }
    unreachable!("an archive has at least one piece")
}

/// A command with the fencing `epoch` (or none), as the link would deliver it.
fn with_epoch(
    h: &Harness,
    sid: &str,
    action: &str,
    payload: Option<serde_json::Value>,
    epoch: Option<u64>,
) -> proto::Response<'static> {
    let mut msg = json!({
        "id": format!("m-{}", fastrand::u32(..)),
        "type": "command",
        "timestamp": proto::time::now_rfc3339(),
        "serverId": sid,
        "action": action,
    });
    if let Some(e) = epoch {
        msg["epoch"] = json!(e);
    }
    if let Some(p) = payload {
        msg["payload"] = p;
    }
    let cmd = match proto::decode(msg.to_string().as_bytes()).expect("decodes") {
        proto::Message::Command(c) => c.into_owned(),
        other => panic!("not a command: {other:?}"),
    };
    smol::block_on(h.servers().execute(cmd))
}

fn write(path: &std::path::Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn containers_carry_the_prefix_and_adoption_takes_only_prefixed_ones() {
    let prefix = format!("bkp{}-", fastrand::u32(..));
    let Some(h) = harness("prefix", |c| c.name_prefix = prefix.clone()) else {
        return;
    };
    let sid = format!("pfx-{}", fastrand::u32(..));
    h.create(&sid, egg(e2e::free_port(), STARTUP));
    assert!(!docker_inspect(&format!("{prefix}{sid}")).is_null());
    assert!(docker_inspect(&format!("ctrl-{sid}")).is_null());
    // Another manager with the same agent id but another prefix adopts nothing of it.
    let mut other = h.cfg.clone();
    other.name_prefix = "other-".into();
    let outbox = std::sync::Arc::new(agent::link::outbox::Outbox::new(1000));
    let stranger = agent::servers::Servers::start(other, outbox).unwrap();
    assert_eq!(smol::block_on(stranger.adopt()).unwrap(), 0);
    // The same prefix adopts it.
    let outbox = std::sync::Arc::new(agent::link::outbox::Outbox::new(1000));
    let twin = agent::servers::Servers::start(h.cfg.clone(), outbox).unwrap();
    assert_eq!(smol::block_on(twin.adopt()).unwrap(), 1);
}

#[test]
fn commands_of_an_older_epoch_are_refused_even_after_a_restart() {
    let Some(h) = harness("epoch", |_| {}) else {
        return;
    };
    let sid = format!("ep-{}", fastrand::u32(..));
    let r = with_epoch(
        &h,
        &sid,
        "create_server",
        Some(json!({"serverId": sid, "eggConfig": egg(e2e::free_port(), STARTUP)})),
        Some(2),
    );
    assert!(r.success, "{:?}", r.error);
    let stale = with_epoch(&h, &sid, "start_server", None, Some(1));
    assert_eq!(stale.error.expect("refused").code, "STALE_EPOCH");
    assert!(with_epoch(&h, &sid, "get_status", None, Some(2)).success);
    assert!(with_epoch(&h, &sid, "get_status", None, Some(3)).success);
    assert!(with_epoch(&h, &sid, "get_status", None, None).success);
    // The epoch lives in the container's meta label: a restarted agent still fences.
    let outbox = std::sync::Arc::new(agent::link::outbox::Outbox::new(1000));
    let restarted = agent::servers::Servers::start(h.cfg.clone(), outbox).unwrap();
    assert_eq!(smol::block_on(restarted.adopt()).unwrap(), 1);
    let cmd = match proto::decode(
        json!({"id": "m1", "type": "command", "timestamp": "t", "serverId": sid,
               "epoch": 1, "action": "delete_server"})
        .to_string()
        .as_bytes(),
    )
    .expect("decodes")
    {
        proto::Message::Command(c) => c.into_owned(),
        other => panic!("{other:?}"),
    };
    let r = smol::block_on(restarted.execute(cmd));
    assert_eq!(r.error.expect("refused").code, "STALE_EPOCH");
}

#[test]
fn a_backup_restores_byte_identical_and_a_hostile_archive_changes_nothing() {
    let Some(mut h) = harness("backup", |_| {}) else {
        return;
    };
    let (a, b) = (
        format!("bka-{}", fastrand::u32(..)),
        format!("bkb-{}", fastrand::u32(..)),
    );
    h.create(&a, egg(e2e::free_port(), STARTUP));
    h.create(&b, egg(e2e::free_port(), STARTUP));
    let blob: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&h.volume(&a).join("world/region/r.0.0.mca"), &blob);
    write(&h.volume(&a).join("server.properties"), b"motd=backed up\n");
    std::os::unix::fs::symlink("world/region", h.volume(&a).join("regions")).unwrap();

    // Backed up while running: the archive is taken through the volume's fds.
    h.ok(&a, "start_server", None);
    h.wait_status(&a, ServerState::Running);
    let archive = pull(&h, &a, "bk1");
    assert!(archive.len() > 1000, "{}", archive.len());
    // A read at a stale offset of a finished backup is refused.
    let (code, _) = h.err(
        Some(&a),
        "backup_read",
        Some(json!({"backupId": "bk1", "offset": 5, "length": 10})),
    );
    assert_eq!(code, "CONFLICT");

    // Restoring onto a running server is refused; onto a stopped one it replaces its files.
    h.ok(&b, "start_server", None);
    h.wait_status(&b, ServerState::Running);
    let r = push(&h, &b, "rs1", &archive);
    assert_eq!(r.error.expect("refused").code, "CONFLICT");
    h.ok(&b, "stop_server", None);
    write(&h.volume(&b).join("stale.txt"), b"old");
    let r = push(&h, &b, "rs2", &archive);
    assert!(r.success, "{:?}", r.error);
    let vb = h.volume(&b);
    assert_eq!(
        std::fs::read(vb.join("world/region/r.0.0.mca")).unwrap(),
        blob
    );
    assert_eq!(
        std::fs::read(vb.join("server.properties")).unwrap(),
        b"motd=backed up\n"
    );
    assert_eq!(
        std::fs::read_link(vb.join("regions")).unwrap(),
        std::path::Path::new("world/region")
    );
    assert!(!vb.join("stale.txt").exists());

    // A hostile archive: a valid entry, then one climbing out of the volume.
    let outside = h.data.path().join("outside-secret");
    std::fs::write(&outside, b"do not touch").unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &[u8], data: &[u8]| {
        let mut hd = tar::Header::new_old();
        hd.as_old_mut().name[..path.len()].copy_from_slice(path);
        hd.set_size(data.len() as u64);
        hd.set_mode(0o644);
        hd.set_cksum();
        tar.append(&hd, data).unwrap();
    };
    add(b"server.properties", b"motd=pwned\n");
    add(b"../../outside-secret", b"pwned");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    let hostile = gz.finish().unwrap();
    let r = push(&h, &b, "rs3", &hostile);
    assert_eq!(r.error.expect("refused").code, "INVALID_ARCHIVE");
    assert_eq!(std::fs::read(&outside).unwrap(), b"do not touch");
    assert_eq!(
        std::fs::read(vb.join("server.properties")).unwrap(),
        b"motd=backed up\n"
    );
    assert_eq!(
        std::fs::read(vb.join("world/region/r.0.0.mca")).unwrap(),
        blob
    );
    // The server still starts on its restored files.
    h.ok(&b, "start_server", None);
    e2e::eventually("b running again", WAIT, || {
        (h.ok(&b, "get_status", None)["status"] == "running").then_some(())
    });
}
