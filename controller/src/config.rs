//! Typed controller settings: a TOML file, then `PUREBOOT_*` environment overrides.
//!
//! The file must exist (an empty one means the local defaults, loopback only), so a typo in
//! `--config` is not silently a fresh registry in the working directory. Every key is declared once in
//! [`KEYS`], which drives both the environment names and the type check, so a malformed
//! file or variable is an error naming the key instead of a generic serde message.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "config file {path} not found: create it (controller/controller.example.toml shows \
         every key; an empty file means the defaults) or pass --config"
    )]
    Missing { path: PathBuf },
    #[error("config {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config {origin}: unknown key `{key}`")]
    UnknownKey { origin: String, key: String },
    #[error("config {origin}: key `{key}` was removed: {why}")]
    Removed {
        origin: String,
        key: String,
        why: &'static str,
    },
    #[error("config {origin}: key `{key}` must be {expected}, found {found}")]
    WrongType {
        origin: String,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("config {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP API binds (never a wildcard by default).
    pub listen: String,
    /// Base URL nodes use to reach the controller (callback URLs); default `http://{listen}`.
    pub public_url: Option<String>,
    /// NFS server address announced to nodes.
    pub nfs_server: String,
    pub database: PathBuf,
    pub workflows_dir: PathBuf,
    /// Bearer token of the management API; without one that API refuses every request.
    pub admin_token: Option<String>,
    /// Register unknown serials as `discovered` (else they get `local_boot`).
    pub auto_register: bool,
    /// Accept a boot's reports only from the address that asked for that boot.
    pub reports_from_boot_address: bool,
    /// With `reports_from_boot_address`: a node's boots are accepted only from the address
    /// of its last accepted boot (sites with DHCP reservations); another address gets the
    /// answer of a conflicting request until an operator forgets the address (`node set
    /// --mac`).
    pub pin_boot_address: bool,
    /// Own address for the management API (`/api/v1/nodes`…, `/api/v1/workflows`…,
    /// `/api/v1/images`, `/metrics`); unset: served on `listen` beside the Pi routes.
    pub admin_listen: Option<String>,
    /// `discovered` nodes at most (registered by boots or register-pi); more unknown
    /// serials get 429 until an operator assigns or removes some. 0 = no cap.
    pub max_discovered_nodes: u64,
    /// Unknown serials recorded per minute (new discovered nodes, or with auto_register off
    /// the boot_request events of unregistered serials, per serial). 0 = no limit.
    pub unknown_serials_per_minute: u64,
    /// Boots and reports of registered nodes one source address may make per minute (each
    /// records at most 5 events); more get 429. Per address, never per serial: another
    /// machine asking for a node's serial cannot spend that node's budget. 0 = no limit.
    pub node_requests_per_minute: u64,
    /// Boots and reports of registered nodes per minute from all addresses together; more
    /// get 429. 0 = no limit.
    pub boot_requests_per_minute: u64,
    /// Events kept at most (the oldest go first; every write transaction keeps the log
    /// under it). 0 = all.
    pub max_events: u64,
    /// Events older than this many days are pruned. 0 = kept whatever their age.
    pub event_retention_days: u64,
    /// Per-request timeout of the HTTP API, seconds.
    pub request_timeout_secs: u64,
    /// Largest accepted request body, bytes.
    pub body_limit_bytes: u64,
    /// Seconds a client has to send a request's headers (slow clients are disconnected).
    pub header_timeout_secs: u64,
    /// Open HTTP connections at most; more clients wait in the listen backlog.
    pub max_connections: u64,
    /// Open connections from one client address at most (both listeners); more are closed
    /// at once, so one client cannot take the slots every Pi needs. 0 = no cap.
    pub max_connections_per_address: u64,
    /// Host names (besides `localhost`, the `public_url`'s host and any IP address) a
    /// request's `Host` may name; others get 421, so a DNS-rebound name cannot reach the
    /// listeners from a browser.
    pub allowed_hosts: Vec<String>,
    /// Longest delay, ms, before a wrong admin token from an address is answered (after 3
    /// free ones the delay doubles from 250 ms up to this; at most half the request
    /// timeout). 0 = wrong tokens are not slowed.
    pub admin_token_max_delay_ms: u64,
    /// The values of workflows' `secret_variables` (a TOML file only root may read); unset:
    /// `secrets.toml` beside the database.
    pub secrets_file: Option<PathBuf>,
    /// Seconds a node has from its boot answer to "boot complete" before it counts as stuck.
    pub boot_complete_within_secs: u64,
    /// A command `image rollout` runs with the nodes to reboot (rebooting is not the
    /// controller's job): `<hook> <event> <channel> <version> <serial>...`, event `canaries`
    /// (the rollout started), `promoted` (the channel moved: the other nodes) or `aborted`
    /// (the canaries go back). Unset: the operator reboots them.
    pub rollout_hook: Option<PathBuf>,
    pub nfs: NfsConfig,
    pub tftp: TftpConfig,
}

/// `[tftp]`: the controller writes the Pis' TFTP folders itself (`<root>/<serial>/` after
/// each node's image, and the discovery files at the root) by running pureboot-image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TftpConfig {
    /// The TFTP server's root; unset: the controller writes no TFTP folders.
    pub root: Option<PathBuf>,
    /// The pureboot-image program; unset: `pureboot-image` found on PATH.
    pub image_tool: Option<PathBuf>,
    /// pi-init for the initramfs (`--pi-init`); unset: the one the tool finds installed.
    pub pi_init: Option<PathBuf>,
    /// More kernel parameters for every folder's cmdline.txt (`--cmdline-extra`).
    pub cmdline_extra: Option<String>,
    /// Every controller of the registry, as the Pis reach them, for the folders'
    /// `pureboot.url=` (pi-init asks them in turn); empty: this controller's `public_url`.
    pub controller_urls: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NfsConfig {
    pub enabled: bool,
    /// Export root holding `base/` and `nodes/`, where the controller writes them.
    pub root_path: PathBuf,
    /// The same tree as the NFS server exports it: the `nfs_path` nodes mount. Defaults to
    /// `root_path`; differs when the controller sees the tree elsewhere (a container's
    /// volume) or the server exports it under another name (an NFSv4 pseudo-root).
    pub export_path: Option<PathBuf>,
    pub default_base_image: String,
    /// Size of a node's `persist.img` for overlay mode `image`.
    pub persist_size_mb: u64,
    /// Extra mount options announced to nodes (comma separated).
    pub nfs_options: Option<String>,
    /// `image import` refuses an archive whose files declare more than this many MiB (sparse
    /// files count at their full size); `--max-size` overrides it per import.
    pub import_max_size_mb: u64,
    /// When a node's image version changes, start its `image` overlay afresh (its persist
    /// image set aside, as `overlay reset` does) instead of keeping it over the new version.
    pub reset_layer_on_version_change: bool,
    /// `[[nfs.servers]]`: a pool of NFS servers (see `crate::pool`); empty: the one
    /// `nfs_server` with this tree, as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<NfsServerConfig>,
}

/// One `[[nfs.servers]]` entry: a server of the pool, named by its address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NfsServerConfig {
    /// The address Pis mount from (what the boot answer's `nfs_server` says); the server's
    /// name in commands, pins and the registry.
    pub address: String,
    /// The tree as this server exports it: the `nfs_path` its nodes mount.
    pub export_path: PathBuf,
    /// Where the controller reaches this server's export tree (mounted or local); unset:
    /// the controller cannot check, copy or write there (see the README).
    #[serde(default)]
    pub local_path: Option<PathBuf>,
    /// Share of new nodes, relative to the other active servers (0: pins only).
    #[serde(default = "default_weight")]
    pub weight: u64,
    #[serde(default)]
    pub state: ServerState,
}

