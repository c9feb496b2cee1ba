//! Serde shapes for the Engine's answers: only the fields the agent uses. Docker writes
//! `null` for many empty collections, hence `null_default` on maps and lists.

use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, HashMap};

/// Deserializes `null` (or a missing field, with `#[serde(default)]`) as `T::default()`.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `GET /version`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    /// Engine version, e.g. "20.10.24".
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion", default)]
    pub min_api_version: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub kernel_version: String,
}

/// `GET /info`: what the agent reports as its capabilities.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    #[serde(rename = "NCPU", default)]
    pub ncpu: u32,
    /// Bytes.
    #[serde(default)]
    pub mem_total: u64,
    /// e.g. "x86_64", "aarch64".
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub server_version: String,
    #[serde(default)]
    pub operating_system: String,
    #[serde(rename = "OSType", default)]
    pub os_type: String,
    #[serde(default)]
    pub kernel_version: String,
    /// "cgroupfs" or "systemd": where container cgroups live.
    #[serde(default)]
    pub cgroup_driver: String,
    /// "1" or "2" (empty on engines older than API 1.40).
    #[serde(default)]
    pub cgroup_version: String,
}

/// `GET /images/{name}/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    #[serde(default)]
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub repo_tags: Vec<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub config: ImageConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub cmd: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
}

/// `GET /containers/{id}/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    #[serde(default)]
    pub id: String,
    /// With Docker's leading slash, e.g. "/ctrl-abc".
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub state: ContainerState,
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// "created", "running", "paused", "restarting", "removing", "exited" or "dead".
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub running: bool,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub restarting: bool,
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub dead: bool,
    /// Host pid of the container's init process; 0 when not running.
    #[serde(default)]
    pub pid: i64,
    #[serde(default)]
    pub exit_code: i64,
    /// Docker's error for a failed start, empty otherwise.
    #[serde(default)]
    pub error: String,
    /// RFC 3339; "0001-01-01T00:00:00Z" when never started.
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub open_stdin: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
    /// "25565/tcp" → host bindings (`None` for an exposed but unpublished port).
    #[serde(default, deserialize_with = "null_default")]
    pub ports: BTreeMap<String, Option<Vec<PortBindingOut>>>,
}

/// A published port as Docker reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBindingOut {
    #[serde(default)]
    pub host_ip: String,
    #[serde(default)]
    pub host_port: String,
}

/// One row of `GET /containers/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    #[serde(default)]
    pub id: String,
    /// With leading slashes.
    #[serde(default, deserialize_with = "null_default")]
    pub names: Vec<String>,
    #[serde(default)]
    pub image: String,
    /// "running", "exited", ...
    #[serde(default)]
    pub state: String,
    /// Human text, e.g. "Up 3 minutes".
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
}

/// `POST /containers/create`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateResponse {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub warnings: Vec<String>,
}

