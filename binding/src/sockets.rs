//! The connection API object JS holds (`NetworkingSockets`): handles are Steam's integers,
//! passed as numbers; results are Steam's values.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use netcore::config::Config;
use netcore::connection::Connection;
use netcore::eresult::EResult;
use netcore::p2p::layer::LayerEvent;
use netcore::sockets::{ConnInfo, ConnOptions, SocketsEvent};
use netdriver::{OutgoingToConnection, SocketsHandle};

use crate::config::{config_map, entries, problem, ConfigProblem};
use crate::events::JsSink;
use crate::receive_batch;
use crate::security::{security, SecurityOptions};
use crate::uv_reader::{reader_source, Reader};

/// A connection's details (Steam's `SteamNetConnectionInfo_t`).
#[napi(object)]
pub struct NativeConnInfo {
    /// Who the peer is, canonical text.
    pub identity_remote: String,
    /// The application's user data.
    pub user_data: f64,
    /// The listen socket it came through, 0 for a dialled connection.
    pub listen_socket: u32,
    /// The peer's address, `host:port`.
    pub remote_address: String,
    /// Steam's state value.
    pub state: i32,
    /// Steam's end reason (0 while live).
    pub end_reason: i32,
    /// The end's detail.
    pub end_debug: String,
    /// The application's name for it.
    pub name: String,
    /// Steam's `ConnectionInfo` flags.
    pub flags: i32,
}

fn conn_info(i: ConnInfo) -> NativeConnInfo {
    NativeConnInfo {
        identity_remote: i.identity_remote.to_string(),
        user_data: i.user_data as f64,
        listen_socket: i.listen_socket,
        remote_address: i.remote_address.to_string(),
        state: i.state.code(),
        end_reason: i.end.as_ref().map_or(0, |e| e.reason.code()),
        end_debug: i.end.map(|e| e.debug).unwrap_or_default(),
        name: i.name,
        flags: i.flags,
    }
}

/// A connection's real-time figures (Steam's `SteamNetConnectionRealTimeStatus_t`).
#[napi(object)]
pub struct NativeConnStatus {
    /// Steam's state value.
    pub state: i32,
    /// Smoothed round trip in ms, once measured.
    pub ping_ms: Option<f64>,
    /// Fraction of the peer's packets that reached us, or -1.
    pub quality_local: f64,
    /// Fraction of our packets that reached the peer, or -1.
    pub quality_remote: f64,
    /// Datagrams sent per second (last window).
    pub out_packets_per_sec: f64,
    /// Bytes sent per second.
    pub out_bytes_per_sec: f64,
    /// Datagrams received per second.
    pub in_packets_per_sec: f64,
    /// Bytes received per second.
    pub in_bytes_per_sec: f64,
    /// Current send rate, B/s.
    pub send_rate: f64,
    /// Unreliable bytes queued.
    pub pending_unreliable: f64,
    /// Reliable bytes queued.
    pub pending_reliable: f64,
    /// Reliable bytes sent, not yet acknowledged.
    pub sent_unacked_reliable: f64,
    /// Expected wait of a newly queued message, µs.
    pub queue_time_us: f64,
}

fn conn_status(c: &Connection) -> NativeConnStatus {
    let r = c.rates();
    NativeConnStatus {
        state: c.state().code(),
        ping_ms: c.rtt().map(|d| d.as_secs_f64() * 1000.0),
        quality_local: r.quality_local,
        quality_remote: r.quality_remote,
        out_packets_per_sec: r.out_packets,
        out_bytes_per_sec: r.out_bytes,
        in_packets_per_sec: r.in_packets,
        in_bytes_per_sec: r.in_bytes,
        send_rate: c.send_rate() as f64,
        pending_unreliable: c.pending_unreliable() as f64,
        pending_reliable: c.pending_reliable() as f64,
        sent_unacked_reliable: c.unacked_reliable_bytes() as f64,
        queue_time_us: c.queue_time().as_micros() as f64,
    }
}

