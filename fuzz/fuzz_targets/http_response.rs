//! Fuzzes the HTTP proxy's response-head parser and `client_response`: prefixes,
//! split = one-shot, and the rewritten head's framing; see
//! `porthole_fuzz::http_response`.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none http_response`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = porthole_fuzz::http_response(data);
});
