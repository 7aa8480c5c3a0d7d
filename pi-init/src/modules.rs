//! Kernel modules: the lists `pureboot-image` resolved, loaded with finit_module(2) on a few
//! threads, each module as soon as the modules it depends on are in (module loading is
//! kernel CPU time, a third of a virtual Pi's boot path, and independent chains such as the
//! NIC driver and the NFS client need not wait for each other). The lists carry the
//! dependency graph and each file's size (their format: `pureboot_contract::modules_list`).
//!
//! `/etc/pureboot/modules` is loaded at start: its `start` entries, and the `device` entries
//! that the devices present ask for by modalias ([`crate::coldplug`]).
//! `/etc/pureboot/modules.disk` (loop, ext4: a disk filesystem) only when a step needs it,
//! so an NFS boot with a tmpfs overlay does not pay for them.

use crate::coldplug::Coldplug;
use crate::sys::Sys;
use nix::errno::Errno;
use pureboot_contract::modules_list::{self as list, Aliases, Entry, When};
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Loaded at start: the NIC driver, the NFS client, overlayfs.
pub const LIST_PATH: &str = list::LIST_PATH;
/// Loaded when the image overlay (a loop-mounted ext4) or a local root needs them.
pub const DISK_LIST_PATH: &str = list::DISK_LIST_PATH;

/// The entries marked `start`, and every entry they need: what loading a list loads.
pub fn at_start(list: &[Entry]) -> Vec<bool> {
    let mut wanted: Vec<bool> = list.iter().map(|e| e.when == When::Start).collect();
    add_needs(list, &mut wanted);
    wanted
}

/// Add to `wanted` every entry a wanted entry needs. Needs point at earlier entries only
/// (the parser drops any other), so one pass from the end reaches every one.
pub fn add_needs(list: &[Entry], wanted: &mut [bool]) {
    for i in (0..list.len()).rev() {
        if wanted.get(i) == Some(&true) {
            for &n in list[i].needs.iter().filter(|&&n| n < i) {
                if let Some(w) = wanted.get_mut(n) {
                    *w = true;
                }
            }
        }
    }
}

/// Who loads what next, among the modules whose dependencies are all done. Two orders, so
/// that neither the NIC nor the longest chain waits for the other: the first loader takes the
/// earliest on the list (`pureboot-image` puts the NIC driver first, so DHCP can start), the
/// others the one heading the heaviest chain still to load, which bounds when the NFS client
/// is ready. A module's file size stands in for its load time (nfsv4.ko is both the biggest
/// and the slowest). Modules a device asked for come first for the list-order loader: the
/// drivers carried by modalias are the NIC's and its bus's.
#[derive(Debug)]
pub struct Schedule {
    deps: Vec<Vec<usize>>,
    bytes: Vec<u64>,
    by_device: Vec<bool>,
    wanted: Vec<bool>,
    /// Weight of the heaviest chain of wanted modules from each module to the end of the list.
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
    /// The `wanted` entries of `list` (the others count as done), weighed by file size.
    pub fn new(list: &[Entry], wanted: &[bool]) -> Self {
        let n = list.len();
        let mut s = Self {
            // Only earlier entries, so the graph has no cycle whatever the caller built.
            deps: list
                .iter()
                .enumerate()
                .map(|(i, e)| e.needs.iter().copied().filter(|&d| d < i).collect())
                .collect(),
            bytes: list.iter().map(|e| e.bytes).collect(),
            by_device: list.iter().map(|e| e.when == When::Device).collect(),
            wanted: vec![false; n],
            chain: vec![0; n],
            started: vec![true; n],
            done: vec![true; n],
        };
        s.add(wanted);
        s
    }