/// An event of a connection-API instance, for the JS side.
#[napi]
pub enum NativeSocketsEvent {
    /// A connection changed state (Steam's `SteamNetConnectionStatusChangedCallback_t`).
    StatusChanged {
        /// The connection.
        conn: u32,
        /// Its details now.
        info: NativeConnInfo,
        /// The state it left.
        old_state: i32,
    },
    /// Messages wait on a connection whose queue was empty.
    Messages {
        /// The connection.
        conn: u32,
        /// Its poll group (0: none).
        poll_group: u32,
    },
    /// P2P: a rendezvous blob for the signaling service to deliver.
    Signal {
        /// The recipient, canonical text.
        identity: String,
        /// The blob.
        data: Buffer,
    },
}

type SocketsSink = JsSink<LayerEvent<SocketsEvent>, NativeSocketsEvent>;

impl From<LayerEvent<SocketsEvent>> for NativeSocketsEvent {
    fn from(e: LayerEvent<SocketsEvent>) -> Self {
        match e {
            LayerEvent::Signal { to, data } => NativeSocketsEvent::Signal {
                identity: to.to_string(),
                data: data.into(),
            },
            LayerEvent::Host(SocketsEvent::StatusChanged { conn, info, old }) => {
                NativeSocketsEvent::StatusChanged {
                    conn,
                    info: conn_info(info),
                    old_state: old.code(),
                }
            }
            LayerEvent::Host(SocketsEvent::Messages { conn, poll_group }) => {
                NativeSocketsEvent::Messages { conn, poll_group }
            }
        }
    }
}

fn bind_error(e: netdriver::BindError) -> Error {
    Error::new(Status::GenericFailure, e.to_string())
}

fn config_with(base: &Config, values: HashMap<String, f64>) -> Result<Config> {
    let mut cfg = base.clone();
    cfg.apply(&entries(values))
        .map_err(|e| Error::new(Status::InvalidArg, e.to_string()))?;
    Ok(cfg)
}

/// A send result as one number: the message number (>= 1), or minus Steam's `EResult`.
pub(crate) fn send_result(r: std::result::Result<u64, EResult>) -> f64 {
    match r {
        Ok(n) => n as f64,
        Err(e) => -f64::from(e as i32),
    }
}

/// A connection-API instance.
#[napi]
pub struct NativeSockets {
    // Before `inner`: the polls stop before the driver can free a socket.
    reader: Option<Rc<Reader>>,
    inner: Arc<SocketsHandle>,
}

impl NativeSockets {
    /// Re-checks which sockets the JS thread polls (sockets opened, knobs changed).
    fn sync_reader(&self) {
        if let Some(r) = &self.reader {
            r.sync();
        }
    }

    /// A dial's options from what JS gave (config values over the instance's).
    fn conn_options(
        &self,
        config: HashMap<String, f64>,
        user_data: Option<f64>,
        symmetric: bool,
    ) -> Result<ConnOptions> {
        let config = (!config.is_empty())
            .then(|| config_with(&self.inner.config(), config))
            .transpose()?;
        Ok(ConnOptions {
            config,
            user_data: user_data.map(|u| u as i64),
            symmetric,
        })
    }
}

#[napi]
impl NativeSockets {
    /// Starts an instance; `on_events` receives event batches.
    #[napi(factory)]
    pub fn create(
        env: Env,
        config: HashMap<String, f64>,
        options: SecurityOptions,
        on_events: Function<'_, Vec<NativeSocketsEvent>, ()>,
    ) -> Result<Self> {
        let cfg = config_with(&Config::default(), config)?;
        let (on_wake, slot) = crate::uv_reader::sync_on_wake();
        let sink = Arc::new(SocketsSink::new(&on_events, on_wake)?);
        let inner =
            SocketsHandle::start(cfg, security(options)?, sink.clone()).map_err(bind_error)?;
        let inner = Arc::new(inner);
        let reader = Reader::new(env.raw(), on_events.raw(), reader_source(&inner, sink))?;
        crate::uv_reader::fill_slot(&slot, &reader);
        Ok(NativeSockets { reader, inner })
    }

