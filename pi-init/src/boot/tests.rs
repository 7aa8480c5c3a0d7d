//! Whole attempts on the host against fakes (the recording `FakeSys`, a network and an HTTP
//! server that answer as each test says), from the command line to the exec of init; and
//! the failure policy's decisions.

use super::policy::{self, after_failure, reboot_delay, AfterFailure};
use super::*;
use crate::steps::controller::{HttpError, Reply};
use crate::steps::net::{NetConfig, NetError, NetRequest, NetSource};
use crate::steps::{agent_unit, switch_root};
use crate::support::testutil::TempDir;
use crate::sys::fake::{Call, FakeSys, FAKE_EXEC_ERROR};
use serde_json::Value;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// The network a test gets: eth0 with a DHCP lease, or the failure it is told.
#[derive(Default)]
struct FakeNetwork {
    fail: Option<&'static str>,
    panic: bool,
    asked: Mutex<Vec<NetRequest>>,
}

impl Network for FakeNetwork {
    fn bring_up(&self, req: &NetRequest) -> Result<NetConfig, NetError> {
        self.asked.lock().unwrap().push(req.clone());
        if self.panic {
            panic!("driver exploded");
        }
        if let Some(message) = self.fail {
            return Err(NetError {
                stage: "dhcp",
                iface: Some("eth0".into()),
                message: message.into(),
            });
        }
        Ok(NetConfig {
            iface: "eth0".into(),
            mac: MAC.into(),
            addr: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![],
            server: Some(Ipv4Addr::new(10, 0, 2, 2)),
            root_path: None,
            source: NetSource::Dhcp,
            dhcp_server: Some(Ipv4Addr::new(10, 0, 2, 2)),
            lease_secs: Some(86400),
            hostname: None,
            stages: vec![("net-dhcp", Duration::from_millis(3))],
        })
    }
}

/// Answers every GET with the controller's answer (none: refused); records the POSTs.
#[derive(Default)]
struct FakeHttp {
    answer: Option<String>,
    /// The `Date` its answers carry (seconds since the epoch).
    date: Option<u64>,
    gets: Mutex<Vec<String>>,
    posts: Mutex<Vec<(String, Value)>>,
    /// POSTs answered 503 (a controller restarting) instead of 200.
    refuse_posts: bool,
}

impl Http for FakeHttp {
    fn get(&self, url: &str, _: Duration) -> Result<Reply, HttpError> {
        self.gets.lock().unwrap().push(url.into());
        match &self.answer {
            Some(a) => Ok(Reply {
                date: self.date,
                ..Reply::new(200, a.clone())
            }),
            None => Err(HttpError::transient("connection refused")),
        }
    }
    fn post_json(&self, url: &str, body: &str, _: Duration) -> Result<u16, HttpError> {
        let body = serde_json::from_str(body).unwrap();
        self.posts.lock().unwrap().push((url.into(), body));
        Ok(if self.refuse_posts { 503 } else { 200 })
    }
}

const MAC: &str = "52:54:00:12:34:56";
const CMDLINE: &str = "pureboot.url=http://ctl:8080 pureboot.serial=d83add36";
const CALLBACK: &str = "http://ctl:8080/api/v1/nodes/d83add36/installed";
const FAILURE_URL: &str = "http://ctl:8080/api/v1/nodes/d83add36/install-failed";
const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";
/// Our controller's answer for a pureboot tree (`base/`, `nodes/`).
const TREE_ANSWER: &str = r#"{"state":"active","action":"nfs_boot",
    "nfs_server":"10.0.2.2","nfs_path":"/srv/nfs","base_image":"tiny","hostname":"pi-a",
    "machine_id":"0123456789abcdef0123456789abcdef",
    "callback_url":"http://ctl:8080/api/v1/nodes/d83add36/installed",
    "failure_url":"http://ctl:8080/api/v1/nodes/d83add36/install-failed"}"#;
/// Upstream PureBoot's answer: a plain root export, failures to the callback.
const PLAIN_ANSWER: &str = r#"{"state":"installing","action":"nfs_boot",
    "nfs_server":"10.0.2.2","nfs_path":"/srv/nfsroot",
    "callback_url":"http://ctl:8080/api/v1/nodes/d83add36/installed"}"#;
/// The mounts of an initramfs after the early mounts.
const INITRAMFS: &str = "1 1 0:2 / / rw - rootfs rootfs rw\n\
    2 1 0:5 / /dev rw - devtmpfs devtmpfs rw\n3 1 0:20 / /proc rw - proc proc rw\n\
    4 1 0:21 / /sys rw - sysfs sysfs rw\n5 1 0:22 / /run rw - tmpfs tmpfs rw\n";

/// A Pi in a temporary directory: the initramfs' `/` (with `/init` and the sysfs file
/// for the NFS client's identity), `mnt/nfs` standing in for the mounted export and
/// `mnt/root` for the assembled overlay (the fake's mounts do nothing).
struct World {
    dir: TempDir,
    sys: FakeSys,
    net: FakeNetwork,
    http: FakeHttp,
}

