//! Which machine a run was measured on (date, cores, memory, CPU, kernel, load), for the
//! results file: figures from a shared 2-core box mean little without it.

use std::process::Command;

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        // Only the line ends: `free -h` aligns its header with leading spaces.
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The one-minute load average, read before and after a section.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn describe() -> String {
    let mut s = String::new();
    s += &format!(
        "- date: {}\n",
        output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    s += &format!(
        "- git: {}\n",
        output("git", &["rev-parse", "--short", "HEAD"])
    );
    s += &format!("- nproc: {}\n", output("nproc", &[]));
    s += &format!("- CPU: {}\n", cpu_model());
    s += &format!("- kernel: {}\n", output("uname", &["-sr"]));
    s += &format!("- load average at start: {}\n", load());
    s += "- `free -h`:\n\n```\n";
    s += &output("free", &["-h"]);
    s += "\n```\n";
    s
}
