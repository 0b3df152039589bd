//! The driver: one task per endpoint on the process's I/O thread, running a [`Protocol`]
//! over its sockets.
//!
//! One current-thread tokio runtime per process, on a thread of its own (started on first
//! use), runs one driver task per endpoint. The task receives from the endpoint's sockets
//! (through quinn-udp, which batches with recvmmsg), runs timers and feeds the sans-IO
//! protocol state: received datagrams and `now` in, datagrams and events out.
//!
//! The application's thread reaches the same state through [`Driver::with`] under a mutex
//! held only for in-memory work, never across a system call. A change that may wait (a
//! Nagle send) wakes the task only when it made something due sooner; one that asks not to
//! wait is transmitted from the caller's thread ([`Driver::transmit_here`]), so the latency
//! path has no thread hand-off. Both threads send through one ordered queue under a lock of
//! its own, taken before the state's. Events reach the application through an
//! [`EventSink`], called outside the locks with what a wake-up (or a full receive round)
//! produced, so a burst costs one call.
//!
//! Steam's fake-network knobs (`fakePacket*`) are applied here, to real datagrams, by
//! [`crate::fake_network`]: outgoing datagrams pass through it before the kernel, received
//! ones before the protocol, and its next release time joins the task's sleep.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use parking_lot::{Mutex as SpinThenPark, MutexGuard, RwLock};
use quinn_udp::{RecvMeta, UdpSocketState, BATCH_SIZE};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};

use crate::fake_network::{FakeNetwork, FakeParams, Fate};
use crate::io::{open_socket, Io, Tx};
use crate::protocol::Protocol;
use crate::readiness::Watch;
use netcore::time::Timestamp;

/// Receive buffer per datagram slot; a datagram larger than this is truncated by the kernel
/// and then fails to decode (the slice framing carries its own lengths).
const RECV_SLOT: usize = 65_536;
/// Datagrams in one receive batch that make it a flood's ([`State::note_batch`]).
const FLOOD_BATCH: usize = 8;
/// Bytes received within [`FLOOD_WINDOW`] that make it a flood (many small messages pack
/// into few datagrams); a ping-pong or a game's ticks stay far below.
const FLOOD_BYTES: usize = 16 * 1024;
const FLOOD_WINDOW: Duration = Duration::from_millis(1);
/// Longest `close()` lingers for reliable data to be acknowledged before freeing the socket.
pub const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// Longest the final goodbyes wait for socket buffer space.
const FINAL_FLUSH: Duration = Duration::from_millis(200);
/// Most receive batches handled per wake-up, so sending and timers are never starved.
pub(crate) const MAX_RECV_ROUNDS: usize = 16;
/// How long the task leaves a readable socket to an application thread that polls it
/// ([`Driver::receive_here`]) before reading it itself: that thread is busy if it has not
/// read for this long. Tokio's timers tick in milliseconds.
pub const CALLER_GRACE: Duration = Duration::from_millis(2);

/// Receives the events of one endpoint, in the order the protocol produced them.
pub trait EventSink<E>: Send + Sync + 'static {
    /// Stores one or more events. Called under the endpoint's state lock by whichever thread
    /// ran the protocol (the driver's, or the application's in [`Driver::receive_here`]), so
    /// the sink sees them in the protocol's order whatever thread produced them: it must only
    /// queue them (no system call, no wake-up).
    fn queue(&self, events: Vec<E>);
    /// The driver thread queued events: tell the application. Called outside the locks, once
    /// per wake-up (or full receive round) that queued something.
    fn wake(&self);
}

/// Why a socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The bind address did not parse or resolve.
    #[error("invalid bind address {0:?}")]
    BadAddress(String),
    /// The OS refused the socket.
    #[error("cannot bind {addr}: {source}")]
    Io {
        /// What we tried to bind.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
}

/// Fresh secrets for a new endpoint (or port) of a protocol.
pub struct Secrets {
    /// Random bytes from the OS.
    pub secret: [u8; 32],
    /// Unix time (seconds) at the driver's epoch.
    pub unix_at_epoch: u64,
}

/// The process's driver threads: thread 0 runs every endpoint's task (and shard 0 of an
/// endpoint with several driver threads); thread `k` runs shard `k` of such endpoints.
/// Each is a current-thread runtime on a thread of its own, started on first use: a datagram
/// or a send wakes the thread that runs the endpoint's task directly, with no hand-off
/// between workers.
fn runtime_on(thread: usize) -> &'static Handle {
    static RTS: [OnceLock<Handle>; crate::reuse_port::MAX_SHARDS] =
        [const { OnceLock::new() }; crate::reuse_port::MAX_SHARDS];
    RTS[thread.min(crate::reuse_port::MAX_SHARDS - 1)].get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            // Without a runtime nothing can work; this happens only if the OS refuses it.
            .expect("netmessages: cannot start the I/O runtime");
        let handle = rt.handle().clone();
        // Linux keeps 15 bytes of a thread's name: the further threads' names stay apart.
        let name = if thread == 0 {
            "netmessages-driver".to_owned()
        } else {
            format!("nm-driver-{thread}")
        };
        std::thread::Builder::new()
            .name(name)
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("netmessages: cannot start the I/O thread");
        handle
    })
}

