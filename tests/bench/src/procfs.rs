//! A running process's figures from /proc: memory, CPU time, its network's bytes.

/// `VmHWM` / `VmRSS` in KiB, and CPU seconds used so far, of a running process.
pub struct ProcStats {
    pub hwm_kb: u64,
    pub rss_kb: u64,
    pub cpu_s: f64,
}

pub fn proc_stats(pid: u32) -> Result<ProcStats, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let f = stat_fields(pid)?;
    let hz = clock_ticks();
    Ok(ProcStats {
        hwm_kb: field("VmHWM:"),
        rss_kb: field("VmRSS:"),
        cpu_s: (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / hz,
    })
}

/// CPU seconds used so far by process `pid` and its children: those it reaped and those
/// still running (one level: PostgreSQL's postmaster and its backends).
pub fn tree_cpu_s(pid: u32) -> Result<f64, String> {
    let ticks = |f: &[f64], from: usize| f.iter().skip(from).take(4).sum::<f64>();
    // utime, stime, cutime, cstime.
    let mut total = ticks(&stat_fields(pid)?, 11);
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process that exits between the listing and the read is skipped.
        match stat_fields(child) {
            // The parent's pid is the second field after the command name.
            Ok(f) if f.get(1) == Some(&f64::from(pid)) => total += ticks(&f, 11),
            _ => {}
        }
    }
    Ok(total / clock_ticks())
}

/// The fields of `/proc/<pid>/stat` after the command name's closing parenthesis (the
/// state is 0, utime 11 and stime 12), as numbers (0 where not one).
fn stat_fields(pid: u32) -> Result<Vec<f64>, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    Ok(rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Bytes sent through `dev` in the network namespace of process `pid` (see [`dev_bytes`]).
pub fn dev_sent_bytes(pid: u32, dev: &str) -> Result<u64, String> {
    dev_bytes(pid, dev).map(|b| b.sent)
}

/// A network device's byte counters.
#[derive(Clone, Copy, Default)]
pub struct DevBytes {
    pub received: u64,
    pub sent: u64,
}

/// Bytes received and sent through `dev` in the network namespace of process `pid`
/// (`/proc/<pid>/net/dev`: the namespace's own counters, read from outside it).
pub fn dev_bytes(pid: u32, dev: &str) -> Result<DevBytes, String> {
    let path = format!("/proc/{pid}/net/dev");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| {
            let (name, counters) = l.split_once(':')?;
            let c: Vec<u64> = counters
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            // Receive has 8 counters, bytes first; transmit bytes is the 9th.
            (name.trim() == dev).then_some(DevBytes {
                received: *c.first()?,
                sent: *c.get(8)?,
            })
        })
        .ok_or_else(|| format!("{path}: no counters for {dev}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_child_s_cpu_time_counts_for_its_parent() {
        let me = std::process::id();
        // The children's part: the whole tree's less this process's own.
        let children = || super::tree_cpu_s(me).unwrap() - super::proc_stats(me).unwrap().cpu_s;
        let before = children();
        // A child that burns CPU for a while, still running when counted.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        let mut spent = 0.0;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            spent = children() - before;
            if spent >= 0.1 {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(spent >= 0.1, "{spent} s");
    }

    #[test]
    fn the_loopback_of_this_process_has_counters() {
        let before = super::dev_sent_bytes(std::process::id(), "lo").unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        std::io::Write::write_all(&mut c, &[0u8; 100_000]).unwrap();
        drop(c);
        let after = super::dev_sent_bytes(std::process::id(), "lo").unwrap();
        assert!(after >= before + 100_000, "{before} -> {after}");
        // On the loopback every byte sent is received too.
        let lo = super::dev_bytes(std::process::id(), "lo").unwrap();
        assert!(lo.received >= after, "{} < {after}", lo.received);
        assert!(super::dev_sent_bytes(std::process::id(), "nonesuch0").is_err());
    }
}
