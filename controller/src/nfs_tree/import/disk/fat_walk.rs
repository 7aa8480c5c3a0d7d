//! The FAT boot partition, read in userspace (fatfs) and written below `boot/firmware/`
//! through the same [`Sink`] as the root: files 0644, directories 0755, owned by root, with
//! the partition's modification times. Loops in a hostile FAT directory tree are bounded
//! as in the ext4 walk.

use std::io;

use fatfs::{FileSystem, FsOptions};

use super::super::fsops::MTime;
use super::super::sink::{shown, Sink};
use super::super::tar_entry::{EntryKind, EntryPlan, Meta};
use super::ext4_walk::{MAX_DEPTH, MAX_ENTRIES};
use super::slice::Slice;
use crate::nfs_tree::error::{NfsTreeError, Result};

fn bad(label: &str, entry: &str, reason: String) -> NfsTreeError {
    NfsTreeError::BadEntry {
        archive: label.into(),
        entry: entry.into(),
        reason,
    }
}

/// Seconds since 1970 of a FAT time stamp (local time as written, taken as UTC).
fn unix_time(t: fatfs::DateTime) -> i64 {
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let (y, m, d) = (
        i64::from(t.date.year),
        i64::from(t.date.month),
        i64::from(t.date.day),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400
        + i64::from(t.time.hour) * 3600
        + i64::from(t.time.min) * 60
        + i64::from(t.time.sec)
}

fn meta(mode: u32, mtime: Option<fatfs::DateTime>) -> Meta {
    Meta {
        mode,
        uid: 0,
        gid: 0,
        mtime: MTime {
            secs: mtime.map_or(0, unix_time),
            nanos: 0,
        },
        xattrs: Vec::new(),
    }
}

/// Writes the partition's files below `under` (components relative to the image root).
pub(crate) fn walk(part: Slice, under: Vec<Vec<u8>>, sink: &mut Sink, label: &str) -> Result<()> {
    let fs = FileSystem::new(part, FsOptions::new()).map_err(|e| {
        bad(
            label,
            &shown(&under),
            format!("reading the FAT boot partition: {e}"),
        )
    })?;
    let dir_plan = |path: Vec<Vec<u8>>, mtime| EntryPlan {
        path,
        kind: EntryKind::Dir,
        meta: meta(0o755, mtime),
    };
    sink.put(
        dir_plan(under.clone(), None),
        &shown(&under),
        &mut io::empty(),
    )?;
    let mut entries = 0u64;
    let mut stack = vec![(fs.root_dir(), under)];
    while let Some((dir, comps)) = stack.pop() {
        let here = shown(&comps);
        for entry in dir.iter() {
            let entry =
                entry.map_err(|e| bad(label, &here, format!("reading the FAT directory: {e}")))?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let mut path = comps.clone();
            path.push(name.clone().into_bytes());
            let shown = shown(&path);
            if name.is_empty() || name.contains(['/', '\0']) {
                return Err(bad(label, &shown, "a FAT name with '/' or NUL".into()));
            }
            entries += 1;
            if entries > MAX_ENTRIES || path.len() > MAX_DEPTH {
                return Err(NfsTreeError::UnsafeEntry {
                    archive: label.into(),
                    entry: shown,
                    reason: "a FAT directory tree too deep or too large (a directory loop?)".into(),
                });
            }
            if entry.is_dir() {
                sink.put(
                    dir_plan(path.clone(), Some(entry.modified())),
                    &shown,
                    &mut io::empty(),
                )?;
                stack.push((entry.to_dir(), path));
            } else {
                let plan = EntryPlan {
                    path,
                    kind: EntryKind::File {
                        size: entry.len(),
                        sparse: false,
                    },
                    meta: meta(0o644, Some(entry.modified())),
                };
                sink.put(plan, &shown, &mut entry.to_file())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_time_to_unix() {
        let t = |year, month, day, hour, min, sec| fatfs::DateTime {
            date: fatfs::Date { year, month, day },
            time: fatfs::Time {
                hour,
                min,
                sec,
                millis: 0,
            },
        };
        assert_eq!(unix_time(t(1980, 1, 1, 0, 0, 0)), 315_532_800);
        assert_eq!(unix_time(t(2024, 3, 15, 12, 30, 5)), 1_710_505_805);
    }
}
