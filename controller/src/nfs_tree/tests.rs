//! The node tree, base image listing and the persist image, on a real temporary export.
//! Import tests live in `import/tests.rs`.

use std::fs;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use super::error::NfsTreeError;
use super::node::NodeFiles;
use super::*;
use pureboot_contract::ids::{MachineId, Serial};

fn tree(tmp: &TempDir) -> NfsTree {
    let t = NfsTree::new(tmp.path());
    t.ensure_directories().unwrap();
    t
}

fn files(hostname: Option<&str>) -> NodeFiles {
    NodeFiles {
        hostname: hostname.map(str::to_string),
        machine_id: MachineId::derived_from("test"),
    }
}

fn serial(s: &str) -> Serial {
    Serial::parse(s).unwrap()
}

/// TestNFSManagerOverlay's fixture: a base image with bin/ and etc/.
fn tree_with_base(tmp: &TempDir) -> NfsTree {
    let t = tree(tmp);
    let base = t.base_path().join("ubuntu-arm64");
    fs::create_dir_all(base.join("bin")).unwrap();
    fs::create_dir_all(base.join("etc")).unwrap();
    t
}

// --- TestNFSManagerInit ---

#[test]
fn init_with_defaults() {
    let tmp = TempDir::new().unwrap();
    let t = NfsTree::new(tmp.path());
    assert_eq!(t.root(), tmp.path());
    assert_eq!(t.base_path(), tmp.path().join("base"));
    assert_eq!(t.nodes_path(), tmp.path().join("nodes"));
    assert!(!t.base_path().exists(), "construction touches nothing");
}

// --- TestNFSManagerDirectories ---

#[test]
fn ensure_directories_creates_structure() {
    let tmp = TempDir::new().unwrap();
    let t = NfsTree::new(tmp.path().join("srv/nfs"));
    t.ensure_directories().unwrap();
    assert!(t.base_path().is_dir());
    assert!(t.nodes_path().is_dir());
    t.ensure_directories().unwrap();
}

#[test]
fn get_node_path() {
    let tmp = TempDir::new().unwrap();
    let t = tree(&tmp);
    assert_eq!(
        t.node_path(&serial("d83add36")),
        t.nodes_path().join("d83add36")
    );
}

#[test]
fn get_node_path_normalizes_case() {
    let tmp = TempDir::new().unwrap();
    let t = tree(&tmp);
    assert_eq!(
        t.node_path(&serial("D83ADD36")),
        t.nodes_path().join("d83add36")
    );
}

// --- TestNFSManagerOverlay ---

#[test]
fn create_node_tree() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_base(&tmp);
    let dir = t
        .create_node_tree(&serial("d83add36"), &files(None))
        .unwrap();
    let node = t.nodes_path().join("d83add36");
    assert_eq!(dir, node);
    assert!(node.join("upper").is_dir());
    assert!(node.join("work").is_dir());
    assert!(
        !node.join("merged").exists(),
        "nothing mounts a merged/ there"
    );
    // Default hostname, as pi-init's: pi-<serial>.
    assert_eq!(
        fs::read_to_string(node.join("upper/etc/hostname")).unwrap(),
        "pi-d83add36\n"
    );
}

#[test]
fn create_node_tree_sets_hostname() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_base(&tmp);
    t.create_node_tree(&serial("d83add36"), &files(Some("test-pi")))
        .unwrap();
    let hostname = t.nodes_path().join("d83add36/upper/etc/hostname");
    assert_eq!(fs::read_to_string(hostname).unwrap().trim(), "test-pi");
}

#[test]
fn create_node_tree_writes_machine_id() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_base(&tmp);
    let f = files(None);
    t.create_node_tree(&serial("D83ADD36"), &f).unwrap();
    let written = fs::read_to_string(t.nodes_path().join("d83add36/upper/etc/machine-id")).unwrap();
    let id = written.trim();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    // The registry's id, not a fresh one: stable across re-creation.
    assert_eq!(id, f.machine_id.as_str());
    t.create_node_tree(&serial("d83add36"), &f).unwrap();
    let again = fs::read_to_string(t.nodes_path().join("d83add36/upper/etc/machine-id")).unwrap();
    assert_eq!(again, written);
}

