//! Executes [`EntryPlan`]s inside one target directory. Parents are opened one component at
//! a time with `O_NOFOLLOW` starting from the target's own fd, so an entry can only land in
//! a real directory below the target; the last component is created with `O_EXCL` /
//! `mkdirat` / `symlinkat` / `linkat` / `mknodat`, none of which follow a symlink there.
//! Directory metadata is applied at the end (deepest first) so a read-only directory or a
//! new child never spoils what the archive says.

use std::ffi::{CStr, CString};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::entry_path::{self, Components};
use super::fsops::{self, MTime};
use super::tar_entry::{EntryKind, EntryPlan, Meta};
use super::{EntryError, ImportOptions};
use rustix::fs::FileType;

const BUF_SIZE: usize = 1 << 20;

/// Counts for the summary and the progress line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ExtractStats {
    pub entries: u64,
    pub bytes: u64,
    /// Members not created: device nodes, ignored member types.
    pub skipped: u64,
    pub devices_skipped: u64,
    pub setid_cleared: u64,
}

/// Group and world write: never in `base/`, whatever the archive says, so nobody on the
/// controller's host but root changes what every node boots.
const GROUP_WORLD_WRITE: u32 = 0o022;
const SETID: u32 = 0o6000;
const STICKY: u32 = 0o1000;

/// The mode an image member gets. Directories lose group/world write unless sticky (`/tmp`,
/// `/var/tmp`: the booted system needs them shared, and the sticky bit keeps each user to
/// their own names); the image root never keeps more than 0755. Files lose group/world
/// write and, unless kept, set-uid/set-gid. Device nodes keep their mode: creating them at
/// all is the operator's explicit choice, and `/dev/null` must stay writable.
fn image_mode(kind: &EntryKind, is_root: bool, mode: u32, keep_setid: bool) -> u32 {
    match kind {
        EntryKind::Dir if is_root => mode & 0o755,
        EntryKind::Dir if mode & STICKY != 0 => mode,
        EntryKind::Dir => mode & !GROUP_WORLD_WRITE,
        EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } => mode,
        _ if keep_setid => mode & !GROUP_WORLD_WRITE,
        _ => mode & !GROUP_WORLD_WRITE & !SETID,
    }
}

/// The chain of directories opened for the last entry, reused while entries stay in it.
/// Valid for the whole run because a directory is never removed or replaced (an entry
/// that would replace one is refused).
struct DirChain {
    names: Components,
    fds: Vec<OwnedFd>,
}

struct DeferredDir {
    path: Components,
    meta: Meta,
}

pub(crate) struct Extractor {
    root: OwnedFd,
    chain: DirChain,
    deferred: Vec<DeferredDir>,
    /// Root keeps owners and creates device nodes; anyone else gets their own files.
    privileged: bool,
    options: ImportOptions,
    buf: Vec<u8>,
    pub stats: ExtractStats,
}

fn io(e: io::Error) -> EntryError {
    EntryError::Io(e)
}

fn cname(name: &[u8]) -> Result<CString, EntryError> {
    fsops::cstring(name).map_err(io)
}

