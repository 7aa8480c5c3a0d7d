//! Harness for virtual Pi boots: a private network namespace holding nfs-ganesha (+ rpcbind),
//! the controller and QEMU `virt` guests running Debian's arm64 kernel with our initramfs.
//!
//! Data flows one way: [`env::TestEnv`] finds what the set-up made (kernel, busybox, built
//! binaries) or says why a scenario must skip; a [`lab::Lab`] starts the servers for one
//! scenario; [`qemu::VirtualPi`] boots a guest and returns its console; [`console`] reads
//! the console into typed facts the scenarios assert on. Everything stops on drop.

pub mod console;
pub mod controller;
pub mod dhcp;
pub mod env;
pub mod guest_cpu;
pub mod guest_root;
pub mod host;
#[cfg(test)]
mod import_graph;
pub mod initramfs;
pub mod lab;
pub mod lan;
pub mod netns;
pub mod nfs_pool;
pub mod nfs_server;
pub mod nfs_stats;
pub mod oci;
pub mod process;
pub mod qemu;
pub mod skip;
pub mod wait;
pub mod workdir;

/// The repository: this crate is `tests/harness/` in it.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/harness/ lies two levels below the repository")
        .to_path_buf()
}

/// Serial numbers the scenarios use: 8 lowercase hex digits, one per guest.
pub fn serial(n: u32) -> String {
    format!("e2e{n:05x}")
}
