//! Mounting the NFS root natively: mount(2) with text options carrying `addr=` (there is no
//! mount.nfs to add it), NFSv4.2 -> 4.1 -> 4.0 -> v3 following nfs-utils' errno policy, and
//! whole rounds retried with backoff while the errors are transient. The versions to try and
//! the options passed through come parsed (`decide/nfs_options.rs`).

use crate::decide::nfs_options::{NfsOptions, NfsOptionsError, NfsVersion};
use crate::decide::plan::NfsTarget;
use crate::steps::rpcbind::MountdError;
use crate::sys::{MountArgs, Sys};
use nix::errno::Errno;
use nix::mount::MsFlags;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The mount(2) data for one attempt.
pub fn mount_data(
    v: NfsVersion,
    server: IpAddr,
    client: Option<Ipv4Addr>,
    extra: &[String],
) -> String {
    let mut o = vec![format!("vers={}", v.as_str())];
    match v {
        // Without rpc.statd there are no NLM locks; the root is private to this node anyway.
        NfsVersion::V3 => o.extend(["nolock", "proto=tcp", "mountproto=tcp"].map(String::from)),
        _ => {
            if let Some(c) = client {
                o.push(format!("clientaddr={c}"));
            }
        }
    }
    o.push(format!("addr={server}"));
    o.extend(extra.iter().cloned());
    o.join(",")
}

/// nfs-utils' policy: what to try after `v` failed with `e` (None: give up this round).
pub fn next_version(v: NfsVersion, e: Errno) -> Option<NfsVersion> {
    use NfsVersion::*;
    match (v, e) {
        (V3, _) => None,
        // The server or the client lacks this minor version.
        (V4_2, Errno::EPROTONOSUPPORT | Errno::EINVAL) => Some(V4_1),
        (V4_1, Errno::EPROTONOSUPPORT | Errno::EINVAL) => Some(V4_0),
        (V4_0, Errno::EPROTONOSUPPORT | Errno::EINVAL) => Some(V3),
        // No v4 pseudo-root for this path, or no v4 service at all.
        (_, Errno::ENOENT | Errno::EPERM | Errno::ECONNREFUSED) => Some(V3),
        _ => None,
    }
}

/// Errors worth another round after a pause (the server may still be starting).
pub fn is_transient(e: Errno) -> bool {
    matches!(
        e,
        Errno::ESTALE
            | Errno::ETIMEDOUT
            | Errno::ECONNREFUSED
            | Errno::EHOSTUNREACH
            | Errno::EAGAIN
    )
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub rounds: u32,
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            rounds: 4,
            first_backoff: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    pub version: NfsVersion,
    pub server_ip: IpAddr,
}

/// Why a mount of `server:path` failed.
#[derive(Debug)]
pub struct NfsError {
    pub server: String,
    pub path: String,
    /// Every attempt of the last round, in order.
    pub attempts: Vec<(NfsVersion, Errno)>,
    /// What stopped it before or besides the attempts.
    pub why: Option<NfsWhy>,
}

/// What stopped an NFS mount besides the kernel's answers to its attempts.
#[derive(Debug)]
pub enum NfsWhy {
    /// The mount point could not be made.
    Mkdir(PathBuf, io::Error),
    /// The export's options cannot be mounted with.
    Options(NfsOptionsError),
    Resolve(ResolveError),
    /// NFSv3 was not tried: the server's mountd did not answer (see `rpcbind.rs`).
    V3Skipped(IpAddr, MountdError),
}

impl fmt::Display for NfsWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NfsWhy::Mkdir(p, e) => write!(f, "mkdir {}: {e}", p.display()),
            NfsWhy::Options(e) => e.fmt(f),
            NfsWhy::Resolve(e) => e.fmt(f),
            NfsWhy::V3Skipped(server, e) => write!(f, "NFSv3 skipped ({server} {e})"),
        }
    }
}

