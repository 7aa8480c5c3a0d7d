//! Overlay modes (DESIGN.md) and the overlayfs options that go with them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::Result;
use super::NfsTree;

/// Where a node's writable layer lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlayMode {
    /// Upper and work on a tmpfs on the Pi; writes are lost at reboot.
    #[default]
    Tmpfs,
    /// Upper and work inside `nodes/<serial8>/persist.img`, loop-mounted by the Pi.
    Image,
    /// Upper and work on NFS (`nodes/<serial8>/{upper,work}`), where kernel and server allow.
    Nfs,
    /// No writable layer: a read-only overlay of the node files over the base.
    None,
}

impl OverlayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OverlayMode::Tmpfs => "tmpfs",
            OverlayMode::Image => "image",
            OverlayMode::Nfs => "nfs",
            OverlayMode::None => "none",
        }
    }
}

impl fmt::Display for OverlayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OverlayMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tmpfs" => Ok(OverlayMode::Tmpfs),
            "image" => Ok(OverlayMode::Image),
            "nfs" => Ok(OverlayMode::Nfs),
            "none" => Ok(OverlayMode::None),
            other => Err(format!(
                "unknown overlay mode {other:?} (expected tmpfs, image, nfs or none)"
            )),
        }
    }
}

impl NfsTree {
    /// overlayfs options with server-side paths (what an operator compares with the Pi's
    /// mount). Mode `nfs` gets the complete set: the node's `upper/` is the upperdir.
    /// For `tmpfs` and `image` the upper and work directories are on the Pi (a tmpfs, or
    /// the loop-mounted persist.img), so only `lowerdir` is given, node files first; pi-init
    /// adds its own `upperdir=`/`workdir=`. For `none` the same `lowerdir` alone is the
    /// whole (read-only) mount.
    pub fn overlay_mount_options(
        &self,
        serial: &str,
        base_image: &str,
        mode: OverlayMode,
    ) -> Result<String> {
        let node = self.node_path(serial)?;
        let base = self.base_image_path(base_image)?;
        let upper = node.join("upper");
        Ok(match mode {
            OverlayMode::Nfs => format!(
                "lowerdir={},upperdir={},workdir={}",
                base.display(),
                upper.display(),
                node.join("work").display()
            ),
            OverlayMode::Tmpfs | OverlayMode::Image | OverlayMode::None => {
                format!("lowerdir={}:{}", upper.display(), base.display())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_as_text() {
        for mode in [
            OverlayMode::Tmpfs,
            OverlayMode::Image,
            OverlayMode::Nfs,
            OverlayMode::None,
        ] {
            assert_eq!(mode.as_str().parse::<OverlayMode>().unwrap(), mode);
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{mode}\""));
        }
        assert!("overlay"
            .parse::<OverlayMode>()
            .unwrap_err()
            .contains("overlay"));
    }

    #[test]
    fn mount_options_per_mode() {
        let tree = NfsTree::with_default_dirs("/srv/nfs");
        let opts = |mode| tree.overlay_mount_options("D83ADD36", "deb", mode).unwrap();
        assert_eq!(
            opts(OverlayMode::Nfs),
            "lowerdir=/srv/nfs/base/deb,upperdir=/srv/nfs/nodes/d83add36/upper,workdir=/srv/nfs/nodes/d83add36/work"
        );
        for mode in [OverlayMode::Tmpfs, OverlayMode::Image, OverlayMode::None] {
            assert_eq!(
                opts(mode),
                "lowerdir=/srv/nfs/nodes/d83add36/upper:/srv/nfs/base/deb"
            );
        }
        assert!(tree
            .overlay_mount_options("nope", "deb", OverlayMode::Nfs)
            .is_err());
        assert!(tree
            .overlay_mount_options("d83add36", "../etc", OverlayMode::Nfs)
            .is_err());
    }
}
