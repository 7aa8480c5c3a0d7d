//! The controller writes the TFTP folders with the real pureboot-image (the workspace's
//! `target/debug/pureboot-image`), from base images imported from disk images laid out as
//! Raspberry Pi OS is (tests/disk-image.sh): Debian's arm64 kernel as kernel8.img, the real
//! GPU firmware of Debian's raspi-firmware, Debian's device trees, and the kernel's own
//! modules (those the presets load) in the root. Skipped, loudly, without any of these.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::{Config, NfsConfig, TftpConfig};
use crate::domain::ids::NodeRef;
use crate::nfs_tree::import::tests::disk_images::{build, tools_present, write};
use crate::nfs_tree::import::ImportOptions;
use crate::service::nodes::{NodeSpec, NodeUpdate};
use crate::service::Services;
use pureboot_contract::ids::Serial;

const URL: &str = "http://192.0.2.1:8080";
const SERIAL: &str = "d83add36";

/// What a test needs from outside the crate, or the reason it is skipped.
struct Inputs {
    tool: PathBuf,
    pi_init: PathBuf,
    firmware: PathBuf,
    kernel_root: PathBuf,
    kver: String,
}

fn inputs(test: &str) -> Option<Inputs> {
    let skip = |why: String| {
        eprintln!("SKIPPED {test}: {why}");
        None
    };
    if !tools_present(test) {
        return None;
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let tool = target.join("debug/pureboot-image");
    if !tool.is_file() {
        return skip(format!(
            "no {} (build it: `cargo build -p pureboot-image`)",
            tool.display()
        ));
    }
    let pi_init = target.join("aarch64-unknown-linux-musl/release/pi-init");
    if !pi_init.is_file() {
        return skip(format!(
            "no {} (`cargo build --release -p pi-init --target aarch64-unknown-linux-musl`)",
            pi_init.display()
        ));
    }
    let Some(cache) = std::env::var_os("PUREBOOT_CACHE").map(PathBuf::from) else {
        return skip(
            "PUREBOOT_CACHE is not set (the kernel and firmware of tests/setup.sh)".into(),
        );
    };
    let (firmware, kernel) = (cache.join("raspi-firmware"), cache.join("kernel"));
    let kver = fs::read_to_string(kernel.join("version")).unwrap_or_default();
    if !firmware.join("start4.elf").is_file() || kver.trim().is_empty() {
        return skip(format!(
            "no raspi-firmware or kernel in {} (run `sudo tests/setup.sh`)",
            cache.display()
        ));
    }
    Some(Inputs {
        tool,
        pi_init,
        firmware,
        kernel_root: kernel.join("root"),
        kver: kver.trim().to_string(),
    })
}

/// The module files the boards' presets load (as pureboot-image resolves them from the
/// Debian kernel's tree), relative to lib/modules/<kver>/.
fn preset_modules(inp: &Inputs) -> Vec<String> {
    let mut files = Vec::new();
    for preset in ["rpi3", "rpi4"] {
        let out = Command::new(&inp.tool)
            .args(["modules", "--preset", preset, "--modules-root"])
            .arg(&inp.kernel_root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let prefix = format!("/lib/modules/{}/", inp.kver);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(rel) = line.split(' ').nth(1).and_then(|p| p.strip_prefix(&prefix)) {
                files.push(rel.to_string());
            }
        }
    }
    files.sort();
    files.dedup();
    assert!(files.len() > 10, "{files:?}");
    files
}

/// A Raspberry Pi OS-like disk image whose kernel8.img is `kernel`, imported as `name`.
fn import(services: &Services, inp: &Inputs, dir: &Path, name: &str, kernel: &[u8]) {
    let (root, boot) = (dir.join(name).join("root"), dir.join(name).join("boot"));
    write(
        &root.join("etc/os-release"),
        "PRETTY_NAME=\"test\"\n",
        0o644,
    );
    let (from, to) = (
        inp.kernel_root.join("lib/modules").join(&inp.kver),
        root.join("lib/modules").join(&inp.kver),
    );
    for index in [
        "modules.dep",
        "modules.alias",
        "modules.builtin",
        "modules.softdep",
    ] {
        write(
            &to.join(index),
            &fs::read_to_string(from.join(index)).unwrap(),
            0o644,
        );
    }
    for rel in preset_modules(inp) {
        fs::create_dir_all(to.join(&rel).parent().unwrap()).unwrap();
        fs::copy(from.join(&rel), to.join(&rel)).unwrap();
    }
    fs::create_dir_all(root.join("boot/firmware")).unwrap();
    fs::create_dir_all(&boot).unwrap();
    fs::write(boot.join("kernel8.img"), kernel).unwrap();
    for f in [
        "bootcode.bin",
        "start.elf",
        "fixup.dat",
        "start4.elf",
        "fixup4.dat",
    ] {
        fs::copy(inp.firmware.join(f), boot.join(f)).unwrap();
    }
    let dtbs = inp
        .kernel_root
        .join(format!("usr/lib/linux-image-{}/broadcom", inp.kver));
    for dtb in ["bcm2837-rpi-3-b.dtb", "bcm2711-rpi-4-b.dtb"] {
        fs::copy(dtbs.join(dtb), boot.join(dtb)).unwrap();
    }
    write(&boot.join("config.txt"), "arm_64bit=1\n", 0o644);
    let img = dir.join(format!("{name}.img"));
    fs::write(&img, build(dir, &root, &boot, &[])).unwrap();
    let options = ImportOptions {
        max_bytes: 1 << 30,
        keep_devices: false,
        keep_setid: false,
        ..Default::default()
    };
    services
        .import_image(&img, name, &options, &mut |_| {})
        .unwrap();
    fs::remove_file(&img).unwrap();
}

struct Lab {
    _tmp: tempfile::TempDir,
    services: Arc<Services>,
    tftp: PathBuf,
    /// pios-a's kernel8.img (Debian's Image) and pios-b's (the same kernel gzipped, as a
    /// different file would be after an upgrade).
    kernel_a: Vec<u8>,
    kernel_b: Vec<u8>,
    kver: String,
}

fn lab(test: &str) -> Option<Lab> {
    let inp = inputs(test)?;
    let tmp = tempfile::tempdir().unwrap();
    let workflows = tmp.path().join("workflows");
    fs::create_dir_all(&workflows).unwrap();
    let yaml = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/pi-diskless-nfs.yaml");
    fs::copy(&yaml, workflows.join("pi-diskless-nfs.yaml")).unwrap();
    let tftp = tmp.path().join("tftp");
    let config = Config {
        public_url: Some(URL.into()),
        database: tmp.path().join("pureboot.db"),
        workflows_dir: workflows,
        nfs: NfsConfig {
            root_path: tmp.path().join("nfs"),
            default_base_image: "pios-a".into(),
            ..NfsConfig::default()
        },
        tftp: TftpConfig {
            root: Some(tftp.clone()),
            image_tool: Some(inp.tool.clone()),
            pi_init: Some(inp.pi_init.clone()),
            cmdline_extra: Some("pureboot.log=debug".into()),
            // Two controllers of one registry: both in every folder's command line.
            controller_urls: vec![URL.into(), "http://192.0.2.2:8080".into()],
        },
        ..Config::default()
    };
    let services = Arc::new(Services::open(config).unwrap());
    let kernel_a = fs::read(inp.kernel_root.join(format!("boot/vmlinuz-{}", inp.kver))).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &kernel_a).unwrap();
    let kernel_b = gz.finish().unwrap();
    import(&services, &inp, tmp.path(), "pios-a", &kernel_a);
    import(&services, &inp, tmp.path(), "pios-b", &kernel_b);
    Some(Lab {
        _tmp: tmp,
        services,
        tftp,
        kernel_a,
        kernel_b,
        kver: inp.kver,
    })
}

