//! Not PID 1, pi-init is a dry run for tests and operators: `pi-init [--cmdline FILE]
//! [--sysroot DIR] [--answer FILE]` prints the parsed command line, the serial and what it
//! would boot, and mounts nothing.

use crate::decide::cmdline;
use crate::decide::plan::{self, Decision, Instructions};
use crate::decide::serial::Identity;
use crate::steps::serial;
use ::log::{error, info, warn};
use pureboot_contract::ids::Mac;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Not PID 1: parse and decide, print, mount nothing. Exit status 0 when bootable.
pub fn run(args: Vec<String>) -> i32 {
    let mut cmdline_file = PathBuf::from("/proc/cmdline");
    let mut sysroot = PathBuf::from("/");
    let mut answer_file = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().map(PathBuf::from);
        match a.as_str() {
            "--cmdline" => cmdline_file = value().unwrap_or(cmdline_file),
            "--sysroot" => sysroot = value().unwrap_or(sysroot),
            "--answer" => answer_file = value(),
            other => {
                eprintln!("pi-init: unknown argument {other:?}\nusage: pi-init [--cmdline FILE] [--sysroot DIR] [--answer FILE]");
                return 2;
            }
        }
    }
    info!("not PID 1: dry run, nothing is mounted");
    let text = match std::fs::read_to_string(&cmdline_file) {
        Ok(t) => t,
        Err(e) => {
            error!("{}: {e}", cmdline_file.display());
            return 2;
        }
    };
    let cmd = cmdline::parse(&text);
    cmd.warnings.iter().for_each(|w| warn!("command line: {w}"));
    println!("{cmd:#?}");
    let identity = match serial::read(&sysroot, cmd.serial.as_deref()) {
        Ok(s) => Identity::Board(s),
        Err(e) => {
            // No network here: a real boot would take the boot interface's MAC.
            warn!("{e}: a boot would be known by its MAC; 00:00:00:00:00:00 stands in for it");
            Identity::Mac {
                mac: Mac::from_bytes([0; 6]),
                no_serial: e,
            }
        }
    };
    println!("{identity:?}");
    let answer: Option<pureboot_contract::PiBootResponse> =
        match answer_file.map(std::fs::read_to_string) {
            Some(Ok(t)) => match serde_json::from_str(&t) {
                Ok(a) => Some(a),
                Err(e) => {
                    error!("answer: {e}");
                    return 2;
                }
            },
            Some(Err(e)) => {
                error!("answer: {e}");
                return 2;
            }
            None => None,
        };
    let ins = match &answer {
        Some(a) => Instructions::Controller(a),
        None => Instructions::None("no controller answer given (--answer)"),
    };
    let no_net = plan::NetFacts {
        client: Ipv4Addr::UNSPECIFIED,
        server: None,
        hostname: None,
        root_path: None,
    };
    let decision = plan::decide(&cmd, &identity, &no_net, ins);
    println!("{decision:#?}");
    match decision {
        Decision::Fail(why) => {
            error!("FAILED at controller: {why}");
            1
        }
        _ => 0,
    }
}
