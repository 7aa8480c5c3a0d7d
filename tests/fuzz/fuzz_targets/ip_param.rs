//! The kernel's `ip=` syntax: any value parses or is refused, never panics; a static
//! configuration is self-consistent (netmask contiguous, client not 0.0.0.0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_init::decide::ip_param::{self as net, IpParam};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(IpParam::Static(s)) = net::parse_ip_param(value) {
        let mask = u32::from(s.netmask);
        assert_eq!(
            mask.leading_ones() + mask.trailing_zeros(),
            32,
            "{value:?}: mask {}",
            s.netmask
        );
        assert!(!s.client.is_unspecified(), "{value:?}: client 0.0.0.0");
    }
});
