//! The real binaries: a service's flow limit refuses and counts new
//! sources until a flow ends; a flooded flow leaves another flow and TCP
//! visitors served; a real `dig` resolves a name through the tunnel.

use super::*;

// ---------------------------------------------------------------- real binaries

/// A real server and client with admin endpoints, in a scratch directory.
struct Binaries {
    /// Both killed on drop.
    _server: Proc,
    _client: Proc,
    server_admin: SocketAddr,
    client_admin: SocketAddr,
    /// The public address of each service, in the order given.
    publics: Vec<SocketAddr>,
    _dir: Scratch,
}

/// Starts `porthole server` with `server_extra` config fields and `porthole
/// client` exposing `services` (name, local address, protocol), both from
/// RON files; waits until every service is public.
fn binaries(test: &str, server_extra: &str, services: &[(&str, SocketAddr, Protocol)]) -> Binaries {
    let dir = Scratch::new("udp", test);
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a config");
        path.to_string_lossy().into_owned()
    };
    let config = write(
        "server.ron",
        format!(
            r#"(bind: "127.0.0.1:0", token: "{BIN_TOKEN}", admin: Some("127.0.0.1:0"), {server_extra})"#
        ),
    );
    let mut server = Proc::spawn(args(&["server", "-c", &config]));
    let server_admin = server.address_after("admin endpoint on http://", LINE);
    let addr = server.address_after("listening for clients on ", LINE);
    let list: Vec<String> = services
        .iter()
        .map(|(name, local, protocol)| {
            format!(r#"(name: "{name}", local: "{local}", protocol: {protocol:?})"#)
        })
        .collect();
    let config = write(
        "client.ron",
        format!(
            r#"(server: "{addr}", token: "{BIN_TOKEN}", admin: Some("127.0.0.1:0"),
                services: [{}])"#,
            list.join(", ")
        ),
    );
    let mut client = Proc::spawn(args(&["client", "-c", &config]));
    let client_admin = client.address_after("admin endpoint on http://", LINE);
    // One control link answers the registrations in the order they were sent.
    let publics = services
        .iter()
        .map(|(name, ..)| client.address_after(&format!("service {name} is public at "), LINE))
        .collect();
    Binaries {
        _server: server,
        _client: client,
        server_admin,
        client_admin,
        publics,
        _dir: dir,
    }
}

/// `name{labels}` in a scrape of `admin` once it is at least `least`.
fn at_least(admin: SocketAddr, name: &str, labels: &[(&str, &str)], least: f64) -> f64 {
    until(LINE, || {
        let text = scrape(admin);
        match value(&text, name, labels) {
            Some(v) if v >= least => Ok(v),
            got => Err(format!(
                "{name}{labels:?} is {got:?}, not {least} or more:\n{text}"
            )),
        }
    })
}

// ---------------------------------------------------------------- flow limit

#[test]
fn past_max_udp_flows_a_new_source_is_dropped_and_counted_until_a_flow_ends() {
    run_test(async {
        const IDLE: Duration = Duration::from_secs(2);
        let service = udp_echo_service().await;
        let b = binaries(
            "flow-limit",
            r#"max_udp_flows: 3, udp_idle_timeout: "2s""#,
            &[("limited", service.addr, Protocol::Udp)],
        );
        let public = b.publics[0];
        let mut flows = Vec::new();
        for i in 0..3 {
            let visitor = udp_visitor(public).await;
            let hello = format!("flow {i}").into_bytes();
            ask(&visitor, &hello, &hello).await;
            flows.push((visitor, hello));
        }
        // While the three flows stay busy, the fourth source is dropped.
        let fourth = udp_visitor(public).await;
        let mut last_busy = Instant::now();
        for round in 0..10 {
            last_busy = Instant::now();
            for (visitor, hello) in &flows {
                ask(visitor, hello, hello).await;
            }
            send(&fourth, b"fourth").await;
            let answered = anything_within(&fourth, Duration::from_millis(100)).await;
            assert!(
                !answered,
                "a fourth flow was served in round {round}, past max_udp_flows 3"
            );
        }
        assert_eq!(
            service.sources().len(),
            3,
            "the fourth source never reached the service"
        );
        let flow_limit = [("reason", "udp_flow_limit")];
        let refused = at_least(
            b.server_admin,
            "porthole_server_refusals_total",
            &flow_limit,
            1.0,
        );
        let limited = [("service", "limited")];
        let text = scrape(b.server_admin);
        assert_eq!(
            must(&text, "porthole_server_visitors_total", &limited),
            3.0,
            "flows are visitors"
        );

        // Left alone, the three flows end, and the fourth source is served.
        let sends = (IDLE + PROMPTLY).as_millis() / 250;
        let asked = ask_with(
            &fourth,
            b"fourth",
            b"fourth",
            Duration::from_millis(250),
            sends as usize,
        )
        .await
        .unwrap_or_else(|_| panic!("the fourth source was never served"));
        let waited = last_busy.elapsed();
        eprintln!(
            "{refused} refusals; the fourth flow served {waited:?} after the others' last datagram"
        );
        assert!(
            waited >= IDLE,
            "served after {waited:?}, before the others could end"
        );
        assert!(
            asked.others.is_empty(),
            "only its own answer: {:?}",
            asked.others
        );
        assert_eq!(service.sources().len(), 4);
        at_least(
            b.server_admin,
            "porthole_server_visitors_total",
            &limited,
            4.0,
        );
    });
}

