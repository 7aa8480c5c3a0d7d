//! The export's layout: the controller writes it, pi-init mounts it. One export root holds
//!
//! ```text
//! base/<image>/              shared read-only root trees (one per base image)
//! nodes/<serial>/upper/      the node's own files (etc/hostname, etc/machine-id, ...)
//! nodes/<serial>/work/       overlay workdir, overlay mode `nfs` only
//! nodes/<serial>/persist.img ext4 image holding the writable layer, overlay mode `image`
//! ```
//!
//! An export without `base/` that holds a root filesystem itself (upstream PureBoot's
//! `nfsroot=<server>:<path>` exports) is the other layout pi-init accepts: see [`RootLayout`].

use crate::ids::{ImageName, Serial};
use std::path::{Path, PathBuf};

pub const BASE_DIR: &str = "base";
pub const NODES_DIR: &str = "nodes";
pub const UPPER_DIR: &str = "upper";
pub const WORK_DIR: &str = "work";
pub const PERSIST_IMAGE: &str = "persist.img";
/// The identity files of a node, relative to its root (and so to its upper layer): the
/// controller writes them into `nodes/<serial>/upper`, pi-init where the node has none.
/// In a base image imported from a disk image: the boot partition's files as shipped
/// (kernels, device trees, overlays, start files, `config.txt`, `cmdline.txt`), where
/// Raspberry Pi OS mounts that partition. Written by the controller's import, read by
/// pureboot-image when it builds a TFTP folder from the image.
pub const BOOT_FIRMWARE_DIR: &str = "boot/firmware";
pub const HOSTNAME_FILE: &str = "etc/hostname";
pub const MACHINE_ID_FILE: &str = "etc/machine-id";

/// What an NFS export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootLayout {
    /// pureboot's tree: `base/<image>` under the node's `nodes/<serial>/upper`.
    Tree,
    /// The export is a root filesystem itself (kernel `nfsroot=`, upstream PureBoot's
    /// `nfs_path`): it is the lower layer, alone.
    Plain,
}

impl RootLayout {
    pub fn as_str(self) -> &'static str {
        match self {
            RootLayout::Tree => "tree (base/ + nodes/)",
            RootLayout::Plain => "plain root filesystem",
        }
    }
}

/// Paths inside one export root, wherever it is mounted or stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportLayout {
    root: PathBuf,
}

impl ExportLayout {
    pub fn new(root: impl Into<PathBuf>) -> ExportLayout {
        ExportLayout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn base_dir(&self) -> PathBuf {
        self.root.join(BASE_DIR)
    }
    pub fn base_image(&self, image: &ImageName) -> PathBuf {
        self.base_dir().join(image.as_str())
    }
    pub fn nodes_dir(&self) -> PathBuf {
        self.root.join(NODES_DIR)
    }
    pub fn node_dir(&self, serial: &Serial) -> PathBuf {
        self.nodes_dir().join(serial.as_str())
    }
    pub fn node_upper(&self, serial: &Serial) -> PathBuf {
        self.node_dir(serial).join(UPPER_DIR)
    }
    pub fn node_work(&self, serial: &Serial) -> PathBuf {
        self.node_dir(serial).join(WORK_DIR)
    }
    pub fn persist_image(&self, serial: &Serial) -> PathBuf {
        self.node_dir(serial).join(PERSIST_IMAGE)
    }
    pub fn node_hostname_file(&self, serial: &Serial) -> PathBuf {
        self.node_upper(serial).join(HOSTNAME_FILE)
    }
    pub fn node_machine_id_file(&self, serial: &Serial) -> PathBuf {
        self.node_upper(serial).join(MACHINE_ID_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let l = ExportLayout::new("/srv/nfsroot");
        let s = Serial::parse("D83ADD36").unwrap();
        let i = ImageName::parse("bookworm").unwrap();
        assert_eq!(l.base_image(&i), Path::new("/srv/nfsroot/base/bookworm"));
        assert_eq!(
            l.node_upper(&s),
            Path::new("/srv/nfsroot/nodes/d83add36/upper")
        );
        assert_eq!(
            l.node_work(&s),
            Path::new("/srv/nfsroot/nodes/d83add36/work")
        );
        assert_eq!(
            l.persist_image(&s),
            Path::new("/srv/nfsroot/nodes/d83add36/persist.img")
        );
        assert_eq!(
            l.node_hostname_file(&s),
            Path::new("/srv/nfsroot/nodes/d83add36/upper/etc/hostname")
        );
        assert_eq!(
            l.node_machine_id_file(&s),
            Path::new("/srv/nfsroot/nodes/d83add36/upper/etc/machine-id")
        );
    }
}
