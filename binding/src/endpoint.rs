//! The messages endpoint object JS holds: one bound socket and its driver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use netcore::config::Config;
use netcore::Identity;
use netdriver::EndpointHandle;

use crate::config::{config_map, entries, problem, ConfigProblem};
use crate::events::{EventFn, JsSink, NativeEvent};
use crate::receive_batch;
use crate::security::{identity, security, SecurityOptions};

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
}

/// One bound endpoint.
#[napi]
pub struct NativeEndpoint {
    inner: EndpointHandle,
}

impl NativeEndpoint {
    /// The driver's handle (for `p2p.rs`).
    pub(crate) fn handle(&self) -> &EndpointHandle {
        &self.inner
    }
}

#[napi]
impl NativeEndpoint {
    /// Binds a socket and starts the driver; `on_events` receives event batches.
    #[napi(factory)]
    pub fn bind(
        bind: String,
        config: HashMap<String, f64>,
        options: SecurityOptions,
        on_events: Function<'_, Vec<NativeEvent>, ()>,
    ) -> Result<Self> {
        let mut cfg = Config::default();
        cfg.apply(&entries(config))
            .map_err(|e| Error::new(Status::InvalidArg, e.to_string()))?;
        let tsfn: EventFn = on_events
            .build_threadsafe_function()
            .callee_handled::<false>()
            .build()?;
        let security = security(options)?;
        let inner = EndpointHandle::bind(&bind, cfg, security, Arc::new(JsSink(tsfn)))
            .map_err(|e| Error::new(Status::GenericFailure, e.to_string()))?;
        Ok(NativeEndpoint { inner })
    }

    /// The bound address as `host:port`.
    #[napi]
    pub fn local_address(&self) -> String {
        self.inner.local_addr().to_string()
    }

    /// Queues a message; returns an EResult value.
    #[napi]
    pub fn send(
        &self,
        identity_remote: String,
        remote_address: Option<String>,
        data: Uint8ArraySlice<'_>,
        flags: u32,
        channel: i32,
    ) -> i32 {
        let Ok(peer) = identity(&identity_remote) else {
            return netcore::EResult::InvalidParam as i32;
        };
        let remote = match remote_address.map(|a| a.parse::<SocketAddr>()) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => return netcore::EResult::InvalidParam as i32,
        };
        self.inner.send(&peer, remote, &data, flags, channel) as i32
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
        let msgs = self.inner.receive(channel, max as usize);
        if msgs.is_empty() {
            return Ok(None);
        }
        // A copy into memory the JS engine manages: cheaper to create than an external
        // buffer with a finalizer, and the packed batch is small.
        BufferSlice::copy_from(env, receive_batch::pack(&msgs)).map(Some)
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
            .map(|s| NativeSessionInfo {
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
                flags: s.flags,
            }))
    }

    /// Applies configuration changes; returns the problem instead of changing anything.
    #[napi]
    pub fn set_config(&self, values: HashMap<String, f64>) -> Option<ConfigProblem> {
        self.inner.set_config(&entries(values)).err().map(problem)
    }

    /// The configuration in force.
    #[napi]
    pub fn config(&self) -> HashMap<String, f64> {
        config_map(&self.inner.config())
    }

    /// Stops the endpoint; resolves once the socket is freed.
    #[napi]
    pub fn close(&self) -> AsyncTask<CloseTask> {
        AsyncTask::new(CloseTask(self.inner.close()))
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