fn default_weight() -> u64 {
    1
}

pub use crate::domain::pool::ServerState;

impl NfsConfig {
    /// The path nodes are told to mount.
    pub fn announced_path(&self) -> &std::path::Path {
        self.export_path.as_deref().unwrap_or(&self.root_path)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            nfs_server: "127.0.0.1".into(),
            database: "pureboot.db".into(),
            workflows_dir: "workflows".into(),
            admin_token: None,
            auto_register: true,
            reports_from_boot_address: true,
            pin_boot_address: false,
            admin_listen: None,
            max_discovered_nodes: 1000,
            unknown_serials_per_minute: 300,
            node_requests_per_minute: 120,
            boot_requests_per_minute: 12_000,
            max_events: 1_000_000,
            event_retention_days: 0,
            request_timeout_secs: 10,
            body_limit_bytes: 64 * 1024,
            header_timeout_secs: 10,
            max_connections: 1024,
            admin_token_max_delay_ms: 8000,
            max_connections_per_address: 128,
            allowed_hosts: Vec::new(),
            secrets_file: None,
            rollout_hook: None,
            boot_complete_within_secs: 900,
            nfs: NfsConfig::default(),
            tftp: TftpConfig::default(),
        }
    }
}

impl Default for NfsConfig {
    fn default() -> Self {
        NfsConfig {
            enabled: true,
            root_path: "/srv/nfsroot".into(),
            export_path: None,
            default_base_image: "ubuntu-arm64".into(),
            persist_size_mb: 256,
            nfs_options: None,
            import_max_size_mb: crate::nfs_tree::import::DEFAULT_MAX_BYTES >> 20,
            reset_layer_on_version_change: false,
            servers: Vec::new(),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    /// A list of strings; in the environment, comma-separated.
    StrList,
    /// An array of tables (`[[nfs.servers]]`), checked entry by entry; not settable from
    /// the environment.
    TableList,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "a boolean",
            Kind::Int => "a non-negative integer",
            Kind::StrList => "a list of strings",
            Kind::TableList => "an array of tables ([[...]] in the file only)",
        }
    }

