//! The postmaster as this process's own child, spawned by a thread of its own that then waits
//! for it. Why a thread: PR_SET_PDEATHSIG fires when the *thread* that forked the child ends,
//! and cargo test runs each test on a short-lived thread; a cluster shared by the whole test
//! process must outlive the test that started it, yet die with the process (a test binary
//! that is killed must not leave servers behind). The guardian thread lives exactly as long
//! as the server, so the parent-death signal comes only when the process itself dies.
//!
//! The guardian waits with `waitid(WNOWAIT)` and reaps under the lock: a pid we signal is
//! always our running child or its zombie, never a reused number.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The signal the server gets when its guardian (so the test process) dies: fast shutdown,
/// which disconnects clients instead of waiting for them.
pub const DEATH_SIGNAL: libc::c_int = libc::SIGINT;

enum State {
    Running(Child),
    Exited(ExitStatus),
}

pub struct Server {
    pid: u32,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    /// Spawns `cmd` from a new guardian thread, with the parent-death signal set after any
    /// uid change (a change of credentials clears it).
    pub fn spawn(mut cmd: Command) -> Result<Server, String> {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, DEATH_SIGNAL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("postgres-guardian".into())
            .spawn(move || {
                let child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = tx.send(Err(format!("starting {cmd:?}: {e}")));
                        return;
                    }
                };
                let pid = child.id();
                let state = Arc::new(Mutex::new(State::Running(child)));
                let _ = tx.send(Ok((pid, state.clone())));
                wait_without_reaping(pid);
                let mut s = lock(&state);
                if let State::Running(child) = &mut *s {
                    if let Ok(status) = child.wait() {
                        *s = State::Exited(status);
                    }
                }
            })
            .map_err(|e| format!("starting the postgres guardian thread: {e}"))?;
        let (pid, state) = rx
            .recv()
            .map_err(|_| "the postgres guardian thread ended before spawning".to_string())??;
        Ok(Server { pid, state })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `Some(status)` once the server has exited and been reaped.
    pub fn exited(&self) -> Option<ExitStatus> {
        match &*lock(&self.state) {
            State::Exited(status) => Some(*status),
            State::Running(_) => None,
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if let State::Running(child) = &*lock(&self.state) {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
    }

    fn wait(&self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Fast shutdown (SIGINT: clients are disconnected, not waited for), `grace` to finish,
    /// then SIGKILL; returns once the server is reaped (or after 5 s more, if even SIGKILL
    /// has not ended it). Idempotent. Uses no thread-locals, so it can run at exit.
    pub fn stop(&self, grace: Duration) {
        self.signal(libc::SIGINT);
        if self.wait(grace).is_none() {
            self.signal(libc::SIGKILL);
            self.wait(Duration::from_secs(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// Blocks until `pid` has exited, leaving it a zombie for `Child::wait` to reap.
fn wait_without_reaping(pid: u32) {
    loop {
        // SAFETY: waitid writes only into `info`.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}
