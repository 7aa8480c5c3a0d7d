//! A guest's NFS client load, read from its console: the booted root dumps the kernel's
//! counters as `PUREBOOT-NFS <source> <line>` lines ([`DUMP_SH`]) and [`NfsLoad::from_console`]
//! turns them into a table of operation -> calls, plus the NIC's bytes.
//!
//! Sources, as the guest sees them after switch_root:
//! - `/proc/net/rpc/nfs` (per network namespace, so the switch does not hide it): calls per
//!   procedure, every mount's and the v4 client's own (EXCHANGE_ID, SEQUENCE, RENEW, ...), as
//!   counts in the kernel's procedure-index order (`proc3`, `proc4` lines).
//! - `/proc/net/dev`: the interface's byte counters (DHCP and HTTP included).
//!
//! Per-operation bytes (mountstats) are out of reach: the NFS mount stays under the
//! initramfs's old root, which no task's root reaches any more (PID 1 and the kernel threads
//! share one fs_struct, so they all moved with the switch), and mountstats lists only mounts
//! reachable from the reader's root.

use std::collections::BTreeMap;

/// Shell (busybox sh and dash) that prints the counters on stdout, one `PUREBOOT-NFS` line per
/// line of each source.
pub const DUMP_SH: &str = "for s in rpc:/proc/net/rpc/nfs dev:/proc/net/dev; do \
     sed \"s|^|PUREBOOT-NFS ${s%%:*} |\" \"${s#*:}\" 2>/dev/null; done";

const MARK: &str = "PUREBOOT-NFS ";

/// NFSv3 procedures in `NFS3PROC_*` order (include/uapi/linux/nfs3.h).
const V3_PROCS: [&str; 22] = [
    "NULL",
    "GETATTR",
    "SETATTR",
    "LOOKUP",
    "ACCESS",
    "READLINK",
    "READ",
    "WRITE",
    "CREATE",
    "MKDIR",
    "SYMLINK",
    "MKNOD",
    "REMOVE",
    "RMDIR",
    "RENAME",
    "LINK",
    "READDIR",
    "READDIRPLUS",
    "FSSTAT",
    "FSINFO",
    "PATHCONF",
    "COMMIT",
];

/// The v4 client's procedures in `NFSPROC4_CLNT_*` order (include/linux/nfs4.h, 6.1): the
/// `proc4` counts are indexed by it. A kernel with another count is refused, not misnamed.
const V4_PROCS: [&str; 69] = [
    "NULL",
    "READ",
    "WRITE",
    "COMMIT",
    "OPEN",
    "OPEN_CONFIRM",
    "OPEN_NOATTR",
    "OPEN_DOWNGRADE",
    "CLOSE",
    "SETATTR",
    "FSINFO",
    "RENEW",
    "SETCLIENTID",
    "SETCLIENTID_CONFIRM",
    "LOCK",
    "LOCKT",
    "LOCKU",
    "ACCESS",
    "GETATTR",
    "LOOKUP",
    "LOOKUP_ROOT",
    "REMOVE",
    "RENAME",
    "LINK",
    "SYMLINK",
    "CREATE",
    "PATHCONF",
    "STATFS",
    "READLINK",
    "READDIR",
    "SERVER_CAPS",
    "DELEGRETURN",
    "GETACL",
    "SETACL",
    "FS_LOCATIONS",
    "RELEASE_LOCKOWNER",
    "SECINFO",
    "FSID_PRESENT",
    "EXCHANGE_ID",
    "CREATE_SESSION",
    "DESTROY_SESSION",
    "SEQUENCE",
    "GET_LEASE_TIME",
    "RECLAIM_COMPLETE",
    "LAYOUTGET",
    "GETDEVICEINFO",
    "LAYOUTCOMMIT",
    "LAYOUTRETURN",
    "SECINFO_NO_NAME",
    "TEST_STATEID",
    "FREE_STATEID",
    "GETDEVICELIST",
    "BIND_CONN_TO_SESSION",
    "DESTROY_CLIENTID",
    "SEEK",
    "ALLOCATE",
    "DEALLOCATE",
    "LAYOUTSTATS",
    "CLONE",
    "COPY",
    "OFFLOAD_CANCEL",
    "LOOKUPP",
    "LAYOUTERROR",
    "COPY_NOTIFY",
    "GETXATTR",
    "SETXATTR",
    "LISTXATTRS",
    "REMOVEXATTR",
    "READ_PLUS",
];

