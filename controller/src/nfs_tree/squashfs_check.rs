//! Whether a squashfs base image is still the file its import wrote: its sha256 against the
//! digest recorded beside it (`SQUASHFS_DIGEST`), before a boot is answered with it.
//!
//! Why the controller and not pi-init: squashfs checks no data of its own. A damaged block
//! surfaces in the booted node as EIO on some read, much later; in the init's own pages it is
//! a SIGBUS of PID 1, which the kernel turns into a panic. pi-init cannot hash the file
//! without reading all of it over NFS at every boot (the cost the format exists to avoid);
//! the controller reads it from its own disk once per change of the file.
//!
//! Once per change: a verdict is kept with the file's identity and times (device, inode,
//! size, mtime, ctime), so a boot costs one `stat`; a write to the file (a bad copy, `dd`)
//! changes them and the next boot hashes it again. Damage that leaves the times alone (a
//! failing disk) is caught by the same check after a controller restart; `image verify`
//! hashes every image on demand.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pureboot_contract::layout::{SQUASHFS_DIGEST, SQUASHFS_IMAGE};

use super::import::squashfs::digest;

/// What the check found of one image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// No squashfs file: a directory base (nothing to check).
    Tree,
    Intact,
    /// Why the file cannot be booted, in words that name the file.
    Damaged(String),
}

/// The identity and times a verdict holds for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(m: &std::fs::Metadata) -> Self {
        Fingerprint {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The last verdict on one file.
type Entry = Arc<Mutex<Option<(Fingerprint, Verdict)>>>;

/// The verdicts of this process, per file.
#[derive(Debug, Default)]
pub struct SquashfsDigests {
    /// Each file's entry is held while that file is hashed: boots of one image after its
    /// change wait for one reading of it, not one each, and boots of other images do not
    /// wait at all.
    known: Mutex<HashMap<PathBuf, Entry>>,
}

impl SquashfsDigests {
    /// The verdict on the image in `dir` (`base/<image>`), hashing the file only when it
    /// changed since the last look.
    pub fn check(&self, dir: &Path) -> Verdict {
        let file = dir.join(SQUASHFS_IMAGE);
        let meta = match std::fs::symlink_metadata(&file) {
            Ok(m) if m.is_file() => m,
            // pi-init takes anything else of that name for a tree's own (see its squashfs
            // step); a missing directory is reported by the boot as before.
            _ => return Verdict::Tree,
        };
        let print = Fingerprint::of(&meta);
        let entry = {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(known.entry(file.clone()).or_default())
        };
        let mut last = entry.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((seen, verdict)) if *seen == print => verdict.clone(),
            _ => {
                let verdict = verify(&file, &dir.join(SQUASHFS_DIGEST));
                if let Verdict::Damaged(why) = &verdict {
                    log::error!("{why}");
                }
                *last = Some((print, verdict.clone()));
                verdict
            }
        }
    }
}

/// The image in `dir` hashed now (`image verify`), whatever was known before.
pub fn verify_dir(dir: &Path) -> Verdict {
    let file = dir.join(SQUASHFS_IMAGE);
    match std::fs::symlink_metadata(&file) {
        Ok(m) if m.is_file() => verify(&file, &dir.join(SQUASHFS_DIGEST)),
        _ => Verdict::Tree,
    }
}

/// The file hashed now against its recorded digest, whatever was known before.
pub fn verify(file: &Path, digest_file: &Path) -> Verdict {
    let damaged = |why: String| Verdict::Damaged(format!("{}: {why}", file.display()));
    let recorded = match std::fs::read_to_string(digest_file) {
        Ok(line) => match line.split_whitespace().next() {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                hex.to_ascii_lowercase()
            }
            _ => return damaged(format!("{} holds no sha256", digest_file.display())),
        },
        Err(e) => return damaged(format!("its digest {}: {e}", digest_file.display())),
    };
    let opened = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file);
    match opened.and_then(digest) {
        Ok((_, found)) if found == recorded => Verdict::Intact,
        Ok((bytes, found)) => damaged(format!(
            "sha256 {found} ({bytes} bytes), not the {recorded} its import recorded: the \
             file changed after the import (a bad copy, a disk fault); import the image again \
             or restore the file"
        )),
        Err(e) => damaged(format!("reading it: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn image(dir: &Path, body: &[u8]) {
        std::fs::write(dir.join(SQUASHFS_IMAGE), body).unwrap();
        let (_, hex) = digest(body).unwrap();
        std::fs::write(
            dir.join(SQUASHFS_DIGEST),
            format!("{hex}  {SQUASHFS_IMAGE}\n"),
        )
        .unwrap();
    }

    #[test]
    fn a_tree_an_intact_file_and_a_zeroed_block() {
        let dir = tempfile::tempdir().unwrap();
        let checks = SquashfsDigests::default();
        assert_eq!(checks.check(dir.path()), Verdict::Tree);

        image(dir.path(), &vec![7u8; 3 * 4096]);
        assert_eq!(checks.check(dir.path()), Verdict::Intact);

        // One block zeroed in place, as `dd conv=notrunc` or a bad copy leaves it.
        let mut f = File::options()
            .write(true)
            .open(dir.path().join(SQUASHFS_IMAGE))
            .unwrap();
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        drop(f);
        match checks.check(dir.path()) {
            Verdict::Damaged(why) => {
                assert!(
                    why.contains(SQUASHFS_IMAGE) && why.contains("import"),
                    "{why}"
                )
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_verdict_holds_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let checks = SquashfsDigests::default();
        image(dir.path(), b"squashfs");
        assert_eq!(checks.check(dir.path()), Verdict::Intact);
        // The recorded digest changed, the file did not: the verdict stands (one stat per
        // boot); `verify` looks again.
        std::fs::write(dir.path().join(SQUASHFS_DIGEST), "0".repeat(64)).unwrap();
        assert_eq!(checks.check(dir.path()), Verdict::Intact);
        let file = dir.path().join(SQUASHFS_IMAGE);
        assert!(matches!(
            verify(&file, &dir.path().join(SQUASHFS_DIGEST)),
            Verdict::Damaged(_)
        ));
    }

    #[test]
    fn a_missing_or_unreadable_digest_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SQUASHFS_IMAGE), b"x").unwrap();
        let checks = SquashfsDigests::default();
        match checks.check(dir.path()) {
            Verdict::Damaged(why) => assert!(why.contains(SQUASHFS_DIGEST), "{why}"),
            v => panic!("{v:?}"),
        }
    }
}
