use super::*;
use crate::http_proxy::head::parse_request_head;

struct Fixed(Health);

impl Probe for Fixed {
    fn metrics(&self, out: &mut Exposition) {
        out.single("porthole_test_up", crate::metrics::Kind::Gauge, "test", 1);
    }
    fn health(&self) -> Health {
        self.0.clone()
    }
    fn status(&self) -> Status {
        Status::new("forward", None)
    }
}

fn get(probe: &dyn Probe, request: &str) -> Response {
    let (head, _) = parse_request_head(request.as_bytes())
        .expect("valid")
        .expect("whole");
    respond(&head, probe)
}

#[test]
fn routes() {
    let ok = Fixed(Health::Serving);
    let metrics = get(&ok, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body.clone()).expect("utf-8");
    assert!(text.contains("\nporthole_test_up 1\n"), "{text}");
    assert!(text.contains("porthole_build_info{version=\""), "{text}");
    assert!(text.contains("process_open_fds "), "{text}");
    assert_eq!(get(&ok, "GET /healthz HTTP/1.0\r\n\r\n").body, b"ok\n");
    let down = Fixed(Health::Unavailable("control link down".into()));
    let health = get(&down, "GET /healthz?verbose HTTP/1.1\r\n\r\n");
    assert_eq!(
        (health.status, &health.body[..]),
        (503, &b"control link down\n"[..])
    );
    let status = get(&ok, "GET /status HTTP/1.1\r\n\r\n");
    let parsed: Status = serde_json::from_slice(&status.body).expect("status is JSON");
    assert_eq!(parsed.role, "forward");
    assert_eq!(get(&ok, "GET / HTTP/1.1\r\n\r\n").status, 404);
    assert_eq!(
        get(&ok, "GET http://x/metrics HTTP/1.1\r\n\r\n").status,
        404
    );
    let post = get(&ok, "POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((post.status, post.allow), (405, Some("GET, HEAD")));
    let head = get(&ok, "HEAD /healthz HTTP/1.1\r\n\r\n").encode();
    let head = String::from_utf8(head).expect("ascii");
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n")
            && head.ends_with(
                "Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            ),
        "{head}"
    );
}

#[test]
fn status_table_lists_services() {
    let mut s = Status::new("server", None);
    s.listen = Some("127.0.0.1:7000".into());
    s.services.push(status::ServiceStatus {
        name: "web".into(),
        state: "serving".into(),
        public: Some("0.0.0.0:8080".into()),
        client: Some("127.0.0.1:5555".into()),
        visitors: crate::metrics::TrafficTotals {
            total: 12,
            active: 2,
            received_bytes: 1536,
            sent_bytes: 3 << 20,
            failed: 0,
        },
        ..Default::default()
    });
    let table = s.render();
    assert!(table.contains("(no clients connected)"), "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("web"))
        .expect("web row");
    let cells: Vec<&str> = line
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        cells,
        [
            "web",
            "serving",
            "0.0.0.0:8080",
            "-",
            "127.0.0.1:5555",
            "2",
            "12",
            "1.5 KiB",
            "3.0 MiB"
        ]
    );
}

#[test]
fn status_table_names_each_session_by_its_id_or_a_dash() {
    let mut s = Status::new("server", None);
    for (session, id) in [("637eb585", Some("laptop")), ("0e7628ad", None)] {
        s.clients.push(status::ClientStatus {
            session: session.into(),
            id: id.map(str::to_owned),
            address: "192.0.2.7:40122".into(),
            connected_seconds: 60,
            transport: "tcp".into(),
            services: vec!["web".into()],
        });
    }
    let table = s.render();
    let header = table
        .lines()
        .find(|l| l.starts_with("SESSION"))
        .expect("header");
    assert!(header.starts_with("SESSION   ID      ADDRESS"), "{table}");
    let row = |session: &str| {
        let line = table.lines().find(|l| l.starts_with(session)).expect("row");
        line.split_whitespace().nth(1).map(str::to_owned)
    };
    assert_eq!(row("637eb585").as_deref(), Some("laptop"));
    assert_eq!(row("0e7628ad").as_deref(), Some("-"));
}

#[test]
fn a_clients_status_table_has_a_row_per_server() {
    let mut s = Status::new("client", None);
    s.servers.push(status::ServerStatus {
        address: "a.example.com:7000".into(),
        state: "connected".into(),
        session: Some("637eb585".into()),
        connected_seconds: 120,
        transport: "tcp".into(),
        services: vec!["web".into(), "ssh".into()],
    });
    s.servers.push(status::ServerStatus {
        address: "b.example.com:7000".into(),
        state: "reconnecting: connection refused".into(),
        transport: "tcp".into(),
        ..Default::default()
    });
    let table = s.render();
    let header = table
        .lines()
        .find(|l| l.starts_with("SERVER"))
        .expect("header");
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "SERVER",
            "STATE",
            "SESSION",
            "TRANSPORT",
            "CONNECTED",
            "SERVICES"
        ]
    );
    let row = |server: &str| {
        let line = table.lines().find(|l| l.starts_with(server)).expect("row");
        let cells = line.split("  ").filter(|c| !c.is_empty()).map(str::trim);
        cells.map(str::to_owned).collect::<Vec<_>>()
    };
    let a = [
        "a.example.com:7000",
        "connected",
        "637eb585",
        "tcp",
        "2m",
        "web, ssh",
    ];
    assert_eq!(row("a.example.com"), a);
    let b = [
        "b.example.com:7000",
        "reconnecting: connection refused",
        "-",
        "tcp",
        "-",
    ];
    assert_eq!(row("b.example.com"), b);
    let empty = Status::new("client", None).render();
    assert!(empty.contains("(no servers)"), "{empty}");
}
