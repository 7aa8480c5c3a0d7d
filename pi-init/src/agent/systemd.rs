//! What the agent asks the root's systemd, through `systemctl` (the root has it: the agent
//! only runs as a systemd unit): whether start-up finished, when the target became active,
//! and which units failed. The parsing is pure and tested here; the calls are thin.

use std::time::Duration;

/// `systemctl is-system-running --wait`: blocks until start-up is over (at most half an
/// hour), then systemd's word for the system (`running`, `degraded`, ...; empty if none).
pub fn wait_until_started() -> String {
    systemctl(&["is-system-running", "--wait"], Duration::from_secs(1800))
        .trim()
        .to_string()
}

/// Whether `target` is active now.
pub fn is_active(target: &str) -> bool {
    systemctl(&["is-active", target], QUICK).trim() == "active"
}

/// Milliseconds from the kernel's start to `target`'s activation.
pub fn activated_ms(target: &str) -> Option<u64> {
    parse_monotonic_us(&systemctl(
        &[
            "show",
            "--value",
            "-p",
            "ActiveEnterTimestampMonotonic",
            target,
        ],
        QUICK,
    ))
    .map(|us| us / 1000)
}

/// The failed units' names.
pub fn failed_units() -> Vec<String> {
    parse_unit_list(&systemctl(
        &[
            "list-units",
            "--state=failed",
            "--plain",
            "--no-legend",
            "--no-pager",
        ],
        QUICK,
    ))
}

const SYSTEMCTL: &str = "/bin/systemctl";
const QUICK: Duration = Duration::from_secs(30);

fn systemctl(args: &[&str], timeout: Duration) -> String {
    let argv: Vec<&str> = std::iter::once(SYSTEMCTL)
        .chain(args.iter().copied())
        .collect();
    let done = super::step_run::execute(&argv, &[], timeout, false);
    if let Some(e) = &done.error {
        log::warn!("systemctl {}: {e}", args.join(" "));
    }
    done.output.finish().0
}

/// A µs count; systemd says 0 for "never".
pub fn parse_monotonic_us(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|&us| us > 0)
}

/// The first column of `systemctl list-units --plain --no-legend`, bounded.
pub fn parse_unit_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .take(pureboot_contract::after_boot::MAX_FAILED_UNITS)
        .collect()
}

/// Milliseconds since the kernel started (`/proc/uptime`'s first field).
/// Integers only (`12.34` is 12 s and 34 hundredths): no float parser in PID 1's binary.
pub fn parse_uptime_ms(text: &str) -> Option<u64> {
    let field = text.split_whitespace().next()?;
    let (secs, frac) = field.split_once('.').unwrap_or((field, "0"));
    let frac: String = frac.chars().chain("000".chars()).take(3).collect();
    Some(secs.parse::<u64>().ok()? * 1000 + frac.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_monotonic_us("8123456\n"), Some(8123456));
        assert_eq!(parse_monotonic_us("0\n"), None);
        assert_eq!(parse_monotonic_us(""), None);
        assert_eq!(
            parse_unit_list(
                "foo.service loaded failed failed Foo\nbar.mount   loaded failed failed Bar\n"
            ),
            ["foo.service", "bar.mount"]
        );
        assert!(parse_unit_list("").is_empty());
        assert_eq!(parse_uptime_ms("12.34 40.00\n"), Some(12340));
        assert_eq!(parse_uptime_ms("7 1"), Some(7000));
        assert_eq!(parse_uptime_ms("7.5"), Some(7500));
        assert_eq!(parse_uptime_ms("x"), None);
        assert_eq!(parse_uptime_ms("1.x"), None);
    }
}
