//! The dnsmasq configuration `pureboot-image dnsmasq` writes, served for
//! real: dnsmasq runs in a private namespace on one end of a veth pair with TFTP folders
//! `pureboot-image tftp` wrote for a Pi 3, a Pi 4 and a Pi 5; from a second namespace on the
//! other end (the Pi), every file of each folder (the real bootcode.bin, start*.elf and
//! fixup*.dat of Debian's raspi-firmware among them) is fetched over TFTP by curl and compared
//! byte for byte, and a DHCP DISCOVER shaped like the Pi boot ROM's gets the proxy offer
//! carrying option 43.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pureboot_harness::env::{TestEnv, RASPI_FIRMWARE_FILES};
use pureboot_harness::netns::Netns;
use pureboot_harness::process::{self, Daemon};
use pureboot_harness::workdir::WorkDir;
use pureboot_harness::{dhcp, require};

const SERVER: &str = "10.99.0.1";

/// A firmware folder shaped like the Raspberry Pi firmware's boot/: the real GPU firmware
/// from `real` (raspi-firmware), device trees and an overlay as labelled stand-ins.
fn firmware(dir: &Path, real: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for name in RASPI_FIRMWARE_FILES {
        std::fs::copy(real.join(name), dir.join(name)).unwrap();
    }
    for name in [
        "bcm2710-rpi-3-b.dtb",
        "bcm2710-rpi-3-b-plus.dtb",
        "bcm2711-rpi-4-b.dtb",
        "bcm2711-rpi-400.dtb",
        "bcm2712-rpi-5-b.dtb",
        "bcm2712d0-rpi-5-b.dtb",
        "overlays/vc4-kms-v3d.dtbo",
    ] {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("firmware {name} ").repeat(100)).unwrap();
    }
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn generated_dnsmasq_serves_every_models_files_and_the_proxy_offer() {
    let name = "dnsmasq";
    let env = require!(name, TestEnv::get());
    let image = require!(name, env.binary("pureboot-image"));
    require!(
        name,
        pureboot_harness::host::locate("dnsmasq")
            .map(|_| ())
            .ok_or("`dnsmasq` not found: run `sudo tests/setup.sh`")
    );
    let real = require!(name, env.raspi_firmware());
    let dir = WorkDir::new(name).unwrap();
    let fw = dir.join("fw");
    firmware(&fw, &real);
    std::fs::write(dir.join("kernel8.img"), "kernel ".repeat(3000)).unwrap();
    std::fs::write(dir.join("initramfs.img"), "initramfs ".repeat(3000)).unwrap();
    let root = dir.join("tftp");
    let nodes = [
        ("pi3", "3333aaaa"),
        ("pi4", "4444bbbb"),
        ("pi5", "5555cccc"),
    ];
    for (model, serial) in nodes {
        process::run(
            Command::new(&image)
                .args(["tftp", "--serial", serial, "--model", model])
                .arg("--kernel")
                .arg(dir.join("kernel8.img"))
                .arg("--initramfs")
                .arg(dir.join("initramfs.img"))
                .arg("--firmware-dir")
                .arg(&fw)
                .args(["--controller-url", "http://10.99.0.1:8080", "-o"])
                .arg(&root),
        )
        .unwrap();
    }
    let conf = dir.join("dnsmasq.conf");
    process::run(
        Command::new(&image)
            .arg("dnsmasq")
            .arg("--tftp-root")
            .arg(&root)
            .args(["--subnet", "10.99.0.0", "--interface", "v0", "-o"])
            .arg(&conf),
    )
    .unwrap();

    // The server's namespace holds dnsmasq and v0; the Pi's holds v1 (a separate host: in
    // one namespace the kernel hands a broadcast sent on v1 to the local socket "on v1", and
    // dnsmasq never sees it arrive on v0).
    let ns = Netns::new().unwrap();
    let pi = Netns::new().unwrap();
    let pi_pid = pi.pid().to_string();
    for args in [
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"][..],
        &["link", "set", "v1", "netns", &pi_pid],
        &["addr", "add", "10.99.0.1/24", "dev", "v0"],
        &["link", "set", "v0", "up"],
    ] {
        process::run(ns.command("ip").args(args)).unwrap();
    }
    for args in [
        &["addr", "add", "10.99.0.2/24", "dev", "v1"][..],
        &["link", "set", "v1", "up"],
    ] {
        process::run(pi.command("ip").args(args)).unwrap();
    }
    let mut dnsmasq = Daemon::spawn(
        "dnsmasq",
        {
            let mut c = ns.command("dnsmasq");
            c.arg("--keep-in-foreground")
                .arg(format!("--conf-file={}", conf.display()))
                // Test-only: the scratch directory is root's; the packaged default drops to
                // the dnsmasq user.
                .arg("--user=root")
                .arg("--log-facility=-")
                .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
                .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()));
            c
        },
        &dir.join("dnsmasq.log"),
    )
    .unwrap();
    let log = |d: &Daemon| d.log_tail(40);
    let up =
        pureboot_harness::wait::poll(Duration::from_secs(10), Duration::from_millis(200), || {
            std::fs::read_to_string(dir.join("dnsmasq.log")).is_ok_and(|l| l.contains("TFTP root"))
        });
    assert!(up.is_ok(), "dnsmasq did not start:\n{}", log(&dnsmasq));

    // Every file of each model's folder (and the Pi 3's bootcode.bin at the root), over TFTP.
    let files = files_under(&root);
    for (model, serial) in nodes {
        let folder: Vec<&PathBuf> = files.iter().filter(|f| f.starts_with(serial)).collect();
        for must in ["config.txt", "cmdline.txt", "kernel8.img", "initramfs.img"] {
            assert!(
                folder.iter().any(|f| f.ends_with(must)),
                "{model}: {must} missing from {folder:?}"
            );
        }
        let start = if model == "pi3" {
            "start.elf"
        } else {
            "start4.elf"
        };
        assert!(
            folder.iter().any(|f| f.ends_with(start)),
            "{model}: the folder keeps the EEPROM's prefix only with {start}: {folder:?}"
        );
    }
    assert!(files.contains(&PathBuf::from("bootcode.bin")), "{files:?}");
    // The folders carry the real firmware, byte for byte (what is fetched is compared below).
    for (file, source) in [
        ("bootcode.bin", "bootcode.bin"),
        ("3333aaaa/start.elf", "start.elf"),
        ("4444bbbb/start4.elf", "start4.elf"),
        ("4444bbbb/fixup4.dat", "fixup4.dat"),
    ] {
        assert_eq!(
            std::fs::read(root.join(file)).unwrap(),
            std::fs::read(real.join(source)).unwrap(),
            "{file} is not raspi-firmware's {source}"
        );
    }
    for file in &files {
        let got = dir.join("fetched");
        let _ = std::fs::remove_file(&got);
        let url = format!("tftp://{SERVER}/{}", file.display());
        let fetched = process::run(pi.command("curl").args(["-sS", "-o"]).arg(&got).arg(&url));
        assert!(fetched.is_ok(), "{url}: {fetched:?}\n{}", log(&dnsmasq));
        assert_eq!(
            std::fs::read(&got).unwrap(),
            std::fs::read(root.join(file)).unwrap(),
            "{url} differs from the file written"
        );
    }
    println!("{name}: {} files fetched over TFTP", files.len());
    // The check can fail: a file that is not there is refused.
    let missing = process::run(pi.command("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        &format!("tftp://{SERVER}/3333aaaa/no-such-file"),
    ]));
    assert!(missing.is_err(), "a missing file was served");

    // A DISCOVER like the Pi boot ROM's gets dnsmasq's proxy offer: no address, the boot
    // server, vendor class PXEClient, option 43 with "Raspberry Pi Boot" and its three spaces.
    let replies = pi
        .enter(|| {
            dhcp::exchange(
                "v1",
                &dhcp::discover([0xb8, 0x27, 0xeb, 0x3a, 0xdd, 0x36], 0x5eed_0001),
                Duration::from_secs(4),
            )
        })
        .unwrap();
    let offer = replies
        .iter()
        .find(|r| r.message_type() == Some(2))
        .unwrap_or_else(|| {
            let links = process::run(pi.command("ip").args(["-s", "link"])).unwrap_or_default();
            panic!("no DHCPOFFER ({replies:?})\n{}\n{links}", log(&dnsmasq))
        });
    assert_eq!(
        offer.yiaddr,
        std::net::Ipv4Addr::UNSPECIFIED,
        "a proxy offers no address"
    );
    assert_eq!(
        offer.options.get(&54).map(Vec::as_slice),
        Some(&[10, 99, 0, 1][..]),
        "server identifier: {offer:?}"
    );
    assert_eq!(
        offer.options.get(&60).map(Vec::as_slice),
        Some(&b"PXEClient"[..]),
        "{offer:?}"
    );
    let vendor = offer.options.get(&43).cloned().unwrap_or_default();
    let menu = b"Raspberry Pi Boot   ";
    assert!(
        vendor.windows(menu.len()).any(|w| w == menu),
        "option 43 {:?} lacks {:?}",
        String::from_utf8_lossy(&vendor),
        String::from_utf8_lossy(menu)
    );
    dnsmasq.stop(Duration::from_millis(500));
}
