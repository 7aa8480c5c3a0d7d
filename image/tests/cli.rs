//! The `pureboot-image` binary end to end, on a small module tree built by each test.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pureboot_contract::modules_list;
use pureboot_image::cpio::{self, Kind, Record};

const KVER: &str = "6.1.0-test-arm64";

/// A fake `lib/modules/<KVER>` with compressed and plain modules, depmod's files, and a
/// pretend pi-init. Module bodies are distinct so a mix-up shows.
struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    pi_init: PathBuf,
}

fn body(name: &str) -> Vec<u8> {
    format!("\x7fELF fake module {name} ")
        .repeat(40)
        .into_bytes()
}

fn fake_tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let dir = root.join("lib/modules").join(KVER);
    let modules: &[(&str, &str)] = &[
        ("kernel/drivers/net/virtio_net.ko.xz", "virtio_net"),
        ("kernel/net/core/failover.ko.zst", "failover"),
        ("kernel/drivers/net/net_failover.ko.gz", "net_failover"),
        ("kernel/fs/ext4/ext4.ko", "ext4"),
        ("kernel/fs/jbd2/jbd2.ko.xz", "jbd2"),
        ("kernel/crypto/crc32c_generic.ko.zst", "crc32c_generic"),
        ("kernel/fs/overlayfs/overlay.ko", "overlay"),
        ("kernel/drivers/net/mii.ko", "mii"),
        ("kernel/drivers/net/usb/usbnet.ko.xz", "usbnet"),
        ("kernel/drivers/net/usb/smsc95xx.ko.xz", "smsc95xx"),
    ];
    for (path, name) in modules {
        let file = dir.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, compress(path, &body(name))).unwrap();
    }
    fs::write(
        dir.join("modules.dep"),
        "kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.gz kernel/net/core/failover.ko.zst\n\
         kernel/net/core/failover.ko.zst:\n\
         kernel/drivers/net/net_failover.ko.gz: kernel/net/core/failover.ko.zst\n\
         kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko.xz\n\
         kernel/fs/jbd2/jbd2.ko.xz:\n\
         kernel/crypto/crc32c_generic.ko.zst:\n\
         kernel/fs/overlayfs/overlay.ko:\n\
         kernel/drivers/net/mii.ko:\n\
         kernel/drivers/net/usb/usbnet.ko.xz: kernel/drivers/net/mii.ko\n\
         kernel/drivers/net/usb/smsc95xx.ko.xz: kernel/drivers/net/usb/usbnet.ko.xz kernel/drivers/net/mii.ko\n",
    )
    .unwrap();
    fs::write(
        dir.join("modules.softdep"),
        "softdep ext4 pre: crypto-crc32c\n",
    )
    .unwrap();
    fs::write(
        dir.join("modules.alias"),
        "alias crypto-crc32c crc32c_generic\nalias fs-overlay overlay\nalias fs-ext4 ext4\n\
         alias virtio:d00000001v* virtio_net\n\
         alias usb:v0424pEC00d*dc*dsc*dp*ic*isc*ip*in* smsc95xx\n\
         alias usb:v0424pEC01d*dc*dsc*dp*ic*isc*ip*in* smsc95xx\n\
         alias net-fake-smsc smsc95xx\n",
    )
    .unwrap();
    fs::write(dir.join("modules.builtin"), "kernel/fs/nfs/nfs.ko\n").unwrap();
    let pi_init = tmp.path().join("pi-init");
    fs::write(&pi_init, b"\x7fELF pretend pi-init").unwrap();
    Tree {
        _tmp: tmp,
        root,
        pi_init,
    }
}

