//! Drivers by modalias, as udev's or mdev's coldplug finds them, for the modules the
//! initramfs carries. Every device in sysfs names what fits it in its `modalias` file
//! (`usb:v0424pEC00d0200dcFFdsc00dp02…`, `of:NethernetT(null)Cbrcm,bcm2711-genet-v5`); the
//! initramfs's alias table (`/etc/pureboot/modules.alias`, the kernel's `modules.alias`
//! limited to the carried modules) says which listed module answers to which pattern. So one
//! initramfs can carry the NIC drivers of several boards and load the one the board has.
//!
//! Devices behind a bus driver appear only once it is loaded (a Pi 3's USB NIC after dwc2 and
//! the hub): [`Coldplug::scan`] reads only the devices it has not seen, so the loader calls it
//! again until a network device is there. Under QEMU's emulation (TCG) sysfs is slow: on a
//! virt board (~50 bus devices, 1 vCPU, a busy host) a first look took ~80 ms of CPU and a
//! look again 10–30 ms.

use pureboot_contract::modules_list::{self as list, Aliases, Entry};
use std::path::{Path, PathBuf};

pub struct Coldplug {
    /// Modalias patterns and the list entry each loads.
    table: Vec<(String, usize)>,
    /// A hash of the sysfs path of every device looked at so far, sorted.
    seen: Vec<u64>,
    bus: PathBuf,
    net: crate::steps::net::link::Sysfs,
}

impl Coldplug {
    /// The patterns of `aliases` that name a module on `list`; `sysfs` is where sysfs is
    /// mounted (`/sys`).
    pub fn new(list: &[Entry], aliases: &Aliases, sysfs: &Path) -> Self {
        let names: Vec<String> = list.iter().map(Entry::name).collect();
        let table = aliases
            .iter()
            .filter_map(|(pattern, module)| {
                // A name given twice means its latest line, as the list's parser reads it.
                let i = names.iter().rposition(|n| n == module)?;
                Some((pattern.to_string(), i))
            })
            .collect();
        Self {
            table,
            seen: Vec::new(),
            bus: sysfs.join("bus"),
            net: crate::steps::net::link::Sysfs::new(sysfs),
        }
    }

    /// Nothing to look for: no alias names a listed module.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Whether a module the table names is not yet in `wanted`.
    pub fn pending(&self, wanted: &[bool]) -> bool {
        self.table
            .iter()
            .any(|&(_, i)| wanted.get(i) == Some(&false))
    }

    /// Read the modaliases of the devices not seen before and mark in `wanted` the entries
    /// they match; the entries newly marked.
    pub fn scan(&mut self, wanted: &mut [bool]) -> Vec<usize> {
        let mut found = Vec::new();
        for alias in modaliases(&self.bus, &mut self.seen) {
            let alias = list::normalize(&alias);
            for &(ref pattern, i) in &self.table {
                if wanted.get(i) == Some(&false)
                    && list::glob_match(pattern.as_bytes(), alias.as_bytes())
                {
                    wanted[i] = true;
                    found.push(i);
                }
            }
        }
        found
    }

    /// A network device is there: an Ethernet interface, what the network step waits for.
    pub fn nic_present(&self) -> bool {
        !self.net.ethernet_interfaces().is_empty()
    }
}

