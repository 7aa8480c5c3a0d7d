//! DHCP replies off the wire. The first byte is a switch: when its low bit is set, the
//! target writes the reply op, our xid, our MAC and the magic cookie into the message, so
//! the fuzzer spends its time in the options (overload, lengths, padding) rather than on
//! the header checks. Any message parses or is refused; none panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_init::steps::net::dhcp::message::parse_reply;

const XID: u32 = 0x1234_5678;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fuzz_target!(|data: &[u8]| {
    let Some((&switch, rest)) = data.split_first() else {
        return;
    };
    let mut msg = rest.to_vec();
    if switch & 1 == 1 {
        if msg.len() < 240 {
            msg.resize(240, 0);
        }
        msg[0] = 2;
        msg[1] = 1;
        msg[2] = 6;
        msg[4..8].copy_from_slice(&XID.to_be_bytes());
        msg[28..34].copy_from_slice(&MAC);
        msg[236..240].copy_from_slice(&[99, 130, 83, 99]);
    }
    if let Ok(reply) = parse_reply(&msg, XID, &MAC) {
        // What the network step then reads must be printable without panicking.
        let _ = format!("{reply:?}");
    }
});
