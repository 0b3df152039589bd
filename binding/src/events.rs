//! Driver events to JS: one discriminated union (`type` tells the variant), delivered in
//! batches: synchronously when the JS thread read the datagrams itself (`uv_reader.rs`),
//! else after a ThreadsafeFunction wake-up, one per driver wake-up.

use std::rc::Rc;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Buffer, Function, ToNapiValue};
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

/// Events waiting for the JS thread, in the order the protocol produced them (whichever
/// thread ran it), and the wake-up that tells JS from the driver thread.
///
/// Events never travel inside the ThreadsafeFunction's own queue: its call only says "look",
/// and every delivery (the wake-up's, or the JS thread's own receive in `uv_reader.rs`) takes
/// the whole queue, so a batch read on the JS thread can never overtake one the driver
/// read earlier.
pub struct JsSink<E, N: ToNapiValue + 'static> {
    queue: Arc<Mutex<Vec<E>>>,
    wake: Mutex<ThreadsafeFunction<(), (), Vec<N>, Status, false>>,
}

impl<E: Send + 'static, N: ToNapiValue + From<E> + 'static> JsSink<E, N> {
    /// A sink whose wake-ups call `f` (on the JS thread) with what waits; `on_wake` runs
    /// first there (the JS-thread reader re-checks its polls).
    pub fn new(f: &Function<'_, Vec<N>, ()>, on_wake: Rc<dyn Fn()>) -> napi::Result<Self> {
        let queue: Arc<Mutex<Vec<E>>> = Arc::new(Mutex::new(Vec::new()));
        let q = Arc::clone(&queue);
        let wake = f
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .build_callback(move |_ctx| {
                on_wake();
                Ok(take(&q).into_iter().map(N::from).collect::<Vec<N>>())
            })?;
        Ok(JsSink {
            queue,
            wake: Mutex::new(wake),
        })
    }

    /// Takes what waits, converted for JS (on the JS thread).
    pub fn take(&self) -> Vec<N> {
        take(&self.queue).into_iter().map(N::from).collect()
    }

    /// Whether the endpoint keeps the Node.js event loop alive (as `ref()`/`unref()` on a
    /// socket): while unreferenced, a process with nothing else to do exits.
    #[allow(deprecated)] // refer/unref: napi-rs prefers clones for counting; we need the flag.
    pub fn set_ref(&self, env: &Env, keep_alive: bool) -> napi::Result<()> {
        let mut f = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        if keep_alive {
            f.refer(env)
        } else {
            f.unref(env)
        }
    }
}

fn take<E>(q: &Mutex<Vec<E>>) -> Vec<E> {
    std::mem::take(&mut *q.lock().unwrap_or_else(|p| p.into_inner()))
}

impl<E: Send + 'static, N: ToNapiValue + 'static> EventSink<E> for JsSink<E, N> {
    fn queue(&self, events: Vec<E>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_empty() {
            *q = events;
        } else {
            q.extend(events);
        }
    }

    fn wake(&self) {
        // NonBlocking: the queue is unbounded on the Node side; blocking the driver on JS
        // would let a busy JS thread stall the network.
        self.wake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .call((), ThreadsafeFunctionCallMode::NonBlocking);
    }
}

/// The messages endpoint's sink.
pub type MessagesSink = JsSink<LayerEvent<Event>, NativeEvent>;

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
