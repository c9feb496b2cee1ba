//! From a validated egg to the container the agent asks Docker for, and the facts about the
//! server it must remember (kept in the container's `ctrl.meta` label, so a restarted agent
//! re-adopts a server from Docker alone).
//!
//! Pure functions: no I/O, unit-tested here.

use super::extras::Extras;
use crate::docker::{CreateSpec, LogConfig, Mount, Protocol};
use crate::node::NodePolicy;
use proto::EggConfig;
use proto::eggs::InstallScript;
use proto::validate::{self, ValidEgg};
use serde::{Deserialize, Serialize};

/// Label naming the agent that owns a container.
pub const LABEL_AGENT: &str = "ctrl.agent";
/// Label naming the server a container runs.
pub const LABEL_SERVER: &str = "ctrl.server";
/// Label carrying [`Meta`] as JSON.
pub const LABEL_META: &str = "ctrl.meta";
/// Label naming the server an install container works for. Install containers carry no
/// `ctrl.server` label: they are not the server's container, and adoption tells them apart.
pub const LABEL_INSTALL: &str = "ctrl.install";
/// Where the server's files are mounted inside its container.
pub const CONTAINER_ROOT: &str = "/server";
/// Where an install script finds the server's files (Pterodactyl's convention).
pub const INSTALL_ROOT: &str = "/mnt/server";
/// The user a server runs as when its egg names none.
pub const DEFAULT_USER: (u32, u32) = (1000, 1000);
/// Processes (threads included) one server may have by default (`pidsPerServer`): enough
/// for a JVM, not for a fork bomb.
pub const PIDS_LIMIT: u32 = 1024;
/// The address a server is told to bind to inside its network namespace.
pub const SERVER_IP: &str = "0.0.0.0";

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMeta {
    pub container: u16,
    pub host: u16,
    pub udp: bool,
}

impl PortMeta {
    pub fn protocol(&self) -> &'static str {
        if self.udp { "udp" } else { "tcp" }
    }
}

/// What the agent remembers about a server beyond what Docker reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Bytes.
    pub memory: u64,
    pub cpu_millis: u32,
    /// Bytes.
    pub disk: u64,
    pub ports: Vec<PortMeta>,
    /// A console line that stops the server gracefully (`stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_command: Option<String>,
    /// Canonical name (`SIGTERM`) of the signal a stop sends.
    pub stop_signal: String,
    /// Container port answering the Minecraft Server List Ping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_port: Option<u16>,
    pub uid: u32,
    pub gid: u32,
    /// The container's pids limit (containers from before this field had the default).
    #[serde(default = "default_pids")]
    pub pids: u64,
    /// The epoch of the assignment this copy was created for (fencing; 0 before epochs).
    #[serde(default)]
    pub epoch: u64,
}

fn default_pids() -> u64 {
    u64::from(PIDS_LIMIT)
}

impl Meta {
    /// The host port bound to a container port (TCP first).
    pub fn host_port_for(&self, container: u16) -> Option<u16> {
        self.ports
            .iter()
            .filter(|p| p.container == container)
            .min_by_key(|p| p.udp)
            .map(|p| p.host)
    }

    pub fn to_label(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_label(text: &str) -> Option<Meta> {
        serde_json::from_str(text).ok()
    }
}

/// Everything [`plan`] needs besides the egg.
pub struct PlanInput<'a> {
    pub agent_id: &'a str,
    pub server_id: &'a str,
    /// Absolute host path of the server's volume.
    pub volume: &'a str,
    /// The node policy: the address ports are published on, the pids limit, the network
    /// and the log rotation.
    pub policy: &'a NodePolicy,
    /// The assignment's epoch (`create_server`'s command `epoch`), kept in the meta label.
    pub epoch: u64,
}

/// The default container name prefix (`agent run --name-prefix`).
pub const DEFAULT_NAME_PREFIX: &str = "ctrl-";

/// The container's name for a server: the agent's prefix, then the server id.
pub fn container_name(prefix: &str, server_id: &str) -> String {
    format!("{prefix}{server_id}")
}

/// The install container's name for a server: the `.` cannot occur in a server id (nor in
/// a prefix), so it never names another server's container.
pub fn install_container_name(prefix: &str, server_id: &str) -> String {
    format!("{prefix}{server_id}.install")
}

