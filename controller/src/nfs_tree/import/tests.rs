//! Import tests: every compression, a metadata round trip, every escape attempt, and the
//! all-or-nothing guarantee. Archives are built here (see `test_archives`).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;
use tempfile::TempDir;

use super::super::error::{NfsTreeError, Result};
use super::super::NfsTree;
use super::format::ArchiveFormat;
use super::progress::{ImportProgress, ImportSummary};
use super::test_archives::{compress, ArchiveBuilder, MTIME};
use super::{fsops, ImportOptions, NameLock};

pub(crate) mod disk_images;

const TRUSTED: ImportOptions = ImportOptions {
    max_bytes: super::DEFAULT_MAX_BYTES,
    keep_devices: true,
    keep_setid: true,
    format: super::BaseFormat::Directory,
};

const FORMATS: [ArchiveFormat; 4] = [
    ArchiveFormat::Tar,
    ArchiveFormat::Gzip,
    ArchiveFormat::Xz,
    ArchiveFormat::Zstd,
];

/// `security.capability` v2 granting cap_net_raw (bit 13), effective.
const CAP_NET_RAW: &[u8] = &[
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn privileged(what: &str) -> bool {
    let root = fsops::is_root();
    if !root {
        eprintln!("SKIPPED part of {what}: needs root (owners, device nodes, security.* xattrs)");
    }
    root
}

struct Fixture {
    tmp: TempDir,
    tree: NfsTree,
    /// A directory beside the NFS root that no archive may touch.
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let tree = NfsTree::new(tmp.path().join("nfs"));
    tree.ensure_directories().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), "original").unwrap();
    Fixture { tmp, tree, outside }
}

impl Fixture {
    fn import(&self, archive: &[u8], image: &str) -> Result<ImportSummary> {
        // No extension: the format must come from the content.
        let path = self
            .tmp
            .path()
            .join(format!("{}.archive", image.replace('/', "_")));
        fs::write(&path, archive).unwrap();
        self.tree.import_base_image(&path, image, &mut |_| {})
    }

    /// As `import`, keeping device nodes and set-uid bits (the operator's explicit choice).
    fn import_trusted(&self, archive: &[u8], image: &str) -> Result<ImportSummary> {
        let path = self.tmp.path().join(format!("{image}.archive"));
        fs::write(&path, archive).unwrap();
        self.tree
            .import_base_image_with(&path, image, &TRUSTED, &mut |_| {})
    }

    fn outside_str(&self) -> String {
        self.outside.display().to_string()
    }

    /// Nothing under base/ but complete images, and nothing changed outside.
    fn assert_nothing_published(&self, image: &str) {
        assert!(
            !self.tree.base_path().join(image).exists(),
            "base/{image} must not exist"
        );
        let leftovers: Vec<_> = fs::read_dir(self.tree.base_path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left in base/: {leftovers:?}"
        );
        let outside: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            outside,
            ["victim"],
            "something was written outside the target"
        );
        assert_eq!(
            fs::read_to_string(self.outside.join("victim")).unwrap(),
            "original"
        );
        assert!(!self.tmp.path().join("victim").exists());
    }

    fn assert_refused(&self, archive: &[u8], image: &str, entry_has: &str, reason_has: &str) {
        match self.import(archive, image) {
            Err(NfsTreeError::UnsafeEntry { entry, reason, .. }) => {
                assert!(
                    entry.contains(entry_has),
                    "error names {entry:?} ({reason}), expected {entry_has:?}"
                );
                assert!(
                    reason.contains(reason_has),
                    "{entry:?}: reason {reason:?}, expected {reason_has:?}"
                );
            }
            other => panic!("expected an unsafe-entry refusal naming {entry_has:?}, got {other:?}"),
        }
        self.assert_nothing_published(image);
    }
}

