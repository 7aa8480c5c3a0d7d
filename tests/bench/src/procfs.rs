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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command name's closing parenthesis; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ProcStats {
        hwm_kb: field("VmHWM:"),
        rss_kb: field("VmRSS:"),
        cpu_s: (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / hz,
    })
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
