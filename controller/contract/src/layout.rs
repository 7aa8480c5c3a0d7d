//! The export's layout: the controller writes it, pi-init mounts it. One export root holds
//!
//! ```text
//! base/<image>/              shared read-only root trees (one per base image), or
//! base/<image>/root.squashfs  the same root as one squashfs file (see [`SQUASHFS_IMAGE`])
//! nodes/<serial>/upper/      the node's own files (etc/hostname, etc/machine-id, ...)
//! nodes/<serial>/work/       overlay workdir, overlay mode `nfs` only
//! nodes/<serial>/persist.img ext4 image holding the writable layer, overlay mode `image`
//!                            (generation 0; later ones are persist.<n>.img)
//! nodes/<serial>/volumes/<stem>.<n>.img  one ext4 image per declared volume
//! ```
//!
//! Images come in generations: a fresh one (first made, or made again after a repair or
//! `overlay reset`) never takes a name an earlier one had, and the boot answer names the
//! current file. An NFS server's or client's name cache may still resolve an old name to
//! the old file (a broken image set aside under another name is still there): measured
//! with nfs-ganesha's default directory cache, a fresh `persist.img` made under the old
//! name was mounted as the broken one at the next boot. A new name cannot be served stale.
//!
//! An export without `base/` that holds a root filesystem itself (upstream PureBoot's
//! `nfsroot=<server>:<path>` exports) is the other layout pi-init accepts: see [`RootLayout`].

use crate::ids::{ImageName, Serial};
use std::path::{Path, PathBuf};

pub const BASE_DIR: &str = "base";
/// A base image in the squashfs format: `base/<image>/` holds this one file (and its
/// digest, [`SQUASHFS_DIGEST`]) instead of a root tree. pi-init tells the format from what
/// the directory holds, so the boot answer names a base image the same way for both and
/// an answer from upstream PureBoot (which knows no formats) keeps working; a root tree
/// never has a top-level file of this name. Still a directory, so anything that versions
/// or lists `base/<image>` directories needs nothing new for it.
pub const SQUASHFS_IMAGE: &str = "root.squashfs";
/// `sha256sum`'s line for [`SQUASHFS_IMAGE`] (`<hex>  root.squashfs`), written by the
/// import beside it.
pub const SQUASHFS_DIGEST: &str = "root.squashfs.sha256";
pub const NODES_DIR: &str = "nodes";
pub const UPPER_DIR: &str = "upper";
pub const WORK_DIR: &str = "work";
/// Generation 0 of the persist image, the name before generations (and an answer
/// without `persist_image`, an older controller's, means it).
pub const PERSIST_IMAGE: &str = "persist.img";
/// The stem of the persist image's generations: `persist.<n>.img`.
pub const PERSIST_STEM: &str = "persist";
/// A node's volume images: `volumes/<stem>.<n>.img` in its directory.
pub const VOLUMES_DIR: &str = "volumes";
/// What an image set aside is renamed to: `<its name>.broken-<UTC time>`.
pub const SET_ASIDE_MARK: &str = ".broken-";
/// The identity files of a node, relative to its root (and so to its upper layer): the
/// controller writes them into `nodes/<serial>/upper`, pi-init where the node has none.
/// In a base image imported from a disk image: the boot partition's files as shipped
/// (kernels, device trees, overlays, start files, `config.txt`, `cmdline.txt`), where
/// Raspberry Pi OS mounts that partition. Written by the controller's import, read by
/// pureboot-image when it builds a TFTP folder from the image.
pub const BOOT_FIRMWARE_DIR: &str = "boot/firmware";
pub const HOSTNAME_FILE: &str = "etc/hostname";
pub const MACHINE_ID_FILE: &str = "etc/machine-id";

/// Generation `n` of the images made under `stem`: `<stem>.<n>.img`, and `<stem>.img` for
/// generation 0.
pub fn image_file(stem: &str, generation: u64) -> String {
    match generation {
        0 => format!("{stem}.img"),
        n => format!("{stem}.{n}.img"),
    }
}

/// The generation `name` is of the images made under `stem` ([`image_file`]), also when it
/// was set aside (`<name>.broken-<time>`); `None` when it is none of them.
pub fn generation_of(stem: &str, name: &str) -> Option<u64> {
    let name = name.split_once(SET_ASIDE_MARK).map_or(name, |(n, _)| n);
    let middle = name.strip_prefix(stem)?.strip_suffix(".img")?;
    if middle.is_empty() {
        return Some(0);
    }
    let digits = middle.strip_prefix('.')?;
    let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| digits.parse().ok()).flatten()
}

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
    pub fn node_volumes(&self, serial: &Serial) -> PathBuf {
        self.node_dir(serial).join(VOLUMES_DIR)
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
    fn generations_have_names_of_their_own() {
        assert_eq!(image_file(PERSIST_STEM, 0), PERSIST_IMAGE);
        assert_eq!(image_file(PERSIST_STEM, 3), "persist.3.img");
        assert_eq!(image_file("var-lib-rancher", 1), "var-lib-rancher.1.img");
        let table = [
            ("persist.img", Some(0)),
            ("persist.7.img", Some(7)),
            ("persist.img.broken-20261126T110203Z", Some(0)),
            ("persist.12.img.broken-20261126T110203Z-2", Some(12)),
            ("persist.x.img", None),
            ("persist..img", None),
            ("persist.+1.img", None),
            ("persistent.img", None),
            ("persist.1.img.tmp", None),
            (".persist.img-abc", None),
        ];
        for (name, want) in table {
            assert_eq!(generation_of(PERSIST_STEM, name), want, "{name}");
        }
        // A stem that is another's prefix: its names are not the other's.
        assert_eq!(generation_of("var-lib", "var-lib-x.1.img"), None);
        assert_eq!(generation_of("srv-a.b", "srv-a.b.2.img"), Some(2));
    }

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
