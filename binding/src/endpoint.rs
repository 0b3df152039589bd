//! The messages endpoint object JS holds: one bound socket and its driver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use netcore::config::Config;
use netcore::Identity;
use netdriver::EndpointHandle;

use crate::config::{config_map, entries, problem, ConfigProblem};
use crate::events::{MessagesSink, NativeEvent};
use crate::receive_batch;
use crate::security::{identity, security, SecurityOptions};
use crate::uv_reader::{self, Reader};

/// Why a socket could not be bound, shaped as Node's `dgram` errors are.
#[napi(object)]
pub struct BindFailure {
    /// Node's error code (`EADDRINUSE`, `EADDRNOTAVAIL`, `EACCES`, ...) when the OS's error
    /// has one, or `ERR_INVALID_ARG_VALUE` for an address that does not parse or resolve.
    pub code: Option<String>,
    /// The OS's error number, when it gave one.
    pub os_errno: Option<i32>,
    /// What was bound.
    pub address: String,
    /// The OS's words.
    pub message: String,
}

fn bind_failure(e: netdriver::BindError) -> BindFailure {
    use std::io::ErrorKind;
    match e {
        netdriver::BindError::BadAddress(addr) => BindFailure {
            code: Some("ERR_INVALID_ARG_VALUE".into()),
            os_errno: None,
            message: format!("invalid bind address {addr:?}: expected host:port, e.g. 0.0.0.0:27015 or [::]:27015"),
            address: addr,
        },
        netdriver::BindError::Io { addr, source } => {
            // The kinds Rust names portably; anything else keeps the OS number for the TS
            // layer to name as libuv does.
            let code = match source.kind() {
                ErrorKind::AddrInUse => Some("EADDRINUSE"),
                ErrorKind::AddrNotAvailable => Some("EADDRNOTAVAIL"),
                ErrorKind::PermissionDenied => Some("EACCES"),
                _ => None,
            };
            BindFailure {
                code: code.map(str::to_owned),
                os_errno: source.raw_os_error(),
                message: source.to_string(),
                address: addr,
            }
        }
    }
}

/// One channel's unread messages in a session.
#[napi(object)]
pub struct NativeBacklog {
    /// The channel; -1 for messages held before the session is accepted.
    pub channel: i32,
    /// Messages.
    pub messages: f64,
    /// Bytes.
    pub bytes: f64,
}

fn backlog(b: netcore::messages::backlog::Backlog) -> NativeBacklog {
    NativeBacklog {
        channel: b.channel.unwrap_or(-1),
        messages: b.messages as f64,
        bytes: b.bytes as f64,
    }
}

/// One row of the sessions-by-state census.
#[napi(object)]
pub struct NativeStateCount {
    /// Steam's `ESteamNetworkingConnectionState` value.
    pub state: i32,
    /// Sessions in it.
    pub count: u32,
}

