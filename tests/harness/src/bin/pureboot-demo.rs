//! README command 1's engine (tests/demo.sh runs it after set-up and build): starts
//! nfs-ganesha and the controller on 127.0.0.1 inside a private namespace, imports the tiny
//! busybox root as a base image, registers one node to the `pi-diskless-nfs` workflow, builds
//! the initramfs with `pureboot-image initramfs --preset qemu-virt`, and boots a virtual Pi with
//! its console shown live. Everything stops when it ends (or on Ctrl-C: the servers are tied to
//! this process by PR_SET_PDEATHSIG).
//!
//! Options: `--serial <8 hex>` (default d83add36), `--hostname <name>`, `--overlay tmpfs|image`,
//! `--keep` (keep the scratch directory), `--timeout <s>` (default 180).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pureboot_harness::controller::NodeSpec;
use pureboot_harness::env::TestEnv;
use pureboot_harness::lab::{Lab, LabOptions, TINY, WORKFLOW};
use pureboot_harness::qemu::Outcome;

struct Args {
    serial: String,
    hostname: String,
    overlay: String,
    timeout: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        serial: "d83add36".into(),
        hostname: String::new(),
        overlay: "tmpfs".into(),
        timeout: 180,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--serial" => a.serial = value()?.to_lowercase(),
            "--hostname" => a.hostname = value()?,
            "--overlay" => a.overlay = value()?,
            "--timeout" => a.timeout = value()?.parse().map_err(|e| format!("--timeout: {e}"))?,
            "--keep" => std::env::set_var("PUREBOOT_KEEP", "1"),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.serial.len() != 8 || !a.serial.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("--serial {} is not 8 hex digits", a.serial));
    }
    if a.hostname.is_empty() {
        a.hostname = pureboot_harness::lab::default_hostname(&a.serial);
    }
    Ok(a)
}

fn say(msg: &str) {
    println!("demo: {msg}");
}

/// Copies what QEMU writes to the console file onto our stdout until `done`.
fn follow(path: &Path, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut pos = 0u64;
        let mut buf = Vec::new();
        loop {
            let finished = done.load(Ordering::Relaxed);
            if let Ok(mut f) = std::fs::File::open(&path) {
                if f.seek(SeekFrom::Start(pos)).is_ok() {
                    buf.clear();
                    if let Ok(n) = f.read_to_end(&mut buf) {
                        pos += n as u64;
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf);
                        let _ = out.flush();
                    }
                }
            }
            if finished {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let env = TestEnv::get()?;
    say("building the initramfs: pureboot-image initramfs --preset qemu-virt");
    let initrd = pureboot_harness::initramfs::pi_init(env)?;
    say(&format!("initramfs: {}", initrd.display()));

    say("starting nfs-ganesha and pureboot-controller on 127.0.0.1 (private network namespace)");
    let lab = Lab::start("demo", env, LabOptions::default())?;
    say(&format!("NFS export: {}", lab.export().display()));
    say(&format!(
        "importing the busybox test root as base image '{TINY}'"
    ));
    lab.import_tiny_root(TINY)?;
    say(&format!(
        "registering node {} ({}) to workflow {WORKFLOW}, overlay {}",
        args.serial, args.hostname, args.overlay
    ));
    lab.add_node(
        &args.serial,
        NodeSpec {
            workflow: WORKFLOW.into(),
            hostname: Some(args.hostname.clone()),
            overlay: Some(args.overlay.clone()),
            ..Default::default()
        },
    )?;

    let pi = lab
        .pi(&args.serial)?
        .timeout(Duration::from_secs(args.timeout));
    say(&format!(
        "booting the virtual Pi: qemu-system-aarch64 -M virt, kernel {}",
        env.kernel().version
    ));
    say(&format!("kernel command line: {}", pi.kernel_cmdline()));
    let console = lab.dir.join("console-demo.log");
    let guest = pi.start(&lab.ns, &console)?;
    let done = Arc::new(AtomicBool::new(false));
    let follower = follow(&console, done.clone());
    let run = guest.wait();
    done.store(true, Ordering::Relaxed);
    let _ = follower.join();
    println!();

    let node = lab.controller().cli(&["node", "show", &args.serial])?;
    say("the controller's view of the node:");
    println!("{node}");
    match (
        run.outcome,
        pureboot_harness::console::GuestReport::find(&run.console),
    ) {
        (Outcome::Exited, Some(r)) => {
            say(&format!(
                "booted diskless: serial {} hostname {} NFS v{} root {} ({:.1} s)",
                r.get("serial"),
                r.get("hostname"),
                r.get("nfs"),
                r.get("root_fs"),
                run.elapsed.as_secs_f64()
            ));
            Ok(())
        }
        (outcome, _) => {
            // Keep the scratch directory (logs, console) for a look.
            std::env::set_var("PUREBOOT_KEEP", "1");
            Err(format!(
                "the virtual Pi did not report from its new root ({outcome:?}); console: {}\n{}",
                run.console_path.display(),
                lab.diagnostics()
            ))
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("demo: FAILED: {e}");
        std::process::exit(1);
    }
    say("stopped the servers; done");
}
