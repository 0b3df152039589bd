//! napi-rs glue between `netcore` and the JavaScript API: type conversion only.
//!
//! Everything with protocol meaning lives in `netcore`; this crate turns JS values into
//! Rust ones and back, and forwards driver events to a JS callback through a
//! ThreadsafeFunction (one call per driver wake-up, not per message).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use netcore::config::{Config, ConfigError};
use netcore::crypto::session_setup::LocalSecurity;
use netcore::messages::Event;
use netcore::Identity;
use netdriver::{EndpointHandle, EventSink};

/// A problem with configuration values; the TS layer turns it into a TypeError or RangeError.
#[napi(object)]
pub struct ConfigProblem {
    /// `"unknown"`, `"type"` or `"range"`.
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
}

fn problem(e: ConfigError) -> ConfigProblem {
    let kind = match e {
        ConfigError::UnknownKey(_) => "unknown",
        ConfigError::NotInteger { .. } => "type",
        ConfigError::OutOfRange { .. } | ConfigError::Inconsistent(_) => "range",
    };
    ConfigProblem {
        kind: kind.into(),
        message: e.to_string(),
    }
}

fn entries(map: HashMap<String, f64>) -> Vec<(String, f64)> {
    map.into_iter().collect()
}

/// Checks configuration values against the defaults; `null` when they are all valid.
#[napi]
pub fn check_config(values: HashMap<String, f64>) -> Option<ConfigProblem> {
    Config::default().apply(&entries(values)).err().map(problem)
}

/// Every config key with its default, in declaration order.
#[napi]
pub fn config_defaults() -> HashMap<String, f64> {
    config_map(&Config::default())
}

fn config_map(c: &Config) -> HashMap<String, f64> {
    netcore::config::KEYS
        .iter()
        .filter_map(|k| c.get(k.name).map(|v| (k.name.to_owned(), v as f64)))
        .collect()
}

/// An identity's type tag and canonical text.
#[napi(object)]
pub struct IdentityParts {
    /// Steam's `ESteamNetworkingIdentityType` value.
    pub kind: u32,
    /// Canonical text form.
    pub text: String,
}

/// Parses an identity in Steam's text form; throws with the reason on bad input.
#[napi]
pub fn parse_identity(text: String) -> Result<IdentityParts> {
    let id: Identity = text
        .parse()
        .map_err(|e: netcore::identity::IdentityError| {
            Error::new(Status::InvalidArg, e.to_string())
        })?;
    Ok(IdentityParts {
        kind: id.kind() as u32,
        text: id.to_string(),
    })
}

/// Who an endpoint is and whom it trusts (the `create` options of the same names).
#[napi(object)]
pub struct SecurityOptions {
    /// Ed25519 private key (32-byte seed); generated when absent.
    pub private_key: Option<Buffer>,
    /// CA-issued certificate (protobuf bytes) binding `identity` to that key.
    pub certificate: Option<Buffer>,
    /// Our identity, canonical text.
    pub identity: Option<String>,
    /// CA public keys (32 bytes each) whose certificates we accept.
    #[napi(js_name = "trustedCAs")]
    pub trusted_cas: Option<Vec<Buffer>>,
    /// Accept `ip:` peers without a certificate (default true).
    pub allow_unauthenticated: Option<bool>,
}

fn key32(what: &str, b: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(b).map_err(|_| {
        Error::new(
            Status::InvalidArg,
            format!("{what} must be 32 bytes, got {}", b.len()),
        )
    })
}

fn security(opts: SecurityOptions) -> Result<LocalSecurity> {
    let seed = opts
        .private_key
        .as_deref()
        .map(|k| key32("privateKey", k))
        .transpose()?;
    let identity = opts.identity.as_deref().map(identity).transpose()?;
    let cas = opts
        .trusted_cas
        .unwrap_or_default()
        .iter()
        .map(|k| key32("a trusted CA key", k))
        .collect::<Result<Vec<_>>>()?;
    LocalSecurity::from_options(
        seed,
        opts.certificate.as_deref(),
        identity,
        &cas,
        opts.allow_unauthenticated.unwrap_or(true),
    )
    .map_err(|e| Error::new(Status::InvalidArg, e.to_string()))
}

/// An Ed25519 key pair: the private key is the 32-byte seed.
#[napi(object)]
pub struct KeyPair {
    /// Keep secret.
    pub private_key: Buffer,
    /// Share with peers (for a CA: put it in their `trustedCAs`).
    pub public_key: Buffer,
}

/// Generates an Ed25519 key pair from the OS's random source.
#[napi]
pub fn generate_key_pair() -> Result<KeyPair> {
    let key = netcore::crypto::IdentityKey::generate()
        .map_err(|e| Error::new(Status::GenericFailure, e.to_string()))?;
    Ok(KeyPair {
        private_key: Buffer::from(key.seed().to_vec()),
        public_key: Buffer::from(key.public_key().to_bytes().to_vec()),
    })
}

/// The public key of a private key.
#[napi]
pub fn public_key_of(private_key: Buffer) -> Result<Buffer> {
    let key = netcore::crypto::IdentityKey::from_seed(&key32("privateKey", &private_key)?);
    Ok(Buffer::from(key.public_key().to_bytes().to_vec()))
}

