//! The client against a small in-test server that behaves like coturn's long-term credential
//! mechanism (the real coturn runs in `crates/netdriver/tests/turn_coturn.rs`).

use super::*;

const SERVER: &str = "203.0.113.1:3478";
const RELAYED: &str = "203.0.113.1:50000";
const MAPPED: &str = "198.51.100.5:40000";

fn at(ms: u64) -> Timestamp {
    Timestamp::from_micros(ms * 1000)
}

/// What the fake server does with requests.
struct FakeServer {
    realm: String,
    nonce: String,
    password: String,
    /// Answer the next request of any kind with 438 and this nonce.
    stale_next: Option<String>,
    /// Error code to answer Allocate with after authentication.
    allocate_error: Option<u16>,
    lifetime: u32,
    seen: Vec<(Method, Option<u32>)>,
}

impl FakeServer {
    fn new() -> Self {
        FakeServer {
            realm: "example.org".into(),
            nonce: "n1".into(),
            password: "secret".into(),
            stale_next: None,
            allocate_error: None,
            lifetime: 600,
            seen: Vec::new(),
        }
    }

    fn answer(&mut self, req: &[u8]) -> Option<Vec<u8>> {
        let m = Message::decode(req).unwrap();
        assert_eq!(m.typ.class, Class::Request);
        self.seen.push((m.typ.method, m.lifetime()));
        let err = |code: u16, reason: &str, nonce: &str, realm: &str| {
            let mut b = MessageBuilder::new(
                MessageType::new(m.typ.method, Class::Error),
                m.transaction_id,
            );
            b.error_code(code, reason)
                .add(attr::REALM, realm.as_bytes())
                .add(attr::NONCE, nonce.as_bytes())
                .fingerprint();
            b.into_bytes().ok()
        };
        let Some(user) = m.username() else {
            return err(401, "Unauthorized", &self.nonce, &self.realm);
        };
        let key = long_term_key(user, &self.realm, &self.password);
        if m.verify_integrity(&key).is_err() {
            return err(401, "Unauthorized", &self.nonce, &self.realm);
        }
        if let Some(n) = self.stale_next.take() {
            self.nonce = n.clone();
            return err(438, "Stale Nonce", &n, &self.realm);
        }
        if m.nonce() != Some(self.nonce.as_str()) {
            return err(438, "Stale Nonce", &self.nonce, &self.realm);
        }
        let mut b = MessageBuilder::new(
            MessageType::new(m.typ.method, Class::Success),
            m.transaction_id,
        );
        match m.typ.method {
            Method::ALLOCATE => {
                if let Some(code) = self.allocate_error {
                    let mut b = MessageBuilder::new(
                        MessageType::new(m.typ.method, Class::Error),
                        m.transaction_id,
                    );
                    b.error_code(code, "nope")
                        .integrity(Integrity::Sha1, &key)
                        .fingerprint();
                    return b.into_bytes().ok();
                }
                assert_eq!(
                    m.get(attr::REQUESTED_TRANSPORT),
                    Some(&attr::TRANSPORT_UDP[..])
                );
                b.xor_address(attr::XOR_RELAYED_ADDRESS, RELAYED.parse().unwrap())
                    .xor_address(attr::XOR_MAPPED_ADDRESS, MAPPED.parse().unwrap())
                    .u32(attr::LIFETIME, self.lifetime);
            }
            Method::REFRESH => {
                b.u32(
                    attr::LIFETIME,
                    m.lifetime().unwrap_or(600).min(self.lifetime),
                );
            }
            _ => {}
        }
        b.integrity(Integrity::Sha1, &key).fingerprint();
        b.into_bytes().ok()
    }
}

/// Runs client and server until neither has anything to do before `until`.
fn pump(c: &mut TurnClient, s: &mut FakeServer, now: Timestamp) {
    let server: SocketAddr = SERVER.parse().unwrap();
    for _ in 0..50 {
        c.handle_timeout(now);
        let mut any = false;
        while let Some(t) = c.poll_transmit() {
            assert_eq!(t.destination, server);
            any = true;
            if classify(&t.payload) == DatagramKind::Stun
                && Message::decode(&t.payload).unwrap().typ.class == Class::Request
            {
                if let Some(a) = s.answer(&t.payload) {
                    assert_eq!(c.handle_input(now, server, &a), TurnInput::Consumed);
                }
            }
        }
        if !any {
            return;
        }
    }
    panic!("client and server keep talking");
}

fn events(c: &mut TurnClient) -> Vec<TurnEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn client() -> TurnClient {
    TurnClient::new(
        TurnConfig::new(SERVER.parse().unwrap(), "alice", "secret"),
        at(0),
    )
}