fn compress(path: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if path.ends_with(".xz") {
        xz2::read::XzEncoder::new(data, 6)
            .read_to_end(&mut out)
            .unwrap();
    } else if path.ends_with(".zst") {
        out = zstd::stream::encode_all(data, 3).unwrap();
    } else if path.ends_with(".gz") {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        out = encoder.finish().unwrap();
    } else {
        out = data.to_vec();
    }
    out
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pureboot-image"));
    command.args(args).env_remove("SOURCE_DATE_EPOCH");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn failure(output: Output) -> String {
    assert!(
        !output.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// `initramfs` with the tree's pi-init and modules, output `out`, then `extra` arguments.
fn initramfs_args(tree: &Tree, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "initramfs".into(),
        "--pi-init".into(),
        tree.pi_init.display().to_string(),
        "--modules-root".into(),
        tree.root.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Builds into `out` with `--module` for each name; returns the summary line.
fn build(
    tree: &Tree,
    out: &Path,
    modules: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut args: Vec<&str> = modules.iter().flat_map(|m| ["--module", m]).collect();
    args.extend(extra);
    ok(run(&initramfs_args(tree, out, &args), env))
}

fn records(path: &Path) -> Vec<Record> {
    let mut archive = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_end(&mut archive)
        .unwrap();
    cpio::read_archive(&archive).unwrap()
}

fn file_data<'a>(records: &'a [Record], path: &str) -> &'a [u8] {
    match &records
        .iter()
        .find(|r| r.entry.path == path)
        .unwrap_or_else(|| panic!("{path} missing"))
        .entry
        .kind
    {
        Kind::File(data) => data,
        other => panic!("{path} is {other:?}"),
    }
}

#[test]
fn initramfs_has_the_agreed_layout_and_plain_modules_in_load_order() {
    let tree = fake_tree();
    let out = tree.root.join("../initrd.cpio.gz");
    let summary = build(
        &tree,
        &out,
        &["virtio_net", "fs-overlay", "ext4", "nfs"],
        &[],
        &[],
    );
    assert!(
        summary.contains("7 modules") && summary.contains("gzip"),
        "{summary}"
    );

    let records = records(&out);
    let by_path: BTreeMap<&str, &Record> =
        records.iter().map(|r| (r.entry.path.as_str(), r)).collect();
    for dir in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "etc",
        "mnt",
        "lib/modules",
    ] {
        assert_eq!(by_path[dir].entry.kind, Kind::Dir, "{dir}");
    }
    let console = &by_path["dev/console"].entry;
    assert_eq!(
        (console.kind.clone(), console.perm),
        (Kind::CharDev { major: 5, minor: 1 }, 0o600)
    );
    assert_eq!(file_data(&records, "init"), b"\x7fELF pretend pi-init");
    assert_eq!(by_path["init"].entry.perm, 0o755);

    let list = String::from_utf8(file_data(&records, "etc/pureboot/modules").to_vec()).unwrap();
    let (entries, warnings) = modules_list::parse(&list);
    assert!(warnings.is_empty(), "{warnings:?}");
    let loaded: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let base = format!("/lib/modules/{KVER}/kernel");
    let expected: Vec<String> = [
        "net/core/failover.ko",
        "drivers/net/net_failover.ko",
        "drivers/net/virtio_net.ko",
        "fs/overlayfs/overlay.ko",
        // ext4's softdep pre: crypto-crc32c, through modules.alias.
        "crypto/crc32c_generic.ko",
        "fs/jbd2/jbd2.ko",
        "fs/ext4/ext4.ko",
    ]
    .iter()
    .map(|p| format!("{base}/{p}"))
    .collect();
    assert_eq!(loaded, expected);
    assert!(entries.iter().all(|e| e.when == modules_list::When::Start));
    // Each module's needs: its direct dependencies and pre: softdeps, by index.
    let needs = |name: &str| -> Vec<String> {
        let e = entries.iter().find(|e| e.name() == name).unwrap();
        e.needs.iter().map(|&i| entries[i].name()).collect()
    };
    assert_eq!(needs("virtio_net"), ["net_failover"]);
    assert_eq!(needs("ext4"), ["crc32c_generic", "jbd2"]);
    assert!(needs("overlay").is_empty());
    // Every listed module is in the archive, decompressed to its original bytes, its size
    // on the list.
    for e in &entries {
        let path = e.path.trim_start_matches('/');
        assert_eq!(file_data(&records, path), body(&e.name()), "{path}");
        assert_eq!(e.bytes, body(&e.name()).len() as u64);
    }
    // No module is loaded by device: the alias table is there, empty.
    let aliases = String::from_utf8(file_data(&records, "etc/pureboot/modules.alias").to_vec());
    assert!(aliases.unwrap().lines().all(|l| l.starts_with('#')));
    // Parents come before children; inode numbers count up in archive order.
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.ino as usize, i + 1);
        if let Some((parent, _)) = record.entry.path.rsplit_once('/') {
            let at = records
                .iter()
                .position(|r| r.entry.path == parent)
                .expect(parent);
            assert!(at < i, "{parent} after {}", record.entry.path);
        }
    }
}