/// The endpoint's counters (see `netcore::endpoint::EndpointStats` and
/// `netcore::messages::MessagesStats` for what each counts).
#[napi(object)]
pub struct NativeEndpointStats {
    /// Datagrams received.
    pub datagrams_received: f64,
    /// Bytes received.
    pub bytes_received: f64,
    /// Datagrams sent.
    pub datagrams_sent: f64,
    /// Bytes sent.
    pub bytes_sent: f64,
    /// Datagrams that did not parse.
    pub dropped_malformed: f64,
    /// Data packets that failed authentication.
    pub dropped_unauthenticated: f64,
    /// Data packets dropped as replays.
    pub dropped_replayed: f64,
    /// Datagrams a connection refused.
    pub dropped_by_connection: f64,
    /// Datagrams for no known connection.
    pub dropped_unknown_connection: f64,
    /// Connect requests with a bad or stale cookie or an old protocol.
    pub dropped_bad_challenge: f64,
    /// Connect requests refused for their certificate or crypt info.
    pub dropped_bad_crypto: f64,
    /// Connect requests refused for a full connection table.
    pub dropped_table_full: f64,
    /// Challenge requests answered.
    pub challenges_answered: f64,
    /// Unanswered for their source's rate limit.
    pub rate_limited_source: f64,
    /// Unanswered for the endpoint-wide rate limit.
    pub rate_limited_global: f64,
    /// Handshakes run: connect requests checked and answered with a key exchange, and `ConnectOK`s checked.
    pub handshakes: f64,
    /// Valid handshakes left unanswered for their source IP's handshake budget.
    pub handshakes_limited_source: f64,
    /// Valid handshakes left unanswered for the endpoint-wide handshake budget.
    pub handshakes_limited_global: f64,
    /// Connect requests refused because the connection at their address still answers.
    pub refused_connect_live: f64,
    /// Connections given up because their peer asked for a new one and then answered no probe.
    pub peers_gone_silent: f64,
    /// Control messages naming one of our connections, from another address.
    pub refused_wrong_source: f64,
    /// Closes from a connection's address naming another peer connection id.
    pub refused_wrong_peer_id: f64,
    /// Unreliable messages dropped for a full receive backlog.
    pub dropped_receive_queue_full: f64,
    /// Times a session's receive backlog filled up.
    pub receive_stalls: f64,
    /// Sessions in all.
    pub sessions: u32,
    /// Sessions by state.
    pub sessions_by_state: Vec<NativeStateCount>,
    /// Sessions whose receive backlog is full now.
    pub sessions_receive_blocked: u32,
    /// Messages waiting to be read, all channels.
    pub messages_queued: f64,
    /// Of the datagrams received, those read on the JS thread (`uv_reader.rs`).
    pub datagrams_received_on_js_thread: f64,
}

/// A snapshot of one session.
#[napi(object)]
pub struct NativeSessionInfo {
    /// Steam's `ESteamNetworkingConnectionState` value.
    pub state: i32,
    /// Where datagrams go.
    pub remote_address: String,
    /// Whether the local side accepted the session.
    pub accepted: bool,
    /// Payload bytes queued, not yet sent.
    pub pending_bytes: f64,
    /// Datagrams sent.
    pub packets_sent: f64,
    /// Bytes sent.
    pub bytes_sent: f64,
    /// Datagrams received.
    pub packets_received: f64,
    /// Bytes received.
    pub bytes_received: f64,
    /// Reliable bytes sent and not yet acknowledged.
    pub unacked_reliable: f64,
    /// Smoothed round-trip time in ms, once measured.
    pub ping_ms: Option<f64>,
    /// Current send rate, B/s.
    pub send_rate: f64,
    /// Packets declared lost.
    pub packets_lost: f64,
    /// Datagrams sent per second (last window).
    pub out_packets_per_sec: f64,
    /// Bytes sent per second.
    pub out_bytes_per_sec: f64,
    /// Datagrams received per second.
    pub in_packets_per_sec: f64,
    /// Bytes received per second.
    pub in_bytes_per_sec: f64,
    /// Fraction of the peer's packets that reached us, or -1.
    pub quality_local: f64,
    /// Fraction of our packets that reached the peer, or -1.
    pub quality_remote: f64,
    /// Unreliable bytes queued.
    pub pending_unreliable: f64,
    /// Reliable bytes queued.
    pub pending_reliable: f64,
    /// Expected wait of a newly queued message, µs.
    pub queue_time_us: f64,
    /// Steam's end reason, when failed.
    pub end_reason: Option<i32>,
    /// Detail, when failed.
    pub end_debug: Option<String>,
    /// Steam's `ConnectionInfo` flags (`Unauthenticated`, and for P2P `Relayed`, `Fast`).
    pub flags: i32,
    /// Ack-eliciting packets acknowledged.
    pub packets_acked: f64,
    /// Datagrams from the peer dropped on arrival.
    pub packets_dropped: f64,
    /// Of those, failed authentication.
    pub packets_unauthenticated: f64,
    /// Of those, replays.
    pub packets_replayed: f64,
    /// Reliable bytes queued again after a loss.
    pub reliable_bytes_resent: f64,
    /// Messages not read yet (or held before acceptance).
    pub unread_messages: f64,
    /// Their bytes.
    pub unread_bytes: f64,
    /// While the receive backlog is full: what holds it.
    pub receive_blocked: Option<NativeBacklog>,
    /// Unread messages per channel.
    pub backlog: Vec<NativeBacklog>,
}

