//! One scenario's world: a scratch directory, a private namespace, nfs-ganesha exporting
//! `<dir>/nfs`, and (optionally) the controller serving that tree. Guests boot inside it.
//! Dropping the lab stops everything (controller, ganesha, rpcbind, the namespace).

use std::path::{Path, PathBuf};
use std::process::Command;

use pureboot_contract::ids::{Hostname, Serial};

use crate::console::GuestReport;
use crate::controller::{Controller, NodeSpec, Settings};
use crate::env::TestEnv;
use crate::guest_root;
use crate::netns::Netns;
use crate::nfs_server::{NfsServer, Protocols};
use crate::qemu::{BootRun, Outcome, VirtualPi, HOST_FROM_GUEST};
use crate::workdir::WorkDir;
use crate::{initramfs, process};

/// The base image name the tiny root is imported as.
pub const TINY: &str = "tiny";
/// The workflow the scenarios assign nodes to.
pub const WORKFLOW: &str = "pi-diskless-nfs";

/// The name a node gets when nobody names it (the contract's rule, `pi-<serial>`).
pub fn default_hostname(serial: &str) -> String {
    match Serial::parse(serial) {
        Ok(s) => Hostname::for_serial(&s).to_string(),
        Err(e) => panic!("a scenario's serial: {e}"),
    }
}

/// A node on the diskless [`WORKFLOW`] with the tmpfs overlay (the workflow's own default is
/// the persistent `image` mode; a boot that tests another mode says so).
pub fn diskless_node(hostname: &str) -> NodeSpec {
    NodeSpec {
        workflow: WORKFLOW.into(),
        hostname: Some(hostname.into()),
        overlay: Some("tmpfs".into()),
        ..Default::default()
    }
}

#[derive(Clone, Debug)]
pub struct LabOptions {
    pub protocols: Protocols,
    /// Start the controller's daemon (the CLI is available either way when `controller`).
    pub serve: bool,
    pub controller: bool,
    pub auto_register: bool,
    pub default_base_image: String,
    /// Workflow files of the scenario's own, `(file name, YAML)`, beside the repository's.
    pub workflows: Vec<(String, String)>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            protocols: Protocols::V3AndV4,
            serve: true,
            controller: true,
            auto_register: true,
            default_base_image: TINY.to_string(),
            workflows: Vec::new(),
        }
    }
}

pub struct Lab {
    pub name: String,
    pub env: &'static TestEnv,
    // Drop order matters: the controller, then the NFS server, then the namespace.
    pub controller: Option<Controller>,
    pub nfs: NfsServer,
    pub ns: Netns,
    pub dir: WorkDir,
}

/// The repository's workflows, or with a scenario's own: a copy of them and its files.
fn workflows_dir(
    env: &TestEnv,
    dir: &WorkDir,
    own: &[(String, String)],
) -> Result<PathBuf, String> {
    let repo = env.repo.join("workflows");
    if own.is_empty() {
        return Ok(repo);
    }
    let to = dir.join("workflows");
    let io = |e: std::io::Error| format!("the scenario's workflows in {}: {e}", to.display());
    std::fs::create_dir_all(&to).map_err(io)?;
    for entry in std::fs::read_dir(&repo).map_err(io)? {
        let path = entry.map_err(io)?.path();
        std::fs::copy(&path, to.join(path.file_name().unwrap_or_default())).map_err(io)?;
    }
    for (name, yaml) in own {
        std::fs::write(to.join(name), yaml).map_err(io)?;
    }
    Ok(to)
}

