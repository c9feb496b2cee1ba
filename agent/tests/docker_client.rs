//! The Docker client against the real Engine at /var/run/docker.sock.
//!
//! No image can be pulled here, so the tests build their own: a tiny static C program
//! (`gcc -static`) in a `FROM scratch` image tagged `ctrl-dockertest:latest`. Without a
//! Docker socket the tests print a notice and pass, unless `CI=true`, where they fail.
//! Every container is labelled `ctrl.test=1` and force-removed by a guard, even on panic.

use agent::docker::{
    AttachOptions, CreateSpec, DockerClient, DockerError, Event, Filters, LogsOptions, Missing,
    Mount, OutputStream, Protocol, StreamKind,
};
use futures_lite::{AsyncWriteExt, StreamExt, future};
use proto::ErrorCode;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const SOCKET: &str = "/var/run/docker.sock";
const IMAGE: &str = "ctrl-dockertest:latest";

/// The test program: says "ready" on both streams, echoes stdin lines, obeys "stop",
/// "exit N" and "err TEXT", exits 0 on SIGTERM, and with `exit N` as arguments exits at
/// once. With stdin closed it waits for a signal.
const PROGRAM: &str = r#"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(int fd, const char *s) { write(fd, s, strlen(s)); }
static void on_term(int sig) { (void)sig; say(1, "got SIGTERM\n"); _exit(0); }

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "exit") == 0) return atoi(argv[2]);
    signal(SIGTERM, on_term);
    say(1, "ready\n");
    say(2, "ready-err\n");
    char line[4096];
    size_t len = 0;
    for (;;) {
        char c;
        ssize_t n = read(0, &c, 1);
        if (n <= 0) break;
        if (c != '\n') { if (len < sizeof line - 1) line[len++] = c; continue; }
        line[len] = 0;
        len = 0;
        if (strcmp(line, "stop") == 0) { say(1, "stopping\n"); return 0; }
        if (strncmp(line, "exit ", 5) == 0) return atoi(line + 5);
        if (strncmp(line, "err ", 4) == 0) { say(2, line + 4); say(2, "\n"); continue; }
        say(1, "echo: "); say(1, line); say(1, "\n");
    }
    for (;;) pause();
}
"#;

/// Connects to the Engine, or `None` (with a notice) when there is none and CI is unset.
fn docker() -> Option<DockerClient> {
    if !Path::new(SOCKET).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Docker socket at {SOCKET}"
        );
        eprintln!("NOTICE: no Docker socket at {SOCKET}; skipping this Docker test");
        return None;
    }
    let client = smol::block_on(DockerClient::connect(SOCKET)).expect("connect to Docker");
    build_image();
    Some(client)
}

/// Builds the test image once per test run.
fn build_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ctrl-dockertest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prog.c"), PROGRAM).unwrap();
        run(Command::new("gcc")
            .args(["-static", "-O2", "-o", "prog", "prog.c"])
            .current_dir(&dir));
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY prog /prog\nLABEL ctrl.test=1\nENTRYPOINT [\"/prog\"]\n",
        )
        .unwrap();
        run(Command::new("docker")
            .args(["build", "-q", "-t", IMAGE, "."])
            .current_dir(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn a helper command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Unique container names, and force-removal of everything created, even on panic. Uses
/// the CLI so that cleanup needs no async runtime inside `Drop`.
struct Containers {
    names: Vec<String>,
}

impl Containers {
    fn new() -> Self {
        Self { names: Vec::new() }
    }

    fn name(&mut self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "ctrl-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.names.push(name.clone());
        name
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("docker").args(["rm", "-f", name]).output();
        }
    }
}

/// A spec for the test image, labelled for cleanup and for per-test filtering.
fn spec(run_label: &str) -> CreateSpec {
    let mut spec = CreateSpec::new(IMAGE);
    spec.labels.insert("ctrl.test".into(), "1".into());
    spec.labels.insert("ctrl.test.run".into(), run_label.into());
    spec
}

/// A guard against hangs only (a broken stream must fail the test, not stall it); no
/// assertion depends on how long anything takes.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    future::or(fut, async {
        smol::Timer::after(Duration::from_secs(120)).await;
        panic!("gave up waiting for {what}");
    })
    .await
}

/// A container's output read so far, per stream: stdout and stderr interleave in any
/// order, so waits look at everything seen, not only at what comes next.
struct Output {
    stream: OutputStream,
    stdout: String,
    stderr: String,
}

