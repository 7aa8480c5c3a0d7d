//! A node's ext4 images (its persist image, its volumes), whatever they hold: found by
//! generation, made, checked and set aside. Each family of images shares a stem and lives
//! in one directory (the node's own, or its `volumes/`); its current image is the highest
//! generation there not set aside (`<stem>.<n>.img`, [`layout::image_file`]).
//!
//! A fresh image always takes the generation after every one present or set aside, so it
//! never has a name an earlier file had: an NFS server's or client's name cache cannot hand
//! the Pi the old file (measured with nfs-ganesha's default directory cache, which did).
//! Made by `mkfs.ext4` on a file created under a temporary name (reached through
//! `/proc/self/fd`, so no name below the export is trusted), sparse, 0600, and linked into
//! place: a Pi never sees a half-made file system and an existing image (a node's data) is
//! never replaced. Set aside, an image is renamed, never deleted (it may hold data worth
//! recovering).

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{OFlags, RenameFlags};
use serde::Serialize;

use super::beneath::Dir;
use super::error::{io_err, NfsTreeError, Result};
use super::fs_util::random_suffix;
use super::fsops;
use pureboot_contract::layout::{generation_of, image_file, SET_ASIDE_MARK};

/// Every image of a node: its data, nobody else's to read.
pub const IMAGE_MODE: u32 = 0o600;
/// A staged tree's directories: the merged root of a node takes its mode from them.
const STAGING_MODE: u32 = 0o755;

/// What an image looks like from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum ImageState {
    Missing,
    /// Carries an ext4 superblock (it may still fail to mount: only the Pi can tell).
    Ext4,
    /// Cannot be an ext4 file system; the text says why.
    Broken(String),
}

/// Offset and value of the ext4 superblock magic (`s_magic`, little endian 0xEF53).
const EXT4_MAGIC_AT: u64 = 1024 + 0x38;
pub(super) const EXT4_MAGIC: [u8; 2] = [0x53, 0xef];

/// One family of images: where, under which stem, how made.
pub(super) struct Family<'a> {
    pub stem: &'a str,
    /// The file system's label (at most 16 bytes).
    pub label: String,
    /// Directories made inside the fresh file system (`upper`, `work` for the persist
    /// image; none for a volume).
    pub dirs: &'a [&'a str],
}

fn cstr(name: &str) -> CString {
    CString::new(name).expect("an image name has no NUL")
}

/// The current image's name in `dir`: the highest generation not set aside.
pub(super) fn current(dir: &Dir, stem: &str) -> Result<Option<String>> {
    let best = dir
        .entries()?
        .into_iter()
        .filter_map(|(name, _)| {
            let name = name.into_string().ok()?;
            let g = generation_of(stem, &name).filter(|_| !name.contains(SET_ASIDE_MARK))?;
            Some((g, name))
        })
        .max();
    Ok(best.map(|(_, name)| name))
}

/// One past every generation of `stem` in `dir`, current or set aside; 1 for the first.
fn next_generation(dir: &Dir, stem: &str) -> Result<u64> {
    let highest = dir
        .entries()?
        .into_iter()
        .filter_map(|(name, _)| generation_of(stem, name.to_str()?))
        .max();
    Ok(highest.map_or(1, |g| g + 1))
}

/// The family's current image, made (as the next generation, of `size_mb` MiB) when there
/// is none; its name. An existing image is left as it is, whatever its size (its mode is
/// made 0600); a symlink or anything but a regular file there is an error naming it.
pub(super) fn ensure(dir: &Dir, family: &Family, size_mb: u64) -> Result<String> {
    if let Some(name) = current(dir, family.stem)? {
        let path = dir.child(&name);
        let f = dir
            .open_file(&name, OFlags::RDONLY)?
            .ok_or_else(|| NfsTreeError::NotRegular { path: path.clone() })?;
        fsops::fchmod(f.as_fd(), IMAGE_MODE).map_err(io_err("chmod", &path))?;
        return Ok(name);
    }
    let name = image_file(family.stem, next_generation(dir, family.stem)?);
    let suffix = random_suffix();
    let staging = format!(".{}-root-{suffix}", family.stem);
    let temp = format!(".{name}-{suffix}");
    let result = build(dir, family, &staging, &temp, size_mb).and_then(|()| {
        // link() fails if the name exists: a concurrent creator's image wins intact.
        match fsops::link_at(dir.fd(), &cstr(&temp), dir.fd(), &cstr(&name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(error) => Err(NfsTreeError::Io {
                op: "link into",
                path: dir.child(&name),
                error,
            }),
        }
    });
    let _ = dir.remove_tree(&staging);
    let _ = dir.remove_tree(&temp);
    result?;
    log::info!(
        "image ready: {} ({size_mb} MiB)",
        dir.child(&name).display()
    );
    Ok(name)
}

/// `mkfs.ext4` from PATH, else where e2fsprogs installs it (PATH may lack sbin).
fn mkfs_ext4() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("mkfs.ext4").exists()));
    if !in_path {
        for dir in ["/usr/sbin", "/sbin"] {
            let candidate = Path::new(dir).join("mkfs.ext4");
            if candidate.exists() {
                return candidate;
            }
        }
    }
    PathBuf::from("mkfs.ext4")
}