impl Lab {
    pub fn start(name: &str, env: &'static TestEnv, opts: LabOptions) -> Result<Lab, String> {
        let dir = WorkDir::new(name).map_err(|e| e.to_string())?;
        let ns = Netns::new().map_err(|e| e.to_string())?;
        let export = dir.join("nfs");
        for d in ["base", "nodes"] {
            std::fs::create_dir_all(export.join(d)).map_err(|e| e.to_string())?;
        }
        let nfs = NfsServer::start(&ns, dir.path(), &export, opts.protocols)?;
        let controller = if opts.controller {
            let mut c = Controller::new(
                &env.binary("pureboot-controller")?,
                dir.path(),
                &Settings {
                    nfs_root: export.clone(),
                    database: dir.join("controller.db"),
                    workflows_dir: workflows_dir(env, &dir, &opts.workflows)?,
                    auto_register: opts.auto_register,
                    default_base_image: opts.default_base_image.clone(),
                },
            )?;
            if opts.serve {
                c.serve(&ns)?;
            }
            Some(c)
        } else {
            None
        };
        Ok(Lab {
            name: name.to_string(),
            env,
            controller,
            nfs,
            ns,
            dir,
        })
    }

    /// A lab with NFS only (no controller): the tiny root unpacked as `tiny` and a node layer
    /// for `serial` written directly, as the controller would have rendered it.
    pub fn without_controller(
        name: &str,
        env: &'static TestEnv,
        serial: &str,
        hostname: &str,
    ) -> Result<Lab, String> {
        let opts = LabOptions {
            controller: false,
            ..Default::default()
        };
        let lab = Lab::start(name, env, opts)?;
        lab.stage_without_controller(TINY, serial, hostname)?;
        Ok(lab)
    }

    /// Restarts the NFS server exporting `rules` (`pureboot-controller nfs exports --format
    /// ganesha`) instead of the lab's default export of the whole tree.
    pub fn reload_nfs(&mut self, rules: &str) -> Result<(), String> {
        let export = self.nfs.export.clone();
        self.nfs.stop();
        // The old server's value is dropped (its daemons already stopped) once the new runs.
        self.nfs = NfsServer::start_with(
            &self.ns,
            self.dir.path(),
            &export,
            Protocols::V3AndV4,
            Some(rules),
        )?;
        Ok(())
    }

    pub fn export(&self) -> &Path {
        &self.nfs.export
    }

    pub fn controller(&self) -> &Controller {
        self.controller
            .as_ref()
            .expect("this lab runs a controller")
    }

    pub fn controller_mut(&mut self) -> &mut Controller {
        self.controller
            .as_mut()
            .expect("this lab runs a controller")
    }

    /// Builds the tiny busybox root and its tarball in the lab's directory.
    pub fn tiny_root_tarball(&self) -> Result<PathBuf, String> {
        // Built once per lab: a scenario may import it twice (two formats).
        let tar = self.dir.join("tiny-root.tar");
        if tar.is_file() {
            return Ok(tar);
        }
        let root = self.dir.join("tiny-root");
        guest_root::build_tiny_root(&self.env.busybox, &root)?;
        guest_root::tarball(&root, &tar)
    }

    /// Imports the tiny root as base image `name` through the controller's CLI.
    pub fn import_tiny_root(&self, name: &str) -> Result<(), String> {
        let tar = self.tiny_root_tarball()?;
        self.controller().import_image(&tar, name)
    }

