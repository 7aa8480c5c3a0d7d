//! Base images: `base/<name>/` root trees, listed, resolved, imported and removed.

use std::ffi::CString;
use std::io::Read;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, RenameFlags};

use super::error::{io_err, NfsTreeError, Result};
use super::fs_util::random_suffix;
use super::import::progress::{ImportProgress, ImportSummary};
use super::import::ImportOptions;
use super::{fsops, import};
use super::{parse_image_name, NfsTree};
use pureboot_contract::ids::ImageName;
use pureboot_contract::layout::BASE_DIR;

impl NfsTree {
    /// Names of the complete base images, sorted. Only real directories with valid names:
    /// hidden temporary directories of imports in progress (or crashed) never show, nor
    /// does a symlink.
    pub fn base_images(&self) -> Result<Vec<String>> {
        let Some(base) = self.top_dir(BASE_DIR, false)? else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = base
            .entries()?
            .into_iter()
            .filter(|(_, kind)| *kind == FileType::Directory)
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| ImageName::parse(name).is_ok())
            .collect();
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
        let is_dir = match self.top_dir(BASE_DIR, false)? {
            Some(base) => base
                .lstat(name)?
                .is_some_and(|st| fsops::file_type(&st) == FileType::Directory),
            None => false,
        };
        if is_dir {
            Ok(path)
        } else {
            Err(NfsTreeError::BaseImageNotFound {
                name: name.into(),
                path,
            })
        }
    }

    /// Imports a tar, tar.gz, tar.xz or tar.zst archive (told by content) as `base/<name>`,
    /// with the default [`ImportOptions`] (no device nodes, no set-uid bits, 64 GiB).
    /// See the `import` module for the guarantees.
    pub fn import_base_image(
        &self,
        archive: &Path,
        name: &str,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportSummary> {
        self.import_base_image_with(archive, name, &ImportOptions::default(), progress)
    }

    /// The same with the operator's [`ImportOptions`].
    pub fn import_base_image_with(
        &self,
        archive: &Path,
        name: &str,
        options: &ImportOptions,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportSummary> {
        parse_image_name(name)?;
        let base = self.top_dir(BASE_DIR, true)?.expect("created");
        import::import_file(&base, archive, name, options, progress)
    }

    /// The same, also returning the archive's content digest (`sha256:<hex>`) computed as
    /// the import reads it (one pass: a FIFO or a pipe works as a file does), over every
    /// byte of the file, the tail the import does not need included.
    pub fn import_base_image_digest(
        &self,
        archive: &Path,
        name: &str,
        options: &ImportOptions,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<(ImportSummary, String)> {
        use sha2::{Digest, Sha256};
        use std::sync::{Arc, Mutex};
        parse_image_name(name)?;
        let base = self.top_dir(BASE_DIR, true)?.expect("created");
        let file = std::fs::File::open(archive).map_err(io_err("open archive", archive))?;
        let size = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        // A second descriptor of the same open file shares its offset: what the import left
        // unread is read from it afterwards.
        let mut rest = file.try_clone().map_err(io_err("open archive", archive))?;
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        struct Hashing(std::fs::File, Arc<Mutex<Sha256>>);
        impl Read for Hashing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .update(&buf[..n]);
                Ok(n)
            }
        }
        let label = archive.display().to_string();
        let reader = Hashing(file, hasher.clone());
        let summary = import::import_reader(&base, reader, &label, size, name, options, progress)?;
        let mut h = hasher.lock().unwrap_or_else(|p| p.into_inner()).clone();
        std::io::copy(&mut rest, &mut h).map_err(io_err("read archive", archive))?;
        Ok((summary, format!("sha256:{:x}", h.finalize())))
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
        let base = self.top_dir(BASE_DIR, true)?.expect("created");
        let options = ImportOptions::default();
        import::import_reader(&base, reader, label, size, name, &options, progress)
    }

    /// Removes `base/<name>`; `false` if there was none. The image is first renamed to a
    /// hidden name, so it disappears from `base_images()` at once and never shows half-deleted.
    /// Nothing is followed: `base/` and the image must be real directories.
    pub fn remove_base_image(&self, name: &str) -> Result<bool> {
        let path = self.base_image_path(name)?;
        let Some(base) = self.top_dir(BASE_DIR, false)? else {
            return Ok(false);
        };
        match base.lstat(name)? {
            Some(st) if fsops::file_type(&st) == FileType::Directory => {}
            Some(_) => {
                return Err(NfsTreeError::BaseImageNotFound {
                    name: name.into(),
                    path,
                })
            }
            None => return Ok(false),
        }
        let doomed = format!(".remove-{name}-{}", random_suffix());
        let c = |s: &str| CString::new(s).expect("a validated name has no NUL");
        fsops::rename_at(
            base.fd(),
            &c(name),
            base.fd(),
            &c(&doomed),
            RenameFlags::empty(),
        )
        .map_err(io_err("rename for removal", &path))?;
        base.remove_tree(&doomed)?;
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
