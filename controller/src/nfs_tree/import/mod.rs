//! Base image import: a tar archive or a partitioned disk image (plain, gzip, xz or zstd,
//! told by its magic bytes) becomes `base/<name>/`, or nothing at all. A disk image's ext4
//! root becomes the tree and its FAT boot partition `boot/firmware/` in it (`disk/`).
//!
//! The archive is streamed into `base/.import-<name>-<random>/` and renamed to
//! `base/<name>` only once every member is written, the end-of-archive marker was seen, the
//! compressed stream checked out to its end and the data is on disk. A failure removes the
//! temporary directory; a crash leaves it behind, hidden from `base_images()` and removed by
//! the next import of that name (imports of one name are serialised by a lock file).
//!
//! In the squashfs format (`squashfs.rs`) the extracted tree is then packed into a second
//! temporary directory, which is the one renamed into place; the tree is removed.

mod disk;
mod entry_path;
mod extract;
pub mod format;
use super::fsops;
mod name_lock;
mod pipeline;
pub mod progress;
mod sink;
pub mod squashfs;
mod tar_entry;

#[cfg(test)]
mod test_archives;
#[cfg(test)]
pub(crate) mod tests;

use std::ffi::CString;
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::beneath::Dir;
use super::error::{io_err, NfsTreeError, Result};
use super::fs_util::random_suffix;
use extract::{read_full, ExtractStats, Extractor};
use format::{ArchiveFormat, Content};
use name_lock::NameLock;
use progress::{ImportProgress, ImportSummary};
use rustix::fs::RenameFlags;
use sink::Sink;
use squashfs::BaseFormat;

/// What an import keeps of what the archive says, and how much it may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// The most the members' declared sizes may add up to, bytes. A sparse member counts at
    /// its full size: the file a Pi reads (and a backup copies) is that large.
    pub max_bytes: u64,
    /// Create character and block device nodes. A root booted by systemd gets `/dev` from
    /// devtmpfs and needs none; a device node in `base/` is a door to the controller's
    /// hardware for whoever can reach it there.
    pub keep_devices: bool,
    /// Keep set-uid and set-gid bits on files (a real root needs some: `su`, `sudo`,
    /// `mount`, `umount`, `passwd`, `newgrp`, `chsh`, `chfn`, `gpasswd`, `unix_chkpwd`,
    /// `ssh-keysign`, `dbus-daemon-launch-helper`). Without it they are cleared: a root
    /// whose users never need to become root (root logs in) boots as well.
    pub keep_setid: bool,
    /// A root tree, or one squashfs file (`squashfs.rs`).
    pub format: BaseFormat,
}

/// 64 GiB: above any root file system a Pi boots, below what fills a typical export.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 30;

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            max_bytes: DEFAULT_MAX_BYTES,
            keep_devices: false,
            keep_setid: false,
            format: BaseFormat::Directory,
        }
    }
}

/// Why one member could not be extracted; turned into an [`NfsTreeError`] naming it.
#[derive(Debug)]
pub(crate) enum EntryError {
    /// It would write outside the target: the archive is refused.
    Unsafe(String),
    /// It cannot be extracted as described.
    Invalid(String),
    Io(io::Error),
}

fn entry_error(archive: &str, entry: &str, e: EntryError) -> NfsTreeError {
    let (archive, entry) = (archive.to_string(), entry.to_string());
    match e {
        EntryError::Unsafe(reason) => NfsTreeError::UnsafeEntry {
            archive,
            entry,
            reason,
        },
        EntryError::Invalid(reason) => NfsTreeError::BadEntry {
            archive,
            entry,
            reason,
        },
        EntryError::Io(error) => NfsTreeError::EntryIo {
            archive,
            entry,
            error,
        },
    }
}

fn archive_error(archive: &str) -> impl Fn(io::Error) -> NfsTreeError + '_ {
    move |error| NfsTreeError::Archive {
        archive: archive.to_string(),
        error,
    }
}

fn cname(name: &str) -> CString {
    // Image names are validated ([A-Za-z0-9._-]) before they get here.
    CString::new(name).expect("validated image name has no NUL")
}

/// Imports the archive file at `archive` as `base/<name>`.
pub(crate) fn import_file(
    base: &Dir,
    archive: &Path,
    name: &str,
    options: &ImportOptions,
    progress: &mut dyn FnMut(ImportProgress),
) -> Result<ImportSummary> {
    let file = fs::File::open(archive).map_err(io_err("open archive", archive))?;
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    import_reader(
        base,
        file,
        &archive.display().to_string(),
        size,
        name,
        options,
        progress,
    )
}