    /// Want these entries too (the caller adds what they need); how many are new.
    pub fn add(&mut self, more: &[bool]) -> usize {
        let mut added = 0;
        for (i, _) in more.iter().enumerate().filter(|(_, m)| **m) {
            if let Some(false) = self.wanted.get(i) {
                self.wanted[i] = true;
                self.started[i] = false;
                self.done[i] = false;
                added += 1;
            }
        }
        let weight = |i: usize| if self.wanted[i] { self.bytes[i] } else { 0 };
        let mut chain: Vec<u64> = (0..self.deps.len()).map(weight).collect();
        // Users come after what they use: one pass from the end settles every chain.
        for u in (0..self.deps.len()).rev() {
            for &d in &self.deps[u] {
                let through = weight(d).saturating_add(chain[u]);
                chain[d] = chain[d].max(through);
            }
        }
        self.chain = chain;
        added
    }

    /// The next module for a loader: by list order, or by heaviest chain.
    pub fn next(&mut self, by_list: bool) -> Next {
        let ready = (0..self.deps.len())
            .filter(|&i| !self.started[i] && self.deps[i].iter().all(|&d| self.done[d]));
        let pick = if by_list {
            ready.min_by_key(|&i| (!self.by_device[i], i))
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

    /// How many modules are still to start.
    pub fn remaining(&self) -> usize {
        self.started.iter().filter(|s| !**s).count()
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
    pub missing: Vec<String>,
    pub failed: Vec<(String, Errno)>,
    pub threads: usize,
    /// The slowest modules loaded (at most three), slowest first.
    pub slowest: Vec<(String, Duration)>,
    /// The modules loaded because a device asked for them by modalias.
    pub by_device: Vec<String>,
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
        if !self.by_device.is_empty() {
            s += &format!("; by modalias {}", self.by_device.join(", "));
        }
        s
    }

    fn add(&mut self, m: &Entry, result: Result<(), Errno>, took: Duration) {
        match result {
            Ok(()) => {
                self.loaded += 1;
                log::debug!("module {} loaded in {} ms", m.path, took.as_millis());
                self.slowest.push((m.name(), took));
                self.slowest.sort_by_key(|s| std::cmp::Reverse(s.1));
                self.slowest.truncate(3);
            }
            Err(Errno::EEXIST) => self.already += 1,
            Err(Errno::ENOENT) => {
                log::warn!("module {} missing from the initramfs; skipped", m.path);
                self.missing.push(m.path.clone());
            }
            Err(e) => {
                log::error!("module {}: finit_module: {e}; continuing", m.path);
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
pub fn load(sys: &dyn Sys, modules: &[Entry], schedule: Schedule, threads: usize) -> LoadSummary {
    load_fed(sys, modules, schedule, threads, None)
}

/// What finds more modules to load while a load runs ([`coldplug`](crate::coldplug)): each
/// call returns the entries to add (with what they need), or `None` when it is done looking.
/// `first` is true for the first call.
pub type Feeder<'a> = dyn FnMut(bool) -> Option<Vec<bool>> + 'a;

/// [`load`], with `feeder` adding modules until it is done: this thread feeds while the
/// loaders load, and they wait for it. Without a thread to load while it looks, it is asked
/// once, then this thread loads.
pub fn load_fed(
    sys: &dyn Sys,
    modules: &[Entry],
    schedule: Schedule,
    threads: usize,
    feeder: Option<&mut Feeder>,
) -> LoadSummary {
    let feeding = feeder.is_some();
    // While a feeder may add modules, every thread asked for; else no more than there are
    // modules.
    let wanted = if feeding {
        threads.max(1)
    } else {
        threads.clamp(1, schedule.remaining().max(1))
    };
    let state = Mutex::new((schedule, LoadSummary::default(), feeding));
    let wake = Condvar::new();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let worker = |by_list: bool| loop {
        let i = {
            let mut guard = lock();
            loop {
                match guard.0.next(by_list) {
                    Next::Load(i) => break i,
                    Next::Finished if !guard.2 => return,
                    Next::Wait | Next::Finished => {
                        guard = wake.wait(guard).unwrap_or_else(|p| p.into_inner())
                    }
                }
            }
        };
        let m = &modules[i];
        let t = Instant::now();
        let result = sys.finit_module(Path::new(&m.path), &m.params);
        let mut guard = lock();
        guard.1.add(m, result, t.elapsed());
        guard.0.finish(i);
        wake.notify_all();
    };
    let worker = &worker;
    let mut running = 0;
    std::thread::scope(|s| {
        // Without a feeder this thread is the list-order loader.
        for n in usize::from(!feeding)..wanted {
            let spawned = std::thread::Builder::new()
                .name(format!("modules-{n}"))
                .spawn_scoped(s, move || worker(n == 0));
            if let Err(e) = spawned {
                // This thread still loads every module, only with less help.
                log::warn!("module loader {n}: no thread ({e})");
                break;
            }
            running += 1;
        }
        match feeder {
            Some(feed) if running > 0 => {
                let mut first = true;
                while let Some(more) = feed(first) {
                    first = false;
                    if lock().0.add(&more) > 0 {
                        wake.notify_all();
                    }
                }
                lock().2 = false;
                wake.notify_all();
            }
            feeder => {
                if let Some(more) = feeder.and_then(|f| f(true)) {
                    lock().0.add(&more);
                }
                lock().2 = false;
                running += 1;
                worker(true);
            }
        }
    });
    let mut summary = state.into_inner().unwrap_or_else(|p| p.into_inner()).1;
    summary.threads = running;
    summary
}

/// How long to look for devices that appear late (a USB NIC once its host driver and hub
/// are up) while no network device is there: as long as the network step waits for one.
pub const DEVICE_WAIT: Duration = Duration::from_secs(20);
/// Between two looks at sysfs.
const RESCAN: Duration = Duration::from_millis(50);

/// Load at start: the main list's `start` entries, and the `device` entries the devices
/// present ask for by modalias (its alias table), each with what it needs; then, while no
/// network device is there, look again for devices that appeared (at most [`DEVICE_WAIT`]).
/// `sysfs` is where sysfs is mounted.
pub fn load_at_start(sys: &dyn Sys, list: &Path, aliases: &Path, sysfs: &Path) -> LoadSummary {
    let list = read_list(list);
    let aliases = match std::fs::read_to_string(aliases) {
        Ok(text) => Aliases::parse(&text),
        Err(e) => {
            log::debug!("no alias table at {} ({e})", aliases.display());
            Aliases::default()
        }
    };
    load_with_devices(sys, &list, &aliases, sysfs, DEVICE_WAIT)
}

/// [`load_at_start`] on a list and an alias table, looking for late devices for `wait`.
pub fn load_with_devices(
    sys: &dyn Sys,
    list: &[Entry],
    aliases: &Aliases,
    sysfs: &Path,
    wait: Duration,
) -> LoadSummary {
    let wanted = at_start(list);
    let schedule = Schedule::new(list, &wanted);
    let mut cold = Coldplug::new(list, aliases, sysfs);
    if cold.is_empty() {
        return load(sys, list, schedule, threads());
    }
    let mut asked: Vec<String> = Vec::new();
    let mut summary = {
        let mut known = wanted;
        let deadline = Instant::now() + wait;
        let mut done = false;
        let mut feed = |first: bool| {
            if done {
                return None;
            }
            if !first {
                std::thread::sleep(RESCAN);
            }
            // One more look once the NIC is there: devices its driver created before the
            // interface (the PHY on its MDIO bus) are there too.
            done = cold.nic_present() || Instant::now() >= deadline;
            for i in cold.scan(&mut known) {
                asked.push(list[i].name());
            }
            add_needs(list, &mut known);
            done |= !cold.pending(&known);
            Some(known.clone())
        };
        load_fed(sys, list, schedule, threads(), Some(&mut feed))
    };
    summary.by_device = asked;
    summary
}

/// Read a list and load its `start` entries with what they need.
pub fn load_list(sys: &dyn Sys, path: &Path) -> LoadSummary {
    let list = read_list(path);
    let wanted = at_start(&list);
    load(sys, &list, Schedule::new(&list, &wanted), threads())
}

/// Read the list at `path`; a missing list means no modules (a kernel with everything built
/// in). Lines it cannot read are logged and left out.
pub fn read_list(path: &Path) -> Vec<Entry> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let (entries, warnings) = list::parse(&text);
            warnings
                .iter()
                .for_each(|w| log::warn!("{}: {w}", path.display()));
            entries
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
    use std::path::PathBuf;

    const LIST: &str = "# resolved by pureboot-image\n\
        start /lib/modules/6.1.0/kernel/drivers/virtio/virtio_pci.ko 43000 -\n\
        \n\
        start /lib/modules/6.1.0/kernel/fs/nfs/nfs.ko 835000 -  nfs4_disable_idmapping=1  foo=2\n\
        start relative/x.ko 1 -\n\
        device /lib/modules/6.1.0/kernel/drivers/net/usb/usbnet.ko 50000 -\n\
        start /lib/modules/6.1.0/kernel/fs/overlayfs/overlay.ko 257000 nfs,usbnet\n";

    fn path(e: &Entry) -> PathBuf {
        PathBuf::from(&e.path)
    }

    #[test]
    fn list_reads_through_the_contract_and_starts_what_start_needs() {
        let dir = crate::testutil::TempDir::new();
        let file = dir.path().join("modules");
        std::fs::write(&file, LIST).unwrap();
        let list = read_list(&file);
        assert_eq!(list.len(), 4, "the relative path is left out");
        assert_eq!(list[1].params, "nfs4_disable_idmapping=1 foo=2");
        assert_eq!(list[3].needs, [1, 2]);
        // usbnet is loaded by device only, but overlay (pretend) needs it.
        assert_eq!(at_start(&list), [true, true, true, true]);
        let mut only_device = list.clone();
        only_device[3].needs = vec![1];
        assert_eq!(at_start(&only_device), [true, true, false, true]);
        assert!(read_list(&dir.path().join("none")).is_empty());
    }

    #[test]
    fn loads_in_order_tolerating_loaded_and_missing() {
        let (list, _) = list::parse(LIST);
        let sys = FakeSys::new();
        sys.fail_module(&list[0].path, Errno::EEXIST);
        sys.fail_module(&list[1].path, Errno::ENOENT);
        sys.fail_module(&list[3].path, Errno::ENOEXEC);
        // One loader: list order, everything wanted.
        let all = vec![true; list.len()];
        let sum = load(&sys, &list, Schedule::new(&list, &all), 1);
        assert_eq!((sum.loaded, sum.already), (1, 1));
        assert_eq!(sum.missing, vec![list[1].path.clone()]);
        assert_eq!(sum.failed, vec![(list[3].path.clone(), Errno::ENOEXEC)]);
        let order: Vec<_> = sys
            .calls()
            .into_iter()
            .map(|c| match c {
                Call::FinitModule(p, params) => (p, params),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(order.len(), 4, "every module is tried");
        // In list order, device modules first.
        assert_eq!(order[0].0, path(&list[2]));
        assert_eq!(order[2], (path(&list[1]), list[1].params.clone()));
        assert!(sum.line().contains("1 missing") && sum.line().contains("1 failed"));

        // Not wanted: not loaded, and no thread for it.
        let ok = FakeSys::new();
        let some = [true, false, true, false];
        let sum = load(&ok, &list, Schedule::new(&list, &some), 4);
        assert_eq!(
            (sum.loaded, sum.threads),
            (2, 2),
            "no more threads than modules"
        );
        assert_eq!(sum.slowest.len(), 2);
        let mut loaded: Vec<Call> = ok.calls();
        // Two threads: either may come first.
        loaded.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            loaded,
            [2, 0].map(|i| Call::FinitModule(path(&list[i]), list[i].params.clone()))
        );
        let none = FakeSys::new();
        let sum = load(&none, &list, Schedule::new(&list, &[false; 4]), 4);
        assert_eq!((sum.loaded, none.calls().len()), (0, 0));
    }

    /// The NFS client and the NIC driver, as Debian's 6.1 arm64 modules declare them, with
    /// their sizes in KiB: a list as pureboot-image writes it.
    fn debian_like() -> Vec<Entry> {
        let mods: &[(&str, u64, &[&str])] = &[
            ("virtio_pci_legacy_dev", 13, &[]),
            ("virtio_pci_modern_dev", 24, &[]),
            (
                "virtio_pci",
                43,
                &["virtio_pci_legacy_dev", "virtio_pci_modern_dev"],
            ),
            ("failover", 17, &[]),
            ("net_failover", 28, &["failover"]),
            ("virtio_net", 108, &["net_failover"]),
            ("netfs", 97, &[]),
            ("fscache", 190, &["netfs"]),
            ("sunrpc", 1070, &[]),
            ("grace", 12, &[]),
            ("lockd", 199, &["sunrpc", "grace"]),
            ("nfs", 835, &["sunrpc", "lockd", "fscache", "netfs"]),
            ("nfs_acl", 14, &["sunrpc"]),
            ("nfsv3", 92, &["nfs_acl", "nfs"]),
            ("dns_resolver", 22, &[]),
            (
                "nfsv4",
                1594,
                &["nfs", "sunrpc", "dns_resolver", "fscache", "netfs"],
            ),
            ("overlay", 257, &[]),
        ];
        let text: String = mods
            .iter()
            .map(|(name, kib, needs)| {
                let needs = if needs.is_empty() {
                    "-".to_string()
                } else {
                    needs.join(",")
                };
                format!("start /lib/modules/6.1.0/kernel/{name}.ko {kib} {needs}\n")
            })
            .collect();
        let (list, warnings) = list::parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        list
    }

    fn at(list: &[Entry], name: &str) -> usize {
        list.iter().position(|e| e.name() == name).unwrap()
    }

    #[test]
    fn one_loader_follows_the_list_the_others_the_heaviest_chain() {
        let list = debian_like();
        let mut s = Schedule::new(&list, &at_start(&list));
        let mut name = |by_list: bool| match s.next(by_list) {
            Next::Load(i) => list[i].name(),
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
    fn unwanted_modules_weigh_nothing_and_are_never_started() {
        let list = debian_like();
        // Only overlay and the NIC: sunrpc's chain is not wanted, overlay is the heaviest.
        let mut wanted = vec![false; list.len()];
        for n in ["virtio_net", "overlay"] {
            wanted[at(&list, n)] = true;
        }
        add_needs(&list, &mut wanted);
        let mut s = Schedule::new(&list, &wanted);
        assert_eq!(s.remaining(), 4);
        let Next::Load(first) = s.next(false) else {
            panic!()
        };
        assert_eq!(list[first].name(), "overlay");
        let mut started = vec![first];
        while let Next::Load(i) = s.next(true) {
            started.push(i);
            s.finish(i);
        }
        s.finish(first);
        assert_eq!(s.next(true), Next::Finished);
        let mut names: Vec<String> = started.iter().map(|&i| list[i].name()).collect();
        names.sort();
        assert_eq!(names, ["failover", "net_failover", "overlay", "virtio_net"]);
    }

    #[test]
    fn schedule_loads_everything_once_whatever_the_mix_of_loaders() {
        let list = debian_like();
        for pattern in [[true, true], [false, false], [true, false]] {
            let mut s = Schedule::new(&list, &at_start(&list));
            let mut loaded = Vec::new();
            for turn in 0.. {
                match s.next(pattern[turn % 2]) {
                    Next::Load(i) => {
                        assert!(list[i].needs.iter().all(|&d| s.done[d]));
                        loaded.push(i);
                        // Finish in a shuffled but complete way: every third start waits.
                        if turn % 3 != 0 {
                            s.finish(i);
                        }
                    }
                    Next::Wait => {
                        let busy = (0..list.len()).find(|&i| s.started[i] && !s.done[i]);
                        s.finish(busy.expect("waiting means something is loading"));
                    }
                    Next::Finished => break,
                }
            }
            loaded.sort();
            assert_eq!(loaded, (0..list.len()).collect::<Vec<_>>(), "{pattern:?}");
        }
        assert_eq!(Schedule::new(&[], &[]).next(true), Next::Finished);
    }

    #[test]
    fn a_hand_built_list_with_forward_needs_cannot_deadlock() {
        let mut list = debian_like();
        list[0].needs = vec![5, 99];
        let mut s = Schedule::new(&list, &vec![true; list.len()]);
        let mut n = 0;
        while let Next::Load(i) = s.next(true) {
            s.finish(i);
            n += 1;
        }
        assert_eq!(n, list.len());
    }

    const BOARD: &str = "start /k/overlay.ko 257 -\n\
        device /k/usbcore.ko 300 -\n\
        device /k/dwc2.ko 200 usbcore\n\
        device /k/usbnet.ko 50 usbcore\n\
        device /k/smsc95xx.ko 60 usbnet\n\
        device /k/genet.ko 80 -\n\
        device /k/broadcom.ko 30 -\n";

    const BOARD_ALIASES: &str = "alias of:N*T*Cbrcm,bcm2835-usb dwc2\n\
        alias usb:v0424pEC00d*dc*dsc*dp*ic*isc*ip*in* smsc95xx\n\
        alias of:N*T*Cbrcm,bcm2711-genet-v5 genet\n\
        alias mdio:0000000101000011101111001111???? broadcom\n";

    /// A device on `bus`, as sysfs links it.
    fn device(sysfs: &Path, bus: &str, name: &str, modalias: &str) {
        let dir = sysfs.join("bus").join(bus).join("devices").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("modalias"), format!("{modalias}\n")).unwrap();
    }

    fn nic(sysfs: &Path) {
        let eth0 = sysfs.join("class/net/eth0");
        std::fs::create_dir_all(&eth0).unwrap();
        std::fs::write(eth0.join("type"), "1\n").unwrap();
    }

    fn loaded(sys: &FakeSys) -> Vec<String> {
        sys.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::FinitModule(p, _) => Some(list::module_name(&p.to_string_lossy())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn devices_present_load_their_drivers_and_what_those_need() {
        let tmp = crate::testutil::TempDir::new();
        device(
            tmp.path(),
            "platform",
            "3f980000.usb",
            "of:NusbT(null)Cbrcm,bcm2835-usb",
        );
        nic(tmp.path());
        let (list, _) = list::parse(BOARD);
        let sys = FakeSys::new();
        let aliases = Aliases::parse(BOARD_ALIASES);
        let t = Instant::now();
        let sum = load_with_devices(&sys, &list, &aliases, tmp.path(), Duration::from_secs(10));
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a NIC is there: no waiting"
        );
        let mut names = loaded(&sys);
        // usbcore before dwc2, whatever the threads did.
        let at = |n: &str| names.iter().position(|m| m == n).unwrap();
        assert!(at("usbcore") < at("dwc2"));
        names.sort();
        assert_eq!(names, ["dwc2", "overlay", "usbcore"]);
        assert_eq!(sum.by_device, ["dwc2"]);
        assert!(sum.line().ends_with("; by modalias dwc2"), "{}", sum.line());

        // Without a table: the start entries, and no look at sysfs.
        let plain = FakeSys::new();
        let sum = load_with_devices(
            &plain,
            &list,
            &Aliases::default(),
            Path::new("/nonexistent"),
            Duration::from_secs(10),
        );
        assert_eq!(
            (loaded(&plain), sum.by_device.len()),
            (vec!["overlay".to_string()], 0)
        );
    }

    #[test]
    fn a_usb_nic_that_appears_late_is_found_by_looking_again() {
        let tmp = crate::testutil::TempDir::new();
        let sysfs = tmp.path();
        device(
            sysfs,
            "platform",
            "3f980000.usb",
            "of:NusbT(null)Cbrcm,bcm2835-usb",
        );
        let (list, _) = list::parse(BOARD);
        let sys = FakeSys::new();
        let aliases = Aliases::parse(BOARD_ALIASES);
        let t = Instant::now();
        let sum = std::thread::scope(|s| {
            // The board: the hub finds the NIC once dwc2 is in, the NIC is an interface
            // once smsc95xx is.
            s.spawn(|| {
                let until = Instant::now() + Duration::from_secs(10);
                let mut hub = false;
                while Instant::now() < until {
                    let names = loaded(&sys);
                    if !hub && names.iter().any(|n| n == "dwc2") {
                        std::thread::sleep(Duration::from_millis(120));
                        device(
                            sysfs,
                            "usb",
                            "1-1.1:1.0",
                            "usb:v0424pEC00d0200dcFFdsc00dp02icFFisc00ip00in00",
                        );
                        hub = true;
                    }
                    if names.iter().any(|n| n == "smsc95xx") {
                        // Its PHY, then the interface: the PHY is found by the look after.
                        device(
                            sysfs,
                            "mdio_bus",
                            "phy0",
                            "mdio:00000001010000111011110011110001",
                        );
                        nic(sysfs);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            load_with_devices(&sys, &list, &aliases, sysfs, Duration::from_secs(10))
        });
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let mut names = loaded(&sys);
        names.sort();
        assert_eq!(
            names,
            ["broadcom", "dwc2", "overlay", "smsc95xx", "usbcore", "usbnet"]
        );
        assert_eq!(sum.by_device, ["dwc2", "smsc95xx", "broadcom"]);
        assert_eq!(sum.loaded, 6);
    }

    #[test]
    fn looking_for_late_devices_is_bounded() {
        let tmp = crate::testutil::TempDir::new();
        let (list, _) = list::parse(BOARD);
        let sys = FakeSys::new();
        let aliases = Aliases::parse(BOARD_ALIASES);
        let t = Instant::now();
        let sum = load_with_devices(
            &sys,
            &list,
            &aliases,
            tmp.path(),
            Duration::from_millis(300),
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(loaded(&sys), ["overlay"]);
        assert!(sum.by_device.is_empty());
    }

    #[test]
    fn the_list_order_loader_takes_device_modules_first() {
        let (list, _) = list::parse(BOARD);
        let mut s = Schedule::new(&list, &at_start(&list));
        let mut more = at_start(&list);
        more[5] = true;
        assert_eq!(s.add(&more), 1);
        assert_eq!(s.add(&more), 0, "already wanted");
        assert_eq!(s.next(true), Next::Load(5), "genet before overlay");
        assert_eq!(s.next(true), Next::Load(0));
        assert_eq!(s.next(true), Next::Wait);
    }

    /// Records when each finit_module starts and ends, taking a little time for each.
    #[derive(Default)]
    struct Timeline(Mutex<Vec<(PathBuf, bool)>>);

    impl Sys for Timeline {
        fn finit_module(&self, path: &Path, _: &str) -> Result<(), Errno> {
            self.0.lock().unwrap().push((path.into(), true));
            // Long enough that two loaders overlap even on a busy host.
            std::thread::sleep(Duration::from_millis(10));
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
        let list = debian_like();
        for threads in [1, 2, 4] {
            let sys = Timeline::default();
            let sum = load(&sys, &list, Schedule::new(&list, &at_start(&list)), threads);
            assert_eq!((sum.loaded, sum.threads), (list.len(), threads));
            let events = sys.0.into_inner().unwrap();
            let when = |p: &str, start: bool| {
                events
                    .iter()
                    .position(|(q, s)| q == Path::new(p) && *s == start)
                    .unwrap()
            };
            for m in &list {
                for &d in &m.needs {
                    assert!(
                        when(&list[d].path, false) < when(&m.path, true),
                        "{} started before {} was in ({threads} threads)",
                        m.path,
                        list[d].path
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