/// One step down from `dir` into `name`, refusing anything that is not a real directory.
fn step_into(
    dir: BorrowedFd,
    name: &[u8],
    create: bool,
    so_far: &[Vec<u8>],
) -> Result<OwnedFd, EntryError> {
    let c = cname(name)?;
    match fsops::open_dir_at(dir, &c) {
        Ok(fd) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
            // A directory the archive implies but does not list: 0755 whatever the umask.
            let made = match fsops::mkdir_at(dir, &c, 0o755) {
                Ok(()) => true,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
                Err(e) => return Err(io(e)),
            };
            let fd = fsops::open_dir_at(dir, &c).map_err(io)?;
            if made {
                fsops::fchmod(fd.as_fd(), 0o755).map_err(io)?;
            }
            Ok(fd)
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            let mut here = so_far.to_vec();
            here.push(name.to_vec());
            let shown = entry_path::display(&here);
            match fsops::lstat_at(dir, &c) {
                Ok(st) if fsops::file_type(&st) == FileType::Symlink => {
                    Err(EntryError::Unsafe(format!("parent {shown} is a symlink")))
                }
                _ => Err(EntryError::Invalid(format!(
                    "parent {shown} is not a directory"
                ))),
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// Opens the directory `path` (relative to `root`) without the chain cache.
fn open_existing_dir(root: BorrowedFd, path: &[Vec<u8>]) -> Result<OwnedFd, EntryError> {
    let mut fd = fsops::open_dir_at(root, c".").map_err(io)?;
    for (i, name) in path.iter().enumerate() {
        fd = step_into(fd.as_fd(), name, false, &path[..i])?;
    }
    Ok(fd)
}

impl Extractor {
    pub(crate) fn new(root: OwnedFd, options: &ImportOptions) -> Self {
        Extractor {
            root,
            chain: DirChain {
                names: Vec::new(),
                fds: Vec::new(),
            },
            deferred: Vec::new(),
            privileged: fsops::is_root(),
            options: *options,
            buf: vec![0; BUF_SIZE],
            stats: ExtractStats::default(),
        }
    }

    /// Opens (creating missing directories) the parent of an entry through the chain cache.
    fn parent(&mut self, dir: &[Vec<u8>]) -> Result<BorrowedFd<'_>, EntryError> {
        let keep = self
            .chain
            .names
            .iter()
            .zip(dir)
            .take_while(|(a, b)| a == b)
            .count();
        self.chain.names.truncate(keep);
        self.chain.fds.truncate(keep);
        for i in keep..dir.len() {
            let fd = {
                let at = self
                    .chain
                    .fds
                    .last()
                    .map_or(self.root.as_fd(), |f| f.as_fd());
                step_into(at, &dir[i], true, &dir[..i])?
            };
            self.chain.names.push(dir[i].clone());
            self.chain.fds.push(fd);
        }
        Ok(self
            .chain
            .fds
            .last()
            .map_or(self.root.as_fd(), |f| f.as_fd()))
    }

    /// Runs one plan; `data` is the member's content (read only for regular files).
    pub(crate) fn apply(
        &mut self,
        plan: EntryPlan,
        data: &mut dyn Read,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(), EntryError> {
        let EntryPlan {
            path,
            kind,
            mut meta,
        } = plan;
        self.stats.entries += 1;
        let mode = image_mode(&kind, path.is_empty(), meta.mode, self.options.keep_setid);
        if !matches!(kind, EntryKind::Dir) && meta.mode & SETID & !mode != 0 {
            self.stats.setid_cleared += 1;
        }
        meta.mode = mode;
        let Some((name, dir)) = path.split_last() else {
            // "./": the image root itself.
            return match kind {
                EntryKind::Dir => {
                    self.deferred.push(DeferredDir { path, meta });
                    Ok(())
                }
                _ => Err(EntryError::Invalid(
                    "the archive root is not a directory".into(),
                )),
            };
        };
        let name = cname(name)?;
        match kind {
            EntryKind::Dir => {
                let parent = self.parent(dir)?;
                make_dir(parent, &name)?;
                self.deferred.push(DeferredDir { path, meta });
                Ok(())
            }
            EntryKind::File { size, sparse } => {
                self.write_file(dir, &name, (size, sparse), &meta, data, on_bytes)
            }
            EntryKind::Symlink { target } => {
                let target = cname(&target)?;
                let privileged = self.privileged;
                let parent = self.parent(dir)?;
                replace_with(parent, &name, |p, n| fsops::symlink_at(&target, p, n))?;
                finish_by_name(parent, &name, &meta, privileged, false)
            }
            EntryKind::HardLink { target } => self.hard_link(dir, &name, &target),
            EntryKind::CharDevice { major, minor } => {
                self.node(dir, &name, FileType::CharacterDevice, major, minor, &meta)
            }
            EntryKind::BlockDevice { major, minor } => {
                self.node(dir, &name, FileType::BlockDevice, major, minor, &meta)
            }
            EntryKind::Fifo => self.node(dir, &name, FileType::Fifo, 0, 0, &meta),
            EntryKind::Ignored { why } => {
                log::debug!("import: ignoring {why}");
                self.stats.skipped += 1;
                Ok(())
            }
        }
    }

    /// Writes a regular file; `(size, sparse)` from the header. A GNU sparse member comes
    /// back from the reader with its holes as zeros: zero blocks are skipped again (seek),
    /// so the file is as sparse as it was archived.
    fn write_file(
        &mut self,
        dir: &[Vec<u8>],
        name: &CStr,
        (size, sparse): (u64, bool),
        meta: &Meta,
        data: &mut dyn Read,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<(), EntryError> {
        let privileged = self.privileged;
        let parent = self.parent(dir)?;
        let mut file = replace_with(parent, name, fsops::create_file_at)?;
        let mut written = 0u64;
        loop {
            let n = read_full(data, &mut self.buf).map_err(io)?;
            if n == 0 {
                break;
            }
            if sparse {
                write_skipping_holes(&mut file, &self.buf[..n]).map_err(io)?;
            } else {
                file.write_all(&self.buf[..n]).map_err(io)?;
            }
            written += n as u64;
            on_bytes(n as u64);
        }
        if written != size {
            return Err(EntryError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("archive ends inside this file ({written} of {size} bytes)"),
            )));
        }
        if sparse {
            // A trailing hole was only seeked over.
            file.set_len(written).map_err(io)?;
        }
        self.stats.bytes += written;
        apply_fd_meta(file.as_fd(), meta, privileged)
    }

    fn hard_link(
        &mut self,
        dir: &[Vec<u8>],
        name: &CStr,
        target: &Components,
    ) -> Result<(), EntryError> {
        let shown = entry_path::display(target);
        let (tname, tdir) = target
            .split_last()
            .ok_or_else(|| EntryError::Unsafe("hard link to the image root".into()))?;
        let missing = |e: io::Error| {
            EntryError::Invalid(format!(
                "hard link target {shown} is not in the archive before it: {e}"
            ))
        };
        // A missing parent is the archive's fault too, not an I/O error (found by fuzzing).
        let tparent = open_existing_dir(self.root.as_fd(), tdir).map_err(|e| match e {
            EntryError::Io(e) if e.raw_os_error() == Some(libc::ENOENT) => missing(e),
            other => other,
        })?;
        let tname = cname(tname)?;
        let st = fsops::lstat_at(tparent.as_fd(), &tname).map_err(missing)?;
        match fsops::file_type(&st) {
            FileType::Directory => {
                return Err(EntryError::Unsafe(format!(
                    "hard link to directory {shown}"
                )))
            }
            FileType::Symlink => {
                let points_to = fsops::readlink_at(tparent.as_fd(), &tname).map_err(io)?;
                if entry_path::symlink_escapes(tdir.len(), &points_to) {
                    return Err(EntryError::Unsafe(format!(
                        "hard link to symlink {shown} -> {} which points outside the image",
                        String::from_utf8_lossy(&points_to)
                    )));
                }
            }
            _ => {}
        }
        if tdir == dir && tname.as_c_str() == name {
            // A link to itself is already satisfied (GNU tar agrees). Replacing would unlink
            // the target first and fail with ENOENT (found by fuzzing: a server error).
            return Ok(());
        }
        let parent = self.parent(dir)?;
        replace_with(parent, name, |p, n| {
            fsops::link_at(tparent.as_fd(), &tname, p, n)
        })
    }

    fn node(
        &mut self,
        dir: &[Vec<u8>],
        name: &CStr,
        file_type: FileType,
        major: u32,
        minor: u32,
        meta: &Meta,
    ) -> Result<(), EntryError> {
        if file_type != FileType::Fifo && !(self.privileged && self.options.keep_devices) {
            log::debug!(
                "import: skipping device node {} ({})",
                name.to_string_lossy(),
                if self.privileged {
                    "not asked to keep device nodes"
                } else {
                    "not root"
                }
            );
            self.stats.skipped += 1;
            self.stats.devices_skipped += 1;
            return Ok(());
        }
        let privileged = self.privileged;
        let parent = self.parent(dir)?;
        let dev = rustix::fs::makedev(major, minor);
        replace_with(parent, name, |p, n| {
            fsops::mknod_at(p, n, file_type, 0o600, dev)
        })?;
        finish_by_name(parent, name, meta, privileged, true)
    }

    /// Applies the deferred directory metadata, deepest first (later duplicates win).
    pub(crate) fn finish(&mut self) -> Result<(), (String, EntryError)> {
        self.chain.names.clear();
        self.chain.fds.clear();
        let mut dirs = std::mem::take(&mut self.deferred);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.len()));
        let root_listed = dirs.iter().any(|d| d.path.is_empty());
        for d in &dirs {
            let fd = open_existing_dir(self.root.as_fd(), &d.path)
                .map_err(|e| (entry_path::display(&d.path), e))?;
            apply_fd_meta(fd.as_fd(), &d.meta, self.privileged)
                .map_err(|e| (entry_path::display(&d.path), e))?;
        }
        if !root_listed {
            // The target was made private while it filled; an image root is world-readable.
            fsops::fchmod(self.root.as_fd(), 0o755).map_err(|e| (".".to_string(), io(e)))?;
        }
        Ok(())
    }
}

