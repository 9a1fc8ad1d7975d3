//! The client's `server`: one address, or a list of them (a session with
//! each, see `crate::client`). Read from either shape, checked as a list.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use serde::Deserializer;
use serde::de::{self, SeqAccess, Visitor};

use super::{ConfigError, Locator, MAX_SERVERS, check_address};

/// What the value of `server` looks like, for ron's "expected …" errors.
const EXPECTED: &str =
    "a server address such as \"tunnel.example.com:7000\", or a list of them in [ ]";

/// serde `deserialize_with` helper: `server: "a:7000"` or `server: ["a:7000",
/// "b:7000"]`. A list longer than [`MAX_SERVERS`] fails while it is read, so
/// a file cannot make us hold more (the error is placed at the extra entry).
pub fn one_or_more<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    // `any`, not `str` or `seq`: the value may be either, and a number or a
    // struct gets a message that says what a server looks like.
    de.deserialize_any(Servers)
}

struct Servers;

impl<'de> Visitor<'de> for Servers {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        Ok(vec![v.to_owned()])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut servers = Vec::new();
        while let Some(Address(server)) = seq.next_element()? {
            if servers.len() == MAX_SERVERS {
                return Err(de::Error::custom(too_many(&format!(
                    "more than {MAX_SERVERS}"
                ))));
            }
            servers.push(server);
        }
        Ok(servers)
    }
}

/// One entry of a `server` list: a string, whatever else was written.
struct Address(String);

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Entry;
        impl Visitor<'_> for Entry {
            type Value = Address;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a server address such as \"tunnel.example.com:7000\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Address, E> {
                Ok(Address(v.to_owned()))
            }
        }
        de.deserialize_any(Entry)
    }
}

/// The message for a list longer than [`MAX_SERVERS`]; `count` says how long.
fn too_many(count: &str) -> String {
    format!(
        "server: {count} servers given, at most {MAX_SERVERS} are allowed (each is a session with links of its own); give the others to another client"
    )
}

/// Checks the list: at least one server, at most [`MAX_SERVERS`], each a
/// `host:port` that resolves now, no server twice (by text or by the address
/// it resolves to: two sessions of one client with one server would fight
/// over their ports). Errors are placed at the offending entry.
pub(super) fn check(at: &Locator, servers: &[String]) -> Result<(), ConfigError> {
    if servers.is_empty() {
        let msg = "server is an empty list: give at least one, e.g. [\"tunnel.example.com:7000\"]";
        return Err(at.error(&["server"], msg));
    }
    if servers.len() > MAX_SERVERS {
        let msg = too_many(&servers.len().to_string());
        return Err(at.error(&[&format!("server[{MAX_SERVERS}]"), "server"], msg));
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, server) in servers.iter().enumerate() {
        let entry = format!("server[{i}]");
        let paths = [entry.as_str(), "server"];
        let addr = check_address(at, &paths, "server", server, false)?;
        let msg = if servers[..i].contains(server) {
            Some(format!(
                "server {server:?} is given twice; give each server once"
            ))
        } else {
            seen.get(&addr).map(|&first| {
                format!(
                    "server {server:?} is the same server as {:?} (both reach {addr}); give each server once",
                    servers[first]
                )
            })
        };
        if let Some(msg) = msg {
            return Err(at.error(&paths, msg));
        }
        seen.insert(addr, i);
    }
    Ok(())
}
