//! The admin CLI: `serve` plus node, image, workflow and overlay commands. Commands open
//! the same config and database as the daemon (SQLite WAL makes that safe while it runs)
//! and call the same services as the HTTP API.

mod commands;
mod database;
mod groups;
mod images;
mod pool;
mod table;
mod validate;

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use serde::Serialize;

use crate::app::App;
use crate::config::Config;
use crate::domain::ids::NodeRef;
use crate::domain::volumes::VolumeSpec;
use crate::nfs_tree::exports::{ExportFormat, Network};
use crate::nfs_tree::import::squashfs::BaseFormat;
use crate::service::Services;
use pureboot_contract::ids::Serial;
use pureboot_contract::OverlayMode;

#[derive(Debug, Parser)]
#[command(
    name = "pureboot-controller",
    version,
    about = "pureboot controller: Pi boot API, node registry, NFS trees"
)]
pub struct Cli {
    /// Controller config (TOML); it must exist (an empty file means the defaults).
    #[arg(
        long,
        env = "PUREBOOT_CONFIG",
        default_value = "/etc/pureboot/controller.toml",
        global = true
    )]
    pub config: PathBuf,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the Pi boot API, the management API and the status page.
    Serve,
    /// Nodes in the registry: list, show, add, assign a workflow, remove.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Base images under base/ on the export: import, list, remove.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Node groups: settings many nodes share (see `node show --effective`), and the rules
    /// that place new nodes in them.
    #[command(subcommand)]
    Group(groups::GroupCmd),
    /// Workflow files: list the loaded ones, validate files.
    #[command(subcommand)]
    Workflow(WorkflowCmd),
    /// A node's tree on the export (nodes/<serial>): create, inspect, reset, remove.
    #[command(subcommand)]
    Overlay(OverlayCmd),
    /// The NFS server's side: the export rules the controller recommends.
    #[command(subcommand)]
    Nfs(NfsCmd),
    /// The Pis' TFTP folders under [tftp] root.
    #[command(subcommand)]
    Tftp(TftpCmd),
    /// The registry itself: copy an SQLite one into PostgreSQL.
    #[command(subcommand)]
    Database(database::DatabaseCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of pureboot-controller.
    Manpage,
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Every node (or those in one state or on one workflow), with flags.
    List {
        /// Only nodes in this state (discovered, pending, installing, active, ...).
        #[arg(long)]
        state: Option<String>,
        /// Only nodes assigned this workflow id.
        #[arg(long)]
        workflow: Option<String>,
        /// Only members of this group (not of its subgroups).
        #[arg(long)]
        group: Option<String>,
    },
    /// A node with its recent events and its tree on the export.
    Show {
        /// The node's serial (8 hex) or id.
        id: String,
        /// Instead: every setting its next boot gets (workflow, base image, overlay,
        /// hostname, volumes, variables) and where each came from (default, workflow,
        /// group, node).
        #[arg(long)]
        effective: bool,
    },
    /// Register a node (or adopt a discovered one) by its serial.
    Add {
        /// The board's serial: its low 8 hex digits.
        serial: String,
        /// The workflow to boot it with (a file's id in workflows_dir).
        #[arg(long)]
        workflow: Option<String>,
        /// Its host name (default: pi-<serial>).
        #[arg(long)]
        hostname: Option<String>,
        /// Where its writes go: tmpfs, image (persistent), nfs or none.
        #[arg(long, value_parser = parse_overlay)]
        overlay: Option<OverlayMode>,
        /// The base image under base/ (default: its group's, else its workflow's, else the
        /// configured one).
        #[arg(long)]
        base_image: Option<String>,
        /// Its MAC, confirmed: boots must carry it (another machine claiming the serial is
        /// refused), and only they may be handed a deployment.
        #[arg(long)]
        mac: Option<String>,
        /// Its board (pi3, pi4, pi5, cm4, ...): with [tftp] root, its TFTP folder holds that
        /// board's kernel and firmware.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::domain::node::PI_MODELS))]
        model: Option<String>,
    },
    /// Change a node's settings.
    Set {
        /// The node's serial (8 hex) or id.
        id: String,
        /// Confirm the node's MAC: boots must carry it, and a deployment (`deploy_image`)
        /// is handed only to a boot that does. `none` forgets it. Also forgets the node's
        /// address (with `pin_boot_address`, the next boot with the MAC pins its own).
        #[arg(long)]
        mac: Option<String>,
        /// A volume of its own, `<path>=<MiB>` (e.g. /var/lib/rancher=8192): an ext4 image
        /// mounted at that path in its root, outside the overlay; wins over its workflow's
        /// for that path. Repeatable.
        #[arg(long = "volume", value_name = "PATH=MiB", value_parser = parse_volume)]
        volumes: Vec<VolumeSpec>,
        /// Drop a volume of its own by path (its image stays on the export). Repeatable.
        #[arg(long = "no-volume", value_name = "PATH")]
        no_volumes: Vec<String>,
        /// Its base image under base/ (`none`: its group's, else its workflow's, else the
        /// configured one).
        #[arg(long)]
        base_image: Option<String>,
        /// Its group (`none`: in no group). A node waiting for a workflow that the group
        /// gives becomes pending.
        #[arg(long)]
        group: Option<String>,
    },
    /// The node's post-boot steps: each with its last run (outcome, time, output tail),
    /// whether it runs at the next boot, the workflow's secrets (masked) and the last boot.
    Steps {
        /// The node's serial (8 hex) or id.
        id: String,
    },
    /// Run post-boot steps again at the node's next boot (a `first_boot` step that
    /// already succeeded included).
    Rerun {
        /// The node's serial (8 hex) or id.
        id: String,
        /// One step's name (default: every step).
        step: Option<String>,
    },
    /// Assign a workflow: the node boots it from its next boot on.
    Assign {
        /// The node's serial (8 hex) or id.
        id: String,
        /// The workflow id.
        workflow: String,
    },
    /// Remove a node from the registry, and its tree from the export.
    Rm {
        /// The node's serial (8 hex) or id.
        id: String,
        /// Keep nodes/<serial> on the export.
        #[arg(long)]
        keep_tree: bool,
    },
    /// Move a node's data (nodes/<serial>: persist image, upper directory, volumes) to
    /// another NFS server of the pool and make it the node's home. Only with the node
    /// powered off (--off), and refused while its last boot is under
    /// boot_complete_within_secs old.
    Move {
        /// The node's serial (8 hex) or id.
        id: String,
        /// The server's address, as in [[nfs.servers]].
        server: String,
        /// The node is powered off (the controller cannot see it).
        #[arg(long)]
        off: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Import a root as a new version of a channel: a tar (tar, tar.gz, tar.xz, tar.zst) or
    /// a disk image (img, img.gz, img.xz, img.zst, e.g. Raspberry Pi OS's), whose ext4 root
    /// becomes the image and whose FAT boot partition its boot/firmware/. A new channel
    /// points at its first version at once; a new version of an existing channel is only
    /// added (roll it out with `image rollout`, or give --promote).
    Import {
        /// The archive or disk image (its kind and compression are told by its content).
        archive: PathBuf,
        /// The channel (e.g. bookworm); the version id is <channel>@<n>.
        name: String,
        /// Point the channel at the new version now (every node following it boots it at
        /// its next boot; no canary).
        #[arg(long)]
        promote: bool,
        /// Create the archive's character and block device nodes (left out by default: a
        /// systemd root gets /dev from devtmpfs).
        #[arg(long)]
        keep_devices: bool,
        /// Keep set-uid and set-gid bits on files (cleared by default). A root whose users
        /// become root needs them: su, sudo, mount, umount, passwd, newgrp, unix_chkpwd.
        #[arg(long)]
        keep_setuid: bool,
        /// Refuse the archive when its files declare more than this (sparse files count at
        /// their full size): bytes, or with a unit K, M, G, T (binary). Default
        /// [nfs] import_max_size_mb.
        #[arg(long, value_parser = parse_size)]
        max_size: Option<u64>,
        /// A root tree, or one squashfs file (base/<name>/root.squashfs; needs mksquashfs).
        #[arg(long, value_enum, default_value_t)]
        format: BaseFormat,
    },
    /// The channels and their versions (digest, size, import time, bad), who is assigned
    /// and who runs each.
    List,
    /// One channel: its versions, who is assigned and who runs each, its last rollout.
    Show { channel: String },
    /// Remove a version (<channel>@<n>) or a channel with all its versions. Refused while a
    /// node is assigned or runs one (naming them).
    Rm {
        /// A version id or a channel name.
        name: String,
    },
    /// Remove the versions older than each channel's newest N that no node is assigned or
    /// runs (the channel's current and previous versions stay).
    Prune {
        #[arg(long)]
        keep: usize,
    },
    /// Roll a version out: canaries first, the channel moves once they are healthy; a
    /// failed canary stops it and sends the canaries back. Rebooting the nodes is the
    /// operator's job or [rollout] hook's.
    Rollout(RolloutCmd),
    /// Move a channel back to its previous version (its nodes boot it at their next boot).
    Rollback { channel: String },
    /// Hash each squashfs base image against the digest its import recorded (boots check
    /// a file again only when it changed; this reads every byte now). Exits 1 when one is
    /// damaged.
    Verify {
        /// Directories of base/ (e.g. bookworm, bookworm.v2); all when none is named.
        dirs: Vec<String>,
    },
    /// Each base image on each NFS server of the pool ([[nfs.servers]]): ok (the source's
    /// digest), missing, differs, or unreachable (no local_path). Hashes every copy.
    Status,
    /// Copy every base image a pool server lacks (or holds another copy of) from [nfs]
    /// root_path to its local_path, check the copy's digest, and let boots use it.
    Sync,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RolloutCmd {
    #[command(subcommand)]
    pub sub: Option<RolloutSub>,
    /// The channel to move.
    #[arg(required = true)]
    pub channel: Option<String>,
    /// The version to move it to (<channel>@<n>).
    #[arg(required = true)]
    pub version: Option<String>,
    /// The canaries: a number of the channel's nodes (the first by serial), a group (its
    /// nodes and its subgroups' that follow the channel) or a comma-separated list of
    /// serials. Default 1.
    #[arg(long, default_value = "1")]
    pub canary: String,
    /// How long the canaries have to become healthy: seconds, or with s, m, h.
    #[arg(long, default_value = "10m", value_parser = parse_duration_secs)]
    pub wait: u64,
    /// Healthy canaries needed (default: all of them).
    #[arg(long)]
    pub min_healthy: Option<u32>,
    /// What healthy means: complete (the agent's boot complete, no failed post-boot step)
    /// or installed (pi-init's report; for roots without the agent).
    #[arg(long, default_value = "complete")]
    pub health: String,
    /// Roll out a version a rollout marked bad.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum RolloutSub {
    /// The channel's last rollout (canaries, healthy, failed, waiting) and its events.
    Status { channel: String },
}

/// `90`, `90s`, `10m`, `2h`.
fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let (n, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: a number of s, m or h"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?}: a number of s, m or h")),
    };
    Ok(n.saturating_mul(mult))
}

