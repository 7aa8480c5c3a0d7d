//! The serial step: the board's serial as the device tree (`serial-number`), `/proc/cpuinfo`
//! (its `Serial` line) and `pureboot.serial=` give it, read under an injectable root so tests
//! use a temporary directory. Which one counts is decided in `decide/serial.rs`.

use crate::decide::serial::{choose, cpuinfo_serial, BoardSerial, NoSerial};
use std::path::Path;

/// Read the serial under `root` (`/` on a Pi). Each source that is absent or garbage is
/// skipped, with the reason kept for the error when none is usable.
pub fn read(root: &Path, from_cmdline: Option<&str>) -> Result<BoardSerial, NoSerial> {
    let dt = root.join("sys/firmware/devicetree/base/serial-number");
    let cpuinfo = root.join("proc/cpuinfo");
    choose([
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
    ])
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
        let e = read(d.path(), Some("zz")).unwrap_err().to_string();
        assert!(e.contains("devicetree") && e.contains("all zeros"), "{e}");
        assert!(
            e.contains("cpuinfo: absent") && e.contains("cmdline"),
            "{e}"
        );
    }
}
