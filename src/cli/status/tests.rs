use super::*;
use std::net::TcpListener;
use std::path::PathBuf;

const ADDR: SocketAddr = DEFAULT_ADMIN;

fn ok_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn sample() -> Status {
    Status {
        role: "forward".to_owned(),
        version: "9.9.9".to_owned(),
        ..Status::default()
    }
}

#[test]
fn a_200_with_a_status_parses_and_keeps_fields_this_version_lacks() {
    let mut json = serde_json::to_value(sample()).expect("serialise");
    json["from_the_future"] = serde_json::json!(1);
    let fetched = parse(ADDR, &ok_response(&json.to_string())).expect("a status");
    assert_eq!(fetched.status, sample());
    assert!(fetched.output(true).contains("\"from_the_future\": 1"));
    assert!(fetched.output(false).starts_with("porthole forward 9.9.9"));
}

#[test]
fn answers_that_are_not_a_status_say_why() {
    let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let err = parse(ADDR, not_found).expect_err("404");
    assert!(
        matches!(err, StatusError::NotOk { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("404 Not Found"), "{err}");

    let err = parse(ADDR, &ok_response("{not json")).expect_err("bad JSON");
    assert!(matches!(err, StatusError::Json { .. }), "{err}");
    let err = parse(ADDR, &ok_response("[1, 2]")).expect_err("not an object");
    assert!(matches!(err, StatusError::Json { .. }), "{err}");

    let mut short = ok_response("{}");
    short.pop();
    let err = parse(ADDR, &short).expect_err("one byte short");
    assert!(
        matches!(
            err,
            StatusError::Truncated {
                got: 1,
                declared: 2,
                ..
            }
        ),
        "{err}"
    );

    for garbage in [
        &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-",
    ] {
        let err = parse(ADDR, garbage).expect_err("not HTTP");
        assert!(matches!(err, StatusError::NotHttp { .. }), "{err}");
    }
}

#[test]
fn refused_says_how_to_turn_the_endpoint_on() {
    let text = StatusError::Refused(ADDR).to_string();
    assert_eq!(
        text,
        "nothing answers at 127.0.0.1:9090: is porthole running with admin: Some(\"127.0.0.1:9090\") / --admin? (connection refused)"
    );
}

#[test]
fn target_from_the_flag_the_file_or_the_default() {
    let mut args = StatusArgs::default();
    assert_eq!(
        target(&args).expect("defaults"),
        Target {
            addr: DEFAULT_ADMIN,
            timeout: DEFAULT_TIMEOUT
        }
    );
    args.admin = Some("0.0.0.0:9091".to_owned());
    args.timeout = Some("250ms".to_owned());
    let t = target(&args).expect("valid flags");
    assert_eq!(t.addr, "127.0.0.1:9091".parse().expect("address"));
    assert_eq!(t.timeout, Duration::from_millis(250));

    args.admin = Some("127.0.0.1".to_owned());
    let err = target(&args).expect_err("no port").to_string();
    assert!(err.contains("--admin \"127.0.0.1\""), "{err}");
    args.admin = None;
    args.timeout = Some("0s".to_owned());
    let err = target(&args).expect_err("zero").to_string();
    assert!(err.contains("--timeout"), "{err}");
}

#[test]
fn a_config_file_names_the_endpoint_or_says_it_has_none() {
    let dir = std::env::temp_dir().join(format!("porthole-status-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let write = |name: &str, admin: &str| -> PathBuf {
        let path = dir.join(name);
        let text =
            format!("(forwards: [(listen: \"127.0.0.1:0\", target: \"127.0.0.1:1\")]{admin})");
        std::fs::write(&path, text).expect("write config");
        path
    };
    let mut args = StatusArgs {
        config: Some(write("with.ron", ", admin: Some(\"127.0.0.1:9092\")")),
        ..StatusArgs::default()
    };
    let addr = target(&args).expect("has admin").addr;
    assert_eq!(addr, "127.0.0.1:9092".parse().expect("address"));
    args.config = Some(write("without.ron", ""));
    let err = target(&args).expect_err("no admin").to_string();
    assert!(
        err.contains("without.ron") && err.contains("--admin"),
        "{err}"
    );
    args.config = Some(write("zero.ron", ", admin: Some(\"127.0.0.1:0\")"));
    let err = target(&args).expect_err("port 0").to_string();
    assert!(err.contains("port 0"), "{err}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// Serves one connection with `answer` on a thread; returns the target.
fn one_answer(timeout: Duration, answer: impl FnOnce(TcpStream) + Send + 'static) -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            answer(stream);
        }
    });
    Target { addr, timeout }
}

#[test]
fn an_endpoint_that_never_answers_times_out_within_the_deadline() {
    let (hold, held) = std::sync::mpsc::channel::<TcpStream>();
    let target = one_answer(Duration::from_millis(200), move |stream| {
        // Kept open, never answered, until the test ends.
        let _ = hold.send(stream);
    });
    let started = Instant::now();
    let err = fetch(target).expect_err("silence");
    assert!(matches!(err, StatusError::TimedOut { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(held);
}

#[test]
fn an_answer_over_the_cap_is_refused_not_buffered() {
    let target = one_answer(Duration::from_secs(10), |mut stream| {
        let mut head = [0; 1024];
        let _ = stream.read(&mut head);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(MAX_RESPONSE_BYTES / chunk.len() + 2) {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let err = fetch(target).expect_err("too large");
    assert!(matches!(err, StatusError::TooLarge { .. }), "{err}");
}
