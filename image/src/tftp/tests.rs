use super::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

/// The GPU firmware files the folders carry.
const REAL_FIRMWARE: [&str; 5] = [
    "bootcode.bin",
    "start.elf",
    "fixup.dat",
    "start4.elf",
    "fixup4.dat",
];

/// Debian's raspi-firmware as tests/setup.sh unpacks it into the cache, when it is there.
fn raspi_firmware() -> Option<PathBuf> {
    let cache = std::env::var_os("PUREBOOT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache"));
    let dir = cache.join("raspi-firmware");
    if REAL_FIRMWARE.iter().all(|n| dir.join(n).is_file()) {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED real firmware: no raspi-firmware under {} (run tests/setup.sh); the \
             folder tests use labelled stand-ins for {}",
            cache.display(),
            REAL_FIRMWARE.join(", ")
        );
        None
    }
}

/// A firmware folder shaped like the Raspberry Pi firmware's boot/ (downstream dtb names,
/// overlays/), with the Pi 5 trees in broadcom/ as Debian lays them out; the GPU firmware is
/// the real one from Debian's raspi-firmware when the cache has it.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let fw = dir.join("fw");
    fs::create_dir_all(fw.join("broadcom")).unwrap();
    fs::create_dir_all(fw.join("overlays")).unwrap();
    for name in [
        "bootcode.bin",
        "start.elf",
        "fixup.dat",
        "start4.elf",
        "fixup4.dat",
        "bcm2710-rpi-3-b.dtb",
        "bcm2710-rpi-3-b-plus.dtb",
        "bcm2711-rpi-4-b.dtb",
        "bcm2711-rpi-400.dtb",
        "bcm2708-rpi-b.dtb",
        "overlays/README",
        "overlays/vc4-kms-v3d.dtbo",
        "broadcom/bcm2712-rpi-5-b.dtb",
        "broadcom/bcm2712d0-rpi-5-b.dtb",
    ] {
        fs::write(fw.join(name), format!("firmware {name}")).unwrap();
    }
    if let Some(real) = raspi_firmware() {
        for name in REAL_FIRMWARE {
            fs::copy(real.join(name), fw.join(name)).unwrap();
        }
    }
    fs::write(dir.join("Image"), "kernel").unwrap();
    fs::write(dir.join("initrd.cpio.gz"), "initramfs").unwrap();
    Fixture { _tmp: tmp, dir }
}

fn every(path: PathBuf) -> Vec<PerModel> {
    vec![PerModel { model: None, path }]
}

fn spec(f: &Fixture, target: Target, models: &[Model]) -> Spec {
    Spec {
        target,
        models: models.to_vec(),
        kernel: every(f.dir.join("Image")),
        initramfs: every(f.dir.join("initrd.cpio.gz")),
        firmware_dir: f.dir.join("fw"),
        controller_url: "http://10.0.0.1:8080".into(),
        consoles: vec!["serial0,115200".into()],
        cmdline_extra: vec!["pureboot.log=debug".into()],
        device_tree: None,
    }
}

fn listing(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                names.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    names.sort();
    names
}

fn read(path: PathBuf) -> String {
    fs::read_to_string(path).unwrap()
}

fn write(root: &Path, spec: &Spec) -> Plan {
    let plan = plan(spec).unwrap();
    apply(root, &plan.files).unwrap();
    plan
}

fn serial() -> Serial {
    "D83ADD36".parse().unwrap()
}

