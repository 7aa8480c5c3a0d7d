//! The ext4 root, read in userspace (ext4-view) and handed to the [`Sink`] as entry plans,
//! so it meets exactly the checks a tar member meets: no-follow creation below the target,
//! the size limit, the mode rules. What the image may do wrong is refused here: names
//! with `/` or NUL, and directory loops (a directory linked below itself), which a tree
//! walk would follow forever: nesting is bounded, and so is the entry count.
//!
//! ext4-view reads no device numbers, extended attributes or inode numbers: device nodes
//! are left out (devtmpfs provides `/dev`), file capabilities are not kept, and a file
//! with several hard links is written once per name.

use std::io;

use ext4_view::{Ext4, Ext4Error, FileType, Metadata};

use super::super::fsops::MTime;
use super::super::sink::{shown, Sink};
use super::super::tar_entry::{EntryKind, EntryPlan, Meta};
use crate::nfs_tree::error::{NfsTreeError, Result};

/// Far deeper than any root (Debian's deepest paths are about 20 levels).
pub(crate) const MAX_DEPTH: usize = 128;
/// Ten times a large desktop root.
pub(crate) const MAX_ENTRIES: u64 = 10_000_000;

fn meta(md: &Metadata) -> Meta {
    let t = md.modified();
    Meta {
        mode: u32::from(md.mode()) & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: MTime {
            secs: t.seconds(),
            nanos: t.nanoseconds(),
        },
        xattrs: Vec::new(),
    }
}

fn bad(label: &str, entry: &str, e: impl std::fmt::Display) -> NfsTreeError {
    NfsTreeError::BadEntry {
        archive: label.into(),
        entry: entry.into(),
        reason: format!("{e}"),
    }
}

fn unsafe_entry(label: &str, entry: &str, reason: String) -> NfsTreeError {
    NfsTreeError::UnsafeEntry {
        archive: label.into(),
        entry: entry.into(),
        reason,
    }
}

fn read_error(label: &str, entry: &str, e: Ext4Error) -> NfsTreeError {
    match e {
        Ext4Error::Encrypted => bad(
            label,
            entry,
            "encrypted (fscrypt): pureboot serves only an unencrypted root",
        ),
        e => bad(label, entry, format!("reading the ext4 root: {e}")),
    }
}

/// Writes the whole file system below the sink's target.
pub(crate) fn walk(fs: &Ext4, sink: &mut Sink, label: &str) -> Result<()> {
    let root = fs.metadata("/").map_err(|e| read_error(label, ".", e))?;
    sink.put(
        plan(Vec::new(), EntryKind::Dir, &root),
        ".",
        &mut io::empty(),
    )?;
    let mut entries = 0u64;
    let mut stack: Vec<(ext4_view::PathBuf, Vec<Vec<u8>>)> =
        vec![(ext4_view::PathBuf::new("/"), Vec::new())];
    while let Some((dir, comps)) = stack.pop() {
        let here = shown(&comps);
        let listing = fs.read_dir(&dir).map_err(|e| read_error(label, &here, e))?;
        for entry in listing {
            let entry = entry.map_err(|e| read_error(label, &here, e))?;
            let name = entry.file_name().as_ref().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            let mut path = comps.clone();
            path.push(name.clone());
            let shown = shown(&path);
            if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
                return Err(unsafe_entry(label, &shown, "a name with '/' or NUL".into()));
            }
            entries += 1;
            if entries > MAX_ENTRIES {
                return Err(unsafe_entry(
                    label,
                    &shown,
                    format!("more than {MAX_ENTRIES} entries (a directory loop?)"),
                ));
            }
            let md = entry.metadata().map_err(|e| read_error(label, &shown, e))?;
            let src = entry.path();
            match md.file_type() {
                FileType::Directory => {
                    if path.len() > MAX_DEPTH {
                        return Err(unsafe_entry(
                            label,
                            &shown,
                            format!(
                                "directories nested deeper than {MAX_DEPTH} levels (a \
                                 directory linked below itself?)"
                            ),
                        ));
                    }
                    sink.put(
                        plan(path.clone(), EntryKind::Dir, &md),
                        &shown,
                        &mut io::empty(),
                    )?;
                    stack.push((src, path));
                }
                FileType::Regular => {
                    let mut file = fs.open(&src).map_err(|e| read_error(label, &shown, e))?;
                    let kind = EntryKind::File {
                        size: md.len(),
                        sparse: false,
                    };
                    sink.put(plan(path, kind, &md), &shown, &mut file)?;
                }
                FileType::Symlink => {
                    let target = fs
                        .read_link(&src)
                        .map_err(|e| read_error(label, &shown, e))?;
                    let kind = EntryKind::Symlink {
                        target: target.as_ref().to_vec(),
                    };
                    sink.put(plan(path, kind, &md), &shown, &mut io::empty())?;
                }
                FileType::Fifo => {
                    sink.put(plan(path, EntryKind::Fifo, &md), &shown, &mut io::empty())?
                }
                FileType::CharacterDevice | FileType::BlockDevice | FileType::Socket => {
                    let kind = EntryKind::Ignored {
                        why: "a device node or socket in the ext4 root",
                    };
                    sink.put(plan(path, kind, &md), &shown, &mut io::empty())?;
                }
            }
        }
    }
    Ok(())
}

fn plan(path: Vec<Vec<u8>>, kind: EntryKind, md: &Metadata) -> EntryPlan {
    EntryPlan {
        path,
        kind,
        meta: meta(md),
    }
}