/// Imports from any stream (a file, stdin, an HTTP body); `label` names it in errors.
pub(crate) fn import_reader(
    base_dir: &Dir,
    reader: impl Read + Send,
    label: &str,
    size: Option<u64>,
    name: &str,
    options: &ImportOptions,
    progress: &mut dyn FnMut(ImportProgress),
) -> Result<ImportSummary> {
    let started = Instant::now();
    let base = base_dir.path();
    let base_fd = base_dir.fd();
    let _lock = NameLock::acquire(base_fd, base, name)?;

    let final_name = cname(name);
    let final_path = base.join(name);
    if fsops::lstat_at(base_fd, &final_name).is_ok() {
        return Err(NfsTreeError::ImageExists {
            name: name.into(),
            path: final_path,
        });
    }
    remove_stale_temps(base_dir, name)?;

    let (temp_name, temp_fd) = make_temp_dir(base_fd, base, name)?;
    let temp_path = base.join(&temp_name);
    let outcome = extract_stream(
        temp_fd.as_fd(),
        base_fd,
        reader,
        label,
        size,
        options,
        progress,
    )
    .and_then(|done| {
        let (published, packed) = match options.format {
            BaseFormat::Directory => {
                fsops::syncfs(temp_fd.as_fd()).map_err(io_err("sync", &temp_path))?;
                (temp_name.clone(), None)
            }
            BaseFormat::Squashfs => {
                let (packed_name, packed_fd) = make_temp_dir(base_fd, base, name)?;
                let result =
                    squashfs::pack(temp_fd.as_fd(), packed_fd.as_fd(), name).and_then(|p| {
                        fsops::fchmod(packed_fd.as_fd(), 0o755)
                            .map_err(io_err("chmod", &base.join(&packed_name)))?;
                        Ok(p)
                    });
                // The tree goes either way; what was packed goes too when packing failed.
                remove_logged(base_dir, name, &temp_name);
                match result {
                    Ok(p) => (packed_name, Some(p)),
                    Err(e) => {
                        remove_logged(base_dir, name, &packed_name);
                        return Err(e);
                    }
                }
            }
        };
        let publishing = publish(base_fd, &cname(&published), &final_name, name, &final_path);
        if publishing.is_err() && published != temp_name {
            remove_logged(base_dir, name, &published);
        }
        publishing.map(|()| (done, packed))
    });
    let ((format, stats, archive_bytes), squashfs) = match outcome {
        Ok(done) => done,
        Err(e) => {
            remove_logged(base_dir, name, &temp_name);
            return Err(e);
        }
    };
    if let Err(e) = fsops::fsync(base_fd) {
        log::warn!("import {name}: fsync {}: {e}", base.display());
    }
    Ok(ImportSummary {
        name: name.into(),
        path: final_path,
        format,
        entries: stats.entries,
        bytes: stats.bytes,
        skipped: stats.skipped,
        devices_skipped: stats.devices_skipped,
        setid_cleared: stats.setid_cleared,
        archive_bytes,
        squashfs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Removes a temporary directory of `name`'s import if it is still there; a failure is
/// logged (the next import of the name removes what is left).
fn remove_logged(base: &Dir, name: &str, temp: &str) {
    if let Err(rm) = base.remove_tree(temp) {
        log::error!("import {name}: {rm}");
    }
}

/// Renames the finished tree to its name, never replacing an existing one.
fn publish(
    base: BorrowedFd,
    temp: &CString,
    final_name: &CString,
    name: &str,
    final_path: &Path,
) -> Result<()> {
    let exists = || NfsTreeError::ImageExists {
        name: name.into(),
        path: final_path.to_path_buf(),
    };
    match fsops::rename_at(base, temp, base, final_name, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Err(exists()),
        // No RENAME_NOREPLACE on this filesystem: the name lock makes check-then-rename safe
        // against other imports.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            if fsops::lstat_at(base, final_name).is_ok() {
                return Err(exists());
            }
            fsops::rename_at(base, temp, base, final_name, RenameFlags::empty())
                .map_err(io_err("rename into", final_path))
        }
        Err(e) => Err(NfsTreeError::Io {
            op: "rename into",
            path: final_path.to_path_buf(),
            error: e,
        }),
    }
}

/// Decompresses (on a second thread for tar) and writes every entry into `target`; a disk
/// image is spooled to an unnamed file in `spool_dir` first.
fn extract_stream(
    target: BorrowedFd,
    spool_dir: BorrowedFd,
    reader: impl Read + Send,
    label: &str,
    size: Option<u64>,
    options: &ImportOptions,
    progress: &mut dyn FnMut(ImportProgress),
) -> Result<(ArchiveFormat, ExtractStats, u64)> {
    let count = Arc::new(AtomicU64::new(0));
    let mut counted = pipeline::CountingReader::new(reader, count.clone());
    let head = read_head(&mut counted, 512).map_err(archive_error(label))?;
    let unsupported = |reason| NfsTreeError::UnsupportedArchive {
        archive: label.into(),
        reason,
    };
    let compression = format::compression(&head).map_err(unsupported)?;
    let input = BufReader::with_capacity(1 << 20, io::Cursor::new(head).chain(counted));
    let mut decoded = format::decoder(compression, input).map_err(archive_error(label))?;
    let head = read_head(&mut decoded, format::CONTENT_HEAD).map_err(archive_error(label))?;
    let content = format::content(&head).map_err(unsupported)?;
    let mut decoded = io::Cursor::new(head).chain(decoded);

    let root = fsops::open_dir_at(target, c".").map_err(archive_error(label))?;
    let sink = Sink::new(
        Extractor::new(root, options),
        label,
        options,
        (&count, size),
        progress,
    );
    let stats = match content {
        Content::Tar => {
            let (producer, chunks) = pipeline::channel();
            std::thread::scope(|s| {
                s.spawn(move || producer.run(&mut decoded));
                extract_members(sink, chunks, label)
            })?
        }
        Content::Disk => disk::import(sink, target, spool_dir, &mut decoded, label, options)?,
    };
    let format = ArchiveFormat::of(compression, content);
    Ok((format, stats, count.load(Ordering::Relaxed)))
}

/// Up to `n` bytes from the start of a stream (fewer if it is shorter).
fn read_head(r: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; n];
    let got = read_full(r, &mut head)?;
    head.truncate(got);
    Ok(head)
}

