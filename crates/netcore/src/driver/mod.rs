//! The I/O driver: the only code that touches sockets and the clock.
//!
//! One tokio runtime per process (started on first use) runs one driver task per endpoint.
//! The task owns the UDP socket (through quinn-udp, which batches with recvmmsg and, on send,
//! can use GSO) and feeds the sans-IO [`Messages`] state: received datagrams and `now` in,
//! datagrams and events out.
//!
//! The application's thread reaches the same state through [`EndpointHandle`] under a mutex
//! held only for in-memory work, never across a system call; a send wakes the task through a
//! [`Notify`]. Events reach the application through an [`EventSink`], called outside the lock
//! with everything one wake-up produced, so a burst costs one call.
//!
//! Steam's fake-network knobs (`fakePacket*`) are applied here, to real datagrams, by
//! [`fake_network`]: outgoing datagrams pass through it before the kernel, received ones before
//! the protocol, and its next release time joins the task's sleep.

pub mod fake_network;

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, Notify};

use crate::config::Config;
use crate::crypto::session_setup::LocalSecurity;
use crate::endpoint::EndpointSetup;
use crate::eresult::EResult;
use crate::identity::Identity;
use crate::messages::{Delivered, Event, Messages, SessionInfo};
use crate::time::Timestamp;
use fake_network::{FakeNetwork, FakeParams, Fate};

/// Receive buffer per datagram slot; a datagram larger than this is truncated by the kernel
/// and then fails to decode (the slice framing carries its own lengths).
const RECV_SLOT: usize = 65_536;
/// Longest `close()` lingers for reliable data to be acknowledged before freeing the socket.
pub const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// Longest the final goodbyes wait for socket buffer space.
const FINAL_FLUSH: Duration = Duration::from_millis(200);
/// Most spare datagram buffers kept for reuse (a burst beyond it allocates, then frees).
const MAX_SPARE_BUFFERS: usize = 1024;
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

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("netmessages-driver")
            .enable_all()
            .build()
            // Without threads nothing can work; this happens only if the OS refuses them.
            .expect("netmessages: cannot start the I/O runtime")
    })
}