impl Output {
    fn new(stream: OutputStream) -> Self {
        Self {
            stream,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    /// Reads until `needle` has been seen on `kind`.
    async fn until(&mut self, kind: StreamKind, needle: &str) {
        loop {
            let seen = match kind {
                StreamKind::Stdout => &self.stdout,
                StreamKind::Stderr => &self.stderr,
                other => panic!("not a test stream: {other:?}"),
            };
            if seen.contains(needle) {
                return;
            }
            let (k, data) = self
                .stream
                .next()
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "stream ended before {needle:?}; stdout {:?}, stderr {:?}",
                        self.stdout, self.stderr
                    )
                })
                .expect("output chunk");
            let text = String::from_utf8_lossy(&data);
            match k {
                StreamKind::Stdout => self.stdout.push_str(&text),
                StreamKind::Stderr => self.stderr.push_str(&text),
                other => panic!("unexpected {other:?} output: {text:?}"),
            }
        }
    }

    /// Reads to the end of the stream, failing on any error.
    async fn drain(&mut self) {
        while let Some(item) = self.stream.next().await {
            let (k, data) = item.expect("output chunk");
            let text = String::from_utf8_lossy(&data);
            match k {
                StreamKind::Stdout => self.stdout.push_str(&text),
                _ => self.stderr.push_str(&text),
            }
        }
    }
}

#[test]
fn missing_socket_is_a_clear_error() {
    let e = smol::block_on(DockerClient::connect("/nonexistent/ctrl/docker.sock")).unwrap_err();
    assert!(
        matches!(&e, DockerError::SocketMissing { path } if path == &PathBuf::from("/nonexistent/ctrl/docker.sock")),
        "{e:?}"
    );
    assert!(e.to_string().contains("/nonexistent/ctrl/docker.sock"));
}

#[test]
fn version_is_negotiated_and_info_reports_capabilities() {
    let Some(client) = docker() else { return };
    smol::block_on(async {
        let version = client.version().await.unwrap();
        let server = agent::docker::ApiVersion::parse(&version.api_version).unwrap();
        assert_eq!(
            client.api_version(),
            server.min(agent::docker::ApiVersion::MAX)
        );
        assert!(!version.version.is_empty());
        let info = client.info().await.unwrap();
        assert!(info.ncpu > 0);
        assert!(info.mem_total > 0);
        assert!(!info.architecture.is_empty());
        assert_eq!(info.server_version, version.version);
    });
}

#[test]
fn missing_things_are_not_found() {
    let Some(client) = docker() else { return };
    smol::block_on(async {
        let ghost = format!("ctrl-test-ghost-{}", std::process::id());
        let e = client.container_inspect(&ghost).await.unwrap_err();
        assert!(e.is_container_not_found(), "{e:?}");
        assert_eq!(e.code(), ErrorCode::ContainerNotFound);
        let e = client.container_start(&ghost).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::ContainerNotFound);

        assert!(client.image_inspect(&ghost).await.unwrap().is_none());
        assert!(client.image_inspect(IMAGE).await.unwrap().is_some());

        let mut containers = Containers::new();
        let e = client
            .container_create(
                &containers.name(),
                &CreateSpec::new(format!("{ghost}:nope")),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DockerError::NotFound {
                    what: Missing::Image,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.code(), ErrorCode::DockerError);
    });
}

#[test]
fn pulling_a_missing_image_fails_naming_it() {
    let Some(client) = docker() else { return };
    smol::block_on(async {
        let image = format!("ctrl-test-no-such-image-{}:v1", std::process::id());
        let e = client.image_pull(&image).await.unwrap_err();
        assert!(matches!(e, DockerError::ImagePull { .. }), "{e:?}");
        assert!(e.to_string().contains(&image), "{e}");
        assert_eq!(e.code(), ErrorCode::DockerError);
    });
}

