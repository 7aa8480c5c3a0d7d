//! The boot itself: early mounts, then attempts until one ends in the exec of the new
//! root's init. An attempt reads the serial, loads modules (on their own threads) while the
//! network comes up and the controller is asked, decides, then mounts NFS, assembles the
//! overlay, checks init, moves the early mounts, posts the callback and switches root. Every
//! failure goes through one path: a `FAILED at <step>` line, the failure report to the
//! controller, the failure policy. PID 1 never returns and never panics out: a panic is
//! caught and handled like a failure.

use crate::cmdline::{Cmdline, FailurePolicy};
use crate::plan::{self, Decision, Instructions, NfsPlan};
use crate::report::Report;
use crate::serial::{BoardSerial, Identity};
use crate::sys::{self, LinuxSys, MountArgs, Sys};
use crate::{
    background, cmdline, controller, log, modules, net, nfs, overlay, serial, switch_root, watchdog,
};
use ::log::{error, info, warn};
use nix::mount::{MntFlags, MsFlags};
use pureboot_contract::ids::Mac;
use pureboot_contract::FailureReport;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// proc and sysfs: nothing to execute, no devices.
const KERNEL_FS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Early mounts, tolerating any already there (source, target, fstype, flags, data).
#[rustfmt::skip]
pub const EARLY_MOUNTS: [(&str, &str, &str, MsFlags, &str); 4] = [
    ("proc", "/proc", "proc", KERNEL_FS, ""),
    ("sysfs", "/sys", "sysfs", KERNEL_FS, ""),
    ("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, "mode=0755"),
    ("tmpfs", "/run", "tmpfs", MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV), "mode=0755"),
];

/// Where the NFS export, the writable layer and the new root are mounted.
const MNT: &str = "/mnt";

pub fn early_mounts(sys: &dyn Sys) {
    for (source, target, fstype, flags, data) in EARLY_MOUNTS {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if sys::mounted_fstype(&sys::parse_mountinfo(&mounts), target).is_some() {
            continue;
        }
        let _ = std::fs::create_dir_all(target);
        let m = MountArgs::new(source, Path::new(target), fstype, flags, data);
        match sys.mount(&m) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            // The logger is not up yet: the kernel console is all there is.
            Err(e) => eprintln!("pi-init: early mount: {m}: {e}"),
        }
    }
}

/// The step that failed and why.
struct Failure {
    step: &'static str,
    error: String,
    /// Follows from the command line and the board alone: another attempt would fail the
    /// same way, so the retry policy goes straight to its last resort.
    permanent: bool,
}

fn fail<E: std::fmt::Display>(step: &'static str) -> impl Fn(E) -> Failure {
    move |e| Failure {
        step,
        error: e.to_string(),
        permanent: false,
    }
}

/// What a failed attempt leaves for the failure path.
struct Attempt {
    report: Report,
    failure: Option<FailureReport>,
}

/// PID 1 from here on: attempts until one execs the new root's init.
pub fn init_main(start: Instant) -> ! {
    let sys = LinuxSys;
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let cmd = cmdline::parse(&text);
    log::set_level(cmd.log_level);
    cmd.warnings.iter().for_each(|w| warn!("command line: {w}"));
    if let Some(t) = cmd.watchdog {
        if let Err(e) = watchdog::arm(Path::new("/dev/watchdog"), t) {
            error!("{e}; booting without it");
        }
    }
    let mut attempt = 1;
    loop {
        let mut a = Attempt {
            report: Report::new(start),
            failure: None,
        };
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&sys, &cmd, &mut a)));
        let f = result.unwrap_or_else(|p| Failure {
            step: "panic",
            error: panic_message(p.as_ref()),
            permanent: false,
        });
        error!("FAILED at {}: {}", f.step, f.error);
        if let Some(to) = &a.failure {
            let body = a.report.failed(to, f.step, &f.error);
            controller::post_callback(&controller::Ureq, to.url(), &body);
        }
        if f.permanent && attempt < cmd.retries {
            info!("a permanent failure: another attempt would end the same way");
            attempt = cmd.retries;
        }
        apply_failure_policy(&sys, &cmd, &mut attempt);
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// `pureboot.on_failure=`. Returns only when the boot is to be tried again.
fn apply_failure_policy(sys: &dyn Sys, cmd: &Cmdline, attempt: &mut u32) {
    use nix::sys::reboot::RebootMode::{RB_AUTOBOOT, RB_POWER_OFF};
    info!("applying failure policy {}", cmd.on_failure.as_str());
    match cmd.on_failure {
        FailurePolicy::Retry if *attempt < cmd.retries => {
            *attempt += 1;
            info!("boot attempt {attempt} of {} in 2 s", cmd.retries);
            std::thread::sleep(Duration::from_secs(2));
        }
        FailurePolicy::Retry => {
            info!("{} boot attempts failed", cmd.retries);
            power(cmd, RB_AUTOBOOT)
        }
        FailurePolicy::Shell if Path::new("/bin/sh").exists() => {
            watchdog::keep_fed();
            rescue_shell();
            watchdog::progress();
            info!("shell exited: booting again");
        }
        FailurePolicy::Shell => {
            warn!("no /bin/sh in the initramfs: rebooting instead");
            power(cmd, RB_AUTOBOOT)
        }
        FailurePolicy::Reboot => power(cmd, RB_AUTOBOOT),
        FailurePolicy::Halt => power(cmd, RB_POWER_OFF),
    }
    release_mounts(sys);
}

