//! Kernel modules: the lists `pureboot-image` resolved, loaded with finit_module(2) on a few
//! threads, each module as soon as the modules it depends on are in (module loading is
//! kernel CPU time, a third of a virtual Pi's boot path, and independent chains such as the
//! NIC driver and the NFS client need not wait for each other).
//!
//! `/etc/pureboot/modules` is loaded at start; `/etc/pureboot/modules.disk` (loop, ext4: a
//! disk filesystem) only when a step needs it, so an NFS boot with a tmpfs overlay does not
//! pay for them.

use crate::modinfo;
use crate::sys::Sys;
use nix::errno::Errno;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Loaded at start: the NIC driver, the NFS client, overlayfs.
pub const LIST_PATH: &str = "/etc/pureboot/modules";
/// Loaded when the image overlay (a loop-mounted ext4) or a local root needs them.
pub const DISK_LIST_PATH: &str = "/etc/pureboot/modules.disk";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: PathBuf,
    /// Module parameters, space separated (`""` when none).
    pub params: String,
}

/// Parse the list (`source` names it in warnings): one module a line, its absolute path then
/// optional parameters; `#` starts a comment; blank lines are ignored. Relative paths are
/// skipped with a warning each.
pub fn parse_list(text: &str, source: &str) -> (Vec<Module>, Vec<String>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (path, params) = match line.split_once(char::is_whitespace) {
            Some((p, rest)) => (p, rest.split_whitespace().collect::<Vec<_>>().join(" ")),
            None => (line, String::new()),
        };
        if !path.starts_with('/') {
            warnings.push(format!("{source} line {}: {path:?} is not absolute", n + 1));
            continue;
        }
        out.push(Module {
            path: path.into(),
            params,
        });
    }
    (out, warnings)
}

/// Which earlier entries of the list each module needs in the kernel first: the module's
/// own `depends=` (`deps_of`), limited to modules on the list (the rest are built in). A
/// module whose dependencies cannot be read waits for every entry before it, as in a plain
/// sequential load; a dependency listed after its user is a bad list and is ignored, so the
/// graph can have no cycle.
pub fn dependencies(
    modules: &[Module],
    deps_of: impl Fn(&Path) -> Result<Vec<String>, String>,
) -> Vec<Vec<usize>> {
    let names: Vec<String> = modules.iter().map(|m| name_of(&m.path)).collect();
    modules
        .iter()
        .enumerate()
        .map(|(i, m)| match deps_of(&m.path) {
            Ok(wanted) => wanted
                .iter()
                .filter_map(|w| match names.iter().position(|n| n == w) {
                    Some(j) if j < i => Some(j),
                    Some(_) => {
                        log::warn!(
                            "module {}: needs {w}, listed after it; load order kept",
                            m.path.display()
                        );
                        None
                    }
                    None => None,
                })
                .collect(),
            Err(e) => {
                log::debug!("module dependencies: {e}; loading it after the ones before it");
                (0..i).collect()
            }
        })
        .collect()
}

/// `/lib/modules/x/kernel/fs/nfs/nfs_acl.ko` -> `nfs_acl`.
fn name_of(path: &Path) -> String {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    modinfo::normalize(file.split('.').next().unwrap_or_default())
}

/// Who loads what next, among the modules whose dependencies are all done. Two orders, so
/// that neither the NIC nor the longest chain waits for the other: the first loader takes the
/// earliest on the list (`pureboot-image` puts the NIC driver first, so DHCP can start), the
/// others the one heading the heaviest chain still to load, which bounds when the NFS client
/// is ready. A module's file size stands in for its load time (nfsv4.ko is both the biggest
/// and the slowest).
#[derive(Debug)]
pub struct Schedule {
    deps: Vec<Vec<usize>>,
    /// Weight of the heaviest chain from each module to the end of the list.
    chain: Vec<u64>,
    started: Vec<bool>,
    done: Vec<bool>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Load(usize),
    /// Nothing is ready until a module being loaded is done.
    Wait,
    Finished,
}

impl Schedule {
    /// `deps` as from [`dependencies`] (earlier entries only); `weights` one per module.
    pub fn new(deps: Vec<Vec<usize>>, weights: &[u64]) -> Self {
        let n = deps.len();
        let mut chain: Vec<u64> = (0..n)
            .map(|i| weights.get(i).copied().unwrap_or(0))
            .collect();
        // Users come after what they use: one pass from the end settles every chain.
        for u in (0..n).rev() {
            for &d in &deps[u] {
                let through = weights.get(d).copied().unwrap_or(0) + chain[u];
                chain[d] = chain[d].max(through);
            }
        }
        Self {
            deps,
            chain,
            started: vec![false; n],
            done: vec![false; n],
        }
    }

