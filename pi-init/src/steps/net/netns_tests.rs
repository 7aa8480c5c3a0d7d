//! Root-only tests on real links. Each re-runs this test binary inside a fresh network and
//! mount namespace (`unshare --net --mount`). There a veth pair joins the client end (left
//! alone in that namespace, as on a Pi) to a server end moved into a nested namespace of its
//! own, where dnsmasq serves DHCP. Nothing leaves: neither namespace reaches the host's links.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::decide::ip_param::parse_ip_param;

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
        eprintln!(
            "SKIP {inner}: {missing} is not installed (apt-get install -y dnsmasq-base iproute2 util-linux)"
        );
        return;
    }
    // Test names omit the crate: pi_init::steps::net::netns_tests -> steps::net::netns_tests::<inner>.
    let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let name = format!("{module}::{inner}");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(&exe)
        .args([
            &name,
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
        &["unshare", "nsenter", "ip", "dnsmasq"],
    );
}

#[test]
fn static_ip_param_over_veth() {
    in_netns("inner_static_ip_param", &["unshare", "nsenter", "ip"]);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The namespaces of one test: the client's (this process's) and the server's.
struct Lab {
    dir: PathBuf,
    /// Holds the server's network namespace open.
    server_ns: KillOnDrop,
}

impl Lab {
    /// Fresh sysfs (so /sys/class/net shows this namespace), lo up, and the veth pair with the
    /// server end (`server_cidr`, up) in its own namespace. Refuses to run anywhere else.
    fn new(server_cidr: &str) -> Lab {
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
            "not a fresh network namespace: refusing to touch it"
        );
        run(Command::new("ip").args(["link", "set", "lo", "up"]));

        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .spawn()
            .expect("starting the server namespace");
        let lab = Lab {
            dir: std::env::temp_dir().join(format!("pi-init-netns-{}", std::process::id())),
            server_ns: KillOnDrop(holder),
        };
        std::fs::create_dir_all(&lab.dir).unwrap();
        let pid = lab.server_ns.0.id().to_string();
        // Wait until unshare has switched namespaces (its /proc ns link changes).
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let moved = link::poll_until(Duration::from_secs(5), || {
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
            (ns != own).then_some(())
        });
        assert!(moved.is_some(), "server namespace did not appear");
        run(Command::new("ip").args([
            "link", "add", CLIENT_IF, "type", "veth", "peer", "name", SERVER_IF, "netns", &pid,
        ]));
        run(&mut lab.server(&["ip", "link", "set", "lo", "up"]));
        run(&mut lab.server(&["ip", "addr", "add", server_cidr, "dev", SERVER_IF]));
        run(&mut lab.server(&["ip", "link", "set", SERVER_IF, "up"]));
        lab
    }

    /// A command to run in the server's namespace.
    fn server(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.server_ns.0.id().to_string(), "-n", "--"])
            .args(argv);
        c
    }

    fn request(&self, ip: IpParam, iface: Option<&str>) -> NetRequest {
        NetRequest {
            ip,
            iface: iface.map(str::to_owned),
            iface_timeout: Duration::from_secs(2),
            carrier_timeout: Duration::from_secs(5),
            dhcp_timeout: Duration::from_secs(20),
            resolv_conf: Some(self.resolv_conf()),
            hostname: Some("pi-netns-test".into()),
            sysfs: PathBuf::from("/sys"),
        }
    }

    fn resolv_conf(&self) -> PathBuf {
        self.dir.join("etc/resolv.conf")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a helper command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The client's kernel state, read with iproute2 rather than our own code.
fn client_ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

fn dnsmasq(lab: &Lab, leases: &Path) -> KillOnDrop {
    let mut cmd = lab.server(&[
        "dnsmasq",
        "--keep-in-foreground",
        "--log-facility=-",
        "--log-dhcp",
        // dnsmasq pings an address before offering it, which holds the first OFFER back ~3 s;
        // that measures dnsmasq, not the client.
        "--no-ping",
        "--conf-file=/dev/null",
        "--port=0",
        "--user=root",
        "--bind-interfaces",
        "--dhcp-range=192.168.77.50,192.168.77.60,255.255.255.0,1h",
        "--dhcp-option=option:router,192.168.77.1",
        "--dhcp-option=option:dns-server,192.168.77.53",
        "--dhcp-option=option:domain-name,pureboot.test",
        "--dhcp-option=12,pi-from-dhcp",
    ]);
    cmd.arg(format!("--interface={SERVER_IF}"));
    cmd.arg(format!("--dhcp-leasefile={}", leases.display()));
    cmd.arg(format!(
        "--pid-file={}",
        lab.dir.join("dnsmasq.pid").display()
    ));
    let mut server = KillOnDrop(cmd.spawn().expect("starting dnsmasq"));
    // Ready once it wrote its pid file; a bad option makes it exit instead.
    let pid_file = lab.dir.join("dnsmasq.pid");
    let ready = link::poll_until(Duration::from_secs(5), || {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("dnsmasq exited at start-up ({status}); see its stderr above");
        }
        pid_file.exists().then_some(())
    });
    assert!(ready.is_some(), "dnsmasq did not start within 5 s");
    server
}