// ---------------------------------------------------------------- flood

/// Datagram size of the flood: about an Ethernet frame's worth.
const FLOOD_DATAGRAM: usize = 1_400;
/// How long the other flow's and the TCP visitors' exchanges may take under
/// the flood, each.
const UNDER_FLOOD: Duration = Duration::from_secs(5);
/// Exchanges each of them makes.
const EXCHANGES: usize = 50;

/// Sends [`FLOOD_DATAGRAM`]s to `public` as fast as one thread can until
/// `stop`, for at most `limit`; says once it is under way. Returns the
/// datagrams sent and whether `stop` (not `limit`) ended it.
fn flood(
    public: SocketAddr,
    stop: &AtomicBool,
    started: smol::channel::Sender<()>,
    limit: Duration,
) -> (u64, bool) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the flood");
    socket.connect(public).expect("connect the flood");
    let datagram = payload(0xf100d, FLOOD_DATAGRAM);
    let began = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if began.elapsed() >= limit {
            return (sent, false);
        }
        // A refusal (the ICMP of an earlier datagram) is one lost datagram.
        if socket.send(&datagram).is_ok() {
            sent += 1;
        }
        if sent == 1_000 {
            let _ = started.try_send(());
        }
    }
    (sent, true)
}

#[test]
fn a_flooded_flow_leaves_another_flow_and_tcp_visitors_served() {
    run_test(async {
        let udp = udp_echo_service().await;
        let tcp = echo_service().await;
        let b = binaries(
            "flood",
            "",
            &[
                ("flooded", udp.addr, Protocol::Udp),
                ("tcp", tcp.addr, Protocol::Tcp),
            ],
        );
        let (public_udp, public_tcp) = (b.publics[0], b.publics[1]);
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started) = smol::channel::bounded(1);
        let flooding = {
            let stop = stop.clone();
            // The flood outlasts the others' deadline: ending it is their
            // finishing, not its own limit.
            let limit = UNDER_FLOOD + PROMPTLY;
            std::thread::spawn(move || flood(public_udp, &stop, started_tx, limit))
        };
        within(PROMPTLY, "the flood under way", started.recv())
            .await
            .expect("flood thread running");

        let resends = AtomicU64::new(0);
        let other_flow = within(UNDER_FLOOD, "request/responses of another flow", async {
            let began = Instant::now();
            let visitor = udp_visitor(public_udp).await;
            let mut answered: Vec<Vec<u8>> = Vec::new();
            for i in 0..EXCHANGES {
                let request = format!("request {i}").into_bytes();
                let pace = Duration::from_millis(100);
                let asked = ask_with(&visitor, &request, &request, pace, 50)
                    .await
                    .unwrap_or_else(|_| panic!("request {i} of the other flow never answered"));
                resends.fetch_add(asked.sends as u64 - 1, Ordering::Relaxed);
                // Late copies of earlier answers only; never the flood's.
                assert!(
                    asked.others.iter().all(|d| answered.contains(d)),
                    "request {i}: a stray datagram"
                );
                answered.push(request);
            }
            began.elapsed()
        });
        let tcp_visitors = within(UNDER_FLOOD, "TCP visitors of the same client", async {
            let began = Instant::now();
            for i in 0..EXCHANGES {
                assert_echoes(public_tcp, 0x7c9 + i as u64, 1_000).await;
            }
            began.elapsed()
        });
        let (udp_took, tcp_took) = futures_lite::future::zip(other_flow, tcp_visitors).await;
        stop.store(true, Ordering::Relaxed);
        let (flooded, stopped) = flooding.join().expect("flood thread");
        assert!(
            stopped,
            "the flood ended on its own before the others were done"
        );
        eprintln!(
            "under a flood of {flooded} datagrams ({} reached the service): \
             {EXCHANGES} request/responses of another flow in {udp_took:?} ({} resends), \
             {EXCHANGES} TCP visitors in {tcp_took:?}",
            udp.datagrams(),
            resends.load(Ordering::Relaxed)
        );

        // Overload drops are counted, at both ends and in both directions.
        let server = scrape(b.server_admin);
        let client = scrape(b.client_admin);
        let dropped = [
            must(
                &server,
                "porthole_server_udp_dropped_total",
                &[("direction", "to_client")],
            ),
            must(
                &server,
                "porthole_server_udp_dropped_total",
                &[("direction", "to_visitor")],
            ),
            must(
                &client,
                "porthole_client_udp_dropped_total",
                &[("service", "flooded"), ("direction", "to_service")],
            ),
            must(
                &client,
                "porthole_client_udp_dropped_total",
                &[("service", "flooded"), ("direction", "to_server")],
            ),
        ];
        eprintln!(
            "dropped: server to client {}, to visitors {}; client to the service {}, to the server {}",
            dropped[0], dropped[1], dropped[2], dropped[3]
        );
    });
}

