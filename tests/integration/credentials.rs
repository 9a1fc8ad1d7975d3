//! Per-client credentials end to end: clients with their own tokens and
//! allow-lists, refusals that look exactly like a wrong token, ports that no
//! client takes from another, revocation by a reload, and token files.

use crate::common::process::{porthole as args, run};
use crate::common::*;
use smol::channel::{Sender, unbounded};
use smol::net::TcpListener;
use std::net::SocketAddr;
use std::time::Duration;

use porthole::client::{ClientError, Event};
use porthole::config::{ClientEntry, ClientSettings, Secret, ServerConfig, ServerSettings};
use porthole::handshake::HandshakeError;
use porthole::protocol::ErrorCode;
use porthole::reload::Request;
use porthole::shutdown::{self, Trigger};

/// How soon a revoked client's session must end.
const REVOKED_WITHIN: Duration = Duration::from_secs(1);

/// A `clients` entry with its own token and, when given, its own range.
fn entry(id: &str, token: &str, range: Option<(u16, u16)>) -> ClientEntry {
    ClientEntry {
        id: id.to_owned(),
        token: Some(Secret::new(token)),
        token_file: None,
        allow_ports: range.map(|r| vec![r]),
        max_services: None,
    }
}

/// Server settings on port 0 with `clients`, and the shared token if `shared`.
fn server_with(clients: Vec<ClientEntry>, shared: bool) -> ServerSettings {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.clients = clients;
    config.token = shared.then(|| Secret::new(TOKEN));
    config.validate().expect("test server config is valid")
}

/// Alice and bob, each with their own token and a range of their own.
fn alice_and_bob() -> Vec<ClientEntry> {
    vec![
        entry("alice", "alice-token", Some((30000, 39999))),
        entry("bob", "bob-token", Some((40000, 49999))),
    ]
}

/// Client settings naming itself `id` (or not), with `token`.
fn named(
    server: SocketAddr,
    id: Option<&str>,
    token: &str,
    services: &[(&str, SocketAddr, u16)],
) -> ClientSettings {
    let mut settings = client_settings(server, token, services);
    settings.id = id.map(str::to_owned);
    settings
}

/// The client's end, which must come within [`PROMPTLY`].
async fn ended(client: Client) -> Result<(), ClientError> {
    within(PROMPTLY, "the client gives up", client.task).await
}

/// Asserts the client was refused as a wrong token is; returns the message.
fn refused_as_a_wrong_token(result: Result<(), ClientError>) -> String {
    match result {
        Err(ClientError::Handshake(HandshakeError::Refused {
            code: ErrorCode::AuthFailed,
            message,
        })) => message,
        other => panic!("expected the server's AuthFailed, got {other:?}"),
    }
}

/// Waits until `good` is registered and `bad` refused, in either order;
/// returns the refusal's message.
async fn one_registered_one_refused(client: &Client, good: &str, bad: &str) -> String {
    let (mut registered, mut refused) = (false, None);
    while !registered || refused.is_none() {
        match client.next_event(PROMPTLY).await {
            Event::Registered { name, .. } if name == good => registered = true,
            Event::Refused { name, message, .. } if name == bad => refused = Some(message),
            Event::Registered { name, .. } if name == bad => {
                panic!("{bad} registered, and should have been refused")
            }
            Event::Refused { name, message, .. } if name == good => {
                panic!("{good} refused: {message}")
            }
            _ => {}
        }
    }
    refused.unwrap_or_default()
}

/// Alice and Bob with their own tokens, exposing echo services `a` and `b`
/// (kept alive by the returned services).
async fn alice_and_bob_clients(server: SocketAddr) -> (Client, Client, [Service; 2]) {
    let (a, b) = (echo_service().await, echo_service().await);
    let alice = start_client(named(
        server,
        Some("alice"),
        "alice-token",
        &[("a", a.addr, 0)],
    ));
    let bob = start_client(named(server, Some("bob"), "bob-token", &[("b", b.addr, 0)]));
    (alice, bob, [a, b])
}

