//! The kernel command line, parsed once into [`Cmdline`]. Pure: no I/O.
//!
//! Forms (README, "pi-init's kernel command line"): upstream `pureboot.*` names, kernel `ip=`, `root=/dev/nfs` +
//! `nfsroot=`, `init=`, `panic=`, dracut `root=nfs:`/`root=nfs4:`, and our `pureboot.*`
//! extensions, named once in the contract (`pureboot_contract::cmdline_keys`, which
//! pureboot-image writes from too). A malformed value never stops the boot: it is recorded
//! in [`Cmdline::warnings`] (logged later) and the default is kept.

use crate::decide::ip_param::{self, IpParam};
use std::str::FromStr;
use std::time::Duration;

use pureboot_contract::cmdline_keys as keys;
use pureboot_contract::ids::{Hostname, ImageName};
pub use pureboot_contract::layout::RootLayout;
pub use pureboot_contract::OverlayMode;

pureboot_contract::named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum FailurePolicy: "failure policy" {
        #[default]
        Retry = "retry",
        Shell = "shell",
        Reboot = "reboot",
        Halt = "halt",
    }
}

/// An NFS root named on the command line: the fallback when no controller answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsRoot {
    /// None: the kernel form without a server (taken from `ip=` or DHCP, next-server).
    pub server: Option<String>,
    /// None: `root=/dev/nfs` without `nfsroot=`, or dracut `root=dhcp`: the path comes from
    /// DHCP's root path (option 17), else the kernel's default `/tftpboot/%s`.
    pub path: Option<String>,
    pub options: Option<String>,
    /// dracut `root=nfs4:`: NFSv4 only.
    pub v4_only: bool,
    /// None: found by looking at the export once it is mounted.
    pub layout: Option<RootLayout>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cmdline {
    // upstream names
    /// The controllers, in the order given (`pureboot.url=` takes a comma-separated list:
    /// several controllers on one registry); none without the key.
    pub urls: Vec<String>,
    pub serial: Option<String>,
    pub nfs_server: Option<String>,
    pub nfs_path: Option<String>,
    pub callback: Option<String>,
    // kernel and dracut forms
    pub ip: Option<IpParam>,
    /// `root=/dev/nfs` + `nfsroot=`, or dracut `root=nfs:` / `root=nfs4:`.
    pub kernel_nfs_root: Option<NfsRoot>,
    /// `root=` naming a block device (for `local_boot`).
    pub root_device: Option<String>,
    pub rootfstype: Option<String>,
    /// `rw` on the command line (the kernel mounts root read-only otherwise).
    pub root_rw: bool,
    pub init: Option<String>,
    /// Words after `--`: arguments for init.
    pub init_args: Vec<String>,
    pub panic: Option<i64>,
    // ours
    pub overlay: OverlayMode,
    pub base_image: Option<ImageName>,
    pub hostname: Option<Hostname>,
    pub on_failure: FailurePolicy,
    pub retries: u32,
    pub log_level: log::LevelFilter,
    pub nfs_opts: Option<String>,
    /// The base image's mount: `shared`, or its options (see `base_mount`).
    pub base_opts: Option<String>,
    pub iface: Option<String>,
    pub timeout: Duration,
    pub wait: Duration,
    pub watchdog: Option<Duration>,
    /// Malformed values that were ignored, one message each.
    pub warnings: Vec<String>,
}

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            urls: Vec::new(),
            serial: None,
            nfs_server: None,
            nfs_path: None,
            callback: None,
            ip: None,
            kernel_nfs_root: None,
            root_device: None,
            rootfstype: None,
            root_rw: false,
            init: None,
            init_args: Vec::new(),
            panic: None,
            overlay: OverlayMode::Tmpfs,
            base_image: None,
            hostname: None,
            on_failure: FailurePolicy::Retry,
            retries: 3,
            log_level: log::LevelFilter::Info,
            nfs_opts: None,
            base_opts: None,
            iface: None,
            timeout: Duration::from_secs(5),
            wait: Duration::from_secs(10),
            watchdog: None,
            warnings: Vec::new(),
        }
    }
}

