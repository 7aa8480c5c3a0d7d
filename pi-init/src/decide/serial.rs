//! Who this node is. A board serial from the device tree `serial-number`, else the
//! `Serial` line of `/proc/cpuinfo`, else `pureboot.serial=`, read under an injectable root so
//! tests use a temporary directory. A board without one (QEMU `virt`, most non-Pi boards) is
//! known by its MAC instead: enough for a kernel-style NFS root, not for a controller, which
//! keys nodes by serial.

use pureboot_contract::ids::{FullSerial, Hostname, Mac, MachineId, Serial};
use std::path::Path;

/// A board serial: the low 8 hex digits, and all 16 where the board reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardSerial {
    /// The firmware's TFTP prefix, the boot API's `serial`, the export's `nodes/<serial>`.
    pub short: Serial,
    /// All 16 digits; `None` where only 8 were given (`pureboot.serial=d83add36`).
    pub full: Option<FullSerial>,
    /// Where it came from, for the log.
    pub source: &'static str,
}

impl BoardSerial {
    /// The full serial's text where known, else the short one's.
    pub fn longest(&self) -> &str {
        self.full
            .as_ref()
            .map_or(self.short.as_str(), |f| f.as_str())
    }
}

/// The node's identity for this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Board(BoardSerial),
    /// No usable serial: the MAC of the boot interface, and why there was no serial.
    Mac {
        mac: Mac,
        no_serial: String,
    },
}

impl Identity {
    pub fn serial(&self) -> Option<&BoardSerial> {
        match self {
            Identity::Board(s) => Some(s),
            Identity::Mac { .. } => None,
        }
    }

    /// The host name when nobody names one: the contract's `pi-<serial>`, or `pi-<mac
    /// digits>` for a board without a serial.
    pub fn default_hostname(&self) -> Hostname {
        match self {
            Identity::Board(s) => Hostname::for_serial(&s.short),
            Identity::Mac { mac, .. } => Hostname::for_mac(mac),
        }
    }

    /// A machine id stable for this board (the NFSv4 client identifier when the controller
    /// names none): from the full serial, else the short one, else the MAC.
    pub fn machine_id(&self) -> MachineId {
        match self {
            Identity::Board(s) => MachineId::derived_from(s.longest()),
            Identity::Mac { mac, .. } => MachineId::derived_from(mac.as_str()),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Board(s) => {
                write!(f, "serial {} ({}, from {})", s.short, s.longest(), s.source)
            }
            Identity::Mac { mac, .. } => write!(f, "MAC {mac} (no board serial)"),
        }
    }
}

/// Normalise one candidate: trim whitespace and NULs, 8 hex digits (a short serial) or 9 to
/// 16 (a full one, `0x` allowed), not all zeros (what a board without a programmed serial
/// shows).
pub fn normalize(raw: &str) -> Result<(Serial, Option<FullSerial>), String> {
    let s = raw
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_ascii_lowercase();
    let digits = s.strip_prefix("0x").unwrap_or(&s);
    if !digits.is_empty() && digits.bytes().all(|c| c == b'0') {
        return Err(format!("{raw:?} is all zeros"));
    }
    if let Ok(short) = Serial::parse(digits) {
        return Ok((short, None));
    }
    match FullSerial::parse(digits) {
        Ok(full) => Ok((full.short(), Some(full))),
        Err(_) => Err(format!("{raw:?} is not a serial (8 to 16 hex digits)")),
    }
}

/// The `Serial` line of /proc/cpuinfo (`Serial\t\t: 10000000d83add36`).
pub fn cpuinfo_serial(cpuinfo: &str) -> Option<&str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "Serial").then(|| v.trim())
    })
}

