//! The bodies of the P2P fuzz targets in `crates/netcore/fuzz` (`stun`, `channel_data`,
//! `rendezvous`, `candidate`, `p2p_input`), also run as property tests here. Each feeds
//! arbitrary bytes to a decoder or a state machine, touches what comes back, and panics only
//! when an invariant breaks.

use std::net::SocketAddr;

use prost::Message as _;

use super::demux::{classify, DatagramKind};
use super::ice::{Candidate, IceAgent, IceConfig, Role, Via};
use super::rendezvous::Rendezvous;
use super::stun::attributes as attr;
use super::stun::binding::{BindingClient, BindingConfig};
use super::stun::{Message, MessageBuilder};
use super::turn::{channel_data, TurnClient, TurnConfig, TurnInput};
use crate::time::Timestamp;

/// STUN decoding, every accessor, integrity checks, and re-encoding what decoded.
pub fn stun(data: &[u8]) {
    let kind = classify(data);
    let Ok(m) = Message::decode(data) else {
        return;
    };
    assert_eq!(
        kind,
        DatagramKind::Stun,
        "decodes but is not classified as STUN"
    );
    let _ = (
        m.xor_mapped_address(),
        m.mapped_address(),
        m.error_code(),
        m.username(),
        m.realm(),
        m.nonce(),
        m.software(),
        m.priority(),
        m.use_candidate(),
        m.ice_controlling(),
        m.ice_controlled(),
        m.lifetime(),
        m.data(),
        m.channel_number(),
        m.xor_address(attr::XOR_RELAYED_ADDRESS),
        m.xor_peer_addresses().count(),
        m.unknown_required(&[]),
        m.integrity_kind(),
    );
    let _ = m.verify_integrity(b"key");
    // Re-encode the attributes: the same framing must decode again.
    let mut b = MessageBuilder::new(m.typ, m.transaction_id);
    let mut n = 0;
    for a in m.attributes() {
        if a.typ != attr::FINGERPRINT {
            b.add(a.typ, a.value);
            n += 1;
        }
    }
    let again = b.into_bytes().expect("re-encodes");
    let m2 = Message::decode(&again).expect("re-encoded message decodes");
    assert_eq!(m2.attributes().count(), n);
}

/// ChannelData decoding and re-encoding.
pub fn channel_data(data: &[u8]) {
    let Ok(cd) = channel_data::decode(data) else {
        return;
    };
    assert!(cd.data.len() + channel_data::HEADER_LEN <= data.len());
    let mut out = Vec::new();
    if channel_data::encode(cd.channel, cd.data, &mut out).is_ok() {
        assert_eq!(channel_data::decode(&out), Ok(cd));
    }
}

/// Rendezvous protobuf decoding and re-encoding.
pub fn rendezvous(data: &[u8]) {
    let Ok(r) = Rendezvous::decode_signal(data) else {
        return;
    };
    let bytes = r.encode_to_vec();
    assert_eq!(Rendezvous::decode(&bytes[..]).ok(), Some(r));
}

/// Candidate line parsing, and printing what parsed.
pub fn candidate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Candidate::parse(text) else {
        return;
    };
    let again = Candidate::parse(&c.to_string()).expect("printed candidate parses");
    assert_eq!(again.address, c.address);
    assert_eq!(again.priority, c.priority);
    assert_eq!(again.kind, c.kind);
}