#[test]
fn lifecycle_with_a_hardened_spec_logs_and_stop() {
    let Some(client) = docker() else { return };
    let mut containers = Containers::new();
    let name = containers.name();
    let volume = std::env::temp_dir().join(format!("ctrl-dockertest-vol-{name}"));
    std::fs::create_dir_all(&volume).unwrap();
    smol::block_on(within("the lifecycle", async {
        let mut spec = spec(&name);
        spec.open_stdin = false;
        spec.attach_stdin = false;
        spec.working_dir = Some("/server".into());
        spec.env.push("SERVER_MEMORY=64".into());
        spec.host_config.memory = 64 << 20;
        spec.host_config.memory_swap = 64 << 20;
        spec.host_config.nano_cpus = 500_000_000;
        spec.host_config.pids_limit = Some(64);
        spec.host_config.readonly_rootfs = true;
        spec.host_config.cap_add = vec!["CHOWN".into()];
        spec.host_config
            .mounts
            .push(Mount::bind(volume.to_string_lossy(), "/server", false));
        let id = client.container_create(&name, &spec).await.unwrap();
        assert!(!id.is_empty());

        let inspected = client.container_inspect(&name).await.unwrap();
        assert_eq!(inspected.id, id);
        assert_eq!(inspected.state.status, "created");
        assert_eq!(inspected.config.labels["ctrl.test.run"], name);

        let host = run(Command::new("docker").args([
            "inspect",
            "--format",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Tmpfs}}",
            &id,
        ]));
        assert_eq!(
            host.trim(),
            "67108864 500000000 64 [ALL] [no-new-privileges] true map[/tmp:rw,noexec,nosuid,size=64m]"
        );
        client.container_start(&id).await.unwrap();
        client.container_start(&id).await.unwrap(); // already running: still fine
        let running = client.container_inspect(&id).await.unwrap();
        assert!(running.state.running);
        assert!(running.state.pid > 0);

        let mut logs = Output::new(
            client
                .logs(
                    &id,
                    &LogsOptions {
                        follow: true,
                        ..LogsOptions::default()
                    },
                )
                .await
                .unwrap(),
        );
        logs.until(StreamKind::Stdout, "ready\n").await;
        logs.until(StreamKind::Stderr, "ready-err\n").await;
        let stats = client.container_stats_once(&id).await.unwrap();
        assert!(stats.pids_stats.current.unwrap_or(0) >= 1, "{stats:?}");
        assert!(stats.memory_stats.usage.unwrap_or(0) > 0, "{stats:?}");
        assert!(stats.networks.contains_key("eth0"), "{stats:?}");

        let listed = client
            .containers_by_label(&format!("ctrl.test.run={name}"))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, id);
        assert_eq!(listed[0].state, "running");
        client.container_stop(&id, 10).await.unwrap();
        // The follow stream sees the SIGTERM handler's line, then ends with the container.
        logs.drain().await;
        assert_eq!(logs.stdout, "ready\ngot SIGTERM\n");
        assert_eq!(logs.stderr, "ready-err\n");
        let stopped = client.container_inspect(&id).await.unwrap();
        assert!(!stopped.state.running);
        assert_eq!(stopped.state.exit_code, 0);
        client.container_stop(&id, 10).await.unwrap(); // already stopped: still fine

        // Non-follow logs replay everything and end by themselves.
        let mut all = Output::new(client.logs(&id, &LogsOptions::default()).await.unwrap());
        all.drain().await;
        assert_eq!(all.stdout, "ready\ngot SIGTERM\n");
        assert_eq!(all.stderr, "ready-err\n");

        client.container_remove(&id, false, true).await.unwrap();
        let e = client.container_inspect(&id).await.unwrap_err();
        assert!(e.is_container_not_found(), "{e:?}");
    }));
    std::fs::remove_dir_all(&volume).unwrap();
}

#[test]
fn attach_carries_stdin_and_demuxed_output() {
    let Some(client) = docker() else { return };
    let mut containers = Containers::new();
    let name = containers.name();
    smol::block_on(within("the attach exchange", async {
        let id = client.container_create(&name, &spec(&name)).await.unwrap();
        let attach = client.attach(&id, &AttachOptions::default()).await.unwrap();
        let (mut out, mut stdin) = (Output::new(attach.reader), attach.writer);
        client.container_start(&id).await.unwrap();

        out.until(StreamKind::Stdout, "ready\n").await;
        out.until(StreamKind::Stderr, "ready-err\n").await;
        stdin.write_all(b"hello there\n").await.unwrap();
        out.until(StreamKind::Stdout, "echo: hello there\n").await;

        // The writer works from another task while this one reads.
        let writer = smol::spawn(async move {
            stdin.write_all(b"err oops\n").await.unwrap();
            stdin.write_all(b"stop\n").await.unwrap();
            stdin
        });
        drop(writer.await);
        out.drain().await;
        assert_eq!(out.stdout, "ready\necho: hello there\nstopping\n");
        assert_eq!(out.stderr, "ready-err\noops\n");
        let done = client.container_inspect(&id).await.unwrap();
        assert!(!done.state.running);
        assert_eq!(done.state.exit_code, 0);

        let e = client
            .attach("ctrl-test-ghost-attach", &AttachOptions::default())
            .await
            .err()
            .expect("attach to a missing container fails");
        assert_eq!(e.code(), ErrorCode::ContainerNotFound);
    }));
}

