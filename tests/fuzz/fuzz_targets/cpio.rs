//! pureboot-image's cpio (newc) codec. The first byte selects the mode: odd, the input is
//! read as an archive (refused or decoded, never a panic); even, it builds entries (paths,
//! permissions, kinds, contents) that the writer must either refuse or write so that the
//! reader gives back exactly those entries, in order, with the fixed header fields.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pureboot_image::cpio::{read_archive, write_archive, Entry};

fn entry(u: &mut Unstructured) -> Result<Entry> {
    let path: String = u.arbitrary()?;
    let perm = u.int_in_range(0..=0o7777)?;
    Ok(match u.int_in_range(0..=3)? {
        0 => Entry::dir(&path, perm),
        1 => Entry::file(&path, perm, u.arbitrary()?),
        2 => Entry::symlink(&path, &u.arbitrary::<String>()?),
        _ => Entry::char_dev(&path, perm, u.arbitrary()?, u.arbitrary()?),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        let _ = read_archive(rest);
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(entries) = u
        .int_in_range(0..=32)
        .and_then(|n| (0..n).map(|_| entry(&mut u)).collect::<Result<Vec<_>>>())
    else {
        return;
    };
    let mtime: u32 = 1_700_000_000;
    let mut out = Vec::new();
    if write_archive(&entries, mtime, &mut out).is_err() {
        return;
    }
    let records = read_archive(&out).unwrap_or_else(|e| panic!("own archive unreadable: {e}"));
    assert_eq!(records.len(), entries.len());
    for (i, (r, e)) in records.iter().zip(&entries).enumerate() {
        assert_eq!(&r.entry, e, "entry {i}");
        assert_eq!((r.uid, r.gid, r.mtime), (0, 0, mtime));
        assert_eq!(r.ino as usize, i + 1);
    }
});
