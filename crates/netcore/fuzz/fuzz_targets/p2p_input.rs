//! Fuzz: Arbitrary datagrams into an ICE agent, a TURN client and a STUN binding client.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netcore::p2p::fuzz_checks::p2p_input(data);
});
