//! Root-only tests on real links: each re-runs this test binary inside a fresh network and
//! mount namespace (`unshare --net --mount`), creates a veth pair there, and brings one end up
//! with `bring_up` (against dnsmasq on the other end for DHCP). Nothing leaves the namespace:
//! it has no link to the host's interfaces.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// Set only in the re-executed child, which is inside the private namespaces.
const INSIDE: &str = "PI_INIT_NETNS_INSIDE";
const SERVER_IF: &str = "pbsrv0";
const CLIENT_IF: &str = "pbcli0";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Run the ignored test `inner` of this module in a new network + mount namespace.
fn in_netns(inner: &str, tools: &[&str]) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP {inner}: needs root (network namespaces, veth, raw sockets)");
        return;
    }
    if let Some(missing) = tools.iter().find(|t| !have(t)) {
        eprintln!("SKIP {inner}: {missing} is not installed (apt-get install -y dnsmasq-base iproute2 util-linux)");
        return;
    }
    // Test names omit the crate: pi_init::net::netns_tests -> net::netns_tests::<inner>.
    let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let name = format!("{module}::{inner}");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(&exe)
        .args([
            name.as_str(),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INSIDE, "1")
        .output()
        .expect("running unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- {name} in a private netns ---\n{stdout}{stderr}");
    assert!(
        out.status.success(),
        "{name} failed in the namespace ({})",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "{name} did not run in the namespace"
    );
}

#[test]
fn dhcp_lease_from_dnsmasq_over_veth() {
    in_netns(
        "inner_dhcp_lease_from_dnsmasq",
        &["unshare", "ip", "dnsmasq"],
    );
}

#[test]
fn static_ip_param_over_veth() {
    in_netns("inner_static_ip_param", &["unshare", "ip"]);
}

