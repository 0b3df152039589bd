//! Receiving on the application's thread: while that thread is idle it reads the sockets
//! itself, with no hand-off from the driver thread.
//!
//! The application's event loop polls an endpoint's sockets (the binding registers them
//! with libuv) and, when one is readable, calls [`Driver::receive_here`]: the same receive
//! rounds the driver task runs, on the caller's thread, under the same locks; answers (acks)
//! leave from that thread, and events reach the sink in the protocol's order. The caller then
//! delivers them at once, where a datagram read by the task reaches it only after a
//! cross-thread wake-up.
//!
//! The task keeps the timers and stays the reader of last resort. For a socket the caller
//! polls ([`CallerSocket::set_polled`]), the task, woken by a readable socket, leaves it to
//! the caller for [`CALLER_GRACE`](crate::driver::CALLER_GRACE); it then reads what is left only if the caller has not
//! read that socket within the grace (it is busy, or stopped polling), and otherwise looks
//! again after another grace (a datagram may have come after that thread's last read, just
//! before it turned busy). So a busy application thread delays reading by at most two
//! graces, and the task never forgets a readable socket. A datagram is read by one thread only (the kernel hands each to one `recvmmsg`),
//! and both threads process under the state lock, so each is processed once.
//!
//! The task alone reads while fake-network knobs are set (it owns their queues), once the
//! endpoint is closing, and during a receive pause (`Protocol::receive_paused`: a full
//! backlog leaves datagrams in the kernel until the application drains it):
//! [`Driver::receive_here`] then declines, and the caller stops polling until
//! [`Driver::caller_sockets`] allows it again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netcore::time::Timestamp;

use crate::driver::{queue_events, Driver, RecvBufs, State};

/// How long the application's thread leaves reading to the task after a flood's receive
/// batch (`State::note_batch`, by either thread): under a flood, the task decodes while that thread consumes, in
/// parallel. Each such batch the task reads extends it.
pub(crate) const FLOOD_HANDOFF: Duration = Duration::from_millis(5);
use crate::io::Io;
use crate::protocol::Protocol;

/// Per socket: whether the application's thread polls it, and when it last read it.
#[derive(Default)]
pub struct CallerReads {
    polled: AtomicBool,
    /// Microseconds on the endpoint clock, plus one (0: never).
    read_at: AtomicU64,
}

impl CallerReads {
    pub(crate) fn is_polled(&self) -> bool {
        self.polled.load(Ordering::Acquire)
    }

    fn mark_read(&self, now: Timestamp) {
        self.read_at
            .store(now.as_micros().saturating_add(1), Ordering::Release);
    }

    /// Whether the caller read this socket within `within` before `now`.
    pub(crate) fn read_within(&self, now: Timestamp, within: Duration) -> bool {
        match self.read_at.load(Ordering::Acquire) {
            0 => false,
            at => {
                let within = u64::try_from(within.as_micros()).unwrap_or(u64::MAX);
                now.as_micros().saturating_add(1).saturating_sub(at) <= within
            }
        }
    }
}

/// One of an endpoint's sockets, for an application thread that polls it. Holding it keeps
/// the socket open (the driver frees a socket when the last holder lets go), so its
/// descriptor stays valid for the poll until the poll is closed.
pub struct CallerSocket {
    port: usize,
    io: Arc<Io>,
}

impl CallerSocket {
    /// The socket's port number.
    pub fn port(&self) -> usize {
        self.port
    }

    /// The socket's descriptor, for the application's poller.
    #[cfg(unix)]
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.io.socket.as_raw_fd()
    }

    /// The socket's handle, for the application's poller.
    #[cfg(windows)]
    pub fn raw_socket(&self) -> std::os::windows::io::RawSocket {
        use std::os::windows::io::AsRawSocket;
        self.io.socket.as_raw_socket()
    }

    /// Whether `other` is the same socket.
    pub fn is(&self, other: &CallerSocket) -> bool {
        Arc::ptr_eq(&self.io, &other.io)
    }

    /// Tells the driver whether the application's thread polls this socket now: while it
    /// does, the task leaves readable datagrams to it for a grace (see the module docs).
    pub fn set_polled(&self, polled: bool) {
        self.io.caller.polled.store(polled, Ordering::Release);
    }
}

