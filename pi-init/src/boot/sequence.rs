//! One attempt's sequence of steps: serial, network with the modules and the controller
//! beside it, the decision, then the NFS root (its mount, the base image's, the overlay) or
//! a local root, and the common tail (init check, mounts moved, callback, switch, exec).
//! Each step is one [`step::run`] call: timed into the report, its error a [`Failure`] at
//! its [`Step`]. The mechanics are the steps' own (`crate::steps`).

use super::report::Report;
use super::step::{self, Failure, Step};
use super::{Attempt, Host};
use crate::decide::cmdline::Cmdline;
use crate::decide::handover::Lease;
use crate::decide::ip_param::IpParam;
use crate::decide::nfs_options::NfsOptions;
use crate::decide::plan::{self, Decision, Instructions, NfsPlan};
use crate::decide::serial::{BoardSerial, Identity};
use crate::steps::{agent_unit, base_mount, clock, controller, handover, local, lower};
use crate::steps::{modules, net, nfs, overlay, squashfs};
use crate::steps::{serial, switch_root, volumes, watchdog};
use crate::support::{background, log};
use crate::sys::HostPaths;
use ::log::{error, info, warn};
use pureboot_contract::ids::Mac;
use pureboot_contract::{FailureReport, OverlayOutcome};
use std::path::Path;
use std::time::{Duration, Instant};