/// Inside the namespace: fresh sysfs (so /sys/class/net shows this namespace), lo up and a
/// veth pair whose server end has `server_cidr`. Refuses to run anywhere else.
fn namespace_with_veth(server_cidr: &str) -> PathBuf {
    assert_eq!(
        std::env::var(INSIDE).as_deref(),
        Ok("1"),
        "must only run via in_netns"
    );
    let _ = env_logger::builder()
        .is_test(true)
        .filter_level(log::LevelFilter::Debug)
        .try_init();
    nix::mount::mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mounting sysfs in the private mount namespace");
    let ifaces: Vec<_> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        ifaces,
        ["lo"],
        "not a fresh network namespace: refusing to touch its interfaces"
    );
    ip(&["link", "set", "lo", "up"]);
    ip(&[
        "link", "add", SERVER_IF, "type", "veth", "peer", "name", CLIENT_IF,
    ]);
    ip(&["addr", "add", server_cidr, "dev", SERVER_IF]);
    ip(&["link", "set", SERVER_IF, "up"]);
    let dir = std::env::temp_dir().join(format!("pi-init-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn request(ip: IpParam, iface: Option<&str>, dir: &Path) -> NetRequest {
    NetRequest {
        ip,
        iface: iface.map(str::to_owned),
        iface_timeout: Duration::from_secs(2),
        carrier_timeout: Duration::from_secs(5),
        dhcp_timeout: Duration::from_secs(20),
        resolv_conf: Some(dir.join("etc/resolv.conf")),
        hostname: Some("pi-netns-test".into()),
        sysfs: PathBuf::from("/sys"),
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "runs only inside the namespace set up by dhcp_lease_from_dnsmasq_over_veth"]
fn inner_dhcp_lease_from_dnsmasq() {
    let dir = namespace_with_veth("192.168.77.1/24");
    let leases = dir.join("leases");
    let _dnsmasq = KillOnDrop(
        Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--log-facility=-",
                "--log-dhcp",
                // dnsmasq pings an address before offering it, which holds the first OFFER
                // back ~3 s; that measures dnsmasq, not the client.
                "--no-ping",
                "--conf-file=/dev/null",
                "--port=0",
                "--user=root",
                "--bind-interfaces",
                &format!("--interface={SERVER_IF}"),
                "--dhcp-range=192.168.77.50,192.168.77.60,255.255.255.0,1h",
                "--dhcp-option=option:router,192.168.77.254",
                "--dhcp-option=option:dns-server,192.168.77.53",
                "--dhcp-option=option:domain-name,pureboot.test",
                &format!("--dhcp-leasefile={}", leases.display()),
                &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
            ])
            .spawn()
            .expect("starting dnsmasq"),
    );

    let started = Instant::now();
    let cfg = bring_up(&request(
        IpParam::Dhcp { device: None },
        Some(CLIENT_IF),
        &dir,
    ))
    .expect("DHCP bring-up");
    eprintln!("lease {cfg:?} in {} ms", started.elapsed().as_millis());

    assert_eq!(cfg.source, NetSource::Dhcp);
    assert_eq!(cfg.iface, CLIENT_IF);
    let sys_mac = std::fs::read_to_string(format!("/sys/class/net/{CLIENT_IF}/address")).unwrap();
    assert_eq!(cfg.mac, sys_mac.trim());
    let octets = cfg.addr.octets();
    assert!(
        octets[..3] == [192, 168, 77] && (50..=60).contains(&octets[3]),
        "address {} outside the pool",
        cfg.addr
    );
    assert_eq!(cfg.prefix_len, 24);
    assert_eq!(cfg.gateway, Some(Ipv4Addr::new(192, 168, 77, 254)));
    assert_eq!(cfg.dns, [Ipv4Addr::new(192, 168, 77, 53)]);
    assert_eq!(cfg.server, Some(Ipv4Addr::new(192, 168, 77, 1)));

    // The kernel's view, read with iproute2 rather than our own code.
    let addrs = ip(&["-4", "-o", "addr", "show", "dev", CLIENT_IF]);
    assert!(addrs.contains(&format!("inet {}/24", cfg.addr)), "{addrs}");
    let routes = ip(&["-4", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("default via 192.168.77.254 dev {CLIENT_IF}")),
        "{routes}"
    );
    let resolv = std::fs::read_to_string(dir.join("etc/resolv.conf")).unwrap();
    assert!(
        resolv.contains("nameserver 192.168.77.53\n") && resolv.contains("search pureboot.test\n"),
        "{resolv}"
    );
    // dnsmasq recorded our MAC and the hostname we sent (option 12).
    let lease_db = std::fs::read_to_string(&leases).unwrap();
    assert!(
        lease_db.contains(&cfg.mac) && lease_db.contains("pi-netns-test"),
        "{lease_db}"
    );

    // A second run finds the address and keeps it.
    let again = bring_up(&request(
        IpParam::Dhcp { device: None },
        Some(CLIENT_IF),
        &dir,
    ))
    .unwrap();
    assert_eq!(again.source, NetSource::Existing);
    assert_eq!(
        (again.addr, again.prefix_len, again.gateway),
        (cfg.addr, 24, cfg.gateway)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "runs only inside the namespace set up by static_ip_param_over_veth"]
fn inner_static_ip_param() {
    let dir = namespace_with_veth("192.168.78.1/24");
    let param = parse_ip_param(&format!(
        "192.168.78.9::192.168.78.254:255.255.255.0:pi-static:{CLIENT_IF}:off:192.168.78.53"
    ))
    .unwrap();

    // ip=off with nothing configured is an error naming the stage.
    let err = bring_up(&request(IpParam::Off, Some(CLIENT_IF), &dir)).unwrap_err();
    assert_eq!(
        (err.stage, err.iface.as_deref()),
        ("address", Some(CLIENT_IF)),
        "{err}"
    );

    // The interface comes from the ip= device field.
    let cfg = bring_up(&request(param, None, &dir));
    eprintln!("{}{}", ip(&["route"]), ip(&["addr"]));
    let cfg = cfg.expect("static bring-up");
    assert_eq!(cfg.source, NetSource::Static);
    assert_eq!(
        (cfg.iface.as_str(), cfg.addr, cfg.prefix_len),
        (CLIENT_IF, Ipv4Addr::new(192, 168, 78, 9), 24)
    );
    let flags = ip(&["-o", "link", "show", "dev", CLIENT_IF]);
    assert!(
        flags.contains(",UP") || flags.contains("<UP"),
        "link not up: {flags}"
    );
    let addrs = ip(&["-4", "-o", "addr", "show", "dev", CLIENT_IF]);
    assert!(
        addrs.contains("inet 192.168.78.9/24 brd 192.168.78.255"),
        "{addrs}"
    );
    let routes = ip(&["-4", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("default via 192.168.78.254 dev {CLIENT_IF}")),
        "{routes}"
    );
    let resolv = std::fs::read_to_string(dir.join("etc/resolv.conf")).unwrap();
    assert_eq!(resolv, "# written by pi-init\nnameserver 192.168.78.53\n");

    // Now ip=off keeps what is there.
    let kept = bring_up(&request(IpParam::Off, Some(CLIENT_IF), &dir)).unwrap();
    assert_eq!(
        (kept.source, kept.addr, kept.gateway),
        (NetSource::Existing, cfg.addr, cfg.gateway)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