/// Creates a directory entry; an existing directory is kept, anything else replaced.
/// Created private (0700) so nothing is readable before its real mode is set at the end.
fn make_dir(parent: BorrowedFd, name: &CStr) -> Result<(), EntryError> {
    match fsops::mkdir_at(parent, name, 0o700) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let st = fsops::lstat_at(parent, name).map_err(io)?;
            if fsops::file_type(&st) == FileType::Directory {
                return Ok(());
            }
            fsops::unlink_at(parent, name).map_err(io)?;
            fsops::mkdir_at(parent, name, 0o700).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// Runs `create`; if the name exists, removes it (never a directory) and tries once more,
/// as tar does when a later member has the same name. The old object is unlinked, never
/// opened, so a symlink left there is replaced, not written through.
fn replace_with<T>(
    parent: BorrowedFd,
    name: &CStr,
    mut create: impl FnMut(BorrowedFd, &CStr) -> io::Result<T>,
) -> Result<T, EntryError> {
    match create(parent, name) {
        Ok(v) => Ok(v),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let st = fsops::lstat_at(parent, name).map_err(io)?;
            if fsops::file_type(&st) == FileType::Directory {
                return Err(EntryError::Invalid("would replace a directory".into()));
            }
            fsops::unlink_at(parent, name).map_err(io)?;
            create(parent, name).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// Owner, mode, xattrs, then mtime on an open file or directory. The order matters:
/// chown clears setuid and file capabilities, so mode and xattrs come after it.
fn apply_fd_meta(fd: BorrowedFd, meta: &Meta, privileged: bool) -> Result<(), EntryError> {
    if privileged {
        fsops::fchown(fd, meta.uid, meta.gid).map_err(io)?;
    }
    fsops::fchmod(fd, meta.mode).map_err(io)?;
    for (xname, value) in wanted_xattrs(meta, privileged) {
        fsops::fsetxattr(fd, xname, value).map_err(|e| xattr_error(xname, e))?;
    }
    fsops::set_mtime(fd, meta.mtime).map_err(io)
}

/// The same for names that cannot be opened (symlinks, device nodes, fifos).
fn finish_by_name(
    parent: BorrowedFd,
    name: &CStr,
    meta: &Meta,
    privileged: bool,
    has_mode: bool,
) -> Result<(), EntryError> {
    if privileged {
        fsops::chown_at(parent, name, meta.uid, meta.gid).map_err(io)?;
    }
    if has_mode {
        fsops::chmod_at(parent, name, meta.mode).map_err(io)?;
    }
    for (xname, value) in wanted_xattrs(meta, privileged) {
        fsops::lsetxattr_at(parent, name, xname, value).map_err(|e| xattr_error(xname, e))?;
    }
    set_mtime_at(parent, name, meta.mtime)
}

fn set_mtime_at(parent: BorrowedFd, name: &CStr, mtime: MTime) -> Result<(), EntryError> {
    fsops::set_mtime_at(parent, name, mtime).map_err(io)
}

/// Root restores every xattr; anyone else can only set `user.*` ones.
fn wanted_xattrs(meta: &Meta, privileged: bool) -> impl Iterator<Item = (&CStr, &[u8])> {
    meta.xattrs
        .iter()
        .filter(move |(n, _)| privileged || n.to_bytes().starts_with(b"user."))
        .map(|(n, v)| (n.as_c_str(), v.as_slice()))
}

fn xattr_error(name: &CStr, e: io::Error) -> EntryError {
    EntryError::Io(io::Error::new(
        e.kind(),
        format!("setting xattr {}: {e}", name.to_string_lossy()),
    ))
}

const HOLE_BLOCK: usize = 64 << 10;

fn write_skipping_holes(file: &mut std::fs::File, data: &[u8]) -> io::Result<()> {
    for block in data.chunks(HOLE_BLOCK) {
        if block.iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(block.len() as i64))?;
        } else {
            file.write_all(block)?;
        }
    }
    Ok(())
}

/// Fills `buf` as far as the reader allows, so writes are large.
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
