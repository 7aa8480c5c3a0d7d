//! Paths below the export root, opened one component at a time without following symlinks.
//!
//! Clients write the export (a Pi is root there), so any name below the root may have been
//! replaced by a symlink, a fifo or a device node. The controller runs as root: a write or
//! read through such a name would reach anywhere on the host. So every directory below the
//! root is opened with `O_NOFOLLOW | O_DIRECTORY` from its parent's fd, every file is opened
//! from its directory's fd with `O_NOFOLLOW` (and `O_NONBLOCK`, so a planted fifo cannot
//! hang a read) and checked to be a regular file, and a symlink met on the way is an error
//! naming its path ([`NfsTreeError::Symlink`]). The root itself is the operator's
//! configuration and may be a symlink.
//!
//! The `*at` calls come from [`fsops`](super::fsops), which fixes their flags.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use super::error::{NfsTreeError, Result};
use super::fs_util::random_suffix;
use super::fsops;

/// One directory at or below the export root, held open.
#[derive(Debug)]
pub(crate) struct Dir {
    path: PathBuf,
    fd: OwnedFd,
}

fn cname(name: &OsStr) -> io::Result<CString> {
    fsops::cstring(name.as_bytes())
}

fn io_at(op: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> NfsTreeError {
    move |error| NfsTreeError::Io { op, path, error }
}

impl Dir {
    /// Opens the export root (following a symlink there: it is the operator's path),
    /// creating it if `create`.
    pub(crate) fn root(path: &Path, create: bool) -> Result<Dir> {
        if create {
            std::fs::create_dir_all(path).map_err(io_at("create", path.to_path_buf()))?;
        }
        let c = fsops::cstring(path.as_os_str().as_bytes()).map_err(io_at("open", path.into()))?;
        let fd = rustix::fs::open(
            c.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_at("open", path.to_path_buf())(e.into()))?;
        Ok(Dir {
            path: path.to_path_buf(),
            fd,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn child(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// The error for a name that could not be opened as `what`: a symlink is named as one.
    fn refused(&self, name: &CStr, path: PathBuf, op: &'static str, e: io::Error) -> NfsTreeError {
        match fsops::lstat_at(self.fd(), name) {
            Ok(st) if fsops::file_type(&st) == FileType::Symlink => NfsTreeError::Symlink { path },
            _ => NfsTreeError::Io { op, path, error: e },
        }
    }

    /// The subdirectory `name`; `None` if missing (and not `create`). With `create` a missing
    /// one is made with `mode`; an existing one keeps its mode.
    pub(crate) fn subdir(
        &self,
        name: impl AsRef<OsStr>,
        create: Option<u32>,
    ) -> Result<Option<Dir>> {
        let name = name.as_ref();
        let path = self.child(name);
        let c = cname(name).map_err(io_at("open", path.clone()))?;
        match fsops::open_dir_at(self.fd(), &c) {
            Ok(fd) => Ok(Some(Dir { path, fd })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let Some(mode) = create else { return Ok(None) };
                match fsops::mkdir_at(self.fd(), &c, mode) {
                    Ok(()) => {
                        let fd = fsops::open_dir_at(self.fd(), &c)
                            .map_err(|e| self.refused(&c, path.clone(), "open", e))?;
                        // The umask may have taken bits the caller asked for.
                        fsops::fchmod(fd.as_fd(), mode).map_err(io_at("chmod", path.clone()))?;
                        Ok(Some(Dir { path, fd }))
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        let fd = fsops::open_dir_at(self.fd(), &c)
                            .map_err(|e| self.refused(&c, path.clone(), "open", e))?;
                        Ok(Some(Dir { path, fd }))
                    }
                    Err(e) => Err(io_at("create", path)(e)),
                }
            }
            Err(e) => Err(self.refused(&c, path, "open", e)),
        }
    }

    /// As [`Dir::subdir`] for a path of several components (`nodes/<serial>/upper/etc`).
    pub(crate) fn subdirs(&self, rel: &[&OsStr], create: Option<u32>) -> Result<Option<Dir>> {
        let mut dir: Option<Dir> = None;
        for name in rel {
            let next = dir.as_ref().unwrap_or(self).subdir(name, create)?;
            match next {
                Some(d) => dir = Some(d),
                None => return Ok(None),
            }
        }
        Ok(Some(match dir {
            Some(d) => d,
            None => self.try_clone()?,
        }))
    }

    fn try_clone(&self) -> Result<Dir> {
        let fd = fsops::open_dir_at(self.fd(), c".").map_err(io_at("open", self.path.clone()))?;
        Ok(Dir {
            path: self.path.clone(),
            fd,
        })
    }

    /// Sets the directory's own mode (e.g. an older controller's 0755 node directory).
    pub(crate) fn set_mode(&self, mode: u32) -> Result<()> {
        let st = fsops::fstat(self.fd()).map_err(io_at("stat", self.path.clone()))?;
        if st.st_mode & 0o7777 != mode {
            fsops::fchmod(self.fd(), mode).map_err(io_at("chmod", self.path.clone()))?;
        }
        Ok(())
    }

    /// `lstat` of `name`; `None` if missing.
    pub(crate) fn lstat(&self, name: impl AsRef<OsStr>) -> Result<Option<rustix::fs::Stat>> {
        let path = self.child(name.as_ref());
        let c = cname(name.as_ref()).map_err(io_at("stat", path.clone()))?;
        match fsops::lstat_at(self.fd(), &c) {
            Ok(st) => Ok(Some(st)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(io_at("stat", path)(e)),
        }
    }

    /// Opens the regular file `name` (`flags`: access mode and the like); `None` if missing.
    /// A symlink is [`NfsTreeError::Symlink`]; a fifo, device or directory is refused.
    pub(crate) fn open_file(&self, name: impl AsRef<OsStr>, flags: OFlags) -> Result<Option<File>> {
        let path = self.child(name.as_ref());
        let c = cname(name.as_ref()).map_err(io_at("open", path.clone()))?;
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = match rustix::fs::openat(self.fd(), &c, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.refused(&c, path, "open", e.into())),
        };
        let st = fsops::fstat(fd.as_fd()).map_err(io_at("stat", path.clone()))?;
        if fsops::file_type(&st) != FileType::RegularFile {
            return Err(NfsTreeError::NotRegular { path });
        }
        // Back to blocking for the reads and writes that follow.
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| io_at("open", path)(e.into()))?;
        Ok(Some(fd.into()))
    }

    /// The whole content of the regular file `name`, at most `limit` bytes read; `None` if
    /// missing.
    pub(crate) fn read_file(&self, name: impl AsRef<OsStr>, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(f) = self.open_file(name.as_ref(), OFlags::RDONLY)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        f.take(limit)
            .read_to_end(&mut out)
            .map_err(io_at("read", self.child(name.as_ref())))?;
        Ok(Some(out))
    }

    /// Writes `name` whole under a temporary name and renames it into place, so a reader (a
    /// Pi over NFS) sees the old content or the new, never a torn one. Content and mode
    /// already there are left alone: node files are refreshed on every boot request, and an
    /// unchanged file should cost a read, not an fsync. Whatever else is at `name` (a planted
    /// symlink) is replaced by the rename, never written through.
    pub(crate) fn write_atomic(&self, name: &str, content: &[u8], mode: u32) -> Result<()> {
        let path = self.child(name);
        if let Ok(Some(f)) = self.open_file(name, OFlags::RDONLY) {
            let same_mode = f.metadata().is_ok_and(|m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777 == mode
            });
            let mut old = Vec::new();
            if same_mode
                && f.take(content.len() as u64 + 1)
                    .read_to_end(&mut old)
                    .is_ok()
                && old == content
            {
                return Ok(());
            }
        }
        let tmp = format!(".{name}.tmp-{}", random_suffix());
        let ctmp = cname(OsStr::new(&tmp)).map_err(io_at("write", path.clone()))?;
        let result = (|| {
            let mut f = fsops::create_file_at(self.fd(), &ctmp)?;
            f.write_all(content)?;
            fsops::fchmod(f.as_fd(), mode)?;
            f.sync_all()?;
            let cname = cname(OsStr::new(name))?;
            fsops::rename_at(self.fd(), &ctmp, self.fd(), &cname, RenameFlags::empty())
        })();
        if result.is_err() {
            let _ = fsops::unlink_at(self.fd(), &ctmp);
        }
        result.map_err(io_at("write", path))
    }

    /// Names and types of the entries, `.` and `..` left out.
    pub(crate) fn entries(&self) -> Result<Vec<(OsString, FileType)>> {
        let mut dir = rustix::fs::Dir::read_from(self.fd())
            .map_err(|e| io_at("list", self.path.clone())(e.into()))?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| io_at("list", self.path.clone())(e.into()))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let mut kind = entry.file_type();
            if kind == FileType::Unknown {
                let c = CString::new(name).expect("a directory entry has no NUL");
                kind = fsops::lstat_at(self.fd(), &c)
                    .map(|st| fsops::file_type(&st))
                    .map_err(io_at("stat", self.child(OsStr::from_bytes(name))))?;
            }
            out.push((OsString::from_vec(name.to_vec()), kind));
        }
        Ok(out)
    }

    /// Removes `name` and, if it is a directory, everything below it, never following a
    /// symlink (one is removed as itself). `false` if there was nothing. Read-only
    /// directories (an image's, met by a non-root user) are made writable first.
    pub(crate) fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = name.as_ref();
        let path = self.child(name);
        let c = cname(name).map_err(io_at("remove", path.clone()))?;
        match remove_at(self.fd(), &c) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(io_at("remove", path)(e)),
        }
    }
}

