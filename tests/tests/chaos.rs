//! Chaos: `kill -9` of the real agent binary in the middle of its work, with the real panel.
//!
//! - In the middle of a create — once when the server's volume directory has just appeared,
//!   once when Docker reports the container created — the server ends up either adopted
//!   (the panel keeps it, the restarted agent runs it) or cleanly absent (no container; no
//!   record, or one the agent answers `SERVER_NOT_FOUND` for and a plain `DELETE` clears;
//!   the same create then succeeds again). Never a container the panel forgot: it did, before
//!   the panel kept the record of a create whose connection was lost after sending it.
//! - In the middle of an upload that replaces a file: the file is the old one, whole; the
//!   restarted agent serves it, removes the killed upload's temp file and accepts the
//!   upload again.
//!
//! The panel's own `kill -9` (event storm, acknowledged writes) is `panel/tests/chaos.rs`;
//! Docker vanishing and a full data disk are `agent/tests/chaos.rs`.

use e2e::stack::{SLOW, Stack};
use e2e::transfer::{Client, Framing, Generator};
use serde_json::json;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where in a create the agent is killed.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// `DATA/volumes/<id>` exists (before the container).
    VolumeMade,
    /// Docker's `create` event for the container (before the agent's answer).
    ContainerCreated,
}

/// Blocks until the create reaches `point`.
fn wait_for(point: Point, volume: &std::path::Path, events: &mut Option<std::process::Child>) {
    match point {
        Point::VolumeMade => {
            let deadline = Instant::now() + SLOW;
            while !volume.exists() {
                assert!(Instant::now() < deadline, "the volume never appeared");
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Point::ContainerCreated => {
            let child = events.as_mut().expect("docker events");
            let out = child.stdout.as_mut().expect("piped");
            let mut line = String::new();
            std::io::BufReader::new(out).read_line(&mut line).unwrap();
            assert!(!line.trim().is_empty(), "docker events ended");
        }
    }
}

#[test]
fn agent_kill9_in_the_middle_of_a_create_leaves_the_server_adopted_or_absent() {
    let Some(mut s) = Stack::start("chaos-create") else {
        return;
    };
    let a = s.add_agent("a");
    let agent_id = s.agents[a].id.clone();
    for (round, point) in [Point::VolumeMade, Point::ContainerCreated]
        .into_iter()
        .enumerate()
    {
        let id = s.server_id(&format!("mid{round}"));
        let volume = s.agents[a].data_dir.join("volumes").join(&id);
        let mut events = matches!(point, Point::ContainerCreated).then(|| {
            Command::new("docker")
                .args(["events", "--format", "{{.ID}}", "--filter", "event=create"])
                .args(["--filter", &format!("label=ctrl.server={id}")])
                .stdout(Stdio::piped())
                .spawn()
                .expect("docker events")
        });
        // Give `docker events` its subscription before the create can happen.
        if events.is_some() {
            std::thread::sleep(Duration::from_millis(500));
        }
        let (egg, _) = e2e::egg::fakegame("");
        let body = json!({"agentId": agent_id, "serverId": id, "eggConfig": egg});
        let api = e2e::panel::Api::new(&s.panel.url(), &s.panel.ca_cert(), &s.panel.token);
        let create = std::thread::spawn(move || api.try_call("POST", "/api/servers", Some(&body)));
        wait_for(point, &volume, &mut events);
        s.agents[a].kill9();
        if let Some(mut c) = events {
            let _ = c.kill();
            let _ = c.wait();
        }
        let answered = create.join().unwrap();
        s.agents[a].run();
        s.agents[a].wait_status(&s.panel, "online");

        let containers = e2e::containers_with_label(&format!("ctrl.server={id}"));
        let kept = s.panel.api.server_ids().contains(&id);
        eprintln!(
            "{point:?}: create answered {:?}; record kept {kept}; containers {containers:?}",
            answered.as_ref().map(|a| (a.status, a.code().to_owned())),
        );
        match (kept, containers.len()) {
            // Adopted: the panel kept it, the restarted agent runs it.
            (true, 1) => {
                s.panel.api.power(&id, &json!({"action": "start"}));
                e2e::eventually("the adopted server running", SLOW, || {
                    (s.panel.api.status(&id)["status"] == "running").then_some(())
                });
            }
            // Cleanly absent: nothing anywhere, and the same create goes through.
            (false, 0) => create_and_start(&s, &agent_id, &id),
            // The panel kept the record (the agent may have acted, as after a timeout) but
            // the agent never made the container: it says so, and a plain delete clears it.
            (true, 0) => {
                let record = s.panel.api.get(&format!("/api/servers/{id}"));
                assert_eq!(record.code(), "SERVER_NOT_FOUND", "{}", record.body);
                s.panel
                    .api
                    .delete(&format!("/api/servers/{id}"))
                    .ok("delete the record of a server the agent never made");
                create_and_start(&s, &agent_id, &id);
            }
            (kept, n) => panic!(
                "{point:?}: inconsistent after kill -9: panel record kept {kept}, {n} container(s)\n{}",
                s.agents[a].output()
            ),
        }
    }
}

fn create_and_start(s: &Stack, agent_id: &str, id: &str) {
    let (egg, _) = e2e::egg::fakegame("");
    s.panel
        .api
        .post(
            "/api/servers",
            &json!({"agentId": agent_id, "serverId": id, "eggConfig": egg}),
        )
        .ok("create again after the kill");
    s.panel.api.power(id, &json!({"action": "start"}));
}

#[test]
fn agent_kill9_in_the_middle_of_an_upload_leaves_the_old_file_whole() {
    const MIB: u64 = 1 << 20;
    let Some(mut s) = Stack::start("chaos-upload") else {
        return;
    };
    let a = s.add_agent("a");
    let id = s.create_fakegame(a, "up", "");
    let client = Client::new(&s.panel.url(), s.panel.api.tls(), &s.panel.token);
    let target = format!("/api/servers/{id}/files/upload?path=/server/world.bin");
    let download = format!("/api/servers/{id}/files/download?path=/server/world.bin");
    let old = client
        .put(&target, Generator::new(1, MIB), Framing::ContentLength)
        .expect("the first upload");
    assert_eq!(old.status, 200, "{}", old.small_body);

    // The replacement, large enough to be caught in the middle.
    let volume = s.agents[a].data_dir.join("volumes").join(&id);
    let staging = volume.join(".ctrl-uploads");
    let replacing = {
        let client = Client::new(&s.panel.url(), s.panel.api.tls(), &s.panel.token);
        let target = target.clone();
        std::thread::spawn(move || {
            client.put(
                &target,
                Generator::new(2, 512 * MIB),
                Framing::ContentLength,
            )
        })
    };
    e2e::eventually(
        "the replacement half way in the staging directory",
        SLOW,
        || {
            let staged: u64 = std::fs::read_dir(&staging)
                .ok()?
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum();
            (staged >= 8 * MIB).then_some(())
        },
    );
    s.agents[a].kill9();
    // Refused, or the panel hung up on the rest of the body (an `Err`).
    if let Ok(answer) = replacing.join().unwrap() {
        assert_ne!(answer.status, 200, "{}", answer.small_body);
    }
    // On disk, before anything could tidy up: the old file, whole.
    assert_eq!(
        std::fs::metadata(volume.join("world.bin")).unwrap().len(),
        MIB
    );

    s.agents[a].run();
    s.agents[a].wait_status(&s.panel, "online");
    let got = e2e::eventually("the old file served again", SLOW, || {
        client.get(&download).ok().filter(|g| g.status == 200)
    });
    assert_eq!(
        got.sha256,
        Generator::new(1, MIB).sha256(),
        "the file changed"
    );
    // What the killed upload staged goes with the agent's next sweep of leftovers (a
    // minute after its start at most).
    e2e::eventually("the killed upload's temp file removed", SLOW, || {
        let left = std::fs::read_dir(&staging).map_or(0, |d| d.count());
        (left == 0).then_some(())
    });
    // The listing shows the file and nothing half made.
    let listing = s
        .panel
        .api
        .get(&format!("/api/servers/{id}/files?path=/server"))
        .ok("list");
    let names: Vec<&str> = listing["data"]["entries"]
        .as_array()
        .or(listing["entries"].as_array())
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&"world.bin"), "{listing}");
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with(".ctrl") && *n != "world.bin.tmp"),
        "{names:?}"
    );
    // And the replacement can be uploaded again, from the start.
    let again = client
        .put(&target, Generator::new(3, 2 * MIB), Framing::ContentLength)
        .expect("upload after restart");
    assert_eq!(again.status, 200, "{}", again.small_body);
    let got = client.get(&download).unwrap();
    assert_eq!(got.sha256, Generator::new(3, 2 * MIB).sha256());
}
