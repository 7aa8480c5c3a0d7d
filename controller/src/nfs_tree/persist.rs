//! The node's persist image: the ext4 image holding its writable layer for overlay mode
//! `image`, `persist.<n>.img` in its directory (generation 0 is the older `persist.img`).
//! Made by `mkfs.ext4 -d` from a staging directory holding `upper/` and `work/`, so no loop
//! mount is needed here; how images are made, found and named is `images.rs`.

use std::path::PathBuf;

use super::error::{NfsTreeError, Result};
use super::images::{self, Family};
use super::NfsTree;
use pureboot_contract::ids::Serial;
use pureboot_contract::layout::{PERSIST_STEM, UPPER_DIR, WORK_DIR};

/// The sizes an image (the persist image, a volume) may have, in MiB.
pub const MIN_PERSIST_MB: u64 = 16;
pub const MAX_PERSIST_MB: u64 = 1 << 20;

/// `persist.img` (and any volume of a node): the node's data, nobody else's to read.
pub const PERSIST_MODE: u32 = images::IMAGE_MODE;

pub(super) fn persist_family(serial: &Serial) -> Family<'static> {
    Family {
        stem: PERSIST_STEM,
        label: format!("pb-{serial}"),
        dirs: &[UPPER_DIR, WORK_DIR],
    }
}

impl NfsTree {
    /// The node's current persist image, made (`size_mb` MiB, sparse, 0600, as the next
    /// generation) when it has none; its path. An existing image is left untouched,
    /// whatever its size (its mode is made 0600); a symlink or anything but a regular file
    /// there is an error naming it.
    pub fn create_persist_image(&self, serial: &Serial, size_mb: u64) -> Result<PathBuf> {
        if !(MIN_PERSIST_MB..=MAX_PERSIST_MB).contains(&size_mb) {
            return Err(NfsTreeError::InvalidPersistSize(size_mb));
        }
        let node = self.node_dir(serial, true)?.expect("created");
        let name = images::ensure(&node, &persist_family(serial), size_mb)?;
        Ok(node.child(name))
    }
}
