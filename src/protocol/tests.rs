use super::codec::tag;
use super::*;

fn samples() -> Vec<Frame> {
    vec![
        Frame::Hello {
            version: VERSION,
            link: LinkHello::Control {
                client_id: [7; 16],
                nonce: [9; 32],
            },
        },
        Frame::Hello {
            version: VERSION,
            link: LinkHello::NamedControl {
                client_id: [7; 16],
                nonce: [9; 32],
                id: "laptop-1.home_A".into(),
            },
        },
        Frame::Hello {
            version: VERSION,
            link: LinkHello::NamedControl {
                client_id: [1; 16],
                nonce: [2; 32],
                id: "x".repeat(MAX_ID_LEN),
            },
        },
        Frame::Hello {
            version: VERSION,
            link: LinkHello::Data {
                session_id: [3; 16],
            },
        },
        Frame::Hello {
            version: VERSION,
            link: LinkHello::Mux {
                session_id: [6; 16],
            },
        },
        Frame::Challenge { nonce: [1; 32] },
        Frame::AuthResponse { mac: [2; 32] },
        Frame::AuthOk {
            session_id: [4; 16],
            authenticated: true,
            mac: [5; 32],
            heartbeat_interval_ms: 10_000,
        },
        Frame::Register {
            name: "web".into(),
            remote_port: 10080,
            public_address: false,
            udp: false,
        },
        Frame::Register {
            name: "web".into(),
            remote_port: 0,
            public_address: true,
            udp: false,
        },
        Frame::Registered {
            name: "web".into(),
            port: 10080,
        },
        Frame::RegisterFailed {
            name: "ssh".into(),
            code: ErrorCode::PortNotAllowed,
            message: "port 22 is not allowed".into(),
        },
        Frame::Heartbeat,
        Frame::OpenData { count: 3 },
        Frame::Start {
            service: "web".into(),
            visitor: "[::1]:5555".parse().expect("literal"),
            public: None,
            udp: false,
        },
        Frame::Start {
            service: "web".into(),
            visitor: "127.0.0.1:80".parse().expect("literal"),
            public: None,
            udp: false,
        },
        Frame::Start {
            service: "web".into(),
            visitor: "192.0.2.7:40000".parse().expect("literal"),
            public: Some("[2001:db8::1]:443".parse().expect("literal")),
            udp: false,
        },
        Frame::Error {
            code: ErrorCode::Other(999),
            message: "é".repeat(MAX_MESSAGE_LEN / 2),
        },
        Frame::Goodbye {
            reason: Farewell::Leaving,
        },
        Frame::Goodbye {
            reason: Farewell::Draining,
        },
        Frame::Goodbye {
            reason: Farewell::Other(200),
        },
        Frame::Unregister { name: "web".into() },
        Frame::Unregistered { name: "web".into() },
    ]
}

