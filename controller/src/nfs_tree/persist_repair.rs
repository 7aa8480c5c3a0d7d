//! A node's `persist.img` that its Pi could not use: told apart from a usable one, moved
//! aside under a name with the time (never deleted: it may hold data worth recovering) and
//! replaced by a fresh image, so the next boot is persistent again.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{OFlags, RenameFlags};
use serde::Serialize;

use super::error::{io_err, NfsTreeError, Result};
use super::{fsops, NfsTree};
use pureboot_contract::ids::Serial;
use pureboot_contract::layout::PERSIST_IMAGE;

/// Prefix of the names broken images are moved to: `persist.img.broken-<UTC time>`.
const SET_ASIDE_PREFIX: &str = "persist.img.broken-";

/// What `nodes/<serial>/persist.img` looks like from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum PersistState {
    Missing,
    /// Carries an ext4 superblock (it may still fail to mount: only the Pi can tell).
    Ext4,
    /// Cannot be an ext4 file system; the text says why.
    Broken(String),
}

/// Offset and value of the ext4 superblock magic (`s_magic`, little endian 0xEF53).
const EXT4_MAGIC_AT: u64 = 1024 + 0x38;
const EXT4_MAGIC: [u8; 2] = [0x53, 0xef];

impl NfsTree {
    /// What the node's persist.img is; a symlink there is an error naming it, never read
    /// through.
    pub fn persist_image_state(&self, serial: &Serial) -> Result<PersistState> {
        let Some(node) = self.node_dir(serial, false)? else {
            return Ok(PersistState::Missing);
        };
        let path = node.child(PERSIST_IMAGE);
        let Some(mut f) = node.open_file(PERSIST_IMAGE, OFlags::RDONLY)? else {
            return Ok(PersistState::Missing);
        };
        let len = f.metadata().map_err(io_err("stat", &path))?.len();
        if len < EXT4_MAGIC_AT + 2 {
            return Ok(PersistState::Broken(format!("{len} bytes long")));
        }
        let mut magic = [0u8; 2];
        f.seek(SeekFrom::Start(EXT4_MAGIC_AT))
            .and_then(|_| f.read_exact(&mut magic))
            .map_err(io_err("read", &path))?;
        Ok(if magic == EXT4_MAGIC {
            PersistState::Ext4
        } else {
            PersistState::Broken("no ext4 superblock".into())
        })
    }

    /// Moves `persist.img` to `persist.img.broken-<UTC time>` (an existing name is never
    /// replaced) and creates a fresh image of `size_mb`. Returns where the old one went;
    /// `None` when there was none (then only the fresh image is made). Whatever is there is
    /// moved as itself: a planted symlink is set aside, never followed.
    pub fn set_aside_persist_image(
        &self,
        serial: &Serial,
        size_mb: u64,
    ) -> Result<Option<PathBuf>> {
        let node = self.node_dir(serial, true)?.expect("created");
        let image = node.child(PERSIST_IMAGE);
        let moved = if node.lstat(PERSIST_IMAGE)?.is_some() {
            let stamp = utc_stamp(SystemTime::now());
            let mut n = 1;
            loop {
                let name = if n == 1 {
                    format!("{SET_ASIDE_PREFIX}{stamp}")
                } else {
                    format!("{SET_ASIDE_PREFIX}{stamp}-{n}")
                };
                let target = node.child(&name);
                let cname = CString::new(name).expect("no NUL");
                // renameat2(NOREPLACE) never replaces: a name in use makes us try the next.
                match fsops::rename_at(
                    node.fd(),
                    c"persist.img",
                    node.fd(),
                    &cname,
                    RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => break Some(target),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                    // No RENAME_NOREPLACE on this filesystem: link() never replaces either.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        fsops::link_at(node.fd(), c"persist.img", node.fd(), &cname)
                            .and_then(|()| fsops::unlink_at(node.fd(), c"persist.img"))
                            .map_err(io_err("move aside", &image))?;
                        break Some(target);
                    }
                    Err(error) => {
                        return Err(NfsTreeError::Io {
                            op: "move aside",
                            path: image,
                            error,
                        })
                    }
                }
            }
        } else {
            None
        };
        drop(node);
        self.create_persist_image(serial, size_mb)?;
        Ok(moved)
    }

    /// The images set aside for a node, oldest first.
    pub fn set_aside_persist_images(&self, serial: &Serial) -> Result<Vec<PathBuf>> {
        let Some(node) = self.node_dir(serial, false)? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<PathBuf> = node
            .entries()?
            .into_iter()
            .filter(|(name, _)| name.to_string_lossy().starts_with(SET_ASIDE_PREFIX))
            .map(|(name, _)| node.child(name))
            .collect();
        out.sort();
        Ok(out)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::Duration;

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc_stamp(t), "20231114T221320Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(leap), "20000229T000000Z");
    }

    #[test]
    fn broken_images_are_told_apart_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let tree = NfsTree::new(dir.path());
        assert_eq!(
            tree.persist_image_state(&Serial::parse("d83add36").unwrap())
                .unwrap(),
            PersistState::Missing
        );
        let node = dir.path().join("nodes/d83add36");
        fs::create_dir_all(&node).unwrap();
        fs::write(node.join("persist.img"), b"").unwrap();
        assert!(matches!(
            tree.persist_image_state(&Serial::parse("d83add36").unwrap()).unwrap(),
            PersistState::Broken(r) if r.contains("0 bytes")
        ));
        fs::write(node.join("persist.img"), vec![0u8; 1 << 20]).unwrap();
        assert!(matches!(
            tree.persist_image_state(&Serial::parse("d83add36").unwrap()).unwrap(),
            PersistState::Broken(r) if r.contains("superblock")
        ));
        let mut fake = vec![0u8; 4096];
        fake[1080..1082].copy_from_slice(&EXT4_MAGIC);
        fs::write(node.join("persist.img"), fake).unwrap();
        assert_eq!(
            tree.persist_image_state(&Serial::parse("d83add36").unwrap())
                .unwrap(),
            PersistState::Ext4
        );
    }
}
