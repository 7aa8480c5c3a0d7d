//! `group` commands and `node show --effective`: a service call, then a table or JSON.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use super::commands::Output;
use super::{node_ref, parse_overlay, parse_volume, print_json, table};
use crate::domain::group_rule::GroupRule;
use crate::domain::volumes::VolumeSpec;
use crate::service::groups::GroupUpdate;
use crate::service::Services;
use pureboot_contract::OverlayMode;

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Every group with its parent, settings and member count.
    List,
    /// A group: its settings, chain (root first), subgroups, members and rules.
    Show { name: String },
    /// Create a group (settings as for `group set`).
    Add {
        name: String,
        #[command(flatten)]
        settings: GroupArgs,
    },
    /// Change a group's settings. Precedence: default < workflow < groups (root to leaf)
    /// < node; volumes and variables merge per path and key.
    Set {
        name: String,
        #[command(flatten)]
        settings: GroupArgs,
    },
    /// Remove a group; refused while it has members, subgroups or rules (named).
    Rm { name: String },
    /// The rules that place a new node in a group at its first contact.
    #[command(subcommand)]
    Rule(RuleCmd),
}

#[derive(Debug, Subcommand)]
pub enum RuleCmd {
    /// Every rule, lowest priority (tried first) first.
    List,
    /// Add a rule: a new node matching every criterion given joins the group (the first
    /// matching rule by priority wins; applied once, when the node registers).
    Add {
        /// Unique; lower is tried first.
        priority: i64,
        /// The group new matching nodes join.
        group: String,
        /// A glob (`*`, `?`) over the 8-hex serial, e.g. `d83a*`.
        #[arg(long)]
        serial: Option<String>,
        /// A glob over the MAC, e.g. `dc:a6:32:*`.
        #[arg(long)]
        mac: Option<String>,
        /// A board model (pi4, pi5, cm4, ...): known at `register-pi` only (pi-init's boot
        /// request carries serial and MAC).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::domain::node::PI_MODELS))]
        model: Option<String>,
    },
    /// Remove the rule of this priority.
    Rm { priority: i64 },
}

/// A group's settings on the command line; `none` clears a single value.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Its parent group (`none`: a root group).
    #[arg(long)]
    parent: Option<String>,
    /// The workflow its members run unless they name their own.
    #[arg(long)]
    workflow: Option<String>,
    /// The base image its members boot (an image name; `none` clears).
    #[arg(long)]
    base_image: Option<String>,
    /// tmpfs, image, nfs or none (`--overlay unset` clears).
    #[arg(long)]
    overlay: Option<String>,
    /// A hostname template, e.g. `rack2-{{ serial }}` (`none` clears).
    #[arg(long)]
    hostname: Option<String>,
    /// A volume, `<path>=<MiB>`. Repeatable.
    #[arg(long = "volume", value_name = "PATH=MiB", value_parser = parse_volume)]
    volumes: Vec<VolumeSpec>,
    /// Drop a volume by path. Repeatable.
    #[arg(long = "no-volume", value_name = "PATH")]
    no_volumes: Vec<String>,
    /// A variable, `<name>=<template>`, merged over the workflow's. Repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Drop a variable by name. Repeatable.
    #[arg(long = "no-var", value_name = "NAME")]
    no_vars: Vec<String>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected <name>=<value>"))
}

impl GroupArgs {
    fn update(self) -> Result<GroupUpdate> {
        let clear = |v: Option<String>| v.map(|v| (v != "none").then_some(v));
        let overlay = match self.overlay.as_deref() {
            None => None,
            Some("unset") => Some(None),
            Some(o) => Some(Some(parse_overlay(o).map_err(anyhow::Error::msg)?)),
        };
        Ok(GroupUpdate {
            parent: clear(self.parent),
            workflow_id: clear(self.workflow),
            base_image: clear(self.base_image),
            overlay_mode: overlay,
            hostname: clear(self.hostname),
            set_volumes: self.volumes,
            remove_volumes: self.no_volumes,
            set_variables: self.vars.into_iter().collect(),
            remove_variables: self.no_vars,
        })
    }
}

fn overlay_text(o: Option<OverlayMode>) -> String {
    o.map_or_else(|| "-".into(), |o| o.to_string())
}

