//! Checked wrappers over the `*at` syscalls the export code needs (the base image import,
//! node trees, persist images). Every call works relative
//! to an already-open directory and never follows a symlink in the last component; that,
//! plus opening parents one component at a time with `O_NOFOLLOW`, is what keeps archive
//! entries inside the target whatever symlinks the archive (or anyone) put there.
//!
//! The syscalls themselves come from `rustix` (safe, fd-typed); this module fixes the flags
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `O_CLOEXEC`) in one place so no caller can forget
//! them, and turns errors into `io::Error` with the errno kept (callers match on it).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{
    AtFlags, FlockOperation, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags, UTIME_NOW,
};
use rustix::fs::{FileType, RenameFlags, Stat};

pub(crate) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// Modification time as stored in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MTime {
    pub secs: i64,
    pub nanos: u32,
}

impl MTime {
    /// atime is set to "now" (as GNU tar does); mtime from the archive.
    fn times(self) -> Timestamps {
        Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_NOW,
            },
            last_modification: Timespec {
                tv_sec: self.secs,
                tv_nsec: self.nanos.into(),
            },
        }
    }
}

/// Permission bits (and setuid/setgid/sticky) from an archive or a constant; a file type
/// in the high bits is dropped, as the kernel would.
fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode(bits)
}

/// An archive's owner as `chown` takes it. `u32::MAX` is `-1`, which `chown` reads as
/// "leave unchanged": it stays that (rustix spells it `None`).
fn owner(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    (
        (uid != u32::MAX).then(|| Uid::from_raw(uid)),
        (gid != u32::MAX).then(|| Gid::from_raw(gid)),
    )
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

pub(crate) fn open_dir_at(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

fn open_file_at(dir: BorrowedFd, name: &CStr, flags: OFlags) -> io::Result<File> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, mode(0o600))?.into())
}

/// Creates a new regular file (never opening an existing one or following a symlink).
pub(crate) fn create_file_at(dir: BorrowedFd, name: &CStr) -> io::Result<File> {
    open_file_at(dir, name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL)
}

/// A file with no name in `dir` (`O_TMPFILE`): it disappears with its last descriptor,
/// whatever way the process ends. `None` where the file system has no `O_TMPFILE`.
pub(crate) fn anonymous_file_in(dir: BorrowedFd) -> io::Result<Option<File>> {
    let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, c".", flags, mode(0o600)) {
        Ok(fd) => Ok(Some(fd.into())),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::ISDIR => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens an existing file for reading, never through a symlink.
pub(crate) fn open_read_at(dir: BorrowedFd, name: &CStr) -> io::Result<File> {
    open_file_at(dir, name, OFlags::RDONLY)
}

/// Opens a read-write file, creating it (never an existing one, never through a symlink).
pub(crate) fn create_rw_file_at(dir: BorrowedFd, name: &CStr) -> io::Result<File> {
    open_file_at(dir, name, OFlags::RDWR | OFlags::CREATE | OFlags::EXCL)
}

/// Opens a lock file, creating it if missing (never through a symlink).
pub(crate) fn open_lock_file_at(dir: BorrowedFd, name: &CStr) -> io::Result<File> {
    open_file_at(dir, name, OFlags::RDWR | OFlags::CREATE)
}

pub(crate) fn mkdir_at(dir: BorrowedFd, name: &CStr, bits: u32) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(dir, name, mode(bits))?)
}

pub(crate) fn lstat_at(dir: BorrowedFd, name: &CStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

pub(crate) fn fstat(fd: BorrowedFd) -> io::Result<Stat> {
    Ok(rustix::fs::fstat(fd)?)
}

pub(crate) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

pub(crate) fn unlink_at(dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}

pub(crate) fn symlink_at(target: &CStr, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::symlinkat(target, dir, name)?)
}

/// Hard link without `AT_SYMLINK_FOLLOW`: a symlink is linked as itself, never its target.
pub(crate) fn link_at(
    old_dir: BorrowedFd,
    old: &CStr,
    new_dir: BorrowedFd,
    new: &CStr,
) -> io::Result<()> {
    Ok(rustix::fs::linkat(
        old_dir,
        old,
        new_dir,
        new,
        AtFlags::empty(),
    )?)
}

/// A device node or fifo; `bits` are its permissions, `kind` its type.
pub(crate) fn mknod_at(
    dir: BorrowedFd,
    name: &CStr,
    kind: FileType,
    bits: u32,
    dev: u64,
) -> io::Result<()> {
    Ok(rustix::fs::mknodat(dir, name, kind, mode(bits), dev)?)
}

/// A symlink's target, whatever its length.
pub(crate) fn readlink_at(dir: BorrowedFd, name: &CStr) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

pub(crate) fn chown_at(dir: BorrowedFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = owner(uid, gid);
    Ok(rustix::fs::chownat(
        dir,
        name,
        uid,
        gid,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// chmod by name; only called on names we just created as non-symlinks.
pub(crate) fn chmod_at(dir: BorrowedFd, name: &CStr, bits: u32) -> io::Result<()> {
    Ok(rustix::fs::chmodat(
        dir,
        name,
        mode(bits),
        AtFlags::empty(),
    )?)
}

pub(crate) fn set_mtime_at(dir: BorrowedFd, name: &CStr, mtime: MTime) -> io::Result<()> {
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &mtime.times(),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

pub(crate) fn fchown(fd: BorrowedFd, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = owner(uid, gid);
    Ok(rustix::fs::fchown(fd, uid, gid)?)
}

pub(crate) fn fchmod(fd: BorrowedFd, bits: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, mode(bits))?)
}

pub(crate) fn set_mtime(fd: BorrowedFd, mtime: MTime) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &mtime.times())?)
}

pub(crate) fn fsetxattr(fd: BorrowedFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty())?)
}

/// xattr on a name that cannot be opened (symlink, device, fifo): `lsetxattr` through
/// `/proc/self/fd/<dir>/<name>`; the directory is the one we hold, the name is not followed.
pub(crate) fn lsetxattr_at(
    dir: BorrowedFd,
    name: &CStr,
    xname: &CStr,
    value: &[u8],
) -> io::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.to_bytes());
    let path = cstring(&path)?;
    Ok(rustix::fs::lsetxattr(
        path.as_c_str(),
        xname,
        value,
        XattrFlags::empty(),
    )?)
}

/// `renameat2`; with [`RenameFlags::NOREPLACE`] it fails with `EEXIST` instead of replacing,
/// and with `EINVAL` where the filesystem lacks that flag (callers then check under a lock).
pub(crate) fn rename_at(
    old_dir: BorrowedFd,
    old: &CStr,
    new_dir: BorrowedFd,
    new: &CStr,
    flags: RenameFlags,
) -> io::Result<()> {
    Ok(rustix::fs::renameat_with(
        old_dir, old, new_dir, new, flags,
    )?)
}

/// Flushes the filesystem holding `fd`: the image must be on disk before it gets its name.
pub(crate) fn syncfs(fd: BorrowedFd) -> io::Result<()> {
    Ok(rustix::fs::syncfs(fd)?)
}

pub(crate) fn fsync(fd: BorrowedFd) -> io::Result<()> {
    Ok(rustix::fs::fsync(fd)?)
}

/// Non-blocking exclusive flock: `Ok(false)` when someone else holds it.
pub(crate) fn try_lock_exclusive(fd: BorrowedFd) -> io::Result<bool> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