#[test]
fn allocate_with_401_dance_then_permission_and_channel() {
    let mut s = FakeServer::new();
    let mut c = client();
    pump(&mut c, &mut s, at(0));
    assert_eq!(
        events(&mut c),
        vec![TurnEvent::Allocated {
            relayed: RELAYED.parse().unwrap(),
            mapped: Some(MAPPED.parse().unwrap()),
            lifetime: Duration::from_secs(600),
        }]
    );
    // Unauthenticated Allocate, then the authenticated one.
    assert_eq!(s.seen.len(), 2);

    let peer: SocketAddr = "198.51.100.9:7000".parse().unwrap();
    assert_eq!(c.send(peer, b"x"), Err(TurnError::NoPermission));
    c.bind_channel(peer, at(10)).unwrap();
    // Before the channel is bound, data goes in a Send indication.
    let ind = c.send(peer, b"hello").unwrap();
    let m = Message::decode(&ind.payload).unwrap();
    assert_eq!(m.typ, MessageType::new(Method::SEND, Class::Indication));
    assert_eq!(m.xor_address(attr::XOR_PEER_ADDRESS), Some(peer));
    assert_eq!(m.data(), Some(&b"hello"[..]));

    pump(&mut c, &mut s, at(10));
    let ev = events(&mut c);
    assert!(ev.contains(&TurnEvent::PermissionCreated(peer.ip())));
    assert!(ev.contains(&TurnEvent::ChannelBound {
        peer,
        channel: 0x4000
    }));
    assert_eq!(c.channel(peer), Some(0x4000));

    let cd = c.send(peer, b"hello").unwrap();
    assert_eq!(
        cd.payload,
        [0x40, 0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0, 0, 0]
    );

    // Relayed data in both framings is unwrapped; unknown channels and unpermitted peers are dropped.
    let server = SERVER.parse().unwrap();
    assert_eq!(
        c.handle_input(at(11), server, &cd.payload),
        TurnInput::Data {
            peer,
            payload: b"hello"
        }
    );
    let mut b = MessageBuilder::new(
        MessageType::new(Method::DATA, Class::Indication),
        TransactionId([7; 12]),
    );
    b.xor_address(attr::XOR_PEER_ADDRESS, peer)
        .add(attr::DATA, b"yo");
    let di = b.into_bytes().unwrap();
    assert_eq!(
        c.handle_input(at(11), server, &di),
        TurnInput::Data {
            peer,
            payload: b"yo"
        }
    );
    let mut b = MessageBuilder::new(
        MessageType::new(Method::DATA, Class::Indication),
        TransactionId([7; 12]),
    );
    b.xor_address(attr::XOR_PEER_ADDRESS, "192.0.2.1:1".parse().unwrap())
        .add(attr::DATA, b"yo");
    assert_eq!(
        c.handle_input(at(11), server, &b.into_bytes().unwrap()),
        TurnInput::Consumed
    );
    assert_eq!(
        c.handle_input(at(11), server, &[0x40, 0x07, 0, 1, 9, 0, 0, 0]),
        TurnInput::Consumed
    );
    assert_eq!(
        c.handle_input(at(11), "192.0.2.1:3478".parse().unwrap(), &cd.payload),
        TurnInput::NotMine
    );
}

#[test]
fn refresh_timers() {
    let mut s = FakeServer::new();
    let mut c = client();
    pump(&mut c, &mut s, at(0));
    let peer: SocketAddr = "198.51.100.9:7000".parse().unwrap();
    c.bind_channel(peer, at(0)).unwrap();
    pump(&mut c, &mut s, at(0));
    events(&mut c);
    s.seen.clear();

    // Permission refresh at 240 s, allocation refresh a minute before 600 s, channel at 540 s.
    assert_eq!(c.poll_timeout(), Some(at(240_000)));
    pump(&mut c, &mut s, at(240_000));
    assert_eq!(s.seen, vec![(Method::CREATE_PERMISSION, None)]);
    assert_eq!(
        events(&mut c),
        vec![TurnEvent::PermissionCreated(peer.ip())]
    );
    s.seen.clear();
    pump(&mut c, &mut s, at(540_000));
    assert!(s.seen.contains(&(Method::REFRESH, Some(600))));
    assert!(s.seen.contains(&(Method::CHANNEL_BIND, None)));
    assert!(events(&mut c).contains(&TurnEvent::Refreshed {
        lifetime: Duration::from_secs(600)
    }));
}

#[test]
fn stale_nonce_is_retried_with_the_new_nonce() {
    let mut s = FakeServer::new();
    let mut c = client();
    pump(&mut c, &mut s, at(0));
    events(&mut c);
    s.stale_next = Some("n2".into());
    c.refresh_now(at(1000));
    pump(&mut c, &mut s, at(1000));
    assert_eq!(
        events(&mut c),
        vec![TurnEvent::Refreshed {
            lifetime: Duration::from_secs(600)
        }]
    );
    assert_eq!(s.seen.iter().filter(|x| x.0 == Method::REFRESH).count(), 2);
}

