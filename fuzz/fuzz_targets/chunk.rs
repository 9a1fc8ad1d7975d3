//! Fuzzes the chunk framing of pooled data links (both readers): split and
//! one-shot decoding agree, and what decodes re-encodes to the same bytes.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none chunk`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    porthole_fuzz::chunk(data);
});