/// An interface's byte counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicBytes {
    pub sent: u64,
    pub received: u64,
}

/// One boot's NFS client load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NfsLoad {
    /// Calls per operation with at least one call (`/proc/net/rpc/nfs`); v3 operations are
    /// named `v3 <NAME>` so that they never add to a v4 operation of the same name.
    pub calls: BTreeMap<String, u64>,
    /// Received and sent bytes of the guest's NIC (`eth0`), everything included.
    pub nic: Option<NicBytes>,
}

impl NfsLoad {
    /// The load the console's `PUREBOOT-NFS` lines give; an error when the RPC counters are
    /// missing (the guest did not dump them, or its kernel has no NFS client statistics).
    pub fn from_console(console: &str) -> Result<NfsLoad, String> {
        let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for l in console.lines() {
            let Some(i) = l.find(MARK) else { continue };
            let rest = l[i + MARK.len()..].trim_end_matches('\r');
            let (source, line) = rest.split_once(' ').unwrap_or((rest, ""));
            by.entry(source).or_default().push(line);
        }
        let lines = |s: &str| by.get(s).map(Vec::as_slice).unwrap_or_default();
        Ok(NfsLoad {
            calls: rpc_calls(lines("rpc"))?,
            nic: nic_bytes(lines("dev"), "eth0"),
        })
    }

    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Which NFS the boot spoke, as its calls show: a v4.0 client sets its id with
    /// SETCLIENTID, v4.1 and later with EXCHANGE_ID (sessions).
    pub fn protocol(&self) -> String {
        let mut p = Vec::new();
        if self.calls.keys().any(|op| op.starts_with("v3 ")) {
            p.push("v3");
        }
        if self.calls.contains_key("SETCLIENTID") {
            p.push("v4.0");
        }
        if self.calls.contains_key("EXCHANGE_ID") {
            p.push("v4.1+");
        }
        if self.total_calls() == 0 {
            "none".into()
        } else if p.is_empty() {
            "unknown".into()
        } else {
            p.join(" + ")
        }
    }
}

fn number(field: &str, what: &str) -> Result<u64, String> {
    field
        .parse()
        .map_err(|e| format!("{what}: {field:?} is not a count: {e}"))
}

/// `/proc/net/rpc/nfs`: `proc3 22 c0 c1 ...` and `proc4 69 c0 ...`, counts by procedure index.
fn rpc_calls(lines: &[&str]) -> Result<BTreeMap<String, u64>, String> {
    let mut calls = BTreeMap::new();
    let mut seen = false;
    for l in lines {
        let mut f = l.split_whitespace();
        let (names, prefix): (&[&str], &str) = match f.next() {
            Some("proc3") => (&V3_PROCS, "v3 "),
            Some("proc4") => (&V4_PROCS, ""),
            _ => continue,
        };
        seen = true;
        let what = format!("/proc/net/rpc/nfs line {l:?}");
        let n = number(f.next().unwrap_or(""), &what)? as usize;
        let counts = f.map(|c| number(c, &what)).collect::<Result<Vec<_>, _>>()?;
        if counts.len() != n || n != names.len() {
            return Err(format!(
                "{what}: {} counts where it says {n} and this kernel's table has {}",
                counts.len(),
                names.len()
            ));
        }
        for (name, c) in names.iter().zip(counts).filter(|(_, c)| *c > 0) {
            *calls.entry(format!("{prefix}{name}")).or_insert(0) += c;
        }
    }
    if !seen {
        return Err("no /proc/net/rpc/nfs counters (proc3/proc4 lines) on the console".into());
    }
    Ok(calls)
}

