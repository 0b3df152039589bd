//! P2P on a messages endpoint: switching it on, and the signals between the core and the
//! signaling service (the TypeScript layer runs the WebSocket client or the application's
//! own signaling, see `ts/p2p.ts`).

use std::net::{IpAddr, SocketAddr};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use netcore::p2p::ice::Interface;
use netdriver::P2pOptions;

use crate::endpoint::NativeEndpoint;
use crate::security::identity;

/// A TURN server, resolved.
#[napi(object)]
pub struct NativeTurnServer {
    /// `ip:port`.
    pub address: String,
    /// Long-term credential user name.
    pub username: String,
    /// Its password.
    pub password: String,
}

/// A local interface address.
#[napi(object)]
pub struct NativeInterface {
    /// The address.
    pub address: String,
    /// Subnet prefix length.
    pub prefix_len: u32,
}

/// What P2P is switched on with.
#[napi(object)]
pub struct NativeP2pOptions {
    /// Our identity (the one our certificate proves).
    pub identity: String,
    /// Interfaces for host candidates, most preferred first.
    pub interfaces: Vec<NativeInterface>,
    /// STUN servers, `ip:port`.
    pub stun_servers: Vec<String>,
    /// TURN servers.
    pub turn_servers: Vec<NativeTurnServer>,
}

fn addr(what: &str, s: &str) -> Result<SocketAddr> {
    s.parse()
        .map_err(|_| Error::new(Status::InvalidArg, format!("{what}: {s:?} is not ip:port")))
}

/// The driver's P2P options from what JS gave (addresses parsed; a TypeError for bad ones).
pub(crate) fn p2p_options(options: NativeP2pOptions) -> Result<P2pOptions> {
    let mut interfaces = Vec::new();
    for i in &options.interfaces {
        let ip: IpAddr = i
            .address
            .parse()
            .map_err(|_| Error::new(Status::InvalidArg, format!("interface {:?}", i.address)))?;
        interfaces.push(Interface {
            ip,
            prefix_len: u8::try_from(i.prefix_len.min(128)).unwrap_or(0),
        });
    }
    let stun_servers = options
        .stun_servers
        .iter()
        .map(|s| addr("STUN server", s))
        .collect::<Result<Vec<_>>>()?;
    let turn_servers = options
        .turn_servers
        .into_iter()
        .map(|t| Ok((addr("TURN server", &t.address)?, t.username, t.password)))
        .collect::<Result<Vec<_>>>()?;
    Ok(P2pOptions {
        identity: Some(identity(&options.identity)?),
        interfaces,
        stun_servers,
        turn_servers,
    })
}

#[napi]
impl NativeEndpoint {
    /// Switches P2P on (gathering starts now).
    #[napi]
    pub fn enable_p2p(&self, options: NativeP2pOptions) -> Result<()> {
        let opts = p2p_options(options)?;
        let r = self
            .handle()
            .enable_p2p(opts)
            .map_err(|e| Error::new(Status::InvalidArg, e.to_string()));
        // P2P may open a socket of its own: the JS thread polls it too.
        self.sync_reader();
        r
    }

    /// A rendezvous blob the signaling service delivered from `from`.
    #[napi]
    pub fn receive_signal(&self, from: String, data: Uint8ArraySlice<'_>) {
        // A sender whose identity does not parse has nothing for us.
        if let Ok(from) = identity(&from) {
            self.handle().receive_signal(&from, &data);
        }
    }

    /// The signaling service could not deliver a blob to `to`.
    #[napi]
    pub fn signal_undeliverable(&self, to: String, reason: String, detail: String) {
        if let Ok(to) = identity(&to) {
            self.handle().signal_undeliverable(&to, &reason, &detail);
        }
    }

    /// Our P2P candidates (`candidate:` lines) and gathering's failure notes, or null
    /// without P2P.
    #[napi]
    pub fn p2p_candidates(&self) -> Option<Vec<Vec<String>>> {
        self.handle().p2p_candidates().map(|(c, n)| vec![c, n])
    }
}
