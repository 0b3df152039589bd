//! What an idle, established session costs the server in heap memory.
//!
//! One server `Messages` and [`CLIENTS`] client `Messages` talk through the shared harness's
//! lossless [`Hub`]: every client sends one small reliable message, the server
//! accepts the session and reads it, and both sides run until everything is acknowledged.
//! The growth of the server's live heap from half of them to all of them, per session, is
//! its cost per idle session, which the performance target bounds (`<= 4 KiB` per session for the whole
//! process; the core's share must be well under that).
//!
//! Only the server's heap is counted: a counting global allocator attributes allocations and
//! frees to the server only while a server call runs on this thread (see [`server`]), so the
//! clients' and the harness's memory stay out of the figure. Dropping the server at the end
//! must bring its count back to where it started, which checks that attribution.
//!
//! This is its own test binary because it installs a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use netcore::config::Config;
use netcore::connection::Connection;
use netcore::endpoint::EndpointSetup;
use netcore::eresult::send_flags;
use netcore::messages::{Event, Messages};
use netcore::sim::{Hub, Wired};
use netcore::{Identity, Timestamp};

/// Sessions opened to the server.
const CLIENTS: usize = 200;
/// Ceiling on the server's heap bytes per idle session: the figure measured when this test
/// was written (2,647 B, of which about 1,500 B is the endpoint's table of inline
/// connections) plus a margin for small changes. It was 12,645 B before idle connections
/// shed their buffers and cipher. The loss-recovery state (boxed recovery and congestion
/// controller, ~470 B) and the quality reports (~170 B) took it to 3,016 B (all of the
/// server's growth over 200 sessions); measured as the cost of one more session (100 to 200
/// sessions), 2,784 B.
const MAX_HEAP_PER_SESSION: usize = 3_200;
/// Ceiling on `size_of::<Connection>()`, which every session pays inline (1,168 B when
/// written; 3,520 B before).
const MAX_CONNECTION_SIZE: usize = 1_300;
/// Virtual time the network runs for: past the first keepalive round (the default
/// `timeoutConnected` of 10 s makes it about 3.3 s), which is when an idle connection first
/// sheds what it can rebuild; so the sessions end idle, settled and in their steady state.
const RUN_FOR: Duration = Duration::from_millis(5_000);

/// Live heap bytes allocated while a server call ran (and not yet freed by one).
static SERVER_LIVE: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// Set while the server runs on this thread: its allocations and frees are counted.
    static IN_SERVER: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting the server's live bytes.
struct Counting;

fn count(delta: isize) {
    // `try_with`: the thread-local may be gone while a thread shuts down.
    if IN_SERVER.try_with(Cell::get).unwrap_or(false) {
        SERVER_LIVE.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counting only reads a
// thread-local flag and updates an atomic, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` as server work: what it allocates or frees counts as the server's.
fn server<R>(f: impl FnOnce() -> R) -> R {
    IN_SERVER.with(|c| c.set(true));
    let r = f();
    IN_SERVER.with(|c| c.set(false));
    r
}

/// Runs `f` as test work inside a server call (copying a datagram out of the server).
fn outside<R>(f: impl FnOnce() -> R) -> R {
    let was = IN_SERVER.with(|c| c.replace(false));
    let r = f();
    IN_SERVER.with(|c| c.set(was));
    r
}

fn server_live() -> isize {
    SERVER_LIVE.load(Ordering::Relaxed)
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250 + 1) as u8], 27_000))
}

/// The server as a wired node: every call into it runs as server work; what it hands to
/// the harness is copied outside it.
struct Counted {
    m: Messages,
    buf: Vec<u8>,
}

impl Wired for Counted {
    fn receive(&mut self, now: Timestamp, from: SocketAddr, data: &[u8]) {
        server(|| self.m.handle_datagram(now, from, data));
    }

    fn transmit(&mut self, now: Timestamp, send: &mut dyn FnMut(SocketAddr, &[u8])) {
        let (m, buf) = (&mut self.m, &mut self.buf);
        server(|| m.poll_transmit(now, buf, |to, d| outside(|| send(to, d))));
    }

    fn timeout(&self) -> Option<Timestamp> {
        server(|| self.m.poll_timeout())
    }

    fn on_timeout(&mut self, now: Timestamp) {
        server(|| self.m.handle_timeout(now));
    }
}

