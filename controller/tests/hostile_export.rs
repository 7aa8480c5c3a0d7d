//! The export against the clients that write it: a Pi is root on the NFS export, so it (or
//! anyone the export rules let in) can plant symlinks, fifos or device nodes in any node's
//! tree. Each test plants one, then drives the controller as an operator and a Pi would
//! (node add, boot request, node detail, overlay info and reset), and checks that nothing
//! outside the export was written or read. Also the modes the controller gives node trees
//! and imported images, the import's size limit and image names that look like options.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cli, spawn_app, TestApp, TOKEN};
use pureboot_contract::ids::Serial;
use serde_json::{json, Value};

const SERIAL: &str = "d83add36";
const SECRET: &str = "TOP-SECRET-0600-CONTENT";

/// A directory outside the export, holding a 0600 secret; what it must stay.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, SECRET).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        Outside { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn secret(&self) -> PathBuf {
        self.dir.path().join("secret")
    }

    /// Only the secret, unchanged, and nothing else.
    fn assert_untouched(&self, what: &str) {
        let names: Vec<String> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["secret"], "{what}: written outside the export");
        assert_eq!(
            fs::read_to_string(self.secret()).unwrap(),
            SECRET,
            "{what}: the secret outside changed"
        );
        assert_eq!(
            fs::metadata(self.secret()).unwrap().mode() & 0o7777,
            0o600,
            "{what}: the secret's mode changed"
        );
    }
}

