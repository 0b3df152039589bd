//! The I/O driver: the only code that touches sockets and the clock.
//!
//! One current-thread tokio runtime per process, on its own thread (started on first use),
//! runs one driver task per endpoint. The task receives from the UDP socket (through
//! quinn-udp, which batches with recvmmsg and, on send, can use GSO), runs timers and feeds
//! the sans-IO [`Messages`] state: received datagrams and `now` in, datagrams and events out.
//!
//! The application's thread reaches the same state through [`EndpointHandle`] under a mutex
//! held only for in-memory work, never across a system call. A send that may wait wakes the
//! task through a [`Notify`], and only when it made something due sooner; one that asks not
//! to wait (`NoNagle`, `NoDelay`, `UseCurrentThread`) is transmitted from the caller's
//! thread, so the latency path has no thread hand-off. Both threads send through one ordered
//! queue under a lock of its own, taken before the state's. Events reach the application
//! through an [`EventSink`], called outside the locks with what a wake-up (or a full receive
//! round) produced, so a burst costs one call.
//!
//! Steam's fake-network knobs (`fakePacket*`) are applied here, to real datagrams, by
//! [`fake_network`]: outgoing datagrams pass through it before the kernel, received ones before
//! the protocol, and its next release time joins the task's sleep.

pub mod fake_network;

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock};

use parking_lot::{Mutex as SpinThenPark, MutexGuard};
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};

use fake_network::{FakeNetwork, FakeParams, Fate};
use netcore::config::Config;
use netcore::crypto::session_setup::LocalSecurity;
use netcore::endpoint::EndpointSetup;
use netcore::eresult::{send_flags, EResult};
use netcore::identity::Identity;
use netcore::messages::{Delivered, Event, Messages, SessionInfo};
use netcore::time::Timestamp;

/// Receive buffer per datagram slot; a datagram larger than this is truncated by the kernel
/// and then fails to decode (the slice framing carries its own lengths).
const RECV_SLOT: usize = 65_536;
/// Longest `close()` lingers for reliable data to be acknowledged before freeing the socket.
pub const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// Longest the final goodbyes wait for socket buffer space.
const FINAL_FLUSH: Duration = Duration::from_millis(200);
/// Most spare datagram buffers kept for reuse (a burst beyond it allocates, then frees).
const MAX_SPARE_BUFFERS: usize = 1024;
/// Kernel socket buffer asked for in each direction.
const SOCKET_BUFFER: usize = 4 << 20;
/// Most receive batches handled per wake-up, so sending and timers are never starved.
const MAX_RECV_ROUNDS: usize = 16;

/// One message of a [`EndpointHandle::send_batch`].
pub struct OutgoingMessage<'a> {
    /// The peer.
    pub peer: &'a Identity,
    /// Where a non-IP peer lives.
    pub remote: Option<SocketAddr>,
    /// The payload (copied only if the message is accepted).
    pub data: &'a [u8],
    /// Steam send flags.
    pub flags: u32,
    /// The remote channel.
    pub channel: i32,
}

/// Receives the events of one endpoint, a batch per driver wake-up.
pub trait EventSink: Send + Sync + 'static {
    /// Called from the driver thread with one or more events.
    fn emit(&self, events: Vec<Event>);
}

fn runtime() -> &'static Handle {
    // One current-thread runtime on a thread of its own: a datagram or a send wakes the
    // thread that runs the endpoint's task directly, with no hand-off between workers.
    static RT: OnceLock<Handle> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            // Without a runtime nothing can work; this happens only if the OS refuses it.
            .expect("netmessages: cannot start the I/O runtime");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("netmessages-driver".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("netmessages: cannot start the I/O thread");
        handle
    })
}

struct State {
    messages: Messages,
    closing: bool,
    /// The deadline the driver task sleeps until (`None`: no timer). A caller that sends on
    /// its own thread wakes the task only if it made something due sooner.
    planned: Option<Timestamp>,
    /// Whether the driver applies fake-network knobs to sends: then every datagram must pass
    /// through the task, which owns the fake network's queues.
    fake_send: bool,
}