#[test]
fn node_folder_per_model_ships_the_boards_trees_and_overlays_and_pins_none() {
    let cases: [(Model, &[&str]); 3] = [
        (
            Model::Pi3,
            &[
                "bootcode.bin",
                "d83add36/bcm2710-rpi-3-b-plus.dtb",
                "d83add36/bcm2710-rpi-3-b.dtb",
                "d83add36/fixup.dat",
                "d83add36/start.elf",
            ],
        ),
        (
            Model::Pi4,
            &[
                "d83add36/bcm2711-rpi-4-b.dtb",
                "d83add36/bcm2711-rpi-400.dtb",
                "d83add36/fixup4.dat",
                "d83add36/start4.elf",
            ],
        ),
        // The Pi 5 runs no start file, but its EEPROM needs one to keep the prefix.
        (
            Model::Pi5,
            &[
                "d83add36/bcm2712-rpi-5-b.dtb",
                "d83add36/bcm2712d0-rpi-5-b.dtb",
                "d83add36/start4.elf",
            ],
        ),
    ];
    for (model, specific) in cases {
        let f = fixture();
        let root = f.dir.join("tftp");
        let plan = write(&root, &spec(&f, Target::Node(serial()), &[model]));
        assert!(plan.notes.is_empty(), "{model:?}: {:?}", plan.notes);
        let mut expected: Vec<String> = [
            "d83add36/cmdline.txt",
            "d83add36/config.txt",
            "d83add36/initramfs.img",
            "d83add36/kernel8.img",
            "d83add36/overlays/README",
            "d83add36/overlays/vc4-kms-v3d.dtbo",
        ]
        .iter()
        .chain(specific)
        .map(|s| s.to_string())
        .collect();
        expected.sort();
        assert_eq!(listing(&root), expected, "{model:?}");
        let config = read(root.join("d83add36/config.txt"));
        assert!(!config.contains("device_tree"), "{config}");
        assert!(!config.contains("upstream_kernel"), "{config}");
        assert!(
            !config.contains('['),
            "a node folder has no sections: {config}"
        );
        assert!(
            config.contains("\nkernel=kernel8.img\ninitramfs initramfs.img followkernel\n"),
            "{config}"
        );
        assert!(config.contains("\narm_64bit=1\n") && config.contains("\nenable_uart=1\n"));
        let cmdline = read(root.join("d83add36/cmdline.txt"));
        assert_eq!(cmdline.lines().count(), 1);
        assert!(cmdline.contains("pureboot.url=http://10.0.0.1:8080 pureboot.serial=d83add36"));
        assert_eq!(read(root.join("d83add36/kernel8.img")), "kernel");
        assert_eq!(read(root.join("d83add36/initramfs.img")), "initramfs");
        assert_eq!(
            read(root.join("d83add36/overlays/vc4-kms-v3d.dtbo")),
            "firmware overlays/vc4-kms-v3d.dtbo"
        );
    }
}

#[test]
fn pi5_folder_gets_a_start_file_even_without_one_in_the_firmware() {
    let f = fixture();
    let root = f.dir.join("tftp");
    let plan = write(&root, &spec(&f, Target::Node(serial()), &[Model::Pi5]));
    assert_eq!(
        fs::read(root.join("d83add36/start4.elf")).unwrap(),
        fs::read(f.dir.join("fw/start4.elf")).unwrap(),
        "the firmware's own start4.elf when there is one"
    );
    assert!(plan.notes.is_empty());

    fs::remove_file(f.dir.join("fw/start4.elf")).unwrap();
    let root = f.dir.join("tftp2");
    let plan = write(&root, &spec(&f, Target::Node(serial()), &[Model::Pi5]));
    assert_eq!(read(root.join("d83add36/start4.elf")), PI5_PREFIX_MARKER);
    assert!(
        plan.notes.iter().any(|n| n.contains("start4.elf")),
        "{:?}",
        plan.notes
    );
    // A Pi 4 needs the real one: its absence is an error, not a marker.
    let err = plan_err(&spec(&f, Target::Node(serial()), &[Model::Pi4]));
    assert!(err.contains("start4.elf not found"), "{err}");
}

fn plan_err(spec: &Spec) -> String {
    format!("{:#}", plan(spec).unwrap_err())
}

#[test]
fn same_filesystem_files_are_hard_links() {
    use std::os::unix::fs::MetadataExt;
    let f = fixture();
    let root = f.dir.join("tftp");
    let plan = plan(&spec(&f, Target::Node(serial()), &[Model::Pi4])).unwrap();
    let written = apply(&root, &plan.files).unwrap();
    assert!(written
        .iter()
        .any(|(p, w)| p.ends_with("kernel8.img") && *w == Written::Linked));
    let linked = fs::metadata(root.join("d83add36/kernel8.img")).unwrap();
    assert_eq!(
        linked.ino(),
        fs::metadata(f.dir.join("Image")).unwrap().ino()
    );
    // Rewriting replaces, it does not fail on existing files.
    apply(&root, &plan.files).unwrap();
}

