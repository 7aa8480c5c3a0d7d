//! One private cluster: `initdb` into a temporary directory, then `postgres` on a free port of
//! 127.0.0.1 (its Unix socket in the same directory, so Debian's /var/run/postgresql is not
//! needed), ready once a client gets in. Superuser `pureboot`, trust authentication: only
//! this machine's 127.0.0.1 reaches it, for as long as the tests run. No locale (`C`, UTF8),
//! so results do not depend on which locales the machine generated.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::install::{Install, RunAs};
use crate::leftovers;
use crate::server::Server;

pub const SUPERUSER: &str = "pureboot";
const READY_WITHIN: Duration = Duration::from_secs(30);
/// A free port can be taken between our probe and the server's bind: try again this often.
const PORT_ATTEMPTS: usize = 3;

pub struct Cluster {
    // Field order is drop order: the server stops before its directory is removed.
    server: Server,
    port: u16,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A new cluster, running and accepting connections (within 30 s, else an error with
    /// the tail of the server's log).
    pub fn start() -> Result<Cluster, String> {
        let install = Install::find()?;
        leftovers::sweep_once();
        let dir = tempfile::Builder::new()
            .prefix(&leftovers::own_prefix())
            .tempdir()
            .map_err(|e| format!("creating the cluster's temporary directory: {e}"))?;
        if let Some(u) = install.run_as {
            std::os::unix::fs::chown(dir.path(), Some(u.uid), Some(u.gid))
                .map_err(|e| format!("chown {} to the postgres user: {e}", dir.path().display()))?;
        }
        initdb(&install, dir.path())?;
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let server = Server::spawn(postgres_command(&install, dir.path(), port)?)?;
            match wait_ready(&server, port, dir.path()) {
                Ok(()) => return Ok(Cluster { server, port, dir }),
                Err(_) if attempt < PORT_ATTEMPTS && port_was_taken(dir.path()) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The cluster's directory: `data/`, the logs, the Unix socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file (stdout and stderr).
    pub fn log(&self) -> PathBuf {
        self.dir().join("postgres.log")
    }

    /// `postgres://pureboot@127.0.0.1:<port>/<db>`; `db` goes in as given (the names
    /// [`Cluster::new_database`] makes need no escaping).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A client on database `db`, as the superuser.
    pub fn connect(&self, db: &str) -> Result<postgres::Client, String> {
        connect(&self.url(db))
    }

    /// Creates a database of its own for one test (so tests run in parallel on one cluster)
    /// and returns its URL. The name: `prefix` made a plain identifier, then the process id
    /// and a counter, so no two calls in any process on the cluster collide.
    pub fn new_database(&self, prefix: &str) -> Result<String, String> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = database_name(
            prefix,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
        );
        self.connect("postgres")?
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| format!("CREATE DATABASE {name} on {}: {e}", self.url("")))?;
        Ok(self.url(&name))
    }

    /// Stops the server and removes the directory, for a cluster that is never dropped (the
    /// shared one, at exit). Uses no thread-locals.
    pub(crate) fn close(&self) {
        self.server.stop(Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

/// A plain identifier of at most 63 bytes (PostgreSQL's limit): `prefix` in lower case with
/// anything but `[a-z0-9_]` as `_`, cut to fit, then `_<pid>_<n>`.
pub fn database_name(prefix: &str, pid: u32, n: u32) -> String {
    let suffix = format!("_{pid}_{n}");
    let mut name: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            _ => '_',
        })
        .take(63 - suffix.len())
        .collect();
    if name.is_empty() {
        name.push_str("db");
    }
    name + &suffix
}

fn connect(url: &str) -> Result<postgres::Client, String> {
    let mut config: postgres::Config = url.parse().map_err(|e| format!("{url}: {e}"))?;
    config
        .connect_timeout(Duration::from_secs(5))
        .connect(postgres::NoTls)
        .map_err(|e| format!("connecting to {url}: {e}"))
}

/// Runs a server program as the install's user, from the cluster's directory (the postgres
/// user may not enter the test's current directory), its output into `log`.
fn program(install: &Install, name: &str, dir: &Path, log: &str) -> Result<Command, String> {
    let mut cmd = Command::new(install.program(name));
    let log = dir.join(log);
    let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if let Some(RunAs { uid, gid }) = install.run_as {
        // std drops the supplementary groups too when root sets a uid.
        cmd.uid(uid).gid(gid);
    }
    Ok(cmd)
}

fn initdb(install: &Install, dir: &Path) -> Result<(), String> {
    let mut cmd = program(install, "initdb", dir, "initdb.log")?;
    cmd.arg("-D")
        .arg(dir.join("data"))
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale"])
        // The cluster is thrown away with the directory: no need to flush it to disk.
        .args(["--no-sync", "--no-instructions"]);
    let status = cmd.status().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({status}):\n{}",
            tail(&dir.join("initdb.log"), 20)
        ))
    }
}

fn postgres_command(install: &Install, dir: &Path, port: u16) -> Result<Command, String> {
    let mut cmd = program(install, "postgres", dir, "postgres.log")?;
    cmd.arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        // As in production: commits reach the disk (the default, said so on purpose).
        .args(["-c", "fsync=on"]);
    Ok(cmd)
}

/// A port nothing listens on now (the kernel's pick for port 0).
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port on 127.0.0.1: {e}"))
}

fn port_was_taken(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("postgres.log"))
        .is_ok_and(|log| log.contains("could not bind") || log.contains("Address already in use"))
}

/// Until a client gets in: the server may refuse (not listening yet) or answer "starting
/// up" first. An exit or the deadline is an error with the log's tail.
fn wait_ready(server: &Server, port: u16, dir: &Path) -> Result<(), String> {
    let url = format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres");
    let start = Instant::now();
    loop {
        let last = match connect(&url) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let log = || tail(&dir.join("postgres.log"), 20);
        if let Some(status) = server.exited() {
            return Err(format!(
                "postgres exited ({status}) before accepting connections on 127.0.0.1:{port}; its log:\n{}",
                log()
            ));
        }
        if start.elapsed() >= READY_WITHIN {
            return Err(format!(
                "postgres did not accept connections on 127.0.0.1:{port} within {} s \
                 (last: {last}); its log:\n{}",
                READY_WITHIN.as_secs(),
                log()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_plain_identifiers_that_fit() {
        assert_eq!(database_name("Registry-Test", 42, 7), "registry_test_42_7");
        assert_eq!(database_name("", 1, 2), "db_1_2");
        let long = database_name(&"x".repeat(100), 4_194_304, 4_000_000_000);
        assert_eq!(long.len(), 63, "{long}");
        assert!(long.ends_with("_4194304_4000000000"), "{long}");
        assert_eq!(database_name("é\"; DROP", 1, 1), "____drop_1_1");
    }
}
