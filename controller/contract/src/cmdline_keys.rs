//! The kernel command line's `pureboot.*` keys: pureboot-image writes some into
//! cmdline.txt, pi-init reads them all (README, "pi-init's kernel command line"). Upstream
//! PureBoot's names where it has them.

/// The controller's base URL, or several (comma-separated) of one registry, asked in turn.
pub const URL: &str = "pureboot.url";
/// The board's serial, where the device tree and cpuinfo do not give it.
pub const SERIAL: &str = "pureboot.serial";
/// Upstream's deploy environment keys discovery on `pureboot.mode=discovery`
/// ([`crate::boot_query::DISCOVERY`]); pi-init ignores it.
pub const MODE: &str = "pureboot.mode";
pub const NFS_SERVER: &str = "pureboot.nfs_server";
pub const NFS_PATH: &str = "pureboot.nfs_path";
pub const CALLBACK: &str = "pureboot.callback";
pub const OVERLAY: &str = "pureboot.overlay";
pub const BASE_IMAGE: &str = "pureboot.base_image";
pub const HOSTNAME: &str = "pureboot.hostname";
pub const ON_FAILURE: &str = "pureboot.on_failure";
pub const RETRIES: &str = "pureboot.retries";
pub const LOG: &str = "pureboot.log";
pub const NFS_OPTS: &str = "pureboot.nfs_opts";
pub const BASE_OPTS: &str = "pureboot.base_opts";
pub const IFACE: &str = "pureboot.iface";
pub const TIMEOUT: &str = "pureboot.timeout";
pub const WAIT: &str = "pureboot.wait";
pub const WATCHDOG: &str = "pureboot.watchdog";

/// Every key, for the tests of both sides.
pub const ALL: &[&str] = &[
    URL, SERIAL, MODE, NFS_SERVER, NFS_PATH, CALLBACK, OVERLAY, BASE_IMAGE, HOSTNAME, ON_FAILURE,
    RETRIES, LOG, NFS_OPTS, BASE_OPTS, IFACE, TIMEOUT, WAIT, WATCHDOG,
];

/// `key=value`, one word of the command line.
pub fn word(key: &str, value: impl std::fmt::Display) -> String {
    format!("{key}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_pureboot_words() {
        for (i, k) in ALL.iter().enumerate() {
            assert!(k.starts_with("pureboot.") && !k.contains([' ', '=']), "{k}");
            assert!(!ALL[..i].contains(k), "{k} twice");
        }
        assert_eq!(word(URL, "http://c"), "pureboot.url=http://c");
    }
}
