//! Child processes the harness owns: spawned with their output in a log file, tied to the
//! test thread's life (PR_SET_PDEATHSIG), stopped with SIGTERM, a short grace, then SIGKILL.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A long-running server (rpcbind, ganesha, the controller) or a guest.
pub struct Daemon {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Makes the kernel kill `cmd` if the thread that spawned it dies (a test that panics or is
/// killed must not leave servers behind), and routes its stdout and stderr into `log`.
pub fn prepare(cmd: &mut Command, log: &Path) -> io::Result<()> {
    let out = File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

impl Daemon {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> io::Result<Daemon> {
        prepare(&mut cmd, log)?;
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {name} ({cmd:?}): {e}")))?;
        Ok(Daemon {
            name: name.to_string(),
            log: log.to_path_buf(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `limit` for the process to exit by itself; `None` if it is still running.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() >= grace {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.wait();
    }

    /// SIGKILL at once, no grace (a power cut, a crashed server); reaps it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last `lines` lines of the log, for failure reports.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a short command to completion; an error names the command and carries its output.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
        let dir = crate::workdir::WorkDir::new("process-test").unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' TERM; echo up; sleep 30"]);
        let mut d = Daemon::spawn("stubborn", cmd, &dir.path().join("log")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        d.stop(Duration::from_millis(300));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "stop took {:?}",
            start.elapsed()
        );
        assert!(d.pid().is_none(), "child handle released after stop");
        assert_eq!(tail(&dir.path().join("log"), 1), "up");
    }

    #[test]
    fn run_reports_the_failing_command_and_its_output() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        assert!(
            err.contains("oops") && err.contains("exit status: 3"),
            "{err}"
        );
    }
}
