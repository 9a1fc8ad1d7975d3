//! End to end through the library API, all in one process on loopback: bulk data
//! both ways, many visitors at once, several services per client, half-close in each
//! direction, and a local service that is down and then back.

use crate::common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::channel::unbounded;
use smol::net::TcpStream;
use std::net::SocketAddr;

const MIB: usize = 1024 * 1024;

#[test]
fn eight_mib_each_way_arrive_intact() {
    run_test(async {
        let t = TunnelBuilder::new().start().await;
        assert_echoes(t.public, 0x8_0000, 8 * MIB).await;
        t.stop().await;
    });
}

#[test]
fn fifty_concurrent_visitors_on_one_service_all_arrive_intact() {
    run_test(async {
        let t = TunnelBuilder::new().start().await;
        // Sizes around the 64 KiB relay buffer and well above it, so some visitors
        // fill socket buffers and exercise backpressure while others are tiny.
        let sizes = [1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 300 * 1024];
        let visitors: Vec<_> = (0..50u64)
            .map(|i| {
                let len = sizes[i as usize % sizes.len()];
                smol::spawn(assert_echoes(t.public, 1000 + i, len))
            })
            .collect();
        for visitor in visitors {
            visitor.await;
        }
        t.stop().await;
    });
}

#[test]
fn three_services_on_one_client_each_reach_their_own_backend() {
    run_test(async {
        let backends = [
            ("alpha", tagged_echo_service("alpha:").await),
            ("beta", tagged_echo_service("beta:").await),
            ("gamma", tagged_echo_service("gamma:").await),
        ];
        let t = backends
            .iter()
            .fold(TunnelBuilder::new(), |b, (name, service)| {
                b.service(name, service.addr)
            })
            .start()
            .await;
        let names: Vec<&str> = backends.iter().map(|(name, _)| *name).collect();
        let publics = &t.publics;
        let mut ports: Vec<u16> = publics.values().map(SocketAddr::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 3, "each service has its own public port");
        for (i, name) in names.iter().enumerate() {
            let body = payload(i as u64, 100_000);
            let got = exchange(publics[*name], &body).await.expect("round trip");
            let tag = format!("{name}:");
            assert!(
                got.starts_with(tag.as_bytes()),
                "{name}'s visitor reached the backend tagged {:?}",
                String::from_utf8_lossy(&got[..got.len().min(8)])
            );
            assert_eq!(sha256(&got[tag.len()..]), sha256(&body), "{name} echo");
        }
        t.stop().await;
    });
}

#[test]
fn visitor_that_half_closes_still_receives_the_whole_reply() {
    run_test(async {
        // The backend reads to EOF, then answers with the hash of what it read
        // followed by a large body: the reply can only start after the visitor's FIN
        // crossed the tunnel, and must still arrive whole.
        let reply_body = payload(7, 3 * MIB + 1);
        let body_for_service = reply_body.clone();
        let service = serve(local_listener().await, move |mut stream| {
            let body = body_for_service.clone();
            async move {
                let mut request = Vec::new();
                stream.read_to_end(&mut request).await?;
                stream.write_all(&sha256(&request)).await?;
                stream.write_all(&body).await?;
                stream.close().await
            }
        });
        let t = TunnelBuilder::new()
            .service("reply", service.addr)
            .start()
            .await;
        let public = t.public;

        let request = payload(8, 2 * MIB + 3);
        let got = exchange(public, &request).await.expect("exchange");
        assert_eq!(got.len(), 32 + reply_body.len(), "whole reply arrived");
        assert_eq!(
            &got[..32],
            &sha256(&request)[..],
            "service got the whole request"
        );
        assert_eq!(sha256(&got[32..]), sha256(&reply_body), "reply intact");
        t.stop().await;
    });
}

#[test]
fn service_that_half_closes_still_receives_what_the_visitor_sends_afterwards() {
    run_test(async {
        // The backend sends its whole greeting and shuts its write side down first;
        // only after seeing that EOF does the visitor send, and the backend must
        // still receive every byte.
        let greeting = payload(9, MIB + 1);
        let (received_tx, received) = unbounded();
        let greeting_for_service = greeting.clone();
        let service = serve(local_listener().await, move |mut stream| {
            let (greeting, received_tx) = (greeting_for_service.clone(), received_tx.clone());
            async move {
                stream.write_all(&greeting).await?;
                stream.close().await?;
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await?;
                let _ = received_tx.send(got).await;
                Ok(())
            }
        });
        let t = TunnelBuilder::new()
            .service("greeter", service.addr)
            .start()
            .await;
        let public = t.public;

        let mut visitor = TcpStream::connect(public).await.expect("connect");
        let mut got = Vec::new();
        visitor.read_to_end(&mut got).await.expect("read greeting");
        assert_eq!(sha256(&got), sha256(&greeting), "greeting intact up to EOF");
        let request = payload(10, 2 * MIB + 5);
        visitor.write_all(&request).await.expect("send after EOF");
        visitor.close().await.expect("shut down write side");
        let at_service = within(PROMPTLY, "service receives the upload", received.recv())
            .await
            .expect("service reported");
        assert_eq!(at_service.len(), request.len(), "upload length");
        assert_eq!(sha256(&at_service), sha256(&request), "upload intact");
        t.stop().await;
    });
}

#[test]
fn visitor_is_closed_promptly_while_local_service_is_down_and_served_once_it_is_back() {
    run_test(async {
        // The service's address, bound but not listening yet: the client's
        // settings name it, connections to it are refused, and the port stays ours.
        let (unborn, local) = refusing_address();
        let t = TunnelBuilder::new().service("svc", local).start().await;
        let public = t.public;

        // Reset (maybe before `connect` returns) or closed, with nothing read.
        assert_refused(public, PROMPTLY, "visitor of a down service").await;

        let _service = serve(listen_on(unborn), echo);
        assert_echoes(public, 11, 200_000).await;
        t.stop().await;
    });
}
