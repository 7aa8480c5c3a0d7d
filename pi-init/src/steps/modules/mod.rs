//! Kernel modules: the lists `pureboot-image` resolved, loaded with finit_module(2) on a few
//! threads, each module as soon as the modules it depends on are in (module loading is
//! kernel CPU time, a third of a virtual Pi's boot path, and independent chains such as the
//! NIC driver and the NFS client need not wait for each other). The lists carry the
//! dependency graph and each file's size (their format: `pureboot_contract::modules_list`).
//!
//! `/etc/pureboot/modules` is loaded at start: its `start` entries, and the `device` entries
//! that the devices present ask for by modalias ([`crate::steps::coldplug`]).
//! `/etc/pureboot/modules.disk` (loop, ext4: a disk filesystem) only when a step needs it,
//! so an NFS boot with a tmpfs overlay does not pay for them.

use crate::steps::coldplug::Coldplug;
use crate::sys::Sys;
use nix::errno::Errno;
use pureboot_contract::modules_list::{self as list, Aliases, Entry, When};
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

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

/// What finds more modules to load while a load runs ([`coldplug`](crate::steps::coldplug)): each
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

/// The modules of the list at `path` named in `names` (the kernel's spelling, `_`), with
/// what they need, and no other: a squashfs base needs `loop` and `squashfs` of the disk
/// list, not its ext4.
pub fn load_named(sys: &dyn Sys, path: &Path, names: &[&str]) -> LoadSummary {
    let list = read_list(path);
    let mut wanted: Vec<bool> = list.iter().map(|e| names.contains(&&*e.name())).collect();
    add_needs(&list, &mut wanted);
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
mod tests;
