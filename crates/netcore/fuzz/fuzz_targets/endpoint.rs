//! Fuzz the connection state machine: arbitrary bytes, read as a sequence of random,
//! mutated, replayed and in-flight-tampered datagrams (and time passing), played against a
//! live client/server pair; nothing may panic, state stays bounded, and the session still
//! delivers afterwards (see `netcore::endpoint::fuzz_checks`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netcore::endpoint::fuzz_checks::endpoint(data);
});