#[test]
fn a_node_tree_does_not_need_its_base() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_base(&tmp);
    // The base may be imported after the node boots the first time.
    t.create_node_tree(&serial("d83add36"), &files(None))
        .unwrap();
    assert!(t.nodes_path().join("d83add36/upper/etc/hostname").is_file());
    let err = t.existing_base_image("nonexistent").unwrap_err();
    assert!(
        matches!(err, NfsTreeError::BaseImageNotFound { ref name, .. } if name == "nonexistent")
    );
    assert!(err.to_string().contains("Base image not found"), "{err}");
}

#[test]
fn create_node_tree_refuses_bad_input() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_base(&tmp);
    assert!(matches!(
        t.base_image_path("../base"),
        Err(NfsTreeError::InvalidImageName(_))
    ));
    for bad in ["bad/host", "bad_host", "-x"] {
        assert!(matches!(
            t.create_node_tree(&serial("d83add36"), &files(Some(bad))),
            Err(NfsTreeError::InvalidHostname(_))
        ));
    }
}

#[test]
fn delete_node_overlay() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_base(&tmp);
    t.create_node_tree(&serial("d83add36"), &files(None))
        .unwrap();
    assert!(t.delete_node_overlay(&serial("d83add36")).unwrap());
    assert!(!t.nodes_path().join("d83add36").exists());
    assert!(
        t.base_path().join("ubuntu-arm64/bin").is_dir(),
        "the base is untouched"
    );
}

#[test]
fn delete_nonexistent_overlay() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_base(&tmp);
    assert!(!t.delete_node_overlay(&serial("00000000")).unwrap());
}

// --- TestNFSManagerInfo ---

fn tree_with_two_bases(tmp: &TempDir) -> NfsTree {
    let t = tree(tmp);
    fs::create_dir(t.base_path().join("ubuntu-arm64")).unwrap();
    fs::create_dir(t.base_path().join("alpine-arm64")).unwrap();
    t
}

#[test]
fn get_base_images() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_two_bases(&tmp);
    // Not images: a plain file, a hidden temp dir, a symlink to a directory.
    fs::write(t.base_path().join("README"), "x").unwrap();
    fs::create_dir(t.base_path().join(".import-debian-0badf00d")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), t.base_path().join("link")).unwrap();
    assert_eq!(t.base_images().unwrap(), ["alpine-arm64", "ubuntu-arm64"]);
}

#[test]
fn get_base_images_without_base_dir() {
    let tmp = TempDir::new().unwrap();
    let t = NfsTree::new(tmp.path().join("absent"));
    assert!(t.base_images().unwrap().is_empty());
}

#[test]
fn get_node_info_exists() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_two_bases(&tmp);
    fs::create_dir_all(t.base_path().join("ubuntu-arm64/bin")).unwrap();
    let f = files(Some("my-pi"));
    t.create_node_tree(&serial("d83add36"), &f).unwrap();
    let info = t
        .node_info(&serial("D83ADD36"))
        .unwrap()
        .expect("node info");
    assert_eq!(info.serial.as_str(), "d83add36");
    assert_eq!(info.hostname.as_deref(), Some("my-pi"));
    assert_eq!(info.machine_id.as_deref(), Some(f.machine_id.as_str()));
    assert_eq!(info.path, t.nodes_path().join("d83add36"));
    assert_eq!(info.upper_dir, info.path.join("upper"));
    assert!(!info.has_persist_image);
}

#[test]
fn get_node_info_not_found() {
    let tmp = TempDir::new().unwrap();
    let t = tree_with_two_bases(&tmp);
    assert_eq!(t.node_info(&serial("00000000")).unwrap(), None);
}

// --- persist.img ---

fn tool(name: &str) -> Command {
    for dir in ["/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Command::new(p);
        }
    }
    Command::new(name)
}

#[test]
fn persist_image_is_ext4_with_upper_and_work() {
    let tmp = TempDir::new().unwrap();
    let t = tree(&tmp);
    let image = t.create_persist_image(&serial("D83ADD36"), 32).unwrap();
    // A first image is a generation of its own: no earlier file ever had its name.
    assert_eq!(image, t.nodes_path().join("d83add36/persist.1.img"));
    let meta = fs::metadata(&image).unwrap();
    assert_eq!(meta.len(), 32 << 20);
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < meta.len(),
        "sparse: {} blocks",
        meta.blocks()
    );

    let header = tool("dumpe2fs").arg("-h").arg(&image).output().unwrap();
    let header = String::from_utf8_lossy(&header.stdout);
    assert!(
        header.contains("Filesystem magic number:  0xEF53"),
        "{header}"
    );
    assert!(
        header.contains("Filesystem volume name:   pb-d83add36"),
        "{header}"
    );
    let ls = tool("debugfs")
        .arg("-R")
        .arg("ls -l /")
        .arg(&image)
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    for dir in ["upper", "work"] {
        assert!(
            ls.lines()
                .any(|l| l.trim_end().ends_with(&format!(" {dir}")) && l.contains("40755")),
            "{dir} in:\n{ls}"
        );
    }
    // No temporary files left next to it.
    let names: Vec<_> = fs::read_dir(image.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["persist.1.img"]);
    assert!(
        t.node_info(&serial("d83add36"))
            .unwrap()
            .unwrap()
            .has_persist_image
    );
}

