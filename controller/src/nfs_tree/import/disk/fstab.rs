//! The imported root's `/etc/fstab` names the disk image's own partitions (Raspberry Pi OS:
//! `PARTUUID=<disk id>-01 /boot/firmware vfat`, `PARTUUID=<disk id>-02 / ext4`). A netbooted
//! Pi has no such device: systemd waits 90 s for it, then fails `local-fs.target` and stops
//! in emergency mode. The root is on NFS and the boot partition's files are already in
//! `boot/firmware/`, so those lines are commented out, saying why; every other line is kept
//! as shipped. Read and replaced below the image's own directory fd, never through a
//! symlink (a symlinked `etc` or `fstab` is left alone).

use std::ffi::CStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{FileType, RenameFlags};

use super::super::fsops;
use super::partitions::Partition;
use super::slice::Slice;

const NOTE: &str = "# pureboot: a partition of the imported disk image, absent on a netbooted Pi:";

/// The names fstab may give a partition: `PARTUUID=`, and its file system's `LABEL=` and
/// `UUID=` (ext2/3/4 and FAT).
pub(crate) fn names_of(p: &Partition, part: &Slice) -> Vec<String> {
    let mut names = vec![format!("PARTUUID={}", p.part_uuid)];
    let mut head = [0u8; 2048];
    if part.read_exact_at(0, &mut head).is_err() {
        return names;
    }
    let text = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .trim_end_matches(['\0', ' '])
            .to_string()
    };
    if head[1080..1082] == [0x53, 0xef] {
        let sb = &head[1024..];
        let u = &sb[104..120];
        names.push(format!(
            "UUID={}-{}-{}-{}-{}",
            hex(&u[0..4]),
            hex(&u[4..6]),
            hex(&u[6..8]),
            hex(&u[8..10]),
            hex(&u[10..16])
        ));
        let label = text(&sb[120..136]);
        if !label.is_empty() {
            names.push(format!("LABEL={label}"));
        }
    } else if head[82..87] == *b"FAT32" {
        let id = u32::from_le_bytes(head[67..71].try_into().expect("4 bytes"));
        names.push(format!("UUID={:04X}-{:04X}", id >> 16, id & 0xffff));
        let label = text(&head[71..82]);
        if !label.is_empty() && label != "NO NAME" {
            names.push(format!("LABEL={label}"));
        }
    }
    names
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `text` with every mount of one of `names` commented out, or `None` when none is there.
pub(crate) fn rewrite(text: &str, names: &[String]) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len() + 128);
    for line in text.split_inclusive('\n') {
        let source = line.split_whitespace().next().unwrap_or("");
        let ours = !source.starts_with('#') && names.iter().any(|n| n.eq_ignore_ascii_case(source));
        if ours {
            changed = true;
            out.push_str(NOTE);
            out.push('\n');
            out.push_str("# ");
        }
        out.push_str(line);
    }
    changed.then_some(out)
}

/// Applies [`rewrite`] to `etc/fstab` below `root`; whether it changed.
pub(crate) fn fix(root: BorrowedFd, names: &[String]) -> io::Result<bool> {
    let etc = match fsops::open_dir_at(root, c"etc") {
        Ok(fd) => fd,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
            ) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    const FSTAB: &CStr = c"fstab";
    const NEW: &CStr = c".fstab.pureboot";
    let mut file = match fsops::open_read_at(etc.as_fd(), FSTAB) {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let st = fsops::fstat(file.as_fd())?;
    if fsops::file_type(&st) != FileType::RegularFile || st.st_size > 1 << 20 {
        return Ok(false);
    }
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() {
        return Ok(false);
    }
    let Some(new) = rewrite(&text, names) else {
        return Ok(false);
    };
    let _ = fsops::unlink_at(etc.as_fd(), NEW);
    let mut out = fsops::create_file_at(etc.as_fd(), NEW)?;
    out.write_all(new.as_bytes())?;
    fsops::fchown(out.as_fd(), st.st_uid, st.st_gid)?;
    fsops::fchmod(out.as_fd(), st.st_mode & 0o7777)?;
    fsops::rename_at(etc.as_fd(), NEW, etc.as_fd(), FSTAB, RenameFlags::empty())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_images_own_partitions_are_commented_out_and_the_rest_kept() {
        let fstab = "proc            /proc           proc    defaults          0       0\n\
                     PARTUUID=8a438930-01  /boot/firmware  vfat    defaults          0       2\n\
                     PARTUUID=8a438930-02  /               ext4    defaults,noatime  0       1\n\
                     # PARTUUID=8a438930-02 / ext4\n\
                     LABEL=RASPIFIRM /boot/firmware vfat rw 0 2\n\
                     nas:/srv /srv nfs defaults 0 0";
        let names = [
            "PARTUUID=8a438930-01".to_string(),
            "PARTUUID=8A438930-02".to_string(),
            "LABEL=RASPIFIRM".to_string(),
        ];
        let out = rewrite(fstab, &names).unwrap();
        let kept: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(kept.len(), 2, "{out}");
        assert!(
            kept[0].starts_with("proc") && kept[1].starts_with("nas:/srv"),
            "{out}"
        );
        assert_eq!(out.matches(NOTE).count(), 3, "{out}");
        assert!(out.contains("# PARTUUID=8a438930-02  /  "), "{out}");
        assert_eq!(rewrite("proc /proc proc defaults 0 0\n", &names), None);
    }
}
