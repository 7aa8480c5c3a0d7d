//! A node's persist image that its Pi could not use: told apart from a usable one, moved
//! aside under a name with the time (never deleted: it may hold data worth recovering) and
//! replaced by a fresh image under a new generation's name, so the next boot is persistent
//! again and no name cache can hand it the old file.

use std::path::PathBuf;

use super::error::Result;
use super::images;
pub use super::images::utc_stamp;
use super::NfsTree;
use pureboot_contract::ids::Serial;
use pureboot_contract::layout::PERSIST_STEM;

/// What the node's current persist image looks like from the server.
pub type PersistState = images::ImageState;

impl NfsTree {
    /// What the node's current persist image is; a symlink there is an error naming it,
    /// never read through.
    pub fn persist_image_state(&self, serial: &Serial) -> Result<PersistState> {
        match self.node_dir(serial, false)? {
            Some(node) => images::state(&node, PERSIST_STEM),
            None => Ok(PersistState::Missing),
        }
    }

    /// Moves the current persist image to `<its name>.broken-<UTC time>` (an existing name
    /// is never replaced) and creates a fresh one of `size_mb`, as the next generation (a
    /// name no earlier image had). Returns where the old one went; `None` when there was
    /// none (then only the fresh image is made). Whatever is there is moved as itself: a
    /// planted symlink is set aside, never followed.
    pub fn set_aside_persist_image(
        &self,
        serial: &Serial,
        size_mb: u64,
    ) -> Result<Option<PathBuf>> {
        let node = self.node_dir(serial, true)?.expect("created");
        let moved = images::set_aside(&node, PERSIST_STEM)?;
        drop(node);
        self.create_persist_image(serial, size_mb)?;
        Ok(moved)
    }

    /// The persist images set aside for a node, oldest first.
    pub fn set_aside_persist_images(&self, serial: &Serial) -> Result<Vec<PathBuf>> {
        match self.node_dir(serial, false)? {
            Some(node) => images::set_aside_list(&node, PERSIST_STEM),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nfs_tree::images::EXT4_MAGIC;
    use std::fs;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc_stamp(t), "20231114T221320Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(leap), "20000229T000000Z");
    }

    #[test]
    fn broken_images_are_told_apart_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let tree = NfsTree::new(dir.path());
        assert_eq!(
            tree.persist_image_state(&Serial::parse("d83add36").unwrap())
                .unwrap(),
            PersistState::Missing
        );
        let node = dir.path().join("nodes/d83add36");
        fs::create_dir_all(&node).unwrap();
        fs::write(node.join("persist.img"), b"").unwrap();
        assert!(matches!(
            tree.persist_image_state(&Serial::parse("d83add36").unwrap()).unwrap(),
            PersistState::Broken(r) if r.contains("0 bytes")
        ));
        fs::write(node.join("persist.img"), vec![0u8; 1 << 20]).unwrap();
        assert!(matches!(
            tree.persist_image_state(&Serial::parse("d83add36").unwrap()).unwrap(),
            PersistState::Broken(r) if r.contains("superblock")
        ));
        let mut fake = vec![0u8; 4096];
        fake[1080..1082].copy_from_slice(&EXT4_MAGIC);
        fs::write(node.join("persist.img"), fake).unwrap();
        assert_eq!(
            tree.persist_image_state(&Serial::parse("d83add36").unwrap())
                .unwrap(),
            PersistState::Ext4
        );
    }
}
