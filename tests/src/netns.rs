//! A private network + mount namespace for one scenario's servers and guests.
//!
//! rpcbind binds wildcard addresses and ganesha needs it, so they must not run in the host's
//! network namespace; inside ours only a loopback exists. rpcbind also uses /run/rpcbind.sock,
//! which a host rpcbind may own: the namespace mounts its own tmpfs on /run. A holder process
//! (`sleep`) keeps the namespaces alive; everything else joins it with nsenter, so each
//! scenario has its own fixed ports and scenarios can run side by side.

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::process;

pub struct Netns {
    holder: Child,
}

const HOLDER_SCRIPT: &str = "ip link set lo up && mount -t tmpfs -o mode=0755 tmpfs /run \
                             && echo ready && exec sleep 2147483647";

impl Netns {
    pub fn new() -> io::Result<Netns> {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
        ])
        .arg(HOLDER_SCRIPT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        // SAFETY: prctl only, between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut holder = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("unshare (util-linux) for the test namespace: {e}"),
            )
        })?;
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("piped")).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            return Err(io::Error::other(
                "the namespace holder did not come up (unshare --net --mount needs root)",
            ));
        }
        Ok(Netns { holder })
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.holder.id().to_string())
            .args(["--net", "--mount", "--"])
            .arg(program);
        cmd
    }

    /// Whether something listens on TCP `port` inside the namespace.
    pub fn tcp_listening(&self, port: u16) -> bool {
        let filter = format!("sport = :{port}");
        process::run(self.command("ss").args(["-Hltn", &filter]))
            .map(|out| !out.trim().is_empty())
            .unwrap_or(false)
    }

    /// HTTP from inside the namespace (the servers listen on its loopback only).
    /// Returns (status, body).
    pub fn http(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        let mut cmd = self.command("curl");
        cmd.args(["-sS", "-m", "10", "-X", method, "-w", "\n%{http_code}"]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        cmd.arg(url);
        let out = process::run(&mut cmd)?;
        let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        let code = code
            .parse()
            .map_err(|_| format!("curl {url}: no status in {out:?}"))?;
        Ok((code, body.to_string()))
    }

    /// Writes `contents` to `path` (helper for configs that must exist before a server starts).
    pub fn write_file(path: &Path, contents: &str) -> io::Result<()> {
        std::fs::write(path, contents)
            .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
