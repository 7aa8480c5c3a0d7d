//! Overlay modes (DESIGN.md) and the overlayfs options that go with them.

use super::error::Result;
use super::NfsTree;

pub use pureboot_contract::OverlayMode;

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