/// Arbitrary datagrams (first byte picks the source) into an ICE agent, a TURN client and a
/// binding client, with timer runs in between: nothing panics and the outputs stay bounded.
pub fn p2p_input(data: &[u8]) {
    let server: SocketAddr = ([203, 0, 113, 1], 3478).into();
    let peer: SocketAddr = ([198, 51, 100, 2], 4000).into();
    let t0 = Timestamp::ZERO;
    let mut agent = IceAgent::new(IceConfig::new(Role::Controlled, "AAAAA", "pw", 1), t0);
    agent.set_remote_credentials("BBBBB", "theirs");
    let host: SocketAddr = ([192, 168, 1, 2], 5000).into();
    agent.add_local_candidate(
        Candidate::new(
            super::ice::CandidateKind::Host,
            host,
            host.ip(),
            None,
            65535,
        ),
        24,
    );
    let _ = agent.add_remote_candidate(Candidate::new(
        super::ice::CandidateKind::Host,
        peer,
        peer.ip(),
        None,
        1,
    ));
    let mut turn = TurnClient::new(TurnConfig::new(server, "u", "p"), t0);
    let _ = turn.bind_channel(peer, t0);
    let mut binding = BindingClient::new(
        BindingConfig {
            servers: vec![server],
            ..Default::default()
        },
        t0,
    );
    let mut now = t0;
    let mut outputs = 0usize;
    for (i, chunk) in data.split(|&b| b == 0xFF).enumerate().take(64) {
        now += std::time::Duration::from_millis(37);
        let from = if i % 2 == 0 { server } else { peer };
        if let Ok(m) = Message::decode(chunk) {
            let via = if i % 3 == 0 { Via::Relay } else { Via::Direct };
            agent.handle_stun(now, via, from, &m);
        }
        if let TurnInput::Data { payload, .. } = turn.handle_input(now, from, chunk) {
            assert!(payload.len() <= chunk.len());
        }
        binding.handle_input(now, from, chunk);
        agent.handle_timeout(now);
        turn.handle_timeout(now);
        binding.handle_timeout(now);
        outputs += std::iter::from_fn(|| agent.poll_transmit()).count();
        outputs += std::iter::from_fn(|| turn.poll_transmit()).count();
        outputs += std::iter::from_fn(|| binding.poll_transmit()).count();
        while agent.poll_event().is_some() || turn.poll_event().is_some() {}
        while binding.poll_event().is_some() {}
    }
    assert!(outputs <= 64 * 16, "{outputs} datagrams out for 64 in");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::ice::CandidateKind;
    use crate::p2p::stun::{Class, Integrity, MessageType, Method, TransactionId};
    use proptest::prelude::*;

    /// Random bytes with a STUN-like header more often than chance would give.
    fn stunlike() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
        )
            .prop_map(|(typ, body, fix)| {
                let mut v = Vec::with_capacity(20 + body.len());
                v.extend_from_slice(&(typ & 0x3FFF).to_be_bytes());
                let len = if fix { body.len() / 4 * 4 } else { body.len() };
                v.extend_from_slice(&(len as u16).to_be_bytes());
                v.extend_from_slice(&0x2112_A442u32.to_be_bytes());
                v.extend_from_slice(&[7; 12]);
                v.extend_from_slice(&body[..len]);
                v
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn stun_target(bytes in stunlike()) { stun(&bytes); }

        #[test]
        fn stun_target_raw(bytes in proptest::collection::vec(any::<u8>(), 0..200)) { stun(&bytes); }

        #[test]
        fn channel_data_target(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut b = bytes;
            if let Some(x) = b.first_mut() { *x = 0x40 | (*x & 0x3F); }
            channel_data(&b);
        }

        #[test]
        fn rendezvous_target(bytes in proptest::collection::vec(any::<u8>(), 0..300)) { rendezvous(&bytes); }

        #[test]
        fn candidate_target(s in "candidate:[0-9a-z]{1,6} [0-9]{1,3} (udp|UDP|tcp) [0-9]{1,10} ([0-9]{1,3}\\.){3}[0-9]{1,3} [0-9]{1,5} typ (host|srflx|prflx|relay|x)( raddr [0-9.]{1,15} rport [0-9]{1,5})?") {
            candidate(s.as_bytes());
        }

        #[test]
        fn p2p_input_target(bytes in proptest::collection::vec(stunlike(), 0..8)) {
            p2p_input(&bytes.join(&0xFFu8));
        }

        /// Builder then decoder gives back every attribute, and integrity verifies with the key
        /// and only with it.
        #[test]
        fn stun_round_trip(
            attrs in proptest::collection::vec((0x0030u16..0x7FFF, proptest::collection::vec(any::<u8>(), 0..40)), 0..10),
            key in proptest::collection::vec(any::<u8>(), 1..32),
            sha256 in any::<bool>(),
            tid in any::<[u8; 12]>(),
        ) {
            let mut b = MessageBuilder::new(MessageType::new(Method::BINDING, Class::Request), TransactionId(tid));
            for (t, v) in &attrs { b.add(*t, v); }
            b.integrity(if sha256 { Integrity::Sha256 } else { Integrity::Sha1 }, &key).fingerprint();
            let bytes = b.into_bytes().unwrap();
            let m = Message::decode(&bytes).unwrap();
            prop_assert_eq!(m.transaction_id, TransactionId(tid));
            for (t, v) in &attrs {
                prop_assert!(m.attributes().any(|a| a.typ == *t && a.value == &v[..]));
            }
            prop_assert!(m.verify_integrity(&key).is_ok());
            let mut other = key.clone();
            other[0] ^= 1;
            prop_assert!(m.verify_integrity(&other).is_err());
        }

        #[test]
        fn xor_address_round_trip(ip in any::<[u8; 16]>(), v4 in any::<bool>(), port in any::<u16>(), tid in any::<[u8; 12]>()) {
            let addr: SocketAddr = if v4 {
                (std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]), port).into()
            } else {
                (std::net::Ipv6Addr::from(ip), port).into()
            };
            let mut b = MessageBuilder::new(MessageType::new(Method::BINDING, Class::Success), TransactionId(tid));
            b.xor_address(attr::XOR_MAPPED_ADDRESS, addr);
            let bytes = b.into_bytes().unwrap();
            prop_assert_eq!(Message::decode(&bytes).unwrap().xor_mapped_address(), Some(addr));
        }

        #[test]
        fn channel_data_round_trip(ch in 0x4000u16..=0x4FFF, data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            channel_data::encode(ch, &data, &mut out).unwrap();
            prop_assert_eq!(out.len() % 4, 0);
            let cd = channel_data::decode(&out).unwrap();
            prop_assert_eq!((cd.channel, cd.data), (ch, &data[..]));
        }

        #[test]
        fn candidate_round_trip(ip in any::<[u8; 4]>(), port in any::<u16>(), pref in any::<u16>(), k in 0usize..4) {
            let kind = [CandidateKind::Host, CandidateKind::ServerReflexive, CandidateKind::PeerReflexive, CandidateKind::Relayed][k];
            let a: SocketAddr = (std::net::Ipv4Addr::from(ip), port).into();
            let c = Candidate::new(kind, a, a.ip(), None, pref);
            prop_assert_eq!(Candidate::parse(&c.to_string()).unwrap(), c);
        }
    }
}
