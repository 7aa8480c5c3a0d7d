//! The node, image, workflow and overlay commands: a service call, then a table or JSON.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{node_ref, print_json, table, NfsCmd, NodeCmd, OverlayCmd};
use crate::domain::state::NodeState;
use crate::nfs_tree::exports::{self, ExportPlan, Network};
use crate::nfs_tree::persist_repair::PersistState;
use crate::service::nodes::{NodeSpec, NodeUpdate, RECENT_EVENTS};
use crate::service::Services;
use crate::store::nodes::NodeFilter;
use pureboot_contract::ids::Serial;

pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn node(&self, s: &Services, cmd: NodeCmd) -> Result<()> {
        match cmd {
            NodeCmd::List {
                state,
                workflow,
                group,
            } => {
                let state = state
                    .map(|st| {
                        NodeState::parse(&st).with_context(|| format!("unknown state {st:?}"))
                    })
                    .transpose()?;
                let nodes = s.list_nodes(&NodeFilter {
                    state,
                    workflow_id: workflow,
                    group,
                    ..Default::default()
                })?;
                // Who runs what and who needs a reboot (service/versions.rs).
                let versions: std::collections::HashMap<String, _> = s
                    .node_versions()?
                    .into_iter()
                    .map(|v| (v.serial.clone(), v))
                    .collect();
                if self.json {
                    let with: Vec<serde_json::Value> = nodes
                        .iter()
                        .map(|n| {
                            let mut v = serde_json::to_value(n).unwrap_or_default();
                            if let Some(ver) = versions.get(n.serial.as_str()) {
                                v["assigned_version"] = serde_json::json!(ver.assigned.version);
                                v["running_version"] = serde_json::json!(ver.running);
                            }
                            v
                        })
                        .collect();
                    return print_json(&with);
                }
                let rows: Vec<Vec<String>> = nodes
                    .iter()
                    .map(|n| {
                        let ver = versions.get(n.serial.as_str());
                        vec![
                            n.serial.to_string(),
                            n.state.to_string(),
                            // Its own or its group chain's.
                            crate::domain::effective::workflow_of(n, &n.groups)
                                .map_or_else(|| "-".into(), |w| w.value),
                            n.effective_hostname().to_string(),
                            table::opt(&n.mac),
                            table::opt(&n.last_ip),
                            table::opt(&n.last_boot_at),
                            table::opt(&n.group),
                            ver.map_or("-".into(), |v| {
                                v.assigned.version.clone().unwrap_or(v.assigned.dir.clone())
                            }),
                            ver.map_or("-".into(), |v| {
                                let running = v.running.clone().unwrap_or("-".into());
                                if v.needs_reboot() {
                                    format!("{running} (reboot)")
                                } else {
                                    running
                                }
                            }),
                            [
                                n.conflict.as_ref().map(|_| "CONFLICT"),
                                n.degraded.as_ref().map(|_| "DEGRADED"),
                            ]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(","),
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
                            "GROUP",
                            "ASSIGNED",
                            "RUNNING",
                            ""
                        ],
                        &rows
                    )
                );
                Ok(())
            }
            NodeCmd::Show {
                id,
                effective: true,
            } => self.effective(s, &id),
            NodeCmd::Show { id, .. } => {
                let d = s.node_detail(&node_ref(&id)?, RECENT_EVENTS)?;
                if self.json {
                    return print_json(&d);
                }
                let n = &d.node;
                let fields = [
                    ("id", n.id.clone()),
                    ("serial", n.serial.to_string()),
                    ("full serial", table::opt(&n.full_serial)),
                    (
                        "mac",
                        match (&n.mac, n.mac_confirmed) {
                            (Some(m), true) => format!("{m} (confirmed)"),
                            (Some(m), false) => format!("{m} (learned; confirm: node set --mac)"),
                            (None, _) => "-".into(),
                        },
                    ),
                    ("state", n.state.to_string()),
                    ("workflow", table::opt(&n.workflow_id)),
                    ("group", table::opt(&n.group)),
                    ("hostname", n.effective_hostname().to_string()),
                    ("machine-id", n.machine_id.to_string()),
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
                    ("degraded", table::opt(&n.degraded)),
                    (
                        "tftp folder",
                        // Its last write, or why it failed (with [tftp] root).
                        d.events
                            .iter()
                            .rev()
                            .find(|e| e.kind == "tftp_folder")
                            .map(|e| match e.detail["error"].as_str() {
                                Some(why) => format!("FAILED: {why}"),
                                None => format!(
                                    "{} ({})",
                                    e.detail["outcome"].as_str().unwrap_or("?"),
                                    e.at
                                ),
                            })
                            .unwrap_or_else(|| "-".into()),
                    ),
                    (
                        "tree",
                        d.tree
                            .as_ref()
                            .map(|t| t.path.display().to_string())
                            .unwrap_or_else(|| "-".into()),
                    ),
                ];
                for (k, v) in fields {
                    println!("{k:<12} {}", crate::text::escape_controls(&v));
                }
                for v in &d.volumes {
                    let image = v.image.as_deref().unwrap_or("(made at its next boot)");
                    println!(
                        "{:<12} {} {} MiB ({}) volumes/{image}",
                        "volume", v.path, v.size_mb, v.from
                    );
                }
                if let Some(a) = &d.after_boot {
                    print_last_boot(a);
                    print_steps(a);
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
                model,
            } => {
                let node = s.add_node(&NodeSpec {
                    serial,
                    workflow_id: workflow,
                    hostname,
                    overlay_mode: overlay,
                    base_image,
                    mac,
                    model,
                    ..Default::default()
                })?;
                for w in s.node_after_boot_warnings(&node) {
                    eprintln!("warning: node {}: {w}", node.serial);
                }
                self.done(
                    &node,
                    &format!(
                        "added node {} ({}), state {}",
                        node.serial, node.id, node.state
                    ),
                )
            }
            NodeCmd::Set {
                id,
                mac,
                volumes,
                no_volumes,
                base_image,
                group,
            } => {
                if mac.is_none()
                    && volumes.is_empty()
                    && no_volumes.is_empty()
                    && base_image.is_none()
                    && group.is_none()
                {
                    bail!(
                        "nothing to set: give --mac <MAC> (or --mac none), --volume <PATH=MiB>, \
                         --no-volume <PATH>, --base-image <NAME> (or none) or --group <NAME> \
                         (or none)"
                    );
                }
                let mac_given = mac.is_some();
                let none_is_clear = |v: Option<String>| v.map(|v| (v != "none").then_some(v));
                let node = s.update_node(
                    &node_ref(&id)?,
                    &NodeUpdate {
                        mac: none_is_clear(mac),
                        base_image: none_is_clear(base_image),
                        group: none_is_clear(group),
                        set_volumes: volumes,
                        remove_volumes: no_volumes,
                        ..Default::default()
                    },
                )?;
                let mut said = Vec::new();
                if mac_given {
                    let m = node
                        .mac
                        .as_ref()
                        .map_or("forgotten".into(), |m| format!("{m} confirmed"));
                    said.push(format!("MAC {m}"));
                }
                said.push(format!(
                    "base image {}",
                    node.base_image
                        .as_deref()
                        .unwrap_or("(its group's or workflow's, else the default)")
                ));
                said.push(format!("group {}", table::opt(&node.group)));
                let own: Vec<String> = node
                    .volumes
                    .iter()
                    .map(|v| format!("{}={}", v.path, v.size_mb))
                    .collect();
                said.push(format!(
                    "volumes of its own: {}",
                    if own.is_empty() {
                        "none".into()
                    } else {
                        own.join(", ")
                    }
                ));
                self.done(&node, &format!("node {}: {}", node.serial, said.join("; ")))
            }
            NodeCmd::Steps { id } => {
                let a = s.node_steps(&node_ref(&id)?)?;
                if self.json {
                    return print_json(&a);
                }
                print_last_boot(&a);
                print_steps(&a);
                for run in a.history.iter().take(5) {
                    println!(
                        "\n--- {} {} ({}, {} ms){}",
                        run.at,
                        crate::text::escape_controls(&run.name),
                        run.summary,
                        run.duration_ms,
                        if run.output_dropped > 0 {
                            format!(", {} bytes of output before this tail", run.output_dropped)
                        } else {
                            String::new()
                        }
                    );
                    print!("{}", run.output);
                    if !run.output.ends_with('\n') && !run.output.is_empty() {
                        println!();
                    }
                }
                Ok(())
            }
            NodeCmd::Rerun { id, step } => {
                let node = s.rerun_steps(&node_ref(&id)?, step.as_deref())?;
                self.done(
                    &node,
                    &format!(
                        "node {}: {} at its next boot",
                        node.serial,
                        step.map_or("every post-boot step runs".into(), |n| format!(
                            "step {n:?} runs"
                        ))
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
            NodeCmd::Move { id, server, off } => self.node_move(s, &id, &server, off),
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

    pub fn workflows(&self, s: &Services) -> Result<()> {
        let workflows = s.workflows();
        let list: Vec<_> = workflows
            .iter()
            .map(|(p, w)| (p.to_path_buf(), w.clone()))
            .collect();
        let errors: Vec<String> = workflows.errors().map(|e| e.to_string()).collect();
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

    pub fn overlay(&self, s: &Services, cmd: OverlayCmd) -> Result<()> {
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
                let Some(info) = s.overlay_info(&serial)? else {
                    bail!("no node tree for {serial}")
                };
                if self.json {
                    return print_json(&info);
                }
                println!("path        {}", info.tree.path.display());
                println!("hostname    {}", table::opt(&info.tree.hostname));
                println!("machine-id  {}", table::opt(&info.tree.machine_id));
                println!(
                    "persist.img {}",
                    match &info.persist {
                        PersistState::Missing => "-".to_string(),
                        PersistState::Ext4 =>
                            format!("{} (ext4)", info.tree.persist_image.display()),
                        PersistState::Broken(why) => format!(
                            "{} (BROKEN: {why}; `overlay reset {serial}` sets it aside)",
                            info.tree.persist_image.display()
                        ),
                    }
                );
                for p in &info.set_aside {
                    println!("set aside   {}", p.display());
                }
                Ok(())
            }
            OverlayCmd::Reset { serial } => {
                let serial = Serial::parse(&serial)?;
                let moved = s.reset_persist_image(&serial)?;
                let text = match &moved {
                    Some(p) => format!(
                        "moved {serial}'s persist.img aside to {}; fresh image created",
                        p.display()
                    ),
                    None => format!("{serial} had no persist.img; fresh image created"),
                };
                self.done(
                    &serde_json::json!({"serial": serial.as_str(), "moved_to": moved}),
                    &text,
                )
            }
            OverlayCmd::Rm { serial } => {
                let serial = Serial::parse(&serial)?;
                if !s.remove_overlay(&serial)? {
                    bail!("no node tree for {serial}");
                }
                self.done(
                    &serde_json::json!({"removed": serial.as_str()}),
                    &format!("removed node tree of {serial}"),
                )
            }
        }
    }

    pub fn nfs(&self, s: &Services, cmd: NfsCmd) -> Result<()> {
        let (format, network, addresses, output, server) = match cmd {
            NfsCmd::Exports {
                format,
                network,
                addresses,
                output,
                server,
            } => (format, network, addresses, output, server),
            NfsCmd::Servers => return self.nfs_servers(s),
            NfsCmd::Pin {
                node,
                group,
                server,
                ..
            } => return self.nfs_pin(s, node, group, server),
        };
        let nfs = &s.config.nfs;
        // Which server's rules: the one nfs_server, or one of the pool with its own nodes.
        let (address, root, homes) = match (&server, s.pool.enabled()) {
            (None, false) => (s.config.nfs_server.clone(), nfs.announced_path(), None),
            (Some(name), true) => {
                let Some(p) = s.pool.get(name) else {
                    bail!("--server {name}: not in [[nfs.servers]]");
                };
                let homes = s.store.read(|tx| tx.nfs_homes())?;
                (name.clone(), p.config.export_path.as_path(), Some(homes))
            }
            (None, true) => bail!(
                "[[nfs.servers]] is set: name the server whose rules to write (--server \
                 <address>); each exports its own nodes"
            ),
            (Some(name), false) => {
                bail!("--server {name}: no [[nfs.servers]] in the configuration")
            }
        };
        let network = match network {
            Some(n) => n,
            None => default_network(&address)?,
        };
        let mut nodes = Vec::new();
        let mut unaddressed = Vec::new();
        let mut elsewhere = 0;
        for node in s.list_nodes(&NodeFilter::default())? {
            if let Some(homes) = &homes {
                let here = homes
                    .iter()
                    .any(|(serial, home)| serial == node.serial.as_str() && *home == address);
                if !here {
                    elsewhere += 1;
                    continue;
                }
            }
            let given = addresses.iter().find(|(serial, _)| *serial == node.serial);
            let last = node.last_ip.as_deref().and_then(|ip| ip.parse().ok());
            match given.map(|(_, ip)| *ip).or(last) {
                Some(ip) => nodes.push((node.serial, ip)),
                None => unaddressed.push(node.serial),
            }
        }
        for (serial, _) in &addresses {
            if !nodes.iter().any(|(s, _)| s == serial) {
                bail!("--address {serial}=…: no node {serial} in the registry");
            }
        }
        nodes.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        unaddressed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        if homes.is_some() {
            eprintln!(
                "rules of NFS server {address}: its nodes; {elsewhere} node(s) live on another \
                 server or are not placed yet (placed at their first boot)"
            );
        }
        let plan = ExportPlan {
            root: if homes.is_some() {
                root
            } else {
                &nfs.root_path
            },
            pseudo_root: root,
            network,
            nodes,
            unaddressed,
        };
        let text = exports::render(format, &plan).map_err(anyhow::Error::msg)?;
        match output {
            None => print!("{text}"),
            Some(path) => {
                std::fs::write(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!(
                    "wrote {format} export rules for {} node(s) to {}",
                    plan.nodes.len(),
                    path.display()
                );
            }
        }
        for serial in &plan.unaddressed {
            eprintln!("warning: node {serial} has no known address and is not exported (--address {serial}=<ip>)");
        }
        Ok(())
    }

    pub fn tftp_sync(&self, s: &Services) -> Result<()> {
        if s.tftp_writer().is_none() {
            bail!("no [tftp] root in the config: the controller writes no TFTP folders");
        }
        let results = s.tftp_sync()?;
        if self.json {
            print_json(&results)?;
        } else {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|r| {
                    vec![
                        r.folder.clone(),
                        table::opt(&r.image),
                        r.boards.join(","),
                        r.outcome.to_string(),
                        r.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["FOLDER", "IMAGE", "BOARDS", "OUTCOME", "ERROR"], &rows)
            );
        }
        let failed = results.iter().filter(|r| r.failed()).count();
        if failed > 0 {
            bail!("{failed} TFTP folder(s) could not be written (see ERROR above)");
        }
        Ok(())
    }

    pub(super) fn done(&self, v: &impl Serialize, text: &str) -> Result<()> {
        if self.json {
            print_json(v)
        } else {
            println!("{text}");
            Ok(())
        }
    }
}

/// The /24 of `nfs_server` when it is an IPv4 address: the usual boot network.
fn default_network(nfs_server: &str) -> Result<Network> {
    match nfs_server.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => {
            let [a, b, c, _] = ip.octets();
            Ok(format!("{a}.{b}.{c}.0/24").parse().map_err(anyhow::Error::msg)?)
        }
        Err(_) => bail!(
            "nfs_server {nfs_server:?} is not an IPv4 address: name the boot network with --network <address>/<prefix>"
        ),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The node's last boot, stage by stage (`node show`, `node steps`).
fn print_last_boot(a: &crate::service::after_boot::NodeSteps) {
    let Some(b) = &a.last_boot else {
        println!("{:<12} -", "last boot");
        return;
    };
    let health = match b.healthy {
        Some(true) => "complete, healthy".to_string(),
        Some(false) => "complete, NOT healthy".to_string(),
        None => format!("no boot complete yet (last stage: {})", b.stage()),
    };
    println!("{:<12} {} from {}: {health}", "last boot", b.at, b.ip);
    if let Some(ms) = b.installed_ms {
        println!("{:<12} pi-init {ms} ms to its report", "");
    }
    if let Some(c) = &b.complete {
        println!(
            "{:<12} {} at {} ms from power-on, {} ms from the answer; system {}{}",
            "",
            c.target,
            c.target_ms.map_or("?".into(), |v| v.to_string()),
            b.answer_to_complete_ms
                .map_or("?".into(), |v| v.to_string()),
            c.system_state,
            if c.failed_units.is_empty() {
                String::new()
            } else {
                format!("; failed units: {}", c.failed_units.join(", "))
            }
        );
    }
}

/// The workflow's steps with their last runs, and its secrets (masked).
fn print_steps(a: &crate::service::after_boot::NodeSteps) {
    if a.steps.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = a
        .steps
        .iter()
        .map(|st| {
            vec![
                crate::text::escape_controls(&st.name),
                st.run.to_string(),
                st.last.as_ref().map_or("never ran".into(), |r| {
                    format!("{} ({} ms)", r.summary, r.duration_ms)
                }),
                st.last.as_ref().map_or("-".into(), |r| r.at.clone()),
                if st.runs_next_boot { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    println!();
    print!(
        "{}",
        table::render(&["STEP", "RUN", "LAST OUTCOME", "AT", "NEXT BOOT"], &rows)
    );
    for (name, v) in &a.secrets {
        println!(
            "secret {name}: {}",
            v.as_deref().unwrap_or("(no value set)")
        );
    }
}