fn events(lab: &Lab, serial: &str) -> Vec<serde_json::Value> {
    let detail = lab
        .services
        .node_detail(&NodeRef::Serial(Serial::parse(serial).unwrap()), 50)
        .unwrap();
    detail
        .events
        .into_iter()
        .filter(|e| e.kind == "tftp_folder")
        .map(|e| e.detail)
        .collect()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut out).unwrap();
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The files a Pi 4's folder must hold, all of them, whenever it is there.
const PI4_FOLDER: [&str; 7] = [
    "kernel8.img",
    "initramfs.img",
    "config.txt",
    "cmdline.txt",
    "start4.elf",
    "fixup4.dat",
    "bcm2711-rpi-4-b.dtb",
];

#[test]
fn node_folders_follow_their_image_and_are_swapped_in_whole() {
    let test = "node_folders_follow_their_image_and_are_swapped_in_whole";
    let Some(lab) = lab(test) else { return };
    let s = &lab.services;
    let folder = lab.tftp.join(SERIAL);

    // The imports wrote the discovery folder: every board the images boot (no Pi 5 tree).
    let config = fs::read_to_string(lab.tftp.join("config.txt")).unwrap();
    assert!(
        config.contains("[pi3]") && config.contains("[pi4]"),
        "{config}"
    );
    assert!(!config.contains("[pi5]"), "{config}");
    assert_eq!(
        fs::read(lab.tftp.join("bootcode.bin")).unwrap(),
        fs::read(s.tree.base_path().join("pios-a/boot/firmware/bootcode.bin")).unwrap()
    );

    // node add with a workflow writes its folder from its image.
    s.add_node(&NodeSpec {
        serial: SERIAL.into(),
        workflow_id: Some("pi-diskless-nfs".into()),
        model: Some("pi4".into()),
        ..Default::default()
    })
    .unwrap();
    for f in PI4_FOLDER {
        assert!(folder.join(f).is_file(), "{f} missing");
    }
    assert!(fs::read(folder.join("kernel8.img")).unwrap() == lab.kernel_a);
    let cmdline = fs::read_to_string(folder.join("cmdline.txt")).unwrap();
    assert!(
        cmdline.contains(&format!("pureboot.url={URL},http://192.0.2.2:8080 "))
            && cmdline.contains("pureboot.log=debug"),
        "{cmdline}"
    );
    let initramfs = gunzip(&fs::read(folder.join("initramfs.img")).unwrap());
    // Built from the image's own modules: the Pi 4's NIC driver for the image's kernel.
    let genet = format!(
        "lib/modules/{}/kernel/drivers/net/ethernet/broadcom/genet/genet.ko",
        lab.kver
    );
    assert!(contains(&initramfs, &genet), "no {genet} in the initramfs");
    let ev = events(&lab, SERIAL);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["outcome"], "written");
    assert_eq!(ev[0]["image"], "pios-a");
    assert_eq!(ev[0]["board"], "pi4");

    // Nothing changed: nothing written (the folder is the same directory), no event.
    let inode = fs::metadata(&folder).unwrap().ino();
    let again = s
        .follow_tftp(&s.list_nodes(&Default::default()).unwrap()[0])
        .unwrap();
    assert_eq!(again.outcome, "unchanged");
    assert_eq!(fs::metadata(&folder).unwrap().ino(), inode);
    assert_eq!(events(&lab, SERIAL).len(), 1);

    // The base image changes while a reader keeps looking up the folder's files by path,
    // as a TFTP server does: the folder is never missing, never without one of its files
    // (a half-written folder), its kernel always one of the two images' whole. The tool
    // removes the old folder right after the exchange, so a lookup that had already
    // entered it may miss once (a TFTP request the firmware repeats); the same lookup
    // again must find the file, in the new folder.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, folder) = (stop.clone(), folder.clone());
        let sizes = [lab.kernel_a.len() as u64, lab.kernel_b.len() as u64];
        std::thread::spawn(move || {
            let mut seen = [0u32; 2];
            let size = |f: &str| fs::metadata(folder.join(f)).map(|m| m.size());
            while !stop.load(Ordering::Relaxed) {
                for f in PI4_FOLDER {
                    let found = size(f).or_else(|_| size(f));
                    assert!(found.is_ok(), "a folder without {f}: {found:?}");
                }
                let kernel = size("kernel8.img").or_else(|_| size("kernel8.img"));
                let which = sizes
                    .iter()
                    .position(|s| Some(*s) == kernel.as_ref().ok().copied());
                seen[which.unwrap_or_else(|| panic!("a kernel of neither image: {kernel:?}"))] += 1;
            }
            seen
        })
    };
    let node = s
        .update_node(
            &NodeRef::Serial(Serial::parse(SERIAL).unwrap()),
            &NodeUpdate {
                base_image: Some(Some("pios-b".into())),
                ..Default::default()
            },
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().expect("the watcher saw a half folder");
    assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
    assert_eq!(node.base_image.as_deref(), Some("pios-b"));
    assert!(fs::read(folder.join("kernel8.img")).unwrap() == lab.kernel_b);
    assert_ne!(fs::metadata(&folder).unwrap().ino(), inode);
    let ev = events(&lab, SERIAL);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1]["image"], "pios-b");
    // Nothing left beside the folders (the tool's staging, the old folder).
    let hidden: Vec<String> = fs::read_dir(&lab.tftp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && !n.starts_with(".pureboot-tftp"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");

    // A node whose board is not known gets no folder, and says why in `node show`.
    s.add_node(&NodeSpec {
        serial: "0000beef".into(),
        workflow_id: Some("pi-diskless-nfs".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(!lab.tftp.join("0000beef").exists());
    let ev = events(&lab, "0000beef");
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["outcome"], "failed");
    let why = ev[0]["error"].as_str().unwrap();
    assert!(why.contains("model is not known"), "{why}");

    // `tftp sync`: the discovery folder and the first node as they are, the second failed.
    let results = s.tftp_sync().unwrap();
    let outcome = |f: &str| results.iter().find(|r| r.folder == f).unwrap().outcome;
    assert_eq!(outcome("discovery"), "unchanged");
    assert_eq!(outcome(SERIAL), "unchanged");
    assert_eq!(outcome("0000beef"), "failed");

    // The Pi says its model (pi-init registers from the discovery folder's boot): the
    // folder follows, written off the request.
    let register = pureboot_contract::RegisterPiRequest {
        serial: "0000beef".into(),
        mac: "dc:a6:32:00:be:ef".into(),
        model: Some("pi4".into()),
        ip_address: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(s.register_pi(&register, Some("127.0.0.1")))
        .unwrap();
    let learned = lab.tftp.join("0000beef");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !learned.join("kernel8.img").is_file() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for f in PI4_FOLDER {
        assert!(
            learned.join(f).is_file(),
            "{f} missing from the learned model's folder"
        );
    }

    // Removing the node removes its folder.
    s.remove_node(&NodeRef::Serial(Serial::parse(SERIAL).unwrap()), false)
        .unwrap();
    assert!(!folder.exists());
}