    /// Without a controller: unpacks the tiny root straight into `base/<name>` and writes a
    /// node layer for `serial` (what the controller would have rendered).
    pub fn stage_without_controller(
        &self,
        name: &str,
        serial: &str,
        hostname: &str,
    ) -> Result<(), String> {
        self.unpack_tiny_root(&self.export().join("base").join(name))?;
        let etc = self.export().join("nodes").join(serial).join("upper/etc");
        std::fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
        std::fs::write(etc.join("hostname"), format!("{hostname}\n")).map_err(|e| e.to_string())?;
        std::fs::write(etc.join("machine-id"), format!("{serial:0>32}\n"))
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The tiny root unpacked at `<export>/<rel>`: a plain root filesystem, as upstream
    /// PureBoot's users and the kernel's `nfsroot=` export it (no `base/`, no `nodes/`).
    pub fn stage_plain_root(&self, rel: &str) -> Result<PathBuf, String> {
        let dir = self.export().join(rel);
        self.unpack_tiny_root(&dir)?;
        Ok(dir)
    }

    fn unpack_tiny_root(&self, dir: &Path) -> Result<(), String> {
        let tar = self.tiny_root_tarball()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        process::run(Command::new("tar").arg("-C").arg(dir).arg("-xf").arg(&tar)).map(drop)
    }

    pub fn add_node(&self, serial: &str, spec: NodeSpec) -> Result<(), String> {
        self.controller().add_node(serial, &spec)
    }

    /// A virtual Pi booting pi-init's initramfs, pointed at the lab's controller.
    pub fn pi(&self, serial: &str) -> Result<VirtualPi, String> {
        let initrd = initramfs::pi_init(self.env)?;
        Ok(VirtualPi::new(serial, &self.env.kernel().image, &initrd)
            .arg(format!(
                "pureboot.url=http://{HOST_FROM_GUEST}:{}",
                crate::controller::PORT
            ))
            .arg("pureboot.log=debug"))
    }

    /// A virtual Pi 3B (QEMU `raspi3b`) booting the `rpi3` initramfs, its serial in the
    /// device tree (no `pureboot.serial=`), pointed at the lab's controller.
    pub fn pi3(&self, serial: &str) -> Result<VirtualPi, String> {
        let initrd = initramfs::pi_init_rpi3(self.env)?;
        let dtb = crate::qemu::raspi3b_dtb(
            &self.env.kernel().modules_root,
            serial,
            &self.dir.join(&format!("rpi3-{serial}.dtb")),
        )?;
        Ok(VirtualPi::new(serial, &self.env.kernel().image, &initrd)
            .board(crate::qemu::Board::Raspi3b { dtb })
            .arg(format!(
                "pureboot.url=http://{HOST_FROM_GUEST}:{}",
                crate::controller::PORT
            ))
            .arg("pureboot.log=debug")
            .timeout(std::time::Duration::from_secs(240)))
    }

    /// Boots `pi` to the end (poweroff, reboot or timeout). `label` names the console file.
    pub fn boot(&self, pi: &VirtualPi, label: &str) -> Result<BootRun, String> {
        pi.boot(&self.ns, &self.dir.join(&format!("console-{label}.log")))
    }

    /// Boots several guests at once and waits for all of them.
    pub fn boot_together(&self, pis: &[VirtualPi]) -> Result<Vec<BootRun>, String> {
        let running = pis
            .iter()
            .map(|pi| {
                pi.start(
                    &self.ns,
                    &self.dir.join(&format!("console-{}.log", pi.serial)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(running.into_iter().map(|r| r.wait()).collect())
    }

    /// Tails of the server logs, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut s = format!(
            "----- {}: ganesha log -----\n{}\n",
            self.name,
            self.nfs.log_tail(15)
        );
        if let Some(c) = &self.controller {
            s += &format!(
                "----- {}: controller log -----\n{}\n",
                self.name,
                c.log_tail(40)
            );
        }
        s
    }

    /// The guest's report, or a panic showing the console and the servers' logs.
    pub fn expect_report(&self, run: &BootRun) -> GuestReport {
        match GuestReport::find(&run.console) {
            Some(r) if run.outcome == Outcome::Exited => r,
            _ => panic!(
                "{}: guest {} did not reach its root's init and power off\n{}\n{}",
                self.name,
                run.serial,
                run.dump(),
                self.diagnostics()
            ),
        }
    }

    /// Asserts `cond`, else panics with `what`, the console and the logs.
    pub fn check(&self, cond: bool, what: &str, run: &BootRun) {
        if !cond {
            panic!(
                "{}: {what}\n{}\n{}",
                self.name,
                run.dump(),
                self.diagnostics()
            );
        }
    }
}
