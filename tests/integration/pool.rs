//! Pooled data links under load and failure: thousands of sequential short
//! visitors, bursts on an empty pool, and idle links killed behind the server's
//! back, which must be replaced and never handed to a visitor.

use crate::common::proxy::link_proxy;
use crate::common::*;
use std::time::Duration;

#[test]
fn five_thousand_sequential_short_visitors_all_succeed() {
    run_test(async {
        let t = TunnelBuilder::new().start().await;
        let public = t.public;
        for i in 0..5000u64 {
            let sent = payload(i, 64);
            let got = exchange(public, &sent)
                .await
                .unwrap_or_else(|e| panic!("visitor {i} failed: {e}"));
            assert_eq!(got, sent, "visitor {i}");
        }
        t.stop().await;
    });
}

#[test]
fn a_burst_of_one_hundred_visitors_on_a_one_link_pool_is_all_served() {
    run_test(async {
        let t = TunnelBuilder::new().pooled(1).start().await;
        let public = t.public;
        let visitors: Vec<_> = (0..100u64)
            .map(|i| smol::spawn(async move { assert_echoes(public, 1000 + i, 4096).await }))
            .collect();
        for visitor in visitors {
            visitor.await;
        }
        t.stop().await;
    });
}

#[test]
fn idle_links_killed_behind_the_servers_back_are_never_given_to_a_visitor() {
    run_test(async {
        let (t, proxy) = TunnelBuilder::new().pooled(4).start_via(link_proxy).await;
        let public = t.public;
        // One visitor first, so the pool is known to be full and working.
        assert_echoes(public, 1, 1000).await;

        // Connections through the proxy: the control link, then data links.
        // Reset every data link we have seen so far (they are idle now, except
        // the used one, already finished).
        let mut seen = Vec::new();
        while let Ok(conn) = proxy.conns.try_recv() {
            seen.push(conn);
        }
        assert!(
            seen.len() >= 5,
            "control link + 4 pooled links, saw {}",
            seen.len()
        );
        for conn in seen.iter().skip(1) {
            reset_on_close(conn);
        }
        // Closing our handles is not enough (the relay holds clones); shut the
        // sockets down for real so the server sees the links die.
        for conn in seen.iter().skip(1) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        drop(seen);

        // Every visitor is served by a live link (dead ones are skipped or
        // replaced), none is handed a dead one and closed.
        for i in 0..20u64 {
            within(
                Duration::from_secs(10),
                "visitor after idle links died",
                assert_echoes(public, 100 + i, 2000),
            )
            .await;
        }
        t.stop().await;
    });
}

#[test]
fn visitors_beyond_max_visitors_per_client_are_refused_at_once() {
    run_test(async {
        let t = TunnelBuilder::new()
            .server(|s| s.max_visitors_per_client = 3)
            .start()
            .await;
        let mut held = Vec::new();
        for i in 0..3u64 {
            let mut s = smol::net::TcpStream::connect(t.public)
                .await
                .expect("connect");
            futures_lite::AsyncWriteExt::write_all(&mut s, b"x")
                .await
                .expect("write");
            let mut b = [0u8; 1];
            within(
                PROMPTLY,
                "held",
                futures_lite::AsyncReadExt::read_exact(&mut s, &mut b),
            )
            .await
            .unwrap_or_else(|e| panic!("visitor {i}: {e}"));
            held.push(s);
        }
        // The fourth is refused (reset) without being served.
        assert_refused(t.public, PROMPTLY, "fourth visitor").await;
        // One leaves; a new one is served.
        held.pop();
        within(PROMPTLY, "served after one left", async {
            loop {
                match exchange(t.public, b"again").await {
                    Ok(got) if got == b"again" => break,
                    // The server may still count the one that left.
                    _ => smol::future::yield_now().await,
                }
            }
        })
        .await;
        t.stop().await;
    });
}