impl Cmdline {
    /// The NFS root to boot when no controller answers: the upstream `pureboot.nfs_server=` +
    /// `pureboot.nfs_path=` pair first (a pureboot tree or a plain root, whichever the export
    /// holds), else the kernel or dracut form (a plain root).
    pub fn fallback_nfs_root(&self) -> Option<NfsRoot> {
        if let Some(path) = &self.nfs_path {
            return Some(NfsRoot {
                server: self.nfs_server.clone(),
                path: Some(path.clone()),
                options: None,
                v4_only: false,
                layout: None,
            });
        }
        self.kernel_nfs_root.clone()
    }
}

/// Split like the kernel: whitespace separates, double quotes group (and are dropped).
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

pub fn parse(text: &str) -> Cmdline {
    let mut c = Cmdline::default();
    let mut root: Option<String> = None;
    let mut nfsroot: Option<String> = None;
    let mut words = tokenize(text).into_iter();
    for word in words.by_ref() {
        if word == "--" {
            break;
        }
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, v),
            None => {
                match word.as_str() {
                    "rw" => c.root_rw = true,
                    "ro" => c.root_rw = false,
                    _ => {}
                }
                continue;
            }
        };
        if let Err(e) = apply(&mut c, key, value, &mut root, &mut nfsroot) {
            c.warnings.push(format!("ignoring {key}={value}: {e}"));
        }
    }
    c.init_args = words.collect();
    resolve_root(&mut c, root, nfsroot);
    c
}

fn apply(
    c: &mut Cmdline,
    key: &str,
    v: &str,
    root: &mut Option<String>,
    nfsroot: &mut Option<String>,
) -> Result<(), String> {
    let text = |v: &str| (!v.is_empty()).then(|| v.to_string());
    match key {
        keys::URL => return controller_urls(v, &mut c.urls),
        keys::SERIAL => c.serial = text(v),
        keys::NFS_SERVER => c.nfs_server = text(v),
        keys::NFS_PATH => c.nfs_path = Some(absolute(v)?),
        keys::CALLBACK => c.callback = Some(http_url(v)?.to_string()),
        "ip" => c.ip = Some(ip_param::parse_ip_param(v)?),
        "root" => *root = Some(v.to_string()),
        "nfsroot" => *nfsroot = Some(v.to_string()),
        "rootfstype" => c.rootfstype = text(v),
        "init" => c.init = Some(absolute(v)?),
        "panic" => c.panic = Some(number(v)?),
        keys::OVERLAY => c.overlay = v.parse()?,
        keys::BASE_IMAGE => c.base_image = Some(ImageName::parse(v).map_err(|e| e.to_string())?),
        keys::HOSTNAME => c.hostname = Some(Hostname::parse(v).map_err(|e| e.to_string())?),
        keys::ON_FAILURE => c.on_failure = v.parse()?,
        keys::RETRIES => c.retries = number::<u32>(v)?.max(1),
        keys::LOG => {
            c.log_level = v
                .parse()
                .map_err(|_| "expected error|warn|info|debug|trace")?
        }
        keys::NFS_OPTS => c.nfs_opts = text(v),
        keys::BASE_OPTS => c.base_opts = text(v),
        keys::IFACE => c.iface = text(v),
        keys::TIMEOUT => c.timeout = seconds(v)?,
        keys::WAIT => c.wait = seconds(v)?,
        keys::WATCHDOG => c.watchdog = Some(seconds(v)?),
        _ => {}
    }
    Ok(())
}