#[test]
fn discovery_has_a_section_and_an_initramfs_per_model() {
    let f = fixture();
    fs::write(f.dir.join("initrd-pi3.cpio.gz"), "pi3 initramfs").unwrap();
    fs::write(f.dir.join("kernel_2712.img"), "pi5 kernel").unwrap();
    let root = f.dir.join("tftp");
    let mut s = spec(&f, Target::Discovery, &[Model::Pi3, Model::Pi4, Model::Pi5]);
    s.initramfs.push(PerModel {
        model: Some(Model::Pi3),
        path: f.dir.join("initrd-pi3.cpio.gz"),
    });
    s.kernel.push(
        format!("pi5={}", f.dir.join("kernel_2712.img").display())
            .parse()
            .unwrap(),
    );
    write(&root, &s);
    let names = listing(&root);
    for name in [
        "config.txt",
        "cmdline.txt",
        "kernel8.img",
        "kernel8-pi5.img",
        "initramfs.img",
        "initramfs-pi3.img",
        "bootcode.bin",
        "start.elf",
        "start4.elf",
        "bcm2710-rpi-3-b-plus.dtb",
        "bcm2711-rpi-400.dtb",
        "bcm2712-rpi-5-b.dtb",
        "overlays/README",
    ] {
        assert!(
            names.contains(&name.to_string()),
            "{name} missing from {names:?}"
        );
    }
    assert!(
        !names.contains(&"bcm2708-rpi-b.dtb".to_string()),
        "{names:?}"
    );
    assert_eq!(read(root.join("initramfs-pi3.img")), "pi3 initramfs");
    assert_eq!(read(root.join("initramfs.img")), "initramfs");
    assert!(
        !names.contains(&"initramfs-pi4.img".to_string()),
        "{names:?}"
    );
    assert_eq!(read(root.join("kernel8-pi5.img")), "pi5 kernel");
    assert_eq!(read(root.join("kernel8.img")), "kernel");
    let config = read(root.join("config.txt"));
    let tail: Vec<&str> = config.lines().skip(3).collect();
    assert_eq!(
        tail,
        [
            "[pi3]",
            "kernel=kernel8.img",
            "initramfs initramfs-pi3.img followkernel",
            "[pi4]",
            "kernel=kernel8.img",
            "initramfs initramfs.img followkernel",
            "[pi5]",
            "kernel=kernel8-pi5.img",
            "initramfs initramfs.img followkernel",
            "[all]",
        ],
        "{config}"
    );
    let cmdline = read(root.join("cmdline.txt"));
    assert!(cmdline.contains("pureboot.mode=discovery") && !cmdline.contains("pureboot.serial"));
}

#[test]
fn per_model_files_are_checked() {
    let f = fixture();
    let mut s = spec(&f, Target::Discovery, &[Model::Pi3, Model::Pi4]);
    s.initramfs = vec![PerModel {
        model: Some(Model::Pi3),
        path: f.dir.join("initrd.cpio.gz"),
    }];
    assert!(
        plan_err(&s).contains("no --initramfs for pi4"),
        "{}",
        plan_err(&s)
    );
    s.initramfs.push(PerModel {
        model: Some(Model::Pi5),
        path: f.dir.join("initrd.cpio.gz"),
    });
    assert!(
        plan_err(&s).contains("pi5 is not among --model"),
        "{}",
        plan_err(&s)
    );
    assert_eq!(
        "pi4=/a=b".parse::<PerModel>().unwrap(),
        PerModel {
            model: Some(Model::Pi4),
            path: "/a=b".into()
        }
    );
    assert_eq!("x=1".parse::<PerModel>().unwrap().model, None);
    assert!("pi3=".parse::<PerModel>().is_err());
}