fn big_content() -> Vec<u8> {
    // Over three pipeline chunks, not a multiple of the block size.
    (0..3 * (1 << 20) + 777)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// An archive with every member kind a root image has.
fn rich_archive(with_root_only: bool) -> Vec<u8> {
    let mut a = ArchiveBuilder::new();
    a.dir("./", 0o755)
        .dir("./etc/", 0o755)
        .file("./etc/hostname", 0o644, b"base\n")
        .owned_file("./etc/shadow", 0o640, 0, 42, b"secret\n")
        .dir("./srv/", 0o750)
        .file("./srv/data", 0o600, b"data")
        // usr/ and usr/bin/ are implied, as some archivers leave them out.
        .owned_file("./usr/bin/su", 0o4755, 0, 0, b"#!/bin/su\n");
    let mut xattrs: Vec<(&str, &[u8])> = vec![("user.pureboot", b"yes")];
    if with_root_only {
        xattrs.push(("security.capability", CAP_NET_RAW));
    }
    a.file_with_xattrs("./usr/bin/ping", 0o755, b"ping binary", &xattrs)
        .hardlink("./usr/bin/ping6", "./usr/bin/ping")
        .symlink("./sbin/init", "/lib/systemd/systemd")
        .symlink("./lib", "usr/lib")
        .dir("./home/pi/", 0o700)
        .owned_file("./home/pi/notes", 0o600, 1000, 1000, b"hi")
        .fifo("./run/initctl", 0o600)
        .file("./var/big.bin", 0o644, &big_content());
    if with_root_only {
        a.device("./dev/null", EntryType::Char, 1, 3, 0o666).device(
            "./dev/loop0",
            EntryType::Block,
            7,
            0,
            0o660,
        );
    }
    a.finish()
}

fn assert_rich_tree(root: &Path, with_root_only: bool) {
    let meta = |p: &str| fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let mode = |p: &str| meta(p).permissions().mode() & 0o7777;

    assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"base\n");
    assert_eq!(fs::read(root.join("var/big.bin")).unwrap(), big_content());
    assert_eq!(mode("."), 0o755);
    assert_eq!(mode("etc/shadow"), 0o640);
    assert_eq!(mode("srv"), 0o750);
    assert_eq!(mode("home/pi"), 0o700);
    assert_eq!(mode("usr/bin/su"), 0o4755, "setuid kept");
    assert_eq!(mode("usr"), 0o755, "implied directory");
    for p in ["etc/hostname", "srv", "home/pi", "var/big.bin", "."] {
        assert_eq!(meta(p).mtime(), MTIME as i64, "mtime of {p}");
    }
    assert_eq!(
        fs::read_link(root.join("sbin/init")).unwrap(),
        Path::new("/lib/systemd/systemd")
    );
    assert_eq!(meta("sbin/init").mtime(), MTIME as i64, "symlink mtime");
    assert_eq!(
        fs::read_link(root.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert_eq!(
        meta("usr/bin/ping6").ino(),
        meta("usr/bin/ping").ino(),
        "hard link"
    );
    assert_eq!(meta("usr/bin/ping").nlink(), 2);
    assert!(meta("run/initctl").file_type().is_fifo());
    assert_eq!(mode("run/initctl"), 0o600);
    assert_eq!(
        xattr::get(root.join("usr/bin/ping"), "user.pureboot")
            .unwrap()
            .as_deref(),
        Some(&b"yes"[..])
    );

    if with_root_only {
        assert_eq!(
            (meta("etc/shadow").uid(), meta("etc/shadow").gid()),
            (0, 42)
        );
        assert_eq!(
            (meta("home/pi/notes").uid(), meta("home/pi/notes").gid()),
            (1000, 1000)
        );
        let null = meta("dev/null");
        assert!(null.file_type().is_char_device());
        assert_eq!((libc::major(null.rdev()), libc::minor(null.rdev())), (1, 3));
        assert_eq!(mode("dev/null"), 0o666);
        let loop0 = meta("dev/loop0");
        assert!(loop0.file_type().is_block_device());
        assert_eq!(
            (libc::major(loop0.rdev()), libc::minor(loop0.rdev())),
            (7, 0)
        );
        assert_eq!(
            xattr::get(root.join("usr/bin/ping"), "security.capability")
                .unwrap()
                .as_deref(),
            Some(CAP_NET_RAW),
            "file capability kept (set after chown, which clears it)"
        );
    }
}

#[test]
fn imports_each_format_with_metadata() {
    let with_root_only = privileged("imports_each_format_with_metadata");
    let tar = rich_archive(with_root_only);
    for format in FORMATS {
        let fx = fixture();
        let image = format!("img-{}", format.as_str().replace('.', "-"));
        let summary = fx
            .import_trusted(&compress(format, &tar), &image)
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(summary.format, format);
        assert_eq!(summary.path, fx.tree.base_path().join(&image));
        assert_eq!(
            summary.bytes,
            (5 + 7 + 4 + 10 + 11 + 2 + big_content().len()) as u64
        );
        assert_eq!(summary.skipped, 0);
        assert_rich_tree(&summary.path, with_root_only);
        assert_eq!(fx.tree.base_images().unwrap(), [image.as_str()]);
        fx.assert_nothing_published("not-this-one");
    }
}

#[test]
fn progress_reports_counts_up_to_the_summary() {
    let fx = fixture();
    let archive = compress(ArchiveFormat::Gzip, &rich_archive(false));
    let path = fx.tmp.path().join("rich.tgz");
    fs::write(&path, &archive).unwrap();
    let mut seen: Vec<ImportProgress> = Vec::new();
    let summary = fx
        .tree
        .import_base_image(&path, "deb", &mut |p| seen.push(p))
        .unwrap();
    let last = *seen.last().expect("progress was reported");
    assert!(seen
        .windows(2)
        .all(|w| w[0].entries <= w[1].entries && w[0].bytes <= w[1].bytes));
    assert_eq!((last.entries, last.bytes), (summary.entries, summary.bytes));
    assert_eq!(last.archive_size, Some(archive.len() as u64));
    assert_eq!(summary.archive_bytes, archive.len() as u64);
    // big.bin is the last member: its 3 MiB report per MiB while `entries` has not moved on.
    let during_last = seen
        .iter()
        .filter(|p| p.entries == last.entries - 1)
        .count();
    assert!(
        during_last >= 4,
        "{during_last} reports while the last member was written"
    );
}

#[test]
fn refuses_dotdot_and_absolute_names() {
    let fx = fixture();
    let a = ArchiveBuilder::new()
        .file("ok", 0o644, b"x")
        .raw(EntryType::Regular, b"../outside/victim", None, b"pwned")
        .finish();
    fx.assert_refused(&a, "dotdot", "../outside/victim", "'..'");
    let a = ArchiveBuilder::new()
        .raw(EntryType::Regular, b"a/../../victim", None, b"pwned")
        .finish();
    fx.assert_refused(&a, "dotdot2", "a/../../victim", "'..'");
    let abs = format!("{}/victim", fx.outside_str());
    let a = ArchiveBuilder::new()
        .raw(EntryType::Regular, abs.as_bytes(), None, b"pwned")
        .finish();
    fx.assert_refused(&a, "absolute", &abs, "absolute");
    let a = ArchiveBuilder::new()
        .raw(
            EntryType::Directory,
            format!("{}/new/", fx.outside_str()).as_bytes(),
            None,
            b"",
        )
        .finish();
    fx.assert_refused(&a, "absolute-dir", "/new", "absolute");
}

#[test]
fn refuses_writing_through_a_symlink() {
    let fx = fixture();
    let out = fx.outside_str();
    // Absolute symlink to the outside, then a file "inside" it.
    let a = ArchiveBuilder::new()
        .symlink("link", &out)
        .file("link/victim", 0o644, b"pwned")
        .finish();
    fx.assert_refused(&a, "abs-link", "link/victim", "is a symlink");
    // Relative symlink climbing out, then a new file and a new directory through it.
    let a = ArchiveBuilder::new()
        .raw(EntryType::Symlink, b"up", Some(b"../../../outside"), b"")
        .file("up/new", 0o644, b"x")
        .finish();
    fx.assert_refused(&a, "rel-link", "up/new", "is a symlink");
    let a = ArchiveBuilder::new()
        .symlink("d", &out)
        .dir("d/sub/", 0o755)
        .finish();
    fx.assert_refused(&a, "dir-through-link", "d/sub", "is a symlink");
    // Deeper: a symlink inside a real directory, pointing at "/".
    let a = ArchiveBuilder::new()
        .dir("etc/", 0o755)
        .symlink("etc/root", "/")
        .file("etc/root/tmp/x", 0o644, b"x")
        .finish();
    fx.assert_refused(&a, "deep-link", "etc/root/tmp/x", "is a symlink");
}

#[test]
fn refuses_hard_links_out() {
    let fx = fixture();
    let out = fx.outside_str();
    let a = ArchiveBuilder::new()
        .raw(EntryType::Link, b"hl", Some(b"../outside/victim"), b"")
        .finish();
    fx.assert_refused(&a, "hl-dotdot", "hl", "'..'");
    let abs = format!("{out}/victim");
    let a = ArchiveBuilder::new()
        .raw(EntryType::Link, b"hl", Some(abs.as_bytes()), b"")
        .finish();
    fx.assert_refused(&a, "hl-abs", "hl", "absolute");
    // A hard link to a symlink that points out.
    let a = ArchiveBuilder::new()
        .symlink("s", &abs)
        .raw(EntryType::Link, b"hl", Some(b"s"), b"")
        .finish();
    fx.assert_refused(&a, "hl-to-symlink", "hl", "points outside");
    let a = ArchiveBuilder::new()
        .raw(EntryType::Symlink, b"s", Some(b"../x"), b"")
        .raw(EntryType::Link, b"hl", Some(b"s"), b"")
        .finish();
    fx.assert_refused(&a, "hl-to-rel-symlink", "hl", "points outside");
    // A hard link whose target's parent is a symlink out.
    let a = ArchiveBuilder::new()
        .symlink("d", &out)
        .raw(EntryType::Link, b"hl", Some(b"d/victim"), b"")
        .finish();
    fx.assert_refused(&a, "hl-through-link", "hl", "is a symlink");
}

/// Fuzzing regression: a hard link naming itself (after a member of that name) unlinked its
/// own target and failed with ENOENT, an I/O error (500) for a quirk of the archive.
#[test]
fn a_hard_link_to_itself_keeps_the_member() {
    let fx = fixture();
    let a = ArchiveBuilder::new()
        .dir("etc", 0o755)
        .symlink("etc/loop", "loop")
        .hardlink("etc/loop", "etc/loop")
        .file("etc/f", 0o644, b"f")
        .hardlink("etc/f", "etc/f")
        .finish();
    let summary = fx.import(&a, "img").unwrap();
    let etc = summary.path.join("etc");
    assert_eq!(fs::read_link(etc.join("loop")).unwrap(), Path::new("loop"));
    // Naming itself with nothing there (not even its directory) is a bad entry, not I/O.
    let a = ArchiveBuilder::new().hardlink("d/e/f", "d/e/f").finish();
    match fx.import(&a, "self-link-nothing") {
        Err(NfsTreeError::BadEntry { entry, reason, .. }) => {
            assert_eq!(entry, "d/e/f");
            assert!(reason.contains("not in the archive before it"), "{reason}");
        }
        other => panic!("expected a bad entry, got {other:?}"),
    }
    assert_eq!(fs::read(etc.join("f")).unwrap(), b"f");
    assert_eq!(fs::metadata(etc.join("f")).unwrap().nlink(), 1);
}

#[test]
fn a_later_member_replaces_a_symlink_instead_of_following_it() {
    let fx = fixture();
    let victim = format!("{}/victim", fx.outside_str());
    let a = ArchiveBuilder::new()
        .symlink("s", &victim)
        .file("s", 0o644, b"replaced")
        .finish();
    let summary = fx.import(&a, "img").unwrap();
    let s = summary.path.join("s");
    assert!(fs::symlink_metadata(&s).unwrap().is_file());
    assert_eq!(fs::read(&s).unwrap(), b"replaced");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "original");
    // In-image links to a symlink that stays inside are fine.
    let a = ArchiveBuilder::new()
        .symlink("lib", "usr/lib")
        .raw(EntryType::Link, b"lib2", Some(b"lib"), b"")
        .finish();
    let summary = fx.import(&a, "img2").unwrap();
    assert_eq!(
        fs::read_link(summary.path.join("lib2")).unwrap(),
        Path::new("usr/lib")
    );
}

#[test]
fn truncated_archives_leave_no_image() {
    let fx = fixture();
    let tar = ArchiveBuilder::new()
        .file("a", 0o644, b"aaaa")
        .file("big", 0o644, &big_content())
        .finish();
    // Compressed, cut in the middle.
    for format in [ArchiveFormat::Gzip, ArchiveFormat::Xz, ArchiveFormat::Zstd] {
        let full = compress(format, &tar);
        let image = format!("cut-{}", format.as_str().replace('.', "-"));
        let err = fx.import(&full[..full.len() / 2], &image).unwrap_err();
        assert!(
            err.to_string().contains(&format!("{image}.archive")),
            "{format}: {err}"
        );
        fx.assert_nothing_published(&image);
        // Only the last bytes (checksum trailer) missing: caught as well.
        let err = fx.import(&full[..full.len() - 4], &image).unwrap_err();
        assert!(err.to_string().contains("archive"), "{format}: {err}");
        fx.assert_nothing_published(&image);
    }
    // Plain tar cut inside the big file's data.
    let err = fx
        .import(&tar[..tar.len() - 1024 - 4096], "cut-data")
        .unwrap_err();
    assert!(
        matches!(err, NfsTreeError::EntryIo { ref entry, .. } if entry == "big"),
        "{err}"
    );
    fx.assert_nothing_published("cut-data");
    // Plain tar cut exactly after a member: only the missing end-of-archive block shows it.
    let err = fx.import(&tar[..tar.len() - 1024], "cut-end").unwrap_err();
    assert!(err.to_string().contains("end-of-archive"), "{err}");
    fx.assert_nothing_published("cut-end");
}

#[test]
fn refuses_unsupported_archives_and_names() {
    let fx = fixture();
    let err = fx.import(b"BZh91AY&SY not really", "bz").unwrap_err();
    assert!(
        matches!(err, NfsTreeError::UnsupportedArchive { ref reason, .. } if reason.contains("bzip2")),
        "{err}"
    );
    fx.assert_nothing_published("bz");
    let err = fx.import(&[7u8; 4096], "junk").unwrap_err();
    assert!(
        matches!(err, NfsTreeError::UnsupportedArchive { .. }),
        "{err}"
    );
    fx.assert_nothing_published("junk");
    let tar = ArchiveBuilder::new().file("a", 0o644, b"a").finish();
    for bad in ["../evil", ".hidden", "a/b", ""] {
        let err = fx.import(&tar, bad).unwrap_err();
        assert!(
            matches!(err, NfsTreeError::InvalidImageName(_)),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(fs::read_dir(fx.tree.base_path()).unwrap().count(), 0);
    let err = fx
        .tree
        .import_base_image(&fx.tmp.path().join("missing.tar"), "m", &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("missing.tar"), "{err}");
}

#[test]
fn existing_names_are_refused_and_stale_temps_cleaned() {
    let fx = fixture();
    let base = fx.tree.base_path();
    // What a crashed import of "deb" left, and an unrelated one of "deb-extra".
    let stale = base.join(".import-deb-deadbeef");
    fs::create_dir_all(stale.join("etc")).unwrap();
    let other = base.join(".import-deb-extra-deadbeef");
    fs::create_dir(&other).unwrap();
    assert!(
        fx.tree.base_images().unwrap().is_empty(),
        "temporary directories are not images"
    );

    let tar = ArchiveBuilder::new()
        .file("etc/hostname", 0o644, b"one\n")
        .finish();
    fx.import(&tar, "deb").unwrap();
    assert!(!stale.exists(), "stale temp dir of the same name removed");
    assert!(other.exists(), "another name's temp dir left alone");
    assert_eq!(fx.tree.base_images().unwrap(), ["deb"]);

    let tar2 = ArchiveBuilder::new()
        .file("etc/hostname", 0o644, b"two\n")
        .finish();
    let err = fx.import(&tar2, "deb").unwrap_err();
    assert!(
        matches!(err, NfsTreeError::ImageExists { ref name, .. } if name == "deb"),
        "{err}"
    );
    assert_eq!(fs::read(base.join("deb/etc/hostname")).unwrap(), b"one\n");
}

#[test]
fn one_import_per_name_at_a_time() {
    let fx = fixture();
    let base = fx.tree.base_path();
    let base_fd = super::super::beneath::Dir::root(base, false).unwrap();
    let tar = ArchiveBuilder::new().file("a", 0o644, b"a").finish();
    {
        let _held = NameLock::acquire(base_fd.fd(), base, "deb").unwrap();
        let err = fx.import(&tar, "deb").unwrap_err();
        assert!(
            matches!(err, NfsTreeError::ImportInProgress(ref n) if n == "deb"),
            "{err}"
        );
        // Other names are not blocked.
        fx.import(&tar, "other").unwrap();
    }
    fx.import(&tar, "deb").unwrap();
    assert!(
        !base.join(".import-deb.lock").exists(),
        "lock file removed after the import"
    );
}

#[test]
fn remove_base_image_removes_only_that_image() {
    let fx = fixture();
    // A read-only directory with content: removal must cope with it (as non-root too).
    let tar = ArchiveBuilder::new()
        .dir("ro/", 0o555)
        .file("ro/f", 0o444, b"x")
        .finish();
    fx.import(&tar, "a").unwrap();
    fx.import(&ArchiveBuilder::new().file("f", 0o644, b"b").finish(), "b")
        .unwrap();
    assert!(fx.tree.remove_base_image("a").unwrap());
    assert!(!fx.tree.remove_base_image("a").unwrap());
    assert_eq!(fx.tree.base_images().unwrap(), ["b"]);
    assert!(matches!(
        fx.tree.remove_base_image("../b"),
        Err(NfsTreeError::InvalidImageName(_))
    ));
    fx.assert_nothing_published("a");
}

/// Throughput on a real archive (the benchmark's import figure): `PUREBOOT_IMPORT_ARCHIVE=<file> cargo test
/// --release -p pureboot-controller --lib import_throughput -- --ignored --nocapture`.
/// The tree lands under `PUREBOOT_IMPORT_DEST` (default: a temp dir) and is removed
/// afterwards unless `PUREBOOT_IMPORT_KEEP` is set (to compare it with GNU tar's).
#[test]
#[ignore = "needs PUREBOOT_IMPORT_ARCHIVE; a measurement, not a check"]
fn import_throughput() {
    let Some(archive) = std::env::var_os("PUREBOOT_IMPORT_ARCHIVE") else {
        eprintln!("SKIPPED import_throughput: set PUREBOOT_IMPORT_ARCHIVE to an archive file");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root =
        std::env::var_os("PUREBOOT_IMPORT_DEST").map_or(tmp.path().to_path_buf(), PathBuf::from);
    let tree = NfsTree::new(root);
    let name = format!("bench-{}", std::process::id());
    let s = tree
        .import_base_image(Path::new(&archive), &name, &mut |_| {})
        .unwrap();
    println!(
        "import {}: {} {} entries, {:.1} MB in {:.2} s = {:.1} MB/s",
        Path::new(&archive).display(),
        s.format,
        s.entries,
        s.bytes as f64 / 1e6,
        s.seconds,
        s.mb_per_second()
    );
    if std::env::var_os("PUREBOOT_IMPORT_KEEP").is_none() {
        tree.remove_base_image(&name).unwrap();
    } else {
        println!("kept {}", s.path.display());
    }
}

/// Everything that identifies an extracted tree, for comparing two extractions.
fn tree_listing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let link = fs::read_link(&path)
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let mut xattrs: Vec<String> = xattr::list(&path)
                .map(|names| {
                    names
                        .map(|n| {
                            format!(
                                "{}={:?}",
                                n.to_string_lossy(),
                                xattr::get(&path, &n).unwrap()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            xattrs.sort();
            let size = if m.is_dir() { 0 } else { m.len() };
            out.push(format!(
                "{rel} mode={:o} uid={} gid={} mtime={} size={size} rdev={} nlink={} link={link} xattrs={xattrs:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime(),
                m.rdev(),
                if m.is_dir() { 0 } else { m.nlink() },
            ));
            if m.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn gnu_tar_available(test: &str) -> bool {
    let out = std::process::Command::new("tar").arg("--version").output();
    let ok = out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"));
    if !ok {
        eprintln!("SKIPPED {test}: GNU tar not installed");
    }
    ok
}

/// A tree made on disk, archived by GNU tar (GNU and PAX formats), extracted by GNU tar
/// and by us: both trees must be the same in every listed attribute.
#[test]
fn matches_gnu_tar_extraction() {
    if !gnu_tar_available("matches_gnu_tar_extraction") {
        return;
    }
    let with_root_only = privileged("matches_gnu_tar_extraction");
    let fx = fixture();
    let src = fx.tmp.path().join("src");
    let long_dir = src
        .join("usr/share/a-directory-name-long-enough/to-need-gnu-long-names-or-pax-path-records");
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(
        long_dir.join("and-a-long-file-name-as-well-so-the-whole-path-is-past-100.txt"),
        "long",
    )
    .unwrap();
    fs::create_dir_all(src.join("etc/ssl")).unwrap();
    fs::write(src.join("etc/ssl/key"), "k").unwrap();
    fs::set_permissions(src.join("etc/ssl/key"), fs::Permissions::from_mode(0o400)).unwrap();
    fs::set_permissions(src.join("etc/ssl"), fs::Permissions::from_mode(0o710)).unwrap();
    fs::write(src.join("etc/su"), "su").unwrap();
    fs::set_permissions(src.join("etc/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(src.join("etc/su"), src.join("etc/su2")).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/systemd", src.join("init")).unwrap();
    std::os::unix::fs::symlink("usr/share", src.join("share")).unwrap();
    fs::write(src.join("ping"), "ping").unwrap();
    xattr::set(src.join("ping"), "user.pureboot", b"yes").unwrap();
    let fifo = fsops::cstring(src.join("fifo").as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    if with_root_only {
        xattr::set(src.join("ping"), "security.capability", CAP_NET_RAW).unwrap();
        let dev = fsops::cstring(src.join("null").as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(
            unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) },
            0
        );
        std::os::unix::fs::lchown(src.join("etc/ssl/key"), Some(101), Some(102)).unwrap();
    }

    for (i, format) in ["--format=gnu", "--format=posix"].iter().enumerate() {
        let archive = fx.tmp.path().join(format!("gnu-{i}.tar"));
        let mut create = std::process::Command::new("tar");
        create
            .arg(format)
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg(".");
        if *format == "--format=posix" {
            create.args(["--xattrs", "--xattrs-include=*"]);
        }
        assert!(create.status().unwrap().success());
        let by_gnu = fx.tmp.path().join(format!("by-gnu-{i}"));
        fs::create_dir(&by_gnu).unwrap();
        let extracted = std::process::Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(&by_gnu)
            .status()
            .unwrap();
        assert!(extracted.success());
        let ours = fx
            .tree
            .import_base_image_with(&archive, &format!("gnu-{i}"), &TRUSTED, &mut |_| {})
            .unwrap();
        let (expected, got) = (tree_listing(&by_gnu), tree_listing(&ours.path));
        assert!(expected.len() >= 15, "{expected:#?}");
        assert_eq!(got, expected, "{format}");
        let root_mode = |p: &Path| fs::metadata(p).unwrap().mode();
        assert_eq!(
            root_mode(&ours.path),
            root_mode(&by_gnu),
            "image root from the ./ entry"
        );
    }
}

#[test]
fn keeps_gnu_sparse_files_and_refuses_pax_sparse_ones() {
    if !gnu_tar_available("keeps_gnu_sparse_files_and_refuses_pax_sparse_ones") {
        return;
    }
    let fx = fixture();
    let src = fx.tmp.path().join("sparse-src");
    fs::create_dir(&src).unwrap();
    let disk = fs::File::create(src.join("disk.img")).unwrap();
    disk.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&disk, b"data in the middle", 4 << 20).unwrap();
    drop(disk);
    let expected = fs::read(src.join("disk.img")).unwrap();

    let tar = |format: &str, out: &str| {
        let archive = fx.tmp.path().join(out);
        let ok = std::process::Command::new("tar")
            .args(["-S", format, "-cf"])
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("disk.img")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar {format}");
        archive
    };
    let gnu = tar("--format=gnu", "sparse-gnu.tar");
    let s = fx
        .tree
        .import_base_image(&gnu, "sparse", &mut |_| {})
        .unwrap();
    let got = s.path.join("disk.img");
    assert_eq!(fs::read(&got).unwrap(), expected);
    let blocks = fs::metadata(&got).unwrap().blocks() * 512;
    assert!(
        blocks < 1 << 20,
        "holes kept: {blocks} bytes allocated for 8 MiB"
    );

    let pax = tar("--format=posix", "sparse-pax.tar");
    let err = fx
        .tree
        .import_base_image(&pax, "sparse-pax", &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(err, NfsTreeError::BadEntry { ref reason, .. } if reason.contains("sparse")),
        "{err}"
    );
    fx.assert_nothing_published("sparse-pax");
}

/// The squashfs format: one file and its digest in base/<name>/, the tree inside it, no
/// temporary directory left; a failed import leaves nothing.
#[test]
fn a_squashfs_import_is_one_file_holding_the_tree_and_its_digest() {
    use super::squashfs::{contains, BaseFormat};
    use pureboot_contract::layout::{SQUASHFS_DIGEST, SQUASHFS_IMAGE};
    if std::process::Command::new("mksquashfs")
        .arg("-version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED a_squashfs_import_is_one_file_holding_the_tree_and_its_digest: no mksquashfs (tests/setup.sh installs squashfs-tools)");
        return;
    }
    let fx = fixture();
    let a = ArchiveBuilder::new()
        .dir("./", 0o755)
        .dir("./sbin/", 0o755)
        .file("./sbin/init", 0o755, b"#!/bin/sh\n")
        .symlink("./lib", "usr/lib")
        .dir("./usr/", 0o755)
        .dir("./usr/lib/", 0o755)
        .dir("./usr/lib/systemd/", 0o755)
        .file("./usr/lib/systemd/systemd", 0o755, b"\x7fELF")
        .finish();
    let path = fx.tmp.path().join("sq.archive");
    fs::write(&path, &a).unwrap();
    let options = ImportOptions {
        format: BaseFormat::Squashfs,
        ..ImportOptions::default()
    };
    let summary = fx
        .tree
        .import_base_image_with(&path, "sq", &options, &mut |_| {})
        .unwrap();
    let dir = fx.tree.base_path().join("sq");
    let mut held: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    held.sort();
    assert_eq!(held, [SQUASHFS_IMAGE, SQUASHFS_DIGEST]);
    let image = dir.join(SQUASHFS_IMAGE);
    let packed = summary.squashfs.expect("the packed file in the summary");
    assert_eq!(packed.bytes, fs::metadata(&image).unwrap().len());
    assert_eq!(&fs::read(&image).unwrap()[..4], b"hsqs", "squashfs magic");
    let digest = fs::read_to_string(dir.join(SQUASHFS_DIGEST)).unwrap();
    assert_eq!(digest, format!("{}  {SQUASHFS_IMAGE}\n", packed.sha256));
    let sum = std::process::Command::new("sha256sum")
        .arg(&image)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sum.stdout).starts_with(&packed.sha256));
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o755,
        "readable by the NFS server's clients"
    );
    assert!(contains(&image, &["sbin/init"]).unwrap());
    assert!(contains(&image, &["lib/systemd/systemd", "usr/lib/systemd/systemd"]).unwrap());
    assert!(!contains(&image, &["bin/nothing"]).unwrap());
    assert_eq!(fx.tree.base_images().unwrap(), ["sq"]);
    fx.assert_nothing_published("absent");

    // A broken archive: nothing published, neither the tree nor a half-packed file.
    fs::write(&path, &a[..a.len() - 1024]).unwrap();
    let e = fx
        .tree
        .import_base_image_with(&path, "broken", &options, &mut |_| {});
    assert!(e.is_err());
    fx.assert_nothing_published("broken");
}
