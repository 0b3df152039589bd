//! Driver events to JS: one discriminated union (`type` tells the variant), delivered in
//! batches through a ThreadsafeFunction, one call per driver wake-up.

use std::sync::Mutex;

use napi::bindgen_prelude::Buffer;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;
use netcore::messages::Event;
use netcore::p2p::layer::LayerEvent;
use netdriver::EventSink;

/// An event of a messages endpoint, for the JS side.
#[napi]
pub enum NativeEvent {
    /// A peer without an accepted session wants to talk.
    SessionRequest {
        /// The peer, canonical text.
        identity: String,
    },
    /// Messages wait on a channel.
    Messages {
        /// The local channel.
        channel: i32,
    },
    /// A session could not be established or broke.
    SessionFailed {
        /// The peer, canonical text.
        identity: String,
        /// Where it was, `host:port`.
        remote_address: String,
        /// Steam's end reason.
        end_reason: i32,
        /// Detail.
        end_debug: String,
    },
    /// P2P: a rendezvous blob for the signaling service to deliver.
    Signal {
        /// The recipient, canonical text.
        identity: String,
        /// The blob.
        data: Buffer,
    },
    /// The peer closed a session politely.
    SessionClosed {
        /// The peer, canonical text.
        identity: String,
        /// Where it was, `host:port`.
        remote_address: String,
        /// The peer's end reason.
        end_reason: i32,
        /// Detail.
        end_debug: String,
    },
    /// A session's receive backlog is full: `channel` (or -1 before acceptance) holds it.
    ReceiveBlocked {
        /// The peer, canonical text.
        identity: String,
        /// The channel with the most unread messages; -1 when the session is not accepted.
        channel: i32,
        /// Messages waiting there.
        messages: u32,
        /// Their bytes.
        bytes: f64,
    },
    /// A session that refused a send with `LimitExceeded` has room again.
    Writable {
        /// The peer, canonical text.
        identity: String,
    },
}

impl From<Event> for NativeEvent {
    fn from(e: Event) -> Self {
        match e {
            Event::SessionRequest(id) => NativeEvent::SessionRequest {
                identity: id.to_string(),
            },
            Event::MessagesWaiting(channel) => NativeEvent::Messages { channel },
            Event::SessionFailed { peer, remote, end } => NativeEvent::SessionFailed {
                identity: peer.to_string(),
                remote_address: remote.to_string(),
                end_reason: end.reason.code(),
                end_debug: end.debug,
            },
            Event::SessionClosed { peer, remote, end } => NativeEvent::SessionClosed {
                identity: peer.to_string(),
                remote_address: remote.to_string(),
                end_reason: end.reason.code(),
                end_debug: end.debug,
            },
            Event::ReceiveBlocked { peer, backlog } => NativeEvent::ReceiveBlocked {
                identity: peer.to_string(),
                channel: backlog.channel.unwrap_or(-1),
                messages: u32::try_from(backlog.messages).unwrap_or(u32::MAX),
                bytes: backlog.bytes as f64,
            },
            Event::Writable(peer) => NativeEvent::Writable {
                identity: peer.to_string(),
            },
        }
    }
}

/// The JS callback that receives event batches.
pub type EventFn = ThreadsafeFunction<Vec<NativeEvent>, (), Vec<NativeEvent>, Status, false>;

/// Forwards the driver's event batches to JS.
pub struct JsSink(Mutex<EventFn>);

impl JsSink {
    /// A sink calling `f`.
    pub fn new(f: EventFn) -> Self {
        JsSink(Mutex::new(f))
    }

    /// Whether the endpoint keeps the Node.js event loop alive (as `ref()`/`unref()` on a
    /// socket): while unreferenced, a process with nothing else to do exits.
    #[allow(deprecated)] // refer/unref: napi-rs prefers clones for counting; we need the flag.
    pub fn set_ref(&self, env: &Env, keep_alive: bool) -> napi::Result<()> {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if keep_alive {
            f.refer(env)
        } else {
            f.unref(env)
        }
    }
}

impl From<LayerEvent<Event>> for NativeEvent {
    fn from(e: LayerEvent<Event>) -> Self {
        match e {
            LayerEvent::Host(e) => e.into(),
            LayerEvent::Signal { to, data } => NativeEvent::Signal {
                identity: to.to_string(),
                data: data.into(),
            },
        }
    }
}

impl EventSink<LayerEvent<Event>> for JsSink {
    fn emit(&self, events: Vec<LayerEvent<Event>>) {
        let events = events.into_iter().map(NativeEvent::from).collect();
        // NonBlocking: the queue is unbounded on the Node side; blocking the driver on JS
        // would let a busy JS thread stall the network.
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .call(events, ThreadsafeFunctionCallMode::NonBlocking);
    }
}