// ---------------------------------------------------------------- dig

/// What the test's DNS responder answers for `example.test`.
const EXAMPLE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

#[test]
fn dig_resolves_a_name_through_the_tunnel() {
    let test = "dig_resolves_a_name_through_the_tunnel";
    let Some(dig) = program("dig", test) else {
        return;
    };
    run_test(async {
        let dns = dns_responder("example.test", EXAMPLE_IP).await;
        let port = dns.addr.port();
        let mut server = Proc::spawn(args(&[
            "server",
            "--bind",
            "127.0.0.1:0",
            "--token",
            BIN_TOKEN,
        ]));
        let addr = server.address_after("listening for clients on ", LINE);
        // `udp:PORT`: a UDP service on 127.0.0.1:PORT, named `udp-PORT`.
        let expose = format!("udp:{port}");
        let mut client = Proc::spawn(args(&[
            "client",
            "--server",
            &addr.to_string(),
            "--token",
            BIN_TOKEN,
            "--expose",
            &expose,
        ]));
        let public = client.address_after(&format!("service udp-{port} is public at "), LINE);
        // dig tries once per run; a run whose datagram was lost is run
        // again, a bounded number of times.
        let mut outputs = Vec::new();
        for _ in 0..3 {
            let mut cmd = Command::new(&dig);
            cmd.arg(format!("@{}", public.ip()))
                .args(["-p", &public.port().to_string()])
                .args(["example.test", "A", "+short", "+tries=1", "+time=2"]);
            let out = smol::unblock(move || run(cmd)).await;
            let answer = out.stdout.trim().to_owned();
            outputs.push(format!("{answer:?} {}", out.stderr.trim()));
            if answer == EXAMPLE_IP.to_string() {
                break;
            }
        }
        let last = outputs.last().expect("dig ran");
        assert!(
            last.starts_with(&format!("\"{EXAMPLE_IP}\"")),
            "dig's answers: {outputs:?}"
        );
        // The query reached the responder from the client's flow socket.
        assert!(dns.datagrams() >= 1);
        assert!(dns.sources().iter().all(|s| s.ip().is_loopback()));
        drop((client, server));
    });
}
