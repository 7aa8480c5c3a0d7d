//! Named module sets. The NIC driver comes first in each, so its closure heads the load
//! list and pi-init can bring the link up while the rest loads.

use crate::kmod::ModuleDb;

use crate::kmod::resolve::{Lookup, Request};

/// What every preset needs to mount an NFS root under an overlay: loaded at start.
const ROOT_MODULES: &[&str] = &["nfs", "nfsv3", "nfsv4", "overlay"];
/// A disk filesystem: `image` mode's loop-mounted ext4, or a local root. pi-init loads these
/// only when a step needs them (`/etc/pureboot/modules.disk`).
const DISK_MODULES: &[&str] = &["loop", "ext4"];
/// A squashfs base image (loop-mounted, `loop` above): on the disk list too, loaded when a
/// node's base image is one. Optional: without it a kernel still boots directory bases, so a
/// kernel lacking it is reported, not refused.
const SQUASHFS_MODULES: &[&str] = &["squashfs"];

pub struct Preset {
    pub name: &'static str,
    /// Missing ones are errors (a tree we know, e.g. Debian's arm64 kernel under QEMU).
    required: bool,
    /// Each slot is a list of alternatives (name or alias); the first one found is used.
    nic: &'static [&'static [&'static str]],
    /// Slots the board cannot boot without, whatever the kernel: found nowhere (neither a
    /// module nor built in), the preset refuses rather than build an initramfs whose NIC never
    /// appears. The message says which kernel has them.
    board: Option<Board>,
}

/// What a board cannot do without, and where to get it.
pub struct Board {
    pub needs: &'static [&'static str],
    pub why: &'static str,
}

/// The watchdog of the BCM2835 family (Pi 3, Pi 4): without it the kernel cannot reset the
/// board ("Reboot failed -- System halted"), so a failure-policy reboot hangs it, and
/// `pureboot.watchdog=` has no /dev/watchdog. A module on Debian's kernel, built into
/// Raspberry Pi OS's.
const WATCHDOG: &[&str] = &["bcm2835_wdt"];