    fn matches(self, v: &toml::Value) -> bool {
        match (self, v) {
            (Kind::Str, toml::Value::String(_)) | (Kind::Bool, toml::Value::Boolean(_)) => true,
            (Kind::Int, toml::Value::Integer(i)) => *i >= 0,
            (Kind::StrList, toml::Value::Array(items)) => items.iter().all(toml::Value::is_str),
            (Kind::TableList, toml::Value::Array(items)) => items.iter().all(toml::Value::is_table),
            _ => false,
        }
    }

    fn parse_env(self, raw: &str) -> Option<toml::Value> {
        match self {
            Kind::Str => Some(toml::Value::String(raw.to_string())),
            Kind::Bool => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(toml::Value::Boolean(true)),
                "0" | "false" | "no" | "off" => Some(toml::Value::Boolean(false)),
                _ => None,
            },
            Kind::Int => raw
                .parse::<i64>()
                .ok()
                .filter(|i| *i >= 0)
                .map(toml::Value::Integer),
            Kind::StrList => Some(toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_string()))
                    .collect(),
            )),
            Kind::TableList => None,
        }
    }
}

/// Every key: (table, key, kind). Table "" is the top level.
const KEYS: &[(&str, &str, Kind)] = &[
    ("", "listen", Kind::Str),
    ("", "public_url", Kind::Str),
    ("", "nfs_server", Kind::Str),
    ("", "database", Kind::Str),
    ("", "workflows_dir", Kind::Str),
    ("", "admin_token", Kind::Str),
    ("", "auto_register", Kind::Bool),
    ("", "reports_from_boot_address", Kind::Bool),
    ("", "pin_boot_address", Kind::Bool),
    ("", "admin_listen", Kind::Str),
    ("", "max_discovered_nodes", Kind::Int),
    ("", "unknown_serials_per_minute", Kind::Int),
    ("", "node_requests_per_minute", Kind::Int),
    ("", "boot_requests_per_minute", Kind::Int),
    ("", "max_events", Kind::Int),
    ("", "event_retention_days", Kind::Int),
    ("", "request_timeout_secs", Kind::Int),
    ("", "body_limit_bytes", Kind::Int),
    ("", "header_timeout_secs", Kind::Int),
    ("", "max_connections", Kind::Int),
    ("", "admin_token_max_delay_ms", Kind::Int),
    ("", "max_connections_per_address", Kind::Int),
    ("", "allowed_hosts", Kind::StrList),
    ("", "secrets_file", Kind::Str),
    ("", "boot_complete_within_secs", Kind::Int),
    ("", "rollout_hook", Kind::Str),
    ("nfs", "enabled", Kind::Bool),
    ("nfs", "root_path", Kind::Str),
    ("nfs", "export_path", Kind::Str),
    ("nfs", "default_base_image", Kind::Str),
    ("nfs", "persist_size_mb", Kind::Int),
    ("nfs", "nfs_options", Kind::Str),
    ("nfs", "import_max_size_mb", Kind::Int),
    ("nfs", "reset_layer_on_version_change", Kind::Bool),
    ("nfs", "servers", Kind::TableList),
    ("tftp", "root", Kind::Str),
    ("tftp", "image_tool", Kind::Str),
    ("tftp", "pi_init", Kind::Str),
    ("tftp", "cmdline_extra", Kind::Str),
    ("tftp", "controller_urls", Kind::StrList),
];

const TABLES: &[&str] = &["nfs", "tftp"];

