//! An endpoint with several driver threads on one port, over loopback: sessions either side
//! opens land on the shard the kernel's routing program sends their datagrams to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netcore::config::Config;
use netcore::crypto::identity_key::IdentityKey;
use netcore::crypto::session_setup::LocalSecurity;
use netcore::eresult::{send_flags, EResult};
use netcore::identity::Identity;
use netcore::messages::{Delivered, Event};
use netcore::p2p::layer::LayerEvent;

use crate::driver::EventSink;
use crate::reuse_port::shard_of;
use crate::EndpointHandle;

struct Discard;
impl EventSink<LayerEvent<Event>> for Discard {
    fn queue(&self, _: Vec<LayerEvent<Event>>) {}
    fn wake(&self) {}
}

fn bind(addr: &str, threads: usize, seed: u8) -> Option<EndpointHandle> {
    let security = LocalSecurity::unauthenticated(IdentityKey::from_seed(&[seed; 32]));
    EndpointHandle::bind_threads(
        Some(addr),
        threads,
        Config::default(),
        security,
        Arc::new(Discard),
    )
    .ok()
}

fn id_of(addr: SocketAddr) -> Identity {
    Identity::from_ip_str(&addr.to_string()).expect("identity")
}

/// Reads `ep` until `n` messages came or 10 s passed.
fn read_until(ep: &EndpointHandle, n: usize) -> Vec<Delivered> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < Duration::from_secs(10) {
        let (msgs, _) = ep.receive(0, 256);
        if msgs.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        got.extend(msgs);
    }
    got
}

/// A server on `server_bind` with `threads` driver threads and 4 x `threads` clients on
/// `client_bind`: the server opens half the sessions, the clients the other half; each side
/// hears the other's reliable message, and each session lives on its address's shard.
fn sessions_land_on_their_shards(server_bind: &str, client_bind: &str, threads: usize) {
    let Some(server) = bind(server_bind, threads, 1) else {
        eprintln!("skipped: cannot bind {server_bind}");
        return;
    };
    assert_eq!(server.driver_threads(), threads);
    let port = server.local_addr().port();
    let server_at: SocketAddr = match client_bind {
        b if b.starts_with('[') => SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)),
        _ => SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let clients: Vec<EndpointHandle> = (0..4 * threads)
        .map(|i| bind(client_bind, 1, 10 + u8::try_from(i).unwrap_or(0)).expect("client"))
        .collect();
    let to_server = id_of(server_at);
    let half = clients.len() / 2;
    // The server dials the first half: its shard's handshake must get the replies.
    for (i, c) in clients.iter().enumerate().take(half) {
        let r = server.send(
            &id_of(c.local_addr()),
            None,
            &[i as u8],
            send_flags::RELIABLE,
            0,
        );
        assert_eq!(r, EResult::Ok);
    }
    for (i, c) in clients.iter().enumerate().take(half) {
        // The server's session waits for the client's accept.
        let start = Instant::now();
        while !c.accept(&to_server) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = read_until(c, 1);
        assert_eq!(
            got.len(),
            1,
            "client {i} at {} (shard {}) heard the server: server {:?}, client {:?}",
            c.local_addr(),
            shard_of(c.local_addr(), threads),
            server.report().endpoint,
            c.report().endpoint
        );
        assert_eq!(got[0].msg.data.as_ref(), &[i as u8]);
    }
    // Every client says its number; the second half dials.
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(
            c.send(&to_server, None, &[i as u8], send_flags::RELIABLE, 0),
            EResult::Ok
        );
    }
    for c in clients.iter().skip(half) {
        let peer = id_of(c.local_addr());
        let start = Instant::now();
        while !server.accept(&peer) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let got = read_until(&server, clients.len());
    let mut heard: Vec<u8> = got.iter().map(|d| d.msg.data[0]).collect();
    heard.sort_unstable();
    let all: Vec<u8> = (0..clients.len()).map(|i| i as u8).collect();
    assert_eq!(heard, all, "the server heard every client once");
    // The server answers the second half on the sessions they opened.
    for d in &got {
        let i = usize::from(d.msg.data[0]);
        if i >= half {
            assert_eq!(
                server.send(&d.peer, None, &[i as u8], send_flags::RELIABLE, 0),
                EResult::Ok
            );
        }
    }
    for (i, c) in clients.iter().enumerate().skip(half) {
        let got = read_until(c, 1);
        assert_eq!(got.len(), 1, "client {i} heard the answer");
    }
    assert_eq!(server.report().sessions, clients.len());
    assert_eq!(server.sessions().len(), clients.len());
    let mut per_shard = vec![0usize; threads];
    for c in &clients {
        let peer = id_of(c.local_addr());
        let k = shard_of(c.local_addr(), threads);
        assert!(
            server.shards[k].read(|m| m.has_session(&peer)),
            "{} on shard {k}",
            c.local_addr()
        );
        per_shard[k] += 1;
    }
    assert!(per_shard.iter().all(|&n| n > 0), "spread: {per_shard:?}");
}

#[test]
fn two_threads_ipv4() {
    sessions_land_on_their_shards("127.0.0.1:0", "127.0.0.1:0", 2);
}

#[test]
fn three_threads_dual_stack_serves_ipv4_peers() {
    if !crate::dual_stack_available() {
        return;
    }
    sessions_land_on_their_shards("[::]:0", "127.0.0.1:0", 3);
}

#[test]
fn two_threads_ipv6() {
    sessions_land_on_their_shards("[::1]:0", "[::1]:0", 2);
}

#[test]
fn one_thread_is_the_plain_endpoint() {
    let ep = bind("127.0.0.1:0", 1, 3).expect("bind");
    assert_eq!(ep.driver_threads(), 1);
}
