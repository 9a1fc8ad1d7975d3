//! Fuzzes the RON config parsers and validation with arbitrary UTF-8 (never the
//! network: see `porthole_fuzz::config`).
//! Run: `cd fuzz && cargo fuzz run --sanitizer none config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    porthole_fuzz::config(data);
});