impl fmt::Display for NfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NFS mount of {}:{} failed", self.server, self.path)?;
        if let Some(m) = &self.why {
            write!(f, ": {m}")?;
        }
        for (i, (v, e)) in self.attempts.iter().enumerate() {
            write!(
                f,
                "{} v{}: {} ({})",
                if i == 0 { ":" } else { "," },
                v.as_str(),
                e,
                e.desc()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for NfsError {}

impl NfsError {
    /// `t` not tried: its options cannot be mounted with.
    pub fn options(t: &NfsTarget, e: NfsOptionsError) -> Self {
        NfsError {
            server: t.server.clone(),
            path: t.path.clone(),
            attempts: Vec::new(),
            why: Some(NfsWhy::Options(e)),
        }
    }
}

/// Name the node before its first NFS mount: the NFS client's identity includes the host
/// name, and its owner string `machine_id` (see [`set_client_identifier`]). Neither stops the
/// boot: each failure is a warning.
pub fn name_client(sys: &dyn Sys, sysfs: &Path, hostname: &str, machine_id: &str) {
    if let Err(e) = sys.sethostname(hostname) {
        log::warn!("sethostname {hostname}: {e}");
    }
    if let Err(e) = set_client_identifier(sysfs, machine_id) {
        log::warn!("NFS client identifier: {e}; nodes may share one NFSv4 client identity");
    }
}

/// Give this node's NFSv4 client a unique identity. Every Pi boots the same initramfs with
/// the same (unset) host name, and under QEMU user networking the same address, so their
/// client owner strings collide and the server hands one node's lease to another. The kernel
/// takes a per-node uniquifier here (as `nfs.nfs4_unique_id=` would); it exists once nfs.ko
/// is loaded.
pub fn set_client_identifier(sysfs: &Path, id: &str) -> Result<(), WriteError> {
    let p = sysfs.join("fs/nfs/net/nfs_client/identifier");
    std::fs::write(&p, format!("{id}\n")).map_err(|e| WriteError(p, e))
}

/// A file that could not be written, and why.
#[derive(Debug)]
pub struct WriteError(pub PathBuf, pub io::Error);

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write {}: {}", self.0.display(), self.1)
    }
}

impl std::error::Error for WriteError {}

/// Why an NFS server's name gave no address.
#[derive(Debug)]
pub enum ResolveError {
    Lookup(String, io::Error),
    NoAddress(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Lookup(s, e) => write!(f, "cannot resolve NFS server {s:?}: {e}"),
            ResolveError::NoAddress(s) => write!(f, "NFS server {s:?} resolves to no address"),
        }
    }
}

impl std::error::Error for ResolveError {}

/// The server's address: an IP as given, else resolved (musl reads /etc/hosts and resolv.conf).
pub fn resolve(server: &str) -> Result<IpAddr, ResolveError> {
    let bare = server.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<IpAddr> = (bare, 2049)
        .to_socket_addrs()
        .map_err(|e| ResolveError::Lookup(server.into(), e))?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| ResolveError::NoAddress(server.into()))
}

/// `server:path` as mount(2) takes it: an IPv6 address given as such in brackets.
pub fn source(server: &str, ip: IpAddr, path: &str) -> String {
    match ip {
        IpAddr::V6(ip) if server.parse::<IpAddr>().is_ok() => format!("[{ip}]:{path}"),
        _ => format!("{server}:{path}"),
    }
}