/// Read the serial under `root` (`/` on a Pi). Each source that is absent or garbage is
/// skipped, with the reason kept for the error when none is usable.
pub fn read(root: &Path, from_cmdline: Option<&str>) -> Result<BoardSerial, String> {
    let mut why = Vec::new();
    let dt = root.join("sys/firmware/devicetree/base/serial-number");
    let cpuinfo = root.join("proc/cpuinfo");
    let candidates: [(&'static str, Option<String>); 3] = [
        (
            "devicetree",
            std::fs::read(&dt)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into()),
        ),
        (
            "cpuinfo",
            std::fs::read_to_string(&cpuinfo)
                .ok()
                .and_then(|t| cpuinfo_serial(&t).map(String::from)),
        ),
        ("cmdline", from_cmdline.map(String::from)),
    ];
    for (source, value) in candidates {
        match value.map(|v| normalize(&v)) {
            Some(Ok((short, full))) => {
                return Ok(BoardSerial {
                    short,
                    full,
                    source,
                })
            }
            Some(Err(e)) => why.push(format!("{source}: {e}")),
            None => why.push(format!("{source}: absent")),
        }
    }
    Err(format!("no usable serial ({})", why.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::testutil::TempDir;
    use std::fs;

    fn root(dt: Option<&[u8]>, cpuinfo: Option<&str>) -> TempDir {
        let d = TempDir::new();
        if let Some(dt) = dt {
            let p = d.path().join("sys/firmware/devicetree/base");
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("serial-number"), dt).unwrap();
        }
        if let Some(c) = cpuinfo {
            fs::create_dir_all(d.path().join("proc")).unwrap();
            fs::write(d.path().join("proc/cpuinfo"), c).unwrap();
        }
        d
    }

    #[test]
    fn normalize_table() {
        // (raw, Some((short, full))): "" for no full serial.
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("10000000d83add36", Some(("d83add36", "10000000d83add36"))), // Pi 4
            ("00000000ABCDEF12\n", Some(("abcdef12", "00000000abcdef12"))), // Pi 3, uppercase
            ("6a1b2c3d4e5f6789\0", Some(("4e5f6789", "6a1b2c3d4e5f6789"))), // Pi 5, NUL
            ("d83add36", Some(("d83add36", ""))),                         // short: no full serial
            ("0x10000000d83add36", Some(("d83add36", "10000000d83add36"))),
            ("0000000000000000", None),
            ("00000000", None),
            ("", None),
            ("\0", None),
            ("d83add3", None),
            ("110000000d83add36", None),
            ("not-a-serial-xyz", None),
            ("d83add36; rm -rf", None),
        ];
        for (i, (raw, want)) in cases.iter().enumerate() {
            let got = normalize(raw)
                .ok()
                .map(|(s, f)| (s.to_string(), f.map(|f| f.to_string()).unwrap_or_default()));
            let want = want.map(|(s, f)| (s.to_string(), f.to_string()));
            assert_eq!(got, want, "test[{i}]: {raw:?}");
        }
    }

    #[test]
    fn identity_without_a_serial_comes_from_the_mac() {
        let mac = Mac::parse("52:54:00:12:34:56").unwrap();
        let id = Identity::Mac {
            mac: mac.clone(),
            no_serial: "no usable serial".into(),
        };
        assert_eq!(id.default_hostname().as_str(), "pi-525400123456");
        assert!(id.serial().is_none());
        assert_eq!(
            id.machine_id(),
            MachineId::derived_from("52:54:00:12:34:56")
        );
        let board = Identity::Board(read(Path::new("/nonexistent"), Some("D83ADD36")).unwrap());
        assert_eq!(board.default_hostname().as_str(), "pi-d83add36");
        // The id the boot gave before: from the longest serial text.
        assert_eq!(board.machine_id(), MachineId::derived_from("d83add36"));
        assert_ne!(board.machine_id(), id.machine_id());
    }

    #[test]
    fn devicetree_first_then_cpuinfo_then_cmdline() {
        let pi4_cpuinfo =
            "processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000D83ADD36\nModel\t: Pi 4\n";
        let d = root(Some(b"10000000aaaaaaaa\0"), Some(pi4_cpuinfo));
        let s = read(d.path(), Some("cccccccc")).unwrap();
        assert_eq!((s.short.as_str(), s.source), ("aaaaaaaa", "devicetree"));

        let d = root(None, Some(pi4_cpuinfo));
        let s = read(d.path(), Some("cccccccc")).unwrap();
        assert_eq!(
            (s.longest(), s.short.as_str()),
            ("10000000d83add36", "d83add36")
        );
        assert_eq!(s.source, "cpuinfo");

        // Garbage in the device tree and no Serial line (arm64 QEMU): the command line.
        let d = root(Some(b"\0"), Some("processor\t: 0\nBogoMIPS\t: 125.00\n"));
        let s = read(d.path(), Some("D83ADD36")).unwrap();
        assert_eq!((s.short.as_str(), s.source), ("d83add36", "cmdline"));
    }

    #[test]
    fn nothing_usable_says_why() {
        let d = root(Some(b"0000000000000000\0"), None);
        let e = read(d.path(), Some("zz")).unwrap_err();
        assert!(e.contains("devicetree") && e.contains("all zeros"), "{e}");
        assert!(
            e.contains("cpuinfo: absent") && e.contains("cmdline"),
            "{e}"
        );
    }
}