impl World {
    fn new(answer: Option<&str>) -> Self {
        let dir = TempDir::new();
        let w = World {
            sys: FakeSys::new(),
            net: FakeNetwork::default(),
            http: FakeHttp {
                answer: answer.map(String::from),
                ..FakeHttp::default()
            },
            dir,
        };
        fs::write(w.at("init"), "").unwrap();
        fs::create_dir_all(w.at("sys/fs/nfs/net/nfs_client")).unwrap();
        fs::create_dir_all(w.at("mnt/root")).unwrap();
        w.sys.set_mountinfo(INITRAMFS);
        w.sys.set_device(w.dir.path(), 1);
        w.sys.set_device(&w.at("mnt/root"), 2);
        w.sys.set_fs_magic(w.dir.path(), switch_root::RAMFS_MAGIC);
        w
    }

    /// Our tree: base image `tiny` and this node's layer; the assembled root has init.
    fn tree() -> Self {
        let w = World::new(Some(TREE_ANSWER));
        w.exe("mnt/nfs/base/tiny/sbin/init");
        fs::create_dir_all(w.at("mnt/nfs/nodes/d83add36/upper/etc")).unwrap();
        w.exe("mnt/root/sbin/init");
        w
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn exe(&self, rel: &str) {
        let p = self.at(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn host(&self) -> Host<'_> {
        Host {
            sys: &self.sys,
            net: &self.net,
            http: &self.http,
            paths: HostPaths::under(self.dir.path()),
            sleep: |_| {},
            mountd: |_| Ok(20048),
            init_args: vec![],
        }
    }

    /// One attempt with `cmdline`.
    fn attempt(&self, cmdline: &str) -> Failure {
        attempt_boot(&self.host(), &cmdline::parse(cmdline), Instant::now())
    }

    fn posts(&self) -> Vec<(String, Value)> {
        self.http.posts.lock().unwrap().clone()
    }

    fn mount(&self, source: &str, target: &str, fstype: &str, flags: MsFlags, data: &str) -> Call {
        Call::Mount(MountArgs::new(
            source,
            &self.at(target),
            fstype,
            flags,
            data,
        ))
    }

    /// The tail every boot that gets to the switch ends with: mounts moved, the checked
    /// switch, the exec of `argv`.
    fn switch_and_exec(&self, argv: &[&str]) -> Vec<Call> {
        let root = self.at("mnt/root");
        let mut calls: Vec<Call> = switch_root::MOVED_MOUNTS
            .iter()
            .map(|m| Call::Mount(MountArgs::move_mount(Path::new(m), &root.join(&m[1..]))))
            .collect();
        calls.extend([
            Call::Chdir(root),
            Call::DeleteTree(self.dir.path().into(), 1),
            Call::Mount(MountArgs::move_mount(Path::new("."), self.dir.path())),
            Call::Chroot(".".into()),
            Call::Chdir("/".into()),
            Call::ConsoleOnStdio(switch_root::CONSOLE.into()),
            Call::Exec(argv.iter().map(|a| a.to_string()).collect()),
        ]);
        calls
    }
}

fn exec_error(init: &str) -> String {
    format!(
        "exec {init}: {FAKE_EXEC_ERROR} ({})",
        FAKE_EXEC_ERROR.desc()
    )
}

fn steps(body: &Value) -> Vec<&str> {
    body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect()
}

/// The install-failed report: exactly what the controller's route reads.
fn assert_install_failed(post: &(String, Value), step: &str, error_has: &str) {
    assert_eq!(post.0, FAILURE_URL);
    let b = &post.1;
    let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error", "mac", "serial", "step"], "{b}");
    assert_eq!(
        (&b["step"], &b["serial"], &b["mac"]),
        (&step.into(), &"d83add36".into(), &MAC.into())
    );
    assert!(b["error"].as_str().unwrap().contains(error_has), "{b}");
}

/// Upstream's failure report: the installed report with `success: false`.
fn assert_callback_failed(post: &(String, Value), url: &str, step: &str, error_has: &str) {
    assert_eq!(post.0, url);
    let b = &post.1;
    assert_eq!(
        (&b["success"], &b["step"]),
        (&false.into(), &step.into()),
        "{b}"
    );
    assert!(b["error"].as_str().unwrap().contains(error_has), "{b}");
}

#[test]
fn a_tree_export_boots_to_the_exec_of_its_init() {
    let w = World::tree();
    // The running kernel's release goes with the request.
    fs::create_dir_all(w.at("proc/sys/kernel")).unwrap();
    fs::write(w.at("proc/sys/kernel/osrelease"), "6.1.0-31-arm64\n").unwrap();
    let f = w.attempt(CMDLINE);
    assert_eq!(
        (f.step.as_str(), &f.error),
        ("exec", &exec_error("/sbin/init"))
    );
    assert!(f.line().starts_with("FAILED at exec: exec /sbin/init"));

    let base = w.at("mnt/base");
    let node = w.at("mnt/nfs/nodes/d83add36/upper");
    let (upper, work) = (w.at("mnt/rw/upper"), w.at("mnt/rw/work"));
    let overlay = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        node.display(),
        base.display(),
        upper.display(),
        work.display()
    );
    let mut want = vec![
        // Named before the NFS mount: the NFS client's identity includes it.
        Call::SetHostname("pi-a".into()),
        // The tmpfs overlay never writes the export: mounted read-only.
        w.mount(
            "10.0.2.2:/srv/nfs",
            "mnt/nfs",
            "nfs4",
            MsFlags::MS_RDONLY,
            "vers=4.2,clientaddr=10.0.2.15,addr=10.0.2.2",
        ),
        // The base image on a mount of its own, cached (see base_mount); the answer
        // names it, so it is mounted beside the export, not after it.
        w.mount(
            "10.0.2.2:/srv/nfs/base/tiny",
            "mnt/base",
            "nfs",
            MsFlags::MS_RDONLY,
            "vers=3,nolock,proto=tcp,mountproto=tcp,addr=10.0.2.2,nocto,actimeo=3600",
        ),
        w.mount("tmpfs", "mnt/rw", "tmpfs", MsFlags::empty(), "mode=0755"),
        w.mount("overlay", "mnt/root", "overlay", MsFlags::empty(), &overlay),
    ];
    want.extend(w.switch_and_exec(&["/sbin/init"]));
    let mut calls = w.sys.calls();
    // The two NFS mounts run on two threads: either may reach the kernel first.
    if calls.get(1) == want.get(2) {
        calls.swap(1, 2);
    }
    assert_eq!(calls, want);

    assert_eq!(
        fs::read_to_string(w.at("sys/fs/nfs/net/nfs_client/identifier")).unwrap(),
        format!("{MACHINE_ID}\n")
    );
    assert_eq!(
        *w.http.gets.lock().unwrap(),
        [format!(
            "http://ctl:8080/api/v1/boot/pi?serial=d83add36&mac={MAC}&kernel=6.1.0-31-arm64"
        )]
    );
    let asked = w.net.asked.lock().unwrap();
    assert_eq!(
        asked[0].sysfs,
        w.at("sys"),
        "the network reads the same /sys"
    );
    assert_eq!(asked[0].resolv_conf, Some(w.at("etc/resolv.conf")));

    // The callback, then (the exec having failed) the failure report.
    let posts = w.posts();
    assert_eq!(posts.len(), 2, "{posts:?}");
    let (url, ok) = &posts[0];
    assert_eq!(url, CALLBACK);
    assert_eq!(ok["success"], true);
    assert_eq!(ok["mode"], "nfs_boot");
    for (key, value) in [
        ("serial", "d83add36"),
        ("mac", MAC),
        ("ip_address", "10.0.2.15"),
        ("nfs_version", "4.2"),
        ("overlay_mode", "tmpfs"),
        ("base_image", "tiny"),
        ("hostname", "pi-a"),
    ] {
        assert_eq!(ok[key], value, "{key} in {ok}");
    }
    // The overlay's outcome, typed: as asked, no fallback.
    assert_eq!(
        ok["overlay"],
        serde_json::json!({"wanted": "tmpfs", "used": "tmpfs"}),
        "{ok}"
    );
    assert_eq!(
        steps(ok),
        [
            "serial",
            "network",
            "controller",
            "modules",
            "net-dhcp",
            "nfs-mount",
            "base-mount",
            "overlay",
            "init-check",
            "handover",
            "move-mounts"
        ]
    );
    assert_install_failed(&posts[1], "exec", "exec /sbin/init");
    // The network handed over in /run before it moved into the new root.
    let networkd = std::fs::read_to_string(w.at("run/systemd/network/10-pureboot-eth0.network"));
    assert!(
        networkd
            .is_ok_and(|n| n.contains(&format!("MACAddress={MAC}\n"))
                && n.contains("ClientIdentifier=mac\n")),
        "the networkd file in /run"
    );
    assert!(w.at("run/pureboot/network.json").is_file());
}

#[test]
fn a_squashfs_base_is_loop_mounted_and_is_the_overlays_lower_layer() {
    let w = World::tree();
    // What the base image's own mount shows: the one file of a squashfs image.
    fs::create_dir_all(w.at("mnt/base")).unwrap();
    fs::write(w.at("mnt/base/root.squashfs"), "hsqs").unwrap();
    let f = w.attempt(CMDLINE);
    assert_eq!(f.step.as_str(), "exec", "{}", f.error);
    let calls = w.sys.calls();
    let file = w.at("mnt/base/root.squashfs");
    let squash = w.at("mnt/squash");
    let at = |c: &Call| {
        calls
            .iter()
            .position(|x| x == c)
            .unwrap_or_else(|| panic!("{c:?} in {calls:?}"))
    };
    let attach = at(&Call::LoopAttach(file, true));
    let mount = at(&w.mount(
        "/dev/loop7",
        "mnt/squash",
        "squashfs",
        MsFlags::MS_RDONLY,
        "",
    ));
    let overlay = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        w.at("mnt/nfs/nodes/d83add36/upper").display(),
        squash.display(),
        w.at("mnt/rw/upper").display(),
        w.at("mnt/rw/work").display()
    );
    let root = at(&w.mount("overlay", "mnt/root", "overlay", MsFlags::empty(), &overlay));
    assert!(attach < mount && mount < root, "{calls:?}");
    let posts = w.posts();
    assert_eq!(posts[0].1["base_image"], "tiny");
    // The disk list (loop, squashfs) loaded for it, timed as its own step.
    assert!(
        steps(&posts[0].1).contains(&"disk-modules"),
        "{:?}",
        posts[0].1
    );
}

