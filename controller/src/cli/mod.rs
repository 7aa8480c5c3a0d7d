//! The admin CLI: `serve` plus node, image, workflow and overlay commands. Commands open
//! the same config and database as the daemon (SQLite WAL makes that safe while it runs)
//! and call the same services as the HTTP API.

mod commands;
mod table;
mod validate;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::app::App;
use crate::config::Config;
use crate::domain::{NodeRef, OverlayMode};
use crate::service::Services;

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
    /// The node's tree: files, persist.img state, broken images set aside.
    Info {
        serial: String,
    },
    /// Move the node's persist.img aside (persist.img.broken-<time>, never deleted) and
    /// create a fresh one: its next boot starts with an empty persistent layer.
    Reset {
        serial: String,
    },
    Rm {
        serial: String,
    },
}

fn parse_overlay(s: &str) -> Result<OverlayMode, String> {
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
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Serve => serve(config),
        Command::Workflow(WorkflowCmd::Validate { files }) => {
            validate::run(&config, &files, cli.json)
        }
        other => {
            let services = Services::open(config)?;
            let out = commands::Output { json: cli.json };
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