/// `root=` and `nfsroot=` only make sense together, so they are combined after the scan.
fn resolve_root(c: &mut Cmdline, root: Option<String>, nfsroot: Option<String>) {
    let result = match root.as_deref() {
        Some(r) if r.starts_with("nfs:") || r.starts_with("nfs4:") => parse_dracut(r).map(Some),
        Some("/dev/nfs") | Some("nfs") | Some("dhcp") | None => match &nfsroot {
            Some(n) => parse_nfsroot(n).map(Some),
            // As the kernel: the root path comes from DHCP (option 17) or its default.
            None if root.is_some() => Ok(Some(NfsRoot {
                server: None,
                path: None,
                options: None,
                v4_only: false,
                layout: Some(RootLayout::Plain),
            })),
            None => Ok(None),
        },
        Some(dev) => {
            c.root_device = Some(dev.to_string());
            Ok(None)
        }
    };
    match result {
        Ok(r) => c.kernel_nfs_root = r,
        Err(e) => c.warnings.push(format!("ignoring the NFS root: {e}")),
    }
}

/// Kernel form: `[<server>:]<path>[,<opts>]`.
pub fn parse_nfsroot(v: &str) -> Result<NfsRoot, String> {
    let (spec, options) = match v.split_once(',') {
        Some((s, o)) => (s, Some(o.to_string())),
        None => (v, None),
    };
    let (server, path) = match spec.split_once(':') {
        Some((s, p)) if !s.is_empty() => (Some(s.to_string()), p),
        Some(_) => return Err(format!("nfsroot={v}: empty server before ':'")),
        None => (None, spec),
    };
    Ok(NfsRoot {
        server,
        path: Some(absolute(path).map_err(|e| format!("nfsroot={v}: {e}"))?),
        options: options.filter(|o| !o.is_empty()),
        v4_only: false,
        layout: Some(RootLayout::Plain),
    })
}

/// dracut form: `nfs:[<server>:]<path>[:<opts>]` or `nfs4:...`.
pub fn parse_dracut(v: &str) -> Result<NfsRoot, String> {
    let (v4_only, rest) = match v.strip_prefix("nfs4:") {
        Some(r) => (true, r),
        None => (false, v.strip_prefix("nfs:").unwrap_or(v)),
    };
    let (server, rest) = if rest.starts_with('/') {
        (None, rest)
    } else {
        match rest.split_once(':') {
            Some((s, r)) if !s.is_empty() => (Some(s.to_string()), r),
            _ => return Err(format!("root={v}: expected nfs:<server>:<path>[:<opts>]")),
        }
    };
    let (path, options) = match rest.split_once(':') {
        Some((p, o)) => (p, Some(o.to_string()).filter(|o| !o.is_empty())),
        None => (rest, None),
    };
    Ok(NfsRoot {
        server,
        path: Some(absolute(path).map_err(|e| format!("root={v}: {e}"))?),
        options,
        v4_only,
        layout: Some(RootLayout::Plain),
    })
}

fn absolute(v: &str) -> Result<String, String> {
    if v.starts_with('/') {
        Ok(v.to_string())
    } else {
        Err(format!("{v:?} is not an absolute path"))
    }
}

fn number<T: FromStr>(v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{v:?} is not a number"))
}

fn seconds(v: &str) -> Result<Duration, String> {
    Ok(Duration::from_secs(number(v)?))
}

/// Controllers a boot may ask at most: the list is tried in turn within one retry budget.
pub const MAX_CONTROLLERS: usize = 8;

/// `pureboot.url=`'s list: each URL checked; the good ones are kept (in order, without
/// repeats, at most [`MAX_CONTROLLERS`]) and the bad ones named in the warning, so one typo
/// does not cost a Pi every other controller.
fn controller_urls(v: &str, urls: &mut Vec<String>) -> Result<(), String> {
    urls.clear();
    let mut bad = Vec::new();
    for one in v.split(',').filter(|u| !u.is_empty()) {
        match http_url(one) {
            Ok(u) => {
                let u = u.trim_end_matches('/').to_string();
                if !urls.contains(&u) && urls.len() < MAX_CONTROLLERS {
                    urls.push(u);
                }
            }
            Err(e) => bad.push(e),
        }
    }
    match bad.is_empty() {
        true => Ok(()),
        false => Err(bad.join("; ")),
    }
}

