//! The simulated world the P2P layer's tests run in, for any host (the messages model, the
//! connection API): nodes with a [`P2pLayer`] on the simulated network, and the test's own
//! "signaling service" carrying their signals between steps (instantly, or not at all, or
//! answering `not-registered`).

use std::net::SocketAddr;
use std::time::Duration;

use super::{Host, LayerEvent, P2pLayer};
use crate::crypto::session_setup::{issue_certificate, LocalSecurity};
use crate::crypto::IdentityKey;
use crate::identity::Identity;
use crate::p2p::ice::Interface;
use crate::p2p::transport::P2pConfig;
use crate::sim::{Network, SimNode};
use crate::time::Timestamp;

pub(crate) const UNIX: u64 = 1_800_000_000;
const CA_SEED: [u8; 32] = [42; 32];

pub(crate) fn id(s: &str) -> Identity {
    s.parse().unwrap()
}

/// Security proving `name` with a certificate from the test CA.
pub(crate) fn certified(name: &str, seed: u8) -> LocalSecurity {
    let key = IdentityKey::from_seed(&[seed; 32]);
    let ident = id(name);
    let cert = issue_certificate(
        &CA_SEED,
        &key.public_key().to_bytes(),
        &ident,
        UNIX - 10,
        3600,
    )
    .unwrap();
    let ca = IdentityKey::from_seed(&CA_SEED).public_key().to_bytes();
    LocalSecurity::from_options(Some([seed; 32]), Some(&cert), Some(ident), &[ca], false).unwrap()
}

/// A P2P node: the layer, and what it produced for the test.
pub(crate) struct Node<H: Host> {
    pub(crate) layer: P2pLayer<H>,
    pub(crate) signals: Vec<(Identity, Vec<u8>)>,
    pub(crate) events: Vec<H::Event>,
}

impl<H: Host + 'static> SimNode for Node<H> {
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, data: &[u8]) {
        self.layer.handle_datagram(now, 0, from, data);
    }

    fn poll_transmit(&mut self, now: Timestamp, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        let mut buf = Vec::with_capacity(1500);
        self.layer
            .poll_transmit(now, &mut buf, &mut |_, to, d| out.push((to, d.to_vec())));
        while let Some(e) = self.layer.poll_event() {
            match e {
                LayerEvent::Signal { to, data } => self.signals.push((to, data)),
                LayerEvent::Host(e) => self.events.push(e),
            }
        }
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.layer.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.layer.handle_timeout(now);
    }
}

/// `host` as `name` at `at` with P2P on its port 0 (host candidates: `at`'s /24).
pub(crate) fn node<H: Host>(
    host: H,
    name: &str,
    seed: u8,
    at: &str,
    stun: Vec<SocketAddr>,
) -> Node<H> {
    let addr: SocketAddr = at.parse().unwrap();
    let mut layer = P2pLayer::new(host);
    layer.enable(
        Timestamp::ZERO,
        0,
        P2pConfig {
            identity: id(name),
            interfaces: vec![Interface {
                ip: addr.ip(),
                prefix_len: 24,
            }],
            port: addr.port(),
            stun_servers: stun,
            turn_servers: vec![],
            ice_enable: 0x7fff_ffff,
            secret: [seed; 32],
        },
    );
    Node {
        layer,
        signals: Vec::new(),
        events: Vec::new(),
    }
}

/// The simulated network of [`Node`]s, and the signaling service's behaviour.
pub(crate) struct World<H> {
    pub(crate) net: Network,
    names: Vec<(SocketAddr, Identity)>,
    /// Whether the test's "signaling service" delivers.
    pub(crate) deliver_signals: bool,
    /// Reply `not-registered` to signals for these.
    pub(crate) unregistered: Vec<Identity>,
    pub(crate) signals_carried: usize,
    host: std::marker::PhantomData<H>,
}

impl<H: Host + 'static> World<H> {
    /// `net` with `nodes` (address, identity, node) added.
    pub(crate) fn new(mut net: Network, nodes: Vec<(&str, Node<H>)>) -> Self {
        let mut names = Vec::new();
        for (at, n) in nodes {
            let addr: SocketAddr = at.parse().unwrap();
            let me = n.layer.transport().unwrap().identity().clone();
            net.add_node(addr, n).unwrap();
            names.push((addr, me));
        }
        World {
            net,
            names,
            deliver_signals: true,
            unregistered: Vec::new(),
            signals_carried: 0,
            host: std::marker::PhantomData,
        }
    }

    pub(crate) fn with<R>(&mut self, at: &str, f: impl FnOnce(&mut Node<H>, Timestamp) -> R) -> R {
        self.net.with_node(at.parse().unwrap(), f).unwrap()
    }

    /// Carries every waiting signal (as the signaling service would, instantly).
    fn carry_signals(&mut self) {
        let names = self.names.clone();
        for (addr, me) in &names {
            let out = self
                .net
                .with_node(*addr, |n: &mut Node<H>, _| std::mem::take(&mut n.signals))
                .unwrap();
            for (to, data) in out {
                if self.unregistered.contains(&to) {
                    self.net
                        .with_node(*addr, |n: &mut Node<H>, now| {
                            n.layer
                                .signal_undeliverable(now, &to, "not-registered", "test service")
                        })
                        .unwrap();
                    continue;
                }
                if !self.deliver_signals {
                    continue;
                }
                let Some((dest, _)) = names.iter().find(|(_, n)| *n == to) else {
                    continue;
                };
                self.signals_carried += 1;
                self.net
                    .with_node(*dest, |n: &mut Node<H>, now| {
                        n.layer.receive_signal(now, me, &data)
                    })
                    .unwrap();
            }
        }
    }

    /// Runs for `d` in 1 ms steps, carrying signals between steps.
    pub(crate) fn run(&mut self, d: Duration) {
        let end = self.net.now() + d;
        while self.net.now() < end {
            self.carry_signals();
            self.net.run_for(Duration::from_millis(1)).unwrap();
        }
    }

    /// Runs until `done` or `limit`; returns the virtual time it took.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Option<Duration> {
        let start = self.net.now();
        while self.net.now() < start + limit {
            if done(self) {
                return Some(self.net.now().saturating_since(start));
            }
            self.run(Duration::from_millis(1));
        }
        None
    }
}
