//! Fuzz: ICE candidate lines from signaling.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netcore::p2p::fuzz_checks::candidate(data);
});
