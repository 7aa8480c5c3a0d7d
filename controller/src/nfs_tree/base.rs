//! Base images: `base/<name>/` root trees, listed, resolved, imported and removed.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{io_err, NfsTreeError, Result};
use super::fs_util::{random_suffix, remove_tree};
use super::import;
use super::import::progress::{ImportProgress, ImportSummary};
use super::{parse_image_name, NfsTree};
use pureboot_contract::ids::ImageName;

impl NfsTree {
    /// Names of the complete base images, sorted. Only real directories with valid names:
    /// hidden temporary directories of imports in progress (or crashed) never show.
    pub fn base_images(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.base) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(NfsTreeError::Io {
                    op: "list",
                    path: self.base.clone(),
                    error: e,
                })
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.base))?;
            let is_dir = entry
                .file_type()
                .map_err(io_err("stat", entry.path()))?
                .is_dir();
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_dir && ImageName::parse(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// `base/<name>` for a valid name; the directory need not exist.
    pub fn base_image_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self.layout.base_image(&parse_image_name(name)?))
    }

    /// `base/<name>` if it is an existing directory, else [`NfsTreeError::BaseImageNotFound`].
    pub fn existing_base_image(&self, name: &str) -> Result<PathBuf> {
        let path = self.base_image_path(name)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => Ok(path),
            _ => Err(NfsTreeError::BaseImageNotFound {
                name: name.into(),
                path,
            }),
        }
    }

    /// Imports a tar, tar.gz, tar.xz or tar.zst archive (told by content) as `base/<name>`.
    /// See the `import` module for the guarantees.
    pub fn import_base_image(
        &self,
        archive: &Path,
        name: &str,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportSummary> {
        parse_image_name(name)?;
        import::import_file(&self.base, archive, name, progress)
    }

    /// The same from a stream (stdin, an upload); `label` names it in messages and
    /// `size` (when known) gives progress a percentage.
    pub fn import_base_image_from_reader(
        &self,
        reader: impl Read + Send,
        label: &str,
        size: Option<u64>,
        name: &str,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportSummary> {
        parse_image_name(name)?;
        import::import_reader(&self.base, reader, label, size, name, progress)
    }

    /// Removes `base/<name>`; `false` if there was none. The image is first renamed to a
    /// hidden name, so it disappears from `base_images()` at once and never shows half-deleted.
    pub fn remove_base_image(&self, name: &str) -> Result<bool> {
        let path = self.base_image_path(name)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(NfsTreeError::BaseImageNotFound {
                    name: name.into(),
                    path,
                })
            }
            Err(_) => return Ok(false),
        }
        let doomed = self
            .base
            .join(format!(".remove-{name}-{}", random_suffix()));
        fs::rename(&path, &doomed).map_err(io_err("rename for removal", &path))?;
        remove_tree(&doomed).map_err(io_err("remove", &doomed))?;
        log::info!("removed base image {name}");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_refused_with_the_tree_error() {
        // The rule is the contract's (its tests hold the table); here, the tree's error.
        assert!(parse_image_name("debian_12.5").is_ok());
        let err = parse_image_name("../x").unwrap_err();
        assert!(
            matches!(err, NfsTreeError::InvalidImageName(ref n) if n == "../x"),
            "{err}"
        );
    }
}
