//! P2P on the driver: the [`P2pLayer`] around a protocol is itself a [`Protocol`], and
//! [`EndpointHandle`] gains what the binding needs to switch P2P on and to carry signals
//! between the core and the signaling service (which lives in the TypeScript layer, see
//! `docs/ARCHITECTURE.md`).

use std::net::SocketAddr;

use netcore::config::Config;
use netcore::identity::Identity;
use netcore::p2p::ice::Interface;
use netcore::p2p::layer::{Host, P2pLayer};
use netcore::p2p::transport::P2pConfig;
use netcore::p2p::turn::TurnConfig;
use netcore::time::Timestamp;

use crate::messages_endpoint::EndpointHandle;
use crate::protocol::Protocol;

impl<P: Protocol + Host> Protocol for P2pLayer<P> {
    fn set_config(&mut self, now: Timestamp, config: Config) {
        Protocol::set_config(self.inner_mut(), now, config);
    }

    fn is_settled(&self) -> bool {
        Protocol::is_settled(self.inner())
    }

    fn receive_paused(&self) -> bool {
        Protocol::receive_paused(self.inner())
    }

    fn close_all(&mut self) {
        Protocol::close_all(self.inner_mut());
    }
}

/// What P2P is switched on with (servers already resolved to addresses).
#[derive(Clone, Debug, Default)]
pub struct P2pOptions {
    /// Who we are: the identity our certificate proves.
    pub identity: Option<Identity>,
    /// Interface addresses for host candidates, most preferred first.
    pub interfaces: Vec<Interface>,
    /// STUN servers.
    pub stun_servers: Vec<SocketAddr>,
    /// TURN servers with their credentials.
    pub turn_servers: Vec<(SocketAddr, String, String)>,
}

/// Why P2P could not be switched on.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// P2P needs an identity a certificate proves.
    #[error("P2P needs an identity (with a certificate): peers find us by it")]
    NoIdentity,
    /// The OS random source failed.
    #[error("OS random source failed")]
    Random,
    /// P2P is already on (it is switched on once, at create).
    #[error("P2P is already enabled")]
    AlreadyEnabled,
    /// P2P runs on one driver thread: a peer's path moves between candidate addresses,
    /// which the port's routing of datagrams to driver threads cannot follow.
    #[error("P2P needs an endpoint with one driver thread (driverThreads: 1)")]
    Sharded,
    /// The P2P socket could not be opened.
    #[error(transparent)]
    Bind(#[from] crate::driver::BindError),
}

impl EndpointHandle {
    /// Switches P2P on for this endpoint's socket: gathering starts now, and sends to peers
    /// known only by identity go through rendezvous and ICE from here on.
    pub fn enable_p2p(&self, options: P2pOptions) -> Result<(), P2pError> {
        if self.driver_threads() > 1 {
            return Err(P2pError::Sharded);
        }
        let ice_enable = i32::try_from(self.config().p2p_transport_ice_enable).unwrap_or(0);
        let cfg = transport_config(options, self.local_addr(), ice_enable)?;
        self.driver().with(|m, now| m.enable(now, 0, cfg));
        // The first STUN and TURN requests are the driver's to send.
        self.driver().wake();
        Ok(())
    }

    /// A rendezvous blob the signaling service delivered from `from`.
    pub fn receive_signal(&self, from: &Identity, data: &[u8]) {
        self.driver()
            .with(|m, now| m.receive_signal(now, from, data));
        self.driver().wake();
    }

    /// The signaling service could not deliver a blob to `to` (`reason`: `not-registered`,
    /// `unavailable`, ...; `detail`: anything more, for the failure's text).
    pub fn signal_undeliverable(&self, to: &Identity, reason: &str, detail: &str) {
        self.driver()
            .with(|m, now| m.signal_undeliverable(now, to, reason, detail));
        self.driver().wake();
    }

    /// Our gathered candidates and what gathering could not do (diagnostics).
    pub fn p2p_candidates(&self) -> Option<(Vec<String>, Vec<String>)> {
        self.driver().read(|m| {
            m.transport()
                .map(|t| (t.local_candidates(), t.gathering_notes().to_vec()))
        })
    }
}

/// The transport's configuration for a socket bound to `local`.
pub(crate) fn transport_config(
    options: P2pOptions,
    local: SocketAddr,
    ice_enable: i32,
) -> Result<P2pConfig, P2pError> {
    let identity = options
        .identity
        .filter(|i| i.ip_addr().is_none())
        .ok_or(P2pError::NoIdentity)?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|_| P2pError::Random)?;
    Ok(P2pConfig {
        identity,
        interfaces: usable_interfaces(&options.interfaces, local),
        port: local.port(),
        stun_servers: options.stun_servers,
        turn_servers: options
            .turn_servers
            .into_iter()
            .map(|(server, user, pass)| TurnConfig::new(server, &user, &pass))
            .collect(),
        ice_enable,
        secret,
    })
}

/// The interfaces a socket bound to `local` is reachable on: all of its family for an
/// unspecified address (IPv4 and IPv6 for `[::]`), else the one bound.
fn usable_interfaces(all: &[Interface], local: SocketAddr) -> Vec<Interface> {
    let ip = local.ip();
    if ip.is_unspecified() {
        all.iter()
            .copied()
            .filter(|i| ip.is_ipv6() || i.ip.is_ipv4())
            .collect()
    } else {
        let prefix = all.iter().find(|i| i.ip == ip).map_or(0, |i| i.prefix_len);
        vec![Interface {
            ip,
            prefix_len: prefix,
        }]
    }
}