/// Whether the application's thread may read the sockets: not while fake-network knobs are
/// set or the endpoint closes (the task owns those paths), nor during a receive pause or
/// while datagrams from before one wait (the task replays them first, and reads after).
fn caller_may_read<P: Protocol>(st: &State<P>, now: Timestamp) -> bool {
    st.flood_until.is_none_or(|t| now >= t)
        && !st.closing
        && !st.fake_send
        && !st.fake_recv
        && !st.paused
        && st.held.is_empty()
        && !st.proto.receive_paused()
}

impl<P: Protocol> Driver<P> {
    /// Whether the application's thread may read the sockets now (no fake-network knobs, not
    /// closing), and the sockets open.
    pub fn caller_sockets(&self) -> (bool, Vec<CallerSocket>) {
        let may = {
            let st = self.shared.lock();
            caller_may_read(&st, self.shared.now())
        };
        let sockets = self
            .shared
            .ports
            .read()
            .iter()
            .enumerate()
            .filter_map(|(port, io)| {
                io.as_ref().map(|io| CallerSocket {
                    port,
                    io: Arc::clone(io),
                })
            })
            .collect();
        (may, sockets)
    }

    /// Datagrams read on the application's thread so far ([`Driver::receive_here`]).
    pub fn caller_datagrams(&self) -> u64 {
        self.shared.caller_datagrams.load(Ordering::Relaxed)
    }

    /// Reads and processes what waits on `socket` from the caller's thread (see the module
    /// docs): events go to the sink in order (the caller delivers them; the sink's `wake` is
    /// not called). Nothing is sent yet: the caller delivers the events first and then calls
    /// [`Driver::transmit_here`], so the answers the application sends from its event
    /// handlers carry the acknowledgements the datagrams called for (one datagram, not two,
    /// and no send before the application hears of the message). Returns false when the
    /// driver must be the reader (fake-network knobs set, closing, a receive pause, or the
    /// socket no longer the endpoint's): the caller should stop polling it, and poll again
    /// when [`Driver::caller_sockets`] says it may (after the pause, the task's next wake-up).
    /// A pause that starts inside a batch leaves the rest of it held for the task, as the
    /// task's own reads do, so no datagram taken from the kernel is lost or overtaken.
    pub fn receive_here(&self, socket: &CallerSocket) -> bool {
        let sh = &*self.shared;
        let current = sh
            .ports
            .read()
            .get(socket.port)
            .and_then(Option::as_ref)
            .is_some_and(|io| Arc::ptr_eq(io, &socket.io));
        if !current {
            return false;
        }
        let mut bufs_slot = sh.caller_bufs.lock();
        let bufs = bufs_slot.get_or_insert_with(RecvBufs::new);
        let declined = 'round: {
            {
                // Checked before reading: a datagram taken from the kernel is always processed.
                let mut st = sh.lock();
                if !caller_may_read(&st, sh.now()) {
                    if st.proto.receive_paused() {
                        // The lift (the application's read, or the pause's deadline) must
                        // wake the task, which reads from then on.
                        st.paused = true;
                    }
                    break 'round true;
                }
            }
            socket.io.caller.mark_read(sh.now());
            // One batch per poll callback: timers and the application's own work get their
            // turn between batches, and a flood's hands reading to the task (below).
            let Ok(n) = bufs.recv_now(&socket.io) else {
                break 'round false;
            };
            let mut guard = sh.lock();
            let st = &mut *guard;
            let now = sh.now();
            let mut count = 0u64;
            bufs.datagrams(n, |from, d| {
                count += 1;
                if st.proto.receive_paused() {
                    // A backlog filled: the rest of this batch waits with the task, which
                    // handles it when the pause ends, before reading anything new.
                    st.held.push(socket.port, from, d);
                } else {
                    st.proto.handle_datagram(now, socket.port, from, d);
                }
            });
            sh.caller_datagrams.fetch_add(count, Ordering::Relaxed);
            queue_events(st);
            if st.proto.receive_paused() {
                st.paused = true;
                break 'round true;
            }
            if st.note_batch(now, n, bufs.bytes(n)) {
                // A flood: decoding it on the driver thread while this one consumes is
                // faster than doing both here. Hand it over until it has eased.
                break 'round true;
            }
            false
        };
        if declined {
            // The task reads from now on: it must not wait out a grace first.
            sh.wake.notify_one();
        }
        !declined
    }
}
