//! The datagram records of a UDP flow's data link: pure encode/decode, no I/O
//! (PROTOCOL.md section 16).
//!
//! After `Start` (server to client) and `Accept` (client to server), each
//! direction of a UDP flow's link or stream is a run of records, each a `u16`
//! big-endian payload length and then exactly that many payload bytes. One
//! record is one datagram: a sender never splits or merges datagrams, so a
//! receiver sends each payload on as one datagram, whole, or not at all.
//!
//! Invariants: a length above [`MAX_DATAGRAM_LEN`] is refused from the two
//! header bytes alone, before any payload is buffered, so a reader never holds
//! more than [`HEADER_LEN`] + [`MAX_DATAGRAM_LEN`] bytes of one record; whatever
//! decodes re-encodes to exactly the bytes it was decoded from; and the answer
//! does not depend on how the bytes arrived (the fuzz target `datagram` checks
//! both).

use std::fmt;
use std::ops::Range;

/// Bytes of a record header: the payload length, `u16` big-endian.
pub const HEADER_LEN: usize = 2;
/// Largest payload of one record, in bytes: the largest UDP payload over IPv4
/// (65,535 total length − 20 IP header − 8 UDP header). No datagram a socket
/// hands us is longer, so a larger length can only come from a broken or
/// hostile peer, and refusing it bounds what a reader buffers per record.
pub const MAX_DATAGRAM_LEN: usize = 65_507;

/// Why bytes are not a valid record. It ends the link (only this flow).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatagramError {
    /// A payload of `len` bytes, above `max` ([`MAX_DATAGRAM_LEN`]): asked to
    /// encode, or announced by a header.
    TooLarge { len: usize, max: usize },
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatagramError::TooLarge { len, max } => {
                write!(f, "datagram of {len} bytes exceeds the maximum of {max}")
            }
        }
    }
}

impl std::error::Error for DatagramError {}

/// The 2-byte header of a record carrying `len` payload bytes.
pub fn header(len: usize) -> Result<[u8; HEADER_LEN], DatagramError> {
    checked_len(len)?;
    let len = u16::try_from(len).map_err(|_| too_large(len))?;
    Ok(len.to_be_bytes())
}

/// Appends one record (header then payload) to `out`. On error `out` is left
/// as it was.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<(), DatagramError> {
    let header = header(payload.len())?;
    out.reserve(HEADER_LEN.saturating_add(payload.len()));
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(())
}

/// Bytes still missing before the first record in `buf` is whole (0: it is
/// whole). While the header is incomplete this counts only the header's
/// missing bytes (the payload may be empty), so reading exactly this many never
/// reads past the record. An error as soon as the two header bytes are there
/// and say more than [`MAX_DATAGRAM_LEN`].
pub fn need(buf: &[u8]) -> Result<usize, DatagramError> {
    match record_len(buf)? {
        Some(total) => Ok(total.saturating_sub(buf.len())),
        None => Ok(HEADER_LEN.saturating_sub(buf.len())),
    }
}

/// The first whole record in `buf`: its payload's range within `buf` and the
/// bytes it uses ([`HEADER_LEN`] + payload length). `Ok(None)`: not whole yet.
/// Error: header over the cap (detected from the 2 header bytes alone, before
/// any payload).
pub fn decode(buf: &[u8]) -> Result<Option<(Range<usize>, usize)>, DatagramError> {
    match record_len(buf)? {
        Some(total) if buf.len() >= total => Ok(Some((HEADER_LEN..total, total))),
        _ => Ok(None),
    }
}

