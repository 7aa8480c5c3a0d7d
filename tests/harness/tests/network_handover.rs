//! The network handed over: the Debian root booted to systemd with one network stack turned
//! on (systemd-networkd, NetworkManager, ifupdown, dhcpcd), its address from a site's DHCP server
//! (dnsmasq on the lab's LAN) with a short lease. The node stays up for over four minutes
//! while a loop in the root prints a line every 5 s read from its NFS root; from outside,
//! the lines must keep coming (a root whose link or address was taken away stops them) and
//! dnsmasq's log must show the node renewing its lease, on the address pi-init took.
//!
//! dnsmasq grants two minutes at least (its documented floor; a 60 s `--dhcp-range` lease is
//! raised to 120 s), so the lease is 120 s with the renewal time (T1) at 30 s: four renewals
//! a lease time would be seen, and 4 minutes span two whole lease times.
//!
//! Long scenarios (about 6 minutes each under TCG): one file, run by tests/test.sh with
//! the others.

use std::time::Duration;

use pureboot_harness::guest_root::{self, NetStack, TICK_MARK, TICK_TEXT};
use pureboot_harness::lab::{Lab, LabOptions};
use pureboot_harness::qemu::{BootRun, Netdev, Outcome, VirtualPi};
use pureboot_harness::{initramfs, lan, pi_init_env, process, require, serial};

/// Ticks the loop prints (5 s apart): 270 s, over the 4 minutes asked.
const TICKS: u32 = 54;
/// The span the ticks must cover, by the guest's own uptime.
const MUST_SPAN: f64 = 240.0;
/// The longest silence allowed between two ticks (5 s apart, TCG and a renewal's stall).
const MAX_GAP: f64 = 20.0;
const LEASE: &str = "120";
const T1: u32 = 30;

/// One tick line: its uptime, what it read from the root, the address it saw.
struct Tick {
    up: f64,
    file: String,
    addr: String,
}

fn ticks(console: &str) -> Vec<Tick> {
    console
        .lines()
        .filter_map(|l| l.find(TICK_MARK).map(|at| &l[at..]))
        .filter_map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k).map(str::to_string))
            };
            Some(Tick {
                up: field("up=")?.parse().ok()?,
                file: field("file=")?,
                addr: field("addr=").unwrap_or_default(),
            })
        })
        .collect()
}

fn handover(name: &str, stack: NetStack, n: u32) {
    let env = pi_init_env!(name, without_controller);
    let debian = require!(name, env.debian_root());
    let opts = LabOptions {
        controller: false,
        ..Default::default()
    };
    let lab = Lab::start(name, env, opts).unwrap_or_else(|e| panic!("{name}: the lab: {e}"));
    let tar = guest_root::debian_stack_tarball(&debian, &lab.dir.join("root.tar"), stack, TICKS)
        .unwrap_or_else(|e| panic!("{name}: the root's tarball: {e}"));
    let root = lab.export().join("roots").join(name);
    std::fs::create_dir_all(&root).unwrap();
    process::run(
        std::process::Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-C"])
            .arg(&root)
            .arg("-xf")
            .arg(&tar),
    )
    .unwrap_or_else(|e| panic!("{name}: unpacking the root: {e}"));
    std::fs::remove_file(&tar).ok();

    lan::bridge_with_tap(&lab).unwrap_or_else(|e| panic!("{name}: the bridge: {e}"));
    let dhcp = lan::Dhcp::start(
        &lab,
        LEASE,
        &[
            format!("--dhcp-option=option:root-path,{}", root.display()),
            format!("--dhcp-option=option:T1,{T1}"),
        ],
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));

    let initrd = initramfs::pi_init(env).expect("checked by pi_init_env");
    let pi = VirtualPi::new(&serial(n), &env.kernel().image, &initrd)
        .arg("pureboot.log=debug")
        .arg("root=/dev/nfs")
        .arg("ip=dhcp")
        .netdev(Netdev::Tap(lan::TAP.into()))
        .timeout(Duration::from_secs(660));
    let run = lab.boot(&pi, "boot").unwrap();
    let log = dhcp.log_text();
    let fail = |what: &str, run: &BootRun| -> ! {
        panic!(
            "{name}: {what}\n{}\n----- dnsmasq -----\n{}\n{}",
            run.dump(),
            log.lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n"),
            lab.diagnostics()
        )
    };

    let t = ticks(&run.console);
    let (Some(first), Some(last)) = (t.first(), t.last()) else {
        fail("no tick line: the root's loop never ran", &run)
    };
    let span = last.up - first.up;
    let gap = t.windows(2).map(|w| w[1].up - w[0].up).fold(0.0, f64::max);
    println!(
        "{name}: {} ticks over {span:.0} s (longest gap {gap:.1} s), addresses {:?}",
        t.len(),
        t.iter()
            .map(|x| x.addr.split(',').next().unwrap_or_default())
            .collect::<std::collections::BTreeSet<_>>()
    );
    if run.outcome != Outcome::Exited || span < MUST_SPAN {
        fail(
            &format!(
                "the lines stopped: {} ticks over {span:.0} s, {MUST_SPAN} s wanted ({:?})",
                t.len(),
                run.outcome
            ),
            &run,
        );
    }
    if gap > MAX_GAP {
        fail(&format!("a silence of {gap:.1} s between two ticks"), &run);
    }
    if let Some(bad) = t.iter().find(|x| x.file != TICK_TEXT) {
        fail(&format!("a tick read {:?} from the root", bad.file), &run);
    }

    let mac = pi.mac();
    let ex = lan::exchanges(&log, &mac);
    let acks: Vec<&str> = ex
        .iter()
        .filter(|(k, _)| *k == "DHCPACK")
        .map(|(_, a)| *a)
        .collect();
    println!(
        "{name}: dnsmasq: {} exchanges with {mac}, {} DHCPACK",
        ex.len(),
        acks.len()
    );
    let Some(first_ack) = acks.first() else {
        fail("dnsmasq acknowledged no lease to the node", &run)
    };
    // pi-init's own ACK, then the stack's: with T1 at 30 s, about eight in 4 minutes.
    let renewals = acks.len() - 1;
    if renewals < 4 {
        fail(
            &format!("{renewals} renewal(s) in dnsmasq's log after pi-init's lease, 4 wanted"),
            &run,
        );
    }
    if let Some(other) = acks.iter().find(|a| *a != first_ack) {
        fail(
            &format!("the node's address changed: {first_ack} then {other}"),
            &run,
        );
    }
    if !ex
        .iter()
        .skip_while(|(k, _)| *k != "DHCPACK")
        .any(|(k, _)| *k == "DHCPREQUEST")
    {
        fail("no DHCPREQUEST from the node after the first lease", &run);
    }
}

#[test]
fn network_handover_to_systemd_networkd() {
    handover("handover-networkd", NetStack::Networkd, 0x251);
}

#[test]
fn network_handover_to_network_manager() {
    handover("handover-nm", NetStack::NetworkManager, 0x252);
}

#[test]
fn network_handover_to_ifupdown() {
    handover("handover-ifupdown", NetStack::Ifupdown, 0x253);
}

#[test]
fn network_handover_to_dhcpcd() {
    handover("handover-dhcpcd", NetStack::Dhcpcd, 0x254);
}
