//! One container's resource sample, two ways, side by side in one run:
//!
//! - `container_stats/cgroup_fds_pread`: the agent's way — cgroup files (`cpuacct.usage`,
//!   `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.stat`; the v2 names on a
//!   unified host) and `/proc/<pid>/net/dev`, opened once, re-read with `pread` (parsing
//!   included).
//! - `container_stats/docker_api_one_shot`: Docker's `GET /containers/{id}/stats?stream=false`
//!   (`one-shot=1` on API ≥ 1.41, so Docker does not wait a second for a CPU delta), over
//!   the Unix socket, decoded — the cheapest form the Engine offers.
//!
//! Needs the Docker Engine and `ctrl-fakegame:latest` (`tests/fakegame/build-image.sh`). The
//! container is labelled `ctrl.test=1` and removed at the end (and on the next run, should
//! a previous one have been interrupted).
//!
//! Run: `cargo bench -p benches --bench stats`.

#![allow(unsafe_code, reason = "sysconf(_SC_CLK_TCK) through libc")]

use agent::docker::{CreateSpec, DockerClient};
use agent::stats::ContainerSampler;
use criterion::{Criterion, black_box};
use std::time::Duration;

const SOCKET: &str = "/var/run/docker.sock";
const IMAGE: &str = "ctrl-fakegame:latest";
const NAME: &str = "ctrl-bench-stats";

struct Running {
    docker: DockerClient,
    id: String,
    pid: u32,
}

fn start() -> Running {
    smol::block_on(async {
        let docker = DockerClient::connect(SOCKET)
            .await
            .expect("the stats bench needs the Docker Engine at /var/run/docker.sock");
        let _ = docker.container_remove(NAME, true, true).await;
        let mut spec = CreateSpec::new(IMAGE);
        spec.cmd = Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "fakegame --port 25565".into(),
        ]);
        spec.labels.insert("ctrl.test".into(), "1".into());
        spec.host_config.memory = 128 << 20;
        spec.host_config.memory_swap = 128 << 20;
        let id = docker
            .container_create(NAME, &spec)
            .await
            .expect("create (is ctrl-fakegame:latest built? tests/fakegame/build-image.sh)");
        docker.container_start(&id).await.expect("start");
        let pid = docker
            .container_inspect(&id)
            .await
            .expect("inspect")
            .state
            .pid as u32;
        Running { docker, id, pid }
    })
}

fn container_stats(c: &mut Criterion, run: &Running) {
    let mut sampler = ContainerSampler::open(run.pid).expect("open the container's cgroup files");
    let mut group = c.benchmark_group("container_stats");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("cgroup_fds_pread", |b| {
        b.iter(|| black_box(sampler.sample().expect("sample")))
    });
    // Each Docker answer waits for the Engine's 1 s collection tick: fewer samples.
    group.sample_size(10);
    group.bench_function("docker_api_one_shot", |b| {
        b.iter(|| {
            black_box(smol::block_on(run.docker.container_stats_once(&run.id)).expect("stats"))
        })
    });
    group.finish();
}

/// CPU seconds (user + system) of a process from `/proc/<pid>/stat`.
fn proc_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14) + ticks(15)) / hz
}

/// The Docker Engine's processes: dockerd, containerd and the shims (which read the
/// cgroups for Docker's stats).
fn engine_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if matches!(comm.trim(), "dockerd" | "containerd" | "containerd-shim") {
            pids.push(pid);
        }
    }
    pids
}

/// CPU seconds this process has used (all threads).
fn self_cpu() -> f64 {
    let ru = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(ru.user_time()) + tv(ru.system_time())
}

/// Latency is not cost: Docker's one-shot answer waits for its 1 s collection tick. This
/// measures the CPU time burnt per sample, by this process and (for Docker) by the Engine's
/// processes, which other work on the host may inflate a little.
fn cpu_cost(run: &Running) {
    let mut sampler = ContainerSampler::open(run.pid).expect("open");
    const N_PREAD: u32 = 100_000;
    let before = self_cpu();
    for _ in 0..N_PREAD {
        black_box(sampler.sample().expect("sample"));
    }
    let pread = (self_cpu() - before) / f64::from(N_PREAD);

    const N_DOCKER: u32 = 30;
    let engine = engine_pids();
    let engine_cpu = || engine.iter().map(|&p| proc_cpu(p)).sum::<f64>();
    let (self0, engine0) = (self_cpu(), engine_cpu());
    for _ in 0..N_DOCKER {
        black_box(smol::block_on(run.docker.container_stats_once(&run.id)).expect("stats"));
    }
    let ours = (self_cpu() - self0) / f64::from(N_DOCKER);
    let theirs = (engine_cpu() - engine0) / f64::from(N_DOCKER);
    let docker = ours + theirs;
    println!(
        "container_stats CPU per sample: cgroup_fds_pread {:.2} µs; docker_api_one_shot {:.0} µs \
         ({:.0} µs in this process + {:.0} µs in dockerd/containerd/shims, {} processes); \
         ratio {:.0}x",
        pread * 1e6,
        docker * 1e6,
        ours * 1e6,
        theirs * 1e6,
        engine.len(),
        docker / pread
    );
}

fn benches() {
    let run = start();
    let mut c = Criterion::default().configure_from_args();
    container_stats(&mut c, &run);
    cpu_cost(&run);
    smol::block_on(run.docker.container_remove(&run.id, true, true)).expect("remove");
    c.final_summary();
}

fn main() {
    benches();
}
