//! Where a guest's time went up to a point of its boot, read from its console: the booted
//! root prints the first line of `/proc/stat` as `PUREBOOT-CPU cpu <user> <nice> <system>
//! <idle> <iowait> <irq> <softirq> ...` ([`DUMP_SH`]), in USER_HZ ticks since the kernel
//! started, and [`GuestCpu::from_console`] turns it into seconds.
//!
//! Under TCG the guest's time is either its (emulated) CPU at work or the vCPU waiting for
//! something (the network, the disk, a timer): the split says how much of a boot a faster
//! network path could ever save.

/// Shell (busybox sh and dash) that prints the line.
pub const DUMP_SH: &str = "sed -n '1s|^|PUREBOOT-CPU |p' /proc/stat";

const MARK: &str = "PUREBOOT-CPU ";

/// `/proc/stat` counts in USER_HZ, 100 on every Linux architecture.
const USER_HZ: f64 = 100.0;

/// The guest's CPU time since its kernel started, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GuestCpu {
    /// user + nice + system + irq + softirq + steal.
    pub busy_s: f64,
    /// idle + iowait: the vCPU had nothing to run.
    pub waiting_s: f64,
}

impl GuestCpu {
    /// The first `PUREBOOT-CPU` line's figures; None when there is none or it is not a
    /// `cpu` line with at least the eight classic fields.
    pub fn from_console(console: &str) -> Option<GuestCpu> {
        let line = console
            .lines()
            .find_map(|l| Some(&l[l.find(MARK)? + MARK.len()..]))?;
        let mut f = line.split_whitespace();
        if f.next() != Some("cpu") {
            return None;
        }
        let t: Vec<f64> = f.take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = t[..] else {
            return None;
        };
        Some(GuestCpu {
            busy_s: (user + nice + system + irq + softirq + steal) / USER_HZ,
            waiting_s: (idle + iowait) / USER_HZ,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_line_splits_into_busy_and_waiting_seconds() {
        let c = "login: PUREBOOT-CPU cpu  1200 5 800 300 50 10 25 0 0 0\r\nPUREBOOT-CPU cpu 1 1 1 1 1 1 1 1\n";
        let cpu = GuestCpu::from_console(c).unwrap();
        assert!((cpu.busy_s - 20.40).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.waiting_s - 3.50).abs() < 1e-9, "{cpu:?}");
        assert_eq!(GuestCpu::from_console("no line\n"), None);
        assert_eq!(
            GuestCpu::from_console("PUREBOOT-CPU cpu0 1 2 3 4 5 6 7 8\n"),
            None
        );
        assert_eq!(GuestCpu::from_console("PUREBOOT-CPU cpu 1 2 3\n"), None);
    }
}