#[test]
fn two_clients_with_their_own_tokens_each_serve_within_their_own_ports() {
    run_test(async {
        let server = start_server(server_with(alice_and_bob(), false))
            .await
            .expect("server starts");
        let (alice, bob, _services) = alice_and_bob_clients(server.addr).await;
        let (a_public, b_public) = (alice.registered("a").await, bob.registered("b").await);
        assert!((30000..=39999).contains(&a_public.port()), "{a_public}");
        assert!((40000..=49999).contains(&b_public.port()), "{b_public}");
        assert_echoes(a_public, 1, 70_000).await;
        assert_echoes(b_public, 2, 70_000).await;
        // Alice may not register inside bob's range, even a port bob holds;
        // her other service is unaffected.
        let c = echo_service().await;
        let grabby = start_client(named(
            server.addr,
            Some("alice"),
            "alice-token",
            &[("mine", c.addr, 0), ("bobs", c.addr, b_public.port())],
        ));
        let message = one_registered_one_refused(&grabby, "mine", "bobs").await;
        assert!(message.contains("outside"), "{message}");
        assert!(message.contains("30000-39999"), "her own range: {message}");
        assert_echoes(b_public, 3, 1000).await;
        grabby.stop().await;
        alice.stop().await;
        bob.stop().await;
        server.stop().await;
    });
}

#[test]
fn a_client_never_takes_over_another_clients_lingering_port() {
    run_test(async {
        // Both may use the whole range, so only ownership stands between them.
        let clients = vec![
            entry("alice", "alice-token", Some((30000, 49999))),
            entry("bob", "bob-token", Some((30000, 49999))),
        ];
        let server = start_server(server_with(clients, false))
            .await
            .expect("server starts");
        let service = echo_service().await;
        let bob = start_client(named(
            server.addr,
            Some("bob"),
            "bob-token",
            &[("b", service.addr, 0)],
        ));
        let port = bob.registered("b").await.port();
        drop(bob); // a crash: bob's port lingers for him
        let alice = start_client(named(
            server.addr,
            Some("alice"),
            "alice-token",
            &[("a", service.addr, 0), ("taken", service.addr, port)],
        ));
        let message = one_registered_one_refused(&alice, "a", "taken").await;
        assert!(message.contains("already in use"), "{message}");
        // Bob, back (a new process), gets his port again.
        let bob = start_client(named(
            server.addr,
            Some("bob"),
            "bob-token",
            &[("b", service.addr, port)],
        ));
        assert_eq!(bob.registered("b").await.port(), port);
        assert_echoes(SocketAddr::from(([127, 0, 0, 1], port)), 4, 1000).await;
        alice.stop().await;
        bob.stop().await;
        server.stop().await;
    });
}

#[test]
fn wrong_ids_wrong_tokens_and_unnamed_clients_are_refused_as_a_wrong_token_is() {
    run_test(async {
        let server = start_server(server_with(alice_and_bob(), false))
            .await
            .expect("server starts");
        let service = echo_service().await;
        let services = [("x", service.addr, 0)];
        let mut messages = Vec::new();
        for (id, token) in [
            (Some("mallory"), "alice-token"), // an id the server does not know
            (Some("alice"), "bob-token"),     // a real id, another client's token
            (Some("alice"), "guess"),         // a real id, a wrong token
            (None, "alice-token"),            // no id: there is no shared token
        ] {
            let client = start_client(named(server.addr, id, token, &services));
            let message = refused_as_a_wrong_token(ended(client).await);
            assert!(message.contains("authentication failed"), "{message}");
            messages.push(message);
        }
        messages.dedup();
        assert_eq!(messages.len(), 1, "one answer for every case: {messages:?}");
        // A wrong token against a shared-token server says the same.
        let shared = start_server(server_settings())
            .await
            .expect("server starts");
        let client = start_client(named(shared.addr, None, "guess", &services));
        assert_eq!(refused_as_a_wrong_token(ended(client).await), messages[0]);
        shared.stop().await;
        server.stop().await;
    });
}

#[test]
fn shared_token_clients_and_named_clients_are_served_side_by_side() {
    run_test(async {
        let server = start_server(server_with(alice_and_bob(), true))
            .await
            .expect("server starts");
        let (one, two) = (echo_service().await, echo_service().await);
        let unnamed = start_client(named(server.addr, None, TOKEN, &[("one", one.addr, 0)]));
        let alice = start_client(named(
            server.addr,
            Some("alice"),
            "alice-token",
            &[("two", two.addr, 0)],
        ));
        let (one_public, two_public) = (
            unnamed.registered("one").await,
            alice.registered("two").await,
        );
        assert_echoes(one_public, 5, 1000).await;
        assert_echoes(two_public, 6, 1000).await;
        // A named client proves its own token, not the shared one.
        let client = start_client(named(
            server.addr,
            Some("alice"),
            TOKEN,
            &[("x", one.addr, 0)],
        ));
        refused_as_a_wrong_token(ended(client).await);
        unnamed.stop().await;
        alice.stop().await;
        server.stop().await;
    });
}