fn runtime() -> &'static Handle {
    runtime_on(0)
}

/// Runs `fut` on driver thread 0 (small glue tasks, such as waiting for several shards).
pub(crate) fn spawn(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    runtime().spawn(fut);
}

/// Keeps the runtime's one thread busy for `d`, so no driver task can run (tests only).
#[cfg(test)]
pub(crate) fn stall_runtime(d: Duration) {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = started_tx.send(());
        std::thread::sleep(d);
    });
    let _ = started_rx.recv_timeout(Duration::from_secs(5));
}

pub(crate) struct State<P: Protocol> {
    pub(crate) proto: P,
    /// Where events go; dropped when the task ends, so a closed endpoint holds no wake-up
    /// (which may keep the application's event loop alive).
    pub(crate) sink: Option<Arc<dyn EventSink<P::Event>>>,
    pub(crate) closing: bool,
    /// The deadline the driver task sleeps until (`None`: no timer). A caller that sends on
    /// its own thread wakes the task only if it made something due sooner.
    planned: Option<Timestamp>,
    /// Whether the driver applies fake-network knobs to sends: then every datagram must pass
    /// through the task, which owns the fake network's queues.
    pub(crate) fake_send: bool,
    /// Whether the driver applies fake-network knobs to received datagrams: then only the
    /// task reads the sockets (it owns the fake network's queues).
    pub(crate) fake_recv: bool,
    /// Ports to close once what they still have to send has gone.
    removing: Vec<usize>,
    /// The task (or the application's thread) saw the protocol's receive pause and stopped
    /// reading: a caller that lifts it must wake the task.
    pub(crate) paused: bool,
    /// Datagrams already read from the kernel when a receive pause began, by either thread;
    /// handled by the task once it ends, before anything else is read.
    pub(crate) held: Held,
    /// Until when the application's thread leaves reading to the task: a full receive batch
    /// was seen (`caller_receive::FLOOD_HANDOFF`).
    pub(crate) flood_until: Option<Timestamp>,
    /// Since when, and how many bytes were received since (either thread).
    read_window: (Timestamp, usize),
}

impl<P: Protocol> State<P> {
    /// Counts a receive batch (`datagrams`, `bytes`); whether it is a flood's (a batch of
    /// [`FLOOD_BATCH`] or more, or [`FLOOD_BYTES`] within [`FLOOD_WINDOW`]): then the
    /// application's thread leaves reading to the task for
    /// [`FLOOD_HANDOFF`](crate::caller_receive::FLOOD_HANDOFF).
    pub(crate) fn note_batch(&mut self, now: Timestamp, datagrams: usize, bytes: usize) -> bool {
        let window = u64::try_from(FLOOD_WINDOW.as_micros()).unwrap_or(u64::MAX);
        if now
            .as_micros()
            .saturating_sub(self.read_window.0.as_micros())
            > window
        {
            self.read_window = (now, 0);
        }
        self.read_window.1 = self.read_window.1.saturating_add(bytes);
        let flood = datagrams >= FLOOD_BATCH || self.read_window.1 >= FLOOD_BYTES;
        if flood {
            self.flood_until = Some(now + crate::caller_receive::FLOOD_HANDOFF);
        }
        flood
    }

    /// Whether the task must wake after a caller changed the state on its own thread:
    /// something is due before the deadline the task sleeps until (a retransmission timer, a
    /// paced packet) or an event waits.
    pub(crate) fn task_must_wake(&self) -> bool {
        self.proto.has_events()
            || due_before(self.proto.poll_timeout(), self.planned)
            || (self.paused && !self.proto.receive_paused())
    }
}

/// The sockets, by port; a removed port leaves `None` so the others keep their numbers.
type Ports = Vec<Option<Arc<Io>>>;