    /// Opens a listen socket on `bind` (`host:port`); its handle and the address bound.
    #[napi]
    pub fn create_listen_socket_ip(
        &self,
        bind: String,
        config: HashMap<String, f64>,
    ) -> Result<Vec<String>> {
        let cfg = config_with(&self.inner.config(), config)?;
        let (h, addr) = self
            .inner
            .create_listen_socket(&bind, cfg)
            .map_err(bind_error)?;
        // A new socket: the JS thread polls it from now on.
        self.sync_reader();
        Ok(vec![h.to_string(), addr.to_string()])
    }

    /// Closes a listen socket and its connections.
    #[napi]
    pub fn close_listen_socket(&self, h: u32) -> bool {
        self.inner.close_listen_socket(h)
    }

    /// The address a listen socket is bound to.
    #[napi]
    pub fn listen_socket_address(&self, h: u32) -> Option<String> {
        self.inner.listen_address(h).map(|a| a.to_string())
    }

    /// Dials `address` (`host:port`); 0 when the connection table is full.
    #[napi]
    pub fn connect_by_ip_address(
        &self,
        address: String,
        config: HashMap<String, f64>,
        user_data: Option<f64>,
        symmetric: bool,
    ) -> Result<u32> {
        let remote: SocketAddr = address.parse().map_err(|_| {
            Error::new(
                Status::InvalidArg,
                format!("address must be an IP address and port, got {address:?}"),
            )
        })?;
        let options = self.conn_options(config, user_data, symmetric)?;
        let h = self.inner.connect(remote, options).map_err(bind_error)?;
        // The first dial opens the outgoing socket.
        self.sync_reader();
        Ok(h.unwrap_or(0))
    }

    /// Switches P2P on (opens the P2P socket; gathering starts now); the socket's address.
    #[napi]
    pub fn enable_p2p(&self, options: crate::p2p::NativeP2pOptions) -> Result<String> {
        let opts = crate::p2p::p2p_options(options)?;
        let r = self
            .inner
            .enable_p2p(opts)
            .map(|a| a.to_string())
            .map_err(|e| Error::new(Status::InvalidArg, e.to_string()));
        self.sync_reader();
        r
    }

    /// A rendezvous blob the signaling service delivered from `from`.
    #[napi]
    pub fn receive_signal(&self, from: String, data: Uint8ArraySlice<'_>) {
        // A sender whose identity does not parse has nothing for us.
        if let Ok(from) = crate::security::identity(&from) {
            self.inner.receive_signal(&from, &data);
        }
    }

    /// The signaling service could not deliver a blob to `to`.
    #[napi]
    pub fn signal_undeliverable(&self, to: String, reason: String, detail: String) {
        if let Ok(to) = crate::security::identity(&to) {
            self.inner.signal_undeliverable(&to, &reason, &detail);
        }
    }

    /// Dials `identity` at virtual port `virtual_port` through P2P: the handle (0 when the
    /// tables are full), or an error saying why not (InvalidArg for a bad peer).
    #[napi]
    pub fn connect_p2p(
        &self,
        identity: String,
        virtual_port: u32,
        config: HashMap<String, f64>,
        user_data: Option<f64>,
        symmetric: bool,
    ) -> Result<u32> {
        let peer = crate::security::identity(&identity)?;
        let options = self.conn_options(config, user_data, symmetric)?;
        use netcore::sockets::ConnectP2pError as E;
        match self.inner.connect_p2p(&peer, virtual_port, options) {
            Ok(h) => Ok(h),
            // As connectByIPAddress: a full table is the invalid handle.
            Err(E::Full) => Ok(0),
            Err(e @ (E::AddressIdentity(_) | E::Ourselves)) => {
                Err(Error::new(Status::InvalidArg, e.to_string()))
            }
            Err(e) => Err(Error::new(Status::GenericFailure, e.to_string())),
        }
    }

