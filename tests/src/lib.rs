//! Helpers for the end-to-end tests: the real `panel` and `agent` binaries, the real Docker
//! Engine, and guards that clean up containers and processes even when a test panics.

pub mod agent;
pub mod cdp;
pub mod egg;
pub mod events;
pub mod moving;
pub mod panel;
pub mod stack;
pub mod transfer;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Whether the Docker Engine answers. With `CI=true` a missing engine fails the test; without
/// it the caller skips with a notice.
pub fn docker_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: Docker Engine is required when CI=true but is not reachable"
        );
        eprintln!("SKIP {test}: Docker Engine not reachable");
    }
    ok
}

/// The test image built by `tests/fakegame/build-image.sh`.
pub const FAKEGAME_IMAGE: &str = "ctrl-fakegame:latest";

/// Builds `ctrl-fakegame:latest` once per test process (the script is idempotent and cheap
/// when nothing changed). Test binaries run concurrently (and other checkouts may share the
/// Docker Engine), so the build runs under an exclusive `flock` on a lock file in the temp
/// dir. A failed build fails every caller with the same message.
pub fn ensure_fakegame_image() {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = RESULT
        .get_or_init(|| build_image("ctrl-fakegame-image.lock", "tests/fakegame/build-image.sh"));
    if let Err(e) = result {
        panic!("building the fakegame image {FAKEGAME_IMAGE}: {e}");
    }
}

/// The install-script test image built by `tests/installer/build-image.sh`: Debian's
/// static busybox (`sh`, `ash`, `wget`, ...) imported as a root filesystem.
pub const INSTALLER_IMAGE: &str = "ctrl-installer:latest";

/// Builds `ctrl-installer:latest` once per test process, like [`ensure_fakegame_image`].
pub fn ensure_installer_image() {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        build_image(
            "ctrl-installer-image.lock",
            "tests/installer/build-image.sh",
        )
    });
    if let Err(e) = result {
        panic!("building the installer image {INSTALLER_IMAGE}: {e}");
    }
}

/// Runs an image build script of this repository under an exclusive lock.
#[allow(unsafe_code, reason = "flock(2) through libc")]
fn build_image(lock_name: &str, script: &str) -> Result<(), String> {
    let lock_path = std::env::temp_dir().join(lock_name);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    // SAFETY: flock(2) on a descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!(
            "locking {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        ));
    }
    let script = repo_root().join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    drop(lock);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Path of a workspace binary built with the same profile as the running test.
///
/// The first call in a process makes sure `panel` and `agent` are not stale: when both
/// binaries are newer than every source and manifest they are built from (the normal case
/// right after `cargo test --workspace`, which builds them), they are used as they are;
/// otherwise (e.g. a plain `cargo test -p e2e` after an edit) `cargo build -p panel -p agent`
/// runs first. Set `E2E_SKIP_BUILD=1` to never build.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    let built = BUILT.get_or_init(|| {
        if std::env::var_os("E2E_SKIP_BUILD").is_some() || binaries_fresh(&dir) {
            return Ok(());
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "panel", "-p", "agent"]);
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        // Build into the target dir this test binary lives in.
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let out = cmd
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cargo build -p panel -p agent failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let path = dir.join(name);
    assert!(path.exists(), "{} does not exist", path.display());
    path
}

/// Whether `panel` and `agent` in `dir` are both newer than every file they are built from
/// (`proto/`, `panel/`, `agent/` sources and manifests, `panel/ui/`, the workspace manifest
/// and lock).
fn binaries_fresh(dir: &Path) -> bool {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(oldest_bin) = ["panel", "agent"]
        .iter()
        .map(|b| mtime(&dir.join(b)))
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().min())
    else {
        return false;
    };
    fn newest(path: &Path, acc: &mut Option<std::time::SystemTime>) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(path) {
                for e in rd.flatten() {
                    newest(&e.path(), acc);
                }
            }
        } else if let Ok(m) = meta.modified() {
            *acc = Some(acc.map_or(m, |a| a.max(m)));
        }
    }
    let root = repo_root();
    let mut newest_src = None;
    for p in ["Cargo.toml", "Cargo.lock"] {
        newest(&root.join(p), &mut newest_src);
    }
    for krate in ["proto", "panel", "agent"] {
        newest(&root.join(krate).join("Cargo.toml"), &mut newest_src);
        newest(&root.join(krate).join("src"), &mut newest_src);
    }
    // The web UI is embedded in the panel binary.
    newest(&root.join("panel/ui"), &mut newest_src);
    newest_src.is_some_and(|src| src < oldest_bin)
}

/// A free TCP port on 127.0.0.1 (racy by nature; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A unique temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ctrl-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Volumes written by containers may belong to another uid; best effort.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL) and reaped on drop. Its stdout and stderr lines are
/// collected so a failing test can show them.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    output: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let output = std::sync::Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            let tag = name.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("E2E_VERBOSE").is_some() {
                        eprintln!("[{tag}] {line}");
                    }
                    out.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child: Some(child),
            output,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the process is still running (not exited, not killed by us).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Every line printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until a printed line contains `needle`; panics with the output on timeout.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.output().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "{} never printed {needle:?}; output:\n{}",
                self.name,
                self.output().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    #[allow(unsafe_code, reason = "kill(2) through libc")]
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("E2E_VERBOSE").is_none() {
            let out = self.output();
            let skip = out.len().saturating_sub(150);
            eprintln!(
                "---- output of {} (last {} lines) ----\n{}\n---- end of {} ----",
                self.name,
                out.len() - skip,
                out[skip..].join("\n"),
                self.name
            );
        }
        self.kill9();
    }
}

/// Removes every container carrying `label` (e.g. `ctrl.agent=<id>`) on drop, panic or not.
pub struct ContainerGuard(pub String);

impl ContainerGuard {
    pub fn remove_now(&self) {
        let ids = containers_with_label(&self.0);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Ids of every container (running or not) carrying `label` (`key=value`).
pub fn containers_with_label(label: &str) -> Vec<String> {
    Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label={label}"),
        ])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the `docker` CLI and returns its trimmed stdout; a failure fails the test with
/// Docker's stderr.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether the container `id` (or name) is running, according to Docker itself.
pub fn container_running(id: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "--format", "{{.State.Running}}", id])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
        .unwrap_or(false)
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        self.remove_now();
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