    /// The next module for a loader: by list order, or by heaviest chain.
    pub fn next(&mut self, by_list: bool) -> Next {
        let ready = (0..self.deps.len())
            .filter(|&i| !self.started[i] && self.deps[i].iter().all(|&d| self.done[d]));
        let pick = if by_list {
            ready.min()
        } else {
            // Ties go to the earlier entry.
            ready.max_by_key(|&i| (self.chain[i], std::cmp::Reverse(i)))
        };
        if let Some(i) = pick {
            self.started[i] = true;
            Next::Load(i)
        } else if (0..self.deps.len()).any(|i| self.started[i] && !self.done[i]) {
            Next::Wait
        } else {
            // Everything done. (Anything else would be a cycle, which deps on earlier entries
            // only cannot form: never wait forever.)
            Next::Finished
        }
    }

    /// Loaded or failed: either way its users may try (a failed dependency fails them
    /// with a message naming the missing symbol).
    pub fn finish(&mut self, i: usize) {
        self.done[i] = true;
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub loaded: usize,
    pub already: usize,
    pub missing: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, Errno)>,
    pub threads: usize,
    /// The slowest modules loaded (at most three), slowest first.
    pub slowest: Vec<(String, Duration)>,
}

impl LoadSummary {
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} loaded, {} already loaded ({} threads)",
            self.loaded, self.already, self.threads
        );
        if !self.missing.is_empty() {
            s += &format!(", {} missing", self.missing.len());
        }
        if !self.failed.is_empty() {
            s += &format!(", {} failed", self.failed.len());
        }
        if !self.slowest.is_empty() {
            let slow: Vec<String> = self
                .slowest
                .iter()
                .map(|(n, d)| format!("{n} {} ms", d.as_millis()))
                .collect();
            s += &format!("; slowest {}", slow.join(", "));
        }
        s
    }

    fn add(&mut self, m: &Module, result: Result<(), Errno>, took: Duration) {
        match result {
            Ok(()) => {
                self.loaded += 1;
                log::debug!(
                    "module {} loaded in {} ms",
                    m.path.display(),
                    took.as_millis()
                );
                self.slowest.push((name_of(&m.path), took));
                self.slowest.sort_by_key(|s| std::cmp::Reverse(s.1));
                self.slowest.truncate(3);
            }
            Err(Errno::EEXIST) => self.already += 1,
            Err(Errno::ENOENT) => {
                log::warn!(
                    "module {} missing from the initramfs; skipped",
                    m.path.display()
                );
                self.missing.push(m.path.clone());
            }
            Err(e) => {
                log::error!("module {}: finit_module: {e}; continuing", m.path.display());
                self.failed.push((m.path.clone(), e));
            }
        }
    }
}

/// Threads for loading: the kernel's module work is CPU-bound, so one per CPU (a Pi has
/// four), and at least two so that a long module does not hold back an independent one.
pub fn threads() -> usize {
    // sched_getaffinity rather than available_parallelism: the latter brings cgroup parsing
    // that costs 30 KB of pi-init's 1 MiB.
    let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .count()
        })
        .unwrap_or(1);
    cpus.clamp(2, 4)
}

/// Load every module with up to `threads` threads, each once `schedule` says its
/// dependencies are done. Already loaded (EEXIST) counts as loaded; a missing or failing
/// module is logged and the boot goes on: a later step fails with a clearer error if it was
/// really needed.
pub fn load(sys: &dyn Sys, modules: &[Module], schedule: Schedule, threads: usize) -> LoadSummary {
    let state = Mutex::new((schedule, LoadSummary::default()));
    let wake = Condvar::new();
    let worker = |by_list: bool| loop {
        let i = {
            let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match guard.0.next(by_list) {
                    Next::Load(i) => break i,
                    Next::Finished => return,
                    Next::Wait => guard = wake.wait(guard).unwrap_or_else(|p| p.into_inner()),
                }
            }
        };
        let m = &modules[i];
        let t = Instant::now();
        let result = sys.finit_module(&m.path, &m.params);
        let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.add(m, result, t.elapsed());
        guard.0.finish(i);
        wake.notify_all();
    };
    let wanted = threads.clamp(1, modules.len().max(1));
    let mut running = 1;
    std::thread::scope(|s| {
        for n in 1..wanted {
            let spawned = std::thread::Builder::new()
                .name(format!("modules-{n}"))
                .spawn_scoped(s, || worker(false));
            if let Err(e) = spawned {
                // This thread still loads every module, only with less help.
                log::warn!("module loader {n}: no thread ({e})");
                break;
            }
            running += 1;
        }
        worker(true);
    });
    let mut summary = state.into_inner().unwrap_or_else(|p| p.into_inner()).1;
    summary.threads = running;
    summary
}