    /// A P2P listen socket on `virtual_port`; its handle, or an error saying why not.
    #[napi]
    pub fn create_listen_socket_p2p(
        &self,
        virtual_port: u32,
        config: HashMap<String, f64>,
    ) -> Result<u32> {
        let cfg = config_with(&self.inner.config(), config)?;
        self.inner
            .create_listen_socket_p2p(virtual_port, cfg)
            .map_err(|e| {
                let why = match e {
                    EResult::InvalidState => {
                        "P2P is not enabled on this instance (create it with signaling)".to_owned()
                    }
                    _ => format!("virtual port {virtual_port} already has a listen socket"),
                };
                Error::new(Status::GenericFailure, why)
            })
    }

    /// Accepts an incoming connection; an EResult value.
    #[napi]
    pub fn accept_connection(&self, h: u32) -> i32 {
        self.inner.accept(h) as i32
    }

    /// Closes a connection; false for a bad handle or reason.
    #[napi]
    pub fn close_connection(&self, h: u32, reason: i32, debug: String, linger: bool) -> bool {
        self.inner.close_connection(h, reason, &debug, linger)
    }

    /// A connection's details, or null for a bad handle.
    #[napi]
    pub fn connection_info(&self, h: u32) -> Option<NativeConnInfo> {
        self.inner.info(h).map(conn_info)
    }

    /// A connection's real-time figures, or null for a bad handle.
    #[napi]
    pub fn real_time_status(&self, h: u32) -> Option<NativeConnStatus> {
        self.inner.with(|s, _| s.connection_of(h).map(conn_status))
    }

    /// Sets a connection's user data; false for a bad handle.
    #[napi]
    pub fn set_user_data(&self, h: u32, data: f64) -> bool {
        self.inner.with(|s, _| s.set_user_data(h, data as i64))
    }

    /// A connection's user data, -1 for a bad handle.
    #[napi]
    pub fn user_data(&self, h: u32) -> f64 {
        self.inner.with(|s, _| s.user_data(h)) as f64
    }

    /// Sets a connection's name; false for a bad handle.
    #[napi]
    pub fn set_name(&self, h: u32, name: String) -> bool {
        self.inner.with(|s, _| s.set_name(h, &name))
    }

    /// A connection's name, or null for a bad handle.
    #[napi]
    pub fn name(&self, h: u32) -> Option<String> {
        self.inner.with(|s, _| s.name(h).map(str::to_owned))
    }

    /// Sends what Nagle holds on a connection; an EResult value.
    #[napi]
    pub fn flush(&self, h: u32) -> i32 {
        self.inner.flush(h) as i32
    }

    /// Sets lane priorities and weights; an EResult value.
    #[napi]
    pub fn configure_lanes(
        &self,
        h: u32,
        priorities: Int32ArraySlice<'_>,
        weights: Uint16ArraySlice<'_>,
    ) -> i32 {
        self.inner
            .with(|s, _| s.configure_lanes(h, &priorities, &weights)) as i32
    }

