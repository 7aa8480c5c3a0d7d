//! Base image import (controller/nfs_tree) into a fresh directory per run. The first byte
//! selects the mode: odd, the input is the archive as is (any compression the importer
//! sniffs); even, the input describes members (hostile names, link targets, types, sizes)
//! that the `tar` crate writes with valid headers, so the importer's own checks are reached.
//! Either way: the import succeeds or fails with an archive error (never an I/O error, which
//! the API reports as a server fault), and nothing appears outside
//! `base/` — a sibling directory with a canary stays exactly as it was, and no staging
//! directory is left behind.
#![no_main]

use std::fs;
use std::path::Path;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pureboot_controller::nfs_tree::NfsTree;
use pureboot_controller::nfs_tree::error::NfsTreeError;

/// Names the fuzzer can combine into path tricks.
const PARTS: &[&str] = &[
    "..", ".", "", "etc", "outside", "canary", "base", "img", "/", "//", "a", "dev", "lnk",
];

fn name(u: &mut Unstructured) -> Result<Vec<u8>> {
    if u.ratio(1, 4)? {
        return u.arbitrary();
    }
    let n = u.int_in_range(1..=5)?;
    let mut parts = Vec::new();
    for _ in 0..n {
        parts.push(u.choose(PARTS)?.to_string());
    }
    Ok(parts.join("/").into_bytes())
}

fn structured(u: &mut Unstructured) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for _ in 0..u.int_in_range(0..=12)? {
        let mut h = tar::Header::new_gnu();
        let kind = *u.choose(&[
            tar::EntryType::Regular,
            tar::EntryType::Directory,
            tar::EntryType::Symlink,
            tar::EntryType::Link,
            tar::EntryType::Char,
            tar::EntryType::Fifo,
        ])?;
        h.set_entry_type(kind);
        h.set_mode(u.int_in_range(0..=0o7777)?);
        h.set_uid(u.int_in_range(0..=70000)?);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let data: Vec<u8> = if kind == tar::EntryType::Regular {
            u.arbitrary()?
        } else {
            Vec::new()
        };
        h.set_size(data.len() as u64);
        let path = name(u)?;
        let target = name(u)?;
        // Raw bytes in the header (the tar crate's setters refuse `..`): what a hostile
        // archive would hold. Names over 100 bytes need GNU long-name records: skipped.
        if path.len() > 100 || target.len() > 100 {
            continue;
        }
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..path.len()].copy_from_slice(&path);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            gnu.linkname[..target.len()].copy_from_slice(&target);
        }
        if std::env::var_os("FUZZ_SHOW").is_some() {
            let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            eprintln!("member: {kind:?} {:?} -> {:?}", show(&path), show(&target));
        }
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    Ok(b.into_inner().unwrap())
}

fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        out.push((e.file_name().to_string_lossy().into_owned(), m.len()));
        if m.is_dir() {
            for (n, l) in listing(&e.path()) {
                out.push((format!("{}/{n}", e.file_name().to_string_lossy()), l));
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let archive = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        match structured(&mut Unstructured::new(rest)) {
            Ok(a) => a,
            Err(_) => return,
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("canary"), b"canary").unwrap();
    let before = listing(&outside);
    let tree = NfsTree::new(tmp.path().join("root"));
    fs::create_dir_all(tree.base_path()).unwrap();
    let result = tree.import_base_image_from_reader(&archive[..], "fuzz", None, "img", &mut |_| {});
    if std::env::var_os("FUZZ_SHOW").is_some() {
        // Which paths the corpus reaches: `FUZZ_SHOW=1 tar_import -runs=0 <corpus>`.
        eprintln!("import: {:?}", result.as_ref().map(|s| s.entries));
    }

    assert_eq!(
        listing(&outside),
        before,
        "outside changed; import said {result:?}"
    );
    assert_eq!(fs::read(outside.join("canary")).unwrap(), b"canary");
    let mut top: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["outside", "root"], "import said {result:?}");
    let mut root: Vec<String> = fs::read_dir(tree.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    root.sort();
    assert_eq!(root, ["base"], "import said {result:?}");
    let base: Vec<String> = fs::read_dir(tree.base_path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    // In a fresh directory with space to spare, an I/O error is an archive quirk reported
    // as a server fault (HTTP 500): the importer must name it as a bad or unsafe entry.
    assert!(
        !matches!(
            result,
            Err(NfsTreeError::EntryIo { .. } | NfsTreeError::Io { .. })
        ),
        "archive fault reported as I/O: {result:?}"
    );
    match &result {
        Ok(_) => assert_eq!(base, ["img"]),
        Err(_) => assert!(base.is_empty(), "left behind: {base:?} after {result:?}"),
    }
});
