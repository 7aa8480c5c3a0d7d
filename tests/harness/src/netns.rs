//! A private network + mount namespace for one scenario's servers and guests.
//!
//! rpcbind binds wildcard addresses and ganesha needs it, so they must not run in the host's
//! network namespace; inside ours only a loopback exists. rpcbind also uses /run/rpcbind.sock,
//! which a host rpcbind may own: the namespace mounts its own tmpfs on /run. A holder process
//! (`sleep`) keeps the namespaces alive; everything else joins it with nsenter, so each
//! scenario has its own fixed ports and scenarios can run side by side.

use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::process;

pub struct Netns {
    holder: Child,
}

/// The linked namespace's end of a [`Netns::link_to`] pair: everything that namespace
/// exchanges with the one it is linked to crosses it (its counters in `/proc/<pid>/net/dev`).
pub const PEER_LINK: &str = "pb1";

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

    /// The holder's pid: `/proc/<pid>/ns/net` is the namespace, for `setns` (see [`Netns::enter`]).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Runs `f` on a new thread that has joined the namespace's network (only that thread:
    /// `setns` changes the calling thread), so sockets it opens live in the namespace.
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        use std::os::fd::AsRawFd;
        let path = format!("/proc/{}/ns/net", self.pid());
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: setns on a valid namespace fd; it affects this thread only.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns {path}: {}", io::Error::last_os_error()));
            }
            f()
        })
        .join()
        .map_err(|_| "the thread in the namespace panicked".to_string())?
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

    /// Links this namespace to `other` by a veth pair, `addr` on this side and `peer_addr`
    /// on the other (a /24 each link, so one namespace can link to several): a second host
    /// for a scenario, with its own rpcbind and ports. A QEMU guest on user networking
    /// reaches `peer_addr` too: QEMU connects to it from this namespace. The other side's
    /// end is [`PEER_LINK`]; this side's is named after the other's holder pid.
    pub fn link_to(&self, other: &Netns, addr: &str, peer_addr: &str) -> Result<(), String> {
        let ip = |ns: &Netns, args: &[&str]| {
            process::run(ns.command("ip").args(args))
                .map(drop)
                .map_err(|e| format!("ip {}: {e}", args.join(" ")))
        };
        let peer = other.pid().to_string();
        let here = format!("pb{peer}");
        ip(
            self,
            &[
                "link", "add", &here, "type", "veth", "peer", "name", PEER_LINK, "netns", &peer,
            ],
        )?;
        ip(self, &["addr", "add", &format!("{addr}/24"), "dev", &here])?;
        ip(self, &["link", "set", &here, "up"])?;
        ip(
            other,
            &["addr", "add", &format!("{peer_addr}/24"), "dev", PEER_LINK],
        )?;
        ip(other, &["link", "set", PEER_LINK, "up"])
    }

    /// Whether something listens on TCP `port` inside the namespace.
    pub fn tcp_listening(&self, port: u16) -> bool {
        let filter = format!("sport = :{port}");
        process::run(self.command("ss").args(["-Hltn", &filter]))
            .map(|out| !out.trim().is_empty())
            .unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_has_only_loopback_and_its_own_run() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            crate::skip::announce_skip("netns self-test", "needs root (unshare --net --mount)");
            return;
        }
        let ns = Netns::new().unwrap();
        let links = process::run(ns.command("ip").args(["-o", "link", "show"])).unwrap();
        let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
        assert_eq!(names, ["lo"], "{links}");
        assert!(links.contains("UP"), "loopback is up: {links}");
        let run = process::run(ns.command("ls").args(["-A", "/run"])).unwrap();
        assert_eq!(run.trim(), "", "/run in the namespace is a fresh tmpfs");
        assert!(
            !ns.tcp_listening(2049),
            "nothing listens in a new namespace"
        );
    }
}