/// Whether Docker's name for a container (with or without its leading `/`) carries this
/// agent's prefix: adoption takes only those, so agents sharing an Engine never adopt each
/// other's containers even if a label were copied.
pub fn has_prefix(docker_name: &str, prefix: &str) -> bool {
    docker_name.trim_start_matches('/').starts_with(prefix)
}

/// Checks a `--name-prefix`: 1 to 32 characters Docker accepts at the start of a name
/// (`[a-zA-Z0-9][a-zA-Z0-9_-]*`); no `.`, which separates the install suffix.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix.as_bytes()[0].is_ascii_alphanumeric()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--name-prefix `{prefix}`: 1 to 32 characters, a letter or digit first, then letters, digits, `_` or `-`"
        ))
    }
}

/// The variables the agent sets for every container of a server, after the egg's own:
/// `SERVER_MEMORY` (MiB), `SERVER_PORT` (the first container port, when there is one) and
/// `SERVER_IP`.
pub fn agent_env(meta: &Meta) -> Vec<(String, String)> {
    let mut env = vec![("SERVER_MEMORY".to_string(), (meta.memory >> 20).to_string())];
    if let Some(p) = meta.ports.first() {
        env.push(("SERVER_PORT".into(), p.container.to_string()));
    }
    env.push(("SERVER_IP".into(), SERVER_IP.into()));
    env
}

/// The install container of a server: the install image running the script with the
/// egg's interpreter (`ENTRYPOINT -c SCRIPT`; every public egg's entrypoint is a POSIX
/// shell), the volume at `/mnt/server`, the egg's environment plus the agent's variables
/// and `HOME=/mnt/server`. Confined exactly like the server itself: the same non-root user,
/// every capability dropped, `no-new-privileges`, read-only root filesystem with a small
/// noexec `/tmp`, the same memory, CPU and pids limits, the servers' network (downloads
/// allowed, neighbours not), rotated logs, no published ports, no stdin.
pub fn plan_install(
    input: &PlanInput<'_>,
    meta: &Meta,
    extras: &Extras,
    install: &InstallScript,
) -> CreateSpec {
    let policy = input.policy;
    let mut spec = CreateSpec::new(install.image.clone());
    spec.entrypoint = Some(vec![
        install.entrypoint.clone(),
        "-c".into(),
        install.script.clone(),
    ]);
    spec.cmd = Some(Vec::new());
    for (k, v) in extras.environment.iter().chain(agent_env(meta).iter()) {
        spec.env.push(format!("{k}={v}"));
    }
    spec.env.push(format!("HOME={INSTALL_ROOT}"));
    spec.working_dir = Some(INSTALL_ROOT.into());
    spec.user = Some(format!("{}:{}", meta.uid, meta.gid));
    spec.open_stdin = false;
    spec.attach_stdin = false;
    let hc = &mut spec.host_config;
    hc.mounts
        .push(Mount::bind(input.volume, INSTALL_ROOT, false));
    hc.memory = i64::try_from(meta.memory).unwrap_or(i64::MAX);
    hc.memory_swap = hc.memory;
    hc.nano_cpus = i64::from(meta.cpu_millis).saturating_mul(1_000_000);
    hc.pids_limit = Some(i64::try_from(meta.pids).unwrap_or(i64::MAX));
    hc.readonly_rootfs = true;
    hc.network_mode = Some(policy.network.clone());
    hc.log_config = Some(LogConfig::json_file(
        &policy.log_max_size_docker(),
        policy.log_max_files,
    ));
    spec.labels
        .insert(LABEL_AGENT.into(), input.agent_id.into());
    spec.labels
        .insert(LABEL_INSTALL.into(), input.server_id.into());
    spec
}

