//! Basic proxy authentication (RFC 7617 over `Proxy-Authorization`).
//!
//! The expected credentials are kept only as an HMAC-SHA256 tag of their base64
//! form under a random per-process key; a presented token is checked with
//! `ring::hmac::verify`, which compares in constant time, so neither timing nor
//! the token's length tells an attacker how close a guess was.

use ring::hmac;

/// Longest `Proxy-Authorization` value considered: longer ones are refused
/// before hashing (the head cap bounds them anyway; this keeps the work tiny).
const MAX_CREDENTIALS_LEN: usize = 1024;

/// The realm named in `Proxy-Authenticate`.
pub const REALM: &str = "porthole";

/// Who may use the proxy.
#[derive(Clone)]
pub struct Credentials {
    key: hmac::Key,
    tag: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(********)")
    }
}

impl Credentials {
    /// `user` must not contain `:` (Basic cannot express it); config checks that.
    pub fn new(user: &str, password: &str) -> Self {
        let token = base64(format!("{user}:{password}").as_bytes());
        let mut seed = [0u8; 32];
        // A fixed key would still compare in constant time; a random one also
        // keeps the tag useless outside this process. RNG failure is not
        // expected on Linux; fall back to the zero key rather than panic.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &seed);
        let tag = hmac::sign(&key, token.as_bytes()).as_ref().to_vec();
        Credentials { key, tag }
    }

    /// Whether a `Proxy-Authorization` value carries these credentials.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(value) = header.filter(|v| v.len() <= MAX_CREDENTIALS_LEN) else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        hmac::verify(&self.key, token.trim().as_bytes(), &self.tag).is_ok()
    }

    /// The `Proxy-Authenticate` challenge.
    pub fn challenge() -> String {
        format!("Basic realm=\"{REALM}\", charset=\"UTF-8\"")
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn accepts_only_the_right_credentials() {
        let c = Credentials::new("Aladdin", "open sesame");
        assert!(c.accepts(Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")));
        assert!(c.accepts(Some("basic  QWxhZGRpbjpvcGVuIHNlc2FtZQ== ")));
        assert!(!c.accepts(Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZR==")));
        assert!(!c.accepts(Some("Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==")));
        assert!(!c.accepts(Some("Basic")));
        assert!(!c.accepts(None));
        assert!(!c.accepts(Some(&"A".repeat(MAX_CREDENTIALS_LEN + 1))));
        assert!(!format!("{c:?}").contains("QWxh"));
    }
}
