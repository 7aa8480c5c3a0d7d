//! A dnsmasq configuration for the usual setup: proxy DHCP beside the site's DHCP server
//! (dnsmasq hands out no addresses; it answers only PXE clients, which the Pi boot ROM and
//! EEPROM are, with the boot server and vendor option 43), plus TFTP of the generated root.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// What option 43's PXE menu entry says. The Pi 3B boot ROM matches it only with three
/// trailing spaces; the later ROMs and the Pi 4/5 EEPROMs accept it as it is.
pub const PI_BOOT_MENU: &str = "Raspberry Pi Boot   ";

#[derive(Debug, Clone)]
pub struct Settings {
    /// The TFTP root `pureboot-image tftp -o` wrote.
    pub tftp_root: PathBuf,
    /// The network the Pis boot on (its address, e.g. 192.168.1.0): the proxy range.
    pub subnet: Ipv4Addr,
    /// Listen only there (and bind to it), e.g. eth0.
    pub interface: Option<String>,
}

pub fn render(s: &Settings) -> Result<String> {
    let root = checked_root(&s.tftp_root)?;
    let mut lines = vec![
        "# pureboot: proxy DHCP + TFTP for Raspberry Pi network boot, written by pureboot-image"
            .to_string(),
        "# Beside the site's DHCP server: no addresses are handed out, only PXE clients (the Pi"
            .into(),
        "# boot ROM, the Pi 4/5 EEPROM) get the boot server and option 43.".into(),
        "# No DNS.".into(),
        "port=0".into(),
    ];
    if let Some(interface) = &s.interface {
        if interface.is_empty()
            || interface.len() > 15
            || !interface
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        {
            bail!("--interface {interface:?}: not a network interface name");
        }
        lines.push(format!("interface={interface}"));
        lines.push("bind-interfaces".into());
    }
    lines.extend([
        format!("dhcp-range={},proxy", s.subnet),
        "log-dhcp".into(),
        "enable-tftp".into(),
        format!("tftp-root={root}"),
        "# Option 43: a PXE menu entry \"Raspberry Pi Boot\"; the Pi 3B's boot ROM needs the three"
            .into(),
        "# trailing spaces.".into(),
        format!("pxe-service=0,\"{PI_BOOT_MENU}\""),
    ]);
    Ok(lines.join("\n") + "\n")
}

fn checked_root(root: &Path) -> Result<String> {
    let text = root.to_str().unwrap_or_default();
    if !root.is_absolute() || text.is_empty() || text.contains(|c: char| c.is_control()) {
        bail!(
            "--tftp-root {}: expected an absolute path on one line",
            root.display()
        );
    }
    if !root.is_dir() {
        bail!(
            "--tftp-root {}: no such directory (write it with `pureboot-image tftp -o`)",
            root.display()
        );
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_dhcp_and_tftp_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let text = render(&Settings {
            tftp_root: dir.path().to_path_buf(),
            subnet: "192.168.1.0".parse().unwrap(),
            interface: Some("eth0".into()),
        })
        .unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "port=0",
                "interface=eth0",
                "bind-interfaces",
                "dhcp-range=192.168.1.0,proxy",
                "log-dhcp",
                "enable-tftp",
                &format!("tftp-root={}", dir.path().display()),
                "pxe-service=0,\"Raspberry Pi Boot   \"",
            ]
        );
    }

    #[test]
    fn bad_roots_and_interfaces_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |root: PathBuf, interface: Option<&str>| Settings {
            tftp_root: root,
            subnet: Ipv4Addr::new(10, 0, 0, 0),
            interface: interface.map(String::from),
        };
        let err = |s: Settings| render(&s).unwrap_err().to_string();
        assert!(err(settings("relative".into(), None)).contains("absolute"));
        assert!(err(settings(dir.path().join("nope"), None)).contains("no such directory"));
        assert!(err(settings(dir.path().join("a\nb"), None)).contains("one line"));
        assert!(err(settings(dir.path().into(), Some("eth0\nport=53"))).contains("interface"));
        assert!(render(&settings(dir.path().into(), None)).is_ok());
    }
}
