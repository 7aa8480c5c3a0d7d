//! The boot itself: early mounts, then attempts until one ends in the exec of the new
//! root's init. An attempt reads the serial, loads modules (on their own threads) while the
//! network comes up and the controller is asked, decides, then mounts NFS, assembles the
//! overlay, checks init, moves the early mounts, posts the callback and switches root. Every
//! failure goes through one path: a `FAILED at <step>` line, the failure report to the
//! controller, the failure policy. PID 1 never returns and never panics out: a panic is
//! caught and handled like a failure.

use crate::cmdline::{Cmdline, FailurePolicy};
use crate::controller::Http;
use crate::net::Network;
use crate::plan::{self, Decision, Instructions, NfsPlan};
use crate::report::Report;
use crate::serial::{BoardSerial, Identity};
use crate::sys::{HostPaths, MountArgs, Sys};
use crate::{
    background, base_mount, cmdline, controller, log, modules, net, nfs, overlay, serial,
    switch_root, watchdog,
};
use ::log::{error, info, warn};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use pureboot_contract::ids::Mac;
use pureboot_contract::layout::ExportLayout;
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

/// What the boot runs against: the seams to the machine (see `sys.rs` for which call goes
/// through which) and where its files are. [`Host::real`] on a Pi; fakes in tests.
pub struct Host<'a> {
    pub sys: &'a dyn Sys,
    pub net: &'a dyn Network,
    pub http: &'a dyn Http,
    pub paths: HostPaths,
    /// Every pause of the boot (retries, backoff, `wait` polls, the `panic=` delay).
    pub sleep: fn(Duration),
    /// Whether the server's NFSv3 mountd answers, and at which port (the base mount's v3
    /// check, through its rpcbind).
    pub mountd: fn(std::net::IpAddr) -> Result<u16, String>,
    /// Arguments for the new init: those the kernel gave pi-init.
    pub init_args: Vec<String>,
}

impl Host<'static> {
    pub fn real() -> Self {
        Host {
            sys: &crate::sys::LinuxSys,
            net: &net::LinuxNetwork,
            http: &controller::Ureq,
            paths: HostPaths::real(),
            sleep: std::thread::sleep,
            mountd: crate::rpcbind::mountd,
            init_args: std::env::args().skip(1).collect(),
        }
    }
}