/// A URL pi-init can reach: `http://<host>[:<port>][/<path>]`. Checked here, so a typo fails
/// at once with a warning instead of costing every attempt a round of retries.
fn http_url(v: &str) -> Result<&str, String> {
    let rest = v
        .strip_prefix("http://")
        .ok_or_else(|| format!("{v:?} is not an http:// URL (pi-init speaks plain HTTP)"))?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.contains(']') || h.ends_with(']') => {
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{v:?}: port {port:?} is not a port number"))?;
            h
        }
        _ => authority,
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    if !host_ok
        || v.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!("{v:?}: no usable host in the URL"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nfs(server: Option<&str>, path: &str, opts: Option<&str>, v4: bool) -> NfsRoot {
        NfsRoot {
            server: server.map(Into::into),
            path: (!path.is_empty()).then(|| path.into()),
            options: opts.map(Into::into),
            v4_only: v4,
            layout: Some(RootLayout::Plain),
        }
    }

    #[test]
    fn tokenize_quotes_and_spaces() {
        let cases: &[(&str, &[&str])] = &[
            ("a b  c\n", &["a", "b", "c"]),
            ("x=\"one two\" y", &["x=one two", "y"]),
            ("\"q=a b\"", &["q=a b"]),
            ("", &[]),
            ("  ", &[]),
            ("e=\"\"", &["e="]),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            assert_eq!(tokenize(input), *want, "test[{i}]: {input:?}");
        }
    }

    #[test]
    fn upstream_names_and_defaults() {
        let c = parse(
            "console=ttyAMA0 pureboot.url=http://10.0.2.2:8080/ pureboot.serial=d83add36 \
             pureboot.nfs_server=10.0.2.2 pureboot.nfs_path=/srv/nfs \
             pureboot.callback=http://10.0.2.2:8080/api/v1/nodes/x/installed quiet",
        );
        assert_eq!(c.urls, ["http://10.0.2.2:8080"]);
        assert_eq!(c.serial.as_deref(), Some("d83add36"));
        assert_eq!(c.nfs_server.as_deref(), Some("10.0.2.2"));
        assert_eq!(c.nfs_path.as_deref(), Some("/srv/nfs"));
        assert!(c.callback.as_deref().unwrap().ends_with("/installed"));
        assert_eq!(c.overlay, OverlayMode::Tmpfs);
        assert_eq!(c.on_failure, FailurePolicy::Retry);
        assert_eq!(c.retries, 3);
        assert_eq!(c.log_level, log::LevelFilter::Info);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let f = c.fallback_nfs_root().unwrap();
        assert_eq!(f.layout, None, "the export's content decides");
        assert_eq!(
            (f.server.as_deref(), f.path.as_deref()),
            (Some("10.0.2.2"), Some("/srv/nfs"))
        );
    }

    #[test]
    fn nfs_root_forms() {
        let cases: Vec<(&str, Option<NfsRoot>)> = vec![
            (
                "root=/dev/nfs nfsroot=10.0.2.2:/srv/root",
                Some(nfs(Some("10.0.2.2"), "/srv/root", None, false)),
            ),
            (
                "root=/dev/nfs nfsroot=/srv/root,vers=3,tcp",
                Some(nfs(None, "/srv/root", Some("vers=3,tcp"), false)),
            ),
            (
                "nfsroot=srv:/r/%s,nolock root=/dev/nfs",
                Some(nfs(Some("srv"), "/r/%s", Some("nolock"), false)),
            ),
            (
                "root=nfs:10.0.2.2:/srv/root",
                Some(nfs(Some("10.0.2.2"), "/srv/root", None, false)),
            ),
            (
                "root=nfs:10.0.2.2:/srv/root:vers=3,port=2049",
                Some(nfs(
                    Some("10.0.2.2"),
                    "/srv/root",
                    Some("vers=3,port=2049"),
                    false,
                )),
            ),
            (
                "root=nfs4:nas.lan:/export",
                Some(nfs(Some("nas.lan"), "/export", None, true)),
            ),
            (
                "root=nfs:/srv/root",
                Some(nfs(None, "/srv/root", None, false)),
            ),
            (
                "nfsroot=10.0.2.2:/x",
                Some(nfs(Some("10.0.2.2"), "/x", None, false)),
            ),
            // As the kernel: server from DHCP's next-server, path from its option 17.
            ("root=/dev/nfs ip=dhcp", Some(nfs(None, "", None, false))),
            ("root=dhcp", Some(nfs(None, "", None, false))),
            ("root=/dev/mmcblk0p2", None),
            ("", None),
        ];
        for (i, (line, want)) in cases.iter().enumerate() {
            let c = parse(line);
            assert_eq!(&c.kernel_nfs_root, want, "test[{i}]: {line:?}");
            assert!(
                c.warnings.is_empty(),
                "test[{i}]: {line:?}: {:?}",
                c.warnings
            );
        }
        let c = parse("root=/dev/mmcblk0p2 rootfstype=ext4 rw");
        assert_eq!(c.root_device.as_deref(), Some("/dev/mmcblk0p2"));
        assert_eq!(c.rootfstype.as_deref(), Some("ext4"));
        assert!(c.root_rw);
        assert_eq!(c.fallback_nfs_root(), None);
    }

    #[test]
    fn malformed_values_warn_and_keep_defaults() {
        let cases: &[(&str, &str)] = &[
            ("root=/dev/nfs nfsroot=srv:relative", "not an absolute path"),
            ("root=/dev/nfs nfsroot=:/x", "empty server"),
            ("root=nfs:", "expected nfs:"),
            ("root=nfs4:srv", "expected nfs:"),
            ("root=nfs:srv:rel", "not an absolute path"),
            ("pureboot.overlay=zfs", "unknown overlay mode"),
            ("pureboot.on_failure=explode", "unknown failure policy"),
            ("pureboot.retries=many", "not a number"),
            ("pureboot.retries=-1", "not a number"),
            ("pureboot.timeout=5s", "not a number"),
            ("pureboot.wait=", "not a number"),
            ("pureboot.log=loud", "expected error|warn"),
            ("pureboot.base_image=../etc", "invalid base image name"),
            ("pureboot.base_image=a/b", "invalid base image name"),
            ("pureboot.hostname=bad_name!", "invalid hostname"),
            ("pureboot.hostname=a_b", "invalid hostname"),
            ("pureboot.url=notaurl", "not an http:// URL"),
            ("pureboot.url=https://c.lan", "not an http:// URL"),
            ("pureboot.url=http://", "no usable host"),
            ("pureboot.url=http://c.lan:80x", "not a port number"),
            ("pureboot.url=http://c.lan:0", "not a port number"),
            ("pureboot.callback=ftp://c/x", "not an http:// URL"),
            ("pureboot.nfs_path=srv", "not an absolute path"),
            ("init=sbin/init", "not an absolute path"),
            ("panic=soon", "not a number"),
        ];
        for (i, (line, needle)) in cases.iter().enumerate() {
            let c = parse(line);
            assert_eq!(c.warnings.len(), 1, "test[{i}]: {line:?}: {:?}", c.warnings);
            assert!(
                c.warnings[0].contains(needle),
                "test[{i}]: {line:?}: {:?}",
                c.warnings
            );
            let d = Cmdline::default();
            assert_eq!(
                (
                    c.overlay,
                    c.on_failure,
                    c.retries,
                    c.timeout,
                    c.log_level,
                    &c.base_image
                ),
                (
                    d.overlay,
                    d.on_failure,
                    d.retries,
                    d.timeout,
                    d.log_level,
                    &d.base_image
                ),
                "test[{i}]: defaults kept"
            );
            assert_eq!(c.kernel_nfs_root, None, "test[{i}]");
        }
    }

    #[test]
    fn our_extensions() {
        let c = parse(
            "pureboot.overlay=image pureboot.base_image=bookworm pureboot.hostname=pi-a \
             pureboot.on_failure=shell pureboot.retries=0 pureboot.log=debug \
             pureboot.nfs_opts=port=2049,mountport=20048 pureboot.iface=eth0 \
             pureboot.base_opts=shared \
             pureboot.timeout=3 pureboot.wait=1 pureboot.watchdog=60 init=/bin/sh panic=10 \
             pureboot.unknown=1 foo=bar -- single extra",
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.overlay, OverlayMode::Image);
        assert_eq!(c.base_image.as_ref().map(|i| i.as_str()), Some("bookworm"));
        assert_eq!(c.hostname.as_ref().map(|h| h.as_str()), Some("pi-a"));
        assert_eq!(c.on_failure, FailurePolicy::Shell);
        assert_eq!(c.retries, 1, "zero attempts would never boot");
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.nfs_opts.as_deref(), Some("port=2049,mountport=20048"));
        assert_eq!(c.base_opts.as_deref(), Some("shared"));
        assert_eq!(c.iface.as_deref(), Some("eth0"));
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.wait, Duration::from_secs(1));
        assert_eq!(c.watchdog, Some(Duration::from_secs(60)));
        assert_eq!(c.init.as_deref(), Some("/bin/sh"));
        assert_eq!(c.panic, Some(10));
        assert_eq!(c.init_args, ["single", "extra"]);
        for mode in ["tmpfs", "image", "nfs", "none"] {
            assert_eq!(mode.parse::<OverlayMode>().unwrap().as_str(), mode);
        }
        for p in ["retry", "shell", "reboot", "halt"] {
            assert_eq!(p.parse::<FailurePolicy>().unwrap().as_str(), p);
        }
    }

    #[test]
    fn urls_pi_init_can_reach() {
        for ok in [
            "http://10.0.2.2:8080",
            "http://controller.lan",
            "http://c.lan:8080/prefix/",
            "http://[fd00::1]:8080",
        ] {
            let c = parse(&format!("pureboot.url={ok}"));
            assert!(c.warnings.is_empty(), "{ok}: {:?}", c.warnings);
            assert_eq!(c.urls, [ok.trim_end_matches('/')]);
        }
        assert!(parse("pureboot.url=notaurl").urls.is_empty(), "ignored");
    }

    #[test]
    fn several_controllers_in_order_and_a_bad_one_costs_only_itself() {
        let c = parse("pureboot.url=http://a:8080,http://b:8080/,http://a:8080");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.urls, ["http://a:8080", "http://b:8080"]);
        let c = parse("pureboot.url=http://a:8080,https://b,http://c");
        assert_eq!(c.urls, ["http://a:8080", "http://c"]);
        assert!(
            c.warnings.iter().any(|w| w.contains("https://b")),
            "{:?}",
            c.warnings
        );
        let many: Vec<String> = (0..20).map(|i| format!("http://c{i}")).collect();
        let c = parse(&format!("pureboot.url={}", many.join(",")));
        assert_eq!(c.urls.len(), MAX_CONTROLLERS);
    }

    #[test]
    fn ip_parameter_goes_through_the_net_parser() {
        // Our side: `ip=` reaches ip_param::parse_ip_param and its answer (or error) is kept.
        let c = parse("ip=dhcp");
        match ip_param::parse_ip_param("dhcp") {
            Ok(p) => assert_eq!(c.ip, Some(p)),
            Err(e) => assert!(c.warnings[0].contains(&e), "{:?}", c.warnings),
        }
        let c = parse("ip=10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0:pi:eth0:off");
        if let Some(IpParam::Static(s)) = &c.ip {
            assert_eq!(s.client, std::net::Ipv4Addr::new(10, 0, 2, 15));
            assert_eq!(s.device.as_deref(), Some("eth0"));
        } else {
            assert!(c.ip.is_none() && c.warnings.len() == 1, "{c:?}");
        }
        assert_eq!(parse("").ip, None);
    }
}
