//! Fuzz the SNP frame decoder, ack blocks and reliable message headers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netcore::wire::fuzz_checks::frames(data);
});