    /// The per-call send, as a plain function bound to this instance (`fast_send.rs`):
    /// `(conn, data, flags, lane) => number`: the message number, or minus an EResult value.
    #[napi(
        ts_return_type = "(conn: number, data: Uint8Array, flags: number, lane: number) => number"
    )]
    pub fn send_function<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let f = crate::fast_send::make(env.raw(), Arc::clone(&self.inner))?;
        // SAFETY: `f` is a live value of this call's environment.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f) })
    }

    /// Queues many messages in one call: payloads back to back in `data`, one entry per
    /// message in the other arrays. One result per message: its message number, or minus an
    /// EResult value.
    #[napi]
    pub fn send_batch(
        &self,
        conns: Uint32ArraySlice<'_>,
        data: Uint8ArraySlice<'_>,
        sizes: Uint32ArraySlice<'_>,
        flags: Uint32ArraySlice<'_>,
        lanes: Uint16ArraySlice<'_>,
    ) -> Float64Array {
        let n = sizes.len();
        if conns.len() != n || flags.len() != n || lanes.len() != n {
            return Float64Array::new(vec![-f64::from(EResult::InvalidParam as i32); n]);
        }
        let all: &[u8] = &data;
        let mut results = Vec::with_capacity(n);
        let mut batch = Vec::with_capacity(n);
        let mut slots: Vec<Option<EResult>> = Vec::with_capacity(n);
        let mut offset = 0usize;
        for i in 0..n {
            let end = offset.saturating_add(sizes[i] as usize);
            match all.get(offset..end) {
                Some(bytes) => {
                    slots.push(None);
                    batch.push(OutgoingToConnection {
                        conn: conns[i],
                        data: bytes,
                        flags: flags[i],
                        lane: lanes[i],
                    });
                }
                None => slots.push(Some(EResult::InvalidParam)),
            }
            offset = end;
        }
        let mut sent = Vec::with_capacity(batch.len());
        self.inner.send_batch(batch.into_iter(), |r| sent.push(r));
        let mut sent = sent.into_iter();
        for slot in slots {
            let r = match slot {
                Some(e) => Err(e),
                None => sent.next().unwrap_or(Err(EResult::Fail)),
            };
            results.push(send_result(r));
        }
        Float64Array::new(results)
    }

    /// Takes up to `max` messages from a connection, packed (layout in
    /// `receive_batch.rs`); null when none wait or the handle is bad.
    #[napi]
    pub fn receive<'env>(
        &self,
        env: &'env Env,
        h: u32,
        max: u32,
    ) -> Result<Option<BufferSlice<'env>>> {
        match self.inner.receive(h, max as usize) {
            Some((msgs, left)) if !msgs.is_empty() => {
                receive_batch::pack_received(env, &msgs, left).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Takes up to `max` messages from a poll group, packed; null when none wait.
    #[napi]
    pub fn receive_on_poll_group<'env>(
        &self,
        env: &'env Env,
        g: u32,
        max: u32,
    ) -> Result<Option<BufferSlice<'env>>> {
        match self.inner.receive_on_poll_group(g, max as usize) {
            Some((msgs, left)) if !msgs.is_empty() => {
                receive_batch::pack_received(env, &msgs, left).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A new poll group's handle.
    #[napi]
    pub fn create_poll_group(&self) -> u32 {
        self.inner.with(|s, _| s.create_poll_group())
    }

    /// Destroys a poll group; false for a bad handle.
    #[napi]
    pub fn destroy_poll_group(&self, g: u32) -> bool {
        self.inner.with(|s, _| s.destroy_poll_group(g))
    }

    /// Moves a connection into a poll group (0: none); false for a bad handle.
    #[napi]
    pub fn set_connection_poll_group(&self, h: u32, g: u32) -> bool {
        self.inner.with(|s, _| s.set_poll_group(h, g))
    }

    /// A connected pair of connections over loopback: `[a, b]`, or null.
    #[napi]
    pub fn create_socket_pair(&self) -> Result<Option<Vec<u32>>> {
        Ok(self
            .inner
            .create_socket_pair()
            .map_err(bind_error)?
            .map(|(a, b)| vec![a, b]))
    }

    /// Applies configuration changes; returns the problem instead of changing anything.
    #[napi]
    pub fn set_config(&self, values: HashMap<String, f64>) -> Option<ConfigProblem> {
        let r = self.inner.set_config(&entries(values)).err().map(problem);
        // Fake-network knobs hand reading to the driver thread (and back).
        self.sync_reader();
        r
    }

    /// The configuration in force for new connections.
    #[napi]
    pub fn config(&self) -> HashMap<String, f64> {
        config_map(&self.inner.config())
    }

    /// Stops the instance; resolves once its sockets are freed.
    #[napi]
    pub fn close(&self) -> AsyncTask<crate::endpoint::CloseTask> {
        if let Some(r) = &self.reader {
            r.shutdown();
        }
        AsyncTask::new(crate::endpoint::CloseTask::new(self.inner.close()))
    }
}