/// The modalias of every device on a bus (`<sysfs>/bus/*/devices/*`, links to the devices)
/// whose path is not in `seen` (a sorted list of hashes, which this extends). Only devices
/// on a bus are bound to drivers, so this finds what a walk of all of `/sys/devices` would
/// find that matters, in a fraction of the reads (a walk also meets every virtual tty,
/// memory block and `power/` directory: about a second under QEMU); and a device seen
/// before costs no read.
pub fn modaliases(bus: &Path, seen: &mut Vec<u64>) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(buses) = std::fs::read_dir(bus) else {
        return found;
    };
    for b in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(b.path().join("devices")) else {
            continue;
        };
        for d in devices.flatten() {
            let path = d.path();
            // FNV-1a.
            let hash = path
                .as_os_str()
                .as_encoded_bytes()
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
            match seen.binary_search(&hash) {
                Ok(_) => continue,
                Err(at) => seen.insert(at, hash),
            }
            if let Ok(text) = std::fs::read_to_string(path.join("modalias")) {
                let text = text.trim();
                if !text.is_empty() {
                    found.push(text.to_string());
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::testutil::TempDir;
    use pureboot_contract::modules_list::parse;

    const LIST: &str = "start /k/overlay.ko 1 -\n\
        device /k/usbcore.ko 1 -\n\
        device /k/dwc2.ko 1 usbcore\n\
        device /k/usbnet.ko 1 usbcore\n\
        device /k/smsc95xx.ko 1 usbnet\n\
        device /k/genet.ko 1 -\n";

    const ALIASES: &str = "alias of:N*T*Cbrcm,bcm2835-usbC* dwc2\n\
        alias of:N*T*Cbrcm,bcm2835-usb dwc2\n\
        alias usb:v0424pEC00d*dc*dsc*dp*ic*isc*ip*in* smsc95xx\n\
        alias of:N*T*Cbrcm,bcm2711-genet-v5 genet\n\
        alias pci:v00008086d* e1000e\n";

    /// A device at `devices/<at>`, linked from `bus/<bus>/devices/` as sysfs does.
    fn device(sysfs: &Path, bus: &str, at: &str, modalias: &str) {
        let dir = sysfs.join("devices").join(at);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("modalias"), format!("{modalias}\n")).unwrap();
        let links = sysfs.join("bus").join(bus).join("devices");
        std::fs::create_dir_all(&links).unwrap();
        let name = at.rsplit('/').next().unwrap();
        std::os::unix::fs::symlink(&dir, links.join(name)).unwrap();
    }

    #[test]
    fn finds_what_the_devices_present_ask_for_once() {
        let tmp = TempDir::new();
        let sysfs = tmp.path();
        device(
            sysfs,
            "platform",
            "platform/soc/3f980000.usb",
            "of:NusbT(null)Cbrcm,bcm2835-usb",
        );
        device(
            sysfs,
            "amba",
            "platform/soc/3f201000.serial",
            "of:NserialT(null)Carm,pl011Carm,primecell",
        );
        // A device without a modalias, a bus without devices.
        std::fs::create_dir_all(sysfs.join("bus/usb/devices/usb1")).unwrap();
        std::fs::create_dir_all(sysfs.join("bus/empty")).unwrap();
        let (list, _) = parse(LIST);
        let mut cold = Coldplug::new(&list, &Aliases::parse(ALIASES), sysfs);
        assert_eq!(cold.table.len(), 4, "e1000e is not on the list");
        let mut wanted = vec![true, false, false, false, false, false];
        let found = cold.scan(&mut wanted);
        assert_eq!(found, [2]);
        assert_eq!(wanted, [true, false, true, false, false, false]);
        assert!(cold.pending(&wanted));
        assert!(!cold.nic_present());

        // The hub found the NIC: only the new device is matched.
        device(
            sysfs,
            "usb",
            "platform/soc/3f980000.usb/usb1/1-1/1-1.1/1-1.1:1.0",
            "usb:v0424pEC00d0200dcFFdsc00dp02icFFisc00ip00in00",
        );
        let found = cold.scan(&mut wanted);
        assert_eq!(found.len(), 1);
        assert_eq!(list[found[0]].name(), "smsc95xx");
        assert!(cold.scan(&mut wanted).is_empty(), "nothing new");

        let eth0 = sysfs.join("class/net/eth0");
        std::fs::create_dir_all(&eth0).unwrap();
        std::fs::create_dir_all(sysfs.join("class/net/lo")).unwrap();
        std::fs::write(sysfs.join("class/net/lo/type"), "772\n").unwrap();
        assert!(!cold.nic_present(), "loopback only");
        std::fs::write(eth0.join("type"), "1\n").unwrap();
        assert!(cold.nic_present());
    }

    #[test]
    fn nothing_to_do_without_a_table_or_a_sysfs() {
        let (list, _) = parse(LIST);
        let mut cold = Coldplug::new(&list, &Aliases::default(), Path::new("/nonexistent"));
        assert!(cold.is_empty() && !cold.pending(&[false; 6]));
        let mut wanted = vec![false; 6];
        assert!(cold.scan(&mut wanted).is_empty());
        assert!(!cold.nic_present());
        assert!(modaliases(Path::new("/nonexistent"), &mut Vec::new()).is_empty());
    }
}