#[test]
fn disk_modules_go_to_their_own_list_without_repeating_the_boot_list() {
    let tree = fake_tree();
    let out = tree.root.join("../disk.cpio.gz");
    // jbd2 is needed by both: ext4 on the disk list and (pretend) the boot list's own request.
    let summary = build(
        &tree,
        &out,
        &["virtio_net", "jbd2"],
        &["--disk-module", "ext4", "--disk-module", "fs-overlay"],
        &[],
    );
    assert!(summary.contains("(+3 on the disk list)"), "{summary}");
    let records = records(&out);
    let lines = |path: &str| -> Vec<String> {
        String::from_utf8(file_data(&records, path).to_vec())
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let path = l.split_whitespace().nth(1).unwrap();
                path.rsplit('/').next().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(
        lines("etc/pureboot/modules"),
        ["failover.ko", "net_failover.ko", "virtio_net.ko", "jbd2.ko"]
    );
    assert_eq!(
        lines("etc/pureboot/modules.disk"),
        ["crc32c_generic.ko", "ext4.ko", "overlay.ko"]
    );
    for path in [
        "crypto/crc32c_generic.ko",
        "fs/ext4/ext4.ko",
        "fs/jbd2/jbd2.ko",
    ] {
        file_data(&records, &format!("lib/modules/{KVER}/kernel/{path}"));
    }
    // Without disk modules the list is still there, empty: pi-init reads it either way.
    let plain = tree.root.join("../plain-disk.cpio.gz");
    build(&tree, &plain, &["virtio_net"], &[], &[]);
    let records = self::records(&plain);
    let text =
        String::from_utf8(file_data(&records, "etc/pureboot/modules.disk").to_vec()).unwrap();
    assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
}

#[test]
fn device_modules_follow_the_list_with_their_modaliases() {
    let tree = fake_tree();
    let out = tree.root.join("../device.cpio.gz");
    // mii is needed at start too: it stays there, and smsc95xx's line names it.
    let summary = build(
        &tree,
        &out,
        &["virtio_net", "mii"],
        &[
            "--device-module",
            "smsc95xx",
            "--device-module",
            "virtio_net",
        ],
        &[],
    );
    assert!(
        summary.contains("4 modules") && summary.contains("(+2 loaded by device)"),
        "{summary}"
    );
    let records = records(&out);
    let text = |path: &str| String::from_utf8(file_data(&records, path).to_vec()).unwrap();
    let (entries, warnings) = modules_list::parse(&text("etc/pureboot/modules"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let lines: Vec<(String, modules_list::When, Vec<usize>)> = entries
        .iter()
        .map(|e| (e.name(), e.when, e.needs.clone()))
        .collect();
    use modules_list::When::{Device, Start};
    assert_eq!(
        lines,
        [
            ("failover".to_string(), Start, vec![]),
            ("net_failover".to_string(), Start, vec![0]),
            ("virtio_net".to_string(), Start, vec![1]),
            ("mii".to_string(), Start, vec![]),
            ("usbnet".to_string(), Device, vec![3]),
            ("smsc95xx".to_string(), Device, vec![4]),
        ]
    );
    file_data(
        &records,
        &format!("lib/modules/{KVER}/kernel/drivers/net/usb/smsc95xx.ko"),
    );
    // The table holds the device modules' modaliases only: not virtio_net's (loaded at
    // start), not smsc95xx's other names.
    let aliases = modules_list::Aliases::parse(&text("etc/pureboot/modules.alias"));
    let pairs: Vec<(&str, &str)> = aliases.iter().collect();
    assert_eq!(
        pairs,
        [
            ("usb:v0424pEC00d*dc*dsc*dp*ic*isc*ip*in*", "smsc95xx"),
            ("usb:v0424pEC01d*dc*dsc*dp*ic*isc*ip*in*", "smsc95xx"),
        ]
    );

    // `modules` prints the same three files without building.
    let printed = ok(run(
        &[
            "modules",
            "--modules-root",
            tree.root.to_str().unwrap(),
            "--module",
            "virtio_net",
            "--module",
            "mii",
            "--device-module",
            "smsc95xx",
            "--device-module",
            "virtio_net",
        ],
        &[],
    ));
    for path in [
        "etc/pureboot/modules",
        "etc/pureboot/modules.disk",
        "etc/pureboot/modules.alias",
    ] {
        assert!(
            printed.contains(&format!("## /{path}\n{}", text(path))),
            "{path}:\n{printed}"
        );
    }
}

#[test]
fn debian_cpio_lists_the_same_names() {
    let Ok(probe) = Command::new("cpio").arg("--version").output() else {
        eprintln!("SKIP debian_cpio_lists_the_same_names: no `cpio` binary (apt-get install cpio)");
        return;
    };
    assert!(probe.status.success());
    let tree = fake_tree();
    let out = tree.root.join("../plain.cpio");
    build(&tree, &out, &["ext4"], &["--compress", "none"], &[]);
    let listing = Command::new("cpio")
        .args(["-t", "--quiet", "-F", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let names: Vec<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let ours: Vec<String> = cpio::read_archive(&fs::read(&out).unwrap())
        .unwrap()
        .into_iter()
        .map(|r| r.entry.path)
        .collect();
    assert_eq!(names, ours);
    assert!(names.contains(&"dev/console".to_string()));
}

#[test]
fn builds_are_byte_identical_and_honour_source_date_epoch() {
    let tree = fake_tree();
    let dir = tree.root.parent().unwrap().to_path_buf();
    let modules = ["virtio_net", "ext4"];
    build(&tree, &dir.join("a.gz"), &modules, &[], &[]);
    build(&tree, &dir.join("b.gz"), &modules, &[], &[]);
    build(
        &tree,
        &dir.join("c.gz"),
        &modules,
        &[],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    let a = fs::read(dir.join("a.gz")).unwrap();
    assert_eq!(a, fs::read(dir.join("b.gz")).unwrap(), "two builds differ");
    assert_ne!(a, fs::read(dir.join("c.gz")).unwrap());
    assert!(records(&dir.join("a.gz"))
        .iter()
        .all(|r| r.mtime == 0 && r.uid == 0 && r.gid == 0));
    assert!(records(&dir.join("c.gz"))
        .iter()
        .all(|r| r.mtime == 1_700_000_000));

    let err = failure(run(
        &initramfs_args(&tree, &dir.join("d.gz"), &[]),
        &[("SOURCE_DATE_EPOCH", "yesterday")],
    ));
    assert!(err.contains("SOURCE_DATE_EPOCH"), "{err}");
}

#[test]
fn zstd_output_holds_the_same_archive() {
    let tree = fake_tree();
    let dir = tree.root.parent().unwrap().to_path_buf();
    build(&tree, &dir.join("a.gz"), &["ext4"], &[], &[]);
    build(
        &tree,
        &dir.join("a.zst"),
        &["ext4"],
        &["--compress", "zstd"],
        &[],
    );
    let zst = zstd::stream::decode_all(fs::File::open(dir.join("a.zst")).unwrap()).unwrap();
    assert_eq!(
        cpio::read_archive(&zst).unwrap(),
        records(&dir.join("a.gz"))
    );
}

#[test]
fn busybox_and_extras_land_where_asked() {
    let tree = fake_tree();
    let dir = tree.root.parent().unwrap().to_path_buf();
    fs::write(dir.join("busybox"), b"bb").unwrap();
    fs::write(dir.join("hello"), b"hi").unwrap();
    let busybox = dir.join("busybox").display().to_string();
    let extra = format!("{}:/usr/share/hello", dir.join("hello").display());
    build(
        &tree,
        &dir.join("a.gz"),
        &[],
        &["--busybox", &busybox, "--extra", &extra],
        &[],
    );
    let records = records(&dir.join("a.gz"));
    assert_eq!(file_data(&records, "bin/busybox"), b"bb");
    assert_eq!(file_data(&records, "usr/share/hello"), b"hi");
    let sh = records.iter().find(|r| r.entry.path == "bin/sh").unwrap();
    assert_eq!(sh.entry.kind, Kind::Symlink("busybox".into()));

    let clash = format!("{}:/init", dir.join("hello").display());
    let args = initramfs_args(&tree, &dir.join("b.gz"), &["--extra", &clash]);
    let err = failure(run(&args, &[]));
    assert!(err.contains("init is added twice"), "{err}");
}

#[test]
fn missing_module_and_missing_modules_dep_are_clear_errors() {
    let tree = fake_tree();
    let out = tree.root.join("../x.gz");
    let args = |module: &str| initramfs_args(&tree, &out, &["--module", module]);
    let err = failure(run(&args("e1000e"), &[]));
    assert!(err.contains("\"e1000e\"") && err.contains(KVER), "{err}");
    assert!(!out.exists());

    fs::remove_file(tree.root.join("lib/modules").join(KVER).join("modules.dep")).unwrap();
    let err = failure(run(&args("ext4"), &[]));
    let expected = format!("depmod -b {} {KVER}", tree.root.display());
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn kver_must_be_named_when_several_exist() {
    let tree = fake_tree();
    fs::create_dir_all(tree.root.join("lib/modules/5.10.0-other")).unwrap();
    let err = failure(run(
        &[
            "modules",
            "--modules-root",
            tree.root.to_str().unwrap(),
            "--module",
            "ext4",
        ],
        &[],
    ));
    assert!(
        err.contains("--kver") && err.contains("5.10.0-other"),
        "{err}"
    );
    let list = ok(run(
        &[
            "modules",
            "--modules-root",
            tree.root.to_str().unwrap(),
            "--kver",
            KVER,
            "--module",
            "ext4",
        ],
        &[],
    ));
    assert_eq!(
        list.lines().filter(|l| !l.starts_with('#')).count(),
        3,
        "{list}"
    );
}

#[test]
fn tftp_refuses_bad_serials_and_writes_a_node_folder() {
    let tree = fake_tree();
    let dir = tree.root.parent().unwrap().to_path_buf();
    let fw = dir.join("fw");
    fs::create_dir_all(&fw).unwrap();
    for name in ["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"] {
        fs::write(fw.join(name), name).unwrap();
    }
    fs::write(dir.join("Image"), b"kernel").unwrap();
    let (kernel, fw, initrd) = (
        dir.join("Image"),
        fw.display().to_string(),
        tree.pi_init.display().to_string(),
    );
    let kernel = kernel.display().to_string();
    let out = dir.join("tftp").display().to_string();
    let tftp = |serial: &str| {
        run(
            &[
                "tftp",
                "--serial",
                serial,
                "--model",
                "pi4",
                "--kernel",
                &kernel,
                "--initramfs",
                &initrd,
                "--firmware-dir",
                &fw,
                "--controller-url",
                "http://192.168.1.10:8080",
                "--cmdline-extra",
                "pureboot.log=debug  pureboot.overlay=image",
                "-o",
                &out,
            ],
            &[],
        )
    };
    for bad in ["d83add3", "d83add3z", "../etc00", "10000000d83add36"] {
        let err = failure(tftp(bad));
        assert!(err.contains("exactly 8 hex digits"), "{bad}: {err}");
    }
    assert!(!dir.join("tftp").exists(), "a refused serial wrote files");
    ok(tftp("D83ADD36"));
    let cmdline = fs::read_to_string(dir.join("tftp/d83add36/cmdline.txt")).unwrap();
    assert_eq!(
        cmdline,
        "console=serial0,115200 console=tty1 pureboot.url=http://192.168.1.10:8080 \
         pureboot.serial=d83add36 pureboot.log=debug pureboot.overlay=image\n"
    );
    let config = fs::read_to_string(dir.join("tftp/d83add36/config.txt")).unwrap();
    assert!(
        config.contains("initramfs initramfs.img followkernel"),
        "{config}"
    );
    assert_eq!(
        fs::read(dir.join("tftp/d83add36/initramfs.img")).unwrap(),
        fs::read(&tree.pi_init).unwrap()
    );
}

/// A modules tree shaped like Raspberry Pi OS's arm64 kernel (bcm2711/bcm2712 defconfigs):
/// the NIC drivers (genet, lan78xx, smsc95xx, macb + RP1), the NFS client, the watchdog, loop
/// and ext4 are built in (`modules.builtin`), overlayfs, squashfs and dwc2 are modules
/// (`.ko.xz`).
fn raspberry_pi_os_tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let kver = "6.6.51+rpt-rpi-v8";
    let dir = root.join("lib/modules").join(kver);
    let modules = [
        "kernel/fs/overlayfs/overlay.ko.xz",
        "kernel/drivers/usb/dwc2/dwc2.ko.xz",
        "kernel/drivers/net/usb/cdc_ether.ko.xz",
        "kernel/fs/squashfs/squashfs.ko.xz",
    ];
    for path in modules {
        let file = dir.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let name = path.rsplit('/').next().unwrap();
        fs::write(file, compress(path, &body(name))).unwrap();
    }
    let dep: String = modules.iter().map(|m| format!("{m}:\n")).collect();
    fs::write(dir.join("modules.dep"), dep).unwrap();
    fs::write(
        dir.join("modules.alias"),
        "alias fs-overlay overlay\nalias of:N*T*Cbrcm,bcm2835-usb dwc2\n",
    )
    .unwrap();
    let builtin = [
        "kernel/drivers/net/ethernet/broadcom/genet/genet.ko",
        "kernel/drivers/net/mdio/mdio-bcm-unimac.ko",
        "kernel/drivers/net/phy/broadcom.ko",
        "kernel/drivers/net/usb/lan78xx.ko",
        "kernel/drivers/net/usb/smsc95xx.ko",
        "kernel/drivers/net/usb/usbnet.ko",
        "kernel/drivers/net/ethernet/cadence/macb.ko",
        "kernel/drivers/mfd/rp1.ko",
        "kernel/drivers/clk/clk-rp1.ko",
        "kernel/drivers/pinctrl/pinctrl-rp1.ko",
        "kernel/drivers/pci/controller/pcie-brcmstb.ko",
        "kernel/drivers/usb/phy/phy-generic.ko",
        "kernel/drivers/watchdog/bcm2835_wdt.ko",
        "kernel/net/sunrpc/sunrpc.ko",
        "kernel/fs/nfs/nfs.ko",
        "kernel/fs/nfs/nfsv3.ko",
        "kernel/fs/nfs/nfsv4.ko",
        "kernel/drivers/block/loop.ko",
        "kernel/fs/ext4/ext4.ko",
    ];
    fs::write(dir.join("modules.builtin"), builtin.join("\n") + "\n").unwrap();
    let pi_init = tmp.path().join("pi-init");
    fs::write(&pi_init, b"\x7fELF pretend pi-init").unwrap();
    Tree {
        _tmp: tmp,
        root,
        pi_init,
    }
}

/// The file names of the modules on the lists `modules` prints (the alias table left out).
fn list_names(list: &str) -> Vec<String> {
    list.lines()
        .filter(|l| l.starts_with("start ") || l.starts_with("device "))
        .map(|l| {
            let path = l.split_whitespace().nth(1).unwrap();
            path.rsplit('/').next().unwrap().to_string()
        })
        .collect()
}

#[test]
fn presets_on_a_raspberry_pi_os_tree_carry_only_real_modules_and_say_nothing() {
    let tree = raspberry_pi_os_tree();
    let root = tree.root.display().to_string();
    for (preset, expected) in [
        ("rpi4", &["overlay.ko", "squashfs.ko"][..]),
        ("rpi5", &["overlay.ko", "squashfs.ko"][..]),
        // dwc2 is a module there (the Pi 3's own USB host, dwc_otg, is built in).
        ("rpi3", &["dwc2.ko", "overlay.ko", "squashfs.ko"][..]),
    ] {
        let out = run(
            &["modules", "--modules-root", &root, "--preset", preset],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let list = ok(out);
        assert_eq!(list_names(&list), expected, "{preset}: {list}");
        assert!(
            stderr.trim().is_empty(),
            "{preset}: built-ins are skipped without notes or warnings, got: {stderr}"
        );
    }
    // The initramfs holds exactly the real modules, no file for a built-in one.
    let out = tree.root.join("../rpios.cpio.gz");
    let summary = ok(run(
        &initramfs_args(&tree, &out, &["--preset", "rpi4"]),
        &[],
    ));
    assert!(
        summary.contains("1 modules") && summary.contains("(+1 on the disk list)"),
        "{summary}"
    );
    let kos: Vec<String> = records(&out)
        .iter()
        .map(|r| r.entry.path.clone())
        .filter(|p| p.ends_with(".ko"))
        .collect();
    assert_eq!(
        kos,
        [
            "lib/modules/6.6.51+rpt-rpi-v8/kernel/fs/overlayfs/overlay.ko",
            "lib/modules/6.6.51+rpt-rpi-v8/kernel/fs/squashfs/squashfs.ko"
        ]
    );
    // A built-in module named explicitly is still reported: the user asked for it.
    let out = run(
        &["modules", "--modules-root", &root, "--module", "genet"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    assert!(
        stderr.contains("built into the kernel") && stderr.contains("genet"),
        "{stderr}"
    );
}

/// The Debian kernel tree tests/setup.sh unpacks, when it is there.
fn debian_tree() -> Option<PathBuf> {
    let cache = std::env::var_os("PUREBOOT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache"));
    let root = cache.join("kernel/root");
    if root.join("lib/modules").is_dir() {
        Some(root)
    } else {
        eprintln!(
            "SKIPPED Debian kernel presets: no unpacked kernel under {} (run tests/setup.sh)",
            cache.display()
        );
        None
    }
}

#[test]
fn presets_on_debians_kernel_pi3_gets_phy_and_watchdog_pi5_is_refused() {
    let Some(root) = debian_tree() else { return };
    let root = root.display().to_string();
    let list = ok(run(
        &["modules", "--modules-root", &root, "--preset", "rpi3"],
        &[],
    ));
    let names = list_names(&list);
    let at = |name: &str| {
        names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} not in the rpi3 list: {names:?}"))
    };
    assert!(at("phy-generic.ko") < at("dwc2.ko"), "{names:?}");
    at("smsc95xx.ko");
    at("lan78xx.ko");
    at("bcm2835_wdt.ko");
    assert!(at("bcm2835_wdt.ko") < at("nfsv4.ko"), "{names:?}");
    let list = ok(run(
        &["modules", "--modules-root", &root, "--preset", "rpi4"],
        &[],
    ));
    assert!(
        list_names(&list).contains(&"bcm2835_wdt.ko".to_string()),
        "{list}"
    );

    let err = failure(run(
        &["modules", "--modules-root", &root, "--preset", "rpi5"],
        &[],
    ));
    assert!(
        err.contains("rp1, clk-rp1, pinctrl-rp1") && err.contains("Raspberry Pi OS"),
        "{err}"
    );
}

/// Without `--pi-init`, `initramfs` takes the pi-init a package installed beside its bin/
/// (`<prefix>/lib/pureboot/pi-init`), as from an unpacked pureboot-image package.
#[test]
fn initramfs_finds_the_installed_pi_init_beside_its_bin_dir() {
    let tree = fake_tree();
    let prefix = tree.root.join("../usr");
    fs::create_dir_all(prefix.join("bin")).unwrap();
    fs::create_dir_all(prefix.join("lib/pureboot")).unwrap();
    let exe = prefix.join("bin/pureboot-image");
    fs::copy(env!("CARGO_BIN_EXE_pureboot-image"), &exe).unwrap();
    fs::write(
        prefix.join("lib/pureboot/pi-init"),
        b"\x7fELF installed pi-init",
    )
    .unwrap();
    let out = tree.root.join("../installed.cpio.gz");
    let output = Command::new(&exe)
        .args(["initramfs", "--module", "virtio_net", "--modules-root"])
        .arg(&tree.root)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ok(output);
    assert!(
        stderr.contains("note: pi-init: ") && stderr.contains("lib/pureboot/pi-init"),
        "says which pi-init it took: {stderr}"
    );
    assert_eq!(
        file_data(&records(&out), "init"),
        b"\x7fELF installed pi-init"
    );
}

/// Without `--pi-init` and with none installed, the error names every place looked in.
#[test]
fn initramfs_without_pi_init_names_where_it_looked() {
    if Path::new("/usr/lib/pureboot/pi-init").exists() {
        eprintln!("SKIPPED: the pureboot-image package is installed on this machine");
        return;
    }
    let tree = fake_tree();
    let out = tree.root.join("../none.cpio.gz");
    let args = [
        "initramfs".to_string(),
        "--module".into(),
        "virtio_net".into(),
        "--modules-root".into(),
        tree.root.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    let err = failure(run(&args, &[]));
    let beside = Path::new(env!("CARGO_BIN_EXE_pureboot-image"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("lib/pureboot/pi-init");
    assert!(err.contains("no --pi-init given"), "{err}");
    assert!(err.contains("/usr/lib/pureboot/pi-init"), "{err}");
    assert!(err.contains(&beside.display().to_string()), "{err}");
    assert!(!out.exists());
}

/// `tftp --image`: a base image imported from a Raspberry Pi OS disk image (its boot
/// partition in boot/firmware/, its modules in lib/modules/) gives the folder its kernel,
/// device trees and firmware, and an initramfs built from the modules of that kernel's
/// version; a kernel whose modules the image lacks is refused, never served.
#[test]
fn tftp_from_an_image_takes_its_kernel_and_builds_the_initramfs_from_its_modules() {
    let tree = raspberry_pi_os_tree();
    let image = &tree.root;
    let boot = image.join("boot/firmware");
    fs::create_dir_all(boot.join("overlays")).unwrap();
    let kernel = b"\0\0Linux version 6.6.51+rpt-rpi-v8 (builder@host) #1 SMP PREEMPT\0".repeat(8);
    fs::write(boot.join("kernel8.img"), &kernel).unwrap();
    for name in [
        "start.elf",
        "fixup.dat",
        "bootcode.bin",
        "bcm2710-rpi-3-b.dtb",
    ] {
        fs::write(boot.join(name), format!("image's {name}")).unwrap();
    }
    fs::write(boot.join("overlays/disable-bt.dtbo"), "overlay").unwrap();
    let out = tree.root.parent().unwrap().join("tftp");
    let tftp = |extra: &[&str]| {
        let mut args = vec![
            "tftp".to_string(),
            "--serial".into(),
            "d83add36".into(),
            "--model".into(),
            "pi3".into(),
            "--image".into(),
            image.display().to_string(),
            "--pi-init".into(),
            tree.pi_init.display().to_string(),
            "--controller-url".into(),
            "http://192.168.1.10:8080".into(),
            "-o".into(),
            out.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        run(&args, &[])
    };
    let stdout = ok(tftp(&["--module", "cdc_ether"]));
    let folder = out.join("d83add36");
    assert_eq!(
        fs::read(folder.join("kernel8.img")).unwrap(),
        kernel,
        "{stdout}"
    );
    for name in ["start.elf", "bootcode.bin", "bcm2710-rpi-3-b.dtb"] {
        let served = if name == "bootcode.bin" {
            out.join(name)
        } else {
            folder.join(name)
        };
        assert_eq!(
            fs::read_to_string(served).unwrap(),
            format!("image's {name}")
        );
    }
    assert!(folder.join("overlays/disable-bt.dtbo").is_file());
    let initramfs = records(&folder.join("initramfs.img"));
    assert_eq!(
        file_data(&initramfs, "init"),
        fs::read(&tree.pi_init).unwrap()
    );
    let paths: Vec<&str> = initramfs.iter().map(|r| r.entry.path.as_str()).collect();
    for module in ["overlay.ko", "dwc2.ko", "cdc_ether.ko"] {
        assert!(
            paths
                .iter()
                .any(|p| p.starts_with("lib/modules/6.6.51+rpt-rpi-v8/") && p.contains(module)),
            "{module} from the image's modules: {paths:?}"
        );
    }
    // No scratch left in the TFTP root.
    let hidden: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");

    // The image's kernel changes to one whose modules it does not carry: refused. (Replaced
    // as dpkg replaces files, by a new file: the folder's copy is a hard link to the old.)
    fs::remove_file(boot.join("kernel8.img")).unwrap();
    fs::write(boot.join("kernel8.img"), b"Linux version 6.12.1-other (x)").unwrap();
    let err = failure(tftp(&[]));
    assert!(
        err.contains("6.12.1-other") && err.contains("disagree"),
        "{err}"
    );
    assert_eq!(
        fs::read(folder.join("kernel8.img")).unwrap(),
        kernel,
        "the folder kept its pair"
    );

    // An image with no boot partition (a tar import) needs the explicit inputs.
    fs::remove_dir_all(&boot).unwrap();
    let err = failure(tftp(&[]));
    assert!(err.contains("give --kernel"), "{err}");
}
