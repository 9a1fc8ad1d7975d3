//! Fuzzes the datagram records of UDP flows: `need` and `decode` agree, what
//! decodes re-encodes to the same bytes, an oversized header is refused exactly
//! when it is one, and chunked and one-shot decoding agree; see
//! `porthole_fuzz::datagram`.
//! Run: `cd fuzz && cargo fuzz run --sanitizer none datagram`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = porthole_fuzz::datagram(data);
});
