//! Fuzzes the HTTP proxy's chunked-body decoder: `feed` and `split` in one shot
//! and in pieces agree, and decoded data re-encodes; see
//! `porthole_fuzz::http_chunked`.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none http_chunked`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = porthole_fuzz::http_chunked(data);
});