impl Output {
    pub fn group(&self, s: &Services, cmd: GroupCmd) -> Result<()> {
        match cmd {
            GroupCmd::List => {
                let groups = s.list_groups()?;
                if self.json {
                    return print_json(&groups);
                }
                let rows: Vec<Vec<String>> = groups
                    .iter()
                    .map(|g| {
                        let g2 = &g.group;
                        vec![
                            g2.name.clone(),
                            table::opt(&g2.parent),
                            table::opt(&g2.workflow_id),
                            table::opt(&g2.base_image),
                            overlay_text(g2.overlay_mode),
                            table::opt(&g2.hostname),
                            g.members.to_string(),
                        ]
                    })
                    .collect();
                let headers = [
                    "GROUP",
                    "PARENT",
                    "WORKFLOW",
                    "BASE IMAGE",
                    "OVERLAY",
                    "HOSTNAME",
                    "MEMBERS",
                ];
                print!("{}", table::render(&headers, &rows));
                Ok(())
            }
            GroupCmd::Show { name } => {
                let d = s.show_group(&name)?;
                if self.json {
                    return print_json(&d);
                }
                let g = &d.group;
                let mut lines = vec![
                    ("group", g.name.clone()),
                    ("chain", d.chain.join(" > ")),
                    ("workflow", table::opt(&g.workflow_id)),
                    ("base image", table::opt(&g.base_image)),
                    ("overlay", overlay_text(g.overlay_mode)),
                    ("hostname", table::opt(&g.hostname)),
                    ("subgroups", d.children.join(", ")),
                    ("members", d.members.join(", ")),
                ];
                lines.extend(
                    g.volumes
                        .iter()
                        .map(|v| ("volume", format!("{} {} MiB", v.path, v.size_mb))),
                );
                lines.extend(
                    g.variables
                        .iter()
                        .map(|(k, v)| ("variable", format!("{k} = {v}"))),
                );
                lines.extend(d.rules.iter().map(|r| ("rule", rule_text(r))));
                for (k, v) in lines {
                    println!("{k:<12} {}", crate::text::escape_controls(&v));
                }
                Ok(())
            }
            GroupCmd::Add { name, settings } => {
                let g = s.save_group(&name, &settings.update()?, true)?;
                self.done(&g, &format!("added group {}", g.name))
            }
            GroupCmd::Set { name, settings } => {
                let g = s.save_group(&name, &settings.update()?, false)?;
                self.done(&g, &format!("updated group {}", g.name))
            }
            GroupCmd::Rm { name } => {
                s.remove_group(&name)?;
                self.done(
                    &serde_json::json!({"removed": name}),
                    &format!("removed group {name}"),
                )
            }
            GroupCmd::Rule(RuleCmd::List) => {
                let rules = s.list_group_rules()?;
                if self.json {
                    return print_json(&rules);
                }
                let rows: Vec<Vec<String>> = rules
                    .iter()
                    .map(|r| {
                        vec![
                            r.priority.to_string(),
                            r.group.clone(),
                            table::opt(&r.serial),
                            table::opt(&r.mac),
                            table::opt(&r.model),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table::render(&["PRIORITY", "GROUP", "SERIAL", "MAC", "MODEL"], &rows)
                );
                Ok(())
            }
            GroupCmd::Rule(RuleCmd::Add {
                priority,
                group,
                serial,
                mac,
                model,
            }) => {
                if serial.is_none() && mac.is_none() && model.is_none() {
                    bail!("a rule needs --serial <GLOB>, --mac <GLOB> or --model <MODEL>");
                }
                let r = s.add_group_rule(GroupRule {
                    priority,
                    group,
                    serial,
                    mac,
                    model,
                })?;
                self.done(&r, &format!("added rule {}", rule_text(&r)))
            }
            GroupCmd::Rule(RuleCmd::Rm { priority }) => {
                s.remove_group_rule(priority)?;
                self.done(
                    &serde_json::json!({"removed": priority}),
                    &format!("removed the rule of priority {priority}"),
                )
            }
        }
    }

    /// `node show --effective`: each value and where it came from.
    pub(super) fn effective(&self, s: &Services, id: &str) -> Result<()> {
        let v = s.node_effective(&node_ref(id)?)?;
        if self.json {
            return print_json(&v);
        }
        let e = &v.effective;
        println!(
            "node {} (chain: {})",
            v.serial,
            if v.chain.is_empty() {
                "no group".into()
            } else {
                v.chain.join(" > ")
            }
        );
        let mut rows = vec![
            match &e.workflow {
                Some(w) => vec!["workflow".into(), w.value.clone(), w.from.to_string()],
                None => vec!["workflow".into(), "-".into(), "-".into()],
            },
            vec![
                "base image".into(),
                e.base_image.value.clone(),
                e.base_image.from.to_string(),
            ],
            vec![
                "overlay".into(),
                e.overlay.value.to_string(),
                e.overlay.from.to_string(),
            ],
            vec![
                "hostname".into(),
                e.hostname.value.clone(),
                e.hostname.from.to_string(),
            ],
        ];
        if s.pool.enabled() {
            rows.push(match &v.nfs_server {
                Some(p) => vec!["nfs server".into(), p.value.clone(), p.from.to_string()],
                None => vec![
                    "nfs server".into(),
                    v.nfs_home.clone().unwrap_or_else(|| "-".into()),
                    "placed by weight".into(),
                ],
            });
        }
        rows.extend(e.volumes.iter().map(|p| {
            vec![
                "volume".into(),
                format!("{} {} MiB", p.path, p.size_mb),
                p.from.to_string(),
            ]
        }));
        rows.extend(e.variables.iter().map(|(k, sv)| {
            vec![
                format!("variable {k}"),
                sv.value.clone(),
                sv.from.to_string(),
            ]
        }));
        print!("{}", table::render(&["SETTING", "VALUE", "FROM"], &rows));
        if let Some(why) = e.volumes_error.as_ref().or(v.error.as_ref()) {
            println!("its boots wait: {}", crate::text::escape_controls(why));
        }
        Ok(())
    }
}

fn rule_text(r: &GroupRule) -> String {
    let mut what = Vec::new();
    if let Some(p) = &r.serial {
        what.push(format!("serial {p}"));
    }
    if let Some(p) = &r.mac {
        what.push(format!("mac {p}"));
    }
    if let Some(m) = &r.model {
        what.push(format!("model {m}"));
    }
    format!(
        "{}: {} -> group {}",
        r.priority,
        what.join(" and "),
        r.group
    )
}
