//! The controller's boot answer as pi-init reads it: any body either fails to parse or
//! round-trips through serde unchanged, and whatever it says, the plan decides without
//! panicking, never boots NFS without a server and path, and names a valid host.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use pi_init::decide::cmdline;
use pi_init::decide::plan::{self, Decision, Instructions, NetFacts};
use pi_init::decide::serial::Identity;
use pi_init::steps::serial;
use pureboot_contract::ids::Hostname;
use pureboot_contract::PiBootResponse;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = serde_json::from_slice::<PiBootResponse>(data) else {
        return;
    };
    let text = serde_json::to_string(&r).expect("a parsed answer serialises");
    let back: PiBootResponse = serde_json::from_str(&text).expect("and parses again");
    assert_eq!(back, r, "round trip through {text}");

    let serial = serial::read(std::path::Path::new("/nonexistent"), Some("10000000d83add36"))
        .map(Identity::Board)
        .expect("a serial");
    let net = NetFacts {
        client: Ipv4Addr::new(10, 0, 2, 15),
        server: None,
        hostname: None,
        root_path: None,
    };
    for line in ["", "pureboot.hostname=h1 pureboot.nfs_server=10.0.2.2 pureboot.nfs_path=/srv root=/dev/mmcblk0p2"] {
        let c = cmdline::parse(line);
        match plan::decide(&c, &serial, &net, Instructions::Controller(&r)) {
            Decision::Nfs(p) => {
                assert!(!p.nfs.server.is_empty() || r.nfs_server.as_deref() == Some(""));
                assert!(Hostname::parse(p.hostname.as_str()).is_ok(), "{:?}", p.hostname);
            }
            Decision::Local { device } => assert!(!device.is_empty()),
            Decision::Fail(why) => assert!(!why.is_empty()),
        }
    }
});
