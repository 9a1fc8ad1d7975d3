//! Fuzzes the mux session state machine with arbitrary operations and peer
//! frames; see `porthole_fuzz::mux_session`.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none mux_session`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    porthole_fuzz::mux_session(data);
});
