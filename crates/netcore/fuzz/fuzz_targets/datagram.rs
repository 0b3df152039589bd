//! Fuzz the datagram lead byte, the data packet header and its stats blob.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netcore::wire::fuzz_checks::datagram(data);
});
