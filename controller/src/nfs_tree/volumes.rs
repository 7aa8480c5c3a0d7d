//! A node's volumes: one ext4 image per declared path in `nodes/<serial>/volumes/`, named
//! after the path ([`VolumePath::image_stem`]) and its generation
//! (`var-lib-rancher.1.img`), empty when made. Made, checked and set aside as the persist
//! image is (`images.rs`); pi-init loop-mounts each at its path in the node's root.

use std::path::PathBuf;

use serde::Serialize;

use super::beneath::Dir;
use super::error::{NfsTreeError, Result};
use super::images::{self, Family, ImageState};
use super::persist::{MAX_PERSIST_MB, MIN_PERSIST_MB};
use super::NfsTree;
use pureboot_contract::ids::Serial;
use pureboot_contract::layout::{generation_of, SET_ASIDE_MARK, VOLUMES_DIR};
use pureboot_contract::volumes::VolumePath;

/// `volumes/`: the node's alone, as its directory.
const VOLUMES_DIR_MODE: u32 = super::NODE_DIR_MODE;

/// A volume's current image on the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeImage {
    /// Where the node mounts it.
    pub path: VolumePath,
    /// Its file name in `volumes/` (the answer's `image`).
    pub image: String,
    pub file: PathBuf,
}

fn family<'a>(serial: &Serial, stem: &'a str) -> Family<'a> {
    Family {
        stem,
        // ext4 labels hold 16 bytes: the path is in the file's name.
        label: format!("pbv-{serial}"),
        dirs: &[],
    }
}

/// `stem.<n>.img` (not set aside, not a temporary): (stem, n).
fn split_image_name(name: &str) -> Option<(&str, u64)> {
    if name.contains(SET_ASIDE_MARK) || name.starts_with('.') {
        return None;
    }
    let (stem, _) = name.strip_suffix(".img")?.rsplit_once('.')?;
    Some((stem, generation_of(stem, name)?))
}

impl NfsTree {
    /// `nodes/<serial>/volumes`, opened (or with `create` made, 0700) without following a
    /// symlink.
    fn volumes_dir(&self, serial: &Serial, create: bool) -> Result<Option<Dir>> {
        let Some(node) = self.node_dir(serial, create)? else {
            return Ok(None);
        };
        node.subdir(VOLUMES_DIR, create.then_some(VOLUMES_DIR_MODE))
    }

    /// The volume's current image, made (`size_mb` MiB, sparse, 0600, empty ext4, as the
    /// next generation) when there is none; its file name. An existing image is never
    /// replaced nor resized.
    pub fn create_volume_image(
        &self,
        serial: &Serial,
        path: &VolumePath,
        size_mb: u64,
    ) -> Result<String> {
        if !(MIN_PERSIST_MB..=MAX_PERSIST_MB).contains(&size_mb) {
            return Err(NfsTreeError::InvalidPersistSize(size_mb));
        }
        let dir = self.volumes_dir(serial, true)?.expect("created");
        let stem = path.image_stem();
        images::ensure(&dir, &family(serial, &stem), size_mb)
    }

    /// What the volume's current image is.
    pub fn volume_image_state(&self, serial: &Serial, path: &VolumePath) -> Result<ImageState> {
        match self.volumes_dir(serial, false)? {
            Some(dir) => images::state(&dir, &path.image_stem()),
            None => Ok(ImageState::Missing),
        }
    }

    /// Moves the volume's current image aside (`<name>.broken-<UTC time>`, never deleted)
    /// and makes a fresh one of `size_mb` as the next generation; where the old one went.
    pub fn set_aside_volume_image(
        &self,
        serial: &Serial,
        path: &VolumePath,
        size_mb: u64,
    ) -> Result<(Option<PathBuf>, String)> {
        let dir = self.volumes_dir(serial, true)?.expect("created");
        let moved = images::set_aside(&dir, &path.image_stem())?;
        drop(dir);
        let fresh = self.create_volume_image(serial, path, size_mb)?;
        Ok((moved, fresh))
    }

    /// The node's volume images on the export (the current generation of each path), by
    /// path; images set aside and names that are no volume's are left out.
    pub fn volume_images(&self, serial: &Serial) -> Result<Vec<VolumeImage>> {
        let Some(dir) = self.volumes_dir(serial, false)? else {
            return Ok(Vec::new());
        };
        let mut best: std::collections::BTreeMap<VolumePath, (u64, String)> = Default::default();
        for (name, _) in dir.entries()? {
            let Some(name) = name.to_str() else { continue };
            let Some((stem, generation)) = split_image_name(name) else {
                continue;
            };
            let Some(path) = VolumePath::from_stem(stem) else {
                continue;
            };
            let slot = best.entry(path).or_insert((generation, name.to_string()));
            if generation > slot.0 {
                *slot = (generation, name.to_string());
            }
        }
        Ok(best
            .into_iter()
            .map(|(path, (_, image))| VolumeImage {
                file: dir.child(&image),
                path,
                image,
            })
            .collect())
    }

    /// The volume images set aside for a node, oldest first within each path.
    pub fn set_aside_volume_images(&self, serial: &Serial) -> Result<Vec<PathBuf>> {
        let Some(dir) = self.volumes_dir(serial, false)? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<PathBuf> = dir
            .entries()?
            .into_iter()
            .filter(|(n, _)| n.to_str().is_some_and(|n| n.contains(SET_ASIDE_MARK)))
            .map(|(n, _)| dir.child(n))
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_stem_and_generation() {
        assert_eq!(
            split_image_name("var-lib-rancher.3.img"),
            Some(("var-lib-rancher", 3))
        );
        assert_eq!(split_image_name("srv-a.b.1.img"), Some(("srv-a.b", 1)));
        for not_current in [
            "var-lib-rancher.3.img.broken-20261126T110203Z",
            ".var-lib-rancher.1.img-0badcafe",
            "var-lib-rancher.img.tmp",
            "notes.txt",
        ] {
            assert_eq!(split_image_name(not_current), None, "{not_current}");
        }
    }
}
