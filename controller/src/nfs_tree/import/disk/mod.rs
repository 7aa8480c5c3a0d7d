//! A partitioned disk image (what Raspberry Pi OS ships as `*.img.xz`) as a base image:
//! the ext4 root partition becomes the tree, the FAT boot partition its `boot/firmware/`
//! (where Pi OS mounts it), so the image's kernels, device trees, overlays and start files
//! travel with its `/lib/modules`.
//!
//! Both file systems are read in userspace (ext4-view, fatfs), never mounted: an
//! untrusted file system never meets the host kernel's ext4 or FAT code, the import needs
//! no loop device and no mount namespace, and so no failure can leave a mount or a loop
//! device behind. Every entry goes through the same [`Sink`] as a tar member. The readers
//! need random access, so the decompressed image is first spooled to a file with no name
//! (see `spool`), with holes for its zeros; it disappears with the import.

mod ext4_walk;
mod fat_walk;
mod fstab;
mod partitions;
mod slice;
mod spool;

use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::extract::ExtractStats;
use super::format;
use super::sink::Sink;
use super::ImportOptions;
use crate::nfs_tree::error::{NfsTreeError, Result};
use partitions::Partition;
use pureboot_contract::layout::BOOT_FIRMWARE_DIR;
use slice::Slice;

/// What a partition holds, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Ext4,
    Fat,
    Luks,
    Unknown,
}

fn holds(part: &Slice) -> Holds {
    let mut head = [0u8; 2048];
    if part.read_exact_at(0, &mut head).is_err() {
        return Holds::Unknown;
    }
    if head[1080..1082] == [0x53, 0xef] {
        Holds::Ext4
    } else if head[0..6] == *b"LUKS\xba\xbe" {
        Holds::Luks
    } else if head[510..512] == [0x55, 0xaa] && format::looks_like_fat_boot_sector(&head) {
        Holds::Fat
    } else {
        Holds::Unknown
    }
}

fn unsupported(label: &str, reason: String) -> NfsTreeError {
    NfsTreeError::UnsupportedArchive {
        archive: label.into(),
        reason,
    }
}

/// Spools `decoded`, reads its partition table and writes root and boot partition
/// through `sink`.
pub(super) fn import(
    mut sink: Sink,
    target: BorrowedFd,
    spool_dir: BorrowedFd,
    decoded: &mut dyn Read,
    label: &str,
    options: &ImportOptions,
) -> Result<ExtractStats> {
    let archive = |error| NfsTreeError::Archive {
        archive: label.into(),
        error,
    };
    let mut file = spool::unnamed_file(spool_dir).map_err(archive)?;
    // The image is larger than the files in it (free space, the boot partition): twice
    // the file limit, and its zeros cost no disk.
    let limit = options.max_bytes.saturating_mul(2);
    let len = spool::spool(decoded, &mut file, limit, &mut || sink.input_progress()).map_err(
        |e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => archive(e),
            kind => archive(std::io::Error::new(
                kind,
                format!("reading the disk image: {e} (a truncated or damaged download?)"),
            )),
        },
    )?;
    let file = Arc::new(file);
    let (kind, parts) = partitions::read_table(len, &mut |at, buf| file.read_exact_at(buf, at))
        .map_err(|reason| unsupported(label, reason))?;
    let found: Vec<(&Partition, Slice, Holds)> = parts
        .iter()
        .map(|p| {
            let s = Slice::new(file.clone(), p);
            let h = holds(&s);
            (p, s, h)
        })
        .collect();
    let described = || {
        found
            .iter()
            .map(|(p, _, h)| format!("{p}: {h:?}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let Some((root_part, root, _)) = found.iter().find(|(_, _, h)| *h == Holds::Ext4) else {
        let reason = match found.iter().find(|(_, _, h)| *h == Holds::Luks) {
            Some((p, _, _)) => format!(
                "{p} is LUKS-encrypted: pureboot serves only an unencrypted ext4 root \
                 (decrypt it, or import a tar of its files)"
            ),
            None => format!(
                "no Linux root: no partition holds an ext2/3/4 file system ({:?} table: {})",
                kind,
                described()
            ),
        };
        return Err(unsupported(label, reason));
    };
    log::info!("import {label}: {kind:?} table, root is {root_part}");
    let fs = ext4_view::Ext4::load(Box::new(root.clone())).map_err(|e| {
        unsupported(
            label,
            format!("{root_part}: not a readable ext4 file system: {e}"),
        )
    })?;
    ext4_walk::walk(&fs, &mut sink, label)?;
    let boot_part = found.iter().find(|(_, _, h)| *h == Holds::Fat);
    let mut names = fstab::names_of(root_part, root);
    if let Some((p, s, _)) = boot_part {
        names.extend(fstab::names_of(p, s));
    }
    match boot_part {
        Some((boot_part, boot, _)) => {
            log::info!("import {label}: boot partition {boot_part} -> {BOOT_FIRMWARE_DIR}/");
            let under = BOOT_FIRMWARE_DIR
                .split('/')
                .map(|c| c.as_bytes().to_vec())
                .collect();
            fat_walk::walk(boot.clone(), under, &mut sink, label)?;
        }
        None => log::warn!(
            "import {label}: no FAT boot partition ({}): the image carries no kernel",
            described()
        ),
    }
    let stats = sink.finish()?;
    if fstab::fix(target, &names).map_err(|error| NfsTreeError::EntryIo {
        archive: label.into(),
        entry: "etc/fstab".into(),
        error,
    })? {
        log::info!(
            "import {label}: etc/fstab: the image's own partitions ({}) commented out",
            names.join(", ")
        );
    }
    Ok(stats)
}