#[test]
fn volumes_are_mounted_in_the_new_root_from_the_nodes_own_directory() {
    let answer = TREE_ANSWER.replace(
        r#""hostname":"pi-a","#,
        r#""hostname":"pi-a","overlay_mode":"image","persist_image":"persist.3.img",
        "volumes":[{"path":"/var/lib/rancher","image":"var-lib-rancher.1.img"}],"#,
    );
    let w = World::new(Some(&answer));
    w.exe("mnt/nfs/base/tiny/sbin/init");
    fs::create_dir_all(w.at("mnt/nfs/nodes/d83add36/upper/etc")).unwrap();
    w.exe("mnt/root/sbin/init");
    let f = w.attempt(CMDLINE);
    assert_eq!(f.step.as_str(), "exec", "{}", f.error);

    let node = w.at("mnt/nfs/nodes/d83add36");
    let calls = w.sys.calls();
    let attached: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::LoopAttach(..)))
        .collect();
    assert_eq!(
        attached,
        [
            // The generation the answer names, in the node's own directory.
            &Call::LoopAttach(node.join("persist.3.img"), false),
            &Call::LoopAttach(node.join("volumes/var-lib-rancher.1.img"), false),
        ]
    );
    // A volume writes the export: mounted read-write.
    let export = calls
        .iter()
        .find_map(|c| match c {
            Call::Mount(m) if m.target == w.at("mnt/nfs") => Some(m.flags),
            _ => None,
        })
        .unwrap();
    assert_eq!(export, MsFlags::empty());
    // On the assembled root, after the overlay and before the switch's moves.
    let at = |want: &Call| calls.iter().position(|c| c == want).expect("made");
    let volume = w.mount(
        "/dev/loop7",
        "mnt/root/var/lib/rancher",
        "ext4",
        MsFlags::empty(),
        "",
    );
    let moves = Call::Mount(MountArgs::move_mount(
        Path::new("/dev"),
        &w.at("mnt/root/dev"),
    ));
    let overlay = calls
        .iter()
        .position(|c| matches!(c, Call::Mount(m) if m.fstype.as_deref() == Some("overlay")))
        .unwrap();
    assert!(
        overlay < at(&volume) && at(&volume) < at(&moves),
        "{calls:#?}"
    );
    assert!(
        w.at("mnt/root/var/lib/rancher").is_dir(),
        "mount point made"
    );

    let posts = w.posts();
    let ok = &posts[0].1;
    assert_eq!(
        ok["volumes"],
        serde_json::json!([{"path": "/var/lib/rancher", "image": "var-lib-rancher.1.img", "mounted": true}])
    );
    let s = steps(ok);
    let overlay_step = s.iter().position(|s| *s == "overlay").unwrap();
    assert_eq!(s[overlay_step + 1], "volumes", "{s:?}");
}

