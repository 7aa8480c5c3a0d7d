//! Who this node is. A board serial from the device tree `serial-number`, else the
//! `Serial` line of `/proc/cpuinfo`, else `pureboot.serial=` (the serial step,
//! `steps/serial.rs`, reads them; the choice is made here). A board without one (QEMU `virt`,
//! most non-Pi boards) is known by its MAC instead: enough for a kernel-style NFS root, not
//! for a controller, which keys nodes by serial.

use pureboot_contract::ids::{FullSerial, Hostname, Mac, MachineId, Serial};
use std::fmt;

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
        no_serial: NoSerial,
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
pub fn normalize(raw: &str) -> Result<(Serial, Option<FullSerial>), BadSerial> {
    let s = raw
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_ascii_lowercase();
    let digits = s.strip_prefix("0x").unwrap_or(&s);
    if !digits.is_empty() && digits.bytes().all(|c| c == b'0') {
        return Err(BadSerial::AllZeros(raw.into()));
    }
    if let Ok(short) = Serial::parse(digits) {
        return Ok((short, None));
    }
    match FullSerial::parse(digits) {
        Ok(full) => Ok((full.short(), Some(full))),
        Err(_) => Err(BadSerial::NotASerial(raw.into())),
    }
}

/// The `Serial` line of /proc/cpuinfo (`Serial\t\t: 10000000d83add36`).
pub fn cpuinfo_serial(cpuinfo: &str) -> Option<&str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "Serial").then(|| v.trim())
    })
}

/// Why one source gave no serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadSerial {
    Absent,
    /// All zeros: what a board without a programmed serial shows.
    AllZeros(String),
    NotASerial(String),
}

impl fmt::Display for BadSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadSerial::Absent => f.write_str("absent"),
            BadSerial::AllZeros(raw) => write!(f, "{raw:?} is all zeros"),
            BadSerial::NotASerial(raw) => write!(f, "{raw:?} is not a serial (8 to 16 hex digits)"),
        }
    }
}

/// Why no source gave a usable serial: each source, with why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSerial(pub Vec<(&'static str, BadSerial)>);

impl fmt::Display for NoSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no usable serial (")?;
        for (i, (source, why)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{source}: {why}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for NoSerial {}

/// The first usable serial among `candidates` (`(source, its text if any)`, in order of
/// trust), else why none is.
pub fn choose(
    candidates: impl IntoIterator<Item = (&'static str, Option<String>)>,
) -> Result<BoardSerial, NoSerial> {
    let mut why = Vec::new();
    for (source, value) in candidates {
        match value.map(|v| normalize(&v)) {
            Some(Ok((short, full))) => {
                return Ok(BoardSerial {
                    short,
                    full,
                    source,
                })
            }
            Some(Err(e)) => why.push((source, e)),
            None => why.push((source, BadSerial::Absent)),
        }
    }
    Err(NoSerial(why))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            no_serial: NoSerial(vec![]),
        };
        assert_eq!(id.default_hostname().as_str(), "pi-525400123456");
        assert!(id.serial().is_none());
        assert_eq!(
            id.machine_id(),
            MachineId::derived_from("52:54:00:12:34:56")
        );
        let board = Identity::Board(choose([("cmdline", Some("D83ADD36".into()))]).unwrap());
        assert_eq!(board.default_hostname().as_str(), "pi-d83add36");
        // The id the boot gave before: from the longest serial text.
        assert_eq!(board.machine_id(), MachineId::derived_from("d83add36"));
        assert_ne!(board.machine_id(), id.machine_id());
    }
}