#[derive(Debug, Subcommand)]
pub enum NfsCmd {
    /// The pool's servers ([[nfs.servers]]): state, weight, nodes, and the nodes whose data
    /// lives there (what draining leaves for `node move`).
    Servers,
    /// Pin a node or a group to a server of the pool (their next boots go there), or clear
    /// the pin.
    Pin {
        /// The node's serial or id.
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        node: Option<String>,
        /// The group's name.
        #[arg(long)]
        group: Option<String>,
        /// The server's address (omit with --clear).
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        server: Option<String>,
        #[arg(long)]
        clear: bool,
    },
    /// Write export rules: base/ read-only for the boot network, each node's directory
    /// read-write for that node's address only (its --address, else the address of its
    /// last boot), the export root not exported. Nodes without an address are named in a
    /// comment and not exported.
    Exports {
        /// knfsd (a file for /etc/exports.d/) or ganesha (EXPORT blocks plus the settings
        /// a boot needs).
        #[arg(long, default_value = "knfsd", value_parser = parse_export_format)]
        format: ExportFormat,
        /// The boot network, which may read base/ (default: nfs_server's /24).
        #[arg(long)]
        network: Option<Network>,
        /// A node's address, `<serial>=<ip>` (a DHCP reservation); repeatable. Overrides the
        /// address of its last boot.
        #[arg(long = "address", value_parser = parse_address)]
        addresses: Vec<(Serial, IpAddr)>,
        /// Write here (replaced whole) instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// With [[nfs.servers]]: the server (its address) whose rules to write: its
        /// export_path, the nodes that live on it.
        #[arg(long)]
        server: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TftpCmd {
    /// Write every node's folder for its image (those already built from the same inputs
    /// are left as they are) and the discovery folder; exits non-zero if one failed.
    Sync,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCmd {
    /// The workflows in workflows_dir, and the files left out as broken.
    List,
    /// Check files (default: the configured workflows directory) and render them for a
    /// sample node; exits non-zero on any error.
    Validate {
        /// Workflow files to check.
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OverlayCmd {
    /// Create or refresh a registered node's tree as its next boot would.
    Create {
        /// The node's serial (8 hex) or id.
        id: String,
    },
    /// The node's tree: files, persist.img state, broken images set aside.
    Info {
        /// The node's serial (8 hex).
        serial: String,
    },
    /// Move the node's persist.img aside (persist.img.broken-<time>, never deleted) and
    /// create a fresh one: its next boot starts with an empty persistent layer.
    Reset {
        /// The node's serial (8 hex).
        serial: String,
    },
    /// Remove the node's tree (nodes/<serial>, persist.img included) from the export.
    Rm {
        /// The node's serial (8 hex).
        serial: String,
    },
}

/// `64G`, `512M`, `100K`, `1T` (binary units) or bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: the unit is one of K, M, G, T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 64G, 512M, or bytes)"))?;
    match n.checked_mul(1 << shift) {
        Some(0) => Err("a size of 0 would refuse every archive".into()),
        Some(v) => Ok(v),
        None => Err(format!("{s:?} is too large")),
    }
}

fn parse_export_format(s: &str) -> Result<ExportFormat, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_address(s: &str) -> Result<(Serial, IpAddr), String> {
    let (serial, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected <serial>=<ip>"))?;
    let serial = Serial::parse(serial).map_err(|e| e.to_string())?;
    let ip = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    Ok((serial, ip))
}

/// `<path>=<MiB>`, each part checked as the service checks it.
pub(super) fn parse_volume(s: &str) -> Result<VolumeSpec, String> {
    let (path, size) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?}: expected <path>=<MiB>, e.g. /var/lib/rancher=8192"))?;
    let path = pureboot_contract::volumes::VolumePath::parse(path).map_err(|e| e.to_string())?;
    let size_mb = size
        .parse()
        .map_err(|_| format!("{size:?}: the size is a whole number of MiB"))?;
    let spec = VolumeSpec {
        path: path.to_string(),
        size_mb,
    };
    let sizes = crate::nfs_tree::persist::MIN_PERSIST_MB..=crate::nfs_tree::persist::MAX_PERSIST_MB;
    crate::domain::volumes::check("--volume", std::slice::from_ref(&spec), sizes)
        .map_err(|(_, m)| m)?;
    Ok(spec)
}

pub(super) fn parse_overlay(s: &str) -> Result<OverlayMode, String> {
    Ok(s.parse()?)
}

fn print_json(v: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn node_ref(id: &str) -> Result<NodeRef> {
    Ok(NodeRef::parse(id)?)
}

pub fn run(cli: Cli) -> Result<()> {
    // Generated from the same definitions as the parser; no config needed.
    match cli.command {
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "pureboot-controller", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            return Ok(());
        }
        Command::Manpage => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Serve => serve(config),
        Command::Workflow(WorkflowCmd::Validate { files }) => {
            validate::run(&config, &files, cli.json)
        }
        Command::Database(cmd) => database::run(&config, cmd, cli.json),
        other => {
            let services = Services::open(config)?;
            let out = commands::Output { json: cli.json };
            match other {
                Command::Node(cmd) => out.node(&services, cmd),
                Command::Group(cmd) => out.group(&services, cmd),
                Command::Image(cmd) => out.image(&services, cmd),
                Command::Workflow(WorkflowCmd::List) => out.workflows(&services),
                Command::Overlay(cmd) => out.overlay(&services, cmd),
                Command::Nfs(cmd) => out.nfs(&services, cmd),
                Command::Tftp(TftpCmd::Sync) => out.tftp_sync(&services),
                Command::Serve
                | Command::Workflow(WorkflowCmd::Validate { .. })
                | Command::Database(_)
                | Command::Completions { .. }
                | Command::Manpage => unreachable!("handled above"),
            }
        }
    }
}

fn serve(config: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let app = App::build(config).await?;
        app.reload_workflows_on_sighup()?;
        // Tests and scripts wait for this line (port 0 resolves here).
        println!(
            "pureboot-controller listening on http://{}",
            app.local_addr()
        );
        log::info!("listening on http://{}", app.local_addr());
        if let Some(a) = app.admin_addr() {
            println!("pureboot-controller admin API on http://{a}");
            log::info!("management API on http://{a} (not on {})", app.local_addr());
        }
        app.run().await
    });
    // Blocking work still running (a boot's file writes) gets a moment, not forever.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}