#[test]
fn an_answer_with_an_agent_url_leaves_the_agent_in_run_for_a_systemd_root() {
    let answer = TREE_ANSWER.replace(
        r#""hostname":"pi-a","#,
        r#""hostname":"pi-a","agent_url":"http://ctl:8080/api/v1/nodes/b1/agent","#,
    );
    let w = World::new(Some(&answer));
    w.exe("mnt/nfs/base/tiny/sbin/init");
    fs::create_dir_all(w.at("mnt/nfs/nodes/d83add36/upper/etc")).unwrap();
    w.exe("mnt/root/lib/systemd/systemd");
    w.exe("proc/self/exe");
    let f = w.attempt(&format!("{CMDLINE} init=/lib/systemd/systemd"));
    assert_eq!(f.step.as_str(), "exec", "{}", f.error);
    let report = &w.posts()[0].1;
    assert_eq!(report["agent"], "installed", "{report}");
    assert!(steps(report).contains(&"agent"));
    assert!(w.at("run/pureboot/agent").is_file());
    assert_eq!(
        fs::read_to_string(w.at("run/pureboot/agent-url")).unwrap(),
        "http://ctl:8080/api/v1/nodes/b1/agent"
    );
    assert!(w.at("run/systemd/system/pureboot-agent.service").is_file());

    // The same answer for a root whose init is not systemd: no agent, and why.
    let w = World::new(Some(&answer));
    w.exe("mnt/nfs/base/tiny/sbin/init");
    fs::create_dir_all(w.at("mnt/nfs/nodes/d83add36/upper/etc")).unwrap();
    w.exe("mnt/root/sbin/init");
    w.exe("proc/self/exe");
    w.attempt(CMDLINE);
    let report = &w.posts()[0].1;
    let said = report["agent"].as_str().unwrap();
    assert!(said.contains("is not systemd"), "{report}");
    assert!(!w.at("run/pureboot/agent").exists());
}

