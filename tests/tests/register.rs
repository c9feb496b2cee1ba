//! Scenario 1: `agent register` → the agent is listed (offline until it runs), then online
//! with the capabilities it detected on this host.

#![allow(unsafe_code, reason = "sysconf(_SC_NPROCESSORS_ONLN) through libc")]

use e2e::stack::Stack;
use std::process::Command;

#[test]
fn registered_agent_goes_online_with_detected_capabilities() {
    let Some(mut s) = Stack::start("register") else {
        return;
    };
    let i = s.register("a");
    let listed = s.panel.api.agent_named(&s.agents[i].name).expect("listed");
    assert_eq!(
        listed["status"], "offline",
        "registered, not running: {listed}"
    );

    s.agents[i].run();
    let agent = s.agents[i].wait_status(&s.panel, "online");
    assert_eq!(agent["id"], s.agents[i].id.as_str());
    assert!(agent["lastSeen"].is_string(), "lastSeen: {agent}");

    let caps = &agent["capabilities"];
    let docker_version = String::from_utf8(
        Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .expect("docker version")
            .stdout,
    )
    .expect("utf-8");
    assert_eq!(
        caps["dockerVersion"].as_str(),
        Some(docker_version.trim()),
        "capabilities: {agent}"
    );
    // SAFETY: sysconf has no memory effects.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as u64;
    let cores = caps["maxCpuCores"].as_u64().unwrap_or(0);
    assert!(
        (1..=online).contains(&cores),
        "maxCpuCores {cores} of {online} online: {agent}"
    );
    let mem = caps["maxMemory"]
        .as_str()
        .and_then(|q| proto::quantity::Bytes::parse(q).ok())
        .unwrap_or_else(|| panic!("maxMemory is not a quantity: {agent}"));
    assert!(mem.0 > 64 << 20, "maxMemory {mem:?}: {agent}");
    let archs: Vec<&str> = caps["supportedArchitectures"]
        .as_array()
        .unwrap_or_else(|| panic!("supportedArchitectures: {agent}"))
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(archs.contains(&"amd64"), "architectures {archs:?}");

    // Wrong admin token: refused, and nothing registered.
    let out = Command::new(e2e::binary("agent"))
        .arg("register")
        .args(["--panel", &s.panel.url(), "--admin-token", "wrong-token"])
        .args(["--name", "e2e-intruder", "--ca-cert"])
        .arg(s.panel.ca_cert())
        .arg("--config")
        .arg(s.dir.path().join("intruder.json"))
        .output()
        .expect("agent register");
    assert!(
        !out.status.success(),
        "register with a wrong token succeeded"
    );
    assert!(s.panel.api.agent_named("e2e-intruder").is_none());
}

/// `agent register --token T` with a registration token from
/// `POST /api/agents/registration-tokens`: the node registers without the admin token, and
/// the token works once.
#[test]
fn agent_registers_with_a_single_use_registration_token() {
    let Some(s) = Stack::start("register-token") else {
        return;
    };
    let answer = s
        .panel
        .api
        .post("/api/agents/registration-tokens", &serde_json::json!({}))
        .ok("registration token");
    let token = answer["token"].as_str().expect("token").to_owned();
    assert!(answer["expiresAt"].is_string(), "{answer}");
    let register = |name: &str| {
        Command::new(e2e::binary("agent"))
            .arg("register")
            .args(["--panel", &s.panel.url(), "--token", &token])
            .args(["--name", name, "--ca-cert"])
            .arg(s.panel.ca_cert())
            .arg("--config")
            .arg(s.dir.path().join(format!("{name}.json")))
            .output()
            .expect("agent register")
    };
    let out = register("e2e-by-token");
    assert!(
        out.status.success(),
        "register --token failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.panel.api.agent_named("e2e-by-token").is_some());
    let again = register("e2e-token-reused");
    assert!(
        !again.status.success(),
        "a used registration token worked again"
    );
    assert!(s.panel.api.agent_named("e2e-token-reused").is_none());
}