/// One session of `sessions()`.
#[napi(object)]
pub struct NativeSessionEntry {
    /// The peer, canonical text.
    pub identity: String,
    /// Its status.
    pub info: NativeSessionInfo,
}

fn session_info(s: netcore::messages::SessionInfo) -> NativeSessionInfo {
    NativeSessionInfo {
        state: s.state as i32,
        remote_address: s.remote.to_string(),
        accepted: s.accepted,
        pending_bytes: s.pending_bytes as f64,
        packets_sent: s.packets_sent as f64,
        bytes_sent: s.bytes_sent as f64,
        packets_received: s.packets_received as f64,
        bytes_received: s.bytes_received as f64,
        unacked_reliable: s.unacked_reliable as f64,
        ping_ms: s.rtt.map(|d| d.as_secs_f64() * 1000.0),
        send_rate: s.send_rate as f64,
        packets_lost: s.packets_lost as f64,
        out_packets_per_sec: s.rates.out_packets,
        out_bytes_per_sec: s.rates.out_bytes,
        in_packets_per_sec: s.rates.in_packets,
        in_bytes_per_sec: s.rates.in_bytes,
        quality_local: s.rates.quality_local,
        quality_remote: s.rates.quality_remote,
        pending_unreliable: s.pending_unreliable as f64,
        pending_reliable: s.pending_reliable as f64,
        queue_time_us: s.queue_time.as_micros() as f64,
        end_reason: s.end.as_ref().map(|e| e.reason.code()),
        end_debug: s.end.map(|e| e.debug),
        packets_acked: s.packets_acked as f64,
        packets_dropped: s.packets_dropped as f64,
        packets_unauthenticated: s.packets_unauthenticated as f64,
        packets_replayed: s.packets_replayed as f64,
        reliable_bytes_resent: s.reliable_bytes_resent as f64,
        unread_messages: s.unread_messages as f64,
        unread_bytes: s.unread_bytes as f64,
        receive_blocked: s.receive_blocked.map(backlog),
        backlog: s.backlog.into_iter().map(backlog).collect(),
        flags: s.flags,
    }
}

/// Binds a socket (`bind`: `host:port`, or null for the default: `[::]:0` dual-stack where
/// the OS allows it, else `0.0.0.0:0`) and starts its driver; `on_events` receives event
/// batches. `driver_threads` (default 1, at most 16) runs that many driver threads on the
/// port (`netdriver::reuse_port`). Bad options throw (`InvalidArg`); a socket the OS
/// refuses comes back as a [`BindFailure`], so the TS layer can raise the error Node's
/// `dgram` would.
#[napi]
pub fn bind_endpoint(
    env: Env,
    bind: Option<String>,
    config: HashMap<String, f64>,
    options: SecurityOptions,
    on_events: Function<'_, Vec<NativeEvent>, ()>,
    driver_threads: Option<u32>,
) -> Result<Either<NativeEndpoint, BindFailure>> {
    let threads = usize::try_from(driver_threads.unwrap_or(1)).unwrap_or(0);
    if !(1..=netdriver::reuse_port::MAX_SHARDS).contains(&threads) {
        return Err(Error::new(
            Status::InvalidArg,
            format!(
                "driverThreads must be an integer from 1 to {}",
                netdriver::reuse_port::MAX_SHARDS
            ),
        ));
    }
    let mut cfg = Config::default();
    cfg.apply(&entries(config))
        .map_err(|e| Error::new(Status::InvalidArg, e.to_string()))?;
    let security = security(options)?;
    let (on_wake, slot) = uv_reader::sync_on_wake();
    let sink = Arc::new(MessagesSink::new(&on_events, on_wake)?);
    let sink_dyn: Arc<
        dyn netdriver::EventSink<netcore::p2p::layer::LayerEvent<netcore::messages::Event>>,
    > = sink.clone();
    let inner =
        match EndpointHandle::bind_threads(bind.as_deref(), threads, cfg, security, sink_dyn) {
            Ok(inner) => Arc::new(inner),
            Err(e) => return Ok(Either::B(bind_failure(e))),
        };
    // With several driver threads, they read their sockets: the point is to decode on
    // several cores, not on the JS thread.
    let reader = if threads > 1 {
        None
    } else {
        Reader::new(
            env.raw(),
            on_events.raw(),
            uv_reader::reader_source(&inner, Arc::clone(&sink)),
        )?
    };
    uv_reader::fill_slot(&slot, &reader);
    Ok(Either::A(NativeEndpoint {
        reader,
        inner,
        sink,
    }))
}