fn dotted(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

/// `PUREBOOT_NFS_ROOT_PATH` for (`nfs`, `root_path`).
fn env_name(table: &str, key: &str) -> String {
    format!(
        "PUREBOOT_{}",
        dotted(table, key).replace('.', "_").to_ascii_uppercase()
    )
}

impl Config {
    /// Reads `path` (missing = defaults) and applies the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, |name| std::env::var(name).ok())
    }

    /// As [`Config::load`], with the environment passed in (tests).
    pub fn load_with_env(
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing { path: path.into() })
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.into(),
                    message: with_position(&text, &e),
                })?;
        check_keys(&table, &path.display().to_string())?;
        apply_env(&mut table, env)?;
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.into(),
                    message: e.message().to_string(),
                })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.into(),
                key,
                message,
            })?;
        Ok(config)
    }

    /// Base URL for callback URLs announced to nodes, without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        url.trim_end_matches('/').to_string()
    }

    /// Where the secrets are read from (`secrets_file`, else beside an SQLite database; with
    /// PostgreSQL, `secrets.toml` in the working directory, as `pureboot.db` would be).
    pub fn secrets_path(&self) -> PathBuf {
        self.secrets_file.clone().unwrap_or_else(|| {
            if let crate::store::Location::Postgres(_) = crate::store::Location::of(&self.database)
            {
                return PathBuf::from("secrets.toml");
            }
            self.database
                .parent()
                .unwrap_or(Path::new(""))
                .join("secrets.toml")
        })
    }

    /// Values that would fail every boot later, refused now: `(key, why)`.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let listen = self.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            (
                "listen",
                format!("{:?} is not an ip:port address", self.listen),
            )
        })?;
        if let Some(a) = &self.admin_listen {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return Err(("admin_listen", format!("{a:?} is not an ip:port address")));
            }
        }
        match &self.public_url {
            Some(url) => check_url(url).map_err(|m| ("public_url", m))?,
            None if listen.ip().is_unspecified() => {
                return Err((
                    "public_url",
                    format!(
                        "listen = {:?} is a wildcard address, which nodes cannot be told: set \
                         public_url to the URL nodes reach the controller at",
                        self.listen
                    ),
                ))
            }
            None => {}
        }
        if let Some(token) = &self.admin_token {
            check_admin_token(token).map_err(|m| ("admin_token", m))?;
        }
        if let Some(p) = self.nfs.export_path.as_ref().filter(|p| !p.is_absolute()) {
            return Err((
                "nfs.export_path",
                format!("{} must be an absolute path", p.display()),
            ));
        }
        if let Some(u) = self.tftp.controller_urls.iter().find(|u| {
            !u.starts_with("http://")
                || u.len() < 8
                || u.contains(|c: char| c == ',' || c.is_whitespace())
        }) {
            return Err((
                "tftp.controller_urls",
                format!("{u:?} is no http://host:port URL (pi-init speaks plain HTTP)"),
            ));
        }
        if let Some(p) = self.tftp.root.as_ref().filter(|p| !p.is_absolute()) {
            return Err((
                "tftp.root",
                format!("{} must be an absolute path", p.display()),
            ));
        }
        if !self.nfs.root_path.is_absolute() {
            return Err((
                "nfs.root_path",
                format!("{} must be an absolute path", self.nfs.root_path.display()),
            ));
        }
        crate::nfs_tree::parse_image_name(&self.nfs.default_base_image)
            .map_err(|e| ("nfs.default_base_image", e.to_string()))?;
        let (min, max) = (
            crate::nfs_tree::persist::MIN_PERSIST_MB,
            crate::nfs_tree::persist::MAX_PERSIST_MB,
        );
        if self.nfs.import_max_size_mb == 0 {
            return Err((
                "nfs.import_max_size_mb",
                "0 would refuse every archive (MiB an import may write)".into(),
            ));
        }
        if !(min..=max).contains(&self.nfs.persist_size_mb) {
            return Err((
                "nfs.persist_size_mb",
                format!(
                    "{} is outside {min}..={max} (MiB of a node's persist.img)",
                    self.nfs.persist_size_mb
                ),
            ));
        }
        check_servers(&self.nfs.servers)?;
        for (key, v) in [
            ("request_timeout_secs", self.request_timeout_secs),
            ("body_limit_bytes", self.body_limit_bytes),
            ("header_timeout_secs", self.header_timeout_secs),
            ("max_connections", self.max_connections),
        ] {
            if v == 0 {
                return Err((key, "must be greater than zero".into()));
            }
        }
        Ok(())
    }
}