#[test]
fn goodbye_spells_leaving_as_before_and_each_reason_once() {
    let leaving = Frame::Goodbye {
        reason: Farewell::Leaving,
    };
    assert_eq!(to_bytes(&leaving).expect("encodes"), [0, 1, tag::GOODBYE]);
    let draining = Frame::Goodbye {
        reason: Farewell::Draining,
    };
    assert_eq!(
        to_bytes(&draining).expect("encodes"),
        [0, 2, tag::GOODBYE, 1]
    );
    assert_eq!(
        decode(&[0, 2, tag::GOODBYE, 0]),
        Err(DecodeError::BadFarewell(0))
    );
    assert_eq!(
        decode(&[0, 3, tag::GOODBYE, 1, 1]),
        Err(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn register_flags_and_start_public_address_are_optional_and_canonical() {
    let plain = Frame::Register {
        name: "a".into(),
        remote_port: 1,
        public_address: false,
        udp: false,
    };
    let plain = to_bytes(&plain).expect("encodes");
    assert_eq!(plain, [0, 5, tag::REGISTER, 1, b'a', 0, 1], "as before");
    let mut flagged = plain.clone();
    flagged[1] = 6;
    flagged.push(1);
    assert!(matches!(
        decode(&flagged),
        Ok(Some((
            Frame::Register {
                public_address: true,
                ..
            },
            8
        )))
    ));
    for (flags, public, udp) in [(2, false, true), (3, true, true)] {
        *flagged.last_mut().expect("flag") = flags;
        let frame = decode(&flagged).expect("decodes").expect("whole").0;
        let expected = Frame::Register {
            name: "a".into(),
            remote_port: 1,
            public_address: public,
            udp,
        };
        assert_eq!(frame, expected);
        assert_eq!(to_bytes(&expected).expect("encodes"), flagged, "canonical");
    }
    for bad in [0, 4, 0x81] {
        *flagged.last_mut().expect("flag") = bad;
        assert_eq!(decode(&flagged), Err(DecodeError::BadFlags(bad)));
    }
    let start = Frame::Start {
        service: "a".into(),
        visitor: "192.0.2.1:1".parse().expect("literal"),
        public: None,
        udp: false,
    };
    let start = to_bytes(&start).expect("encodes");
    assert_eq!(start.len(), 2 + 1 + 2 + 7, "as before");
    let mut truncated = start.clone();
    truncated[1] += 3;
    truncated.extend_from_slice(&[4, 1, 2]);
    assert_eq!(decode(&truncated), Err(DecodeError::Truncated));
    // A UDP flow's `Start` is the same body under type 0x0f.
    let mut flow = start.clone();
    flow[2] = 0x0f;
    let decoded = decode(&flow).expect("decodes").expect("whole").0;
    assert!(
        matches!(decoded, Frame::Start { udp: true, .. }),
        "{decoded:?}"
    );
    assert_eq!(to_bytes(&decoded).expect("encodes"), flow, "canonical");
}

#[test]
fn every_frame_round_trips() {
    for frame in samples() {
        let bytes = to_bytes(&frame).expect("encodes");
        assert!(bytes.len() <= LEN_PREFIX + MAX_FRAME_LEN);
        let (back, used) = decode(&bytes).expect("decodes").expect("complete");
        assert_eq!(back, frame);
        assert_eq!(used, bytes.len());
    }
}

#[test]
fn every_prefix_asks_for_more() {
    for frame in samples() {
        let bytes = to_bytes(&frame).expect("encodes");
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Ok(None), "{frame:?} cut at {cut}");
        }
    }
}

#[test]
fn oversize_and_zero_lengths_are_refused_before_the_body() {
    let too_big = u16::try_from(MAX_FRAME_LEN + 1).expect("fits");
    assert!(matches!(
        decode(&too_big.to_be_bytes()),
        Err(DecodeError::BadLength { .. })
    ));
    assert!(matches!(
        decode(&[0, 0]),
        Err(DecodeError::BadLength { len: 0, .. })
    ));
}

#[test]
fn malformed_bodies_are_errors() {
    assert_eq!(decode(&[0, 1, 0xee]), Err(DecodeError::UnknownType(0xee)));
    assert_eq!(
        decode(&[0, 2, tag::HEARTBEAT, 0]),
        Err(DecodeError::TrailingBytes(1))
    );
    assert_eq!(
        decode(&[0, 2, tag::OPEN_DATA, 0]),
        Err(DecodeError::Truncated)
    );
    let mut hello = to_bytes(&samples()[0]).expect("encodes");
    hello[3] = b'X';
    assert!(matches!(decode(&hello), Err(DecodeError::BadMagic(_))));
    let short_string = [0, 4, tag::REGISTER, 5, b'a', b'b'];
    assert_eq!(decode(&short_string), Err(DecodeError::Truncated));
    let bad_utf8 = [0, 6, tag::REGISTER, 2, 0xff, 0xfe, 0, 1];
    assert_eq!(decode(&bad_utf8), Err(DecodeError::BadUtf8));
}

#[test]
fn over_long_strings_do_not_encode() {
    let frame = Frame::Register {
        name: "x".repeat(MAX_NAME_LEN + 1),
        remote_port: 1,
        public_address: false,
        udp: false,
    };
    assert!(matches!(
        to_bytes(&frame),
        Err(EncodeError::StringTooLong { .. })
    ));
    assert_eq!(
        clamp_message(&"é".repeat(MAX_MESSAGE_LEN)).len(),
        MAX_MESSAGE_LEN
    );
}

/// A named control hello with `id` written raw (no encoder checks).
fn named_hello(id: &[u8]) -> Vec<u8> {
    let mut body = vec![tag::HELLO];
    body.extend_from_slice(&MAGIC);
    body.extend_from_slice(&[VERSION, 3]);
    body.extend_from_slice(&[7; 16]);
    body.extend_from_slice(&[9; 32]);
    body.push(u8::try_from(id.len()).expect("short"));
    body.extend_from_slice(id);
    let len = u16::try_from(body.len()).expect("short");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

#[test]
fn a_named_hello_is_the_control_hello_plus_its_id() {
    let frame = Frame::Hello {
        version: VERSION,
        link: LinkHello::NamedControl {
            client_id: [7; 16],
            nonce: [9; 32],
            id: "laptop".into(),
        },
    };
    let bytes = to_bytes(&frame).expect("encodes");
    assert_eq!(bytes, named_hello(b"laptop"));
    // Kind 0's 55 bytes, then str8 "laptop".
    assert_eq!(bytes.len(), 2 + 55 + 1 + 6);
}

#[test]
fn client_ids_outside_the_name_rule_do_not_decode_or_encode() {
    let too_long = vec![b'a'; MAX_ID_LEN + 1];
    for bad in [&b""[..], b"lap top", b"caf\xc3\xa9", b"a/b", &too_long] {
        let err = decode(&named_hello(bad)).expect_err("refused");
        assert!(
            matches!(
                err,
                DecodeError::BadId(_) | DecodeError::StringTooLong { .. }
            ),
            "{bad:?}: {err:?}"
        );
    }
    let frame = |id: &str| Frame::Hello {
        version: VERSION,
        link: LinkHello::NamedControl {
            client_id: [0; 16],
            nonce: [0; 32],
            id: id.into(),
        },
    };
    assert!(matches!(to_bytes(&frame("")), Err(EncodeError::BadId(_))));
    assert!(matches!(
        to_bytes(&frame("a b")),
        Err(EncodeError::BadId(_))
    ));
    assert!(valid_name("laptop") && !valid_name("") && !valid_name("é"));
}