#[test]
fn mainline_named_trees_ask_the_firmware_for_upstream_names() {
    // Debian's kernel package: /usr/lib/linux-image-*/broadcom/bcm2837-rpi-3-b*.dtb.
    let f = fixture();
    let fw = f.dir.join("debian");
    fs::create_dir_all(fw.join("broadcom")).unwrap();
    for name in ["bootcode.bin", "start.elf", "fixup.dat"] {
        fs::copy(f.dir.join("fw").join(name), fw.join(name)).unwrap();
    }
    for name in ["bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb"] {
        fs::write(fw.join("broadcom").join(name), "mainline").unwrap();
    }
    let mut s = spec(&f, Target::Node(serial()), &[Model::Pi3]);
    s.firmware_dir = fw;
    let root = f.dir.join("tftp");
    let plan = write(&root, &s);
    let config = read(root.join("d83add36/config.txt"));
    assert!(config.contains("\nupstream_kernel=1\n"), "{config}");
    assert!(!config.contains("device_tree"), "{config}");
    assert_eq!(
        read(root.join("d83add36/bcm2837-rpi-3-b-plus.dtb")),
        "mainline"
    );
    assert!(
        plan.notes.iter().any(|n| n.contains("overlays/")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn device_tree_is_pinned_only_on_request() {
    let f = fixture();
    let root = f.dir.join("tftp");
    let mut s = spec(&f, Target::Node(serial()), &[Model::Pi3]);
    s.device_tree = Some("bcm2710-rpi-3-b-plus.dtb".into());
    write(&root, &s);
    let config = read(root.join("d83add36/config.txt"));
    assert!(
        config.contains("\ndevice_tree=bcm2710-rpi-3-b-plus.dtb\n"),
        "{config}"
    );
    let names = listing(&root);
    assert!(names.contains(&"d83add36/bcm2710-rpi-3-b-plus.dtb".to_string()));
    assert!(!names.contains(&"d83add36/bcm2710-rpi-3-b.dtb".to_string()));

    let mut several = spec(&f, Target::Discovery, &[Model::Pi3, Model::Pi4]);
    several.device_tree = Some("bcm2711-rpi-4-b.dtb".into());
    assert!(plan_err(&several).contains("--device-tree"));
    s.device_tree = Some("bcm2710-rpi-cm3.dtb".into());
    assert!(plan_err(&s).contains("bcm2710-rpi-cm3.dtb not found"));
}

#[test]
fn missing_inputs_and_bad_url_are_refused() {
    let f = fixture();
    fs::remove_file(f.dir.join("fw/start4.elf")).unwrap();
    let err = plan_err(&spec(&f, Target::Node(serial()), &[Model::Pi4]));
    assert!(err.contains("start4.elf not found"), "{err}");
    for name in ["bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb"] {
        fs::remove_file(f.dir.join("fw").join(name)).unwrap();
    }
    fs::write(f.dir.join("fw/start4.elf"), "x").unwrap();
    let err = plan_err(&spec(&f, Target::Node(serial()), &[Model::Pi4]));
    assert!(err.contains("no device tree for pi4"), "{err}");
    let mut bad = spec(&f, Target::Node(serial()), &[Model::Pi5]);
    bad.controller_url = "10.0.0.1:8080".into();
    assert!(plan_err(&bad).contains("--controller-url"));
    // Several controllers: each one an http:// URL.
    bad.controller_url = "http://10.0.0.1:8080,10.0.0.2:8080".into();
    assert!(plan_err(&bad).contains("--controller-url"));
    bad.controller_url = "http://10.0.0.1:8080,".into();
    assert!(plan_err(&bad).contains("--controller-url"));
    let mut bad = spec(&f, Target::Node(serial()), &[Model::Pi5]);
    bad.kernel = every(f.dir.join("nope"));
    assert!(plan_err(&bad).contains("--kernel"));
}

#[test]
fn several_controllers_go_into_the_command_line_as_one_list() {
    let f = fixture();
    let root = f.dir.join("tftp");
    let mut s = spec(&f, Target::Node(serial()), &[Model::Pi4]);
    s.controller_url = "http://10.0.0.1:8080,http://10.0.0.2:8080".into();
    write(&root, &s);
    let cmdline = read(root.join("d83add36/cmdline.txt"));
    assert!(
        cmdline.contains("pureboot.url=http://10.0.0.1:8080,http://10.0.0.2:8080 "),
        "{cmdline}"
    );
}