/// `[[nfs.servers]]`: addresses Pis can mount, absolute paths, no address twice, and at
/// least one active server with a weight (else no new node could be placed).
fn check_servers(servers: &[NfsServerConfig]) -> Result<(), (&'static str, String)> {
    for (i, s) in servers.iter().enumerate() {
        let at = format!("[[nfs.servers]] #{} ({:?})", i + 1, s.address);
        let host_ok = !s.address.is_empty()
            && s.address.len() <= 253
            && s.address
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
        if !host_ok
            || s.address
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified())
        {
            return Err((
                "nfs.servers.address",
                format!("{at}: not an address or host name Pis can mount from"),
            ));
        }
        if servers[..i].iter().any(|o| o.address == s.address) {
            return Err((
                "nfs.servers.address",
                format!("{at}: named twice (the address is the server's name)"),
            ));
        }
        if !s.export_path.is_absolute() {
            return Err((
                "nfs.servers.export_path",
                format!("{at}: {} must be an absolute path", s.export_path.display()),
            ));
        }
        if let Some(p) = s.local_path.as_ref().filter(|p| !p.is_absolute()) {
            return Err((
                "nfs.servers.local_path",
                format!("{at}: {} must be an absolute path", p.display()),
            ));
        }
    }
    if !servers.is_empty()
        && !servers
            .iter()
            .any(|s| s.state == ServerState::Active && s.weight > 0 && s.local_path.is_some())
    {
        return Err((
            "nfs.servers",
            "no server is active with a weight above 0 and a local_path: new nodes could \
             not be placed anywhere"
                .into(),
        ));
    }
    Ok(())
}

/// Shortest admin token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why `token` is too weak to guard the management API, if it is: a placeholder
/// (`change-me`), fewer than [`MIN_TOKEN_CHARS`] characters, few different characters, or
/// mostly one run (`aaaa…`, `abcd…`, `4321…`). A heuristic against the obvious, not a
/// measure of entropy: the README says how to generate a real one.
pub fn check_admin_token(token: &str) -> Result<(), String> {
    const HOW: &str = "generate one with `head -c 24 /dev/urandom | base64`, or remove the \
                       key to close the management API";
    let chars: Vec<char> = token.chars().collect();
    if token.trim().is_empty() {
        return Err(format!("is empty: {HOW}"));
    }
    let letters: String = token
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    if ["changeme", "password", "example", "placeholder", "secret"]
        .iter()
        .any(|p| letters.contains(p))
    {
        return Err(format!("is a placeholder or holds one: {HOW}"));
    }
    if chars.len() < MIN_TOKEN_CHARS {
        return Err(format!(
            "is {} characters, under the {MIN_TOKEN_CHARS} required: {HOW}",
            chars.len()
        ));
    }
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return Err(format!(
            "has only {} different characters: {HOW}",
            distinct.len()
        ));
    }
    // The longest stretch where each character repeats or steps by one from the last.
    let (mut longest, mut run) = (1, 1);
    for w in chars.windows(2) {
        let step = i64::from(u32::from(w[1])) - i64::from(u32::from(w[0]));
        run = if step.abs() <= 1 { run + 1 } else { 1 };
        longest = longest.max(run);
    }
    if longest * 2 >= chars.len() {
        return Err(format!(
            "is mostly one run of characters ({longest} of {}): {HOW}",
            chars.len()
        ));
    }
    Ok(())
}

/// `http(s)://host[:port][/path]` with a host nodes can reach.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed [ in the host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || authority.contains('@') || !url.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("{url:?} names no host nodes could reach"));
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err(format!("{url:?} has an invalid port"));
    }
    if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        return Err(format!(
            "{url:?} names a wildcard address: give the address nodes reach"
        ));
    }
    Ok(())
}