/// One bound endpoint.
#[napi]
pub struct NativeEndpoint {
    // Before `inner`: dropped first, so the polls stop before the driver can free the socket.
    reader: Option<Rc<Reader>>,
    inner: Arc<EndpointHandle>,
    sink: Arc<MessagesSink>,
}

impl NativeEndpoint {
    /// The driver's handle (for `p2p.rs`).
    pub(crate) fn handle(&self) -> &EndpointHandle {
        &self.inner
    }

    /// Re-checks which sockets the JS thread polls (a socket opened, knobs changed).
    pub(crate) fn sync_reader(&self) {
        if let Some(r) = &self.reader {
            r.sync();
        }
    }
}

#[napi]
impl NativeEndpoint {
    /// Whether the endpoint keeps the event loop alive (`ref()` / `unref()`).
    #[napi]
    pub fn set_ref(&self, env: Env, keep_alive: bool) -> Result<()> {
        if let Some(r) = &self.reader {
            r.set_ref(keep_alive);
        }
        self.sink.set_ref(&env, keep_alive)
    }

    /// Whether a send to a peer has room now (`true`); `false`: a `Writable` event follows
    /// once it has; `null`: the session ended.
    #[napi]
    pub fn watch_writable(&self, identity_remote: String) -> Result<Option<bool>> {
        Ok(self.inner.watch_writable(&identity(&identity_remote)?))
    }

    /// Whether this OS gives `[::]` sockets IPv4 peers too.
    #[napi]
    pub fn dual_stack(&self) -> bool {
        netdriver::dual_stack_available()
    }

    /// Messages waiting on `channel`.
    #[napi]
    pub fn queued(&self, channel: i32) -> u32 {
        u32::try_from(self.inner.queued(channel)).unwrap_or(u32::MAX)
    }

    /// The channels with messages waiting.
    #[napi]
    pub fn waiting_channels(&self) -> Vec<i32> {
        self.inner.waiting_channels()
    }

    /// The endpoint's counters and session census.
    #[napi]
    pub fn stats(&self) -> NativeEndpointStats {
        let r = self.inner.report();
        let (e, m) = (r.endpoint, r.messages);
        NativeEndpointStats {
            datagrams_received: e.datagrams_received as f64,
            bytes_received: e.bytes_received as f64,
            datagrams_sent: e.datagrams_sent as f64,
            bytes_sent: e.bytes_sent as f64,
            dropped_malformed: e.dropped_malformed as f64,
            dropped_unauthenticated: e.dropped_unauthenticated as f64,
            dropped_replayed: e.dropped_replayed as f64,
            dropped_by_connection: e.dropped_by_connection as f64,
            dropped_unknown_connection: e.dropped_unknown_connection as f64,
            dropped_bad_challenge: e.dropped_bad_challenge as f64,
            dropped_bad_crypto: e.dropped_bad_crypto as f64,
            dropped_table_full: e.dropped_table_full as f64,
            challenges_answered: e.challenges_answered as f64,
            rate_limited_source: e.rate_limited_source as f64,
            rate_limited_global: e.rate_limited_global as f64,
            handshakes: e.handshakes as f64,
            handshakes_limited_source: e.handshakes_limited_source as f64,
            handshakes_limited_global: e.handshakes_limited_global as f64,
            refused_connect_live: e.refused_connect_live as f64,
            peers_gone_silent: e.peers_gone_silent as f64,
            refused_wrong_source: e.refused_wrong_source as f64,
            refused_wrong_peer_id: e.refused_wrong_peer_id as f64,
            dropped_receive_queue_full: m.dropped_recv_full as f64,
            receive_stalls: m.receive_stalls as f64,
            sessions: u32::try_from(r.sessions).unwrap_or(u32::MAX),
            sessions_by_state: r
                .sessions_by_state
                .into_iter()
                .map(|(s, n)| NativeStateCount {
                    state: s as i32,
                    count: u32::try_from(n).unwrap_or(u32::MAX),
                })
                .collect(),
            sessions_receive_blocked: u32::try_from(r.sessions_receive_blocked).unwrap_or(u32::MAX),
            messages_queued: r.messages_queued as f64,
            datagrams_received_on_js_thread: self.inner.driver().caller_datagrams() as f64,
        }
    }

