//! The messages model on the driver: [`EndpointHandle`], what the binding's
//! `NetworkingMessages` holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use netcore::config::Config;
use netcore::connection::ConnectionState;
use netcore::crypto::session_setup::LocalSecurity;
use netcore::endpoint::{EndpointSetup, EndpointStats};
use netcore::eresult::{send_flags, EResult};
use netcore::identity::Identity;
use netcore::messages::{Delivered, Event, Messages, MessagesStats, SessionInfo};
use netcore::p2p::layer::{LayerEvent, P2pLayer};
use tokio::sync::oneshot;

use crate::driver::{due_before, BindError, Driver, EventSink, Secrets};
use crate::reuse_port::{shard_of, MAX_SHARDS};

/// What binds when the application names no address: every interface, IPv6 and IPv4 on one
/// dual-stack socket where the OS allows it, else IPv4 only.
pub const DEFAULT_BIND_DUAL: &str = "[::]:0";
/// The default bind where dual-stack sockets are not available.
pub const DEFAULT_BIND_V4: &str = "0.0.0.0:0";

/// An endpoint's counters and session census, for `getEndpointStats`.
#[derive(Clone, Debug)]
pub struct EndpointReport {
    /// The endpoint's datagram counters.
    pub endpoint: EndpointStats,
    /// The messages layer's counters.
    pub messages: MessagesStats,
    /// Sessions by state.
    pub sessions_by_state: Vec<(ConnectionState, usize)>,
    /// Sessions in all.
    pub sessions: usize,
    /// Sessions whose receive backlog is at its limit.
    pub sessions_receive_blocked: usize,
    /// Messages waiting to be read, all channels.
    pub messages_queued: usize,
}

/// One message of a [`EndpointHandle::send_batch`].
#[derive(Clone)]
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

/// The application's handle on a running messages endpoint (one port), with P2P in front
/// of it once switched on (`p2p.rs`).
///
/// With several driver threads ([`EndpointHandle::bind_threads`]) the port is a group of
/// sockets, one per thread, each with a messages state of its own (a shard): the kernel
/// routes every datagram to the shard [`crate::reuse_port::shard_of`] names for its source,
/// and every session with a peer address lives on that address's shard, whichever side
/// opened it. Calls naming a peer go to its shard; the others combine the shards.
pub struct EndpointHandle {
    /// Never empty.
    pub(crate) shards: Vec<Driver<P2pLayer<Messages>>>,
    local: SocketAddr,
    /// Where the next `receive` starts, so no shard's messages wait behind another's.
    next_receive: AtomicUsize,
}

type Shard = Driver<P2pLayer<Messages>>;

impl EndpointHandle {
    /// Binds `bind` (`host:port`; port 0 picks one; `None`: [`DEFAULT_BIND_DUAL`] where the
    /// OS offers dual-stack sockets, else [`DEFAULT_BIND_V4`]) and starts the endpoint's
    /// driver task, with `security` (identity key, certificate, trust policy) for its
    /// handshakes.
    pub fn bind(
        bind: Option<&str>,
        config: Config,
        security: LocalSecurity,
        sink: Arc<dyn EventSink<LayerEvent<Event>>>,
    ) -> Result<Self, BindError> {
        Self::bind_threads(bind, 1, config, security, sink)
    }