/// A certificate for `identity` and `public_key`, signed with the CA's private key, valid
/// from now for `valid_seconds`.
#[napi]
pub fn issue_certificate(
    ca_private_key: Buffer,
    public_key: Buffer,
    identity_text: String,
    valid_seconds: f64,
) -> Result<Buffer> {
    if !valid_seconds.is_finite() || valid_seconds <= 0.0 {
        return Err(Error::new(
            Status::InvalidArg,
            "validSeconds must be a positive number".to_owned(),
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    netcore::crypto::session_setup::issue_certificate(
        &key32("the CA private key", &ca_private_key)?,
        &key32("publicKey", &public_key)?,
        &identity(&identity_text)?,
        now,
        valid_seconds as u64,
    )
    .map(Buffer::from)
    .map_err(|e| Error::new(Status::InvalidArg, e.to_string()))
}

/// An event for the JS side.
#[napi(object)]
#[derive(Default)]
pub struct NativeEvent {
    /// `"sessionRequest"`, `"sessionFailed"` or `"messages"`.
    pub kind: String,
    /// The remote identity, for session events.
    pub identity: Option<String>,
    /// The channel, for `messages`.
    pub channel: Option<i32>,
    /// The peer's address, for `sessionFailed`.
    pub remote_address: Option<String>,
    /// Steam's end reason, for `sessionFailed`.
    pub end_reason: Option<i32>,
    /// Detail, for `sessionFailed`.
    pub end_debug: Option<String>,
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
}

type EventFn = ThreadsafeFunction<Vec<NativeEvent>, (), Vec<NativeEvent>, Status, false>;

struct JsSink(EventFn);

impl EventSink for JsSink {
    fn emit(&self, events: Vec<Event>) {
        let events = events
            .into_iter()
            .map(|e| match e {
                Event::SessionRequest(id) => NativeEvent {
                    kind: "sessionRequest".into(),
                    identity: Some(id.to_string()),
                    ..NativeEvent::default()
                },
                Event::MessagesWaiting(ch) => NativeEvent {
                    kind: "messages".into(),
                    identity: None,
                    channel: Some(ch),
                    ..NativeEvent::default()
                },
                Event::SessionFailed { peer, remote, end } => NativeEvent {
                    kind: "sessionFailed".into(),
                    identity: Some(peer.to_string()),
                    remote_address: Some(remote.to_string()),
                    end_reason: Some(end.reason.code()),
                    end_debug: Some(end.debug),
                    ..NativeEvent::default()
                },
            })
            .collect();
        // NonBlocking: the queue is unbounded on the Node side; blocking the driver on JS
        // would let a busy JS thread stall the network.
        self.0.call(events, ThreadsafeFunctionCallMode::NonBlocking);
    }
}

fn identity(text: &str) -> Result<Identity> {
    text.parse().map_err(|e: netcore::identity::IdentityError| {
        Error::new(Status::InvalidArg, e.to_string())
    })
}

/// One bound endpoint.
#[napi]
pub struct NativeEndpoint {
    inner: EndpointHandle,
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
    /// none wait), so a batch costs one JS value however many messages it holds. Layout,
    /// little-endian: a 16-byte head (message count `n`, distinct sender count `p`, bytes
    /// of sender names, bytes of payloads), then `u64` message numbers `[n]`, `u64` arrival
    /// times (µs on the endpoint's clock) `[n]`, `u32` sizes `[n]`, `u32` send flags `[n]`,
    /// `u32` sender indexes `[n]`, `u32` sender name lengths `[p]`, the sender names
    /// (canonical text, UTF-8, back to back), and the payloads back to back.
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
        let n = msgs.len();
        let mut peers: Vec<String> = Vec::new();
        let mut peer_index = Vec::with_capacity(n);
        let mut last_peer: Option<(&Identity, u32)> = None;
        for d in &msgs {
            // Runs of messages from one peer are the common case: compare with the last one
            // before searching the (short) list.
            let idx = match last_peer {
                Some((p, i)) if p == &d.peer => i,
                _ => {
                    let text = d.peer.to_string();
                    let i = match peers.iter().position(|p| p == &text) {
                        Some(i) => i as u32,
                        None => {
                            peers.push(text);
                            (peers.len() - 1) as u32
                        }
                    };
                    last_peer = Some((&d.peer, i));
                    i
                }
            };
            peer_index.push(idx);
        }
        let names: usize = peers.iter().map(String::len).sum();
        let data: usize = msgs.iter().map(|d| d.msg.data.len()).sum();
        let mut out = Vec::with_capacity(16 + 28 * n + 4 * peers.len() + names + data);
        let u32s = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        u32s(&mut out, n as u32);
        u32s(&mut out, peers.len() as u32);
        u32s(&mut out, names as u32);
        u32s(&mut out, data as u32);
        for d in &msgs {
            out.extend_from_slice(&d.msg.number.to_le_bytes());
        }
        for d in &msgs {
            out.extend_from_slice(&d.msg.received_at.as_micros().to_le_bytes());
        }
        for d in &msgs {
            u32s(&mut out, d.msg.data.len() as u32);
        }
        for d in &msgs {
            u32s(&mut out, d.msg.send_flags);
        }
        for &i in &peer_index {
            u32s(&mut out, i);
        }
        for p in &peers {
            u32s(&mut out, p.len() as u32);
        }
        for p in &peers {
            out.extend_from_slice(p.as_bytes());
        }
        for d in &msgs {
            out.extend_from_slice(&d.msg.data);
        }
        // A copy into memory the JS engine manages: cheaper to create than an external
        // buffer with a finalizer, and the packed batch is small.
        BufferSlice::copy_from(env, &out).map(Some)
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