#[test]
fn persist_image_is_never_replaced() {
    let tmp = TempDir::new().unwrap();
    let t = tree(&tmp);
    let image = t.create_persist_image(&serial("d83add36"), 16).unwrap();
    fs::write(&image, b"a node's data").unwrap();
    assert_eq!(
        t.create_persist_image(&serial("d83add36"), 64).unwrap(),
        image
    );
    assert_eq!(fs::read(&image).unwrap(), b"a node's data");
    assert!(matches!(
        t.create_persist_image(&serial("d83add36"), 1),
        Err(NfsTreeError::InvalidPersistSize(1))
    ));
}

/// `dumpe2fs -h`'s header of an image.
fn ext4_header(image: &Path) -> String {
    let out = tool("dumpe2fs").arg("-h").arg(image).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_node_from_before_generations_keeps_its_persist_img() {
    let tmp = TempDir::new().unwrap();
    let t = tree(&tmp);
    let node = t.nodes_path().join("d83add36");
    fs::create_dir_all(&node).unwrap();
    fs::write(node.join("persist.img"), b"an older controller's image").unwrap();
    let s = serial("d83add36");
    assert_eq!(
        t.create_persist_image(&s, 16).unwrap(),
        node.join("persist.img")
    );
    assert_eq!(
        t.node_info(&s).unwrap().unwrap().persist_image,
        node.join("persist.img")
    );
    // Set aside, it makes way for generation 1, never for a new persist.img.
    let moved = t.set_aside_persist_image(&s, 16).unwrap().unwrap();
    let moved = moved.file_name().unwrap().to_str().unwrap().to_string();
    assert!(moved.starts_with("persist.img.broken-"), "{moved}");
    assert!(!node.join("persist.img").exists());
    let info = t.node_info(&s).unwrap().unwrap();
    assert_eq!(info.persist_image, node.join("persist.1.img"));
    assert!(info.has_persist_image);
    assert!(ext4_header(&info.persist_image).contains("0xEF53"));
}

#[test]
fn every_fresh_persist_image_has_a_name_no_earlier_one_had() {
    let tmp = TempDir::new().unwrap();
    let t = tree(&tmp);
    let s = serial("d83add36");
    let mut seen = vec![t.create_persist_image(&s, 16).unwrap()];
    for _ in 0..3 {
        t.set_aside_persist_image(&s, 16).unwrap().unwrap();
        let fresh = t.create_persist_image(&s, 16).unwrap();
        assert!(!seen.contains(&fresh), "{fresh:?} reused");
        seen.push(fresh);
    }
    let names: Vec<_> = seen
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "persist.1.img",
            "persist.2.img",
            "persist.3.img",
            "persist.4.img"
        ]
    );
    let aside = t.set_aside_persist_images(&s).unwrap();
    assert_eq!(aside.len(), 3);
    assert!(aside[0]
        .to_str()
        .unwrap()
        .contains("/persist.1.img.broken-"));
    assert!(aside[2]
        .to_str()
        .unwrap()
        .contains("/persist.3.img.broken-"));
    // The images set aside removed (an operator cleaning up): the current one stays.
    for p in &aside {
        fs::remove_file(p).unwrap();
    }
    assert_eq!(
        t.create_persist_image(&s, 16).unwrap().file_name().unwrap(),
        "persist.4.img"
    );
}

