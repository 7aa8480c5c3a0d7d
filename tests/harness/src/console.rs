//! Reading a guest's console: the tiny root's `PUREBOOT-GUEST` report, pi-init's agreed lines
//! (`pi-init: start`, `step <name> done in <ms> ms`, `FAILED at <step>: <error>`,
//! `applying failure policy <p>`, `exec <init>`), and kernel timestamps for timing.

use std::collections::BTreeMap;

/// The `PUREBOOT-GUEST key=value ...` line the booted root prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestReport(pub BTreeMap<String, String>);

impl GuestReport {
    pub fn find(console: &str) -> Option<GuestReport> {
        let line = console.lines().find_map(|l| {
            let i = l.find("PUREBOOT-GUEST ")?;
            Some(&l[i + "PUREBOOT-GUEST ".len()..])
        })?;
        let fields = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_end_matches('\r').to_string()))
            .collect();
        Some(GuestReport(fields))
    }

    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }
}

/// A line a kernel-timestamped message produced: `[    1.154346] text`.
pub fn kmsg_seconds(line: &str) -> Option<(f64, &str)> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (ts, text) = rest.split_once(']')?;
    Some((ts.trim().parse().ok()?, text.trim_start()))
}

/// The kernel time of the first console line whose text starts with `prefix`.
pub fn time_of(console: &str, prefix: &str) -> Option<f64> {
    console
        .lines()
        .filter_map(kmsg_seconds)
        .find(|(_, text)| text.starts_with(prefix))
        .map(|(t, _)| t)
}

/// pi-init's `FAILED at <step>: <error>` line, as (step, error).
pub fn pi_init_failure(console: &str) -> Option<(String, String)> {
    console.lines().find_map(|l| {
        let i = l.find("pi-init: FAILED at ")?;
        let (step, err) = l[i + "pi-init: FAILED at ".len()..].split_once(": ")?;
        Some((step.to_string(), err.trim_end().to_string()))
    })
}

/// pi-init's per-step timings, in console order: (step, ms).
pub fn pi_init_steps(console: &str) -> Vec<(String, u64)> {
    console
        .lines()
        .filter_map(|l| {
            let i = l.find("pi-init: step ")?;
            let rest = &l[i + "pi-init: step ".len()..];
            let (name, rest) = rest.split_once(" done in ")?;
            let ms = rest.trim_end().strip_suffix(" ms")?.parse().ok()?;
            Some((name.to_string(), ms))
        })
        .collect()
}

/// Signs that the guest kernel died rather than powering off.
pub fn kernel_panicked(console: &str) -> bool {
    console.contains("Kernel panic - not syncing")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[    1.154346] pi-init: start\r
[    1.50] pi-init: step modules done in 345 ms\r
[    1.60] pi-init: step dhcp done in 12 ms\r
[    2.10] pi-init: exec /sbin/init\r
PUREBOOT-GUEST serial=d83add36 hostname=pi-one machine_id=0123 nfs=4.2 root_fs=overlay probe=none\r
[    2.50] reboot: Power down\r
";

    #[test]
    fn report_fields_are_parsed_without_carriage_returns() {
        let r = GuestReport::find(CONSOLE).unwrap();
        assert_eq!(r.get("serial"), "d83add36");
        assert_eq!(r.get("hostname"), "pi-one");
        assert_eq!(r.get("nfs"), "4.2");
        assert_eq!(r.get("probe"), "none");
        assert_eq!(r.get("absent"), "");
    }

    #[test]
    fn report_is_found_after_kernel_noise_on_the_same_line() {
        let r = GuestReport::find("[ 3.0] random: crng init\rPUREBOOT-GUEST hostname=x\n").unwrap();
        assert_eq!(r.get("hostname"), "x");
        assert!(GuestReport::find("no report here\n").is_none());
    }

    #[test]
    fn step_timings_and_kernel_times() {
        assert_eq!(
            pi_init_steps(CONSOLE),
            vec![("modules".to_string(), 345), ("dhcp".to_string(), 12)]
        );
        assert_eq!(time_of(CONSOLE, "pi-init: start"), Some(1.154346));
        assert_eq!(time_of(CONSOLE, "pi-init: exec"), Some(2.10));
        assert_eq!(time_of(CONSOLE, "baseline: start"), None);
    }

    #[test]
    fn failure_line_gives_step_and_error() {
        let c = "[ 2.0] pi-init: FAILED at overlay: base image not found: base/missing\r\n";
        assert_eq!(
            pi_init_failure(c),
            Some((
                "overlay".into(),
                "base image not found: base/missing".into()
            ))
        );
        assert_eq!(pi_init_failure(CONSOLE), None);
        assert!(!kernel_panicked(CONSOLE));
        assert!(kernel_panicked(
            "[ 9.0] Kernel panic - not syncing: Attempted to kill init!"
        ));
    }
}