/// One boot attempt. Returns only on failure (success ends in exec).
pub(super) fn run(host: &Host, cmd: &Cmdline, a: &mut Attempt) -> Failure {
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
    let serial = step::time(r, Step::Serial, |_| {
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
        let net = step::run(r, Step::Network, |_| {
            host.net.bring_up(&net_request(cmd, &host.paths))
        });
        let answer = net.as_ref().ok().map(|n| match &serial {
            Ok(s) => step::time(r, Step::Controller, |_| {
                ask_controller(host, cmd, s, &n.mac)
            }),
            Err(why) if !cmd.urls.is_empty() => controller::Outcome::Unreachable(format!(
                "cannot ask the controller, which keys nodes by serial: {why}"
            )),
            Err(_) => {
                controller::Outcome::Unreachable("no pureboot.url= on the command line".into())
            }
        });
        modules_done(r, "modules", Step::Modules, loader.join());
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
            let mac = Mac::parse(&net.mac).map_err(|e| Failure::at(Step::Serial, &e))?;
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
            warn!("clock not set: no controller answered (the root's own time source must set it)");
            permanent = cmd.urls.is_empty() || identity.serial().is_none();
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
            let lease = handover::lease(&net, &host.paths.sysfs());
            nfs_boot(host, cmd, &p, &identity, &lease, &mut a.report)
        }
        Decision::Local { device } => local_boot(host, cmd, &device, &mut a.report),
        Decision::Fail(why) => Err(Failure {
            step: if identity.serial().is_none() && !cmd.urls.is_empty() {
                Step::Serial
            } else {
                Step::Controller
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
    step: Step,
    loaded: Option<(modules::LoadSummary, Duration)>,
) {
    match loaded {
        Some((sum, took)) => {
            info!("{label}: {}", sum.line());
            r.step(step.as_str(), took);
        }
        None => error!("{label} loader panicked; continuing without it"),
    }
}

/// `f`'s result and how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    (f(), t.elapsed())
}

fn net_request(cmd: &Cmdline, paths: &HostPaths) -> net::NetRequest {
    net::NetRequest {
        ip: cmd.ip.clone().unwrap_or(IpParam::Dhcp { device: None }),
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
    if cmd.urls.is_empty() {
        return controller::Outcome::Unreachable("no pureboot.url= on the command line".into());
    }
    let mac = Mac::parse(mac).ok();
    let kernel = std::fs::read_to_string(host.paths.kernel_release()).ok();
    let kernel = kernel.as_deref().map(str::trim);
    let urls: Vec<String> = cmd
        .urls
        .iter()
        .map(|base| controller::boot_url(base, serial, mac.clone(), kernel))
        .collect();
    let policy = controller::AskPolicy::new(cmd.timeout, cmd.wait);
    let mut sleep = host.sleep;
    let mut clock = |date| clock::follow_controller(host.sys, date);
    controller::ask(host.http, &mut sleep, &mut clock, &urls, &policy)
}

fn nfs_boot(
    host: &Host,
    cmd: &Cmdline,
    p: &NfsPlan,
    identity: &Identity,
    lease: &Lease,
    r: &mut Report,
) -> Result<Never, Failure> {
    let client = lease.addr;
    let paths = overlay::Paths::under(&host.paths.mnt());
    let export = format!("{}:{}", p.nfs.server, p.nfs.path);
    info!(
        "booting {export} (from the {}), overlay {}",
        p.source,
        p.overlay.as_str()
    );
    let (hostname, machine_id) = (p.hostname.as_str(), p.machine_id.as_str());
    nfs::name_client(host.sys, &host.paths.sysfs(), hostname, machine_id);
    let base = base_mount::BaseMount {
        sys: host.sys,
        target: &p.nfs,
        client: Some(client),
        at: &paths.base,
        mountd: host.mountd,
    };
    let (mounted, opts, early) = mount_export(host, cmd, p, &base, &paths.nfs, r)?;
    let plan = base_mount::plan(cmd.base_opts.as_deref(), &opts, mounted.version);
    let own = base_mount::Own {
        base: &base,
        server: mounted.server_ip,
        plan: &plan,
        early: early.as_ref(),
    };
    let want = lower::Want {
        layout: p.nfs.layout,
        init: cmd.init.as_deref(),
        serial: identity.serial().map(|s| &s.short),
        base_image: p.base_image.as_ref(),
        export: &export,
    };
    // The lower layers first (the base image chosen and placed on its own mount), then the
    // overlay on them; both timed as the overlay step.
    let done = step::run(r, Step::Overlay, |r| {
        let mut lower = lower::resolve(&paths.nfs, &want, Some(&own))?;
        // A squashfs base needs loop and squashfs of the disk list, unless the overlay's or
        // the volumes' need loaded the whole list already.
        let loaded = p.overlay.needs_disk_modules() || !p.volumes.is_empty();
        squashfs::place(host.sys, &mut lower, &paths.squash, || {
            if !loaded {
                let list = host.paths.disk_module_list();
                let names = squashfs::MODULES;
                let done = timed(|| modules::load_named(host.sys, &list, names));
                modules_done(r, "disk modules", Step::DiskModules, Some(done));
            }
        })?;
        let req = overlay::Request {
            mode: p.overlay,
            lower: &lower,
            hostname,
            machine_id,
            export: &export,
            persist_image: &p.persist_image,
        };
        let done = overlay::assemble(host.sys, &paths, &req, &mut r.degradations);
        done.map(|d| (d, lower.node_dir))
    })?;
    let (done, node_dir) = done;
    if !p.volumes.is_empty() {
        r.facts.volumes = step::time(r, Step::Volumes, |r| {
            let (at, list) = (&paths.newroot, &p.volumes);
            volumes::mount_all(host.sys, node_dir.as_deref(), at, list, &mut r.degradations)
        });
    }
    r.facts.overlay_mode = Some(done.mode.as_str().to_string());
    r.facts.overlay = Some(OverlayOutcome {
        wanted: p.overlay,
        used: done.mode,
        fallback: done.fallback,
    });
    r.facts.base_image = done.base_image;
    r.facts.hostname = Some(p.hostname.to_string());
    let urls = ForTheRoot {
        callback: p.callback_url.as_deref(),
        agent: p.agent_url.as_deref(),
        lease: Some(lease),
    };
    enter_and_exec(host, cmd, &paths.newroot, urls, r)
}

/// What the root gets handed at the end: pi-init's callback, the agent it leaves for the
/// root, the network lease (an NFS root's).
#[derive(Default, Clone, Copy)]
struct ForTheRoot<'a> {
    callback: Option<&'a str>,
    agent: Option<&'a str>,
    lease: Option<&'a Lease>,
}

/// The export's mount at `at`, its options parsed once for it and for the base image's own
/// mount. Beside it, on threads of their own: the disk modules when the overlay needs them,
/// and the base image's own mount when the answer names the image (it needs only the answer,
/// so their round trips overlap). What that mount did comes back for the overlay step.
fn mount_export(
    host: &Host,
    cmd: &Cmdline,
    p: &NfsPlan,
    base: &base_mount::BaseMount,
    at: &Path,
    r: &mut Report,
) -> Result<(nfs::Mounted, NfsOptions, Option<base_mount::Early>), Failure> {
    let sys = host.sys;
    let opts = NfsOptions::parse(p.nfs.options.as_deref(), p.nfs.v4_only);
    let early_plan = opts.as_ref().ok().and_then(|o| {
        let base_opts = cmd.base_opts.as_deref();
        base_mount::early_plan(base_opts, p.nfs.layout, o, p.base_image.as_ref())
    });
    // The export is written only when the writable layer or a volume lives on it.
    let read_only = !p.overlay.writes_export() && p.volumes.is_empty();
    let (mounted, early) = std::thread::scope(|s| {
        let disk_modules = (p.overlay.needs_disk_modules() || !p.volumes.is_empty()).then(|| {
            background::start(s, "disk-modules", || {
                timed(|| modules::load_list(sys, &host.paths.disk_module_list()))
            })
        });
        let beside = early_plan.as_ref().map(|(image, own)| {
            background::start(s, "base-mount", || timed(|| base.mount_beside(image, own)))
        });
        let mounted = step::run(r, Step::NfsMount, |_| {
            let opts = opts.map_err(|e| nfs::NfsError::options(&p.nfs, e))?;
            let retry = nfs::RetryPolicy::default();
            let mut sleep = host.sleep;
            nfs::mount(
                sys,
                &p.nfs,
                &opts,
                at,
                base.client,
                read_only,
                &retry,
                &mut sleep,
            )
            .map(|m| (m, opts))
        });
        if let Some(loader) = disk_modules {
            modules_done(r, "disk modules", Step::DiskModules, loader.join());
        }
        (mounted, beside.and_then(|b| b.join()))
    });
    let (mounted, opts) = mounted?;
    info!(
        "NFS v{} from {}",
        mounted.version.as_str(),
        mounted.server_ip
    );
    r.facts.nfs_version = Some(mounted.version.as_str().to_string());
    let early = early.zip(early_plan).map(|((result, took), (image, own))| {
        r.step(Step::BaseMount.as_str(), took);
        base_mount::Early {
            image,
            tried: own.versions,
            result,
        }
    });
    Ok((mounted, opts, early))
}

fn local_boot(host: &Host, cmd: &Cmdline, device: &str, r: &mut Report) -> Result<Never, Failure> {
    let newroot = host.paths.mnt().join("root");
    let loaded = timed(|| modules::load_list(host.sys, &host.paths.disk_module_list()));
    modules_done(r, "disk modules", Step::DiskModules, Some(loaded));
    let root = local::LocalRoot {
        device,
        node: host.paths.at(device),
        fstype: cmd.rootfstype.as_deref().unwrap_or("ext4"),
        read_write: cmd.root_rw,
    };
    step::run(r, Step::LocalMount, |_| {
        local::mount(host.sys, &root, &newroot, host.sleep)
    })?;
    enter_and_exec(host, cmd, &newroot, ForTheRoot::default(), r)
}

/// The report's word for an agent left in the root.
const AGENT_INSTALLED: &str = "installed";

/// The common tail: init check, the agent left, the network handed over (an NFS root's),
/// mounts moved, callback (left for the agent when no controller took it), switch, exec.
fn enter_and_exec(
    host: &Host,
    cmd: &Cmdline,
    newroot: &Path,
    urls: ForTheRoot<'_>,
    r: &mut Report,
) -> Result<Never, Failure> {
    let (init, resolved) = step::run(r, Step::InitCheck, |_| {
        switch_root::find_init(newroot, cmd.init.as_deref())
    })?;
    info!("init {init} ({})", resolved.display());
    if let Some(url) = urls.agent {
        // Before the move: /run is still pi-init's own, and becomes the root's.
        let left = step::time(r, Step::Agent, |_| {
            agent_unit::leave(&host.paths, &resolved, url)
        });
        let said = match left {
            Ok(()) => AGENT_INSTALLED.to_string(),
            Err(e) => {
                warn!("post-boot agent {e}");
                e.to_string()
            }
        };
        r.facts.agent = Some(said);
    }
    if let Some(lease) = urls.lease {
        // Into /run before it moves: the root's network stack reads it there. Without it
        // the root boots as before, its stack left to its own configuration.
        match step::time(r, Step::Handover, |_| {
            handover::hand_over(&host.paths.at("/run"), newroot, lease)
        }) {
            Ok(files) => info!("network handed over: {files} files in /run"),
            Err(e) => warn!("{e}; the root's network stack is left to its own configuration"),
        }
    }
    let sys = host.sys;
    let mounts = sys.mounts();
    let kind = switch_root::root_kind(&mounts);
    step::run(r, Step::MoveMounts, |_| {
        switch_root::move_mounts(sys, newroot, &mounts)
    })?;
    if let Some(url) = urls.callback {
        let body = r.installed();
        let taken = step::time(r, Step::Callback, |_| {
            controller::post_callback(host.http, url, &body)
        });
        if !taken && r.facts.agent.as_deref() == Some(AGENT_INSTALLED) {
            agent_unit::leave_callback(&newroot.join("run"), url, &body);
        }
    }
    step::run(r, Step::SwitchRoot, |_| {
        switch_root::enter(sys, &host.paths.root, newroot, kind)
    })?;
    info!("exec {init}");
    log::restore_kmsg_ratelimit();
    watchdog::hand_over();
    let e = switch_root::exec_init(sys, &init, &host.init_args);
    Err(Failure::at(Step::Exec, &e))
}
