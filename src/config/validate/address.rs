//! What is wrong with an address that is not `host:port`, said so that the
//! fix is plain: the part that is missing, and the value written right.

/// The host (as written, brackets and all) and port of a well-formed
/// `host:port`, or what is wrong with it. The
/// examples reuse what was written: `"8080"` is a port missing its host,
/// `"127.0.0.1"` a host missing its port, `"::1:7000"` an IPv6 address and
/// port missing their brackets.
pub(super) fn address_shape<'a>(what: &str, text: &'a str) -> Result<(&'a str, u16), String> {
    // `bind` is where a server is reached from outside; elsewhere loopback is
    // the safe example (an http-proxy `listen` on 0.0.0.0 is an open proxy).
    // 7000 is the control port of the examples.
    let (any_host, any_port) = match what {
        "bind" => ("0.0.0.0", "7000"),
        "server" => ("127.0.0.1", "7000"),
        _ => ("127.0.0.1", "8080"),
    };
    let expected = |example: String| format!("expected host:port, e.g. {example}");
    let missing =
        |part: &str, example: String| format!("the {part} is missing; {}", expected(example));
    if text.trim() != text {
        let example = text.trim().to_owned();
        return Err(format!(
            "remove the spaces around it; {}",
            expected(example)
        ));
    }
    if let Some((scheme, rest)) = text.split_once("://") {
        let bare = rest.split('/').next().unwrap_or(rest).to_owned();
        return Err(format!(
            "drop the {scheme}:// (and any path); {}",
            expected(bare)
        ));
    }
    if text.starts_with('[') && text.ends_with(']') {
        return Err(missing("port", format!("{text}:{any_port}")));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        // No colon: a bare port is missing its host, anything else its port.
        return Err(match text.parse::<u16>() {
            Ok(_) => expected(format!("{any_host}:{text}")),
            Err(_) if text.chars().all(|c| c.is_ascii_digit()) => {
                expected(format!("{any_host}:{any_port}"))
            }
            Err(_) => missing("port", format!("{text}:{any_port}")),
        });
    };
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        // Either `v6:port` without brackets, or a bare IPv6 address.
        let example = match (host.parse::<std::net::Ipv6Addr>(), port.parse::<u16>()) {
            (Ok(_), Ok(_)) => format!("[{host}]:{port}"),
            _ => format!("[{text}]:{any_port}"),
        };
        return Err(format!("put an IPv6 address in brackets, e.g. {example}"));
    }
    match (host.is_empty(), port.is_empty()) {
        (true, _) => Err(missing("host", format!("{any_host}{text}"))),
        (_, true) => Err(missing("port", format!("{text}{any_port}"))),
        _ => port_number(port).map(|port| (host, port)),
    }
}

/// The port of `host:port`, which must be a number that fits 16 bits.
fn port_number(port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(port) => Ok(port),
        Err(_) if port.chars().all(|c| c.is_ascii_digit()) => {
            Err(format!("port {port} is out of range: a port is 1–65535"))
        }
        Err(_) => Err(format!("port {port:?} is not a number: a port is 1–65535")),
    }
}
