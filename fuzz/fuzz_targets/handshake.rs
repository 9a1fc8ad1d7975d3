//! Fuzzes the handshake state machines: an attacker's frames interleaved with
//! an honest client's and an honest server's; see `porthole_fuzz::handshake`.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none handshake`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    porthole_fuzz::handshake(data);
});
