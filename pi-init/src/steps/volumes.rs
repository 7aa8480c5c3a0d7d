//! The node's volumes, after the overlay and before the switch: each image in the node's
//! own `volumes/` on the export attached to a loop device and mounted (ext4) at its path
//! inside the new root, over the overlay, so what is written there lands in the image, a
//! real local filesystem (an overlay's upper layer may live there: containerd's snapshotter).
//! The mount point is made in the new root where missing; a symlink on the way is refused
//! (it would resolve outside the new root from here). A volume that cannot be mounted is
//! left out: the boot goes on, the report says which and why.

use crate::decide::volumes::VolumePlan;
use crate::sys::{MountArgs, Sys};
use nix::errno::Errno;
use nix::mount::MsFlags;
use pureboot_contract::layout::VOLUMES_DIR;
use pureboot_contract::VolumeOutcome;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why one volume is not mounted.
#[derive(Debug)]
pub enum VolumeError {
    /// The export is not a pureboot tree: there is no node directory to hold volumes.
    NoNodeDir,
    Symlink(PathBuf),
    NotDir(PathBuf),
    Mkdir(PathBuf, io::Error),
    LoopDevice(PathBuf, Errno),
    Mount(MountArgs, Errno),
}

impl fmt::Display for VolumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeError::NoNodeDir => {
                f.write_str("needs a pureboot export tree (nodes/<serial>/); this is a plain root")
            }
            VolumeError::Symlink(p) => write!(f, "{} is a symlink in the new root", p.display()),
            VolumeError::NotDir(p) => write!(f, "{} is not a directory", p.display()),
            VolumeError::Mkdir(p, e) => write!(f, "mkdir {}: {e}", p.display()),
            VolumeError::LoopDevice(p, e) => write!(f, "loop device for {}: {e}", p.display()),
            VolumeError::Mount(m, e) => write!(f, "{m}: {e} ({})", e.desc()),
        }
    }
}

/// `path`'s directory inside `newroot`, made where missing, no symlink followed on the way.
fn mount_point(newroot: &Path, v: &VolumePlan) -> Result<PathBuf, VolumeError> {
    let mut at = newroot.to_path_buf();
    for name in v.path.components() {
        at.push(name);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Err(VolumeError::Symlink(at)),
            Ok(m) if !m.is_dir() => return Err(VolumeError::NotDir(at)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(|e| VolumeError::Mkdir(at.clone(), e))?;
            }
            Err(e) => return Err(VolumeError::Mkdir(at, e)),
        }
    }
    Ok(at)
}

fn mount_one(
    sys: &dyn Sys,
    node_dir: Option<&Path>,
    newroot: &Path,
    v: &VolumePlan,
) -> Result<(), VolumeError> {
    let node_dir = node_dir.ok_or(VolumeError::NoNodeDir)?;
    // Only the node's own directory: the image name is a plain file name (decide::volumes).
    let image = node_dir.join(VOLUMES_DIR).join(&v.image);
    let target = mount_point(newroot, v)?;
    let dev = sys
        .loop_attach(&image, false)
        .map_err(|e| VolumeError::LoopDevice(image.clone(), e))?;
    let m = MountArgs::new(
        &dev.path.display().to_string(),
        &target,
        "ext4",
        MsFlags::empty(),
        "",
    );
    sys.mount(&m).map_err(|e| VolumeError::Mount(m, e))?;
    drop(dev); // the mount holds the device now
    Ok(())
}

/// Mounts every volume in order (parents first); each one's outcome, and a degradation
/// note for each left out.
pub fn mount_all(
    sys: &dyn Sys,
    node_dir: Option<&Path>,
    newroot: &Path,
    volumes: &[VolumePlan],
    degraded: &mut Vec<String>,
) -> Vec<VolumeOutcome> {
    volumes
        .iter()
        .map(|v| {
            let result = mount_one(sys, node_dir, newroot, v);
            match &result {
                Ok(()) => log::info!("volume {} mounted ({})", v.path, v.image),
                Err(e) => {
                    let note = format!(
                        "volume {} not mounted ({e}); its writes go to the root",
                        v.path
                    );
                    log::warn!("degraded: {note}");
                    degraded.push(note);
                }
            }
            VolumeOutcome {
                path: v.path.to_string(),
                image: v.image.clone(),
                mounted: result.is_ok(),
                error: result.err().map(|e| e.to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::testutil::TempDir;
    use crate::sys::fake::{Call, FakeSys};
    use pureboot_contract::volumes::VolumePath;

    fn plan(path: &str, image: &str) -> VolumePlan {
        VolumePlan {
            path: VolumePath::parse(path).unwrap(),
            image: image.into(),
        }
    }

    #[test]
    fn each_image_of_the_nodes_own_is_mounted_at_its_path_in_the_new_root() {
        let dir = TempDir::new();
        let (node, root) = (
            dir.path().join("nfs/nodes/d83add36"),
            dir.path().join("root"),
        );
        std::fs::create_dir_all(root.join("var")).unwrap();
        let sys = FakeSys::new();
        let mut notes = Vec::new();
        let vols = [
            plan("/var/lib/rancher", "var-lib-rancher.2.img"),
            plan("/srv/db", "srv-db.1.img"),
        ];
        let out = mount_all(&sys, Some(&node), &root, &vols, &mut notes);
        assert!(out.iter().all(|o| o.mounted), "{out:?}");
        assert!(notes.is_empty());
        assert!(root.join("var/lib/rancher").is_dir() && root.join("srv/db").is_dir());
        let attached: Vec<PathBuf> = sys
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::LoopAttach(p, false) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(
            attached,
            [
                node.join("volumes/var-lib-rancher.2.img"),
                node.join("volumes/srv-db.1.img")
            ]
        );
        let mounts = sys.mounts();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].target, root.join("var/lib/rancher"));
        assert_eq!(mounts[0].fstype.as_deref(), Some("ext4"));
        assert_eq!(mounts[0].source.as_deref(), Some("/dev/loop7"));
    }

    #[test]
    fn a_volume_that_cannot_be_mounted_is_left_out_and_said() {
        let dir = TempDir::new();
        let (node, root) = (
            dir.path().join("nfs/nodes/d83add36"),
            dir.path().join("root"),
        );
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("var/lib")).unwrap();
        std::fs::write(root.join("data"), b"a file").unwrap();
        let sys = FakeSys::new();
        sys.fail_mount("/dev/loop7", "", Errno::EINVAL);
        let mut notes = Vec::new();
        let vols = [
            plan("/data", "data.1.img"),
            plan("/srv", "srv.1.img"),
            plan("/var/lib/x", "var-lib-x.1.img"),
        ];
        let out = mount_all(&sys, Some(&node), &root, &vols, &mut notes);
        let errors: Vec<String> = out.iter().map(|o| o.error.clone().unwrap()).collect();
        assert!(errors[0].contains("is not a directory"), "{errors:?}");
        assert!(errors[1].contains("EINVAL"), "{errors:?}");
        assert!(errors[2].contains("symlink"), "{errors:?}");
        assert_eq!(notes.len(), 3);
        assert!(notes[1].starts_with("volume /srv not mounted"), "{notes:?}");
        // A plain root holds no node directory: nothing is tried.
        let out = mount_all(&FakeSys::new(), None, &root, &vols[1..2], &mut notes);
        assert!(out[0].error.as_deref().unwrap().contains("plain root"));
    }
}
