//! Fuzzes the mux frame decoder: arbitrary bytes, one shot and in chunks.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none mux_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    porthole_fuzz::mux_frame(data);
});
