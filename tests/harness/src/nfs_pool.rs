//! A pool of two NFS servers (`[[nfs.servers]]`) for virtual Pis: two hosts, each a namespace
//! of its own behind a veth pair from the lab's namespace, each with its own rpcbind and
//! ganesha on the fixed ports. A guest on QEMU user networking that connects to either makes
//! QEMU connect to it from the lab's namespace, so everything a server exchanges with the
//! guests crosses its [`PEER_LINK`](crate::netns::PEER_LINK) and nothing else does (the controller, in the lab's
//! namespace, reaches the trees as directories): its counters are that server's load.
//! (One namespace with two addresses does not do: ganesha 4.3 binds IPv6 sockets, and its
//! `Bind_Addr` is parsed as IPv4 and its IPv6 sockets bound to the wildcard, so both
//! would claim *:2049.)

use std::path::{Path, PathBuf};

use crate::lab::Lab;
use crate::netns::Netns;
use crate::nfs_server::{NfsServer, Protocols};

/// Server A's address (its link's lab side is `10.0.3.254`).
pub const A: &str = "10.0.3.1";
/// Server B's address (its link's lab side is `10.0.4.254`).
pub const B: &str = "10.0.4.1";

/// One `[[nfs.servers]]` entry exporting `tree` (ganesha's path and pseudo path are one).
pub fn server_toml(addr: &str, tree: &Path, weight: u64, state: &str) -> String {
    format!(
        "\n[[nfs.servers]]\naddress = \"{addr}\"\nexport_path = \"{t}\"\nlocal_path = \"{t}\"\n\
         weight = {weight}\nstate = \"{state}\"\n",
        t = tree.display()
    )
}

/// One server of the pool: its address, ganesha and exported tree, and its host.
pub struct PoolServer {
    pub addr: &'static str,
    pub nfs: NfsServer,
    pub tree: PathBuf,
    /// Declared after `nfs`: dropped after the ganesha in it.
    host: Netns,
}

impl PoolServer {
    /// A process in the server's namespace (its holder): `/proc/<pid>/net/dev` has the
    /// counters of its [`PEER_LINK`](crate::netns::PEER_LINK).
    pub fn host_pid(&self) -> u32 {
        self.host.pid()
    }

    /// Whether `console` shows pi-init booting from this server (`booting <addr>:<tree> `).
    pub fn booted_in(&self, console: &str) -> bool {
        console.contains(&format!("booting {}:{} ", self.addr, self.tree.display()))
    }
}

/// The two servers, A then B (the order of `[[nfs.servers]]` in [`Pool::toml`]).
pub struct Pool {
    pub servers: [PoolServer; 2],
}

impl Pool {
    /// Stops the lab's own ganesha (and its rpcbind), which exports the controller's source
    /// tree, and starts A and B, each exporting a tree of its own under the lab's directory.
    /// The controller's daemon is not (re)started: write [`Pool::toml`] into its
    /// configuration first.
    pub fn start(lab: &mut Lab) -> Result<Pool, String> {
        lab.nfs.stop();
        let start = |i: usize, addr: &'static str, lab_side: &str| {
            let what = |e: String| format!("{}: NFS server {addr}: {e}", lab.name);
            let host = Netns::new().map_err(|e| what(format!("its namespace: {e}")))?;
            lab.ns.link_to(&host, lab_side, addr).map_err(what)?;
            let dir = lab.dir.join(&format!("srv-{i}"));
            let tree = dir.join("nfs");
            let nfs = NfsServer::start(&host, &dir, &tree, Protocols::V3AndV4).map_err(what)?;
            Ok::<_, String>(PoolServer {
                addr,
                nfs,
                tree,
                host,
            })
        };
        let a = start(0, A, "10.0.3.254")?;
        let b = start(1, B, "10.0.4.254")?;
        Ok(Pool { servers: [a, b] })
    }

    /// The `[[nfs.servers]]` entries: A, then B, with these weights and states.
    pub fn toml(&self, weights: [u64; 2], states: [&str; 2]) -> String {
        self.servers
            .iter()
            .zip(weights.into_iter().zip(states))
            .map(|(s, (w, st))| server_toml(s.addr, &s.tree, w, st))
            .collect()
    }

    /// The server `console` shows pi-init booting from, if any.
    pub fn server_of(&self, console: &str) -> Option<&PoolServer> {
        self.servers.iter().find(|s| s.booted_in(console))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_entry_names_every_key_of_a_server() {
        let t = super::server_toml(super::A, std::path::Path::new("/srv/a"), 2, "draining");
        for needle in [
            "[[nfs.servers]]",
            "address = \"10.0.3.1\"",
            "export_path = \"/srv/a\"",
            "local_path = \"/srv/a\"",
            "weight = 2",
            "state = \"draining\"",
        ] {
            assert!(t.contains(needle), "{needle} in {t}");
        }
    }
}