fn extract_members(
    mut sink: Sink,
    chunks: pipeline::ChunkReader,
    label: &str,
) -> Result<ExtractStats> {
    let mut archive = tar::Archive::new(chunks);
    for entry in archive.entries().map_err(archive_error(label))? {
        let mut entry = entry.map_err(archive_error(label))?;
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let plan = tar_entry::plan(&mut entry).map_err(|e| entry_error(label, &shown, e))?;
        sink.put(plan, &shown, &mut entry)?;
    }
    let stats = sink.finish()?;

    let mut chunks = archive.into_inner();
    // The tar reader stops at an all-zero block or at the end of the stream; only the first
    // is a complete archive.
    if chunks.last_read_hit_end() {
        return Err(NfsTreeError::Archive {
            archive: label.into(),
            error: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends without its end-of-archive block (truncated?)",
            ),
        });
    }
    // Read to the end so the compressor's own checks (gzip CRC, xz/zstd checksums) run.
    io::copy(&mut chunks, &mut io::sink()).map_err(archive_error(label))?;
    Ok(stats)
}

/// `.import-<name>-<8 hex>`: exactly the temporary directories of this name's imports.
fn is_temp_of(name: &str, candidate: &str) -> bool {
    let Some(rest) = candidate
        .strip_prefix(".import-")
        .and_then(|r| r.strip_prefix(name))
    else {
        return false;
    };
    rest.len() == 9 && rest.starts_with('-') && rest[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes what a crashed import of `name` left. Runs under the name lock.
fn remove_stale_temps(base: &Dir, name: &str) -> Result<()> {
    for (file_name, _) in base.entries()? {
        if is_temp_of(name, &file_name.to_string_lossy()) {
            log::info!(
                "import {name}: removing stale {}",
                base.child(&file_name).display()
            );
            base.remove_tree(&file_name)?;
        }
    }
    Ok(())
}

fn make_temp_dir(base_fd: BorrowedFd, base: &Path, name: &str) -> Result<(String, OwnedFd)> {
    for _ in 0..8 {
        let temp = format!(".import-{name}-{}", random_suffix());
        let c = cname(&temp);
        // Private while it fills; the archive's root entry (or 0755) is applied at the end.
        match fsops::mkdir_at(base_fd, &c, 0o700) {
            Ok(()) => {
                let fd =
                    fsops::open_dir_at(base_fd, &c).map_err(io_err("open", base.join(&temp)))?;
                return Ok((temp, fd));
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => {
                return Err(NfsTreeError::Io {
                    op: "create",
                    path: base.join(temp),
                    error: e,
                })
            }
        }
    }
    Err(NfsTreeError::Io {
        op: "create temporary directory in",
        path: base.to_path_buf(),
        error: io::Error::from_raw_os_error(libc::EEXIST),
    })
}
