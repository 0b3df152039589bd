//! Fuzz the control message decoder (and re-encode what it accepts).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netcore::wire::fuzz_checks::control(data);
});