#[test]
fn volumes_are_empty_ext4_images_named_after_their_path() {
    use pureboot_contract::volumes::VolumePath;
    let tmp = TempDir::new().unwrap();
    let t = tree(&tmp);
    let s = serial("d83add36");
    let rancher = VolumePath::parse("/var/lib/rancher").unwrap();
    let name = t.create_volume_image(&s, &rancher, 64).unwrap();
    assert_eq!(name, "var-lib-rancher.1.img");
    let file = t
        .nodes_path()
        .join("d83add36/volumes/var-lib-rancher.1.img");
    let meta = fs::metadata(&file).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((meta.len(), meta.mode() & 0o777), (64 << 20, 0o600));
    assert!(meta.blocks() * 512 < meta.len(), "sparse");
    let dir_mode = fs::metadata(file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let header = ext4_header(&file);
    assert!(header.contains("0xEF53"), "{header}");
    assert!(
        header.contains("Filesystem volume name:   pbv-d83add36"),
        "{header}"
    );
    // Made once: the next call finds it, whatever size it asks.
    fs::write(&file, b"the node's data").unwrap();
    assert_eq!(t.create_volume_image(&s, &rancher, 128).unwrap(), name);
    assert_eq!(fs::read(&file).unwrap(), b"the node's data");
    assert!(matches!(
        t.volume_image_state(&s, &rancher).unwrap(),
        super::images::ImageState::Broken(_)
    ));
    // Repaired: set aside, and a new generation under a new name.
    let (moved, fresh) = t.set_aside_volume_image(&s, &rancher, 32).unwrap();
    assert!(moved
        .unwrap()
        .to_str()
        .unwrap()
        .contains("volumes/var-lib-rancher.1.img.broken-"));
    assert_eq!(fresh, "var-lib-rancher.2.img");
    assert_eq!(
        t.volume_image_state(&s, &rancher).unwrap(),
        super::images::ImageState::Ext4
    );
    let db = VolumePath::parse("/srv/db-data").unwrap();
    assert_eq!(
        t.create_volume_image(&s, &db, 16).unwrap(),
        "srv-db--data.1.img"
    );
    let listed: Vec<(String, String)> = t
        .node_info(&s)
        .unwrap()
        .unwrap()
        .volumes
        .into_iter()
        .map(|v| (v.path.to_string(), v.image))
        .collect();
    assert_eq!(
        listed,
        [
            ("/srv/db-data".to_string(), "srv-db--data.1.img".to_string()),
            ("/var/lib/rancher".into(), "var-lib-rancher.2.img".into()),
        ]
    );
    assert_eq!(t.set_aside_volume_images(&s).unwrap().len(), 1);
    assert!(matches!(
        t.create_volume_image(&s, &db, 1),
        Err(NfsTreeError::InvalidPersistSize(1))
    ));
}

#[test]
fn a_symlink_in_place_of_a_volume_image_is_refused_and_never_followed() {
    use pureboot_contract::volumes::VolumePath;
    let tmp = TempDir::new().unwrap();
    let t = tree(&tmp);
    let s = serial("d83add36");
    let vols = t.nodes_path().join("d83add36/volumes");
    fs::create_dir_all(&vols).unwrap();
    let outside = tmp.path().join("outside");
    fs::write(&outside, b"not the node's").unwrap();
    std::os::unix::fs::symlink(&outside, vols.join("data.1.img")).unwrap();
    let data = VolumePath::parse("/data").unwrap();
    let e = t
        .create_volume_image(&s, &data, 16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.1.img"), "{e}");
    // Set aside as itself; the fresh image is generation 2; the target is untouched.
    let (_, fresh) = t.set_aside_volume_image(&s, &data, 16).unwrap();
    assert_eq!(fresh, "data.2.img");
    assert_eq!(fs::read(&outside).unwrap(), b"not the node's");
}

/// Two holders of one node's lock take turns (flock: two controllers on one export); another
/// node's lock is free meanwhile; a `.locks` a client planted as a symlink is refused.
#[test]
fn a_node_lock_is_held_by_one_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tree(&tmp);
    let held = t.lock_node(&serial("0000000a")).unwrap();
    let other = t.lock_node(&serial("0000000b")).unwrap();
    drop(other);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _second = t.lock_node(&serial("0000000a")).unwrap();
            tx.send(std::time::Instant::now()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "the second holder waits");
        let released = std::time::Instant::now();
        drop(held);
        let got = rx.recv().unwrap();
        assert!(got >= released);
    });

    let planted = tempfile::tempdir().unwrap();
    let t = NfsTree::new(planted.path());
    std::os::unix::fs::symlink("/tmp", planted.path().join(".locks")).unwrap();
    let err = t.lock_node(&serial("0000000a")).unwrap_err();
    assert!(matches!(err, NfsTreeError::Symlink { .. }), "{err}");
}