/// Datagrams on their way to the kernel, in the order the protocol produced them. The task
/// and a caller sending on its own thread both fill and drain this queue under its lock, so
/// no datagram overtakes another. Lock order: `tx`, then `state`. Never held across an await.
struct Tx {
    outgoing: Vec<(SocketAddr, Vec<u8>)>,
    /// Buffers of datagrams already sent, reused: no allocation per datagram at steady state.
    spare: Vec<Vec<u8>>,
    /// Where the protocol writes one datagram.
    scratch: Vec<u8>,
    /// Consecutive same-size datagrams to one peer, concatenated for one GSO send.
    gso: Vec<u8>,
}

/// The socket, shared by the task and callers sending on their own thread.
struct Io {
    socket: tokio::net::UdpSocket,
    udp: UdpSocketState,
}

struct Shared {
    state: SpinThenPark<State>,
    tx: SpinThenPark<Tx>,
    io: Io,
    wake: Notify,
    epoch: Instant,
}

impl State {
    /// Whether the task must wake after a caller transmitted on its own thread: something is
    /// due before the deadline the task sleeps until (a retransmission timer, a paced
    /// packet) or an event waits.
    fn task_must_wake(&self) -> bool {
        self.messages.has_events() || due_before(self.messages.poll_timeout(), self.planned)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn lock_tx(&self) -> MutexGuard<'_, Tx> {
        self.tx.lock()
    }

