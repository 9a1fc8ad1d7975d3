//! The notifier against a real datagram socket standing in for systemd's, in
//! a fresh directory or the abstract namespace; every receive has a deadline.

use super::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;

/// How long a receive waits for a datagram before the test fails.
const RECV_DEADLINE: Duration = Duration::from_secs(5);

/// A fresh directory under the system's temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("porthole-notify-{}-{n}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir(&dir).expect("create the scratch directory");
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A listening socket that gives up after [`RECV_DEADLINE`].
fn listening(addr: &SocketAddr) -> UnixDatagram {
    let socket = UnixDatagram::bind_addr(addr).expect("bind the stand-in for systemd");
    socket
        .set_read_timeout(Some(RECV_DEADLINE))
        .expect("set the receive deadline");
    socket
}

/// The next datagram, as text.
fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a datagram within the deadline");
    String::from_utf8(buf[..n].to_vec()).expect("a notification is UTF-8")
}

fn monotonic_micros() -> u128 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    Duration::from(now).as_micros()
}

#[test]
fn a_path_socket_hears_every_message_in_order() {
    let dir = Scratch::new("path");
    let path = dir.path().join("notify.sock");
    let systemd = listening(&SocketAddr::from_pathname(&path).expect("a path address"));
    let notifier = Notifier::new(&path).expect("an absolute path");
    assert_eq!(notifier.address(), path.as_os_str());

    notifier.ready();
    notifier.status("serving 2 services");
    let before = monotonic_micros();
    notifier.reloading();
    let after = monotonic_micros();
    notifier.ready();
    notifier.stopping();

    assert_eq!(recv(&systemd), "READY=1");
    assert_eq!(recv(&systemd), "STATUS=serving 2 services");
    let reloading = recv(&systemd);
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("a RELOADING=1 message: {reloading:?}"));
    let usec: u128 = usec.parse().expect("MONOTONIC_USEC is an integer");
    assert!(usec > 0, "{reloading:?}");
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} is CLOCK_MONOTONIC in µs, read between {before} and {after}"
    );
    assert_eq!(recv(&systemd), "READY=1");
    assert_eq!(recv(&systemd), "STOPPING=1");
    assert!(!notifier.warned.load(Ordering::Relaxed));
}

#[test]
fn an_abstract_name_is_written_with_an_at_sign() {
    let name = format!(
        "porthole-notify-test-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    );
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract address");
    let systemd = listening(&addr);
    let notifier = Notifier::new(format!("@{name}")).expect("an abstract address");

    notifier.ready();
    notifier.stopping();

    assert_eq!(recv(&systemd), "READY=1");
    assert_eq!(recv(&systemd), "STOPPING=1");
}

#[test]
fn a_missing_socket_is_logged_not_fatal() {
    let dir = Scratch::new("missing");
    let notifier = Notifier::new(dir.path().join("nobody-listens")).expect("an absolute path");

    let err = notifier.send(READY).expect_err("nothing is bound there");
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(!notifier.warned.load(Ordering::Relaxed));
    notifier.ready();
    assert!(
        notifier.warned.load(Ordering::Relaxed),
        "the first failure warns"
    );
    notifier.reloading();
    notifier.stopping();
}

#[test]
fn unset_empty_and_unsupported_values_mean_no_notifier() {
    assert!(Notifier::from_value(None).is_none());
    assert!(Notifier::from_value(Some(OsString::new())).is_none());
    assert!(Notifier::from_value(Some("run/notify".into())).is_none());
    assert!(Notifier::from_value(Some("vsock:2:1234".into())).is_none());
    let notifier = Notifier::from_value(Some("/run/systemd/notify".into())).expect("a path");
    assert_eq!(notifier.address(), "/run/systemd/notify");
}

#[test]
fn addresses_that_are_not_unix_socket_addresses_are_refused() {
    let relative = Notifier::new("notify.sock").expect_err("relative");
    assert!(
        matches!(relative, AddressError::Unsupported(_)),
        "{relative:?}"
    );
    assert!(
        relative.to_string().contains("\"notify.sock\""),
        "{relative}"
    );

    let long = format!("/{}", "x".repeat(200));
    let err = Notifier::new(&long).expect_err("longer than sun_path");
    assert!(matches!(err, AddressError::Invalid { .. }), "{err:?}");
    let err = Notifier::new(format!("@{}", "x".repeat(200))).expect_err("longer than sun_path");
    assert!(matches!(err, AddressError::Invalid { .. }), "{err:?}");
}

#[test]
fn status_text_stays_one_bounded_line() {
    assert_eq!(status_message("a\nSTOPPING=1"), "STATUS=a STOPPING=1");
    assert_eq!(status_message("tab\there\r\0"), "STATUS=tab here  ");

    // 'é' is two bytes: cutting at an odd byte count must not split it.
    let long = "é".repeat(MAX_STATUS_LEN_BYTES);
    let message = status_message(&long);
    let text = message.strip_prefix("STATUS=").expect("the key");
    assert!(text.len() <= MAX_STATUS_LEN_BYTES, "{}", text.len());
    assert!(text.len() > MAX_STATUS_LEN_BYTES - 2, "{}", text.len());
    assert!(text.chars().all(|c| c == 'é'));
}

#[test]
fn reloading_carries_microseconds() {
    let message = reloading_message(Duration::new(12, 345_678_901));
    assert_eq!(message, "RELOADING=1\nMONOTONIC_USEC=12345678");
}

#[test]
fn the_process_notifier_is_read_once() {
    let first = notifier().map(std::ptr::from_ref);
    let second = notifier().map(std::ptr::from_ref);
    assert_eq!(first, second);
}