#[test]
fn wrong_password_is_unauthorized() {
    let mut s = FakeServer::new();
    s.password = "other".into();
    let mut c = client();
    pump(&mut c, &mut s, at(0));
    assert_eq!(
        events(&mut c),
        vec![TurnEvent::Failed(TurnError::Unauthorized)]
    );
    assert_eq!(c.state(), &AllocationState::Failed(TurnError::Unauthorized));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn missing_credentials_and_quota() {
    let mut s = FakeServer::new();
    let mut c = TurnClient::new(TurnConfig::new(SERVER.parse().unwrap(), "", ""), at(0));
    pump(&mut c, &mut s, at(0));
    assert_eq!(
        events(&mut c),
        vec![TurnEvent::Failed(TurnError::NoCredentials)]
    );

    let mut s = FakeServer::new();
    s.allocate_error = Some(486);
    let mut c = client();
    pump(&mut c, &mut s, at(0));
    assert_eq!(
        events(&mut c),
        vec![TurnEvent::Failed(TurnError::QuotaReached)]
    );
}

#[test]
fn unreachable_server_times_out_on_schedule() {
    let mut c = client();
    let mut sends = 0;
    let mut last = at(0);
    while let Some(t) = c.poll_timeout() {
        c.handle_timeout(t);
        while c.poll_transmit().is_some() {
            sends += 1;
        }
        last = t;
    }
    assert_eq!(sends, 5);
    assert_eq!(last, at(5275));
    assert_eq!(events(&mut c), vec![TurnEvent::Failed(TurnError::Timeout)]);
}

#[test]
fn forged_success_without_integrity_is_ignored() {
    let mut s = FakeServer::new();
    let mut c = client();
    pump(&mut c, &mut s, at(0));
    events(&mut c);
    c.refresh_now(at(1));
    c.handle_timeout(at(1));
    let req = c.poll_transmit().unwrap();
    let m = Message::decode(&req.payload).unwrap();
    let mut b = MessageBuilder::new(
        MessageType::new(Method::REFRESH, Class::Success),
        m.transaction_id,
    );
    b.u32(attr::LIFETIME, 5);
    let forged = b.into_bytes().unwrap();
    assert_eq!(
        c.handle_input(at(2), SERVER.parse().unwrap(), &forged),
        TurnInput::Consumed
    );
    assert_eq!(events(&mut c), vec![]);
    // The real answer still counts.
    let real = s.answer(&req.payload).unwrap();
    c.handle_input(at(3), SERVER.parse().unwrap(), &real);
    assert_eq!(
        events(&mut c),
        vec![TurnEvent::Refreshed {
            lifetime: Duration::from_secs(600)
        }]
    );
}

#[test]
fn release_and_peer_bounds() {
    let mut s = FakeServer::new();
    let mut cfg = TurnConfig::new(SERVER.parse().unwrap(), "alice", "secret");
    cfg.max_peers = 2;
    let mut c = TurnClient::new(cfg, at(0));
    pump(&mut c, &mut s, at(0));
    events(&mut c);
    c.create_permission("192.0.2.1".parse().unwrap(), at(0))
        .unwrap();
    c.create_permission("192.0.2.2".parse().unwrap(), at(0))
        .unwrap();
    c.create_permission("192.0.2.2".parse().unwrap(), at(0))
        .unwrap();
    assert_eq!(
        c.create_permission("192.0.2.3".parse().unwrap(), at(0)),
        Err(TurnError::TooManyPeers)
    );
    c.remove_peer("192.0.2.2".parse().unwrap());
    c.create_permission("192.0.2.3".parse().unwrap(), at(0))
        .unwrap();
    c.release(at(5));
    pump(&mut c, &mut s, at(5));
    assert!(events(&mut c).contains(&TurnEvent::Released));
    assert_eq!(c.state(), &AllocationState::Released);
    assert_eq!(s.seen.last(), Some(&(Method::REFRESH, Some(0))));
}

#[test]
fn requested_address_family() {
    let mut cfg = TurnConfig::new(SERVER.parse().unwrap(), "alice", "secret");
    cfg.relay_ipv6 = Some(true);
    let mut c = TurnClient::new(cfg, at(0));
    c.handle_timeout(at(0));
    let req = c.poll_transmit().unwrap();
    let m = Message::decode(&req.payload).unwrap();
    assert_eq!(
        m.get(attr::REQUESTED_ADDRESS_FAMILY),
        Some(&[2u8, 0, 0, 0][..])
    );
    // By default the attribute is absent (the server's default family, IPv4).
    let mut c = client();
    c.handle_timeout(at(0));
    let req = c.poll_transmit().unwrap();
    assert_eq!(
        Message::decode(&req.payload)
            .unwrap()
            .get(attr::REQUESTED_ADDRESS_FAMILY),
        None
    );
}