    /// [`EndpointHandle::bind`] with `threads` driver threads on the one port (1 to
    /// [`crate::reuse_port::MAX_SHARDS`]; more than one needs Linux). Every shard's events
    /// go to `sink`.
    pub fn bind_threads(
        bind: Option<&str>,
        threads: usize,
        config: Config,
        security: LocalSecurity,
        sink: Arc<dyn EventSink<LayerEvent<Event>>>,
    ) -> Result<Self, BindError> {
        let bind = bind.unwrap_or(if crate::io::dual_stack_available() {
            DEFAULT_BIND_DUAL
        } else {
            DEFAULT_BIND_V4
        });
        tracing::debug!(bind, threads, "binding a messages endpoint");
        let make = |security: LocalSecurity| {
            let config = config.clone();
            move |s: Secrets| {
                P2pLayer::new(Messages::new(
                    config,
                    EndpointSetup {
                        secret: s.secret,
                        security,
                        unix_at_epoch: s.unix_at_epoch,
                    },
                ))
            }
        };
        let shards = if threads <= 1 {
            vec![Driver::start(Some(bind), make(security), sink)?]
        } else {
            let group = crate::driver::bind_group(bind, threads.min(MAX_SHARDS))?;
            let mut shards = Vec::with_capacity(group.len());
            for (k, io) in group.into_iter().enumerate() {
                shards.push(Driver::start_shard(
                    io,
                    k,
                    make(security.clone()),
                    Arc::clone(&sink),
                )?);
            }
            shards
        };
        let local = shards
            .first()
            .and_then(|d| d.local_addr(0))
            .ok_or_else(|| BindError::BadAddress(bind.to_owned()))?;
        Ok(EndpointHandle {
            shards,
            local,
            next_receive: AtomicUsize::new(0),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How many driver threads serve the port.
    pub fn driver_threads(&self) -> usize {
        self.shards.len()
    }

    /// The driver of the first (with one driver thread, the only) shard, for an application
    /// thread that reads the socket itself (`caller_receive.rs`) and for P2P.
    pub fn driver(&self) -> &Shard {
        &self.shards[0]
    }

    /// The shard that holds (or would open) the session with `peer`: its address's, for a
    /// peer known by address; for another, the shard that has a session with it, else the
    /// shard of `remote` (where a new session would go).
    fn shard_for(&self, peer: &Identity, remote: Option<SocketAddr>) -> usize {
        let n = self.shards.len();
        if n == 1 {
            return 0;
        }
        if let Some(addr) = peer.ip_addr() {
            return shard_of(addr, n);
        }
        // Few shards: asking each is cheaper than keeping a map that must follow every
        // session's end.
        (0..n)
            .find(|&k| self.shards[k].read(|m| m.has_session(peer)))
            .or_else(|| remote.map(|a| shard_of(a, n)))
            .unwrap_or(0)
    }

    fn shard(&self, peer: &Identity) -> &Shard {
        &self.shards[self.shard_for(peer, None)]
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
        let shard = &self.shards[self.shard_for(peer, remote)];
        send_on(shard, std::iter::once(one), |r| result = r);
        result
    }

    /// Queues many messages under one lock and one wake-up per shard (Steam's
    /// `SendMessages`). `on_result` gets one result per message, in order. If an accepted
    /// message asked not to wait (`NoNagle`, `NoDelay` or `UseCurrentThread`), what is due
    /// leaves from this thread before the call returns; otherwise the driver task sends it.
    pub fn send_batch<'a>(
        &self,
        messages: impl Iterator<Item = OutgoingMessage<'a>>,
        mut on_result: impl FnMut(EResult),
    ) {
        if self.shards.len() == 1 {
            send_on(&self.shards[0], messages, on_result);
            return;
        }
        let messages: Vec<(usize, OutgoingMessage<'a>)> = messages
            .map(|m| (self.shard_for(m.peer, m.remote), m))
            .collect();
        let mut results = vec![EResult::Fail; messages.len()];
        for (k, shard) in self.shards.iter().enumerate() {
            let mine: Vec<usize> = (0..messages.len())
                .filter(|&i| messages[i].0 == k)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut slots = mine.iter();
            send_on(shard, mine.iter().map(|&i| messages[i].1.clone()), |r| {
                if let Some(&i) = slots.next() {
                    results[i] = r;
                }
            });
        }
        results.into_iter().for_each(&mut on_result);
    }

    /// Sends what Nagle holds for `peer` now, from this thread.
    pub fn flush(&self, peer: &Identity) -> EResult {
        let shard = self.shard(peer);
        let (r, _) = shard.with(|m, now| m.flush(now, peer));
        if r == EResult::Ok {
            shard.transmit_here();
        }
        r
    }

    /// Takes up to `max` waiting messages from `channel`; also says how many are left.
    pub fn receive(&self, channel: i32, max: usize) -> (Vec<Delivered>, usize) {
        let n = self.shards.len();
        let first = if n == 1 {
            0
        } else {
            self.next_receive.fetch_add(1, Ordering::Relaxed) % n
        };
        let mut got = Vec::new();
        let mut left = 0;
        for k in (first..n).chain(0..first) {
            let shard = &self.shards[k];
            let want = max - got.len().min(max);
            let ((mut some, rest), wake) = shard.with(|m, _| {
                let some = if want > 0 {
                    m.receive(channel, want)
                } else {
                    Vec::new()
                };
                (some, m.queued(channel))
            });
            // Reading may lift a receive pause or a session's back-pressure: the driver
            // acts on it now rather than at its next timer.
            if wake {
                shard.wake();
            }
            if got.is_empty() {
                got = some;
            } else {
                got.append(&mut some);
            }
            left += rest;
        }
        (got, left)
    }

    /// Whether a send to `peer` has room now; if not, a `Writable` event follows once it
    /// has. `None` when the session ended.
    pub fn watch_writable(&self, peer: &Identity) -> Option<bool> {
        self.shard(peer).with(|m, _| m.watch_writable(peer)).0
    }

    /// Messages waiting on `channel`.
    pub fn queued(&self, channel: i32) -> usize {
        self.shards
            .iter()
            .map(|d| d.read(|m| m.queued(channel)))
            .sum()
    }

    /// The channels with messages waiting.
    pub fn waiting_channels(&self) -> Vec<i32> {
        let mut all: Vec<i32> = Vec::new();
        for d in &self.shards {
            d.read(|m| all.extend(m.waiting_channels()));
        }
        if self.shards.len() > 1 {
            all.sort_unstable();
            all.dedup();
        }
        all
    }

    /// The endpoint's counters and session census (every shard's, summed).
    pub fn report(&self) -> EndpointReport {
        let mut total = EndpointReport {
            endpoint: EndpointStats::default(),
            messages: MessagesStats::default(),
            sessions_by_state: Vec::new(),
            sessions: 0,
            sessions_receive_blocked: 0,
            messages_queued: 0,
        };
        for d in &self.shards {
            d.read(|m| {
                total.endpoint.add(&m.endpoint_stats());
                total.messages += m.stats();
                for (state, count) in m.session_states() {
                    match total
                        .sessions_by_state
                        .iter_mut()
                        .find(|(s, _)| *s == state)
                    {
                        Some((_, c)) => *c += count,
                        None => total.sessions_by_state.push((state, count)),
                    }
                }
                total.sessions += m.session_count();
                total.sessions_receive_blocked += m.blocked_sessions();
                total.messages_queued += m.queued_total();
            });
        }
        total
    }

    /// A status snapshot of every session.
    pub fn sessions(&self) -> Vec<(Identity, SessionInfo)> {
        let mut all = Vec::new();
        for d in &self.shards {
            all.extend(d.read(|m| m.session_infos()));
        }
        all
    }

    /// Steam's detailed status text for the session with `peer`.
    pub fn detailed_status(&self, peer: &Identity) -> Option<String> {
        let shard = self.shard(peer);
        let now = shard.now();
        shard.read(|m| m.detailed_status(now, peer))
    }

    /// Accepts a pending session.
    pub fn accept(&self, peer: &Identity) -> bool {
        let shard = self.shard(peer);
        let (accepted, _) = shard.with(|m, _| m.accept(peer));
        if accepted {
            // Messages held for this peer are now deliverable: let the driver post the event.
            shard.wake();
        }
        accepted
    }

    /// Closes the session with `peer`.
    pub fn close_session(&self, peer: &Identity) -> bool {
        let shard = self.shard(peer);
        let (closed, _) = shard.with(|m, _| m.close_session(peer));
        // The polite close datagram to the peer goes out on the driver.
        shard.wake();
        closed
    }

    /// Closes one channel with `peer`.
    pub fn close_channel(&self, peer: &Identity, channel: i32) -> bool {
        let shard = self.shard(peer);
        let (closed, _) = shard.with(|m, _| m.close_channel(peer, channel));
        // Closing the last channel closes the session: its goodbye goes out on the driver.
        shard.wake();
        closed
    }

    /// Status of the session with `peer`.
    pub fn session_info(&self, peer: &Identity) -> Option<SessionInfo> {
        self.shard(peer).read(|m| m.session_info(peer))
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.driver().read(|m| m.config().clone())
    }

    /// Applies validated configuration changes; nothing changes on error.
    pub fn set_config(
        &self,
        changes: &[(String, f64)],
    ) -> Result<(), netcore::config::ConfigError> {
        // Checked on a copy first, so an error leaves every shard as it was.
        self.config().apply(changes)?;
        self.shards.iter().try_for_each(|d| d.set_config(changes))
    }

    /// Stops accepting sends, lets queued data leave (bounded by
    /// [`crate::CLOSE_LINGER`]) and frees the socket. Returns a receiver that completes when
    /// the sockets are closed; a second call returns `None`.
    pub fn close(&self) -> Option<oneshot::Receiver<()>> {
        let mut done: Vec<_> = self.shards.iter().filter_map(Driver::close).collect();
        if done.len() <= 1 {
            return done.pop();
        }
        let (tx, rx) = oneshot::channel();
        crate::driver::spawn(async move {
            for d in done {
                let _ = d.await;
            }
            let _ = tx.send(());
        });
        Some(rx)
    }
}

/// Queues `messages` on one shard under one lock, then sends or wakes as they ask.
fn send_on<'a>(
    shard: &Shard,
    messages: impl Iterator<Item = OutgoingMessage<'a>>,
    mut on_result: impl FnMut(EResult),
) {
    const NOW: u32 = send_flags::NO_NAGLE | send_flags::NO_DELAY | send_flags::USE_CURRENT_THREAD;
    let (urgent, wake) = shard.with_planned(|m, now, planned, closing| {
        let mut urgent = false;
        // A task whose planned wake-up has come runs (or is about to run) its loop, which
        // sees every change made under this lock: nothing to check or wake.
        let mut wake = false;
        let task_due = planned.is_some_and(|p| p <= now);
        let mut any = false;
        // Consecutive messages to one peer go as one run: its session is found once, and
        // its connection (the only one they can have moved: checking it alone keeps a send
        // O(1) however many connections other sends touched) is checked once, after the
        // run: more queued data only brings a deadline closer.
        let mut messages = messages.peekable();
        // The run after its first message (allocated only for a batch).
        let mut rest: Vec<OutgoingMessage<'a>> = Vec::new();
        while let Some(first) = messages.next() {
            let (peer, remote) = (first.peer, first.remote);
            let same = |m: &OutgoingMessage<'a>| {
                m.remote == remote && (std::ptr::eq(m.peer, peer) || m.peer == peer)
            };
            rest.clear();
            while let Some(next) = messages.next_if(|m| same(m)) {
                rest.push(next);
            }
            if closing {
                (0..=rest.len()).for_each(|_| on_result(EResult::InvalidState));
                continue;
            }
            let run = || std::iter::once(&first).chain(rest.iter());
            let mut flags = run().map(|o| o.flags);
            let mut sent = false;
            m.send_run(
                now,
                peer,
                remote,
                run().map(|o| (o.data, o.flags, o.channel)),
                |r| {
                    let f = flags.next().unwrap_or(0);
                    if r == EResult::Ok {
                        sent = true;
                        urgent |= f & NOW != 0;
                    }
                    on_result(r);
                },
            );
            any |= sent;
            if sent {
                wake = wake || (!urgent && !task_due && due_before(m.deadline_of(peer), planned));
            }
        }
        wake |= any && !urgent && m.has_events();
        (urgent, wake)
    });
    if urgent {
        shard.transmit_here();
    } else if wake {
        shard.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::stall_runtime;
    use netcore::crypto::identity_key::IdentityKey;
    use std::time::{Duration, Instant};

    struct Discard;
    impl EventSink<LayerEvent<Event>> for Discard {
        fn queue(&self, _: Vec<LayerEvent<Event>>) {}
        fn wake(&self) {}
    }

    fn endpoint() -> EndpointHandle {
        endpoint_with(Config::default())
    }

    fn endpoint_with(config: Config) -> EndpointHandle {
        let security = LocalSecurity::unauthenticated(IdentityKey::from_seed(&[7; 32]));
        EndpointHandle::bind(Some("127.0.0.1:0"), config, security, Arc::new(Discard))
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

    #[test]
    fn no_nagle_sends_leave_from_the_callers_thread() {
        let ep = endpoint();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind peer");
        peer.set_nonblocking(true).expect("nonblocking");
        let id =
            Identity::from_ip_str(&peer.local_addr().expect("addr").to_string()).expect("identity");

        // Control: while the task is stalled, a plain send waits for it.
        stall_runtime(Duration::from_millis(400));
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
        stall_runtime(Duration::from_millis(400));
        assert_eq!(
            ep2.send(&id2, None, b"now", send_flags::NO_NAGLE, 0),
            EResult::Ok
        );
        assert!(
            datagram_within(&peer2, Duration::from_millis(150)),
            "a NoNagle send waited for the driver task"
        );
    }

    #[test]
    fn a_batch_wakes_the_task_for_each_run_of_one_peers_messages() {
        let ep = endpoint();
        let bind = || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind peer");
            s.set_nonblocking(true).expect("nonblocking");
            let id = Identity::from_ip_str(&s.local_addr().expect("addr").to_string())
                .expect("identity");
            (s, id)
        };
        let ((pa, a), (pb, b)) = (bind(), bind());
        // Let the task reach its sleep first.
        std::thread::sleep(Duration::from_millis(100));
        let msg = |peer| OutgoingMessage {
            peer,
            remote: None,
            data: b"x",
            flags: 0,
            channel: 0,
        };
        // The task sleeps with nothing to do; a batch of runs A, A, B, B, A opens both
        // sessions, so their handshakes are due now and the batch must wake it.
        let mut results = Vec::new();
        ep.send_batch([&a, &a, &b, &b, &a].into_iter().map(msg), |r| {
            results.push(r)
        });
        assert_eq!(results, vec![EResult::Ok; 5]);
        assert!(
            datagram_within(&pa, Duration::from_secs(2)),
            "A's handshake"
        );
        assert!(
            datagram_within(&pb, Duration::from_secs(2)),
            "B's handshake"
        );
        // One run only, from an endpoint with no timer set: its check is the one after it.
        let ep = endpoint();
        let (pc, c) = bind();
        // Again, let its task reach its sleep.
        std::thread::sleep(Duration::from_millis(100));
        ep.send_batch([&c, &c].into_iter().map(msg), |_| {});
        assert!(
            datagram_within(&pc, Duration::from_secs(2)),
            "C's handshake"
        );
    }

    /// Reads channel 0 of `ep` as fast as it can until `n` messages came or `limit` passed.
    fn read_until(ep: &EndpointHandle, n: usize, limit: Duration) -> Vec<Delivered> {
        let start = Instant::now();
        let mut got = Vec::new();
        while got.len() < n && start.elapsed() < limit {
            let (msgs, _) = ep.receive(0, 100);
            if msgs.is_empty() {
                std::thread::yield_now();
            }
            got.extend(msgs);
        }
        got
    }

    /// A and B in session, B's receive backlog limited to 10 messages: (A, B, B's identity).
    fn pair_into_a_10_message_backlog() -> (EndpointHandle, EndpointHandle, Identity) {
        let b = endpoint_with(Config {
            recv_buffer_messages: 10,
            ..Config::default()
        });
        let a = endpoint();
        let id = |ep: &EndpointHandle| {
            let addr = ep.local_addr().to_string();
            Identity::from_ip_str(&addr).expect("identity")
        };
        let (ia, ib) = (id(&a), id(&b));
        // B accepts A up front (a send to a peer accepts it); A's hello establishes the
        // session both ways.
        assert_eq!(b.send(&ia, None, b"", 0, 0), EResult::Ok);
        assert_eq!(
            a.send(&ib, None, b"hello", send_flags::RELIABLE, 0),
            EResult::Ok
        );
        assert_eq!(read_until(&b, 1, Duration::from_secs(5)).len(), 1, "hello");
        (a, b, ib)
    }

    /// Reads B until `burst` messages (bytes 0, 1, ...) came or 5 s passed: at least 45 of
    /// them, in order, once each. (A pause can time out, 5 ms, on a machine that keeps this
    /// reader off the CPU, so the bound leaves room for that.)
    fn assert_burst_arrives_in_order(b: &EndpointHandle, burst: u8) {
        let got = read_until(b, usize::from(burst), Duration::from_secs(5));
        let seq: Vec<u8> = got.iter().map(|d| d.msg.data[0]).collect();
        assert!(
            seq.len() >= 45,
            "{} of {burst} arrived ({} dropped at the backlog): {seq:?}",
            seq.len(),
            b.report().messages.dropped_recv_full
        );
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "in order, once each: {seq:?}"
        );
    }

    #[test]
    fn a_burst_past_the_receive_limit_waits_in_the_kernel_instead_of_being_dropped() {
        const BURST: u8 = 60;
        let (a, b, ib) = pair_into_a_10_message_backlog();
        // While the I/O thread cannot run, A's NoNagle sends leave from this thread and pile
        // up in B's kernel buffer: six times B's limit arrives at once.
        stall_runtime(Duration::from_millis(300));
        for i in 0..BURST {
            assert_eq!(
                a.send(&ib, None, &[i], send_flags::NO_NAGLE, 0),
                EResult::Ok
            );
        }
        // Before the receive pause, B decoded whole batches into a 10-message backlog and
        // dropped the rest (10 of 60 arrived).
        assert_burst_arrives_in_order(&b, BURST);
    }

    #[test]
    fn the_callers_thread_reads_a_burst_into_the_receive_pause_and_the_task_finishes_it() {
        const BURST: u8 = 60;
        let (a, b, ib) = pair_into_a_10_message_backlog();
        // This thread plays the application's: it polls B's socket and reads it itself.
        let (may, sockets) = b.driver().caller_sockets();
        assert!(may, "no knobs, not closing, not paused");
        let socket = sockets.into_iter().next().expect("B's socket");
        socket.set_polled(true);
        stall_runtime(Duration::from_millis(300));
        for i in 0..BURST {
            assert_eq!(
                a.send(&ib, None, &[i], send_flags::NO_NAGLE, 0),
                EResult::Ok
            );
        }
        // One batch: its first ten fill the backlog and pause receiving, the rest is held
        // for the task; the caller is told to stop polling.
        assert!(
            !b.driver().receive_here(&socket),
            "a burst past the backlog hands reading to the task"
        );
        let on_caller = b.driver().caller_datagrams();
        assert!(
            on_caller > 0 && on_caller < u64::from(BURST),
            "{on_caller} read here"
        );
        assert!(
            !b.driver().caller_sockets().0,
            "the caller may not read during the pause"
        );
        socket.set_polled(false);
        // Reading lifts the pause; the task handles what was held, then the kernel's rest.
        assert_burst_arrives_in_order(&b, BURST);
    }
}