/// `GET /containers/{id}/stats?stream=false`, as Docker reports it (snake_case fields).
/// Counters are cumulative; with the one-shot form `precpu_stats` is empty.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Stats {
    #[serde(default)]
    pub read: String,
    #[serde(default, deserialize_with = "null_default")]
    pub cpu_stats: CpuStats,
    #[serde(default, deserialize_with = "null_default")]
    pub precpu_stats: CpuStats,
    #[serde(default, deserialize_with = "null_default")]
    pub memory_stats: MemoryStats,
    #[serde(default, deserialize_with = "null_default")]
    pub networks: HashMap<String, NetworkStats>,
    #[serde(default, deserialize_with = "null_default")]
    pub pids_stats: PidsStats,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CpuStats {
    #[serde(default, deserialize_with = "null_default")]
    pub cpu_usage: CpuUsage,
    /// Host CPU time in nanoseconds (for percentages); absent on stopped containers.
    #[serde(default)]
    pub system_cpu_usage: Option<u64>,
    #[serde(default)]
    pub online_cpus: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CpuUsage {
    /// Nanoseconds of CPU time.
    #[serde(default)]
    pub total_usage: u64,
    #[serde(default)]
    pub usage_in_kernelmode: u64,
    #[serde(default)]
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MemoryStats {
    /// Bytes, including page cache.
    #[serde(default)]
    pub usage: Option<u64>,
    #[serde(default)]
    pub limit: Option<u64>,
    /// cgroup v1 only.
    #[serde(default)]
    pub max_usage: Option<u64>,
    /// Raw cgroup memory.stat counters (keys differ between cgroup v1 and v2).
    #[serde(default, deserialize_with = "null_default")]
    pub stats: HashMap<String, u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkStats {
    #[serde(default)]
    pub rx_bytes: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    #[serde(default)]
    pub rx_packets: u64,
    #[serde(default)]
    pub tx_packets: u64,
    #[serde(default)]
    pub rx_errors: u64,
    #[serde(default)]
    pub tx_errors: u64,
    #[serde(default)]
    pub rx_dropped: u64,
    #[serde(default)]
    pub tx_dropped: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PidsStats {
    #[serde(default)]
    pub current: Option<u64>,
    #[serde(default)]
    pub limit: Option<u64>,
}

/// Docker's `filters` query parameter: `{"label": ["a=b"], "type": ["container"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value; several values for a key are OR-ed by Docker, keys are AND-ed.
    pub fn add(mut self, key: &str, value: &str) -> Self {
        self.0
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The JSON text Docker expects (before URL encoding).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_string())
    }
}

/// Options for `GET /containers/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsOptions {
    /// Keep the stream open and deliver new output as it is written.
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Only output since this Unix time (seconds).
    pub since: Option<i64>,
    /// Only the last N lines; `None` for all.
    pub tail: Option<u64>,
    /// Prefix each line with an RFC 3339 timestamp.
    pub timestamps: bool,
}

impl Default for LogsOptions {
    fn default() -> Self {
        Self {
            follow: false,
            stdout: true,
            stderr: true,
            since: None,
            tail: None,
            timestamps: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> T {
        let mut v = s.as_bytes().to_vec();
        simd_json::serde::from_slice(&mut v).unwrap()
    }

    #[test]
    fn inspect_with_nulls_decodes() {
        let c: ContainerInspect = parse(
            r#"{"Id":"abc","Name":"/x","State":{"Status":"exited","Running":false,"OOMKilled":true,"Pid":0,"ExitCode":137,"StartedAt":"2024-01-01T00:00:00Z","FinishedAt":"2024-01-01T00:01:00Z"},"Config":{"Labels":null,"Tty":false,"Env":null},"NetworkSettings":{"IPAddress":"","Ports":{"25565/tcp":[{"HostIp":"127.0.0.1","HostPort":"25565"}],"80/tcp":null}}}"#,
        );
        assert_eq!(c.id, "abc");
        assert!(c.state.oom_killed);
        assert_eq!(c.state.exit_code, 137);
        assert!(c.config.labels.is_empty());
        assert_eq!(
            c.network_settings.ports["25565/tcp"].as_deref(),
            Some(
                &[PortBindingOut {
                    host_ip: "127.0.0.1".into(),
                    host_port: "25565".into()
                }][..]
            )
        );
        assert_eq!(c.network_settings.ports["80/tcp"], None);
    }

    #[test]
    fn info_and_stats_decode() {
        let i: Info = parse(
            r#"{"NCPU":4,"MemTotal":8000000000,"Architecture":"x86_64","ServerVersion":"20.10.24","CgroupVersion":"2","Unknown":[1,2]}"#,
        );
        assert_eq!(
            (i.ncpu, i.mem_total, i.architecture.as_str()),
            (4, 8_000_000_000, "x86_64")
        );
        let s: Stats = parse(
            r#"{"read":"t","cpu_stats":{"cpu_usage":{"total_usage":10,"percpu_usage":null},"system_cpu_usage":99,"online_cpus":2},"precpu_stats":{"cpu_usage":{"total_usage":0}},"memory_stats":{"usage":5,"stats":{"anon":3}},"networks":{"eth0":{"rx_bytes":7,"tx_bytes":8}},"pids_stats":{"current":1}}"#,
        );
        assert_eq!(s.cpu_stats.cpu_usage.total_usage, 10);
        assert_eq!(s.memory_stats.stats["anon"], 3);
        assert_eq!(s.networks["eth0"].tx_bytes, 8);
        let empty: Stats = parse(r#"{"read":"t","memory_stats":{},"networks":null}"#);
        assert!(empty.networks.is_empty());
    }

    #[test]
    fn filters_serialize_as_docker_expects() {
        let f = Filters::new()
            .add("label", "a=b")
            .add("type", "container")
            .add("label", "c");
        assert_eq!(f.to_json(), r#"{"label":["a=b","c"],"type":["container"]}"#);
        assert!(Filters::new().is_empty());
    }
}