/// Opens one session from every client and runs the network until everything is
/// acknowledged; returns how many messages the server read.
fn establish(net: &mut Hub<Counted, Messages>) -> usize {
    let srv_id = Identity::Ip(net.center_addr);
    net.now = Timestamp::ZERO;
    for (_, c) in net.peers.iter_mut() {
        assert_eq!(
            c.send(net.now, &srv_id, None, b"hello", send_flags::RELIABLE, 0),
            netcore::EResult::Ok
        );
    }
    let end = Timestamp::ZERO + RUN_FOR;
    let mut read = 0;
    while net.now <= end {
        net.run_timers();
        let moved = net.round() > 0;
        for (_, c) in net.peers.iter_mut() {
            while c.poll_event().is_some() {}
        }
        let srv = &mut net.center.m;
        server(|| {
            while let Some(e) = srv.poll_event() {
                match e {
                    Event::SessionRequest(peer) => assert!(srv.accept(&peer)),
                    Event::MessagesWaiting(ch) => read += srv.receive(ch, usize::MAX).len(),
                    Event::SessionFailed { end, .. } => panic!("session failed: {}", end.debug),
                    Event::SessionClosed { end, .. } => panic!("session closed: {}", end.debug),
                    Event::ReceiveBlocked { .. } | Event::Writable(_) => {}
                }
            }
        });
        // Datagrams just delivered may call for an answer at once; otherwise sleep until the
        // next timer (at least a millisecond, so a timer already due cannot spin us).
        let now = net.now;
        net.now = if moved {
            now + Duration::from_micros(100)
        } else {
            net.next_timeout()
                .map_or(end, |t| t.max(now + Duration::from_millis(1)))
        };
        if net.now > end {
            break;
        }
    }
    read
}

/// The server's heap (counted from before it existed) once `n` clients hold idle sessions
/// with it, and once it is empty; checks the invariants of the run and that dropping the
/// server frees exactly what was counted.
fn server_heap_with(n: usize) -> (isize, isize) {
    let srv_addr = SocketAddr::from(([10, 9, 9, 9], 27_015));
    let clients: Vec<(SocketAddr, Messages)> = (0..n)
        .map(|i| {
            let m = Messages::new(Config::default(), EndpointSetup::for_tests(i as u8));
            (addr(i), m)
        })
        .collect();

    let before_server = server_live();
    let srv = server(|| Counted {
        m: Messages::new(Config::default(), EndpointSetup::for_tests(250)),
        buf: Vec::with_capacity(1500),
    });
    let empty = server_live() - before_server;
    let mut net = Hub::new(srv, srv_addr, clients);

    let read = establish(&mut net);
    assert_eq!(read, n, "every client's message reached the server");
    assert_eq!(net.center.m.session_count(), n);
    assert!(
        net.center.m.is_settled(),
        "the server has nothing queued or in flight"
    );
    assert!(
        net.peers.iter().all(|(_, c)| c.is_settled()),
        "every client's message was acknowledged"
    );
    let with_sessions = server_live() - before_server;

    let Hub { center, peers, .. } = net;
    drop(peers);
    server(|| drop(center));
    assert_eq!(
        server_live(),
        before_server,
        "dropping the server frees exactly what was counted as its"
    );
    (empty, with_sessions)
}

#[test]
fn an_idle_session_costs_the_server_little_heap() {
    // The cost of one more session: the difference between two populations, so tables the
    // endpoint allocates once, on its first handshake (the handshake budget's per-source
    // table), count as the fixed cost they are.
    let half = CLIENTS / 2;
    let (empty, with_half) = server_heap_with(half);
    let (_, with_all) = server_heap_with(CLIENTS);
    let per_session = (with_all - with_half) as usize / (CLIENTS - half);
    println!(
        "server heap: empty {empty} B, with {half} idle sessions {with_half} B, with {CLIENTS} \
         {with_all} B: {per_session} B per session"
    );
    println!(
        "inline sizes: Connection {} B (the parts: unit tests connection::size_tests::sizes \
         and messages::tests::a_session_is_small, with --nocapture)",
        std::mem::size_of::<Connection>(),
    );
    assert!(
        std::mem::size_of::<Connection>() <= MAX_CONNECTION_SIZE,
        "Connection grew to {} B",
        std::mem::size_of::<Connection>()
    );
    assert!(
        per_session <= MAX_HEAP_PER_SESSION,
        "an idle session costs the server {per_session} B of heap (ceiling {MAX_HEAP_PER_SESSION})"
    );
}