/// Mount `t` on `mountpoint` (made first) with `opts` (`t`'s options, parsed).
#[allow(clippy::too_many_arguments)]
pub fn mount(
    sys: &dyn Sys,
    t: &NfsTarget,
    opts: &NfsOptions,
    mountpoint: &Path,
    client: Option<Ipv4Addr>,
    read_only: bool,
    retry: &RetryPolicy,
    sleep: &mut dyn FnMut(Duration),
) -> Result<Mounted, NfsError> {
    let (versions, extra) = (&opts.versions, &opts.rest);
    let fail = |why| NfsError {
        server: t.server.clone(),
        path: t.path.clone(),
        attempts: Vec::new(),
        why: Some(why),
    };
    std::fs::create_dir_all(mountpoint).map_err(|e| fail(NfsWhy::Mkdir(mountpoint.into(), e)))?;
    let server_ip = resolve(&t.server).map_err(|e| fail(NfsWhy::Resolve(e)))?;
    let source = source(&t.server, server_ip, &t.path);
    let flags = if read_only {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    let mut backoff = retry.first_backoff;
    for round in 1..=retry.rounds.max(1) {
        let mut attempts = Vec::new();
        let mut v = versions[0];
        loop {
            let data = mount_data(v, server_ip, client, extra);
            let args = MountArgs::new(&source, mountpoint, v.fstype(), flags, &data);
            match sys.mount(&args) {
                Ok(()) => {
                    return Ok(Mounted {
                        version: v,
                        server_ip,
                    })
                }
                Err(e) => {
                    log::debug!("{args}: {e}");
                    attempts.push((v, e));
                    // The next version the policy allows that is also in the allowed list.
                    match next_version(v, e).and_then(|n| versions.iter().find(|x| **x >= n)) {
                        Some(n) => v = *n,
                        None => break,
                    }
                }
            }
        }
        let last = attempts.last().map(|a| a.1);
        if round == retry.rounds || !last.is_some_and(is_transient) {
            return Err(NfsError {
                server: t.server.clone(),
                path: t.path.clone(),
                attempts,
                why: None,
            });
        }
        log::warn!(
            "NFS mount of {source}: {}; retrying in {} ms",
            last.map(|e| e.desc()).unwrap_or(""),
            backoff.as_millis()
        );
        sleep(backoff);
        backoff *= 2;
    }
    unreachable!("the last round returns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::cmdline::RootLayout;
    use crate::support::testutil::TempDir;
    use crate::sys::fake::FakeSys;
    use NfsVersion::*;

    const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));
    const CLIENT: Option<Ipv4Addr> = Some(Ipv4Addr::new(10, 0, 2, 15));

    fn target(options: Option<&str>, v4_only: bool) -> NfsTarget {
        NfsTarget {
            server: "10.0.2.2".into(),
            path: "/srv/nfs".into(),
            options: options.map(Into::into),
            v4_only,
            layout: Some(RootLayout::Tree),
        }
    }

    /// Run a mount against scripted errors; the data strings tried and the outcome.
    fn run(
        t: &NfsTarget,
        errors: &[Errno],
    ) -> (Vec<String>, Result<Mounted, NfsError>, Vec<Duration>) {
        let sys = FakeSys::new();
        sys.script_mounts(errors.iter().map(|e| Err(*e)));
        let mut slept = Vec::new();
        let opts = NfsOptions::parse(t.options.as_deref(), t.v4_only).unwrap();
        let d = TempDir::new();
        let r = mount(
            &sys,
            t,
            &opts,
            &d.path().join("nfs"),
            CLIENT,
            true,
            &RetryPolicy::default(),
            &mut |d| slept.push(d),
        );
        let data = sys
            .mounts()
            .into_iter()
            .map(|m| format!("{} {}", m.fstype.unwrap(), m.data.unwrap()))
            .collect();
        (data, r, slept)
    }

    #[test]
    fn client_identifier_goes_to_sysfs() {
        let d = crate::support::testutil::TempDir::new();
        let dir = d.path().join("fs/nfs/net/nfs_client");
        assert!(set_client_identifier(d.path(), "abc")
            .unwrap_err()
            .to_string()
            .contains("identifier"));
        std::fs::create_dir_all(&dir).unwrap();
        set_client_identifier(d.path(), "0123456789abcdef0123456789abcdef").unwrap();
        let got = std::fs::read_to_string(dir.join("identifier")).unwrap();
        assert_eq!(got, "0123456789abcdef0123456789abcdef\n");
    }

    #[test]
    fn option_strings() {
        assert_eq!(
            mount_data(V4_2, SERVER, CLIENT, &[]),
            "vers=4.2,clientaddr=10.0.2.15,addr=10.0.2.2"
        );
        assert_eq!(
            mount_data(V4_0, SERVER, None, &[]),
            "vers=4.0,addr=10.0.2.2"
        );
        assert_eq!(
            mount_data(
                V3,
                SERVER,
                CLIENT,
                &["port=2049".into(), "mountport=20048".into()]
            ),
            "vers=3,nolock,proto=tcp,mountproto=tcp,addr=10.0.2.2,port=2049,mountport=20048"
        );
    }

    #[test]
    fn errno_policy_table() {
        let cases: &[(NfsVersion, Errno, Option<NfsVersion>)] = &[
            (V4_2, Errno::EPROTONOSUPPORT, Some(V4_1)),
            (V4_2, Errno::EINVAL, Some(V4_1)),
            (V4_1, Errno::EPROTONOSUPPORT, Some(V4_0)),
            (V4_0, Errno::EPROTONOSUPPORT, Some(V3)),
            (V4_2, Errno::ENOENT, Some(V3)),
            (V4_1, Errno::EPERM, Some(V3)),
            (V4_2, Errno::ECONNREFUSED, Some(V3)),
            (V4_2, Errno::EACCES, None),
            (V4_2, Errno::ETIMEDOUT, None),
            (V3, Errno::EPROTONOSUPPORT, None),
            (V3, Errno::ENOENT, None),
        ];
        for (i, (v, e, want)) in cases.iter().enumerate() {
            assert_eq!(
                next_version(*v, *e),
                *want,
                "test[{i}]: v{} {e}",
                v.as_str()
            );
        }
        assert!(is_transient(Errno::ESTALE) && is_transient(Errno::EHOSTUNREACH));
        assert!(!is_transient(Errno::EACCES) && !is_transient(Errno::ENOENT));
    }

    #[test]
    fn falls_back_through_minors_to_v3() {
        let t = target(None, false);
        let (data, r, slept) = run(
            &t,
            &[
                Errno::EPROTONOSUPPORT,
                Errno::EINVAL,
                Errno::EPROTONOSUPPORT,
            ],
        );
        let vers: Vec<&str> = data.iter().map(|d| d.split(',').next().unwrap()).collect();
        assert_eq!(
            vers,
            [
                "nfs4 vers=4.2",
                "nfs4 vers=4.1",
                "nfs4 vers=4.0",
                "nfs vers=3"
            ]
        );
        assert_eq!(
            r.unwrap(),
            Mounted {
                version: V3,
                server_ip: SERVER
            }
        );
        assert!(slept.is_empty());
        // A v4 server without this path: straight to v3.
        let (data, r, _) = run(&t, &[Errno::ENOENT]);
        assert_eq!(data.len(), 2);
        assert_eq!(r.unwrap().version, V3);
        // v4 pinned: never v3, and a permanent error stops at once.
        let (data, r, _) = run(&target(None, true), &[Errno::ENOENT]);
        assert_eq!(data.len(), 1);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("10.0.2.2:/srv/nfs") && e.contains("v4.2: ENOENT"),
            "{e}"
        );
    }

    #[test]
    fn transient_errors_retry_whole_rounds_within_a_bound() {
        let t = target(Some("vers=3"), false);
        let (data, r, slept) = run(&t, &[Errno::ETIMEDOUT, Errno::ECONNREFUSED]);
        assert_eq!(data.len(), 3);
        assert_eq!(r.unwrap().version, V3);
        assert_eq!(
            slept,
            [Duration::from_millis(500), Duration::from_millis(1000)]
        );
        let (data, r, slept) = run(&t, &[Errno::ETIMEDOUT; 10]);
        assert_eq!(data.len(), 4, "rounds are bounded");
        assert_eq!(slept.len(), 3);
        assert!(r.unwrap_err().to_string().contains("v3: ETIMEDOUT"));
        // Permanent: no retry.
        let (data, r, slept) = run(&t, &[Errno::EACCES]);
        assert_eq!((data.len(), slept.len()), (1, 0));
        assert!(r.is_err());
    }

    #[test]
    fn names_are_resolved_and_mount_is_read_only_when_asked() {
        assert_eq!(resolve("10.0.2.2").unwrap(), SERVER);
        assert_eq!(
            resolve("localhost").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert!(resolve("no-such-host.invalid")
            .unwrap_err()
            .to_string()
            .contains("no-such-host.invalid"));
        let sys = FakeSys::new();
        let mut t = target(None, false);
        t.server = "localhost".into();
        let d = TempDir::new();
        let m = mount(
            &sys,
            &t,
            &NfsOptions::parse(None, false).unwrap(),
            &d.path().join("nfs"),
            None,
            true,
            &RetryPolicy::default(),
            &mut |_| (),
        )
        .unwrap();
        assert_eq!(m.server_ip.to_string(), "127.0.0.1");
        let args = &sys.mounts()[0];
        assert_eq!(args.source.as_deref(), Some("localhost:/srv/nfs"));
        assert!(args.data.as_deref().unwrap().contains("addr=127.0.0.1"));
        assert_eq!(args.flags, MsFlags::MS_RDONLY);
    }
}
