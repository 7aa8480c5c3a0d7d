//! Named module sets. The NIC driver comes first in each, so its closure heads the load
//! list and pi-init can bring the link up while the rest loads.

use crate::kmod::{Lookup, ModuleDb, Request};

/// What every preset needs to mount an NFS root under an overlay: loaded at start.
const ROOT_MODULES: &[&str] = &["nfs", "nfsv3", "nfsv4", "overlay"];
/// A disk filesystem: `image` mode's loop-mounted ext4, or a local root. pi-init loads these
/// only when a step needs them (`/etc/pureboot/modules.disk`).
const DISK_MODULES: &[&str] = &["loop", "ext4"];

pub struct Preset {
    pub name: &'static str,
    /// Missing ones are errors (a tree we know, e.g. Debian's arm64 kernel under QEMU).
    required: bool,
    /// Each slot is a list of alternatives (name or alias); the first one found is used.
    nic: &'static [&'static [&'static str]],
}

pub const PRESETS: &[Preset] = &[
    // Measured with Debian's 6.1 arm64 kernel: virtio_net pulls failover and net_failover.
    Preset {
        name: "qemu-virt",
        required: true,
        nic: &[&["virtio_pci"], &["virtio_net"]],
    },
    // Pi 3B: smsc95xx (3B) or lan78xx (3B+) behind the dwc2 USB host (dwc_otg, built in, on
    // Raspberry Pi kernels).
    Preset {
        name: "rpi3",
        required: false,
        nic: &[&["dwc2"], &["smsc95xx"], &["lan78xx"]],
    },
    // Pi 4: GENET MAC ("genet" module, "bcmgenet" platform driver), its MDIO bus and PHY.
    Preset {
        name: "rpi4",
        required: false,
        nic: &[
            &["mdio-bcm-unimac"],
            &["broadcom"],
            &["genet", "platform:bcmgenet"],
        ],
    },
    // Pi 5: the MAC (Cadence macb) sits in the RP1 south bridge behind PCIe.
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
        ],
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
}

impl Preset {
    pub fn select(&self, db: &ModuleDb) -> Selection {
        let mut selection = Selection::default();
        let root_slots: Vec<&[&str]> = ROOT_MODULES.iter().map(std::slice::from_ref).collect();
        for slot in self.nic.iter().copied().chain(root_slots) {
            if self.required {
                // Resolution reports a missing one with the tree's path.
                selection.requests.push(Request::parse(slot[0]));
                continue;
            }
            match slot.iter().find(|name| db.lookup(name) != Lookup::NotFound) {
                Some(name) => selection.requests.push(Request::parse(name)),
                None => selection.not_found.push(slot.join("|")),
            }
        }
        selection.disk_requests = DISK_MODULES.iter().map(|m| Request::parse(m)).collect();
        selection
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmod::{Aliases, ModuleFile};

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

    #[test]
    fn qemu_virt_asks_for_the_nic_first_and_everything_regardless() {
        let selection = find("qemu-virt").unwrap().select(&db_with(&[], "", &[]));
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
        let disk: Vec<&str> = selection
            .disk_requests
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(disk, ["loop", "ext4"]);
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
        let selection = find("rpi4").unwrap().select(&db);
        assert_eq!(
            request_names(&selection),
            ["broadcom", "genet", "nfs", "nfsv3", "nfsv4", "overlay"]
        );
        assert_eq!(selection.not_found, ["mdio-bcm-unimac"]);
    }

    #[test]
    fn alternatives_fall_back_to_an_alias() {
        let db = db_with(&["bcmgenet"], "alias platform:bcmgenet bcmgenet\n", &[]);
        let selection = find("rpi4").unwrap().select(&db);
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