fn node_dir(app: &TestApp) -> PathBuf {
    app.nfs_root().join("nodes").join(SERIAL)
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn have_mkfs() -> bool {
    let found = common::which("mkfs.ext4").is_some();
    if !found {
        eprintln!("SKIPPED persist.img part: no mkfs.ext4 (e2fsprogs)");
    }
    found
}

fn add(app: &TestApp, overlay: &str) -> (u16, Value) {
    app.admin(
        "POST",
        "/api/v1/nodes",
        Some(&json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs", "overlay_mode": overlay})),
    )
}

fn boot(app: &TestApp) -> (u16, Value) {
    app.boot(&format!("serial={SERIAL}"))
}

/// A node added (its tree prepared ahead) beside a directory outside the export.
fn added(overlay: &str) -> (TestApp, Outside) {
    let app = spawn_app();
    let (status, body) = add(&app, overlay);
    assert_eq!(status, 201, "{body}");
    (app, Outside::new())
}

/// The operator's view of the node returns nothing from outside the export.
fn assert_detail_hides(app: &TestApp, outside: &Outside) {
    let (status, body) = app.admin_get(&format!("/api/v1/nodes/{SERIAL}"));
    assert!(
        !body.to_string().contains(SECRET),
        "GET /api/v1/nodes/{SERIAL} returned a file outside the export through a link: {status} {body}"
    );
    outside.assert_untouched("node detail");
}

#[test]
fn a_node_directory_planted_as_a_symlink_is_never_written_through() {
    let app = spawn_app();
    let outside = Outside::new();
    let nodes = app.nfs_root().join("nodes");
    fs::create_dir_all(&nodes).unwrap();
    symlink(outside.path(), nodes.join(SERIAL)).unwrap();

    let overlay = if have_mkfs() { "image" } else { "tmpfs" };
    // The tree is prepared ahead at add, and again at the boot request.
    let (status, body) = add(&app, overlay);
    assert_eq!(status, 201, "{body}");
    outside.assert_untouched("node add");
    let (status, body) = boot(&app);
    assert_ne!(status, 200, "a boot answered over a planted link: {body}");
    outside.assert_untouched("boot request");
    assert_detail_hides(&app, &outside);
    assert!(
        fs::symlink_metadata(nodes.join(SERIAL))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the planted link is left for the operator to see"
    );
}

#[test]
fn a_planted_upper_etc_link_is_never_written_through() {
    let (app, outside) = added("tmpfs");
    let etc = node_dir(&app).join("upper/etc");
    assert!(etc.join("hostname").is_file(), "tree prepared at add");
    fs::remove_dir_all(&etc).unwrap();
    symlink(outside.path(), &etc).unwrap();

    let (status, body) = boot(&app);
    assert_ne!(status, 200, "a boot answered over a planted link: {body}");
    outside.assert_untouched("boot request");
    assert_detail_hides(&app, &outside);
}

#[test]
fn a_planted_hostname_link_is_never_read_or_written_through() {
    let (app, outside) = added("tmpfs");
    let hostname = node_dir(&app).join("upper/etc/hostname");
    fs::remove_file(&hostname).unwrap();
    symlink(outside.secret(), &hostname).unwrap();

    // The operator's view of the node: the file behind the link must not come back.
    assert_detail_hides(&app, &outside);
    let info = app.services.overlay_info(&Serial::parse(SERIAL).unwrap());
    let shown = format!("{info:?}");
    assert!(
        !shown.contains(SECRET),
        "overlay info read through the link: {shown}"
    );

    // A boot rewrites the file: the link is replaced, its target left alone.
    let (status, body) = boot(&app);
    assert_eq!(status, 200, "{body}");
    outside.assert_untouched("boot request");
    assert!(
        fs::symlink_metadata(&hostname).unwrap().is_file(),
        "the link replaced by the node's own file"
    );
}

#[test]
fn a_planted_persist_img_link_is_never_read_or_written_through() {
    if !have_mkfs() {
        return;
    }
    let (app, outside) = added("image");
    let image = node_dir(&app).join("persist.1.img");
    assert!(image.is_file(), "persist.1.img made at add");
    fs::remove_file(&image).unwrap();
    symlink(outside.secret(), &image).unwrap();
    let serial = Serial::parse(SERIAL).unwrap();

    // Inspecting it reads nothing through the link: an error naming it.
    let err = app.services.overlay_info(&serial).unwrap_err().to_string();
    assert!(err.contains("persist.1.img"), "{err}");
    let (_, body) = boot(&app);
    outside.assert_untouched("boot request");
    assert!(!body.to_string().contains(SECRET), "{body}");

    // The operator's reset moves the link aside as itself and makes a real image.
    let moved = app.services.reset_persist_image(&serial).unwrap().unwrap();
    outside.assert_untouched("overlay reset");
    assert!(fs::symlink_metadata(&moved)
        .unwrap()
        .file_type()
        .is_symlink());
    let fresh = node_dir(&app).join("persist.2.img");
    assert!(fs::symlink_metadata(&fresh).unwrap().is_file());
    assert_eq!(mode(&fresh), 0o600);
}

#[test]
fn node_trees_are_private_to_the_node() {
    let app = spawn_app();
    let overlay = if have_mkfs() { "image" } else { "tmpfs" };
    let (status, body) = add(&app, overlay);
    assert_eq!(status, 201, "{body}");
    let node = node_dir(&app);
    assert_eq!(mode(&node), 0o700, "nodes/<serial>");
    assert_eq!(mode(&node.join("upper")), 0o755, "the merged root's mode");
    assert_eq!(mode(&node.join("upper/etc/hostname")), 0o644);
    if overlay == "image" {
        assert_eq!(mode(&node.join("persist.1.img")), 0o600, "persist.1.img");
    }
    // An older controller's 0755 node directory is narrowed at the next boot.
    fs::set_permissions(&node, fs::Permissions::from_mode(0o755)).unwrap();
    let (status, body) = boot(&app);
    assert_eq!(status, 200, "{body}");
    assert_eq!(mode(&node), 0o700);
}

// --- image import through the CLI ------------------------------------------------------

fn config_file(app: &TestApp) -> PathBuf {
    let c = &app.config;
    let path = app.dir.path().join("controller.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nworkflows_dir = \"{}\"\nadmin_token = \"{TOKEN}\"\n[nfs]\nroot_path = \"{}\"\ndefault_base_image = \"debian-arm64\"\n",
        c.database.display(),
        c.workflows_dir.display(),
        c.nfs.root_path.display()
    );
    fs::write(&path, text).unwrap();
    path
}

fn header(kind: tar::EntryType, path: &str, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_path(path).unwrap();
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// A root that asks for too much: itself 0777, a world-writable file, a set-uid and a
/// set-gid binary, a device node, and a sticky /tmp.
fn hostile_root_archive(dir: &Path) -> PathBuf {
    let path = dir.join("hostile-root.tar");
    let mut b = tar::Builder::new(fs::File::create(&path).unwrap());
    use tar::EntryType::*;
    for (kind, name, mode, data) in [
        (Directory, "./", 0o777, &b""[..]),
        (Directory, "./usr/", 0o777, b""),
        (Directory, "./usr/bin/", 0o755, b""),
        (Regular, "./usr/bin/su", 0o4755, b"su"),
        (Regular, "./usr/bin/wall", 0o2755, b"wall"),
        (Regular, "./etc-motd", 0o666, b"hello"),
        (Directory, "./tmp/", 0o1777, b""),
        (Directory, "./dev/", 0o755, b""),
    ] {
        let h = header(kind, name, mode, data.len() as u64);
        b.append(&h, data).unwrap();
    }
    let mut dev = header(Char, "./dev/null", 0o666, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    dev.set_cksum();
    b.append(&dev, &b""[..]).unwrap();
    b.into_inner().unwrap();
    path
}

fn run_ok(config: &Path, args: &[&str]) {
    let out = cli(config, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn imported_images_are_not_writable_by_others_and_drop_devices_and_setuid_unless_asked() {
    let app = spawn_app();
    let config = config_file(&app);
    let archive = hostile_root_archive(app.dir.path());
    let a = archive.display().to_string();
    let base = app.nfs_root().join("base");

    run_ok(&config, &["image", "import", &a, "plain"]);
    let img = base.join("plain");
    assert_eq!(mode(&img), 0o755, "the image root, 0777 in the archive");
    assert_eq!(mode(&img.join("usr")), 0o755, "a 0777 directory");
    assert_eq!(mode(&img.join("etc-motd")), 0o644, "a 0666 file");
    assert_eq!(mode(&img.join("usr/bin/su")), 0o755, "set-uid cleared");
    assert_eq!(mode(&img.join("usr/bin/wall")), 0o755, "set-gid cleared");
    assert_eq!(
        mode(&img.join("tmp")),
        0o1777,
        "a sticky directory stays shared"
    );
    assert!(
        !img.join("dev/null").exists(),
        "no device node without --keep-devices"
    );
    assert_eq!(mode(&base), 0o755);

    run_ok(
        &config,
        &[
            "image",
            "import",
            &a,
            "trusted",
            "--keep-devices",
            "--keep-setuid",
        ],
    );
    let img = base.join("trusted");
    assert_eq!(mode(&img), 0o755, "the root is masked whatever the flags");
    assert_eq!(mode(&img.join("etc-motd")), 0o644);
    assert_eq!(mode(&img.join("usr/bin/su")), 0o4755, "--keep-setuid");
    assert_eq!(mode(&img.join("usr/bin/wall")), 0o2755, "--keep-setuid");
    if is_root() {
        let null = fs::symlink_metadata(img.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device(), "--keep-devices");
    }
}

fn is_root() -> bool {
    // The test process's real uid, as /proc tells it.
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

/// A GNU tar archive of a file that declares `size` bytes and holds none (a hole).
fn sparse_archive(dir: &Path, size: &str) -> Option<PathBuf> {
    let src = dir.join(format!("sparse-src-{size}"));
    fs::create_dir_all(&src).unwrap();
    let ok = Command::new("truncate")
        .args(["-s", size])
        .arg(src.join("hole"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: truncate -s {size} failed");
        return None;
    }
    let tar = dir.join(format!("sparse-{size}.tar"));
    let ok = Command::new("tar")
        .args(["--format=gnu", "-S", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .is_ok_and(|s| s.success());
    fs::remove_dir_all(&src).unwrap();
    if !ok {
        eprintln!("SKIPPED: GNU tar -S failed");
        return None;
    }
    Some(tar)
}

#[test]
fn a_small_archive_declaring_a_huge_sparse_file_is_refused_fast() {
    let app = spawn_app();
    let config = config_file(&app);
    let Some(archive) = sparse_archive(app.dir.path(), "100G") else {
        return;
    };
    assert!(
        fs::metadata(&archive).unwrap().len() < 64 * 1024,
        "a small archive"
    );
    let started = Instant::now();
    let out = cli(
        &config,
        &["image", "import", &archive.display().to_string(), "huge"],
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 100 GiB sparse file was imported");
    assert!(
        stderr.contains("import limit") && stderr.contains("hole"),
        "the error names the limit and the member: {stderr}"
    );
    assert!(
        took < Duration::from_secs(10),
        "refused only after {took:?}"
    );
    assert!(!app.nfs_root().join("base/huge").exists());
}

#[test]
fn the_import_limit_is_the_operators_to_set() {
    let app = spawn_app();
    let config = config_file(&app);
    let Some(archive) = sparse_archive(app.dir.path(), "2M") else {
        return;
    };
    let a = archive.display().to_string();
    let out = cli(
        &config,
        &["image", "import", &a, "small", "--max-size", "1M"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("over the import limit of 1048576 bytes"),
        "{stderr}"
    );
    run_ok(
        &config,
        &["image", "import", &a, "small", "--max-size", "3M"],
    );
    let out = cli(&config, &["image", "import", &a, "zero", "--max-size", "0"]);
    assert!(!out.status.success(), "a limit of 0 is refused");
}

#[test]
fn image_names_that_look_like_options_are_refused() {
    let app = spawn_app();
    let config = config_file(&app);
    let archive = hostile_root_archive(app.dir.path());
    let a = archive.display().to_string();
    for name in ["-rf", "--help", "_x"] {
        let out = cli(&config, &["image", "import", &a, "--", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: imported");
        assert!(
            stderr.contains("invalid base image name"),
            "{name}: {stderr}"
        );
        assert!(!app.nfs_root().join("base").join(name).exists(), "{name}");
    }
}

#[test]
fn a_base_directory_planted_as_a_symlink_is_neither_listed_nor_removed_through() {
    let app = spawn_app();
    let config = config_file(&app);
    let outside = Outside::new();
    fs::create_dir(outside.path().join("victim-image")).unwrap();
    let base = app.nfs_root().join("base");
    let _ = fs::remove_dir(&base); // made empty at start
    symlink(outside.path(), &base).unwrap();

    let out = cli(&config, &["--json", "image", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        !listed.contains("victim-image"),
        "listed through the link: {listed}"
    );
    let out = cli(&config, &["image", "rm", "victim-image"]);
    assert!(!out.status.success(), "removed through the link");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symlink"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        outside.path().join("victim-image").is_dir(),
        "the outside directory stays"
    );
    let archive = hostile_root_archive(app.dir.path());
    let out = cli(
        &config,
        &["image", "import", &archive.display().to_string(), "new"],
    );
    assert!(!out.status.success(), "imported through the link");
    assert!(!outside.path().join("new").exists());
}