/// Read a list and load it with the dependencies the modules themselves declare.
pub fn load_list(sys: &dyn Sys, path: &Path) -> LoadSummary {
    let list = read_list(path);
    let deps = dependencies(&list, modinfo::depends);
    let sizes: Vec<u64> = list
        .iter()
        .map(|m| std::fs::metadata(&m.path).map_or(0, |md| md.len()))
        .collect();
    load(sys, &list, Schedule::new(deps, &sizes), threads())
}

/// Read the list at `path`; a missing list means no modules (a kernel with everything built in).
pub fn read_list(path: &Path) -> Vec<Module> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let (mods, warnings) = parse_list(&text, &path.display().to_string());
            warnings.iter().for_each(|w| log::warn!("{w}"));
            mods
        }
        Err(e) => {
            log::info!("no module list at {} ({e}); loading none", path.display());
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Call, FakeSys};

    const LIST: &str = "# resolved by pureboot-image\n\
        /lib/modules/6.1.0/kernel/drivers/virtio/virtio_pci.ko\n\
        \n\
        /lib/modules/6.1.0/kernel/fs/nfs/nfs.ko   nfs4_disable_idmapping=1  foo=2  # tuned\n\
        relative/x.ko\n\
        /lib/modules/6.1.0/kernel/fs/overlayfs/overlay.ko\n";

    #[test]
    fn list_parses_params_comments_and_rejects_relative() {
        let (mods, warnings) = parse_list(LIST, DISK_LIST_PATH);
        assert_eq!(mods.len(), 3);
        assert!(mods[0].path.ends_with("virtio_pci.ko") && mods[0].params.is_empty());
        assert_eq!(mods[1].params, "nfs4_disable_idmapping=1 foo=2");
        assert!(mods[2].path.ends_with("overlay.ko"));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("line 5") && warnings[0].contains(DISK_LIST_PATH),
            "{warnings:?}"
        );
    }

    #[test]
    fn loads_in_order_tolerating_loaded_and_missing() {
        let (mods, _) = parse_list(LIST, LIST_PATH);
        let sys = FakeSys::new();
        sys.fail_module(
            "/lib/modules/6.1.0/kernel/drivers/virtio/virtio_pci.ko",
            Errno::EEXIST,
        );
        sys.fail_module("/lib/modules/6.1.0/kernel/fs/nfs/nfs.ko", Errno::ENOENT);
        sys.fail_module(
            "/lib/modules/6.1.0/kernel/fs/overlayfs/overlay.ko",
            Errno::ENOEXEC,
        );
        let sequential = dependencies(&mods, |_| Err("unreadable".into()));
        assert_eq!(sequential, vec![vec![], vec![0], vec![0, 1]]);
        let sum = load(&sys, &mods, Schedule::new(sequential.clone(), &[]), 1);
        assert_eq!((sum.loaded, sum.already), (0, 1));
        assert_eq!(sum.missing, vec![mods[1].path.clone()]);
        assert_eq!(sum.failed, vec![(mods[2].path.clone(), Errno::ENOEXEC)]);
        let order: Vec<_> = sys
            .calls()
            .into_iter()
            .map(|c| match c {
                Call::FinitModule(p, params) => (p, params),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(order.len(), 3, "every module is tried, in order");
        assert_eq!(order[1], (mods[1].path.clone(), mods[1].params.clone()));
        assert!(sum.line().contains("1 missing") && sum.line().contains("1 failed"));

        let ok = FakeSys::new();
        let sum = load(&ok, &mods, Schedule::new(sequential, &[]), 4);
        assert_eq!(
            (sum.loaded, sum.threads),
            (3, 3),
            "no more threads than modules"
        );
        assert_eq!(sum.slowest.len(), 3);
    }

    fn list(names: &[&str]) -> Vec<Module> {
        names
            .iter()
            .map(|n| Module {
                path: format!("/lib/modules/6.1.0/kernel/{n}.ko").into(),
                params: String::new(),
            })
            .collect()
    }

    /// The NFS client and the NIC driver, as Debian's 6.1 arm64 modules declare them.
    fn debian_like() -> (Vec<Module>, Vec<Vec<usize>>) {
        let mods = list(&[
            "virtio_pci_legacy_dev",
            "virtio_pci_modern_dev",
            "virtio_pci",
            "failover",
            "net_failover",
            "virtio_net",
            "netfs",
            "fscache",
            "sunrpc",
            "grace",
            "lockd",
            "nfs",
            "nfs_acl",
            "nfsv3",
            "dns_resolver",
            "nfsv4",
            "overlay",
        ]);
        let deps = dependencies(&mods, |p| {
            let d: &[&str] = match name_of(p).as_str() {
                "virtio_pci" => &["virtio_pci_legacy_dev", "virtio_pci_modern_dev"],
                "net_failover" => &["failover"],
                "virtio_net" => &["net_failover"],
                "fscache" => &["netfs"],
                "lockd" => &["sunrpc", "grace"],
                "nfs" => &["sunrpc", "lockd", "fscache", "netfs"],
                "nfs_acl" => &["sunrpc"],
                "nfsv3" => &["nfs_acl", "nfs"],
                "nfsv4" => &["nfs", "sunrpc", "dns_resolver", "fscache", "netfs"],
                // Built in: no entry on the list, nothing to wait for.
                _ => &["virtio"],
            };
            Ok(d.iter().map(|s| s.to_string()).collect())
        });
        (mods, deps)
    }

    #[test]
    fn dependencies_point_at_earlier_entries_only() {
        let (mods, deps) = debian_like();
        let at = |n: &str| mods.iter().position(|m| name_of(&m.path) == n).unwrap();
        assert_eq!(deps[at("virtio_net")], [at("net_failover")]);
        assert_eq!(
            deps[at("nfsv4")],
            [
                at("nfs"),
                at("sunrpc"),
                at("dns_resolver"),
                at("fscache"),
                at("netfs")
            ]
        );
        assert!(deps[at("overlay")].is_empty() && deps[at("failover")].is_empty());
        // A dependency listed after its user is ignored rather than making a cycle.
        let backwards = dependencies(&list(&["a", "b"]), |p| {
            Ok(vec![if name_of(p) == "a" { "b" } else { "a" }.to_string()])
        });
        assert_eq!(backwards, vec![vec![], vec![0]]);
        assert_eq!(name_of(Path::new("/x/nfs-acl.ko.xz")), "nfs_acl");
    }

    /// Sizes in KiB of Debian 6.1.0-56's arm64 modules: the weights.
    fn weights(mods: &[Module]) -> Vec<u64> {
        mods.iter()
            .map(|m| match name_of(&m.path).as_str() {
                "virtio_pci_legacy_dev" => 13,
                "virtio_pci_modern_dev" => 24,
                "virtio_pci" => 43,
                "failover" => 17,
                "net_failover" => 28,
                "virtio_net" => 108,
                "netfs" => 97,
                "fscache" => 190,
                "sunrpc" => 1070,
                "grace" => 12,
                "lockd" => 199,
                "nfs" => 835,
                "nfs_acl" => 14,
                "nfsv3" => 92,
                "dns_resolver" => 22,
                "nfsv4" => 1594,
                "overlay" => 257,
                other => panic!("no size for {other}"),
            })
            .collect()
    }

    #[test]
    fn one_loader_follows_the_list_the_others_the_heaviest_chain() {
        let (mods, deps) = debian_like();
        let mut s = Schedule::new(deps, &weights(&mods));
        let mut name = |by_list: bool| match s.next(by_list) {
            Next::Load(i) => name_of(&mods[i].path),
            other => format!("{other:?}"),
        };
        // The NIC heads the list; sunrpc heads the chain to nfsv4 (sunrpc, lockd, nfs, nfsv4).
        assert_eq!(name(true), "virtio_pci_legacy_dev");
        assert_eq!(name(false), "sunrpc");
        assert_eq!(
            name(false),
            "netfs",
            "next heaviest: netfs, fscache, nfs, nfsv4"
        );
        assert_eq!(name(true), "virtio_pci_modern_dev");
        assert_eq!(
            name(true),
            "failover",
            "virtio_pci waits for both virtio modules"
        );
    }

    #[test]
    fn schedule_loads_everything_once_whatever_the_mix_of_loaders() {
        let (mods, deps) = debian_like();
        for pattern in [[true, true], [false, false], [true, false]] {
            let mut s = Schedule::new(deps.clone(), &weights(&mods));
            let mut loaded = Vec::new();
            for turn in 0.. {
                match s.next(pattern[turn % 2]) {
                    Next::Load(i) => {
                        assert!(deps[i].iter().all(|&d| s.done[d]));
                        loaded.push(i);
                        // Finish in a shuffled but complete way: every third start waits.
                        if turn % 3 != 0 {
                            s.finish(i);
                        }
                    }
                    Next::Wait => {
                        let busy = (0..mods.len()).find(|&i| s.started[i] && !s.done[i]);
                        s.finish(busy.expect("waiting means something is loading"));
                    }
                    Next::Finished => break,
                }
            }
            loaded.sort();
            assert_eq!(loaded, (0..mods.len()).collect::<Vec<_>>(), "{pattern:?}");
        }
        assert_eq!(Schedule::new(vec![], &[]).next(true), Next::Finished);
    }

    /// Records when each finit_module starts and ends, taking a little time for each.
    #[derive(Default)]
    struct Timeline(Mutex<Vec<(PathBuf, bool)>>);

    impl Sys for Timeline {
        fn finit_module(&self, path: &Path, _: &str) -> Result<(), Errno> {
            self.0.lock().unwrap().push((path.into(), true));
            std::thread::sleep(Duration::from_millis(3));
            self.0.lock().unwrap().push((path.into(), false));
            Ok(())
        }
        fn mount(&self, _: &crate::sys::MountArgs) -> Result<(), Errno> {
            unreachable!()
        }
        fn umount(&self, _: &Path, _: nix::mount::MntFlags) -> Result<(), Errno> {
            unreachable!()
        }
        fn loop_attach(&self, _: &Path, _: bool) -> Result<crate::loopdev::LoopDevice, Errno> {
            unreachable!()
        }
        fn pivot_root(&self, _: &Path, _: &Path) -> Result<(), Errno> {
            unreachable!()
        }
        fn chroot(&self, _: &Path) -> Result<(), Errno> {
            unreachable!()
        }
        fn chdir(&self, _: &Path) -> Result<(), Errno> {
            unreachable!()
        }
        fn sethostname(&self, _: &str) -> Result<(), Errno> {
            unreachable!()
        }
        fn reboot(&self, _: nix::sys::reboot::RebootMode) -> Errno {
            unreachable!()
        }
        fn device_of(&self, _: &Path) -> Result<u64, Errno> {
            unreachable!()
        }
        fn fs_magic(&self, _: &Path) -> Result<i64, Errno> {
            unreachable!()
        }
        fn delete_tree(&self, _: &Path, _: u64) {
            unreachable!()
        }
        fn mounts(&self) -> Vec<crate::sys::MountPoint> {
            unreachable!()
        }
        fn console_on_stdio(&self, _: &Path) {
            unreachable!()
        }
        fn exec(&self, _: &[String]) -> Errno {
            unreachable!()
        }
        fn watchdog_timeout(&self, _: &std::fs::File, _: i32) -> Result<i32, Errno> {
            unreachable!()
        }
    }

    #[test]
    fn threads_never_start_a_module_before_its_dependencies_are_in() {
        let (mods, deps) = debian_like();
        for threads in [1, 2, 4] {
            let sys = Timeline::default();
            let sum = load(
                &sys,
                &mods,
                Schedule::new(deps.clone(), &weights(&mods)),
                threads,
            );
            assert_eq!((sum.loaded, sum.threads), (mods.len(), threads));
            let events = sys.0.into_inner().unwrap();
            let when = |p: &Path, start: bool| {
                events
                    .iter()
                    .position(|(q, s)| q == p && *s == start)
                    .unwrap()
            };
            for (i, m) in mods.iter().enumerate() {
                for &d in &deps[i] {
                    assert!(
                        when(&mods[d].path, false) < when(&m.path, true),
                        "{} started before {} was in ({threads} threads)",
                        m.path.display(),
                        mods[d].path.display()
                    );
                }
            }
            let most_at_once = events
                .iter()
                .scan(0i32, |n, (_, start)| {
                    *n += if *start { 1 } else { -1 };
                    Some(*n)
                })
                .max()
                .unwrap();
            assert!(most_at_once as usize <= threads);
            if threads > 1 {
                assert!(
                    most_at_once > 1,
                    "independent modules load at the same time"
                );
            }
        }
    }
}