/// A server that puts in force every settings sent on its channel.
struct Reloadable {
    task: smol::Task<std::io::Result<()>>,
    addr: SocketAddr,
    trigger: Trigger,
    reloads: Sender<Request<ServerSettings>>,
}

impl Reloadable {
    /// Hands the server `settings` and waits until it applied them.
    async fn reload(&self, settings: ServerSettings) {
        let (request, applied) = Request::new(settings);
        self.reloads
            .send(request)
            .await
            .expect("server follows reloads");
        let _ = applied.recv().await;
    }
}

async fn start_reloadable(settings: ServerSettings) -> Reloadable {
    let listener = porthole::server::bind(&settings).await.expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let (trigger, signal) = shutdown::channel();
    let (reloads, rx) = unbounded();
    let run = porthole::server::run_reloadable(listener, settings, signal, Some(rx));
    Reloadable {
        task: smol::spawn(run),
        addr,
        trigger,
        reloads,
    }
}

/// `port` can be bound on loopback: a revoked session's ports are closed
/// before its client hears of the revocation.
async fn assert_bindable(port: u16) {
    let bound = TcpListener::bind(("127.0.0.1", port)).await;
    assert!(bound.is_ok(), "port {port} released: {bound:?}");
}

#[test]
fn revoking_a_client_in_a_reload_ends_its_session_and_frees_its_ports_while_others_serve() {
    run_test(async {
        let server = start_reloadable(server_with(alice_and_bob(), false)).await;
        let (alice, bob, [a, _b]) = alice_and_bob_clients(server.addr).await;
        let (a_public, b_public) = (alice.registered("a").await, bob.registered("b").await);
        assert_echoes(a_public, 7, 1000).await;
        // Alice's token changes; bob's entry stays as it was.
        let clients = vec![
            entry("alice", "alice-new-token", Some((30000, 39999))),
            entry("bob", "bob-token", Some((40000, 49999))),
        ];
        server.reload(server_with(clients, false)).await;
        let result = within(REVOKED_WITHIN, "alice's session ends", alice.task).await;
        let message = refused_as_a_wrong_token(result);
        assert!(message.contains("revoked"), "{message}");
        assert_bindable(a_public.port()).await;
        assert_echoes(b_public, 8, 70_000).await;
        // Removing bob entirely revokes him too.
        let alice_only = vec![entry("alice", "alice-new-token", None)];
        server.reload(server_with(alice_only, false)).await;
        let result = within(REVOKED_WITHIN, "bob's session ends", bob.task).await;
        assert!(refused_as_a_wrong_token(result).contains("revoked"));
        assert_bindable(b_public.port()).await;
        // Alice with her new token is welcome again.
        let alice = start_client(named(
            server.addr,
            Some("alice"),
            "alice-new-token",
            &[("a", a.addr, 0)],
        ));
        assert_echoes(alice.registered("a").await, 9, 1000).await;
        alice.stop().await;
        server.trigger.fire();
        within(PROMPTLY, "server shutdown", server.task)
            .await
            .expect("server stops cleanly");
    });
}

#[test]
fn token_files_load_and_one_others_may_read_is_warned_about() {
    let dir = std::env::temp_dir().join(format!("porthole-token-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = dir.join("laptop.key");
    std::fs::write(&key, "laptop-secret\n").expect("write token file");
    let set_mode = |mode| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let config = dir.join("server.ron");
    let text = r#"(bind: "127.0.0.1:0", clients: [(id: "laptop", token_file: "laptop.key")])"#;
    std::fs::write(&config, text).expect("write config");
    let check = || run(args(&["check", "-c", config.to_str().expect("utf-8 path")]));
    set_mode(0o644);
    let out = check();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("(id: \"laptop\", token: Some(\"********\")"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("laptop-secret"), "{}", out.stdout);
    let warning = format!("chmod 600 {}", key.display());
    assert!(out.stderr.contains(&warning), "{}", out.stderr);
    set_mode(0o600);
    let out = check();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stderr.contains("chmod"), "{}", out.stderr);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn the_client_one_liner_takes_its_id() {
    // `--id` reaches the settings: a bad one is refused, naming the rule.
    let out = run(args(&[
        "client",
        "--server",
        "127.0.0.1:1",
        "--token",
        "t",
        "--id",
        "not ok",
        "--expose",
        "8080",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("id \"not ok\" is invalid"),
        "{}",
        out.stderr
    );
}