pub fn early_mounts(sys: &dyn Sys) {
    for (source, target, fstype, flags, data) in EARLY_MOUNTS {
        if crate::sys::mounted_fstype(&sys.mounts(), target).is_some() {
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
#[derive(Debug)]
pub struct Failure {
    pub step: &'static str,
    pub error: String,
    /// Follows from the command line and the board alone: another attempt would fail the
    /// same way, so the retry policy goes straight to its last resort.
    pub permanent: bool,
}

impl Failure {
    /// The console line every failure prints.
    pub fn line(&self) -> String {
        format!("FAILED at {}: {}", self.step, self.error)
    }
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
pub fn init_main(host: &Host, start: Instant) -> ! {
    let text = std::fs::read_to_string(host.paths.cmdline()).unwrap_or_default();
    let cmd = cmdline::parse(&text);
    log::set_level(cmd.log_level);
    cmd.warnings.iter().for_each(|w| warn!("command line: {w}"));
    if let Some(t) = cmd.watchdog {
        if let Err(e) = watchdog::arm(host.sys, &host.paths.watchdog(), t) {
            error!("{e}; booting without it");
        }
    }
    let mut attempt = 1;
    loop {
        let f = attempt_boot(host, &cmd, start);
        let next = after_failure(&cmd, attempt, f.permanent, host.paths.shell().exists());
        attempt = apply_failure_policy(host, &cmd, f.permanent, next, attempt);
    }
}

/// One attempt, which ends only in failure (success is an exec that does not return): a
/// panic is caught and counts as a failure at `panic`; the `FAILED at` line is printed and
/// the failure reported where the attempt had learnt to report it.
pub fn attempt_boot(host: &Host, cmd: &Cmdline, start: Instant) -> Failure {
    let mut a = Attempt {
        report: Report::new(start),
        failure: None,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(host, cmd, &mut a)));
    let f = result.unwrap_or_else(|p| Failure {
        step: "panic",
        error: panic_message(p.as_ref()),
        permanent: false,
    });
    error!("{}", f.line());
    if let Some(to) = &a.failure {
        let body = a.report.failed(to, f.step, &f.error);
        controller::post_callback(host.http, to.url(), &body);
    }
    f
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Boot again as this attempt number.
    Retry(u32),
    /// The rescue shell, then boot again.
    Shell,
    /// After the delay (`None`: never by itself, `panic=0`).
    Reboot(Option<Duration>),
    PowerOff(Option<Duration>),
}

/// `pureboot.on_failure=` after attempt `attempt` failed: a pure decision. A permanent
/// failure uses up the remaining attempts; `shell` without a shell reboots; reboots and
/// power-offs wait as `panic=` says.
pub fn after_failure(
    cmd: &Cmdline,
    attempt: u32,
    permanent: bool,
    have_shell: bool,
) -> AfterFailure {
    let delay = reboot_delay(cmd.panic);
    match cmd.on_failure {
        FailurePolicy::Retry if attempt < cmd.retries && !permanent => {
            AfterFailure::Retry(attempt + 1)
        }
        FailurePolicy::Retry => AfterFailure::Reboot(delay),
        FailurePolicy::Shell if have_shell => AfterFailure::Shell,
        FailurePolicy::Shell | FailurePolicy::Reboot => AfterFailure::Reboot(delay),
        FailurePolicy::Halt => AfterFailure::PowerOff(delay),
    }
}

/// Carry out `next`. Returns the next attempt's number when the boot is to be tried again.
fn apply_failure_policy(
    host: &Host,
    cmd: &Cmdline,
    permanent: bool,
    next: AfterFailure,
    attempt: u32,
) -> u32 {
    info!("applying failure policy {}", cmd.on_failure.as_str());
    let next_attempt = match next {
        AfterFailure::Retry(n) => {
            info!("boot attempt {n} of {} in 2 s", cmd.retries);
            (host.sleep)(Duration::from_secs(2));
            n
        }
        AfterFailure::Shell => {
            watchdog::keep_fed();
            rescue_shell(&host.paths.shell());
            watchdog::progress();
            info!("shell exited: booting again");
            attempt
        }
        AfterFailure::Reboot(delay) | AfterFailure::PowerOff(delay) => {
            match cmd.on_failure {
                FailurePolicy::Retry if permanent && attempt < cmd.retries => {
                    info!("a permanent failure: another attempt would end the same way")
                }
                FailurePolicy::Retry => info!("{} boot attempts failed", cmd.retries),
                FailurePolicy::Shell => warn!("no /bin/sh in the initramfs: rebooting instead"),
                _ => {}
            }
            let mode = match next {
                AfterFailure::PowerOff(_) => RebootMode::RB_POWER_OFF,
                _ => RebootMode::RB_AUTOBOOT,
            };
            power(host, mode, delay)
        }
    };
    release_mounts(host);
    next_attempt
}

/// Undo a failed attempt's mounts so the next one starts clean.
fn release_mounts(host: &Host) {
    for m in ["root", "rw", "base", "nfs"] {
        let _ = host
            .sys
            .umount(&host.paths.mnt().join(m), MntFlags::MNT_DETACH);
    }
}

fn rescue_shell(sh: &Path) {
    match std::process::Command::new(sh).status() {
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

/// Reboot or power off after `delay`; with none (`panic=0`), never by itself.
fn power(host: &Host, mode: RebootMode, delay: Option<Duration>) -> ! {
    let what = if mode == RebootMode::RB_POWER_OFF {
        "power off"
    } else {
        "reboot"
    };
    match delay {
        Some(delay) => {
            info!("{what} in {} s", delay.as_secs());
            (host.sleep)(delay);
            let e = host.sys.reboot(mode);
            error!("reboot: {e}");
        }
        None => info!("panic=0: no {what}; waiting for a reset"),
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// One boot attempt. Returns only on failure (success ends in exec).
fn run(host: &Host, cmd: &Cmdline, a: &mut Attempt) -> Failure {
    match boot(host, cmd, a) {
        Err(f) => f,
        Ok(never) => match never {},
    }
}

enum Never {}

fn boot(host: &Host, cmd: &Cmdline, a: &mut Attempt) -> Result<Never, Failure> {
    let sys = host.sys;
    let r = &mut a.report;
    // A board without a serial can still boot a kernel-style NFS root; only asking the
    // controller needs one. Decided once the MAC is known.
    let serial = r.time("serial", |_| {
        serial::read(&host.paths.root, cmd.serial.as_deref())
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
            timed(|| {
                let p = &host.paths;
                modules::load_at_start(sys, &p.module_list(), &p.module_aliases(), &p.sysfs())
            })
        });
        let net = r
            .time("network", |_| {
                host.net.bring_up(&net_request(cmd, &host.paths))
            })
            .map_err(fail("network"));
        let answer = net.as_ref().ok().map(|n| match &serial {
            Ok(s) => r.time("controller", |_| ask_controller(host, cmd, s, &n.mac)),
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
            nfs_boot(host, cmd, &p, &identity, net.addr, &mut a.report)
        }
        Decision::Local { device } => local_boot(host, cmd, &device, &mut a.report),
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
    host: &Host,
    p: &NfsPlan,
    at: &Path,
    client: Ipv4Addr,
    read_only: bool,
    r: &mut Report,
) -> Result<nfs::Mounted, Failure> {
    r.time("nfs-mount", |_| {
        let retry = nfs::RetryPolicy::default();
        let mut sleep = host.sleep;
        nfs::mount(
            host.sys,
            &p.nfs,
            at,
            Some(client),
            read_only,
            &retry,
            &mut sleep,
        )
    })
    .map_err(fail("nfs-mount"))
}

fn net_request(cmd: &Cmdline, paths: &HostPaths) -> net::NetRequest {
    net::NetRequest {
        ip: cmd
            .ip
            .clone()
            .unwrap_or(net::IpParam::Dhcp { device: None }),
        iface: cmd.iface.clone(),
        // Under QEMU TCG the NIC driver's modules take a while to load.
        iface_timeout: Duration::from_secs(20),
        hostname: cmd.hostname.as_ref().map(|h| h.to_string()),
        resolv_conf: Some(paths.resolv_conf()),
        sysfs: paths.sysfs(),
        ..Default::default()
    }
}

fn ask_controller(
    host: &Host,
    cmd: &Cmdline,
    serial: &BoardSerial,
    mac: &str,
) -> controller::Outcome {
    let Some(base) = &cmd.url else {
        return controller::Outcome::Unreachable("no pureboot.url= on the command line".into());
    };
    let url = controller::boot_url(base, serial, mac);
    let policy = controller::AskPolicy::new(cmd.timeout, cmd.wait);
    let mut sleep = host.sleep;
    controller::ask(host.http, &mut sleep, &url, &policy)
}

fn nfs_boot(
    host: &Host,
    cmd: &Cmdline,
    p: &NfsPlan,
    identity: &Identity,
    client: Ipv4Addr,
    r: &mut Report,
) -> Result<Never, Failure> {
    let sys = host.sys;
    let paths = overlay::Paths::under(&host.paths.mnt());
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
    if let Err(e) = sys.sethostname(p.hostname.as_str()) {
        warn!("sethostname {}: {e}", p.hostname);
    }
    if let Err(e) = nfs::set_client_identifier(&host.paths.sysfs(), p.machine_id.as_str()) {
        warn!("NFS client identifier: {e}; nodes may share one NFSv4 client identity");
    }
    // The base image's own mount needs only the answer, not the export's mount: when the
    // answer names the image it starts beside the export's (their round trips overlap).
    let early_plan =
        base_mount::early_plan(cmd.base_opts.as_deref(), &p.nfs, p.base_image.as_ref());
    // The base image's own mount at paths.base, from the server at `ip`.
    let mount_own = |ip, image: &str, own: &base_mount::OwnMount| {
        std::fs::create_dir_all(&paths.base)
            .map_err(|e| format!("{}: {e}", paths.base.display()))?;
        base_mount::mount(
            sys,
            &p.nfs,
            ip,
            Some(client),
            image,
            &paths.base,
            own,
            host.mountd,
        )
        .map_err(|e| e.to_string())
    };
    let mount_early = |image: &str, own: &base_mount::OwnMount| {
        mount_own(nfs::resolve(&p.nfs.server)?, image, own)
    };
    // The image overlay loop-mounts an ext4 file: its modules load while NFS mounts.
    let (mounted, early) = std::thread::scope(|s| {
        let disk_modules = p.overlay.needs_disk_modules().then(|| {
            background::start(s, "disk-modules", || {
                timed(|| modules::load_list(sys, &host.paths.disk_module_list()))
            })
        });
        let base = early_plan.as_ref().map(|(image, own)| {
            background::start(s, "base-mount", || timed(|| mount_early(image, own)))
        });
        let mounted = nfs_mount(host, p, &paths.nfs, client, read_only, r);
        if let Some(loader) = disk_modules {
            modules_done(r, "disk modules", "disk-modules", loader.join());
        }
        (mounted, base.and_then(|b| b.join()))
    });
    let mounted = mounted?;
    info!(
        "NFS v{} from {}",
        mounted.version.as_str(),
        mounted.server_ip
    );
    r.facts.nfs_version = Some(mounted.version.as_str().to_string());
    let early = early.zip(early_plan).map(|((result, took), (image, own))| {
        r.step("base-mount", took);
        base_mount::Early {
            image,
            tried: own.versions,
            result,
        }
    });
    let plan = base_mount::plan(
        cmd.base_opts.as_deref(),
        p.nfs.options.as_deref(),
        p.nfs.v4_only,
        mounted.version,
    );
    let mount_base = |image: &str| match base_mount::next(&plan, early.as_ref(), image)? {
        base_mount::Next::Shared => Ok(ExportLayout::new(&paths.nfs).base_dir().join(image)),
        base_mount::Next::Mounted(v) => {
            info!(
                "base {image}: own mount, NFS v{} (beside the export's)",
                v.as_str()
            );
            Ok(paths.base.clone())
        }
        base_mount::Next::Mount(own) => {
            if let Some(base_mount::Early { result: Err(e), .. }) =
                early.as_ref().filter(|e| e.image == image)
            {
                info!("base {image}: {e}; now NFS v{}", own.versions[0].as_str());
            }
            let v = mount_own(mounted.server_ip, image, &own)?;
            info!("base {image}: own mount, NFS v{}", v.as_str());
            Ok(paths.base.clone())
        }
    };
    let req = overlay::Request {
        mode: p.overlay,
        layout: p.nfs.layout,
        serial: identity.serial().map(|s| &s.short),
        base_image: p.base_image.as_ref(),
        hostname: p.hostname.as_str(),
        machine_id: p.machine_id.as_str(),
        init: cmd.init.as_deref(),
        export,
        mount_base: Some(&mount_base),
    };
    let done = r
        .time("overlay", |r| overlay::assemble(sys, &paths, &req, r))
        .map_err(fail("overlay"))?;
    r.facts.overlay_mode = Some(done.mode.as_str().to_string());
    r.facts.base_image = done.base_image;
    r.facts.hostname = Some(p.hostname.to_string());
    enter_and_exec(host, cmd, &paths.newroot, p.callback_url.as_deref(), r)
}

fn local_boot(host: &Host, cmd: &Cmdline, device: &str, r: &mut Report) -> Result<Never, Failure> {
    let newroot = host.paths.mnt().join("root");
    let loaded = timed(|| modules::load_list(host.sys, &host.paths.disk_module_list()));
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
        let node = host.paths.at(device);
        while !node.exists() && Instant::now() < deadline {
            (host.sleep)(Duration::from_millis(100));
        }
        std::fs::create_dir_all(&newroot).map_err(|e| e.to_string())?;
        let m = MountArgs::new(device, &newroot, fstype, flags, "");
        host.sys.mount(&m).map_err(|e| format!("{m}: {e}"))
    })
    .map_err(fail("local-mount"))?;
    enter_and_exec(host, cmd, &newroot, None, r)
}

/// The common tail: init check, mounts moved, callback, switch, exec.
fn enter_and_exec(
    host: &Host,
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
    let sys = host.sys;
    let mounts = sys.mounts();
    let kind = switch_root::root_kind(&mounts);
    r.time("move-mounts", |_| {
        switch_root::move_mounts(sys, newroot, &mounts)
    })
    .map_err(fail("move-mounts"))?;
    if let Some(url) = callback {
        let body = r.installed();
        r.time("callback", |_| {
            controller::post_callback(host.http, url, &body)
        });
    }
    r.time("switch-root", |_| {
        switch_root::enter(sys, &host.paths.root, newroot, kind)
    })
    .map_err(fail("switch-root"))?;
    info!("exec {init}");
    log::restore_kmsg_ratelimit();
    watchdog::hand_over();
    Err(Failure {
        step: "exec",
        error: switch_root::exec_init(sys, &init, &host.init_args),
        permanent: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::HttpError;
    use crate::net::{NetConfig, NetError, NetRequest, NetSource};
    use crate::sys::{Call, FakeSys, FAKE_EXEC_ERROR};
    use crate::testutil::TempDir;
    use serde_json::Value;
    use std::fs;
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
                hostname: None,
                stages: vec![("net-dhcp", Duration::from_millis(3))],
            })
        }
    }

    /// Answers every GET with the controller's answer (none: refused); records the POSTs.
    #[derive(Default)]
    struct FakeHttp {
        answer: Option<String>,
        gets: Mutex<Vec<String>>,
        posts: Mutex<Vec<(String, Value)>>,
    }

    impl Http for FakeHttp {
        fn get(&self, url: &str, _: Duration) -> Result<(u16, String), HttpError> {
            self.gets.lock().unwrap().push(url.into());
            match &self.answer {
                Some(a) => Ok((200, a.clone())),
                None => Err(HttpError::transient("connection refused")),
            }
        }
        fn post_json(&self, url: &str, body: &str, _: Duration) -> Result<u16, HttpError> {
            let body = serde_json::from_str(body).unwrap();
            self.posts.lock().unwrap().push((url.into(), body));
            Ok(200)
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

        fn mount(
            &self,
            source: &str,
            target: &str,
            fstype: &str,
            flags: MsFlags,
            data: &str,
        ) -> Call {
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
        let f = w.attempt(CMDLINE);
        assert_eq!((f.step, &f.error), ("exec", &exec_error("/sbin/init")));
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
                "http://ctl:8080/api/v1/boot/pi?serial=d83add36&mac={MAC}"
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
                "move-mounts"
            ]
        );
        assert_install_failed(&posts[1], "exec", "exec /sbin/init");
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
                what: "the export took v4.2 too: nothing new to try, the export's mount serves the base",
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
            assert_eq!(f.step, "exec", "{what}: {}", f.error);
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
        assert_eq!((f.step, &f.error), ("exec", &exec_error("/sbin/init")));

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
        assert_eq!(f.step, "network");
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
        assert_eq!(f.step, "controller");
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
                |w| w.sys.script_mounts([Err(nix::errno::Errno::EACCES)]),
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
            assert_eq!(f.step, *step, "test[{i}]: {what}: {}", f.error);
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
        assert_eq!((f.step, f.error.as_str()), ("panic", "driver exploded"));
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
        assert_eq!(f.step, "controller");
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
        assert_eq!((f.step, &f.error), ("exec", &exec_error("/sbin/init")));
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
        let next = apply_failure_policy(&w.host(), &cmd, false, AfterFailure::Retry(2), 1);
        assert_eq!(next, 2);
        let mnt = w.at("mnt");
        assert_eq!(
            w.sys.calls(),
            ["root", "rw", "base", "nfs"].map(|m| Call::Umount(mnt.join(m)))
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
}