struct State {
    messages: Messages,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    epoch: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; the state is still the best we have.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                messages: Messages::new(config, setup),
                closing: false,
            }),
            wake: Notify::new(),
            epoch: Instant::now(),
        });
        let (done_tx, done_rx) = oneshot::channel();
        let task_shared = Arc::clone(&shared);
        let rt = runtime();
        let socket = {
            let _guard = rt.enter();
            tokio::net::UdpSocket::from_std(std_sock).map_err(io_err)?
        };
        let udp_state = UdpSocketState::new((&socket).into()).map_err(io_err)?;
        rt.spawn(async move {
            drive(task_shared, socket, udp_state, sink).await;
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
    /// `on_result` gets one result per message, in order.
    pub fn send_batch<'a>(
        &self,
        messages: impl Iterator<Item = OutgoingMessage<'a>>,
        mut on_result: impl FnMut(EResult),
    ) {
        let now = self.shared.now();
        let mut any = false;
        {
            let mut st = self.shared.lock();
            for m in messages {
                let r = if st.closing {
                    EResult::InvalidState
                } else {
                    st.messages
                        .send(now, m.peer, m.remote, m.data, m.flags, m.channel)
                };
                any |= r == EResult::Ok;
                on_result(r);
            }
        }
        if any {
            self.shared.wake.notify_one();
        }
    }

    /// Sends what Nagle holds for `peer` now.
    pub fn flush(&self, peer: &Identity) -> EResult {
        let now = self.shared.now();
        let r = self.shared.lock().messages.flush(now, peer);
        self.shared.wake.notify_one();
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
        self.shared.lock().messages.close_channel(peer, channel)
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
    pub fn set_config(&self, changes: &[(String, f64)]) -> Result<(), crate::config::ConfigError> {
        let mut st = self.shared.lock();
        let mut next = st.messages.config().clone();
        next.apply(changes)?;
        st.messages.set_config(self.shared.now(), next);
        Ok(())
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closing
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
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

async fn drive(
    shared: Arc<Shared>,
    socket: tokio::net::UdpSocket,
    udp: UdpSocketState,
    sink: Arc<dyn EventSink>,
) {
    let slots = BATCH_SIZE.min(32);
    let mut recv_buf = vec![0u8; RECV_SLOT * slots];
    let mut metas = vec![RecvMeta::default(); slots];
    let mut scratch = Vec::with_capacity(1500);
    let mut outgoing: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    // Buffers of datagrams already sent, reused for the next ones: no allocation per
    // datagram at steady state.
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut events = Vec::new();
    let mut linger_until: Option<Instant> = None;
    let mut fake = FakeNetwork::new();

    loop {
        let (deadline, closing) = {
            let st = shared.lock();
            (
                earliest(st.messages.poll_timeout(), fake.next_release()),
                st.closing,
            )
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
                    let mut st = shared.lock();
                    st.messages.close_all();
                    let now = shared.now();
                    let params = FakeParams::send(st.messages.config());
                    st.messages.poll_transmit(now, &mut scratch, |to, d| {
                        if fake.send.process(&params, now, to, d) == Fate::Now {
                            outgoing.push((to, reuse(&mut spare, d)));
                        }
                    });
                }
                outgoing.extend(fake.send.drain_all());
                flush(
                    &socket,
                    &udp,
                    &mut outgoing,
                    &mut spare,
                    Some(Instant::now() + FINAL_FLUSH),
                )
                .await;
                break;
            }
        }
        let sleep_for = deadline
            .map(|d| Duration::from_micros(d.as_micros().saturating_sub(shared.now().as_micros())));
        tokio::select! {
            r = socket.readable() => {
                if r.is_ok() {
                    receive_batches(&shared, &socket, &udp, &mut recv_buf, &mut metas, slots, &mut fake);
                }
            }
            _ = shared.wake.notified() => {}
            _ = sleep_opt(sleep_for) => {
                shared.lock().messages.handle_timeout(shared.now());
            }
        }
        {
            let mut st = shared.lock();
            let now = shared.now();
            while let Some((from, d)) = fake.recv.pop_due(now) {
                st.messages.handle_datagram(now, from, &d);
            }
            while let Some(due) = fake.send.pop_due(now) {
                outgoing.push(due);
            }
            // Read per wake-up, so `setConfig` applies to the next datagram.
            let params = FakeParams::send(st.messages.config());
            st.messages.poll_transmit(now, &mut scratch, |to, d| {
                if fake.send.process(&params, now, to, d) == Fate::Now {
                    outgoing.push((to, reuse(&mut spare, d)));
                }
            });
            while let Some(ev) = st.messages.poll_event() {
                events.push(ev);
            }
        }
        flush(&socket, &udp, &mut outgoing, &mut spare, None).await;
        if !events.is_empty() {
            sink.emit(std::mem::take(&mut events));
        }
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
    socket: &tokio::net::UdpSocket,
    udp: &UdpSocketState,
    recv_buf: &mut [u8],
    metas: &mut [RecvMeta],
    slots: usize,
    fake: &mut FakeNetwork,
) {
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
    }
}

/// Sends everything in `outgoing`, waiting for the socket when the kernel buffer is full.
/// A datagram the kernel refuses for a reason other than back-pressure is dropped: UDP gives
/// no delivery promise, and the transport's retransmission (not this loop) recovers it.
async fn flush(
    socket: &tokio::net::UdpSocket,
    udp: &UdpSocketState,
    outgoing: &mut Vec<(SocketAddr, Vec<u8>)>,
    spare: &mut Vec<Vec<u8>>,
    deadline: Option<Instant>,
) {
    // Consecutive datagrams to one peer of one size (the last may be shorter) leave in one
    // system call with UDP GSO where the kernel offers it (quinn-udp reports 1 otherwise).
    let max_segments = udp.max_gso_segments().max(1);
    let mut batch: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < outgoing.len() {
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
        let sent = if j - i > 1 {
            batch.clear();
            for (_, d) in &outgoing[i..j] {
                batch.extend_from_slice(d);
            }
            send_one(socket, udp, to, &batch, Some(seg), deadline).await
        } else {
            false
        };
        if !sent {
            // One at a time: no batch, or the batch was refused (the peer then sees each).
            for (to, d) in &outgoing[i..j] {
                send_one(socket, udp, *to, d, None, deadline).await;
            }
        }
        i = j;
    }
    for (_, mut buf) in outgoing.drain(..) {
        if spare.len() < MAX_SPARE_BUFFERS {
            buf.clear();
            spare.push(buf);
        }
    }
}

/// A copy of `d` in a reused buffer when one is spare.
fn reuse(spare: &mut Vec<Vec<u8>>, d: &[u8]) -> Vec<u8> {
    let mut buf = spare.pop().unwrap_or_default();
    buf.extend_from_slice(d);
    buf
}

/// Sends one transmit, waiting for socket buffer space until `deadline`; whether the kernel
/// took it. A datagram refused for another reason is dropped: UDP promises no delivery, and the
/// transport's retransmission (not this loop) recovers it.
async fn send_one(
    socket: &tokio::net::UdpSocket,
    udp: &UdpSocketState,
    to: SocketAddr,
    contents: &[u8],
    segment_size: Option<usize>,
    deadline: Option<Instant>,
) -> bool {
    let transmit = Transmit {
        destination: to,
        ecn: None,
        contents,
        segment_size,
        src_ip: None,
    };
    loop {
        match socket.try_io(Interest::WRITABLE, || {
            udp.try_send(socket.into(), &transmit)
        }) {
            Ok(()) => return true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                if socket.writable().await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}