pub const PRESETS: &[Preset] = &[
    // Measured with Debian's 6.1 arm64 kernel: virtio_net pulls failover and net_failover.
    Preset {
        name: "qemu-virt",
        required: true,
        nic: &[&["virtio_pci"], &["virtio_net"]],
        board: None,
    },
    // Pi 3B: smsc95xx (3B) or lan78xx (3B+) behind the dwc2 USB host (dwc_otg, built in, on
    // Raspberry Pi kernels). dwc2 needs the generic USB PHY driver: without phy-generic on
    // Debian's kernel it waits out the deferred-probe timeout and the NIC appears ~10 s late.
    Preset {
        name: "rpi3",
        required: false,
        nic: &[
            &["phy-generic"],
            &["dwc2"],
            &["smsc95xx"],
            &["lan78xx"],
            WATCHDOG,
        ],
        board: None,
    },
    // Pi 4: GENET MAC ("genet" module, "bcmgenet" platform driver), its MDIO bus and PHY.
    Preset {
        name: "rpi4",
        required: false,
        nic: &[
            &["mdio-bcm-unimac"],
            &["broadcom"],
            &["genet", "platform:bcmgenet"],
            WATCHDOG,
        ],
        board: None,
    },
    // Pi 5: the MAC (Cadence macb) sits in the RP1 south bridge behind PCIe. Only the
    // Raspberry Pi OS kernel has an RP1 driver (built in); Debian's 6.1 has none.
    Preset {
        name: "rpi5",
        required: false,
        nic: &[
            &["pcie-brcmstb"],
            &["rp1"],
            &["clk-rp1"],
            &["pinctrl-rp1"],
            &["broadcom"],
            &["macb"],
            WATCHDOG,
        ],
        board: Some(Board {
            needs: &["rp1", "clk-rp1", "pinctrl-rp1", "macb"],
            why: "the Pi 5's Ethernet MAC sits in the RP1 south bridge: use the Raspberry Pi OS \
                  kernel (bcm2712), which builds RP1 in; Debian's arm64 kernel has no RP1 driver",
        }),
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

/// A preset turned into requests for one module tree.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub requests: Vec<Request>,
    /// For the disk list, loaded only when needed.
    pub disk_requests: Vec<Request>,
    /// Optional slots with no module in this tree (shown to the user).
    pub not_found: Vec<String>,
    /// Slots the kernel has built in: nothing to load, nothing to say (a Raspberry Pi OS
    /// kernel builds the NIC drivers and the NFS client in).
    pub builtin: Vec<String>,
}

/// The preset cannot work with this kernel.
#[derive(Debug, thiserror::Error)]
#[error("preset {preset}: this kernel ({kver}) has no {} (neither a module nor built in): {why}", missing.join(", "))]
pub struct Unsupported {
    pub preset: &'static str,
    pub kver: String,
    pub missing: Vec<String>,
    pub why: &'static str,
}

impl Preset {
    pub fn select(&self, db: &ModuleDb) -> Result<Selection, Unsupported> {
        if let Some(board) = &self.board {
            let missing: Vec<String> = board
                .needs
                .iter()
                .filter(|name| db.lookup(name) == Lookup::NotFound)
                .map(|name| name.to_string())
                .collect();
            if !missing.is_empty() {
                return Err(Unsupported {
                    preset: self.name,
                    kver: db.kver.clone(),
                    missing,
                    why: board.why,
                });
            }
        }
        let mut selection = Selection::default();
        let root_slots: Vec<&[&str]> = ROOT_MODULES.iter().map(std::slice::from_ref).collect();
        for slot in self.nic.iter().copied().chain(root_slots) {
            if self.required {
                // Resolution reports a missing one with the tree's path.
                selection.requests.push(Request::parse(slot[0]));
                continue;
            }
            let found = slot
                .iter()
                .map(|name| (name, db.lookup(name)))
                .find(|(_, lookup)| *lookup != Lookup::NotFound);
            match found {
                Some((name, Lookup::Builtin)) => selection.builtin.push(name.to_string()),
                Some((name, _)) => selection.requests.push(Request::parse(name)),
                None => selection.not_found.push(slot.join("|")),
            }
        }
        for name in DISK_MODULES {
            // A missing one is an error at resolution, with the tree's path.
            match db.lookup(name) {
                Lookup::Builtin => selection.builtin.push(name.to_string()),
                _ => selection.disk_requests.push(Request::parse(name)),
            }
        }
        for name in SQUASHFS_MODULES {
            match db.lookup(name) {
                Lookup::Builtin => selection.builtin.push(name.to_string()),
                Lookup::NotFound if !self.required => selection
                    .not_found
                    .push(format!("{name} (squashfs base images cannot boot)")),
                _ => selection.disk_requests.push(Request::parse(name)),
            }
        }
        Ok(selection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmod::ModuleFile;
    use pureboot_contract::modules_list::Aliases;

    fn db_with(modules: &[&str], aliases: &str, builtin: &[&str]) -> ModuleDb {
        ModuleDb {
            dir: "/fake".into(),
            kver: "1".into(),
            modules: modules
                .iter()
                .map(|m| {
                    (
                        m.replace('-', "_"),
                        ModuleFile {
                            path: format!("k/{m}.ko"),
                            deps: vec![],
                        },
                    )
                })
                .collect(),
            builtin: builtin.iter().map(|b| b.to_string()).collect(),
            aliases: Aliases::parse(aliases),
            builtin_aliases: Aliases::default(),
            softdeps: Default::default(),
        }
    }

    fn request_names(selection: &Selection) -> Vec<&str> {
        selection.requests.iter().map(|r| r.name.as_str()).collect()
    }

    fn disk_names(selection: &Selection) -> Vec<&str> {
        selection
            .disk_requests
            .iter()
            .map(|r| r.name.as_str())
            .collect()
    }

    #[test]
    fn qemu_virt_asks_for_the_nic_first_and_everything_regardless() {
        let selection = find("qemu-virt")
            .unwrap()
            .select(&db_with(&[], "", &[]))
            .unwrap();
        assert_eq!(
            request_names(&selection),
            [
                "virtio_pci",
                "virtio_net",
                "nfs",
                "nfsv3",
                "nfsv4",
                "overlay",
            ]
        );
        assert_eq!(disk_names(&selection), ["loop", "ext4", "squashfs"]);
        assert!(selection.not_found.is_empty());
    }

    #[test]
    fn pi_presets_take_what_exists_and_list_the_rest() {
        let db = db_with(
            &[
                "broadcom", "genet", "nfs", "nfsv3", "nfsv4", "overlay", "ext4",
            ],
            "",
            &["loop"],
        );
        let selection = find("rpi4").unwrap().select(&db).unwrap();
        assert_eq!(
            request_names(&selection),
            ["broadcom", "genet", "nfs", "nfsv3", "nfsv4", "overlay"]
        );
        assert_eq!(
            selection.not_found,
            [
                "mdio-bcm-unimac",
                "bcm2835_wdt",
                "squashfs (squashfs base images cannot boot)"
            ]
        );
        assert_eq!(selection.builtin, ["loop"]);
        assert_eq!(disk_names(&selection), ["ext4"]);
    }

    /// Debian's 6.1 arm64 kernel: everything a Pi 3 needs is a module.
    const DEBIAN_PI3: &[&str] = &[
        "phy-generic",
        "dwc2",
        "smsc95xx",
        "lan78xx",
        "bcm2835_wdt",
        "nfs",
        "nfsv3",
        "nfsv4",
        "overlay",
        "loop",
        "ext4",
        "squashfs",
    ];

    #[test]
    fn rpi3_loads_the_usb_phy_before_dwc2_and_the_watchdog() {
        let selection = find("rpi3")
            .unwrap()
            .select(&db_with(DEBIAN_PI3, "", &[]))
            .unwrap();
        assert_eq!(
            request_names(&selection),
            [
                "phy-generic",
                "dwc2",
                "smsc95xx",
                "lan78xx",
                "bcm2835_wdt",
                "nfs",
                "nfsv3",
                "nfsv4",
                "overlay"
            ]
        );
        assert!(selection.not_found.is_empty() && selection.builtin.is_empty());
        assert_eq!(disk_names(&selection), ["loop", "ext4", "squashfs"]);
    }

    #[test]
    fn rpi5_refuses_a_kernel_without_rp1() {
        // Debian's kernel: macb and the PCIe host exist, RP1 does not.
        let db = db_with(
            &["macb", "broadcom", "nfs", "overlay"],
            "",
            &["pcie_brcmstb"],
        );
        let err = find("rpi5").unwrap().select(&db).unwrap_err();
        assert_eq!(err.missing, ["rp1", "clk-rp1", "pinctrl-rp1"]);
        let text = err.to_string();
        assert!(
            text.contains("rp1, clk-rp1, pinctrl-rp1") && text.contains("Raspberry Pi OS"),
            "{text}"
        );
        // A kernel with RP1 (built in, as Raspberry Pi OS builds it) is accepted.
        let db = db_with(
            &["overlay"],
            "",
            &["rp1", "clk_rp1", "pinctrl_rp1", "macb", "pcie_brcmstb"],
        );
        assert!(find("rpi5").unwrap().select(&db).is_ok());
    }

    #[test]
    fn built_in_slots_are_skipped_silently_and_only_modules_requested() {
        // Shaped like Raspberry Pi OS's bcm2711 kernel: NIC, NFS, watchdog, loop and ext4 in;
        // overlay and squashfs modules.
        let db = db_with(
            &["overlay", "squashfs"],
            "",
            &[
                "mdio_bcm_unimac",
                "broadcom",
                "genet",
                "bcm2835_wdt",
                "nfs",
                "nfsv3",
                "nfsv4",
                "loop",
                "ext4",
            ],
        );
        let selection = find("rpi4").unwrap().select(&db).unwrap();
        assert_eq!(request_names(&selection), ["overlay"]);
        assert_eq!(disk_names(&selection), ["squashfs"]);
        assert!(selection.not_found.is_empty());
        assert_eq!(selection.builtin.len(), 9, "{:?}", selection.builtin);
    }

    #[test]
    fn alternatives_fall_back_to_an_alias() {
        let db = db_with(&["bcmgenet"], "alias platform:bcmgenet bcmgenet\n", &[]);
        let selection = find("rpi4").unwrap().select(&db).unwrap();
        assert!(request_names(&selection).contains(&"platform:bcmgenet"));
    }

    #[test]
    fn every_preset_is_findable_by_name() {
        for name in names() {
            assert_eq!(find(name).unwrap().name, name);
        }
        assert!(find("rpi9").is_none());
    }
}
