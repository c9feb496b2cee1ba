//! Process-wide shutdown signal.
//!
//! One [`Shutdown`] is created at start-up and cloned into every part of the panel that must
//! stop cleanly (the HTTP accept loop, agent sockets, the event hub). Triggering is
//! idempotent and observable both synchronously ([`Shutdown::is_triggered`]) and
//! asynchronously ([`Shutdown::wait`]). `SIGTERM`/`SIGINT` are turned into a trigger by a
//! classic self-pipe: an async-signal-safe handler writes one byte to a pipe and a small
//! watcher thread reads it — no signal-handling crate, works with any executor.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// A cloneable, idempotent "stop now" flag that tasks can await.
///
/// Implemented as a never-used channel whose closing *is* the signal: `trigger` closes it,
/// so every pending and future `wait` resolves at once without any polling.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: async_channel::Sender<()>,
    rx: async_channel::Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A fresh, untriggered shutdown flag.
    pub fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Shutdown { tx, rx }
    }

    /// Fires the signal (idempotent).
    pub fn trigger(&self) {
        self.tx.close();
    }

    /// Whether [`trigger`](Self::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once triggered (immediately if it already was).
    pub async fn wait(&self) {
        // Nothing is ever sent, so `recv` only returns once the channel is closed.
        let _ = self.rx.recv().await;
    }

    /// Installs `SIGTERM` and `SIGINT` handlers that trigger this shutdown.
    ///
    /// A second signal after the first one is still just a trigger (idempotent); the
    /// process is expected to exit on its own once everything has stopped. Calling this
    /// more than once in a process is an error (one self-pipe per process).
    pub fn on_signals(&self) -> io::Result<()> {
        let (read_end, write_end) = nix::unistd::pipe().map_err(io::Error::from)?;
        set_nonblocking_cloexec(write_end.as_raw_fd())?;
        let write_fd = write_end.as_raw_fd();
        if SIGNAL_PIPE
            .compare_exchange(-1, write_fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "signal handlers are already installed in this process",
            ));
        }
        // The write end must stay open for the life of the process: the handler uses it.
        std::mem::forget(write_end);

        let handler = nix::sys::signal::SigHandler::Handler(on_signal);
        let action = nix::sys::signal::SigAction::new(
            handler,
            nix::sys::signal::SaFlags::SA_RESTART,
            nix::sys::signal::SigSet::empty(),
        );
        for sig in [
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGINT,
        ] {
            // SAFETY: `on_signal` only performs an async-signal-safe `write(2)` on a fd
            // stored in an atomic.
            unsafe { nix::sys::signal::sigaction(sig, &action) }.map_err(io::Error::from)?;
        }

        let me = self.clone();
        std::thread::Builder::new()
            .name("panel-signals".into())
            .spawn(move || watch_pipe(read_end, me))?;
        Ok(())
    }
}

/// Write end of the self-pipe, or -1 before [`Shutdown::on_signals`].
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the fd is valid for the process lifetime.
        // A full pipe (EAGAIN) just means a wake-up is already pending.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

fn set_nonblocking_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        let fdflags = libc::fcntl(fd, libc::F_GETFD);
        if fdflags < 0 || libc::fcntl(fd, libc::F_SETFD, fdflags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn watch_pipe(read_end: OwnedFd, shutdown: Shutdown) {
    let mut buf = [0u8; 16];
    loop {
        match nix::unistd::read(&read_end, &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                log::info!("termination signal received; shutting down");
                shutdown.trigger();
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("signal pipe read failed: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_is_idempotent_and_wakes_waiters() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let clone = s.clone();
        let waiter = std::thread::spawn(move || smol::block_on(clone.wait()));
        s.trigger();
        s.trigger();
        waiter.join().unwrap();
        assert!(s.is_triggered());
        // Already triggered: resolves immediately.
        smol::block_on(s.wait());
    }

    #[test]
    fn untriggered_wait_does_not_resolve() {
        let s = Shutdown::new();
        let resolved = smol::block_on(futures_lite::future::or(
            async {
                s.wait().await;
                true
            },
            async {
                futures_lite::future::yield_now().await;
                false
            },
        ));
        assert!(!resolved);
    }

    #[test]
    fn sigterm_triggers_shutdown() {
        let s = Shutdown::new();
        s.on_signals().unwrap();
        // Second installation is refused rather than silently stacking handlers.
        assert!(Shutdown::new().on_signals().is_err());
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
        smol::block_on(s.wait());
        assert!(s.is_triggered());
    }
}
