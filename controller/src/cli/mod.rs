//! The admin CLI: `serve` plus node, image, workflow and overlay commands. Commands open
//! the same config and database as the daemon (SQLite WAL makes that safe while it runs)
//! and call the same services as the HTTP API.

mod table;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::app::App;
use crate::config::Config;
use crate::domain::{NodeRef, NodeState, OverlayMode, Serial};
use crate::nfs_tree::TerminalProgress;
use crate::service::{NodeSpec, Services, RECENT_EVENTS};
use crate::store::NodeFilter;
use crate::templates::Templates;
use crate::workflows::load_file;

#[derive(Debug, Parser)]
#[command(
    name = "pureboot-controller",
    version,
    about = "pureboot controller: Pi boot API, node registry, NFS trees"
)]
pub struct Cli {
    /// Controller config (TOML); a missing file means local defaults.
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
    /// Run the HTTP API.
    Serve,
    #[command(subcommand)]
    Node(NodeCmd),
    #[command(subcommand)]
    Image(ImageCmd),
    #[command(subcommand)]
    Workflow(WorkflowCmd),
    #[command(subcommand)]
    Overlay(OverlayCmd),
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
    },
    /// A node with its recent events and its tree on the export.
    Show {
        id: String,
    },
    Add {
        serial: String,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        #[arg(long, value_parser = parse_overlay)]
        overlay: Option<OverlayMode>,
        #[arg(long)]
        base_image: Option<String>,
        #[arg(long)]
        mac: Option<String>,
    },
    Assign {
        id: String,
        workflow: String,
    },
    Rm {
        id: String,
        /// Keep nodes/<serial> on the export.
        #[arg(long)]
        keep_tree: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Import a tar, tar.gz, tar.xz or tar.zst as base/<name>.
    Import {
        archive: PathBuf,
        name: String,
    },
    List,
    Rm {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCmd {
    List,
    /// Check files (default: the configured workflows directory) and render them for a
    /// sample node; exits non-zero on any error.
    Validate {
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OverlayCmd {
    /// Create or refresh a registered node's tree as its next boot would.
    Create {
        id: String,
    },
    Info {
        serial: String,
    },
    Rm {
        serial: String,
    },
}

fn parse_overlay(s: &str) -> Result<OverlayMode, String> {
    s.parse()
}

fn print_json(v: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn node_ref(id: &str) -> Result<NodeRef> {
    Ok(NodeRef::parse(id)?)
}

pub fn run(cli: Cli) -> Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Serve => serve(config),
        Command::Workflow(WorkflowCmd::Validate { files }) => validate(&config, &files, cli.json),
        other => {
            let services = Services::open(config)?;
            let out = Output { json: cli.json };
            match other {
                Command::Node(cmd) => out.node(&services, cmd),
                Command::Image(cmd) => out.image(&services, cmd),
                Command::Workflow(WorkflowCmd::List) => out.workflows(&services),
                Command::Overlay(cmd) => out.overlay(&services, cmd),
                Command::Serve | Command::Workflow(WorkflowCmd::Validate { .. }) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

fn serve(config: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = App::build(config).await?;
        // Tests and scripts wait for this line (port 0 resolves here).
        println!(
            "pureboot-controller listening on http://{}",
            app.local_addr()
        );
        log::info!("listening on http://{}", app.local_addr());
        app.run().await
    })
}

fn validate(config: &Config, files: &[PathBuf], json: bool) -> Result<()> {
    let templates = Templates::new();
    let paths: Vec<PathBuf> = if files.is_empty() {
        let dir = &config.workflows_dir;
        let mut p: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading workflows directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        p.sort();
        p
    } else {
        files.to_vec()
    };
    let sample = sample_vars(config);
    let mut results = Vec::new();
    for path in &paths {
        let outcome = load_file(path, &templates)
            .map_err(|e| e.to_string())
            .and_then(|wf| {
                templates
                    .render_workflow(&wf, &sample)
                    .map_err(|e| format!("{}: {e}", path.display()))
            });
        results.push(serde_json::json!({
            "file": path.display().to_string(),
            "ok": outcome.is_ok(),
            "error": outcome.as_ref().err(),
            "id": outcome.as_ref().ok().map(|w| w.id.clone()),
        }));
    }
    let failed = results.iter().filter(|r| r["ok"] == false).count();
    if json {
        print_json(&results)?;
    } else {
        for r in &results {
            match r["error"].as_str() {
                None => println!(
                    "ok      {} ({})",
                    r["file"].as_str().unwrap_or("?"),
                    r["id"].as_str().unwrap_or("?")
                ),
                Some(e) => println!("ERROR   {e}"),
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} workflow file(s) invalid", results.len());
    }
    Ok(())
}

/// Template context of a made-up node, so `validate` also catches undefined names.
fn sample_vars(config: &Config) -> crate::templates::Vars {
    let s = config.public_url();
    [
        ("nfs_server", config.nfs_server.clone()),
        ("nfs_path", config.nfs.root_path.display().to_string()),
        ("public_url", s.clone()),
        ("controller_url", s),
        ("default_base_image", config.nfs.default_base_image.clone()),
        ("node_id", "00000000-0000-4000-8000-000000000000".into()),
        ("serial", "00000000".into()),
        ("hostname", "pi-00000000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

struct Output {
    json: bool,
}

impl Output {
    fn node(&self, s: &Services, cmd: NodeCmd) -> Result<()> {
        match cmd {
            NodeCmd::List { state, workflow } => {
                let state = state
                    .map(|st| {
                        NodeState::parse(&st).with_context(|| format!("unknown state {st:?}"))
                    })
                    .transpose()?;
                let nodes = s.list_nodes(&NodeFilter {
                    state,
                    workflow_id: workflow,
                })?;
                if self.json {
                    return print_json(&nodes);
                }
                let rows: Vec<Vec<String>> = nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.serial.clone(),
                            n.state.to_string(),
                            table::opt(&n.workflow_id),
                            n.effective_hostname(),
                            table::opt(&n.mac),
                            table::opt(&n.last_ip),
                            table::opt(&n.last_boot_at),
                            if n.conflict.is_some() {
                                "CONFLICT".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table::render(
                        &[
                            "SERIAL",
                            "STATE",
                            "WORKFLOW",
                            "HOSTNAME",
                            "MAC",
                            "LAST IP",
                            "LAST BOOT",
                            ""
                        ],
                        &rows
                    )
                );
                Ok(())
            }
            NodeCmd::Show { id } => {
                let d = s.node_detail(&node_ref(&id)?, RECENT_EVENTS)?;
                if self.json {
                    return print_json(&d);
                }
                let n = &d.node;
                let fields = [
                    ("id", n.id.clone()),
                    ("serial", n.serial.clone()),
                    ("full serial", table::opt(&n.full_serial)),
                    ("mac", table::opt(&n.mac)),
                    ("state", n.state.to_string()),
                    ("workflow", table::opt(&n.workflow_id)),
                    ("hostname", n.effective_hostname()),
                    ("machine-id", n.machine_id.clone()),
                    (
                        "overlay",
                        n.overlay_mode
                            .map(|o| o.to_string())
                            .unwrap_or_else(|| "-".into()),
                    ),
                    ("base image", table::opt(&n.base_image)),
                    ("last boot", table::opt(&n.last_boot_at)),
                    ("last ip", table::opt(&n.last_ip)),
                    ("conflict", table::opt(&n.conflict)),
                    (
                        "tree",
                        d.tree
                            .as_ref()
                            .map(|t| t.path.display().to_string())
                            .unwrap_or_else(|| "-".into()),
                    ),
                ];
                for (k, v) in fields {
                    println!("{k:<12} {v}");
                }
                let rows: Vec<Vec<String>> = d
                    .events
                    .iter()
                    .map(|e| {
                        vec![
                            e.at.clone(),
                            e.kind.clone(),
                            table::opt(&e.ip),
                            e.detail.to_string(),
                        ]
                    })
                    .collect();
                println!();
                print!("{}", table::render(&["AT", "EVENT", "IP", "DETAIL"], &rows));
                Ok(())
            }
            NodeCmd::Add {
                serial,
                workflow,
                hostname,
                overlay,
                base_image,
                mac,
            } => {
                let node = s.add_node(&NodeSpec {
                    serial,
                    workflow_id: workflow,
                    hostname,
                    overlay_mode: overlay,
                    base_image,
                    mac,
                    ..Default::default()
                })?;
                self.done(
                    &node,
                    &format!(
                        "added node {} ({}), state {}",
                        node.serial, node.id, node.state
                    ),
                )
            }
            NodeCmd::Assign { id, workflow } => {
                let node = s.assign(&node_ref(&id)?, &workflow)?;
                self.done(
                    &node,
                    &format!(
                        "node {} assigned to {workflow}, state {}",
                        node.serial, node.state
                    ),
                )
            }
            NodeCmd::Rm { id, keep_tree } => {
                let (node, tree) = s.remove_node(&node_ref(&id)?, keep_tree)?;
                let v = serde_json::json!({"removed": node, "tree_removed": tree});
                self.done(
                    &v,
                    &format!(
                        "removed node {}{}",
                        node.serial,
                        if tree { " and its tree" } else { "" }
                    ),
                )
            }
        }
    }

    fn image(&self, s: &Services, cmd: ImageCmd) -> Result<()> {
        match cmd {
            ImageCmd::Import { archive, name } => {
                let mut progress = TerminalProgress::new();
                let summary = s.import_image(&archive, &name, &mut |p| progress.update(p))?;
                progress.finish();
                self.done(
                    &summary,
                    &format!(
                        "imported {} as {}: {} entries, {:.1} MB in {:.1} s ({:.1} MB/s)",
                        archive.display(),
                        summary.path.display(),
                        summary.entries,
                        summary.bytes as f64 / 1e6,
                        summary.seconds,
                        summary.mb_per_second()
                    ),
                )
            }
            ImageCmd::List => {
                let images = s.base_images()?;
                let default = &s.config.nfs.default_base_image;
                if self.json {
                    return print_json(&serde_json::json!({"images": images, "default": default}));
                }
                let rows: Vec<Vec<String>> = images
                    .iter()
                    .map(|i| {
                        vec![
                            i.clone(),
                            if i == default {
                                "default".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect();
                print!("{}", table::render(&["IMAGE", ""], &rows));
                Ok(())
            }
            ImageCmd::Rm { name } => {
                if !s.remove_image(&name)? {
                    bail!("no base image {name}");
                }
                self.done(
                    &serde_json::json!({"removed": name}),
                    &format!("removed base image {name}"),
                )
            }
        }
    }

    fn workflows(&self, s: &Services) -> Result<()> {
        let list: Vec<_> = s
            .workflows
            .iter()
            .map(|(p, w)| (p.to_path_buf(), w.clone()))
            .collect();
        let errors: Vec<String> = s.workflows.errors().map(|e| e.to_string()).collect();
        if self.json {
            let wfs: Vec<_> = list.iter().map(|(_, w)| w).collect();
            return print_json(&serde_json::json!({"workflows": wfs, "errors": errors}));
        }
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|(p, w)| {
                vec![
                    w.id.clone(),
                    w.name.clone(),
                    w.install_method.as_str().to_string(),
                    file_name(p),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["ID", "NAME", "METHOD", "FILE"], &rows)
        );
        for e in &errors {
            eprintln!("ERROR {e}");
        }
        Ok(())
    }

    fn overlay(&self, s: &Services, cmd: OverlayCmd) -> Result<()> {
        match cmd {
            OverlayCmd::Create { id } => {
                let path = s.create_overlay(&node_ref(&id)?)?;
                self.done(
                    &serde_json::json!({"path": path}),
                    &format!("node tree ready at {}", path.display()),
                )
            }
            OverlayCmd::Info { serial } => {
                let serial = Serial::parse(&serial)?;
                let Some(info) = s.overlay_info(serial.as_str())? else {
                    bail!("no node tree for {serial}")
                };
                if self.json {
                    return print_json(&info);
                }
                println!("path        {}", info.path.display());
                println!("hostname    {}", table::opt(&info.hostname));
                println!("machine-id  {}", table::opt(&info.machine_id));
                println!(
                    "persist.img {}",
                    if info.has_persist_image {
                        info.persist_image.display().to_string()
                    } else {
                        "-".into()
                    }
                );
                Ok(())
            }
            OverlayCmd::Rm { serial } => {
                let serial = Serial::parse(&serial)?;
                if !s.remove_overlay(serial.as_str())? {
                    bail!("no node tree for {serial}");
                }
                self.done(
                    &serde_json::json!({"removed": serial.as_str()}),
                    &format!("removed node tree of {serial}"),
                )
            }
        }
    }

    fn done(&self, v: &impl Serialize, text: &str) -> Result<()> {
        if self.json {
            print_json(v)
        } else {
            println!("{text}");
            Ok(())
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}