pub(crate) struct Shared<P: Protocol> {
    pub(crate) state: SpinThenPark<State<P>>,
    /// Lock order: `tx`, then `state`. Never held across an await.
    pub(crate) tx: SpinThenPark<Tx>,
    pub(crate) ports: RwLock<Ports>,
    /// Bumped whenever `ports` changes, so the task knows to look again.
    ports_version: AtomicU64,
    pub(crate) wake: Notify,
    epoch: Instant,
    unix_at_epoch: u64,
    /// Receive buffers of the application's thread ([`Driver::receive_here`]), made on first use.
    pub(crate) caller_bufs: SpinThenPark<Option<RecvBufs>>,
    /// Datagrams read on the application's thread.
    pub(crate) caller_datagrams: AtomicU64,
    /// The driver thread whose runtime runs the task and polls the sockets.
    thread: usize,
}

impl<P: Protocol> Shared<P> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<P>> {
        self.state.lock()
    }

    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Sends queued datagrams without waiting; false if a socket's kernel buffer filled.
    pub(crate) fn try_flush(&self, tx: &mut Tx, drop_rest: bool) -> bool {
        let ports = self.ports.read();
        tx.flush(|p| ports.get(p).and_then(|o| o.as_deref()), drop_rest)
    }

    /// Sends what is due now from the caller's thread (Steam's `UseCurrentThread`): no
    /// hand-off to the task, which is woken only if something became due before the
    /// deadline it sleeps until, an event waits, or a kernel buffer is full.
    fn transmit_here(&self) {
        let mut wake = false;
        {
            let mut tx = self.tx.lock();
            {
                let mut guard = self.lock();
                let st = &mut *guard;
                if st.fake_send || st.closing {
                    drop(guard);
                    drop(tx);
                    self.wake.notify_one();
                    return;
                }
                let now = self.now();
                poll_into(&mut st.proto, now, &mut tx);
                wake |= st.task_must_wake();
            }
            wake |= !self.try_flush(&mut tx, false);
        }
        if wake {
            self.wake.notify_one();
        }
    }
}

/// Collects the protocol's datagrams into the queue (no fake network).
fn poll_into<P: Protocol>(proto: &mut P, now: Timestamp, tx: &mut Tx) {
    let mut scratch = std::mem::take(&mut tx.scratch);
    proto.poll_transmit(now, &mut scratch, &mut |port, to, d| tx.push(port, to, d));
    tx.scratch = scratch;
}

/// A running endpoint: its protocol state, sockets and driver task.
pub struct Driver<P: Protocol> {
    pub(crate) shared: Arc<Shared<P>>,
    done: Mutex<Option<oneshot::Receiver<()>>>,
}

fn resolve(bind: &str) -> Result<SocketAddr, BindError> {
    bind.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| BindError::BadAddress(bind.to_owned()))
}

fn fresh_secret(bind: &str) -> Result<[u8; 32], BindError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| BindError::Io {
        addr: bind.to_owned(),
        source: io::Error::other(e.to_string()),
    })?;
    Ok(secret)
}

fn bind_io(bind: &str, thread: usize) -> Result<Io, BindError> {
    let addr = resolve(bind)?;
    let io_err = |source| BindError::Io {
        addr: bind.to_owned(),
        source,
    };
    register(open_socket(addr, false).map_err(io_err)?, thread).map_err(io_err)
}

/// Hands a bound socket to the runtime of driver thread `thread`, whose reactor polls it.
fn register(std_sock: std::net::UdpSocket, thread: usize) -> io::Result<Io> {
    let local = std_sock.local_addr()?;
    let socket = {
        let _guard = runtime_on(thread).enter();
        crate::readiness::adopt(std_sock)?
    };
    let udp = UdpSocketState::new((&socket).into())?;
    Ok(Io {
        socket,
        udp,
        local,
        caller: Default::default(),
    })
}

/// Binds `shards` sockets to one address as a reuse-port group with the routing program of
/// [`crate::reuse_port`] (socket `k` for driver thread `k`). Port 0 picks one port for all.
pub(crate) fn bind_group(bind: &str, shards: usize) -> Result<Vec<Io>, BindError> {
    let mut addr = resolve(bind)?;
    let io_err = |source| BindError::Io {
        addr: bind.to_owned(),
        source,
    };
    // A plain socket first, to see the port is free (or pick one): a group never joins
    // another endpoint's group on the same port, which would take part of its traffic.
    // (A program of the same user that binds the port with SO_REUSEPORT after this can
    // still join: docs/ARCHITECTURE.md.)
    {
        let probe = open_socket(addr, false).map_err(io_err)?;
        addr = probe.local_addr().map_err(io_err)?;
    }
    let mut socks = Vec::with_capacity(shards);
    for _ in 0..shards {
        socks.push(open_socket(addr, true).map_err(io_err)?);
    }
    if let Some(first) = socks.first() {
        crate::reuse_port::attach_routing(first, shards).map_err(io_err)?;
    }
    socks
        .into_iter()
        .enumerate()
        .map(|(k, s)| register(s, k).map_err(io_err))
        .collect()
}