    /// Sends what is due now from the caller's thread (Steam's `UseCurrentThread`): no
    /// hand-off to the task, which is woken only if something became due before the
    /// deadline it sleeps until, an event waits, or the kernel buffer is full.
    fn transmit_here(&self) {
        let mut wake = false;
        {
            let mut tx = self.lock_tx();
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
                let Tx {
                    outgoing,
                    spare,
                    scratch,
                    ..
                } = &mut *tx;
                st.messages.poll_transmit(now, scratch, |to, d| {
                    outgoing.push((to, reuse(spare, d)));
                });
                wake |= st.task_must_wake();
            }
            wake |= !try_flush(&self.io, &mut tx, false);
        }
        if wake {
            self.wake.notify_one();
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

/// The application's handle on a running endpoint.
pub struct EndpointHandle {
    shared: Arc<Shared>,
    local: SocketAddr,
    done: Mutex<Option<oneshot::Receiver<()>>>,
}

/// Why an endpoint could not start.
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

impl EndpointHandle {
    /// Binds `bind` (`host:port`; port 0 picks one) and starts the endpoint's driver task,
    /// with `security` (identity key, certificate, trust policy) for its handshakes.
    pub fn bind(
        bind: &str,
        config: Config,
        security: LocalSecurity,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, BindError> {
        let addr = bind
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| BindError::BadAddress(bind.to_owned()))?;
        let io_err = |source| BindError::Io {
            addr: bind.to_owned(),
            source,
        };
        let std_sock = open_socket(addr).map_err(io_err)?;
        let local = std_sock.local_addr().map_err(io_err)?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| io_err(io::Error::other(e.to_string())))?;
        let unix_at_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let setup = EndpointSetup {
            secret,
            security,
            unix_at_epoch,
        };
        let rt = runtime();
        let socket = {
            let _guard = rt.enter();
            tokio::net::UdpSocket::from_std(std_sock).map_err(io_err)?
        };
        let udp = UdpSocketState::new((&socket).into()).map_err(io_err)?;
        let fake_send = !FakeParams::send(&config).is_off();
        let shared = Arc::new(Shared {
            state: SpinThenPark::new(State {
                messages: Messages::new(config, setup),
                closing: false,
                planned: None,
                fake_send,
            }),
            tx: SpinThenPark::new(Tx {
                outgoing: Vec::new(),
                spare: Vec::new(),
                scratch: Vec::with_capacity(1500),
                gso: Vec::new(),
            }),
            io: Io { socket, udp },
            wake: Notify::new(),
            epoch: Instant::now(),
        });
        let (done_tx, done_rx) = oneshot::channel();
        let task_shared = Arc::clone(&shared);
        rt.spawn(async move {
            drive(task_shared, sink).await;
            let _ = done_tx.send(());
        });
        Ok(EndpointHandle {
            shared,
            local,
            done: Mutex::new(Some(done_rx)),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Queues a message (see [`Messages::send`]); `InvalidState` once closing.
    pub fn send(
        &self,
        peer: &Identity,
        remote: Option<SocketAddr>,
        data: &[u8],
        flags: u32,
        channel: i32,
    ) -> EResult {
        let one = OutgoingMessage {
            peer,
            remote,
            data,
            flags,
            channel,
        };
        let mut result = EResult::Fail;
        self.send_batch(std::iter::once(one), |r| result = r);
        result
    }

    /// Queues many messages under one lock and one wake-up (Steam's `SendMessages`).
    /// `on_result` gets one result per message, in order. If an accepted message asked not to
    /// wait (`NoNagle`, `NoDelay` or `UseCurrentThread`), what is due leaves from this thread
    /// before the call returns; otherwise the driver task sends it.
    pub fn send_batch<'a>(
        &self,
        messages: impl Iterator<Item = OutgoingMessage<'a>>,
        mut on_result: impl FnMut(EResult),
    ) {
        const NOW: u32 =
            send_flags::NO_NAGLE | send_flags::NO_DELAY | send_flags::USE_CURRENT_THREAD;
        let now = self.shared.now();
        let mut urgent = false;
        let mut wake = false;
        {
            let mut st = self.shared.lock();
            let mut any = false;
            for m in messages {
                let r = if st.closing {
                    EResult::InvalidState
                } else {
                    st.messages
                        .send(now, m.peer, m.remote, m.data, m.flags, m.channel)
                };
                if r == EResult::Ok {
                    any = true;
                    urgent |= m.flags & NOW != 0;
                    // Only this peer's connection can have moved: checking it alone keeps a
                    // send O(1) however many connections other sends touched.
                    wake |= !urgent && due_before(st.messages.deadline_of(m.peer), st.planned);
                }
                on_result(r);
            }
            wake |= any && !urgent && st.messages.has_events();
        }
        if urgent {
            self.shared.transmit_here();
        } else if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Sends what Nagle holds for `peer` now, from this thread.
    pub fn flush(&self, peer: &Identity) -> EResult {
        let now = self.shared.now();
        let r = self.shared.lock().messages.flush(now, peer);
        if r == EResult::Ok {
            self.shared.transmit_here();
        }
        r
    }

    /// Takes up to `max` waiting messages from `channel`.
    pub fn receive(&self, channel: i32, max: usize) -> Vec<Delivered> {
        self.shared.lock().messages.receive(channel, max)
    }

    /// Accepts a pending session.
    pub fn accept(&self, peer: &Identity) -> bool {
        let accepted = self.shared.lock().messages.accept(peer);
        if accepted {
            // Messages held for this peer are now deliverable: let the driver post the event.
            self.shared.wake.notify_one();
        }
        accepted
    }

    /// Closes the session with `peer`.
    pub fn close_session(&self, peer: &Identity) -> bool {
        let closed = self.shared.lock().messages.close_session(peer);
        // The polite close datagram to the peer goes out on the driver.
        self.shared.wake.notify_one();
        closed
    }

    /// Closes one channel with `peer`.
    pub fn close_channel(&self, peer: &Identity, channel: i32) -> bool {
        let closed = self.shared.lock().messages.close_channel(peer, channel);
        // Closing the last channel closes the session: its goodbye goes out on the driver.
        self.shared.wake.notify_one();
        closed
    }

    /// Status of the session with `peer`.
    pub fn session_info(&self, peer: &Identity) -> Option<SessionInfo> {
        self.shared.lock().messages.session_info(peer)
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.shared.lock().messages.config().clone()
    }

    /// Applies validated configuration changes; nothing changes on error.
    pub fn set_config(
        &self,
        changes: &[(String, f64)],
    ) -> Result<(), netcore::config::ConfigError> {
        let mut st = self.shared.lock();
        let mut next = st.messages.config().clone();
        next.apply(changes)?;
        st.fake_send = !FakeParams::send(&next).is_off();
        st.messages.set_config(self.shared.now(), next);
        drop(st);
        // New rates or timeouts may move the task's deadline.
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Stops accepting sends, lets queued data leave (bounded by [`CLOSE_LINGER`]) and frees
    /// the socket. Returns a receiver that completes when the socket is closed; a second call
    /// returns `None`.
    pub fn close(&self) -> Option<oneshot::Receiver<()>> {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        self.done.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Drop for EndpointHandle {
    fn drop(&mut self) {
        // The task holds the socket; without a handle nobody can use it, so stop it.
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
    }
}

fn open_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]:port` serves IPv4 peers too where the OS allows it.
        let _ = sock.set_only_v6(false);
    }
    sock.set_nonblocking(true)?;
    // Room for bursts: a receiver briefly off the CPU (or a sender's GSO burst) would
    // otherwise overflow the default ~200 KiB. The OS caps these at its own maximum
    // (net.core.rmem_max / wmem_max); a refusal leaves the default, which still works.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

async fn drive(shared: Arc<Shared>, sink: Arc<dyn EventSink>) {
    let slots = BATCH_SIZE.min(32);
    let mut recv_buf = vec![0u8; RECV_SLOT * slots];
    let mut metas = vec![RecvMeta::default(); slots];
    let mut events = Vec::new();
    let mut linger_until: Option<Instant> = None;
    let mut fake = FakeNetwork::new();

    loop {
        let (deadline, closing) = {
            let mut st = shared.lock();
            let deadline = earliest(st.messages.poll_timeout(), fake.next_release());
            st.planned = deadline;
            (deadline, st.closing)
        };
        if closing {
            let limit = *linger_until.get_or_insert_with(|| Instant::now() + CLOSE_LINGER);
            // Linger: keep running the protocol until every reliable byte is acknowledged
            // (or the linger runs out), then say goodbye to every peer and free the socket.
            // Datagrams the fake network still holds leave now rather than die with the
            // socket; held received ones are dropped.
            let settled = shared.lock().messages.is_settled();
            if settled || Instant::now() >= limit {
                {
                    let mut guard = shared.lock_tx();
                    let tx = &mut *guard;
                    // Data the fake network still holds goes before the goodbyes.
                    tx.outgoing.extend(fake.send.drain_all());
                    let mut st = shared.lock();
                    st.messages.close_all();
                    let now = shared.now();
                    let params = FakeParams::send(st.messages.config());
                    st.messages.poll_transmit(now, &mut tx.scratch, |to, d| {
                        if fake.send.process(&params, now, to, d) == Fate::Now {
                            tx.outgoing.push((to, reuse(&mut tx.spare, d)));
                        }
                    });
                    drop(st);
                }
                flush(&shared, Some(Instant::now() + FINAL_FLUSH)).await;
                break;
            }
        }
        let sleep_for = deadline
            .map(|d| Duration::from_micros(d.as_micros().saturating_sub(shared.now().as_micros())));
        tokio::select! {
            r = shared.io.socket.readable() => {
                if r.is_ok() {
                    receive_batches(&shared, &mut recv_buf, &mut metas, slots, &mut fake, &*sink);
                }
            }
            _ = shared.wake.notified() => {}
            _ = sleep_opt(sleep_for) => {
                shared.lock().messages.handle_timeout(shared.now());
            }
        }
        {
            let mut guard = shared.lock_tx();
            let tx = &mut *guard;
            let mut st = shared.lock();
            let now = shared.now();
            while let Some((from, d)) = fake.recv.pop_due(now) {
                st.messages.handle_datagram(now, from, &d);
            }
            while let Some(due) = fake.send.pop_due(now) {
                tx.outgoing.push(due);
            }
            // Read per wake-up, so `setConfig` applies to the next datagram.
            let params = FakeParams::send(st.messages.config());
            st.messages.poll_transmit(now, &mut tx.scratch, |to, d| {
                if fake.send.process(&params, now, to, d) == Fate::Now {
                    tx.outgoing.push((to, reuse(&mut tx.spare, d)));
                }
            });
            while let Some(ev) = st.messages.poll_event() {
                events.push(ev);
            }
        }
        flush(&shared, None).await;
        if !events.is_empty() {
            sink.emit(std::mem::take(&mut events));
        }
    }
}

/// Whether `next` comes before `planned` (no deadline comes after every deadline).
fn due_before(next: Option<Timestamp>, planned: Option<Timestamp>) -> bool {
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

fn receive_batches(
    shared: &Shared,
    recv_buf: &mut [u8],
    metas: &mut [RecvMeta],
    slots: usize,
    fake: &mut FakeNetwork,
    sink: &dyn EventSink,
) {
    let Io { socket, udp } = &shared.io;
    let mut events = Vec::new();
    for _ in 0..MAX_RECV_ROUNDS {
        let mut bufs: Vec<IoSliceMut<'_>> = recv_buf
            .chunks_mut(RECV_SLOT)
            .take(slots)
            .map(IoSliceMut::new)
            .collect();
        let n = match socket.try_io(Interest::READABLE, || {
            udp.recv(socket.into(), &mut bufs, metas)
        }) {
            Ok(n) => n,
            // WouldBlock: drained. Other errors (e.g. ICMP port unreachable reported on a
            // later recv) concern one peer, never the endpoint: stop this round.
            Err(_) => return,
        };
        drop(bufs);
        let now = shared.now();
        let mut st = shared.lock();
        let params = FakeParams::recv(st.messages.config());
        for (i, meta) in metas.iter().take(n).enumerate() {
            let start = i * RECV_SLOT;
            let Some(buf) = recv_buf.get(start..start + meta.len.min(RECV_SLOT)) else {
                continue;
            };
            // With GRO one buffer holds several datagrams of `stride` bytes each.
            let stride = if meta.stride == 0 {
                buf.len().max(1)
            } else {
                meta.stride
            };
            for dgram in buf.chunks(stride) {
                if fake.recv.process(&params, now, meta.addr, dgram) == Fate::Now {
                    st.messages.handle_datagram(now, meta.addr, dgram);
                }
            }
        }
        if n < slots {
            // Drained: the events go out at the end of the wake-up, after the answers
            // (acks) are sent, so the application does not wake into a held lock.
            return;
        }
        // A full round: more is waiting. Post what this one produced now, so the application
        // starts draining on its own thread while later rounds are decoded, instead of finding
        // a queue that reached its limit while it was not told.
        while let Some(ev) = st.messages.poll_event() {
            events.push(ev);
        }
        drop(st);
        if !events.is_empty() {
            sink.emit(std::mem::take(&mut events));
        }
    }
}

/// Sends everything queued in `tx`, waiting for the socket when the kernel buffer is full
/// (until `deadline`, if any; what is left then is dropped).
async fn flush(shared: &Shared, deadline: Option<Instant>) {
    loop {
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if try_flush(&shared.io, &mut shared.lock_tx(), expired) {
            return;
        }
        if shared.io.socket.writable().await.is_err() {
            try_flush(&shared.io, &mut shared.lock_tx(), true);
            return;
        }
    }
}

/// Sends queued datagrams without waiting. Returns false if the kernel buffer filled: the rest
/// stays queued, in order, for the driver task (unless `drop_rest`, then it is dropped). A
/// datagram the kernel refuses for another reason is dropped: UDP promises no delivery, and
/// the transport's retransmission (not this loop) recovers it.
fn try_flush(io: &Io, tx: &mut Tx, drop_rest: bool) -> bool {
    // Consecutive datagrams to one peer of one size (the last may be shorter) leave in one
    // system call with UDP GSO where the kernel offers it (quinn-udp reports 1 otherwise).
    let max_segments = io.udp.max_gso_segments().max(1);
    let Tx {
        outgoing,
        spare,
        gso,
        ..
    } = tx;
    let mut i = 0;
    let mut blocked = false;
    'all: while i < outgoing.len() {
        let (to, seg) = match outgoing.get(i) {
            Some((to, d)) => (*to, d.len()),
            None => break,
        };
        let mut j = i + 1;
        while j < outgoing.len() && j - i < max_segments {
            let (next_to, next) = &outgoing[j];
            let prev_full = outgoing[j - 1].1.len() == seg;
            if *next_to != to || next.len() > seg || !prev_full || seg == 0 {
                break;
            }
            j += 1;
        }
        if j - i > 1 {
            gso.clear();
            for (_, d) in &outgoing[i..j] {
                gso.extend_from_slice(d);
            }
            match send_now(io, to, gso, Some(seg)) {
                Sent::Yes => {
                    i = j;
                    continue;
                }
                Sent::Blocked => {
                    blocked = true;
                    break 'all;
                }
                // Refused as a batch: the peer sees each on its own below.
                Sent::Refused => {}
            }
        }
        while i < j {
            if let Some((to, d)) = outgoing.get(i) {
                if send_now(io, *to, d, None) == Sent::Blocked {
                    blocked = true;
                    break 'all;
                }
            }
            i += 1;
        }
    }
    let done = if blocked && !drop_rest {
        i
    } else {
        outgoing.len()
    };
    for (_, mut buf) in outgoing.drain(..done) {
        if spare.len() < MAX_SPARE_BUFFERS {
            buf.clear();
            spare.push(buf);
        }
    }
    outgoing.is_empty()
}

/// What became of one transmit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    Yes,
    /// The kernel buffer is full: try again when the socket is writable.
    Blocked,
    /// Refused for another reason.
    Refused,
}

/// A copy of `d` in a reused buffer when one is spare.
fn reuse(spare: &mut Vec<Vec<u8>>, d: &[u8]) -> Vec<u8> {
    let mut buf = spare.pop().unwrap_or_default();
    buf.extend_from_slice(d);
    buf
}

/// One non-blocking send. `try_io` clears the socket's writable readiness on `WouldBlock`,
/// so the task's next `writable().await` really waits for the kernel.
fn send_now(io: &Io, to: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> Sent {
    let transmit = Transmit {
        destination: to,
        ecn: None,
        contents,
        segment_size,
        src_ip: None,
    };
    match io.socket.try_io(Interest::WRITABLE, || {
        io.udp.try_send((&io.socket).into(), &transmit)
    }) {
        Ok(()) => Sent::Yes,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Blocked,
        Err(_) => Sent::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcore::crypto::identity_key::IdentityKey;

    struct Discard;
    impl EventSink for Discard {
        fn emit(&self, _: Vec<Event>) {}
    }

    fn endpoint() -> EndpointHandle {
        let security = LocalSecurity::unauthenticated(IdentityKey::from_seed(&[7; 32]));
        EndpointHandle::bind(
            "127.0.0.1:0",
            Config::default(),
            security,
            Arc::new(Discard),
        )
        .expect("bind")
    }

    /// Waits up to `limit` for a datagram on `peer`.
    fn datagram_within(peer: &std::net::UdpSocket, limit: Duration) -> bool {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < limit {
            if peer.recv(&mut buf).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Keeps the runtime's one thread busy for `d`, so the driver task cannot run.
    fn stall_driver(d: Duration) {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        runtime().spawn(async move {
            let _ = started_tx.send(());
            std::thread::sleep(d);
        });
        let _ = started_rx.recv_timeout(Duration::from_secs(5));
    }

    #[test]
    fn no_nagle_sends_leave_from_the_callers_thread() {
        let ep = endpoint();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind peer");
        peer.set_nonblocking(true).expect("nonblocking");
        let id =
            Identity::from_ip_str(&peer.local_addr().expect("addr").to_string()).expect("identity");

        // Control: while the task is stalled, a plain send waits for it.
        stall_driver(Duration::from_millis(400));
        assert_eq!(ep.send(&id, None, b"queued", 0, 0), EResult::Ok);
        assert!(
            !datagram_within(&peer, Duration::from_millis(150)),
            "a Nagle send went out while the driver task could not run"
        );
        // Once the task runs, it sends the handshake's first datagram.
        assert!(datagram_within(&peer, Duration::from_secs(2)));

        let ep2 = endpoint();
        let peer2 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind peer");
        peer2.set_nonblocking(true).expect("nonblocking");
        let id2 = Identity::from_ip_str(&peer2.local_addr().expect("addr").to_string())
            .expect("identity");
        stall_driver(Duration::from_millis(400));
        assert_eq!(
            ep2.send(&id2, None, b"now", send_flags::NO_NAGLE, 0),
            EResult::Ok
        );
        assert!(
            datagram_within(&peer2, Duration::from_millis(150)),
            "a NoNagle send waited for the driver task"
        );
    }
}
