//! Pure: the command line, the node's identity, the network and the controller's answer (or
//! its absence) decide what to boot. Every value's source is fixed here, once.

use crate::decide::cmdline::{self, Cmdline, NfsRoot, OverlayMode, RootLayout};
use crate::decide::serial::Identity;
use crate::decide::volumes::{self, VolumePlan};
use pureboot_contract::ids::{Hostname, ImageName, MachineId};
use pureboot_contract::{BootAction, FailureReport, PiBootResponse};
use std::net::Ipv4Addr;

/// The kernel's NFS root path when neither the command line nor DHCP names one.
pub const KERNEL_DEFAULT_NFS_PATH: &str = "/tftpboot/%s";

/// Where the NFS root is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsTarget {
    /// A name or an address; resolved when mounting.
    pub server: String,
    pub path: String,
    /// Extra mount options (comma separated), from the controller and `pureboot.nfs_opts=`.
    pub options: Option<String>,
    pub v4_only: bool,
    /// None: a pureboot tree or a plain root, whichever the export holds once mounted.
    pub layout: Option<RootLayout>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsPlan {
    pub nfs: NfsTarget,
    /// Base image under `base/` (tree layout); None: choose when the export is visible.
    pub base_image: Option<ImageName>,
    pub overlay: OverlayMode,
    pub hostname: Hostname,
    /// The controller's, else one derived from the node's identity.
    pub machine_id: MachineId,
    pub callback_url: Option<String>,
    /// Where the booted root's agent asks for its post-boot steps (the controller's only).
    pub agent_url: Option<String>,
    /// Where a failure of this boot is reported.
    pub failure: Option<FailureReport>,
    /// `controller` or `command line`, for the log.
    pub source: &'static str,
    /// The persist image's file in the node's directory (overlay `image`).
    pub persist_image: String,
    /// Volumes to mount in the new root, parents first.
    pub volumes: Vec<VolumePlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nfs(Box<NfsPlan>),
    /// Boot the local block device named by `root=`.
    Local {
        device: String,
    },
    /// Nothing bootable; the message says why.
    Fail(String),
}

/// The controller's answer, or why there is none.
pub enum Instructions<'a> {
    Controller(&'a PiBootResponse),
    /// No `pureboot.url=`, no serial to ask with, or the controller stayed unreachable.
    None(&'a str),
}

/// What the network step learned that the plan uses.
#[derive(Debug, Clone, Copy)]
pub struct NetFacts<'a> {
    /// Replaces `%s` in a kernel `nfsroot=` path.
    pub client: Ipv4Addr,
    /// DHCP next-server (or `ip=` server): the kernel's NFS server when nobody names one.
    pub server: Option<Ipv4Addr>,
    /// DHCP or `ip=` host name: used when neither the controller nor the command line names one.
    pub hostname: Option<&'a str>,
    /// DHCP root path (option 17): `[<server>:]<path>[,<opts>]`, as the kernel reads it.
    pub root_path: Option<&'a str>,
}

pub fn decide(c: &Cmdline, id: &Identity, net: &NetFacts, ins: Instructions) -> Decision {
    let r = match ins {
        Instructions::Controller(r) => r,
        Instructions::None(why) => {
            return match c.fallback_nfs_root() {
                Some(root) => from_cmdline(c, id, net, root),
                None => Decision::Fail(format!("{why}, and the command line names no NFS root")),
            }
        }
    };
    match &r.action {
        Some(BootAction::NfsBoot) => from_answer(c, id, net, r),
        Some(BootAction::LocalBoot) => match &c.root_device {
            Some(d) => Decision::Local { device: d.clone() },
            None => Decision::Fail(format!(
                "controller says {} (state {}) but root= names no block device",
                BootAction::LocalBoot,
                r.state
            )),
        },
        other => {
            let action = other.as_ref().map_or("none", BootAction::as_str);
            let msg = r
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Decision::Fail(format!(
                "controller answered action {action} (state {}){msg}; pi-init only boots nfs_boot and local_boot",
                r.state
            ))
        }
    }
}

