//! Fuzzes the HTTP proxy's request-head parser: prefixes, split = one-shot, and
//! `origin_request` re-serialising to one message with the same body, and the
//! admin endpoint's answer to the same head; see `porthole_fuzz::http_request`.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none http_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = porthole_fuzz::http_request(data);
});
