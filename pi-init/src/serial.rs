//! The board serial: device tree `serial-number`, else `/proc/cpuinfo` `Serial`, else
//! `pureboot.serial=`. Read under an injectable root so tests use a temporary directory.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serial {
    /// All hex digits the board reports, lowercase (16 on a Pi).
    pub full: String,
    /// The low 8 hex digits, lowercase: the firmware's TFTP prefix and the API's `serial`.
    pub short: String,
    /// Where it came from, for the log.
    pub source: &'static str,
}

/// Normalise one candidate: trim whitespace and NULs, lowercase, hex only, at least 8 digits,
/// not all zeros (what a board without a programmed serial shows).
pub fn normalize(raw: &str) -> Result<(String, String), String> {
    let s = raw
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_ascii_lowercase();
    let s = s.strip_prefix("0x").unwrap_or(&s);
    if s.len() < 8 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{raw:?} is not a serial (8 or more hex digits)"));
    }
    if s.chars().all(|c| c == '0') {
        return Err(format!("{raw:?} is all zeros"));
    }
    Ok((s.to_string(), s[s.len() - 8..].to_string()))
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
pub fn read(root: &Path, from_cmdline: Option<&str>) -> Result<Serial, String> {
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
            Some(Ok((full, short))) => {
                return Ok(Serial {
                    full,
                    short,
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
    use crate::testutil::TempDir;
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
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("10000000d83add36", Some(("10000000d83add36", "d83add36"))), // Pi 4
            ("00000000ABCDEF12\n", Some(("00000000abcdef12", "abcdef12"))), // Pi 3, uppercase
            ("6a1b2c3d4e5f6789\0", Some(("6a1b2c3d4e5f6789", "4e5f6789"))), // Pi 5, NUL
            ("d83add36", Some(("d83add36", "d83add36"))),                 // already short
            ("0x10000000d83add36", Some(("10000000d83add36", "d83add36"))),
            ("0000000000000000", None),
            ("", None),
            ("\0", None),
            ("d83add3", None),
            ("not-a-serial-xyz", None),
            ("d83add36; rm -rf", None),
        ];
        for (i, (raw, want)) in cases.iter().enumerate() {
            let got = normalize(raw).ok();
            let want = want.map(|(f, s)| (f.to_string(), s.to_string()));
            assert_eq!(got, want, "test[{i}]: {raw:?}");
        }
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
            (s.full.as_str(), s.short.as_str()),
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