#[test]
fn a_callback_no_controller_took_is_left_for_the_agent() {
    let answer = TREE_ANSWER.replace(
        r#""hostname":"pi-a","#,
        r#""hostname":"pi-a","agent_url":"http://ctl:8080/api/v1/nodes/b1/agent","#,
    );
    let mut w = World::new(Some(&answer));
    w.http.refuse_posts = true;
    w.exe("mnt/nfs/base/tiny/sbin/init");
    fs::create_dir_all(w.at("mnt/nfs/nodes/d83add36/upper/etc")).unwrap();
    w.exe("mnt/root/lib/systemd/systemd");
    w.exe("proc/self/exe");
    // The fake's mounts do nothing: the root's /run stands in for pi-init's, moved.
    fs::create_dir_all(w.at("mnt/root/run/pureboot")).unwrap();
    let f = w.attempt(&format!("{CMDLINE} init=/lib/systemd/systemd"));
    assert_eq!(f.step.as_str(), "exec", "{}", f.error);
    let (url, sent) = &w.posts()[0];
    let left = fs::read_to_string(w.at("mnt/root/run/pureboot/callback-pending")).unwrap();
    let (left_url, left_body) = agent_unit::pending_callback(&left).unwrap();
    let left_body: Value = serde_json::from_str(left_body).unwrap();
    assert_eq!(
        (left_url, &left_body),
        (url.as_str(), sent),
        "the report as it was sent"
    );

    // Taken at once: nothing left.
    let w = World::new(Some(&answer));
    w.exe("mnt/nfs/base/tiny/sbin/init");
    fs::create_dir_all(w.at("mnt/nfs/nodes/d83add36/upper/etc")).unwrap();
    w.exe("mnt/root/lib/systemd/systemd");
    w.exe("proc/self/exe");
    fs::create_dir_all(w.at("mnt/root/run/pureboot")).unwrap();
    w.attempt(&format!("{CMDLINE} init=/lib/systemd/systemd"));
    assert!(!w.at("mnt/root/run/pureboot/callback-pending").exists());
}

#[test]
fn an_answer_naming_a_file_outside_the_nodes_directory_is_refused() {
    let answer = TREE_ANSWER.replace(
        r#""hostname":"pi-a","#,
        r#""hostname":"pi-a","volumes":[{"path":"/data","image":"../../d83add37/persist.img"}],"#,
    );
    let w = World::new(Some(&answer));
    let f = w.attempt(CMDLINE);
    assert_eq!(f.step.as_str(), "controller", "{}", f.error);
    assert!(f.error.contains("volumes[0]"), "{}", f.error);
    assert!(!w
        .sys
        .calls()
        .iter()
        .any(|c| matches!(c, Call::LoopAttach(..) | Call::Mount(..))));
}

#[test]
fn a_board_without_a_clock_takes_the_controllers_before_anything_is_mounted() {
    let mut w = World::tree();
    // The controller's clock a day ahead of this one (a Pi that woke up in the past).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    w.http.date = Some(now + 86_400);
    w.attempt(CMDLINE);
    let calls = w.sys.calls();
    assert_eq!(
        calls.first(),
        Some(&Call::SetClock(
            Duration::from_secs(now + 86_400) + Duration::from_millis(500)
        )),
        "{calls:?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::SetClock(_)))
            .count(),
        1,
        "one answer, set once"
    );
}

