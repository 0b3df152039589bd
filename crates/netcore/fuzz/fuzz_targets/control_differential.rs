//! Differential: a control datagram the codec decodes must re-encode to exactly the
//! canonical form an independent reading of the protobuf wire format gives, and the two must
//! refuse the same datagrams (see `netcore::wire::protobuf_canonical`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netcore::wire::fuzz_checks::control_differential(data);
});
