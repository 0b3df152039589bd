//! Fuzz the connection state machine: arbitrary bytes, read as a start (dialing or
//! established) and a sequence of ops (hostile datagrams, path faults, sends, closes,
//! restarts, forged connect requests) played against copies of a client/server pair built
//! once per process (see `netcore::endpoint::fuzz_checks`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netcore::endpoint::fuzz_checks::endpoint(data);
});