#[test]
fn a_base_mount_that_failed_beside_the_export_is_tried_again_with_the_exports_version() {
    const EXPORT: &str = "10.0.2.2:/srv/nfs";
    const BASE: &str = "10.0.2.2:/srv/nfs/base/tiny";
    let lower_of = |w: &World| {
        let m = w.sys.mounts();
        let o = m.iter().find(|m| m.fstype.as_deref() == Some("overlay"));
        let data = o.and_then(|o| o.data.clone()).unwrap_or_default();
        data.split(',').next().unwrap_or("").to_string()
    };
    let node = "mnt/nfs/nodes/d83add36/upper";
    struct Case {
        what: &'static str,
        export_fails: &'static [&'static str],
        base_fails: &'static [&'static str],
        base_tried: &'static [&'static str],
        base_layer: &'static str,
    }
    let cases = [
        Case {
            what: "v3 took the base beside the export",
            export_fails: &[],
            base_fails: &[],
            base_tried: &["vers=3"],
            base_layer: "mnt/base",
        },
        Case {
            what: "the export fell back to v4.1: the base is tried with v4.1 afterwards",
            export_fails: &["vers=4.2"],
            base_fails: &["vers=3", "vers=4.2"],
            base_tried: &["vers=3", "vers=4.2", "vers=4.1"],
            base_layer: "mnt/base",
        },
        Case {
            what:
                "the export took v4.2 too: nothing new to try, the export's mount serves the base",
            export_fails: &[],
            base_fails: &["vers=3", "vers=4.2"],
            base_tried: &["vers=3", "vers=4.2"],
            base_layer: "mnt/nfs/base/tiny",
        },
    ];
    for Case {
        what,
        export_fails,
        base_fails,
        base_tried,
        base_layer,
    } in cases
    {
        let w = World::tree();
        for v in export_fails {
            w.sys
                .fail_mount(EXPORT, v, nix::errno::Errno::EPROTONOSUPPORT);
        }
        for v in base_fails {
            w.sys
                .fail_mount(BASE, v, nix::errno::Errno::EPROTONOSUPPORT);
        }
        let f = w.attempt(CMDLINE);
        assert_eq!(f.step.as_str(), "exec", "{what}: {}", f.error);
        let tried: Vec<String> = w
            .sys
            .mounts()
            .iter()
            .filter(|m| m.source.as_deref() == Some(BASE))
            .map(|m| m.data.clone().unwrap_or_default())
            .collect();
        assert_eq!(tried.len(), base_tried.len(), "{what}: {tried:?}");
        for (got, want) in tried.iter().zip(base_tried) {
            assert!(got.starts_with(want), "{what}: {got} is not {want}");
        }
        let want = format!(
            "lowerdir={}:{}",
            w.at(node).display(),
            w.at(base_layer).display()
        );
        assert_eq!(lower_of(&w), want, "{what}");
    }
}

#[test]
fn a_plain_root_export_boots_with_its_identity_written_and_init_arguments_passed() {
    let w = World::new(Some(PLAIN_ANSWER));
    w.exe("mnt/nfs/sbin/init");
    w.exe("mnt/root/sbin/init");
    let host = Host {
        init_args: vec!["single".into()],
        ..w.host()
    };
    let f = attempt_boot(&host, &cmdline::parse(CMDLINE), Instant::now());
    assert_eq!(
        (f.step.as_str(), &f.error),
        ("exec", &exec_error("/sbin/init"))
    );

    let overlay = format!(
        "lowerdir={},upperdir={},workdir={}",
        w.at("mnt/nfs").display(),
        w.at("mnt/rw/upper").display(),
        w.at("mnt/rw/work").display()
    );
    let mut want = vec![
        Call::SetHostname("pi-d83add36".into()),
        w.mount(
            "10.0.2.2:/srv/nfsroot",
            "mnt/nfs",
            "nfs4",
            MsFlags::MS_RDONLY,
            "vers=4.2,clientaddr=10.0.2.15,addr=10.0.2.2",
        ),
        w.mount("tmpfs", "mnt/rw", "tmpfs", MsFlags::empty(), "mode=0755"),
        w.mount("overlay", "mnt/root", "overlay", MsFlags::empty(), &overlay),
    ];
    want.extend(w.switch_and_exec(&["/sbin/init", "single"]));
    assert_eq!(w.sys.calls(), want);
    // No node layer in a plain root: the writable layer carries the identity.
    assert_eq!(
        fs::read_to_string(w.at("mnt/rw/upper/etc/hostname")).unwrap(),
        "pi-d83add36\n"
    );
    let posts = w.posts();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(
        (posts[0].0.as_str(), &posts[0].1["success"]),
        (CALLBACK, &true.into())
    );
    assert_eq!(posts[0].1["base_image"], Value::Null);
    // Upstream has no install-failed route: the failure goes to the callback.
    assert_callback_failed(&posts[1], CALLBACK, "exec", "exec /sbin/init");
}

#[test]
fn a_network_failure_is_reported_to_the_command_lines_callback() {
    let mut w = World::tree();
    w.net.fail = Some("no DHCP offer within 30 s");
    let f = w.attempt(&format!("{CMDLINE} pureboot.callback=http://ctl:8080/cb"));
    assert_eq!(f.step.as_str(), "network");
    assert!(f
        .line()
        .starts_with("FAILED at network: network dhcp on eth0: no DHCP offer"));
    assert!(!f.permanent);
    assert_eq!(w.sys.calls(), [], "nothing mounted");
    assert!(
        w.http.gets.lock().unwrap().is_empty(),
        "the controller is not asked"
    );
    let posts = w.posts();
    assert_eq!(posts.len(), 1);
    assert_callback_failed(&posts[0], "http://ctl:8080/cb", "network", "no DHCP offer");
    // Known so far, and reported.
    assert_eq!(posts[0].1["serial"], "d83add36");
}