impl<P: Protocol> Driver<P> {
    /// Starts an endpoint: `make` builds the protocol state from fresh secrets, and `bind`
    /// (if given) opens its first socket, port 0.
    pub fn start(
        bind: Option<&str>,
        make: impl FnOnce(Secrets) -> P,
        sink: Arc<dyn EventSink<P::Event>>,
    ) -> Result<Self, BindError> {
        let first = bind.map(|b| bind_io(b, 0)).transpose()?;
        Self::launch(first, 0, bind.unwrap_or("secret"), make, sink)
    }

    /// Starts shard `thread` of an endpoint with several driver threads on the socket
    /// [`bind_group`] opened for it; its task runs on driver thread `thread`.
    pub(crate) fn start_shard(
        io: Io,
        thread: usize,
        make: impl FnOnce(Secrets) -> P,
        sink: Arc<dyn EventSink<P::Event>>,
    ) -> Result<Self, BindError> {
        let label = io.local.to_string();
        Self::launch(Some(io), thread, &label, make, sink)
    }

    fn launch(
        first: Option<Io>,
        thread: usize,
        label: &str,
        make: impl FnOnce(Secrets) -> P,
        sink: Arc<dyn EventSink<P::Event>>,
    ) -> Result<Self, BindError> {
        let unix_at_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let proto = make(Secrets {
            secret: fresh_secret(label)?,
            unix_at_epoch,
        });
        let fake_send = !FakeParams::send(proto.config()).is_off();
        let fake_recv = !FakeParams::recv(proto.config()).is_off();
        let shared = Arc::new(Shared {
            state: SpinThenPark::new(State {
                proto,
                sink: Some(sink),
                closing: false,
                planned: None,
                fake_send,
                fake_recv,
                removing: Vec::new(),
                paused: false,
                held: Held::default(),
                flood_until: None,
                read_window: (Timestamp::from_micros(0), 0),
            }),
            tx: SpinThenPark::new(Tx::new()),
            ports: RwLock::new(first.into_iter().map(|io| Some(Arc::new(io))).collect()),
            ports_version: AtomicU64::new(0),
            wake: Notify::new(),
            epoch: Instant::now(),
            unix_at_epoch,
            caller_bufs: SpinThenPark::new(None),
            caller_datagrams: AtomicU64::new(0),
            thread,
        });
        let (done_tx, done_rx) = oneshot::channel();
        let task_shared = Arc::clone(&shared);
        runtime_on(thread).spawn(async move {
            drive(task_shared).await;
            let _ = done_tx.send(());
        });
        Ok(Driver {
            shared,
            done: Mutex::new(Some(done_rx)),
        })
    }

    /// Opens another socket; `added` tells the protocol its port number (with fresh
    /// secrets for what it keeps there) under the state lock, before the first datagram
    /// can arrive on it. Returns the port and the address bound.
    pub fn add_port(
        &self,
        bind: &str,
        added: impl FnOnce(&mut P, usize, Secrets),
    ) -> Result<(usize, SocketAddr), BindError> {
        let io = bind_io(bind, self.shared.thread)?;
        let local = io.local;
        let secrets = Secrets {
            secret: fresh_secret(bind)?,
            unix_at_epoch: self.shared.unix_at_epoch,
        };
        let port = {
            let mut st = self.shared.lock();
            let mut ports = self.shared.ports.write();
            let port = ports.len();
            added(&mut st.proto, port, secrets);
            ports.push(Some(Arc::new(io)));
            port
        };
        self.shared.ports_version.fetch_add(1, Ordering::Release);
        self.shared.wake.notify_one();
        Ok((port, local))
    }

    /// Closes a socket once what the protocol queued for it has been sent. The protocol
    /// must have let go of the port already (nothing new is sent from it).
    pub fn remove_port(&self, port: usize) {
        self.shared.lock().removing.push(port);
        self.shared.wake.notify_one();
    }

    /// The address a port is bound to, while it is open.
    pub fn local_addr(&self, port: usize) -> Option<SocketAddr> {
        self.shared
            .ports
            .read()
            .get(port)
            .and_then(|p| p.as_ref().map(|io| io.local))
    }

    /// The current time on the endpoint's clock.
    pub fn now(&self) -> Timestamp {
        self.shared.now()
    }

    /// Runs `f` on the protocol state (under its lock, never across a system call) at the
    /// current time. Returns `f`'s result and whether the driver task must wake to act on
    /// what `f` changed (something due sooner than it sleeps, or an event waiting).
    pub fn with<R>(&self, f: impl FnOnce(&mut P, Timestamp) -> R) -> (R, bool) {
        let now = self.shared.now();
        let mut st = self.shared.lock();
        let r = f(&mut st.proto, now);
        let wake = st.task_must_wake();
        (r, wake)
    }