/// The whole length (header + payload) of the record starting `buf`, once its
/// header is there; `None` before.
fn record_len(buf: &[u8]) -> Result<Option<usize>, DatagramError> {
    let Some(&[hi, lo]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = checked_len(usize::from(u16::from_be_bytes([hi, lo])))?;
    Ok(Some(HEADER_LEN.saturating_add(len)))
}

fn checked_len(len: usize) -> Result<usize, DatagramError> {
    if len > MAX_DATAGRAM_LEN {
        return Err(too_large(len));
    }
    Ok(len)
}

fn too_large(len: usize) -> DatagramError {
    DatagramError::TooLarge {
        len,
        max: MAX_DATAGRAM_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How a stream of records ended for its reader.
    #[derive(Debug, PartialEq, Eq)]
    enum Ending {
        /// This many bytes of an unfinished record are left.
        Partial(usize),
        /// The link would be closed here.
        Error(DatagramError),
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(payload, &mut out).expect("within the cap");
        out
    }

    /// Decodes `input` in one piece, checking `need` against `decode` at each step.
    fn one_shot(input: &[u8]) -> (Vec<Vec<u8>>, Ending) {
        let mut records = Vec::new();
        let mut rest = input;
        loop {
            let needed = need(rest);
            match decode(rest) {
                Ok(Some((payload, used))) => {
                    assert_eq!(needed, Ok(0));
                    records.push(rest[payload].to_vec());
                    rest = &rest[used..];
                }
                Ok(None) => {
                    assert!(matches!(needed, Ok(n) if n > 0));
                    return (records, Ending::Partial(rest.len()));
                }
                Err(e) => {
                    assert_eq!(needed, Err(e.clone()));
                    return (records, Ending::Error(e));
                }
            }
        }
    }

    /// Feeds `input` to a growing buffer in pieces of the given sizes (cycling),
    /// decoding after each piece and draining what was used, as a socket reader.
    fn in_pieces(input: &[u8], sizes: &[usize]) -> (Vec<Vec<u8>>, Ending) {
        let mut buf = Vec::new();
        let mut records = Vec::new();
        let mut sizes = sizes.iter().copied().cycle();
        let mut pos = 0;
        while pos < input.len() {
            let end = pos
                .saturating_add(sizes.next().unwrap_or(1).max(1))
                .min(input.len());
            buf.extend_from_slice(&input[pos..end]);
            pos = end;
            loop {
                match decode(&buf) {
                    Ok(Some((payload, used))) => {
                        records.push(buf[payload].to_vec());
                        buf.drain(..used);
                    }
                    Ok(None) => break,
                    Err(e) => return (records, Ending::Error(e)),
                }
            }
        }
        (records, Ending::Partial(buf.len()))
    }

    fn too_large(len: usize) -> DatagramError {
        DatagramError::TooLarge {
            len,
            max: MAX_DATAGRAM_LEN,
        }
    }

    #[test]
    fn records_round_trip_from_empty_to_the_cap() {
        for len in [0, 1, 1472, 8192, MAX_DATAGRAM_LEN] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bytes = record(&payload);
            assert_eq!(bytes.len(), HEADER_LEN + len);
            assert_eq!(bytes[..HEADER_LEN], header(len).expect("valid")[..]);
            assert_eq!(need(&bytes), Ok(0));
            assert_eq!(
                decode(&bytes),
                Ok(Some((HEADER_LEN..HEADER_LEN + len, HEADER_LEN + len)))
            );
            assert_eq!(one_shot(&bytes), (vec![payload], Ending::Partial(0)));
        }
        assert_eq!(header(0), Ok([0, 0]));
        assert_eq!(header(MAX_DATAGRAM_LEN), Ok([0xff, 0xe3]));
    }

    #[test]
    fn one_byte_over_the_cap_is_refused_everywhere() {
        let len = MAX_DATAGRAM_LEN + 1;
        assert_eq!(header(len), Err(too_large(len)));
        assert_eq!(header(usize::MAX), Err(too_large(usize::MAX)));
        let mut out = vec![7];
        assert_eq!(encode(&vec![0; len], &mut out), Err(too_large(len)));
        assert_eq!(out, vec![7], "a refused record leaves the output alone");
        // From the header alone: no payload byte has to arrive first.
        for (bytes, len) in [([0xff, 0xe4], 65_508), ([0xff, 0xff], 65_535)] {
            assert_eq!(need(&bytes), Err(too_large(len)));
            assert_eq!(decode(&bytes), Err(too_large(len)));
        }
    }

    #[test]
    fn truncated_records_wait_for_exactly_what_is_missing() {
        assert_eq!(need(&[]), Ok(HEADER_LEN));
        assert_eq!(decode(&[]), Ok(None));
        assert_eq!(need(&[0]), Ok(1), "the payload may be empty");
        assert_eq!(decode(&[0xff]), Ok(None));
        let bytes = record(b"hello");
        for cut in HEADER_LEN..bytes.len() {
            assert_eq!(need(&bytes[..cut]), Ok(bytes.len() - cut));
            assert_eq!(decode(&bytes[..cut]), Ok(None));
        }
        assert_eq!(need(&[0xff, 0xe3]), Ok(MAX_DATAGRAM_LEN));
    }

    #[test]
    fn records_back_to_back_decode_one_by_one() {
        let payloads: [&[u8]; 4] = [b"", b"a", b"datagram", b""];
        let mut stream: Vec<u8> = payloads.iter().flat_map(|p| record(p)).collect();
        stream.extend_from_slice(&[0, 9, 1]);
        let mut rest = &stream[..];
        for payload in payloads {
            let (range, used) = decode(rest).expect("valid").expect("whole");
            assert_eq!(&rest[range], payload);
            assert_eq!(used, HEADER_LEN + payload.len());
            rest = &rest[used..];
        }
        assert_eq!(need(rest), Ok(8));
        assert_eq!(decode(rest), Ok(None));
        let expected: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();
        assert_eq!(one_shot(&stream), (expected, Ending::Partial(3)));
    }

    /// xorshift64*: deterministic inputs without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A stream mixing records of every size class with stray bytes, which
    /// may form oversized or truncated headers.
    fn random_stream(rng: &mut Rng) -> Vec<u8> {
        let mut stream = Vec::new();
        for _ in 0..rng.below(6) {
            let len = match rng.below(5) {
                0 => 0,
                1 => rng.below(16),
                2 => rng.below(2048),
                3 => MAX_DATAGRAM_LEN - rng.below(4),
                _ => {
                    let junk = rng.below(4);
                    stream.extend((0..junk).map(|_| rng.next() as u8));
                    continue;
                }
            };
            let seed = rng.next() as u8;
            let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ seed).collect();
            stream.extend_from_slice(&record(&payload));
        }
        if rng.below(3) == 0 {
            let cut = rng.below(stream.len() + 1);
            stream.truncate(cut);
        }
        stream
    }

    #[test]
    fn any_split_decodes_like_one_shot() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..300 {
            let stream = random_stream(&mut rng);
            let sizes: Vec<usize> = (0..=rng.below(4))
                .map(|_| {
                    let scale = 1 << (1 + rng.below(17));
                    1 + rng.below(scale)
                })
                .collect();
            let whole = one_shot(&stream);
            assert_eq!(in_pieces(&stream, &sizes), whole, "sizes {sizes:?}");
            assert_eq!(in_pieces(&stream, &[1]), whole, "byte at a time");
            let used: usize = whole.0.iter().map(|p| HEADER_LEN + p.len()).sum();
            let encoded: Vec<u8> = whole.0.iter().flat_map(|p| record(p)).collect();
            assert_eq!(encoded, stream[..used], "records re-encode to their bytes");
        }
    }
}
