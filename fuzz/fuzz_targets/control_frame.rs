//! Fuzzes the control-frame codec: arbitrary bytes through `protocol::decode`, one
//! shot and in chunks. Byte 0 picks the chunking; see `porthole_fuzz::control_frame`.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none control_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    porthole_fuzz::control_frame(data);
});
