//! The module lists' schedule and loading, against the recording fake and a fake sysfs.

use super::*;
use crate::sys::fake::{Call, FakeSys};
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
    let dir = crate::support::testutil::TempDir::new();
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
fn named_modules_load_with_what_they_need_and_nothing_else() {
    let dir = crate::support::testutil::TempDir::new();
    let file = dir.path().join("modules.disk");
    std::fs::write(&file, LIST).unwrap();
    let sys = FakeSys::new();
    let sum = load_named(&sys, &file, &["overlay"]);
    assert_eq!(sum.loaded, 3, "overlay with nfs and usbnet, not virtio_pci");
    assert!(!sys
        .calls()
        .iter()
        .any(|c| matches!(c, Call::FinitModule(p, _) if p.ends_with("virtio_pci.ko"))));
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
    let tmp = crate::support::testutil::TempDir::new();
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
    let tmp = crate::support::testutil::TempDir::new();
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
    let tmp = crate::support::testutil::TempDir::new();
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
    fn loop_attach(&self, _: &Path, _: bool) -> Result<crate::sys::LoopDevice, Errno> {
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
    fn set_clock(&self, _: std::time::Duration) -> Result<(), Errno> {
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