/// Builds the hardened create body and the server's [`Meta`] from a validated egg.
pub fn plan(input: &PlanInput<'_>, egg: &EggConfig<'_>, valid: &ValidEgg) -> (CreateSpec, Meta) {
    let (uid, gid) = valid.user.unwrap_or(DEFAULT_USER);
    let policy = input.policy;
    let memory = valid.limits.memory.0;
    let first_port = valid.ports.first().map(|p| p.container);

    // Placeholders resolve from the egg's own environment plus the three agent variables:
    // never from the agent's process environment, its config or its secrets.
    let server_memory = valid.limits.memory.mib().to_string();
    let server_port = first_port.map(|p| p.to_string()).unwrap_or_default();
    let lookup = |name: &str| -> Option<&str> {
        match name {
            "SERVER_MEMORY" => Some(server_memory.as_str()),
            "SERVER_PORT" => Some(server_port.as_str()),
            "SERVER_IP" => Some(SERVER_IP),
            other => egg.environment.get(other),
        }
    };
    let startup = validate::substitute(&egg.startup, lookup);

    let mut spec = CreateSpec::new(egg.image.to_string());
    for (k, v) in &egg.environment.0 {
        spec.env.push(format!("{k}={v}"));
    }
    spec.env.push(format!("SERVER_MEMORY={server_memory}"));
    if first_port.is_some() {
        spec.env.push(format!("SERVER_PORT={server_port}"));
    }
    spec.env.push(format!("SERVER_IP={SERVER_IP}"));
    spec.env.push(format!("STARTUP={startup}"));
    spec.cmd = Some(vec!["/bin/sh".into(), "-c".into(), startup]);
    spec.working_dir = Some(CONTAINER_ROOT.into());
    spec.user = Some(format!("{uid}:{gid}"));

    let host_ip = if policy.host_ip.is_unspecified() {
        String::new()
    } else {
        policy.host_ip.to_string()
    };
    let mut ports = Vec::with_capacity(valid.ports.len());
    for p in &valid.ports {
        let udp = p.protocol == validate::Protocol::Udp;
        let proto = if udp { Protocol::Udp } else { Protocol::Tcp };
        spec.publish(p.container, proto, &host_ip, p.host);
        ports.push(PortMeta {
            container: p.container,
            host: p.host,
            udp,
        });
    }

    let hc = &mut spec.host_config;
    hc.mounts
        .push(Mount::bind(input.volume, CONTAINER_ROOT, false));
    hc.memory = i64::try_from(memory).unwrap_or(i64::MAX);
    hc.memory_swap = hc.memory; // no swap beyond the limit
    hc.nano_cpus = valid.limits.cpu.nano_cpus();
    hc.pids_limit = Some(i64::from(policy.pids_per_server));
    hc.readonly_rootfs = true;
    hc.network_mode = Some(policy.network.clone());
    hc.log_config = Some(LogConfig::json_file(
        &policy.log_max_size_docker(),
        policy.log_max_files,
    ));
    // CapDrop ALL, no-new-privileges and a noexec tmpfs /tmp come with CreateSpec::new.

    let stop_signal = egg
        .stop
        .as_ref()
        .and_then(|s| s.signal.as_deref())
        .and_then(|s| validate::signal(s).ok())
        .map_or("SIGTERM", |(name, _)| name)
        .to_string();
    spec.stop_signal = Some(stop_signal.clone());
    spec.labels
        .insert(LABEL_AGENT.into(), input.agent_id.into());
    spec.labels
        .insert(LABEL_SERVER.into(), input.server_id.into());
    let meta = Meta {
        memory,
        cpu_millis: valid.limits.cpu.0,
        disk: valid.limits.disk.0,
        ports,
        stop_command: egg
            .stop
            .as_ref()
            .and_then(|s| s.command.as_deref())
            .map(str::to_owned),
        stop_signal,
        query_port: egg.query.as_ref().map(|q| q.port),
        uid,
        gid,
        pids: u64::from(policy.pids_per_server),
        epoch: input.epoch,
    };
    spec.labels.insert(LABEL_META.into(), meta.to_label());
    (spec, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egg(json: &str) -> EggConfig<'static> {
        serde_json::from_str::<EggConfig<'_>>(json)
            .unwrap()
            .into_owned()
    }

    const EGG: &str = r#"{
        "name": "minecraft-java",
        "image": "ghcr.io/pterodactyl/yolks:java_17",
        "ports": {"25565": 30001, "25565/udp": 30001, "8123": 30002},
        "environment": {"SERVER_JARFILE": "server.jar", "SECRET_LOOKING": "x{{SERVER_PORT}}"},
        "limits": {"memory": "2048m", "cpu": "1.5", "disk": "5g"},
        "startup": "java -Xmx{{SERVER_MEMORY}}M -jar {{ SERVER_JARFILE }} --port {{SERVER_PORT}} --ip {{SERVER_IP}}",
        "stop": {"command": "stop"},
        "query": {"type": "minecraft", "port": 25565}
    }"#;

    fn input(policy: &NodePolicy) -> PlanInput<'_> {
        PlanInput {
            agent_id: "agent-1",
            server_id: "srv-1",
            volume: "/data/volumes/srv-1",
            policy,
            epoch: 3,
        }
    }

    #[test]
    fn builds_a_hardened_spec_with_substituted_startup() {
        let egg = egg(EGG);
        let valid = validate::egg(&egg).unwrap();
        let policy = NodePolicy::default();
        let (spec, meta) = plan(&input(&policy), &egg, &valid);
        let startup = "java -Xmx2048M -jar server.jar --port 25565 --ip 0.0.0.0";
        assert_eq!(
            spec.cmd.as_deref(),
            Some(&["/bin/sh".to_string(), "-c".into(), startup.into()][..])
        );
        assert!(spec.env.contains(&format!("STARTUP={startup}")));
        assert!(spec.env.contains(&"SERVER_MEMORY=2048".to_string()));
        assert!(spec.env.contains(&"SERVER_PORT=25565".to_string()));
        assert!(spec.env.contains(&"SERVER_IP=0.0.0.0".to_string()));
        // Egg values are passed verbatim, never substituted themselves.
        assert!(
            spec.env
                .contains(&"SECRET_LOOKING=x{{SERVER_PORT}}".to_string())
        );
        assert_eq!(spec.user.as_deref(), Some("1000:1000"));
        assert_eq!(spec.working_dir.as_deref(), Some("/server"));
        assert_eq!(spec.stop_signal.as_deref(), Some("SIGTERM"));
        let v = serde_json::to_value(&spec).unwrap();
        let hc = &v["HostConfig"];
        assert_eq!(hc["Memory"], 2048i64 << 20);
        assert_eq!(hc["MemorySwap"], 2048i64 << 20);
        assert_eq!(hc["NanoCpus"], 1_500_000_000i64);
        assert_eq!(hc["PidsLimit"], PIDS_LIMIT);
        assert_eq!(hc["NetworkMode"], "ctrl-servers");
        assert_eq!(hc["LogConfig"]["Type"], "json-file");
        assert_eq!(hc["LogConfig"]["Config"]["max-size"], "16777216");
        assert_eq!(hc["LogConfig"]["Config"]["max-file"], "3");
        assert_eq!(hc["ReadonlyRootfs"], true);
        assert_eq!(hc["CapDrop"][0], "ALL");
        assert_eq!(hc["SecurityOpt"][0], "no-new-privileges");
        assert!(hc["Tmpfs"]["/tmp"].is_string());
        assert_eq!(hc["Mounts"][0]["Source"], "/data/volumes/srv-1");
        assert_eq!(hc["Mounts"][0]["Target"], "/server");
        assert_eq!(hc["PortBindings"]["25565/tcp"][0]["HostPort"], "30001");
        assert_eq!(hc["PortBindings"]["25565/udp"][0]["HostPort"], "30001");
        assert_eq!(hc["PortBindings"]["8123/tcp"][0]["HostPort"], "30002");
        assert_eq!(hc["PortBindings"]["25565/tcp"][0]["HostIp"], "");
        assert_eq!(v["Labels"]["ctrl.agent"], "agent-1");
        assert_eq!(v["Labels"]["ctrl.server"], "srv-1");
        let label = v["Labels"]["ctrl.meta"].as_str().unwrap();
        assert_eq!(Meta::from_label(label).as_ref(), Some(&meta));
        assert_eq!(meta.stop_command.as_deref(), Some("stop"));
        assert_eq!(meta.query_port, Some(25565));
        assert_eq!(meta.host_port_for(25565), Some(30001));
        assert_eq!(meta.host_port_for(1), None);
        assert_eq!(meta.disk, 5 << 30);
        assert_eq!(meta.cpu_millis, 1500);
        spec.validate().unwrap();
    }

    #[test]
    fn egg_user_and_stop_signal_are_honoured() {
        let egg = egg(
            r#"{"name":"x","image":"img","limits":{"memory":"64m","cpu":"0.5","disk":"1g"},
                "startup":"run","user":"1234:5678","stop":{"signal":"INT"}}"#,
        );
        let valid = validate::egg(&egg).unwrap();
        let policy = NodePolicy {
            host_ip: [127, 0, 0, 1].into(),
            pids_per_server: 256,
            ..NodePolicy::default()
        };
        let (spec, meta) = plan(&input(&policy), &egg, &valid);
        assert_eq!(spec.user.as_deref(), Some("1234:5678"));
        assert_eq!((meta.uid, meta.gid), (1234, 5678));
        assert_eq!(spec.stop_signal.as_deref(), Some("SIGINT"));
        assert!(!spec.env.iter().any(|e| e.starts_with("SERVER_PORT=")));
        assert_eq!(spec.host_config.pids_limit, Some(256));
        assert_eq!(meta.pids, 256);
    }

    #[test]
    fn ports_are_published_on_the_nodes_address_when_one_is_configured() {
        let egg = egg(EGG);
        let valid = validate::egg(&egg).unwrap();
        let policy = NodePolicy {
            host_ip: [10, 1, 2, 3].into(),
            ..NodePolicy::default()
        };
        let (spec, _) = plan(&input(&policy), &egg, &valid);
        let v = serde_json::to_value(&spec).unwrap();
        for key in ["25565/tcp", "25565/udp", "8123/tcp"] {
            assert_eq!(
                v["HostConfig"]["PortBindings"][key][0]["HostIp"],
                "10.1.2.3"
            );
        }
    }

    #[test]
    fn the_install_container_is_confined_like_the_server() {
        let mut e = egg(EGG);
        e.user = Some("1234:5678".into());
        e.install = Some(InstallScript {
            image: "inst:1".into(),
            entrypoint: "ash".into(),
            script: "cd /mnt/server\necho ok > x\n".into(),
        });
        let valid = validate::egg(&e).unwrap();
        let policy = NodePolicy::default();
        let (server, meta) = plan(&input(&policy), &e, &valid);
        let extras = Extras::from_egg(&e);
        let spec = plan_install(&input(&policy), &meta, &extras, e.install.as_ref().unwrap());
        spec.validate().unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        let s = serde_json::to_value(&server).unwrap();
        assert_eq!(v["Image"], "inst:1");
        assert_eq!(
            v["Entrypoint"],
            serde_json::json!(["ash", "-c", "cd /mnt/server\necho ok > x\n"])
        );
        assert_eq!(v["User"], "1234:5678");
        assert_eq!(v["WorkingDir"], "/mnt/server");
        assert_eq!(v["OpenStdin"], false);
        assert!(v["ExposedPorts"].as_object().unwrap().is_empty());
        let env: Vec<&str> = v["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.as_str())
            .collect();
        for want in [
            "SERVER_JARFILE=server.jar",
            "SERVER_MEMORY=2048",
            "SERVER_PORT=25565",
            "SERVER_IP=0.0.0.0",
            "HOME=/mnt/server",
        ] {
            assert!(env.contains(&want), "{want} missing from {env:?}");
        }
        let (hc, shc) = (&v["HostConfig"], &s["HostConfig"]);
        for same in [
            "Memory",
            "MemorySwap",
            "NanoCpus",
            "PidsLimit",
            "CapDrop",
            "CapAdd",
            "SecurityOpt",
            "ReadonlyRootfs",
            "Tmpfs",
            "NetworkMode",
            "LogConfig",
        ] {
            assert_eq!(hc[same], shc[same], "{same}");
        }
        assert!(hc.get("Privileged").is_none());
        assert!(hc["PortBindings"].as_object().unwrap().is_empty());
        assert_eq!(hc["Mounts"][0]["Source"], "/data/volumes/srv-1");
        assert_eq!(hc["Mounts"][0]["Target"], "/mnt/server");
        assert_eq!(v["Labels"]["ctrl.install"], "srv-1");
        assert_eq!(v["Labels"]["ctrl.agent"], "agent-1");
        assert!(v["Labels"].get("ctrl.server").is_none());
        assert_eq!(
            install_container_name(DEFAULT_NAME_PREFIX, "srv-1"),
            "ctrl-srv-1.install"
        );
        assert_eq!(container_name("b-", "srv-1"), "b-srv-1");
        assert!(has_prefix("/b-srv-1", "b-") && !has_prefix("/ctrl-srv-1", "b-"));
        assert!(check_prefix("ctrl-").is_ok() && check_prefix("n2_").is_ok());
        for bad in ["", "-x", "a.b", "a/b", &"x".repeat(33)] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_from_before_the_pids_field_read_the_default() {
        let old = r#"{"memory":1,"cpuMillis":1,"disk":1,"ports":[],"stopSignal":"SIGTERM","uid":1000,"gid":1000}"#;
        assert_eq!(Meta::from_label(old).unwrap().pids, u64::from(PIDS_LIMIT));
    }
}