/// Undo a failed attempt's mounts so the next one starts clean.
fn release_mounts(sys: &dyn Sys) {
    for m in ["root", "rw", "nfs"] {
        let _ = sys.umount(&Path::new(MNT).join(m), MntFlags::MNT_DETACH);
    }
}

fn rescue_shell() {
    match std::process::Command::new("/bin/sh").status() {
        Ok(s) => info!("shell: {s}"),
        Err(e) => error!("shell: {e}"),
    }
}

/// How long to wait before rebooting after a failure, as the kernel reads `panic=`: negative
/// at once, 0 never (`None`), N after N seconds. Without `panic=`, 5 s, so the reason stays
/// on the console a moment.
pub fn reboot_delay(panic: Option<i64>) -> Option<Duration> {
    match panic {
        None => Some(Duration::from_secs(5)),
        Some(0) => None,
        Some(n) if n < 0 => Some(Duration::ZERO),
        Some(n) => Some(Duration::from_secs(n.unsigned_abs())),
    }
}

/// Reboot or power off, after the delay `panic=` asks for; with `panic=0`, never by itself.
fn power(cmd: &Cmdline, mode: nix::sys::reboot::RebootMode) -> ! {
    let what = if mode == nix::sys::reboot::RebootMode::RB_POWER_OFF {
        "power off"
    } else {
        "reboot"
    };
    match reboot_delay(cmd.panic) {
        Some(delay) => {
            info!("{what} in {} s", delay.as_secs());
            std::thread::sleep(delay);
        }
        None => {
            info!("panic=0: no {what}; waiting for a reset");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
    nix::unistd::sync();
    let e = nix::sys::reboot::reboot(mode).unwrap_err();
    error!("reboot: {e}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// One boot attempt. Returns only on failure (success ends in exec).
fn run(sys: &dyn Sys, cmd: &Cmdline, a: &mut Attempt) -> Failure {
    match boot(sys, cmd, a) {
        Err(f) => f,
        Ok(never) => match never {},
    }
}

enum Never {}

fn boot(sys: &dyn Sys, cmd: &Cmdline, a: &mut Attempt) -> Result<Never, Failure> {
    let r = &mut a.report;
    // A board without a serial can still boot a kernel-style NFS root; only asking the
    // controller needs one. Decided once the MAC is known.
    let serial = r.time("serial", |_| {
        serial::read(Path::new("/"), cmd.serial.as_deref())
    });
    if let Ok(s) = &serial {
        info!("serial {} ({}, from {})", s.short, s.longest(), s.source);
        r.facts.serial = Some(s.short.to_string());
        r.facts.full_serial = s.full.as_ref().map(|f| f.to_string());
    }
    // The command line's callback until the controller names one.
    a.failure = FailureReport::choose(None, cmd.callback.as_deref());

    // Modules load on their own threads (the NIC driver first) while this one waits for the
    // interface, configures it and asks the controller; joined before NFS is mounted.
    let (net, answer) = std::thread::scope(|s| {
        let loader = background::start(s, "modules", || {
            timed(|| modules::load_at_start(sys, Path::new("/sys")))
        });
        let net = r
            .time("network", |_| net::bring_up(&net_request(cmd)))
            .map_err(fail("network"));
        let answer = net.as_ref().ok().map(|n| match &serial {
            Ok(s) => r.time("controller", |_| ask_controller(cmd, s, &n.mac)),
            Err(why) if cmd.url.is_some() => controller::Outcome::Unreachable(format!(
                "cannot ask the controller, which keys nodes by serial: {why}"
            )),
            Err(_) => {
                controller::Outcome::Unreachable("no pureboot.url= on the command line".into())
            }
        });
        modules_done(r, "modules", "modules", loader.join());
        (net, answer)
    });
    let net = net?;
    for (stage, took) in &net.stages {
        r.step(stage, *took);
    }
    info!(
        "network {}: {}/{} mac {} ({:?})",
        net.iface, net.addr, net.prefix_len, net.mac, net.source
    );
    r.facts.mac = Some(net.mac.clone());
    r.facts.ip_address = Some(net.addr.to_string());
    let identity = match serial {
        Ok(s) => Identity::Board(s),
        Err(why) => {
            let mac = Mac::parse(&net.mac).map_err(fail("serial"))?;
            warn!("{why}: this node is known by its MAC {mac}");
            Identity::Mac {
                mac,
                no_serial: why,
            }
        }
    };
    let answer = answer.expect("asked once the network is up");

    let mut permanent = false;
    let ins = match &answer {
        controller::Outcome::Answer(resp) => {
            info!(
                "controller: state {}, action {:?}{}",
                resp.state,
                resp.action,
                resp.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            // Known now, so even an answer pi-init cannot boot is reported back.
            a.failure = resp.failure_report().or(a.failure.take());
            Instructions::Controller(resp)
        }
        controller::Outcome::Unreachable(why) => {
            warn!("{why}");
            permanent = cmd.url.is_none() || identity.serial().is_none();
            Instructions::None(why)
        }
    };
    let facts = plan::NetFacts {
        client: net.addr,
        server: net.server,
        hostname: net.hostname.as_deref(),
        root_path: net.root_path.as_deref(),
    };
    match plan::decide(cmd, &identity, &facts, ins) {
        Decision::Nfs(p) => {
            a.failure = p.failure.clone().or(a.failure.take());
            nfs_boot(sys, cmd, &p, &identity, net.addr, &mut a.report)
        }
        Decision::Local { device } => local_boot(sys, cmd, &device, &mut a.report),
        Decision::Fail(why) => Err(Failure {
            step: if identity.serial().is_none() && cmd.url.is_some() {
                "serial"
            } else {
                "controller"
            },
            error: why,
            permanent,
        }),
    }
}

/// Log what loading a module list did (`label`) and record it as `step`; `None` when the
/// loader panicked.
fn modules_done(
    r: &mut Report,
    label: &str,
    step: &str,
    loaded: Option<(modules::LoadSummary, Duration)>,
) {
    match loaded {
        Some((sum, took)) => {
            info!("{label}: {}", sum.line());
            r.step(step, took);
        }
        None => error!("{label} loader panicked; continuing without it"),
    }
}

/// `f`'s result and how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    (f(), t.elapsed())
}

fn nfs_mount(
    sys: &dyn Sys,
    p: &NfsPlan,
    at: &Path,
    client: Ipv4Addr,
    read_only: bool,
    r: &mut Report,
) -> Result<nfs::Mounted, Failure> {
    r.time("nfs-mount", |_| {
        let retry = nfs::RetryPolicy::default();
        nfs::mount(
            sys,
            &p.nfs,
            at,
            Some(client),
            read_only,
            &retry,
            &mut std::thread::sleep,
        )
    })
    .map_err(fail("nfs-mount"))
}

fn net_request(cmd: &Cmdline) -> net::NetRequest {
    net::NetRequest {
        ip: cmd
            .ip
            .clone()
            .unwrap_or(net::IpParam::Dhcp { device: None }),
        iface: cmd.iface.clone(),
        // Under QEMU TCG the NIC driver's modules take a while to load.
        iface_timeout: Duration::from_secs(20),
        hostname: cmd.hostname.as_ref().map(|h| h.to_string()),
        ..Default::default()
    }
}

fn ask_controller(cmd: &Cmdline, serial: &BoardSerial, mac: &str) -> controller::Outcome {
    let Some(base) = &cmd.url else {
        return controller::Outcome::Unreachable("no pureboot.url= on the command line".into());
    };
    let url = controller::boot_url(base, serial, mac);
    let policy = controller::AskPolicy::new(cmd.timeout, cmd.wait);
    controller::ask(&controller::Ureq, &mut std::thread::sleep, &url, &policy)
}

fn nfs_boot(
    sys: &dyn Sys,
    cmd: &Cmdline,
    p: &NfsPlan,
    identity: &Identity,
    client: Ipv4Addr,
    r: &mut Report,
) -> Result<Never, Failure> {
    let paths = overlay::Paths::under(Path::new(MNT));
    let export = format!("{}:{}", p.nfs.server, p.nfs.path);
    info!(
        "booting {export} (from the {}), overlay {}",
        p.source,
        p.overlay.as_str()
    );
    // The export is written only when the writable layer lives on it.
    let read_only = !p.overlay.writes_export();
    std::fs::create_dir_all(&paths.nfs).map_err(fail("nfs-mount"))?;
    // The NFS client's identity includes the host name: name the node before mounting.
    if let Err(e) = nix::unistd::sethostname(p.hostname.as_str()) {
        warn!("sethostname {}: {e}", p.hostname);
    }
    if let Err(e) = nfs::set_client_identifier(Path::new("/sys"), p.machine_id.as_str()) {
        warn!("NFS client identifier: {e}; nodes may share one NFSv4 client identity");
    }
    // The image overlay loop-mounts an ext4 file: its modules load while NFS mounts.
    let disk = std::thread::scope(|s| {
        let disk_modules = p.overlay.needs_disk_modules().then(|| {
            background::start(s, "disk-modules", || {
                timed(|| modules::load_list(sys, Path::new(modules::DISK_LIST_PATH)))
            })
        });
        let mounted = nfs_mount(sys, p, &paths.nfs, client, read_only, r);
        if let Some(loader) = disk_modules {
            modules_done(r, "disk modules", "disk-modules", loader.join());
        }
        mounted
    });
    let mounted = disk?;
    info!(
        "NFS v{} from {}",
        mounted.version.as_str(),
        mounted.server_ip
    );
    r.facts.nfs_version = Some(mounted.version.as_str().to_string());
    let req = overlay::Request {
        mode: p.overlay,
        layout: p.nfs.layout,
        serial: identity.serial().map(|s| &s.short),
        base_image: p.base_image.as_ref(),
        hostname: p.hostname.as_str(),
        machine_id: p.machine_id.as_str(),
        init: cmd.init.as_deref(),
        export,
    };
    let done = r
        .time("overlay", |r| overlay::assemble(sys, &paths, &req, r))
        .map_err(fail("overlay"))?;
    r.facts.overlay_mode = Some(done.mode.as_str().to_string());
    r.facts.base_image = done.base_image;
    r.facts.hostname = Some(p.hostname.to_string());
    enter_and_exec(sys, cmd, &paths.newroot, p.callback_url.as_deref(), r)
}

fn local_boot(
    sys: &dyn Sys,
    cmd: &Cmdline,
    device: &str,
    r: &mut Report,
) -> Result<Never, Failure> {
    let newroot = Path::new(MNT).join("root");
    let loaded = timed(|| modules::load_list(sys, Path::new(modules::DISK_LIST_PATH)));
    modules_done(r, "disk modules", "disk-modules", Some(loaded));
    let fstype = cmd.rootfstype.as_deref().unwrap_or("ext4");
    let flags = if cmd.root_rw {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    r.time("local-mount", |_| {
        // The block driver may still be probing.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(device).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::create_dir_all(&newroot).map_err(|e| e.to_string())?;
        let m = MountArgs::new(device, &newroot, fstype, flags, "");
        sys.mount(&m).map_err(|e| format!("{m}: {e}"))
    })
    .map_err(fail("local-mount"))?;
    enter_and_exec(sys, cmd, &newroot, None, r)
}

/// The common tail: init check, mounts moved, callback, switch, exec.
fn enter_and_exec(
    sys: &dyn Sys,
    cmd: &Cmdline,
    newroot: &Path,
    callback: Option<&str>,
    r: &mut Report,
) -> Result<Never, Failure> {
    let (init, resolved) = r
        .time("init-check", |_| {
            switch_root::find_init(newroot, cmd.init.as_deref())
        })
        .map_err(fail("init-check"))?;
    info!("init {init} ({})", resolved.display());
    let mounts =
        sys::parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    let kind = switch_root::root_kind(&mounts);
    r.time("move-mounts", |_| {
        switch_root::move_mounts(sys, newroot, &mounts)
    })
    .map_err(fail("move-mounts"))?;
    if let Some(url) = callback {
        let body = r.installed();
        r.time("callback", |_| {
            controller::post_callback(&controller::Ureq, url, &body)
        });
    }
    r.time("switch-root", |_| switch_root::enter(sys, newroot, kind))
        .map_err(fail("switch-root"))?;
    info!("exec {init}");
    log::restore_kmsg_ratelimit();
    watchdog::hand_over();
    let args: Vec<String> = std::env::args().skip(1).collect();
    Err(Failure {
        step: "exec",
        error: switch_root::exec_init(&init, &args),
        permanent: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