    /// Every session's status.
    #[napi]
    pub fn sessions(&self) -> Vec<NativeSessionEntry> {
        self.inner
            .sessions()
            .into_iter()
            .map(|(id, s)| NativeSessionEntry {
                identity: id.to_string(),
                info: session_info(s),
            })
            .collect()
    }

    /// Steam's detailed status text for the session with a peer, or null without one.
    #[napi]
    pub fn detailed_status(&self, identity_remote: String) -> Result<Option<String>> {
        Ok(self.inner.detailed_status(&identity(&identity_remote)?))
    }

    /// The bound address as `host:port`.
    #[napi]
    pub fn local_address(&self) -> String {
        self.inner.local_addr().to_string()
    }

    /// The per-call send, as a plain function bound to this endpoint (`fast_send.rs`):
    /// `(identity, remoteAddress | null, data, flags, channel) => EResult`.
    #[napi(
        ts_return_type = "(identityRemote: string, remoteAddress: string | null | undefined, data: Uint8Array, flags: number, channel: number) => number"
    )]
    pub fn send_function<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let f = crate::fast_send::make(env.raw(), Arc::clone(&self.inner))?;
        // SAFETY: `f` is a live value of this call's environment.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), f) })
    }

    /// Queues many messages in one call (Steam's `SendMessages`): payloads back to back in
    /// `data`, one entry per message in the other arrays, senders deduplicated in `peers`
    /// (with `remotes[i]` the resolved address of `peers[i]`, if any). Returns one EResult
    /// value per message; a message whose peer does not parse gets `InvalidParam`.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn send_batch(
        &self,
        peers: Vec<String>,
        remotes: Vec<Option<String>>,
        data: Uint8ArraySlice<'_>,
        sizes: Uint32ArraySlice<'_>,
        flags: Uint32ArraySlice<'_>,
        channels: Int32ArraySlice<'_>,
        peer_index: Uint32ArraySlice<'_>,
    ) -> Int32Array {
        let n = sizes.len();
        if flags.len() != n || channels.len() != n || peer_index.len() != n {
            return Int32Array::new(vec![netcore::EResult::InvalidParam as i32; n]);
        }
        let parsed: Vec<Option<(Identity, Option<SocketAddr>)>> = peers
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let id = identity(text).ok()?;
                let remote = match remotes.get(i).cloned().flatten() {
                    None => None,
                    Some(a) => Some(a.parse::<SocketAddr>().ok()?),
                };
                Some((id, remote))
            })
            .collect();
        // Messages borrow their bytes from the caller's buffer; each is copied only if
        // accepted, so a batch refused for a full send buffer costs no copies.
        let all: &[u8] = &data;
        let mut results = Vec::with_capacity(n);
        let mut offset = 0usize;
        let mut batch = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        for i in 0..n {
            let size = sizes[i] as usize;
            let end = offset.saturating_add(size);
            let peer = parsed.get(peer_index[i] as usize).and_then(Option::as_ref);
            match (peer, all.get(offset..end)) {
                (Some((id, remote)), Some(_)) => {
                    slots.push(None);
                    batch.push(netdriver::OutgoingMessage {
                        peer: id,
                        remote: *remote,
                        data: &all[offset..end],
                        flags: flags[i],
                        channel: channels[i],
                    });
                }
                _ => slots.push(Some(netcore::EResult::InvalidParam)),
            }
            offset = end;
        }
        let mut sent = Vec::with_capacity(batch.len());
        self.inner.send_batch(batch.into_iter(), |r| sent.push(r));
        let mut sent = sent.into_iter();
        for slot in slots {
            let r = slot
                .or_else(|| sent.next())
                .unwrap_or(netcore::EResult::Fail);
            results.push(r as i32);
        }
        Int32Array::new(results)
    }

    /// Takes up to `max` messages waiting on `channel`, packed into one buffer (`null` when
    /// none wait; layout in `receive_batch.rs`).
    #[napi]
    pub fn receive<'env>(
        &self,
        env: &'env Env,
        channel: i32,
        max: u32,
    ) -> Result<Option<BufferSlice<'env>>> {
        let (msgs, left) = self.inner.receive(channel, max as usize);
        if msgs.is_empty() {
            return Ok(None);
        }
        // Packed straight into memory the JS engine manages: cheaper to create than an
        // external buffer with a finalizer.
        receive_batch::pack(env, &msgs, left).map(Some)
    }

    /// Sends what Nagle holds for a peer now; returns an EResult value.
    #[napi]
    pub fn flush(&self, identity_remote: String) -> i32 {
        match identity(&identity_remote) {
            Ok(peer) => self.inner.flush(&peer) as i32,
            Err(_) => netcore::EResult::InvalidParam as i32,
        }
    }

    /// Accepts a pending session.
    #[napi]
    pub fn accept(&self, identity_remote: String) -> Result<bool> {
        Ok(self.inner.accept(&identity(&identity_remote)?))
    }

    /// Closes a session.
    #[napi]
    pub fn close_session(&self, identity_remote: String) -> Result<bool> {
        Ok(self.inner.close_session(&identity(&identity_remote)?))
    }

    /// Closes a channel with a peer.
    #[napi]
    pub fn close_channel(&self, identity_remote: String, channel: i32) -> Result<bool> {
        Ok(self
            .inner
            .close_channel(&identity(&identity_remote)?, channel))
    }

    /// Status of a session, or null when there is none.
    #[napi]
    pub fn session_info(&self, identity_remote: String) -> Result<Option<NativeSessionInfo>> {
        Ok(self
            .inner
            .session_info(&identity(&identity_remote)?)
            .map(session_info))
    }

    /// Applies configuration changes; returns the problem instead of changing anything.
    #[napi]
    pub fn set_config(&self, values: HashMap<String, f64>) -> Option<ConfigProblem> {
        let r = self.inner.set_config(&entries(values)).err().map(problem);
        // Fake-network knobs hand reading to the driver thread (and back).
        self.sync_reader();
        r
    }

    /// The configuration in force.
    #[napi]
    pub fn config(&self) -> HashMap<String, f64> {
        config_map(&self.inner.config())
    }

    /// Stops the endpoint; resolves once the socket is freed.
    #[napi]
    pub fn close(&self, env: Env) -> Result<AsyncTask<CloseTask>> {
        // The event function lives as long as this object (it is shared with the driver):
        // unreferenced now, it cannot keep the process alive after the close, while the close
        // task itself keeps it alive until the socket is freed.
        self.sink.set_ref(&env, false)?;
        // The driver reads (and lingers) from here on.
        if let Some(r) = &self.reader {
            r.shutdown();
        }
        Ok(AsyncTask::new(CloseTask(self.inner.close())))
    }
}

/// Waits on a libuv worker thread for the driver task to finish.
pub struct CloseTask(Option<tokio::sync::oneshot::Receiver<()>>);

impl CloseTask {
    /// A task that waits on `done` (none: already closed).
    pub fn new(done: Option<tokio::sync::oneshot::Receiver<()>>) -> Self {
        CloseTask(done)
    }
}

impl Task for CloseTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> Result<()> {
        if let Some(rx) = self.0.take() {
            // An error means the task already ended (its sender dropped): closed either way.
            let _ = rx.blocking_recv();
        }
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _out: ()) -> Result<()> {
        Ok(())
    }
}