/// A path through which another process (mkfs) reaches what `fd` holds open, whatever has
/// happened to the names leading to it since: the export's names are not trusted.
fn proc_fd_path(fd: BorrowedFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

fn build(dir: &Dir, family: &Family, staging: &str, temp: &str, size_mb: u64) -> Result<()> {
    let root = dir.subdir(staging, Some(STAGING_MODE))?.expect("created");
    for d in family.dirs {
        root.subdir(d, Some(STAGING_MODE))?;
    }
    let temp_path = dir.child(temp);
    let file =
        fsops::create_file_at(dir.fd(), &cstr(temp)).map_err(io_err("create", &temp_path))?;
    fsops::fchmod(file.as_fd(), IMAGE_MODE).map_err(io_err("chmod", &temp_path))?;
    file.set_len(size_mb << 20)
        .map_err(io_err("size", &temp_path))?;

    let mkfs = mkfs_ext4();
    let output = Command::new(&mkfs)
        .args(["-q", "-F", "-m", "0", "-L"])
        .arg(&family.label)
        .arg("-d")
        .arg(proc_fd_path(root.fd()))
        .arg(proc_fd_path(file.as_fd()))
        .output()
        .map_err(|e| NfsTreeError::Mkfs {
            path: temp_path.clone(),
            detail: format!("cannot run {} (install e2fsprogs): {e}", mkfs.display()),
        })?;
    if !output.status.success() {
        return Err(NfsTreeError::Mkfs {
            path: temp_path,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    file.sync_all().map_err(io_err("sync", &temp_path))
}

/// What the family's current image is; a symlink there is an error naming it, never read
/// through.
pub(super) fn state(dir: &Dir, stem: &str) -> Result<ImageState> {
    let Some(name) = current(dir, stem)? else {
        return Ok(ImageState::Missing);
    };
    let path = dir.child(&name);
    let Some(mut f) = dir.open_file(&name, OFlags::RDONLY)? else {
        return Ok(ImageState::Missing);
    };
    let len = f.metadata().map_err(io_err("stat", &path))?.len();
    if len < EXT4_MAGIC_AT + 2 {
        return Ok(ImageState::Broken(format!("{len} bytes long")));
    }
    let mut magic = [0u8; 2];
    f.seek(SeekFrom::Start(EXT4_MAGIC_AT))
        .and_then(|_| f.read_exact(&mut magic))
        .map_err(io_err("read", &path))?;
    Ok(if magic == EXT4_MAGIC {
        ImageState::Ext4
    } else {
        ImageState::Broken("no ext4 superblock".into())
    })
}

/// Moves the family's current image to `<name>.broken-<UTC time>` (an existing name is never
/// replaced); where it went, `None` when there was none. Whatever is there is moved as
/// itself: a planted symlink is set aside, never followed.
pub(super) fn set_aside(dir: &Dir, stem: &str) -> Result<Option<PathBuf>> {
    let Some(name) = current(dir, stem)? else {
        return Ok(None);
    };
    let (from, path) = (cstr(&name), dir.child(&name));
    let stamp = utc_stamp(SystemTime::now());
    for n in 1..=100 {
        let target = match n {
            1 => format!("{name}{SET_ASIDE_MARK}{stamp}"),
            n => format!("{name}{SET_ASIDE_MARK}{stamp}-{n}"),
        };
        let to = cstr(&target);
        // renameat2(NOREPLACE) never replaces: a name in use makes us try the next.
        match fsops::rename_at(dir.fd(), &from, dir.fd(), &to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(Some(dir.child(target))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // No RENAME_NOREPLACE on this filesystem: link() never replaces either.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                fsops::link_at(dir.fd(), &from, dir.fd(), &to)
                    .and_then(|()| fsops::unlink_at(dir.fd(), &from))
                    .map_err(io_err("move aside", &path))?;
                return Ok(Some(dir.child(target)));
            }
            Err(error) => {
                return Err(NfsTreeError::Io {
                    op: "move aside",
                    path,
                    error,
                })
            }
        }
    }
    Err(NfsTreeError::Io {
        op: "move aside (100 names taken)",
        path,
        error: std::io::ErrorKind::AlreadyExists.into(),
    })
}

/// The family's images set aside, oldest first.
pub(super) fn set_aside_list(dir: &Dir, stem: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = dir
        .entries()?
        .into_iter()
        .filter_map(|(name, _)| {
            let s = name.to_str()?;
            (s.contains(SET_ASIDE_MARK) && generation_of(stem, s).is_some()).then_some(name)
        })
        .map(|name| dir.child(name))
        .collect();
    // Generations follow each other in time; within one, the stamp sorts by time.
    let key = |p: &PathBuf| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        (generation_of(stem, name), p.clone())
    };
    out.sort_by_key(key);
    Ok(out)
}

/// `20261126T110203Z` for a time (UTC), for file names that sort by time.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
