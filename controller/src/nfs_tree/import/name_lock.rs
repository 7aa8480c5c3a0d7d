//! One import per image name at a time: `base/.import-<name>.lock`, flock'ed for the whole
//! import. It is what makes removing a crashed import's leftovers safe.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::super::error::{io_err, NfsTreeError, Result};
use super::fsops;

/// Held for the whole import; removed on drop while still held. A waiter that locked the
/// file just before it was removed notices (the name no longer leads to its inode) and
/// starts over, so two holders never coexist.
pub(super) struct NameLock {
    base: OwnedFd,
    name: CString,
    _file: fs::File,
}

impl NameLock {
    /// Takes the lock or fails at once with [`NfsTreeError::ImportInProgress`].
    pub(super) fn acquire(base_fd: BorrowedFd, base: &Path, image: &str) -> Result<NameLock> {
        let lock_name = format!(".import-{image}.lock");
        let path = base.join(&lock_name);
        let name = fsops::cstring(lock_name.as_bytes()).map_err(io_err("open lock", &path))?;
        loop {
            let file =
                fsops::open_lock_file_at(base_fd, &name).map_err(io_err("open lock", &path))?;
            if !fsops::try_lock_exclusive(file.as_fd()).map_err(io_err("lock", &path))? {
                return Err(NfsTreeError::ImportInProgress(image.to_string()));
            }
            let held = fsops::fstat(file.as_fd()).map_err(io_err("stat", &path))?;
            match fsops::lstat_at(base_fd, &name) {
                Ok(now) if now.st_dev == held.st_dev && now.st_ino == held.st_ino => {
                    let base = base_fd.try_clone_to_owned().map_err(io_err("dup", base))?;
                    return Ok(NameLock {
                        base,
                        name,
                        _file: file,
                    });
                }
                _ => continue,
            }
        }
    }
}

impl Drop for NameLock {
    fn drop(&mut self) {
        let _ = fsops::unlink_at(self.base.as_fd(), &self.name);
    }
}