    /// Runs `f` on the protocol state and reads it; `f` must not change what is due (for
    /// status calls).
    pub fn read<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        f(&self.shared.lock().proto)
    }

    /// Runs `f` under the lock with the deadline the task sleeps until and whether `close`
    /// was called, for callers that can tell cheaply whether their change made something
    /// due sooner.
    pub fn with_planned<R>(
        &self,
        f: impl FnOnce(&mut P, Timestamp, Option<Timestamp>, bool) -> R,
    ) -> R {
        let now = self.shared.now();
        let mut st = self.shared.lock();
        let (planned, closing) = (st.planned, st.closing);
        f(&mut st.proto, now, planned, closing)
    }

    /// Applies validated configuration changes (all or nothing), the fake-network knobs
    /// included; wakes the task, whose deadline new rates or timeouts may move.
    pub fn set_config(
        &self,
        changes: &[(String, f64)],
    ) -> Result<(), netcore::config::ConfigError> {
        let mut st = self.shared.lock();
        let mut next = st.proto.config().clone();
        next.apply(changes)?;
        st.fake_send = !FakeParams::send(&next).is_off();
        st.fake_recv = !FakeParams::recv(&next).is_off();
        let now = self.shared.now();
        st.proto.set_config(now, next);
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Whether `close` was called.
    pub fn is_closing(&self) -> bool {
        self.shared.lock().closing
    }

    /// Wakes the driver task.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// Sends what is due from this thread (see the module docs).
    pub fn transmit_here(&self) {
        self.shared.transmit_here();
    }

    /// Stops the endpoint: the protocol lingers until every reliable byte is acknowledged
    /// (at most [`CLOSE_LINGER`]), then closes everything politely and frees the sockets.
    /// Returns a receiver that completes when the sockets are closed; a second call returns
    /// `None`.
    pub fn close(&self) -> Option<oneshot::Receiver<()>> {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        self.done.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl<P: Protocol> Drop for Driver<P> {
    fn drop(&mut self) {
        // The task holds the sockets; without a handle nobody can use them, so stop it.
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
    }
}

/// Where the fake network tags a datagram: its socket and address.
type Route = (usize, SocketAddr);

async fn drive<P: Protocol>(shared: Arc<Shared<P>>) {
    let Some(sink) = shared.lock().sink.clone() else {
        return;
    };
    let mut bufs = RecvBufs::new();
    let mut linger_until: Option<Instant> = None;
    let mut fake: FakeNetwork<Route> = FakeNetwork::new();
    let mut ports: Vec<(usize, Arc<Io>)> = Vec::new();
    let mut seen_version = u64::MAX;
    // Per port: until when a readable socket is left to the application's thread, which
    // reads it while idle (`caller_receive.rs`).
    let mut graces: Vec<Option<tokio::time::Instant>> = Vec::new();
    // Per port: the task's registration, held while it reads the socket (`readiness.rs`).
    let mut watches: Vec<Option<Watch>> = Vec::new();

    loop {
        let version = shared.ports_version.load(Ordering::Acquire);
        if version != seen_version {
            seen_version = version;
            ports = shared
                .ports
                .read()
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.clone().map(|io| (i, io)))
                .collect();
            let last = ports.last().map_or(0, |(p, _)| p + 1);
            graces.resize(last, None);
            watches.clear();
            watches.resize_with(last, || None);
        }
        // A socket the application's thread stopped polling (it declined: a flood, a pause)
        // is the task's again at once.
        for (port, io) in &ports {
            if !io.caller.is_polled() {
                if let Some(g) = graces.get_mut(*port) {
                    *g = None;
                }
            }
        }
        // A registration exactly while the task reads a socket: none while it is left to
        // the application's thread, so datagrams that thread reads never wake this one.
        for (port, io) in &ports {
            let (Some(grace), Some(watch)) = (graces.get_mut(*port), watches.get_mut(*port)) else {
                continue;
            };
            if grace.is_some() {
                *watch = None;
            } else if watch.is_none() {
                match Watch::new(io) {
                    Ok(w) => *watch = Some(w),
                    // No registration (out of descriptors, say): read it after a grace
                    // instead, and try again then.
                    Err(_) => *grace = Some(tokio::time::Instant::now() + CALLER_GRACE),
                }
            }
        }
        // The earliest grace wakes the task anyway: a caller whose change is due after it
        // need not wake the task (it sees the change then). While the application's thread
        // reads, that spares a wake-up per sent message (each moves the retransmission
        // timer earlier than the deadline the task sleeps on).
        let grace_at = graces.iter().flatten().min().map(|g| {
            let at = g.into_std().saturating_duration_since(shared.epoch);
            Timestamp::from_micros(u64::try_from(at.as_micros()).unwrap_or(u64::MAX))
        });
        let (deadline, closing, paused, caller_may_read) = {
            let mut st = shared.lock();
            if !st.held.is_empty() && !st.proto.receive_paused() {
                let now = shared.now();
                let st = &mut *st;
                st.held.replay(&mut st.proto, now, &mut fake);
            }
            let deadline = earliest(st.proto.poll_timeout(), fake.next_release());
            st.planned = earliest(deadline, grace_at);
            st.paused = st.proto.receive_paused();
            // Datagrams held from before a pause go first: nobody reads until they are gone.
            let paused = st.paused || !st.held.is_empty();
            let caller_may_read = !st.closing && !st.fake_send && !st.fake_recv;
            (deadline, st.closing, paused, caller_may_read)
        };
        if closing {
            let limit = *linger_until.get_or_insert_with(|| Instant::now() + CLOSE_LINGER);
            // Linger: keep running the protocol until every reliable byte is acknowledged
            // (or the linger runs out), then say goodbye to every peer and free the sockets.
            // Datagrams the fake network still holds leave now rather than die with the
            // socket; held received ones are dropped.
            let settled = shared.lock().proto.is_settled();
            if settled || Instant::now() >= limit {
                {
                    let mut tx = shared.tx.lock();
                    // Data the fake network still holds goes before the goodbyes.
                    for ((port, to), d) in fake.send.drain_all() {
                        tx.push(port, to, &d);
                    }
                    let mut st = shared.lock();
                    st.proto.close_all();
                    let now = shared.now();
                    let params = FakeParams::send(st.proto.config());
                    send_through_fake(&mut st.proto, now, &mut tx, &mut fake, &params);
                    drop(st);
                }
                flush(&shared, Some(Instant::now() + FINAL_FLUSH)).await;
                break;
            }
        }
        let sleep_for = deadline
            .map(|d| Duration::from_micros(d.as_micros().saturating_sub(shared.now().as_micros())));
        let grace_end = graces.iter().flatten().min().copied();
        let mut queued = false;
        tokio::select! {
            // While paused (or holding datagrams from before the pause), the kernel keeps
            // what arrives; the timers and the application's wake-ups still run.
            port = any_readable(&ports, &watches), if !paused => {
                if let Some((_, io)) = ports.iter().find(|(p, _)| *p == port) {
                    if caller_may_read && io.caller.is_polled() {
                        // The application's thread polls this socket too and, while idle,
                        // takes the datagrams first; the task looks again after the grace.
                        if let Some(g) = graces.get_mut(port) {
                            *g = Some(tokio::time::Instant::now() + CALLER_GRACE);
                        }
                    } else {
                        let watch = watches.get(port).and_then(Option::as_ref);
                        queued |= receive_batches(&shared, port, io, watch, &mut bufs, &mut fake, &*sink);
                    }
                }
            }
            _ = shared.wake.notified() => {}
            _ = sleep_opt(sleep_for) => {
                shared.lock().proto.handle_timeout(shared.now());
            }
            _ = sleep_until_opt(grace_end) => {
                let now = tokio::time::Instant::now();
                for (port, io) in &ports {
                    let Some(slot) = graces.get_mut(*port) else { continue };
                    if !slot.is_some_and(|g| g <= now) {
                        continue;
                    }
                    *slot = None;
                    if paused {
                        // Nobody reads during a receive pause; its end wakes the task,
                        // which then finds the socket readable.
                    } else if caller_may_read && io.caller.is_polled() && io.caller.read_within(shared.now(), CALLER_GRACE) {
                        // The application's thread is reading: it takes what waits (its
                        // poll is level-triggered). Look again after another grace rather
                        // than forget the readiness: a datagram that came after that
                        // thread's last read may be waiting, and if that thread is busy
                        // now, no new edge would bring the task back to it.
                        *slot = Some(now + CALLER_GRACE);
                    } else {
                        // It has not read for a while (busy, or stopped): read here.
                        queued |= receive_batches(&shared, *port, io, None, &mut bufs, &mut fake, &*sink);
                    }
                }
            }
        }
        let removing = {
            let mut tx = shared.tx.lock();
            let mut st = shared.lock();
            let now = shared.now();
            while let Some(((port, from), d)) = fake.recv.pop_due(now) {
                st.proto.handle_datagram(now, port, from, &d);
            }
            while let Some(((port, to), d)) = fake.send.pop_due(now) {
                tx.push(port, to, &d);
            }
            // Read per wake-up, so `setConfig` applies to the next datagram.
            let params = FakeParams::send(st.proto.config());
            send_through_fake(&mut st.proto, now, &mut tx, &mut fake, &params);
            queued |= queue_events(&mut st);
            std::mem::take(&mut st.removing)
        };
        flush(&shared, None).await;
        if !removing.is_empty() {
            {
                let mut list = shared.ports.write();
                for p in removing {
                    if let Some(slot) = list.get_mut(p) {
                        *slot = None;
                    }
                }
            }
            shared.ports_version.fetch_add(1, Ordering::Release);
        }
        if queued {
            sink.wake();
        }
    }
    // Closed: free the sockets now rather than when the application's handle is collected,
    // so the port can be bound again as soon as `close()` resolves.
    shared.ports.write().iter_mut().for_each(|p| *p = None);
    shared.ports_version.fetch_add(1, Ordering::Release);
    // Let go of the application's wake-up.
    shared.lock().sink = None;
}

/// Moves the protocol's waiting events to the sink (under the state lock); whether any were.
pub(crate) fn queue_events<P: Protocol>(st: &mut State<P>) -> bool {
    let Some(sink) = &st.sink else {
        return false;
    };
    let mut events = Vec::new();
    while let Some(ev) = st.proto.poll_event() {
        events.push(ev);
    }
    if events.is_empty() {
        return false;
    }
    sink.queue(events);
    true
}

/// Collects the protocol's datagrams, passing each through the fake network's send side.
fn send_through_fake<P: Protocol>(
    proto: &mut P,
    now: Timestamp,
    tx: &mut Tx,
    fake: &mut FakeNetwork<Route>,
    params: &FakeParams,
) {
    let mut scratch = std::mem::take(&mut tx.scratch);
    proto.poll_transmit(now, &mut scratch, &mut |port, to, d| {
        if fake.send.process(params, now, (port, to), d) == Fate::Now {
            tx.push(port, to, d);
        }
    });
    tx.scratch = scratch;
}

/// The first of `ports` whose socket is readable, skipping those left to the application's
/// thread for now (pending forever when there is none).
async fn any_readable(ports: &[(usize, Arc<Io>)], watches: &[Option<Watch>]) -> usize {
    std::future::poll_fn(|cx| {
        for (port, io) in ports {
            let Some(Some(w)) = watches.get(*port) else {
                continue;
            };
            if w.poll_readable(io, cx).is_ready() {
                return Poll::Ready(*port);
            }
        }
        Poll::Pending
    })
    .await
}

/// Whether `next` comes before `planned` (no deadline comes after every deadline).
pub(crate) fn due_before(next: Option<Timestamp>, planned: Option<Timestamp>) -> bool {
    match (next, planned) {
        (Some(n), Some(p)) => n < p,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Receive buffers: one slot per datagram of a batch.
pub(crate) struct RecvBufs {
    buf: Vec<u8>,
    metas: Vec<RecvMeta>,
    slots: usize,
}

impl RecvBufs {
    pub(crate) fn new() -> Self {
        let slots = BATCH_SIZE.min(32);
        RecvBufs {
            buf: vec![0u8; RECV_SLOT * slots],
            metas: vec![RecvMeta::default(); slots],
            slots,
        }
    }

    /// One batch from `io` (recvmmsg where available): how many slots it filled. Any error
    /// ends the round: WouldBlock means drained, and others (e.g. an ICMP port unreachable
    /// reported on a later recv) concern one peer, never the endpoint.
    /// Through `watch` (the task's), a WouldBlock forgets the readiness it saw; without
    /// one, straight to the kernel.
    pub(crate) fn recv(&mut self, io: &Io, watch: Option<&Watch>) -> io::Result<usize> {
        let Io { socket, udp, .. } = io;
        let (mut bufs, metas) = self.slices();
        match watch {
            Some(w) => w.try_read(io, || udp.recv(socket.into(), &mut bufs, metas)),
            None => udp.recv(socket.into(), &mut bufs, metas),
        }
    }

    /// The slots as receive buffers, with their metadata.
    fn slices(&mut self) -> (Vec<IoSliceMut<'_>>, &mut [RecvMeta]) {
        let bufs = self
            .buf
            .chunks_mut(RECV_SLOT)
            .take(self.slots)
            .map(IoSliceMut::new)
            .collect();
        (bufs, &mut self.metas)
    }

    /// As [`RecvBufs::recv`], for the application's thread: straight to the kernel, whatever
    /// readiness the task's reactor has seen so far. (Its poll said readable; waiting for
    /// the driver thread to notice the same datagram would put that thread back on the
    /// path.) The task's own readiness is left alone: it rearms it itself.
    pub(crate) fn recv_now(&mut self, io: &Io) -> io::Result<usize> {
        let Io { socket, udp, .. } = io;
        let (mut bufs, metas) = self.slices();
        udp.recv(socket.into(), &mut bufs, metas)
    }

    /// Whether `n` filled every slot (more is likely waiting).
    pub(crate) fn full(&self, n: usize) -> bool {
        n >= self.slots
    }

    /// The bytes of the first `n` slots.
    pub(crate) fn bytes(&self, n: usize) -> usize {
        self.metas.iter().take(n).map(|m| m.len).sum()
    }

    /// Each datagram of the first `n` slots with its sender.
    pub(crate) fn datagrams(&self, n: usize, mut f: impl FnMut(SocketAddr, &[u8])) {
        for (i, meta) in self.metas.iter().take(n).enumerate() {
            let start = i * RECV_SLOT;
            let Some(buf) = self.buf.get(start..start + meta.len.min(RECV_SLOT)) else {
                continue;
            };
            // With GRO one buffer holds several datagrams of `stride` bytes each.
            let stride = if meta.stride == 0 {
                buf.len().max(1)
            } else {
                meta.stride
            };
            for dgram in buf.chunks(stride) {
                f(meta.addr, dgram);
            }
        }
    }
}

/// Reads and processes what waits on one socket; whether it queued events that the end of
/// the wake-up must announce.
fn receive_batches<P: Protocol>(
    shared: &Shared<P>,
    port: usize,
    io: &Io,
    watch: Option<&Watch>,
    bufs: &mut RecvBufs,
    fake: &mut FakeNetwork<Route>,
    sink: &dyn EventSink<P::Event>,
) -> bool {
    for _ in 0..MAX_RECV_ROUNDS {
        let Ok(n) = bufs.recv(io, watch) else {
            return false;
        };
        let now = shared.now();
        let mut guard = shared.lock();
        let st = &mut *guard;
        let params = FakeParams::recv(st.proto.config());
        bufs.datagrams(n, |from, dgram| {
            if st.proto.receive_paused() || !st.held.is_empty() {
                // A backlog filled: the rest of this batch waits with the driver.
                st.held.push(port, from, dgram);
            } else if fake.recv.process(&params, now, (port, from), dgram) == Fate::Now {
                st.proto.handle_datagram(now, port, from, dgram);
            }
        });
        if !st.held.is_empty() {
            // Paused: nothing more is read until it ends (the next wake-up sees it).
            return false;
        }
        let mut st = guard;
        // A flood: the application's thread keeps leaving the reading here.
        st.note_batch(now, n, bufs.bytes(n));
        if !bufs.full(n) {
            // Drained: the events go out at the end of the wake-up, after the answers
            // (acks) are sent, so the application does not wake into a held lock.
            return false;
        }
        // A full round: more is waiting. Post what this one produced now, so the application
        // starts draining on its own thread while later rounds are decoded, instead of finding
        // a queue that reached its limit while it was not told.
        let queued = queue_events(&mut st);
        drop(st);
        if queued {
            sink.wake();
        }
    }
    false
}

/// Datagrams already read from the kernel when a receive pause began (at most one receive
/// batch per thread), handled in order once it ends.
#[derive(Default)]
pub(crate) struct Held(std::collections::VecDeque<(usize, SocketAddr, Vec<u8>)>);

impl Held {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, port: usize, from: SocketAddr, d: &[u8]) {
        self.0.push_back((port, from, d.to_vec()));
    }

    /// Hands held datagrams to the protocol until they run out or it pauses again.
    fn replay<P: Protocol>(
        &mut self,
        proto: &mut P,
        now: Timestamp,
        fake: &mut FakeNetwork<Route>,
    ) {
        let params = FakeParams::recv(proto.config());
        while !proto.receive_paused() {
            let Some((port, from, d)) = self.0.pop_front() else {
                break;
            };
            if fake.recv.process(&params, now, (port, from), &d) == Fate::Now {
                proto.handle_datagram(now, port, from, &d);
            }
        }
    }
}

/// Sends everything queued, waiting for a socket when its kernel buffer is full (until
/// `deadline`, if any; what is left then is dropped).
async fn flush<P: Protocol>(shared: &Shared<P>, deadline: Option<Instant>) {
    loop {
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        let waiting = {
            let mut tx = shared.tx.lock();
            if shared.try_flush(&mut tx, expired) {
                return;
            }
            let first = tx.waiting_ports().next();
            first
        };
        let io = waiting.and_then(|p| shared.ports.read().get(p).cloned().flatten());
        let Some(io) = io else {
            // Its socket is gone: what it still held is dropped.
            shared.try_flush(&mut shared.tx.lock(), true);
            return;
        };
        if crate::readiness::writable(&io).await.is_err() {
            shared.try_flush(&mut shared.tx.lock(), true);
            return;
        }
    }
}
