//! Driver events to JS: one discriminated union (`type` tells the variant), delivered in
//! batches through a ThreadsafeFunction, one call per driver wake-up.

use napi::bindgen_prelude::Buffer;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
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
        }
    }
}

/// The JS callback that receives event batches.
pub type EventFn = ThreadsafeFunction<Vec<NativeEvent>, (), Vec<NativeEvent>, Status, false>;

/// Forwards the driver's event batches to JS.
pub struct JsSink(pub EventFn);

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
        self.0.call(events, ThreadsafeFunctionCallMode::NonBlocking);
    }
}