fn from_answer(c: &Cmdline, id: &Identity, net: &NetFacts, r: &PiBootResponse) -> Decision {
    let server = r
        .nfs_server
        .clone()
        .or_else(|| c.nfs_server.clone())
        .or(net.server.map(|a| a.to_string()));
    let path = r.nfs_path.clone().or_else(|| c.nfs_path.clone());
    let (Some(server), Some(path)) = (server, path) else {
        return Decision::Fail(format!(
            "controller says nfs_boot (state {}) but names no nfs_server/nfs_path, nor does the command line",
            r.state
        ));
    };
    let overlay = match r.overlay_mode.as_deref().map(str::parse::<OverlayMode>) {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Decision::Fail(format!("controller's overlay_mode: {e}")),
        None => c.overlay,
    };
    let base_image = match r.base_image.as_deref().map(ImageName::parse).transpose() {
        Ok(b) => b.or_else(|| c.base_image.clone()),
        Err(e) => return Decision::Fail(format!("controller's base_image: {e}")),
    };
    let hostname = match r.hostname.as_deref().map(Hostname::parse).transpose() {
        Ok(h) => hostname(h, c, net, id),
        Err(e) => return Decision::Fail(format!("controller's hostname: {e}")),
    };
    let machine_id = match r.machine_id.as_deref().map(MachineId::parse).transpose() {
        Ok(m) => m.unwrap_or_else(|| id.machine_id()),
        Err(e) => return Decision::Fail(format!("controller's machine_id: {e}")),
    };
    let persist_image = match volumes::persist_image(r.persist_image.as_deref()) {
        Ok(p) => p,
        Err(e) => return Decision::Fail(e),
    };
    let volumes = match volumes::plan(&r.volumes) {
        Ok(v) => v,
        Err(e) => return Decision::Fail(e),
    };
    let callback_url = r.callback_url.clone().or_else(|| c.callback.clone());
    Decision::Nfs(Box::new(NfsPlan {
        nfs: NfsTarget {
            server,
            path,
            options: join_opts(r.nfs_options.as_deref(), c.nfs_opts.as_deref()),
            v4_only: false,
            // Upstream PureBoot's answers name a plain root export; ours a pureboot tree.
            layout: None,
        },
        base_image,
        overlay,
        hostname,
        machine_id,
        failure: FailureReport::choose(r.failure_url.as_deref(), callback_url.as_deref()),
        callback_url,
        agent_url: r.agent_url.clone(),
        source: "controller",
        persist_image,
        volumes,
    }))
}

fn from_cmdline(c: &Cmdline, id: &Identity, net: &NetFacts, root: NfsRoot) -> Decision {
    // As the kernel: a root path from DHCP (option 17) when the command line names none; it
    // may name the server and options too.
    let from_dhcp = match (&root.path, net.root_path) {
        (None, Some(rp)) => match cmdline::parse_nfsroot(rp) {
            Ok(r) => Some(r),
            Err(e) => return Decision::Fail(format!("DHCP root path (option 17): {e}")),
        },
        _ => None,
    };
    let server = root
        .server
        .clone()
        .or_else(|| from_dhcp.as_ref().and_then(|r| r.server.clone()))
        .or(net.server.map(|a| a.to_string()));
    let path = root
        .path
        .clone()
        .or_else(|| from_dhcp.as_ref().and_then(|r| r.path.clone()))
        .unwrap_or_else(|| KERNEL_DEFAULT_NFS_PATH.to_string());
    let Some(server) = server else {
        return Decision::Fail(format!(
            "the command line's NFS root {path} names no server and the network gave none (DHCP next-server)"
        ));
    };
    let options = root
        .options
        .clone()
        .or_else(|| from_dhcp.as_ref().and_then(|r| r.options.clone()));
    Decision::Nfs(Box::new(NfsPlan {
        nfs: NfsTarget {
            server,
            // The kernel's `nfsroot=` substitutes `%s` with the client address; so do we.
            path: path.replace("%s", &net.client.to_string()),
            options: join_opts(options.as_deref(), c.nfs_opts.as_deref()),
            v4_only: root.v4_only,
            layout: root.layout,
        },
        base_image: c.base_image.clone(),
        overlay: c.overlay,
        hostname: hostname(None, c, net, id),
        machine_id: id.machine_id(),
        callback_url: c.callback.clone(),
        agent_url: None,
        failure: FailureReport::choose(None, c.callback.as_deref()),
        source: "command line",
        persist_image: pureboot_contract::layout::PERSIST_IMAGE.to_string(),
        volumes: Vec::new(),
    }))
}