#[test]
#[ignore = "runs only inside the namespace set up by dhcp_lease_from_dnsmasq_over_veth"]
fn inner_dhcp_lease_from_dnsmasq() {
    let lab = Lab::new("192.168.77.1/24");
    let leases = lab.dir.join("leases");
    let _server = dnsmasq(&lab, &leases);

    // No interface named: the first with carrier is used, as on a Pi without pureboot.iface=.
    let started = Instant::now();
    let cfg = bring_up(&lab.request(IpParam::Dhcp { device: None }, None)).expect("DHCP bring-up");
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
    assert_eq!(cfg.gateway, Some(Ipv4Addr::new(192, 168, 77, 1)));
    assert_eq!(cfg.dns, [Ipv4Addr::new(192, 168, 77, 53)]);
    assert_eq!(cfg.server, Some(Ipv4Addr::new(192, 168, 77, 1)));
    assert_eq!(cfg.hostname.as_deref(), Some("pi-from-dhcp"));

    let addrs = client_ip(&["-4", "-o", "addr", "show", "dev", CLIENT_IF]);
    assert!(addrs.contains(&format!("inet {}/24", cfg.addr)), "{addrs}");
    let routes = client_ip(&["-4", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("default via 192.168.77.1 dev {CLIENT_IF}")),
        "{routes}"
    );
    let resolv = std::fs::read_to_string(lab.resolv_conf()).unwrap();
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
    // The address works: the server's kernel learned our MAC for it (ARP over the veth).
    let probe = std::net::UdpSocket::bind((cfg.addr, 0)).unwrap();
    probe.send_to(b"hello", ("192.168.77.1", 9)).unwrap();
    let learned = link::poll_until(Duration::from_secs(2), || {
        let neigh = run(&mut lab.server(&["ip", "neigh", "show", "dev", SERVER_IF]));
        neigh.contains(&cfg.addr.to_string()).then_some(neigh)
    });
    assert!(
        learned.is_some_and(|n| n.contains(&cfg.mac)),
        "server never saw {} from {}",
        cfg.addr,
        cfg.mac
    );

    // A second run finds the address and keeps it.
    let again = bring_up(&lab.request(IpParam::Dhcp { device: None }, Some(CLIENT_IF))).unwrap();
    assert_eq!(again.source, NetSource::Existing);
    assert_eq!(
        (again.addr, again.prefix_len, again.gateway),
        (cfg.addr, 24, cfg.gateway)
    );
}

#[test]
#[ignore = "runs only inside the namespace set up by static_ip_param_over_veth"]
fn inner_static_ip_param() {
    let lab = Lab::new("192.168.78.1/24");
    let param = parse_ip_param(&format!(
        "192.168.78.9::192.168.78.1:255.255.255.0:pi-static:{CLIENT_IF}:off:192.168.78.53"
    ))
    .unwrap();

    // ip=off with nothing configured is an error naming the stage.
    let err = bring_up(&lab.request(IpParam::Off, Some(CLIENT_IF))).unwrap_err();
    assert_eq!(
        (err.stage, err.iface.as_deref()),
        ("address", Some(CLIENT_IF)),
        "{err}"
    );

    // The interface comes from the ip= device field.
    let cfg = bring_up(&lab.request(param, None)).expect("static bring-up");
    assert_eq!(cfg.source, NetSource::Static);
    assert_eq!(cfg.hostname.as_deref(), Some("pi-static"));
    assert_eq!(
        (cfg.iface.as_str(), cfg.addr, cfg.prefix_len),
        (CLIENT_IF, Ipv4Addr::new(192, 168, 78, 9), 24)
    );
    let flags = client_ip(&["-o", "link", "show", "dev", CLIENT_IF]);
    assert!(
        flags.contains(",UP") || flags.contains("<UP"),
        "link not up: {flags}"
    );
    let addrs = client_ip(&["-4", "-o", "addr", "show", "dev", CLIENT_IF]);
    assert!(
        addrs.contains("inet 192.168.78.9/24 brd 192.168.78.255"),
        "{addrs}"
    );
    let routes = client_ip(&["-4", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("default via 192.168.78.1 dev {CLIENT_IF}")),
        "{routes}"
    );
    let resolv = std::fs::read_to_string(lab.resolv_conf()).unwrap();
    assert_eq!(resolv, "# written by pi-init\nnameserver 192.168.78.53\n");

    // Now ip=off keeps what is there.
    let kept = bring_up(&lab.request(IpParam::Off, Some(CLIENT_IF))).unwrap();
    assert_eq!(
        (kept.source, kept.addr, kept.gateway),
        (NetSource::Existing, cfg.addr, cfg.gateway)
    );
}