/// `/proc/net/dev`: `  eth0: rx_bytes rx_packets ... (8 fields) tx_bytes ...`.
fn nic_bytes(lines: &[&str], iface: &str) -> Option<NicBytes> {
    lines.iter().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != iface {
            return None;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|c| c.parse().ok())
            .collect::<Option<_>>()?;
        Some(NicBytes {
            received: *f.first()?,
            sent: *f.get(8)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from the benchmark's Debian root at multi-user.target: the seed flow (NFSv4.0).
    const SEED_DEBIAN: &str = "PUREBOOT-NFS rpc net 0 0 0 0\r\n\
PUREBOOT-NFS rpc rpc 8342 0 8342\r\n\
PUREBOOT-NFS rpc proc3 22 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\r\n\
PUREBOOT-NFS rpc proc4 69 1 520 0 0 1265 1 0 0 399 0 3 0 2 2 0 0 0 119 5382 472 1 0 0 0 0 0 2 2 115 50 5 0 0 0 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\r\n\
PUREBOOT-NFS dev Inter-|   Receive                                                |  Transmit\r\n\
PUREBOOT-NFS dev  face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\r\n\
PUREBOOT-NFS dev     lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\r\n\
PUREBOOT-NFS dev   eth0: 25899413   24952    0    0    0     0          0         0  1790075    9171    0    0    0     0       0          0\r\n";

    /// The same root booted by pi-init (NFSv4.2), interleaved with a kernel line; the lines
    /// the parser skips (the rest of /proc/net/dev) left out.
    const PI_INIT_DEBIAN: &str = "[   57.88] PUREBOOT-USABLE target=multi-user.target\r\nPUREBOOT-NFS rpc net 0 0 0 0\r\n\
PUREBOOT-NFS rpc rpc 8110 0 8110\r\n\
PUREBOOT-NFS rpc proc3 22 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\r\n\
PUREBOOT-NFS rpc proc4 69 1 497 0 0 0 0 1237 0 399 0 3 0 0 0 0 0 0 112 5216 463 1 0 0 0 0 0 2 2 115 51 5 0 0 0 0 0 0 0 2 1 0 0 0 1 0 0 0 0 1 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0\r\n\
PUREBOOT-NFS dev   eth0: 26127004   24455    0    0    0     0          0         0  2016191    8567    0    0    0     0       0          0\r\n";

    #[test]
    fn v4_0_counts_are_named_by_procedure_index() {
        let l = NfsLoad::from_console(SEED_DEBIAN).unwrap();
        assert_eq!(l.total_calls(), 8342, "the rpc line's total");
        assert_eq!(l.calls["GETATTR"], 5382);
        assert_eq!(l.calls["OPEN"], 1265);
        assert_eq!(l.calls["OPEN_CONFIRM"], 1);
        assert_eq!(l.calls["SETCLIENTID"], 2);
        assert_eq!(l.calls["FSINFO"], 3);
        assert_eq!(l.calls["GET_LEASE_TIME"], 1);
        assert_eq!(l.calls["READ"], 520);
        assert_eq!(l.protocol(), "v4.0");
        assert_eq!(
            l.nic,
            Some(NicBytes {
                received: 25_899_413,
                sent: 1_790_075
            })
        );
    }

    #[test]
    fn v4_2_counts_include_the_clients_own_calls() {
        let l = NfsLoad::from_console(PI_INIT_DEBIAN).unwrap();
        assert_eq!(l.total_calls(), 8110);
        assert_eq!(l.calls["OPEN_NOATTR"], 1237);
        assert_eq!(l.calls["EXCHANGE_ID"], 2);
        assert_eq!(l.calls["SEEK"], 1, "SEEK_DATA/SEEK_HOLE: v4.2 only");
        assert_eq!(l.calls["CREATE_SESSION"], 1);
        assert_eq!(l.calls["RECLAIM_COMPLETE"], 1);
        assert_eq!(l.calls["READDIR"], 51);
        assert!(l.calls.values().all(|&c| c > 0), "only operations that ran");
        assert_eq!(l.protocol(), "v4.1+");
    }

    #[test]
    fn v3_calls_are_kept_apart_and_bad_lines_refused() {
        let mut c = String::from("PUREBOOT-NFS rpc proc3 22 1 7");
        c += &" 0".repeat(20);
        c += "\nPUREBOOT-NFS rpc proc4 69";
        c += &" 0".repeat(18);
        c += " 3";
        c += &" 0".repeat(50);
        let l = NfsLoad::from_console(&c).unwrap();
        assert_eq!(l.calls["v3 GETATTR"], 7);
        assert_eq!(l.calls["GETATTR"], 3);
        assert_eq!(l.nic, None);
        assert_eq!(l.protocol(), "v3");
        // A boot from a local disk: the client is loaded but never called.
        let idle = format!("PUREBOOT-NFS rpc proc4 69{}\n", " 0".repeat(69));
        assert_eq!(NfsLoad::from_console(&idle).unwrap().protocol(), "none");
        assert!(NfsLoad::from_console("no counters\n").is_err());
        let short = "PUREBOOT-NFS rpc proc4 68 0\n";
        assert!(NfsLoad::from_console(short).unwrap_err().contains("68"));
    }
}