#[test]
fn an_answer_that_cannot_be_booted_is_reported_where_it_says() {
    let w = World::new(Some(
        r#"{"state":"installed","action":"local_boot",
        "failure_url":"http://ctl:8080/api/v1/nodes/d83add36/install-failed"}"#,
    ));
    let f = w.attempt(CMDLINE);
    assert_eq!(f.step.as_str(), "controller");
    assert!(
        f.error.contains("local_boot") && f.error.contains("root="),
        "{}",
        f.error
    );
    assert!(
        !f.permanent,
        "the controller may answer otherwise next time"
    );
    assert_eq!(w.sys.calls(), []);
    let posts = w.posts();
    assert_eq!(posts.len(), 1);
    assert_install_failed(&posts[0], "controller", "local_boot");
}

#[test]
fn each_failing_step_is_named_and_reported() {
    // (what, how the world is broken, the step, words of the error)
    type Break = fn(&World);
    let cases: &[(&str, Break, &str, &str)] = &[
        (
            "the server refuses the mount",
            |w| {
                w.sys
                    .fail_mount("10.0.2.2:/srv/nfs", "", nix::errno::Errno::EACCES)
            },
            "nfs-mount",
            "NFS mount of 10.0.2.2:/srv/nfs failed: v4.2: EACCES",
        ),
        (
            "the named base image is not in the export",
            |w| fs::rename(w.at("mnt/nfs/base/tiny"), w.at("mnt/nfs/base/other")).unwrap(),
            "overlay",
            "base image \"tiny\" not found",
        ),
        (
            "the kernel has no squashfs for a squashfs base",
            |w| {
                fs::create_dir_all(w.at("mnt/base")).unwrap();
                fs::write(w.at("mnt/base/root.squashfs"), "hsqs").unwrap();
                w.sys
                    .fail_mount("/dev/loop7", "", nix::errno::Errno::ENODEV)
            },
            "overlay",
            "base image tiny: mount -t squashfs",
        ),
        (
            "the assembled root has no init",
            |w| fs::remove_file(w.at("mnt/root/sbin/init")).unwrap(),
            "init-check",
            "no init in the new root",
        ),
        (
            "the new root is not a mount of its own",
            |w| w.sys.set_device(&w.at("mnt/root"), 1),
            "switch-root",
            "is not a mount of its own",
        ),
    ];
    for (i, (what, break_it, step, error_has)) in cases.iter().enumerate() {
        let w = World::tree();
        break_it(&w);
        let f = w.attempt(CMDLINE);
        assert_eq!(f.step.as_str(), *step, "test[{i}]: {what}: {}", f.error);
        assert!(
            f.error.contains(error_has),
            "test[{i}]: {what}: {}",
            f.error
        );
        assert!(
            f.line().starts_with(&format!("FAILED at {step}: ")),
            "test[{i}]: {what}"
        );
        let calls = w.sys.calls();
        assert!(
            !calls
                .iter()
                .any(|c| matches!(c, Call::DeleteTree(..) | Call::Exec(_))),
            "test[{i}]: {what}: nothing destroyed, nothing run: {calls:?}"
        );
        let posts = w.posts();
        let failure = posts.last().expect("a failure report");
        assert_install_failed(failure, step, error_has);
        // The success callback goes out only once the root is ready to switch to.
        let called_back = posts.iter().any(|(u, _)| u == CALLBACK);
        assert_eq!(
            called_back,
            *step == "switch-root",
            "test[{i}]: {what}: {posts:?}"
        );
    }
}

#[test]
fn a_panic_is_a_failure_like_any_other() {
    let mut w = World::tree();
    w.net.panic = true;
    let f = w.attempt(&format!("{CMDLINE} pureboot.callback=http://ctl:8080/cb"));
    assert_eq!(
        (f.step.as_str(), f.error.as_str()),
        ("panic", "driver exploded")
    );
    assert_callback_failed(
        &w.posts()[0],
        "http://ctl:8080/cb",
        "panic",
        "driver exploded",
    );
}

#[test]
fn nothing_to_ask_and_nothing_named_is_a_permanent_failure() {
    let w = World::tree();
    let f = w.attempt("pureboot.serial=d83add36");
    assert_eq!(f.step.as_str(), "controller");
    assert!(f.permanent, "{}", f.error);
    assert!(f.error.contains("no pureboot.url="), "{}", f.error);
    assert!(w.posts().is_empty(), "nowhere to report to");
}

