//! Logging to /dev/kmsg (so the kernel timestamps each line) and to the console, every line
//! prefixed `pi-init: `. Both descriptors are opened once at start: /dev moves into the new
//! root before the callback, and the last lines must still get out.
//!
//! The kernel itself echoes a kmsg record to the console when its level is below the console
//! log level; pi-init writes the console directly only for the others, so no line shows twice.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

struct Sinks {
    kmsg: Option<File>,
    console: Option<File>,
    /// The kernel's console log level (first field of /proc/sys/kernel/printk).
    console_loglevel: u8,
    /// printk_devkmsg as found, restored before exec.
    devkmsg: Option<String>,
}

struct Logger {
    sinks: Mutex<Sinks>,
}

static LOGGER: Logger = Logger {
    sinks: Mutex::new(Sinks {
        kmsg: None,
        console: None,
        console_loglevel: 7,
        devkmsg: None,
    }),
};

/// syslog priority of a log level, as /dev/kmsg reads it in `<N>`.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The first field of /proc/sys/kernel/printk.
pub fn parse_console_loglevel(printk: &str) -> Option<u8> {
    printk.split_whitespace().next()?.parse().ok()
}

/// The kmsg record and whether the console needs its own copy.
fn render(level: Level, msg: &str, console_loglevel: u8, have_kmsg: bool) -> (String, bool) {
    let record = format!("<{}>pi-init: {msg}\n", priority(level));
    let console_too = !have_kmsg || priority(level) >= console_loglevel;
    (record, console_too)
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let Ok(mut s) = self.sinks.lock() else { return };
        let msg = r.args().to_string();
        let (record, console_too) = render(r.level(), &msg, s.console_loglevel, s.kmsg.is_some());
        if let Some(k) = s.kmsg.as_mut() {
            // One write(2) per record: that is what makes it one kmsg line.
            let _ = k.write_all(record.as_bytes());
        }
        if console_too {
            let line = &record[record.find('>').map_or(0, |i| i + 1)..];
            match s.console.as_mut() {
                Some(c) => drop(c.write_all(line.as_bytes())),
                None => drop(std::io::stderr().write_all(line.as_bytes())),
            }
        }
    }

    fn flush(&self) {}
}

/// The kernel rate-limits writes to /dev/kmsg (10 lines per 5 s by default), which would drop
/// the step lines; lift the limit while pi-init runs.
const DEVKMSG: &str = "/proc/sys/kernel/printk_devkmsg";

/// Install the logger. As PID 1, open /dev/kmsg and /dev/console (devtmpfs must be mounted);
/// otherwise log to stderr only.
pub fn init(pid1: bool) {
    if pid1 {
        let mut s = LOGGER.sinks.lock().unwrap_or_else(|e| e.into_inner());
        s.kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
        s.console = OpenOptions::new().write(true).open("/dev/console").ok();
        if let Some(l) = std::fs::read_to_string("/proc/sys/kernel/printk")
            .ok()
            .and_then(|t| parse_console_loglevel(&t))
        {
            s.console_loglevel = l;
        }
        if let Ok(old) = std::fs::read_to_string(DEVKMSG) {
            // Fails when the command line locked it (printk.devkmsg=): nothing to do then.
            if std::fs::write(DEVKMSG, "on\n").is_ok() {
                s.devkmsg = Some(old);
            }
        }
    }
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

/// Give the booted system the kmsg rate limit it would have had (call just before exec).
pub fn restore_kmsg_ratelimit() {
    let mut s = LOGGER.sinks.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = s.devkmsg.take() {
        let _ = std::fs::write(DEVKMSG, old);
    }
}

pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// The agreed per-step line: `pi-init: step <name> done in <ms> ms`.
pub fn step_done(name: &str, took: Duration) {
    log::info!("step {name} done in {} ms", took.as_millis());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_priority_and_prefix() {
        let (r, _) = render(Level::Error, "FAILED at nfs-mount: boom", 7, true);
        assert_eq!(r, "<3>pi-init: FAILED at nfs-mount: boom\n");
        let (r, _) = render(Level::Info, "start", 7, true);
        assert_eq!(r, "<6>pi-init: start\n");
    }

    #[test]
    fn console_copy_only_when_the_kernel_would_not_echo() {
        // Default console level 7: the kernel echoes info, so no second copy.
        assert!(!render(Level::Info, "x", 7, true).1);
        // `quiet` (console level 4): info is not echoed, write it ourselves.
        assert!(render(Level::Info, "x", 4, true).1);
        assert!(!render(Level::Error, "x", 4, true).1);
        assert!(render(Level::Debug, "x", 7, true).1);
        // No kmsg at all: always the console.
        assert!(render(Level::Error, "x", 7, false).1);
        assert_eq!(parse_console_loglevel("4\t4\t1\t7\n"), Some(4));
        assert_eq!(parse_console_loglevel(""), None);
    }
}
