//! `porthole demo`: a server, a client and a tiny HTTP service in one process, all
//! on loopback. It proves the tunnel end to end (every response is checked) and
//! then leaves the public port open for `curl` until Ctrl-C.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{self, Event};
use crate::config::{ClientConfig, Protocol, Secret, ServerConfig, ServiceConfig};
use crate::shutdown::{self, Signal};
use crate::tasks::TaskSet;
use crate::transport::TcpTransport;
use crate::wire::with_timeout;

/// Requests pushed through the tunnel, and how many run at once.
const REQUESTS: usize = 40;
const CONCURRENCY: usize = 8;
/// Every demo step must finish within this, or the demo reports failure.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head the tiny service reads.
const MAX_REQUEST_LEN: usize = 8 * 1024;

pub async fn run(once: bool, stop: Signal) -> io::Result<()> {
    let tasks = TaskSet::new();
    let service = TcpListener::bind("127.0.0.1:0").await?;
    let service_addr = service.local_addr()?;
    let served = Arc::new(AtomicU64::new(0));
    tasks.spawn(serve_hello(service, served.clone()));

    let token = crate::wire::short_id(&crate::auth::random::<16>()?);
    let mut server_cfg = ServerConfig::new("127.0.0.1:0");
    server_cfg.token = Some(Secret::new(token.clone()));
    let server_settings = server_cfg.validate().map_err(io::Error::other)?;
    let listener = crate::server::bind(&server_settings).await?;
    let server_addr = listener.local_addr()?;
    let (server_stop, server_signal) = shutdown::channel();
    let server = smol::spawn(crate::server::run(
        listener,
        server_settings,
        TcpTransport,
        server_signal,
    ));

    let mut client_cfg = ClientConfig::new(server_addr.to_string(), Secret::new(token));
    client_cfg.services.push(ServiceConfig {
        name: "demo".into(),
        local: service_addr.to_string(),
        remote_port: 0,
        proxy_protocol: None,
        protocol: Protocol::Tcp,
    });
    let client_settings = client_cfg.validate().map_err(io::Error::other)?;
    let (events_tx, events) = smol::channel::unbounded();
    let (client_stop, client_signal) = shutdown::channel();
    let client = smol::spawn(client::run(
        client_settings,
        TcpTransport,
        client_signal,
        Some(events_tx),
    ));

    println!("porthole demo: everything below runs in this process, on loopback");
    println!(
        "  server   listening for clients on {server_addr} (random token; it never crosses the wire)"
    );
    println!("  service  a tiny HTTP service on {service_addr}");
    let public = with_timeout(STEP_TIMEOUT, "registration", async {
        loop {
            match events.recv().await.map_err(io::Error::other)? {
                Event::Registered { public, .. } => return Ok(public),
                Event::Refused { message, .. } => return Err(io::Error::other(message)),
                _ => {}
            }
        }
    })
    .await?;
    println!("  client   connected, authenticated, and exposed the service at {public}");

    let report = with_timeout(STEP_TIMEOUT, "traffic", push_traffic(&public)).await?;
    println!(
        "  traffic  {REQUESTS}/{REQUESTS} requests answered through the tunnel in {:.1} ms ({CONCURRENCY} at a time, median {:.2} ms, max {:.2} ms)",
        ms(report.total),
        ms(report.median),
        ms(report.max)
    );
    if !once {
        println!("\nTry it:  curl http://{public}/\nPress Ctrl-C to stop.");
        stop.wait().await;
    }
    client_stop.fire();
    let _ = client.await;
    server_stop.fire();
    server.await?;
    println!(
        "demo stopped; the service answered {} requests",
        served.load(Ordering::Relaxed)
    );
    Ok(())
}

struct Report {
    total: Duration,
    median: Duration,
    max: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn push_traffic(public: &str) -> io::Result<Report> {
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let public = public.to_owned();
        workers.push(smol::spawn(async move {
            let mut times = Vec::new();
            for i in (worker..REQUESTS).step_by(CONCURRENCY) {
                let t = Instant::now();
                get(&public, i).await?;
                times.push(t.elapsed());
            }
            Ok::<_, io::Error>(times)
        }));
    }
    let mut times = Vec::new();
    for worker in workers {
        times.extend(worker.await?);
    }
    times.sort();
    Ok(Report {
        total: started.elapsed(),
        median: times.get(times.len() / 2).copied().unwrap_or_default(),
        max: times.last().copied().unwrap_or_default(),
    })
}

/// One HTTP/1.0 request; checks the service's answer names this request.
async fn get(public: &str, i: usize) -> io::Result<()> {
    let mut stream = TcpStream::connect(public).await?;
    stream
        .write_all(format!("GET /{i} HTTP/1.0\r\nHost: demo\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    if response.starts_with("HTTP/1.0 200") && response.contains(&format!("you asked for /{i}\n")) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "unexpected response through the tunnel: {response:?}"
        )))
    }
}

async fn serve_hello(listener: TcpListener, served: Arc<AtomicU64>) {
    let conns = TaskSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let served = served.clone();
        conns.spawn(async move {
            let _ = answer(stream, &served).await;
        });
    }
}

async fn answer(mut stream: TcpStream, served: &AtomicU64) -> io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_LEN {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let n = served.fetch_add(1, Ordering::Relaxed) + 1;
    let body = format!("hello from behind the tunnel! request #{n}, you asked for {path}\n");
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.close().await
}
