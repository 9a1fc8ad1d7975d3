//! Fuzzes the PROXY protocol header codec (v1 and v2): no panic for any bytes
//! and cap, every prefix agrees with the one-shot parse, and what is parsed or
//! encoded reads back to the same addresses; see `porthole_fuzz::proxy_header`.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none proxy_header`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = porthole_fuzz::proxy_header(data);
});
