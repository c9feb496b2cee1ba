//! The systemd units kept in the repository (`panel/dist/ctrl-panel.service`,
//! `agent/dist/ctrl-agent.service`): hardened as the install guide says, and valid for
//! `systemd-analyze verify` (run with the built binaries in place of `/usr/local/bin`, when
//! systemd's tools are installed).

use std::process::Command;

fn unit(path: &str) -> String {
    std::fs::read_to_string(e2e::repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The effective value of `key` (the last assignment wins, as in systemd).
fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[test]
fn the_units_are_hardened() {
    for (path, user, data) in [
        (
            "panel/dist/ctrl-panel.service",
            "ctrl-panel",
            "/var/lib/ctrl-panel",
        ),
        (
            "agent/dist/ctrl-agent.service",
            "ctrl-agent",
            "/var/lib/ctrl-agent",
        ),
    ] {
        let text = unit(path);
        for (key, want) in [
            ("User", user),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ReadWritePaths", data),
            ("LimitNOFILE", "65536"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("CapabilityBoundingSet", ""),
            ("KillSignal", "SIGTERM"),
        ] {
            assert_eq!(value(&text, key), Some(want), "{path}: {key}");
        }
        assert!(text.contains(&format!("--data-dir {data}")), "{path}");
    }
    let agent = unit("agent/dist/ctrl-agent.service");
    assert_eq!(value(&agent, "SupplementaryGroups"), Some("docker"));
    assert!(agent.contains("--config /var/lib/ctrl-agent/agent.json"));
    let panel = unit("panel/dist/ctrl-panel.service");
    assert!(panel.contains("--public-url https://"));
}

#[test]
fn systemd_accepts_the_units() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    }
    let dir = e2e::TempDir::new("units");
    let mut paths = Vec::new();
    for (path, name) in [
        ("panel/dist/ctrl-panel.service", "panel"),
        ("agent/dist/ctrl-agent.service", "agent"),
    ] {
        let bin = e2e::binary(name);
        let text = unit(path).replace(
            &format!("/usr/local/bin/{name}"),
            &bin.display().to_string(),
        );
        let out = dir.path().join(format!("ctrl-{name}.service"));
        std::fs::write(&out, text).unwrap();
        paths.push(out);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the units' own lines count (a host without systemd as init adds notes of its own).
    let about_units: Vec<&str> = said.lines().filter(|l| l.contains("ctrl-")).collect();
    assert!(about_units.is_empty(), "systemd-analyze verify:\n{said}");
}