#[test]
fn the_failure_policy_decides_from_attempt_retries_and_panic() {
    use AfterFailure::*;
    let s = |n| Some(Duration::from_secs(n));
    // (command line, attempt that failed, permanent, /bin/sh present, decision)
    let cases: &[(&str, u32, bool, bool, AfterFailure)] = &[
        ("", 1, false, true, Retry(2)),
        ("pureboot.retries=3", 2, false, true, Retry(3)),
        ("pureboot.retries=3", 3, false, true, Reboot(s(5))),
        ("pureboot.retries=3", 1, true, true, Reboot(s(5))),
        ("pureboot.retries=1", 1, false, true, Reboot(s(5))),
        ("pureboot.retries=3 panic=0", 3, false, true, Reboot(None)),
        ("pureboot.on_failure=shell", 1, false, true, Shell),
        ("pureboot.on_failure=shell", 1, true, true, Shell),
        (
            "pureboot.on_failure=shell panic=2",
            1,
            false,
            false,
            Reboot(s(2)),
        ),
        (
            "pureboot.on_failure=reboot panic=10",
            1,
            false,
            true,
            Reboot(s(10)),
        ),
        (
            "pureboot.on_failure=reboot panic=0",
            1,
            false,
            true,
            Reboot(None),
        ),
        (
            "pureboot.on_failure=halt panic=-1",
            1,
            false,
            true,
            PowerOff(s(0)),
        ),
        ("pureboot.on_failure=halt", 1, true, false, PowerOff(s(5))),
    ];
    for (i, (line, attempt, permanent, sh, want)) in cases.iter().enumerate() {
        let cmd = cmdline::parse(line);
        assert!(cmd.warnings.is_empty(), "test[{i}]: {:?}", cmd.warnings);
        assert_eq!(
            after_failure(&cmd, *attempt, *permanent, *sh),
            *want,
            "test[{i}]: {line:?} attempt {attempt} permanent {permanent} shell {sh}"
        );
    }
}

#[test]
fn a_local_root_is_mounted_from_its_device_and_switched_to() {
    let w = World::new(Some(
        r#"{"state":"installed","action":"local_boot","callback_url":"http://ctl:8080/cb"}"#,
    ));
    fs::create_dir_all(w.at("dev")).unwrap();
    fs::write(w.at("dev/vda2"), "").unwrap();
    w.exe("mnt/root/sbin/init");
    let f = w.attempt(&format!("{CMDLINE} root=/dev/vda2"));
    assert_eq!(
        (f.step.as_str(), &f.error),
        ("exec", &exec_error("/sbin/init"))
    );
    // Read-only, as the kernel mounts a root without `rw`.
    let mut want = vec![w.mount("/dev/vda2", "mnt/root", "ext4", MsFlags::MS_RDONLY, "")];
    want.extend(w.switch_and_exec(&["/sbin/init"]));
    assert_eq!(w.sys.calls(), want);
    // A local boot posts no success callback; the failed exec is still reported.
    let posts = w.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_callback_failed(&posts[0], "http://ctl:8080/cb", "exec", "exec /sbin/init");
}

#[test]
fn a_retry_pauses_and_releases_the_attempts_mounts() {
    let w = World::new(None);
    let cmd = cmdline::parse("");
    let next = policy::apply(&w.host(), &cmd, false, AfterFailure::Retry(2), 1);
    assert_eq!(next, 2);
    let mnt = w.at("mnt");
    assert_eq!(
        w.sys.calls(),
        ["root", "rw", "squash", "base", "nfs"].map(|m| Call::Umount(mnt.join(m)))
    );
}

#[test]
fn a_caught_panic_keeps_its_message() {
    let p = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
    assert_eq!(panic_message(p.as_ref()), "boom 7");
    let p = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
    assert_eq!(panic_message(p.as_ref()), "static");
    let p = std::panic::catch_unwind(|| std::panic::panic_any(3u8)).unwrap_err();
    assert_eq!(panic_message(p.as_ref()), "unknown panic");
}

#[test]
fn panic_means_what_it_means_to_the_kernel() {
    let s = Duration::from_secs;
    assert_eq!(
        reboot_delay(Some(-1)),
        Some(Duration::ZERO),
        "negative: at once"
    );
    assert_eq!(reboot_delay(Some(0)), None, "0: never by itself");
    assert_eq!(reboot_delay(Some(10)), Some(s(10)));
    assert_eq!(
        reboot_delay(None),
        Some(s(5)),
        "unset: a moment to read the console"
    );
}

#[test]
fn early_mounts_cover_what_the_boot_needs() {
    let targets: Vec<&str> = EARLY_MOUNTS.iter().map(|m| m.1).collect();
    assert_eq!(targets, ["/proc", "/sys", "/dev", "/run"]);
    // The mounts moved into the new root are exactly the early ones.
    assert_eq!(targets.len(), switch_root::MOVED_MOUNTS.len());
    assert!(switch_root::MOVED_MOUNTS
        .iter()
        .all(|m| targets.contains(m)));
}