/// A TOML error as `line L, column C: message` (toml gives a byte span).
fn with_position(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// Keys that were settings once: refused with the reason, not as unknown.
const REMOVED: &[(&str, &str, &str)] = &[
    (
        "nfs",
        "base_dir",
        "the export's layout is fixed (base/ under root_path), as pi-init reads it there",
    ),
    (
        "nfs",
        "nodes_dir",
        "the export's layout is fixed (nodes/ under root_path), as pi-init reads it there",
    ),
];

fn kind_of(table: &str, key: &str) -> Option<Kind> {
    KEYS.iter()
        .find(|(t, k, _)| *t == table && *k == key)
        .map(|(_, _, kind)| *kind)
}

fn check_keys(table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    for (key, value) in table {
        if TABLES.contains(&key.as_str()) {
            let Some(inner) = value.as_table() else {
                return Err(ConfigError::WrongType {
                    origin: origin.into(),
                    key: key.clone(),
                    expected: "a table",
                    found: value.type_str().into(),
                });
            };
            for (k, v) in inner {
                check_value(key, k, v, origin)?;
            }
        } else {
            check_value("", key, value, origin)?;
        }
    }
    Ok(())
}

fn check_value(
    table: &str,
    key: &str,
    value: &toml::Value,
    origin: &str,
) -> Result<(), ConfigError> {
    if let Some((_, _, why)) = REMOVED.iter().find(|(t, k, _)| *t == table && *k == key) {
        return Err(ConfigError::Removed {
            origin: origin.into(),
            key: dotted(table, key),
            why,
        });
    }
    let Some(kind) = kind_of(table, key) else {
        return Err(ConfigError::UnknownKey {
            origin: origin.into(),
            key: dotted(table, key),
        });
    };
    if !kind.matches(value) {
        return Err(ConfigError::WrongType {
            origin: origin.into(),
            key: dotted(table, key),
            expected: kind.name(),
            found: value.to_string(),
        });
    }
    if let Some(entries) = value.as_array().filter(|_| matches!(kind, Kind::TableList)) {
        for entry in entries.iter().filter_map(toml::Value::as_table) {
            check_server_entry(entry, origin)?;
        }
    }
    Ok(())
}

/// The keys of one `[[nfs.servers]]` entry, and `state`'s values.
const SERVER_KEYS: &[(&str, Kind)] = &[
    ("address", Kind::Str),
    ("export_path", Kind::Str),
    ("local_path", Kind::Str),
    ("weight", Kind::Int),
    ("state", Kind::Str),
];

fn check_server_entry(entry: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    for required in ["address", "export_path"] {
        if !entry.contains_key(required) {
            return Err(ConfigError::WrongType {
                origin: origin.into(),
                key: format!("nfs.servers.{required}"),
                expected: "set in every [[nfs.servers]] entry",
                found: "none".into(),
            });
        }
    }
    for (k, v) in entry {
        let key = format!("nfs.servers.{k}");
        let Some((_, kind)) = SERVER_KEYS.iter().find(|(name, _)| name == k) else {
            return Err(ConfigError::UnknownKey {
                origin: origin.into(),
                key,
            });
        };
        let state_ok =
            k != "state" || ["active", "draining", "down"].contains(&v.as_str().unwrap_or(""));
        if !kind.matches(v) || !state_ok {
            return Err(ConfigError::WrongType {
                origin: origin.into(),
                key,
                expected: if k == "state" {
                    "one of active, draining, down"
                } else {
                    kind.name()
                },
                found: v.to_string(),
            });
        }
    }
    Ok(())
}

fn apply_env(
    table: &mut toml::Table,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (tbl, key, kind) in KEYS {
        let name = env_name(tbl, key);
        let Some(raw) = env(&name) else { continue };
        let value = kind.parse_env(&raw).ok_or_else(|| ConfigError::WrongType {
            origin: format!("environment {name}"),
            key: dotted(tbl, key),
            expected: kind.name(),
            found: format!("{raw:?}"),
        })?;
        let target = if tbl.is_empty() {
            &mut *table
        } else {
            table
                .entry(tbl.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("checked to be a table")
        };
        target.insert(key.to_string(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(text: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.toml");
        if let Some(t) = text {
            std::fs::write(&path, t).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(&path, |n| env.get(n).cloned())
    }

    #[test]
    fn a_missing_file_is_refused_and_an_empty_one_gives_loopback_defaults() {
        let err = load(None, &[]).unwrap_err();
        assert!(
            err.to_string().contains("controller.toml") && err.to_string().contains("not found"),
            "{err}"
        );
        let c = load(Some(""), &[]).unwrap();
        assert_eq!(c, Config::default());
        assert!(c.listen.starts_with("127.0.0.1:"));
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn file_and_env_layer() {
        let text = r#"
            listen = "127.0.0.1:9000"
            public_url = "http://10.0.2.2:9000/"
            admin_token = "Zq7vN4kP9xR2mW8tB5"
            [nfs]
            root_path = "/exports/pi"
            persist_size_mb = 512
        "#;
        let c = load(
            Some(text),
            &[
                ("PUREBOOT_NFS_ROOT_PATH", "/srv/other"),
                ("PUREBOOT_AUTO_REGISTER", "false"),
                ("PUREBOOT_NFS_SERVER", "10.0.2.2"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.public_url(), "http://10.0.2.2:9000");
        assert_eq!(c.nfs.root_path, PathBuf::from("/srv/other"));
        assert_eq!(
            c.nfs.announced_path(),
            Path::new("/srv/other"),
            "export_path defaults to it"
        );
        assert_eq!(c.nfs.persist_size_mb, 512);
        assert_eq!(
            c.nfs_server, "10.0.2.2",
            "top-level nfs_server, not a [nfs] key"
        );
        assert!(!c.auto_register);
        assert_eq!(c.admin_token.as_deref(), Some("Zq7vN4kP9xR2mW8tB5"));
    }

    #[test]
    fn example_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("controller.example.toml");
        let c = Config::load_with_env(&path, |_| None).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn malformed_values_name_the_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("auto_register = \"yes\"", &[], "auto_register"),
            ("[nfs]\npersist_size_mb = -1", &[], "nfs.persist_size_mb"),
            ("[nfs]\nroot = \"/x\"", &[], "nfs.root"),
            ("colour = 1", &[], "colour"),
            ("nfs = 3", &[], "nfs"),
            (
                "",
                &[("PUREBOOT_NFS_ENABLED", "maybe")],
                "PUREBOOT_NFS_ENABLED",
            ),
            ("listen = \"localhost\"", &[], "listen"),
            ("[nfs]\nroot_path = \"relative\"", &[], "nfs.root_path"),
            ("[nfs]\nexport_path = \"srv\"", &[], "nfs.export_path"),
            ("[nfs]\nbase_dir = \"images\"", &[], "nfs.base_dir"),
            ("[nfs]\nnodes_dir = \"n\"", &[], "nfs.nodes_dir"),
            ("listen = ", &[], "controller.toml"),
            ("[nfs]\npersist_size_mb = 0", &[], "nfs.persist_size_mb"),
            (
                "[nfs]\nimport_max_size_mb = 0",
                &[],
                "nfs.import_max_size_mb",
            ),
            (
                "[nfs]\ndefault_base_image = \"../../etc\"",
                &[],
                "nfs.default_base_image",
            ),
            ("listen = \"0.0.0.0:8080\"", &[], "public_url"),
            ("listen = \"[::]:8080\"", &[], "public_url"),
            ("public_url = \"http://\"", &[], "public_url"),
            ("public_url = \"http://:8080\"", &[], "public_url"),
            ("public_url = \"http://0.0.0.0:8080\"", &[], "public_url"),
            ("public_url = \"http://host:99999\"", &[], "public_url"),
            ("admin_token = \"\"", &[], "admin_token"),
            ("admin_token = \"  \"", &[], "admin_token"),
            ("admin_token = \"change-me\"", &[], "admin_token"),
            ("admin_token = \"Zq7vN4kP9xR2mW8\"", &[], "admin_token"),
            (
                "admin_token = \"aaaaaaaaaaaaaaaaaaaaaaaa\"",
                &[],
                "admin_token",
            ),
            (
                "admin_token = \"abcdefghijklmnopqrstuvwx\"",
                &[],
                "admin_token",
            ),
            (
                "admin_token = \"x9-change-me-please-Q27\"",
                &[],
                "admin_token",
            ),
            ("admin_token = \"ababababababababab12\"", &[], "admin_token"),
            ("admin_listen = \"admin\"", &[], "admin_listen"),
            ("max_connections = 0", &[], "max_connections"),
            (
                "[tftp]\ncontroller_urls = [\"http://a:8080\", \"https://b\"]",
                &[],
                "tftp.controller_urls",
            ),
            (
                "[tftp]\ncontroller_urls = [\"http://a:8080,http://b\"]",
                &[],
                "tftp.controller_urls",
            ),
            ("[[nfs.servers]]\nexport_path = \"/srv\"", &[], "nfs.servers.address"),
            ("[[nfs.servers]]\naddress = \"10.0.0.1\"", &[], "nfs.servers.export_path"),
            (
                "[[nfs.servers]]\naddress = \"10.0.0.1\"\nexport_path = \"/srv\"\nport = 2049",
                &[],
                "nfs.servers.port",
            ),
            (
                "[[nfs.servers]]\naddress = \"10.0.0.1\"\nexport_path = \"/srv\"\nstate = \"off\"",
                &[],
                "nfs.servers.state",
            ),
            (
                "[[nfs.servers]]\naddress = \"10.0.0.1\"\nexport_path = \"/srv\"\nweight = -2",
                &[],
                "nfs.servers.weight",
            ),
            (
                "[[nfs.servers]]\naddress = \"10.0.0.1 x\"\nexport_path = \"/srv\"\nlocal_path = \"/m\"",
                &[],
                "nfs.servers.address",
            ),
            (
                "[[nfs.servers]]\naddress = \"0.0.0.0\"\nexport_path = \"/srv\"\nlocal_path = \"/m\"",
                &[],
                "nfs.servers.address",
            ),
            (
                "[[nfs.servers]]\naddress = \"a\"\nexport_path = \"srv\"\nlocal_path = \"/m\"",
                &[],
                "nfs.servers.export_path",
            ),
            (
                "[[nfs.servers]]\naddress = \"a\"\nexport_path = \"/srv\"\nlocal_path = \"m\"",
                &[],
                "nfs.servers.local_path",
            ),
            (
                "[[nfs.servers]]\naddress = \"a\"\nexport_path = \"/s\"\nlocal_path = \"/m\"\n\
                 [[nfs.servers]]\naddress = \"a\"\nexport_path = \"/t\"",
                &[],
                "named twice",
            ),
            (
                "[[nfs.servers]]\naddress = \"a\"\nexport_path = \"/s\"\nlocal_path = \"/m\"\nstate = \"draining\"",
                &[],
                "nfs.servers",
            ),
            (
                "[[nfs.servers]]\naddress = \"a\"\nexport_path = \"/s\"",
                &[],
                "no server is active",
            ),
            ("[nfs]\nservers = 3", &[], "nfs.servers"),
            ("", &[("PUREBOOT_NFS_SERVERS", "a")], "PUREBOOT_NFS_SERVERS"),
        ];
        for (i, (text, env, needle)) in cases.iter().enumerate() {
            let err = load(Some(text), env).expect_err(&format!("case {i}: {text:?} must fail"));
            assert!(
                err.to_string().contains(needle)
                    && (env.is_empty() == err.to_string().contains("controller.toml")),
                "case {i}: {err} lacks {needle} or its origin"
            );
        }
        // The ones that look alike but are fine.
        for text in [
            "listen = \"0.0.0.0:8080\"\npublic_url = \"http://192.168.1.10:8080\"",
            "public_url = \"http://[fe80::1]:8080/\"",
            "public_url = \"https://boot.lab\"",
            "admin_token = \"q3N0aXlJ9vB2mRt8ZkP4sW1x\"",
            "[tftp]\ncontroller_urls = [\"http://10.0.0.1:8080\", \"http://10.0.0.2:8080\"]",
            "[[nfs.servers]]\naddress = \"nfs-a.lab\"\nexport_path = \"/srv\"\nlocal_path = \"/m\"\n\
             [[nfs.servers]]\naddress = \"10.0.0.2\"\nexport_path = \"/srv\"\nweight = 0\nstate = \"down\"",
        ] {
            load(Some(text), &[]).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn removed_keys_say_why() {
        for key in ["base_dir", "nodes_dir"] {
            let err = load(Some(&format!("[nfs]\n{key} = \"base\"")), &[]).unwrap_err();
            assert!(
                matches!(err, ConfigError::Removed { .. }) && err.to_string().contains("fixed"),
                "{key}: {err}"
            );
        }
    }

    /// KEYS drives the environment names and the key check: it must name every field of the
    /// struct, with the kind the field serialises as (so it cannot drift from `Config`).
    #[test]
    fn keys_cover_every_field() {
        let all = Config {
            public_url: Some("http://x".into()),
            admin_token: Some("Zq7vN4kP9xR2mW8tB5".into()),
            allowed_hosts: vec!["boot.lab".into()],
            admin_listen: Some("127.0.0.1:1".into()),
            secrets_file: Some("/etc/pureboot/secrets.toml".into()),
            rollout_hook: Some("/usr/local/bin/reboot-nodes".into()),
            nfs: NfsConfig {
                export_path: Some("/x".into()),
                nfs_options: Some("o".into()),
                servers: vec![NfsServerConfig {
                    address: "10.0.0.1".into(),
                    export_path: "/srv".into(),
                    local_path: Some("/mnt/a".into()),
                    weight: 2,
                    state: ServerState::Draining,
                }],
                ..NfsConfig::default()
            },
            tftp: TftpConfig {
                root: Some("/srv/tftp".into()),
                image_tool: Some("/usr/bin/pureboot-image".into()),
                pi_init: Some("/usr/lib/pureboot/pi-init".into()),
                cmdline_extra: Some("pureboot.log=debug".into()),
                controller_urls: vec!["http://10.0.0.1:8080".into()],
            },
            ..Config::default()
        };
        let table = toml::Table::try_from(&all).unwrap();
        let mut fields = Vec::new();
        for (k, v) in &table {
            match v.as_table() {
                Some(inner) => fields.extend(
                    inner
                        .iter()
                        .map(|(ik, iv)| (k.clone(), ik.clone(), iv.clone())),
                ),
                None => fields.push((String::new(), k.clone(), v.clone())),
            }
        }
        let mut named: Vec<(String, String)> = KEYS
            .iter()
            .map(|(t, k, _)| (t.to_string(), k.to_string()))
            .collect();
        let mut found: Vec<(String, String)> = fields
            .iter()
            .map(|(t, k, _)| (t.clone(), k.clone()))
            .collect();
        named.sort();
        found.sort();
        assert_eq!(named, found, "KEYS and Config's fields");
        for (t, k, v) in &fields {
            let kind = kind_of(t, k).unwrap();
            assert!(kind.matches(v), "{t}.{k}: {v} is not {}", kind.name());
        }
    }

    #[test]
    fn toml_errors_name_line_and_column() {
        let err = load(
            Some("listen = \"127.0.0.1:1\"\n[nfs]\nroot_path = /srv\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3, column 13"), "{err}");
    }
}