fn remove_at(parent: BorrowedFd, name: &CStr) -> io::Result<()> {
    let st = fsops::lstat_at(parent, name)?;
    if fsops::file_type(&st) != FileType::Directory {
        return fsops::unlink_at(parent, name);
    }
    let dir = fsops::open_dir_at(parent, name)?;
    if st.st_mode & 0o700 != 0o700 {
        fsops::fchmod(dir.as_fd(), 0o700)?;
    }
    let mut list = rustix::fs::Dir::read_from(&dir)?;
    let mut names = Vec::new();
    while let Some(entry) = list.read() {
        let entry = entry?;
        let n = entry.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    for n in names {
        remove_at(dir.as_fd(), &n)?;
    }
    Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_atomic_replaces_changes_and_keeps_identical_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::root(tmp.path(), false).unwrap();
        let path = tmp.path().join("hostname");
        dir.write_atomic("hostname", b"a\n", 0o644).unwrap();
        let first = fs::metadata(&path).unwrap().ino();
        dir.write_atomic("hostname", b"a\n", 0o644).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().ino(),
            first,
            "unchanged: not rewritten"
        );
        dir.write_atomic("hostname", b"b\n", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"b\n");
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            first,
            "changed: replaced by rename"
        );
        dir.write_atomic("hostname", b"b\n", 0o600).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().mode() & 0o7777,
            0o600,
            "mode change applied"
        );
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temporary files left"
        );
    }

    #[test]
    fn symlinks_fifos_and_directories_are_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("d")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), tmp.path().join("f")).unwrap();
        let fifo = CString::new(tmp.path().join("p").as_os_str().as_bytes()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let dir = Dir::root(tmp.path(), false).unwrap();
        let err = dir.subdir("d", Some(0o755)).unwrap_err();
        assert!(
            matches!(err, NfsTreeError::Symlink { ref path } if path.ends_with("d")),
            "{err}"
        );
        let err = dir.read_file("f", 100).unwrap_err();
        assert!(
            err.to_string().contains("symlink") && err.to_string().contains("/f"),
            "{err}"
        );
        let err = dir.read_file("p", 100).unwrap_err();
        assert!(matches!(err, NfsTreeError::NotRegular { .. }), "{err}");
        // Replacing the link, not writing through it.
        dir.write_atomic("f", b"mine", 0o644).unwrap();
        assert_eq!(fs::read(outside.path().join("secret")).unwrap(), b"s");
        assert!(dir.remove_tree("d").unwrap());
        assert!(
            outside.path().join("secret").exists(),
            "a link is removed as itself"
        );
    }
}