/// The controller's, else `pureboot.hostname=`, else the network's (if usable), else the
/// identity's (`pi-<serial>` or `pi-<mac>`).
fn hostname(controller: Option<Hostname>, c: &Cmdline, net: &NetFacts, id: &Identity) -> Hostname {
    let from_net = net.hostname.and_then(|h| Hostname::parse(h).ok());
    controller
        .or_else(|| c.hostname.clone())
        .or(from_net)
        .unwrap_or_else(|| id.default_hostname())
}

fn join_opts(a: Option<&str>, b: Option<&str>) -> Option<String> {
    let v: Vec<&str> = [a, b]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    (!v.is_empty()).then(|| v.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::cmdline::parse;
    use crate::decide::serial::BoardSerial;
    use pureboot_contract::ids::{FullSerial, Mac, Serial};

    fn serial() -> Identity {
        Identity::Board(BoardSerial {
            short: Serial::parse("d83add36").unwrap(),
            full: Some(FullSerial::parse("10000000d83add36").unwrap()),
            source: "test",
        })
    }
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
    const NO_DHCP: NetFacts = NetFacts {
        client: CLIENT,
        server: None,
        hostname: None,
        root_path: None,
    };
    const DHCP: NetFacts = NetFacts {
        client: CLIENT,
        server: Some(Ipv4Addr::new(10, 0, 2, 2)),
        hostname: None,
        root_path: None,
    };

    fn answer(json: &str) -> PiBootResponse {
        serde_json::from_str(json).unwrap()
    }

    /// Decide from a controller answer, with no DHCP server known.
    fn ask(c: &Cmdline, r: &PiBootResponse) -> Decision {
        decide(c, &serial(), &NO_DHCP, Instructions::Controller(r))
    }

    fn nfs(d: Decision) -> NfsPlan {
        match d {
            Decision::Nfs(p) => *p,
            other => panic!("expected an NFS plan, got {other:?}"),
        }
    }

    #[test]
    fn upstream_shaped_answer_is_enough() {
        let r = answer(
            r#"{"state":"installing","action":"nfs_boot","message":"Booting from NFS",
            "nfs_server":"10.0.2.2","nfs_path":"/srv/nfsroot",
            "callback_url":"http://10.0.2.2:8080/api/v1/nodes/5f0c/installed",
            "image_url":null,"target_device":null}"#,
        );
        let c = parse("pureboot.url=http://10.0.2.2:8080");
        let p = nfs(ask(&c, &r));
        assert_eq!(p.nfs.server, "10.0.2.2");
        assert_eq!(p.nfs.path, "/srv/nfsroot");
        assert_eq!(p.nfs.layout, None, "tree or plain root: the export decides");
        assert_eq!(p.overlay, OverlayMode::Tmpfs);
        assert_eq!(p.hostname.as_str(), "pi-d83add36");
        assert_eq!(p.base_image, None);
        assert_eq!(p.machine_id, serial().machine_id());
        // No failure_url in upstream's answer: a failure goes to the callback.
        assert_eq!(
            p.failure,
            Some(FailureReport::Callback(
                "http://10.0.2.2:8080/api/v1/nodes/5f0c/installed".into()
            ))
        );
        assert_eq!(p.source, "controller");
    }

    #[test]
    fn our_extensions_win_over_the_command_line() {
        let r = answer(
            r#"{"state":"active","action":"nfs_boot","nfs_server":"nfs.lan","nfs_path":"/x",
            "base_image":"bookworm","overlay_mode":"image","hostname":"node7",
            "machine_id":"0123456789abcdef0123456789abcdef","nfs_options":"port=2049"}"#,
        );
        let c = parse("pureboot.overlay=none pureboot.base_image=old pureboot.hostname=h pureboot.nfs_opts=mountport=2050");
        let p = nfs(ask(&c, &r));
        assert_eq!(
            (p.overlay, p.base_image.as_ref().map(|b| b.as_str())),
            (OverlayMode::Image, Some("bookworm"))
        );
        assert_eq!(p.hostname.as_str(), "node7");
        assert_eq!(p.machine_id.as_str(), "0123456789abcdef0123456789abcdef");
        assert_eq!(p.nfs.options.as_deref(), Some("port=2049,mountport=2050"));
        // Missing in the answer: the command line's values.
        let r = answer(r#"{"state":"active","action":"nfs_boot","nfs_path":"/x"}"#);
        let p = nfs(decide(&c, &serial(), &DHCP, Instructions::Controller(&r)));
        assert_eq!(
            (
                p.overlay,
                p.base_image.as_ref().map(|b| b.as_str()),
                p.hostname.as_str()
            ),
            (OverlayMode::None, Some("old"), "h")
        );
        assert_eq!(
            p.nfs.server, "10.0.2.2",
            "DHCP server when nobody names one"
        );
        let bad = answer(
            r#"{"state":"a","action":"nfs_boot","nfs_server":"s","nfs_path":"/x","overlay_mode":"zfs"}"#,
        );
        assert!(matches!(ask(&c, &bad), Decision::Fail(e) if e.contains("zfs")));
        for (field, value) in [
            ("hostname", "bad_host"),
            ("base_image", "../etc"),
            ("machine_id", "short"),
        ] {
            let bad = answer(&format!(
                r#"{{"state":"a","action":"nfs_boot","nfs_server":"s","nfs_path":"/x","{field}":"{value}"}}"#
            ));
            assert!(
                matches!(ask(&c, &bad), Decision::Fail(ref e) if e.contains(field)),
                "{field}: {:?}",
                ask(&c, &bad)
            );
        }
    }

    #[test]
    fn hostname_precedence() {
        let r = |h: &str| {
            answer(&format!(
                r#"{{"state":"a","action":"nfs_boot","nfs_server":"s","nfs_path":"/x"{h}}}"#
            ))
        };
        let net = |h: Option<&'static str>| NetFacts {
            hostname: h,
            ..NO_DHCP
        };
        let name = |c: &str, r: &PiBootResponse, n: NetFacts| {
            nfs(decide(
                &parse(c),
                &serial(),
                &n,
                Instructions::Controller(r),
            ))
            .hostname
            .to_string()
        };
        let cases = [
            (
                r#","hostname":"ctl""#,
                "pureboot.hostname=cmd",
                Some("dhcp"),
                "ctl",
            ),
            ("", "pureboot.hostname=cmd", Some("dhcp"), "cmd"),
            ("", "", Some("dhcp-name"), "dhcp-name"),
            ("", "", Some("bad name;"), "pi-d83add36"),
            ("", "", Some("under_score"), "pi-d83add36"),
            ("", "", None, "pi-d83add36"),
        ];
        for (i, (extra, line, from_net, want)) in cases.into_iter().enumerate() {
            assert_eq!(name(line, &r(extra), net(from_net)), want, "test[{i}]");
        }
    }

    #[test]
    fn other_actions() {
        let c = parse("root=/dev/mmcblk0p2");
        let local = answer(r#"{"state":"active","action":"local_boot"}"#);
        assert_eq!(
            ask(&c, &local),
            Decision::Local {
                device: "/dev/mmcblk0p2".into()
            }
        );
        let c2 = parse("");
        let d = ask(&c2, &local);
        assert!(
            matches!(d, Decision::Fail(ref e) if e.contains("local_boot")),
            "{d:?}"
        );
        for (json, needle) in [
            (
                r#"{"state":"installing","action":"deploy_image","message":"flash it"}"#,
                "deploy_image (state installing): flash it",
            ),
            (r#"{"state":"retired"}"#, "action none (state retired)"),
            (
                r#"{"state":"x","action":"reflash_bios"}"#,
                "action reflash_bios",
            ),
            (
                r#"{"state":"x","action":"nfs_boot"}"#,
                "names no nfs_server",
            ),
        ] {
            let d = ask(&c, &answer(json));
            assert!(
                matches!(d, Decision::Fail(ref e) if e.contains(needle)),
                "{json}: {d:?}"
            );
        }
    }

    #[test]
    fn unreachable_controller_falls_back_to_the_command_line() {
        let c = parse("root=/dev/nfs nfsroot=/srv/roots/%s,vers=3 pureboot.nfs_opts=port=2049");
        let p = nfs(decide(
            &c,
            &serial(),
            &DHCP,
            Instructions::None("controller unreachable"),
        ));
        assert_eq!(p.nfs.server, "10.0.2.2");
        assert_eq!(p.nfs.path, "/srv/roots/10.0.2.15");
        assert_eq!(p.nfs.options.as_deref(), Some("vers=3,port=2049"));
        assert_eq!(p.nfs.layout, Some(RootLayout::Plain));
        assert_eq!(p.source, "command line");

        let c = parse("pureboot.nfs_server=nas pureboot.nfs_path=/srv root=nfs4:other:/y pureboot.callback=http://c/n/1/installed");
        let p = nfs(decide(
            &c,
            &serial(),
            &NO_DHCP,
            Instructions::None("no pureboot.url"),
        ));
        assert_eq!((p.nfs.server.as_str(), p.nfs.layout), ("nas", None));
        assert_eq!(
            p.failure,
            Some(FailureReport::Callback("http://c/n/1/installed".into()))
        );

        let c = parse("root=nfs4:other:/y");
        assert!(
            nfs(decide(&c, &serial(), &NO_DHCP, Instructions::None("x")))
                .nfs
                .v4_only
        );

        let d = decide(
            &parse("nfsroot=/y"),
            &serial(),
            &NO_DHCP,
            Instructions::None("x"),
        );
        assert!(
            matches!(d, Decision::Fail(ref e) if e.contains("names no server")),
            "{d:?}"
        );
        let d = decide(
            &parse("quiet"),
            &serial(),
            &NO_DHCP,
            Instructions::None("controller unreachable"),
        );
        assert_eq!(
            d,
            Decision::Fail("controller unreachable, and the command line names no NFS root".into())
        );
    }

    #[test]
    fn kernel_nfs_root_from_dhcp_as_the_kernel_does() {
        let dhcp = |root_path: Option<&'static str>| NetFacts { root_path, ..DHCP };
        let boot = |line: &str, net: NetFacts| {
            nfs(decide(
                &parse(line),
                &serial(),
                &net,
                Instructions::None("x"),
            ))
        };
        // Option 17 with a server and options: all of it taken.
        let p = boot("root=/dev/nfs", dhcp(Some("10.0.2.9:/srv/pi/%s,vers=3")));
        assert_eq!(
            (p.nfs.server.as_str(), p.nfs.path.as_str()),
            ("10.0.2.9", "/srv/pi/10.0.2.15")
        );
        assert_eq!(p.nfs.options.as_deref(), Some("vers=3"));
        // A bare path: the server is DHCP's next-server.
        let p = boot("root=dhcp", dhcp(Some("/srv/pi")));
        assert_eq!(
            (p.nfs.server.as_str(), p.nfs.path.as_str()),
            ("10.0.2.2", "/srv/pi")
        );
        // Nothing from DHCP: the kernel's default path.
        let p = boot("root=/dev/nfs", dhcp(None));
        assert_eq!(p.nfs.path, "/tftpboot/10.0.2.15");
        // The command line's path wins over option 17.
        let p = boot("root=/dev/nfs nfsroot=/cmd", dhcp(Some("/dhcp")));
        assert_eq!(p.nfs.path, "/cmd");
        let d = decide(
            &parse("root=/dev/nfs"),
            &serial(),
            &dhcp(Some("relative")),
            Instructions::None("x"),
        );
        assert!(
            matches!(d, Decision::Fail(ref e) if e.contains("option 17")),
            "{d:?}"
        );
    }

    #[test]
    fn a_board_without_a_serial_boots_a_kernel_root_by_its_mac() {
        let id = Identity::Mac {
            mac: Mac::parse("52:54:00:12:34:56").unwrap(),
            no_serial: crate::decide::serial::NoSerial(vec![]),
        };
        let p = nfs(decide(
            &parse("root=nfs:10.0.2.2:/nfsroot/x"),
            &id,
            &DHCP,
            Instructions::None("no serial to ask the controller with"),
        ));
        assert_eq!(p.hostname.as_str(), "pi-525400123456");
        assert_eq!(p.machine_id, id.machine_id());
        assert_eq!(p.nfs.layout, Some(RootLayout::Plain));
    }
}