/// Waits for `action` on container `id`, skipping other events.
async fn next_event(events: &mut agent::docker::EventStream, id: &str, action: &str) -> Event {
    loop {
        let event = events
            .next()
            .await
            .expect("event stream ended")
            .expect("event decodes");
        if event.actor.id == id && event.action == action {
            return event;
        }
    }
}

#[test]
fn events_report_start_and_die_with_exit_codes_and_kill_works() {
    let Some(client) = docker() else { return };
    let mut containers = Containers::new();
    let (a, b) = (containers.name(), containers.name());
    smol::block_on(within("container events", async {
        let filters = Filters::new()
            .add("type", "container")
            .add("label", &format!("ctrl.test.run={a}"));
        let mut events = client.events(&filters, None).await.unwrap();

        let mut exits = spec(&a);
        exits.cmd = Some(vec!["exit".into(), "3".into()]);
        let id_a = client.container_create(&a, &exits).await.unwrap();
        client.container_start(&id_a).await.unwrap();
        let start = next_event(&mut events, &id_a, "start").await;
        assert_eq!(start.kind, "container");
        assert_eq!(start.attribute("name"), Some(a.as_str()));
        let die = next_event(&mut events, &id_a, "die").await;
        assert_eq!(die.exit_code(), Some(3));
        assert_eq!(die.attribute("ctrl.test.run"), Some(a.as_str()));

        // SIGKILL: exit code 137; killing a stopped container is a conflict.
        let mut killed = spec(&a);
        killed.open_stdin = false;
        let id_b = client.container_create(&b, &killed).await.unwrap();
        client.container_start(&id_b).await.unwrap();
        next_event(&mut events, &id_b, "start").await;
        client.container_kill(&id_b, "SIGKILL").await.unwrap();
        let die = next_event(&mut events, &id_b, "die").await;
        assert_eq!(die.exit_code(), Some(137));
        let e = client.container_kill(&id_b, "SIGKILL").await.unwrap_err();
        assert!(matches!(e, DockerError::Conflict { .. }), "{e:?}");
        assert_eq!(
            client
                .container_inspect(&id_b)
                .await
                .unwrap()
                .state
                .exit_code,
            137
        );

        client.container_remove(&id_a, false, false).await.unwrap();
        client.container_remove(&id_b, true, false).await.unwrap();
        next_event(&mut events, &id_b, "destroy").await;
    }));
}

#[test]
fn a_taken_host_port_is_a_port_conflict() {
    let Some(client) = docker() else { return };
    let mut containers = Containers::new();
    let (a, b) = (containers.name(), containers.name());
    // A port that was free a moment ago; Docker holds it once the first container starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    smol::block_on(within("the port conflict", async {
        let mut first = spec(&a);
        first.open_stdin = false;
        first.publish(7777, Protocol::Tcp, "127.0.0.1", port);
        first.publish(7777, Protocol::Udp, "127.0.0.1", port);
        let id_a = client.container_create(&a, &first).await.unwrap();
        client.container_start(&id_a).await.unwrap();
        let ports = client
            .container_inspect(&id_a)
            .await
            .unwrap()
            .network_settings
            .ports;
        let tcp = ports["7777/tcp"].as_ref().expect("tcp binding");
        assert_eq!(tcp[0].host_ip, "127.0.0.1");
        assert_eq!(tcp[0].host_port, port.to_string());
        assert!(ports.contains_key("7777/udp"));

        let mut second = spec(&b);
        second.open_stdin = false;
        second.publish(7777, Protocol::Tcp, "127.0.0.1", port);
        let id_b = client.container_create(&b, &second).await.unwrap();
        let e = client.container_start(&id_b).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::PortConflict, "{e:?}");
        assert!(e.to_string().contains(&port.to_string()), "{e}");
    }));
}
