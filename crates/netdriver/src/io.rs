//! The sockets: opening them, and sending queued datagrams in as few system calls as the
//! kernel allows (UDP GSO through quinn-udp).

use std::io;
use std::net::SocketAddr;

use quinn_udp::{Transmit, UdpSocketState};

/// Kernel socket buffer asked for in each direction.
const SOCKET_BUFFER: usize = 4 << 20;

/// One bound UDP socket, shared by the driver task and callers sending on their own thread.
pub struct Io {
    /// The socket (registered with the driver's reactor only through a
    /// [`crate::readiness::Watch`] on Unix).
    pub socket: crate::readiness::IoSocket,
    /// quinn-udp's state for it (GSO/GRO capabilities, batched system calls).
    pub udp: UdpSocketState,
    /// The address actually bound.
    pub local: SocketAddr,
    /// Whether the application's thread reads this socket, and when it last did
    /// (`caller_receive.rs`).
    pub caller: crate::caller_receive::CallerReads,
}

/// A UDP socket bound to `addr`, non-blocking, with large kernel buffers. `[::]` serves IPv4
/// peers too where the OS allows it. `reuse`: it joins a reuse-port group
/// (`reuse_port.rs`).
pub fn open_socket(addr: SocketAddr, reuse: bool) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        let _ = sock.set_only_v6(false);
    }
    sock.set_nonblocking(true)?;
    // Room for bursts: a receiver briefly off the CPU (or a sender's GSO burst) would
    // otherwise overflow the default ~200 KiB. The OS caps these at its own maximum
    // (net.core.rmem_max / wmem_max); a refusal leaves the default, which still works.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    if reuse {
        crate::reuse_port::allow_reuse(&sock)?;
    }
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// Whether this OS lets an IPv6 socket bound to `[::]` serve IPv4 peers too (checked once):
/// the default bind is dual-stack only where it is.
pub fn dual_stack_available() -> bool {
    use socket2::{Domain, Protocol, Socket, Type};
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
            .and_then(|s| s.set_only_v6(false))
            .is_ok()
    })
}

/// Most bytes of queued datagrams whose buffer is kept once the queue empties (a burst
/// beyond it allocates, then frees): about a thousand full-size datagrams.
pub const MAX_RETAINED_BYTES: usize = 2 << 20;

/// Where one queued datagram goes; its bytes follow the previous one's in [`Tx`]'s buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Queued {
    /// The socket (port index).
    port: usize,
    /// The destination.
    to: SocketAddr,
    /// How many bytes.
    len: usize,
}

/// Datagrams on their way to the kernel, in the order the protocol produced them.
///
/// Their bytes sit end to end in one buffer, so a run of same-size datagrams to one peer
/// goes to the kernel as one slice with UDP GSO: one copy per datagram (from the
/// protocol's scratch buffer) and no allocation per datagram.
pub struct Tx {
    /// Queued datagrams, oldest first.
    queued: Vec<Queued>,
    /// Their bytes, end to end.
    bytes: Vec<u8>,
    /// Where the protocol writes one datagram.
    pub scratch: Vec<u8>,
}

impl Tx {
    /// An empty queue.
    pub fn new() -> Self {
        Tx {
            queued: Vec::new(),
            bytes: Vec::new(),
            scratch: Vec::with_capacity(1500),
        }
    }

    /// Queues a copy of `d`.
    pub fn push(&mut self, port: usize, to: SocketAddr, d: &[u8]) {
        self.bytes.extend_from_slice(d);
        self.queued.push(Queued {
            port,
            to,
            len: d.len(),
        });
    }

    /// Sends queued datagrams without waiting, through `port_io(port)`. Returns false if the
    /// kernel buffer filled: the rest stays queued, in order, for the driver task (unless
    /// `drop_rest`, then it is dropped). A datagram the kernel refuses for another reason,
    /// or whose socket is gone, is dropped: UDP promises no delivery, and the transport's
    /// retransmission (not this loop) recovers it.
    pub fn flush<'a>(
        &mut self,
        port_io: impl Fn(usize) -> Option<&'a Io>,
        drop_rest: bool,
    ) -> bool {
        self.flush_with(
            // quinn-udp reports 1 where the kernel has no GSO.
            |port| port_io(port).map(|io| io.udp.max_gso_segments()),
            |port, to, contents, segment_size| match port_io(port) {
                Some(io) => send_now(io, to, contents, segment_size),
                None => Sent::Refused,
            },
            drop_rest,
        )
    }

    /// [`Tx::flush`] with the sockets abstracted: `max_segments(port)` is how many
    /// datagrams one GSO send may carry (`None`: the socket is gone), `send` makes one
    /// system call (`segment_size` set for a GSO run).
    fn flush_with(
        &mut self,
        max_segments: impl Fn(usize) -> Option<usize>,
        mut send: impl FnMut(usize, SocketAddr, &[u8], Option<usize>) -> Sent,
        drop_rest: bool,
    ) -> bool {
        let Tx { queued, bytes, .. } = self;
        // Datagrams before `i` (bytes before `off`) are done with: sent, refused or gone.
        let mut i = 0;
        let mut off = 0;
        let mut blocked = false;
        'all: while let Some(&Queued { port, to, len: seg }) = queued.get(i) {
            let Some(max) = max_segments(port) else {
                off += seg;
                i += 1;
                continue;
            };
            // Consecutive datagrams to one peer from one socket, of one size (the last may
            // be shorter), leave in one system call.
            let mut j = i + 1;
            let mut end = off + seg;
            while j - i < max.max(1) {
                let Some(next) = queued.get(j) else { break };
                let prev_full = queued.get(j - 1).is_some_and(|p| p.len == seg);
                if next.port != port || next.to != to || next.len > seg || !prev_full || seg == 0 {
                    break;
                }
                end += next.len;
                j += 1;
            }
            if j - i > 1 {
                if let Some(run) = bytes.get(off..end) {
                    match send(port, to, run, Some(seg)) {
                        Sent::Yes => {
                            (i, off) = (j, end);
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
            }
            while i < j {
                let Some(&Queued { to, len, .. }) = queued.get(i) else {
                    break;
                };
                if let Some(d) = bytes.get(off..off + len) {
                    if send(port, to, d, None) == Sent::Blocked {
                        blocked = true;
                        break 'all;
                    }
                }
                (i, off) = (i + 1, off + len);
            }
        }
        if blocked && !drop_rest {
            queued.drain(..i);
            bytes.drain(..off);
        } else {
            queued.clear();
            bytes.clear();
        }
        if queued.is_empty() && bytes.capacity() > MAX_RETAINED_BYTES {
            bytes.shrink_to(MAX_RETAINED_BYTES);
            queued.shrink_to(MAX_RETAINED_BYTES / 1024);
        }
        queued.is_empty()
    }

    /// The ports that still have datagrams waiting (after a blocked flush).
    pub fn waiting_ports(&self) -> impl Iterator<Item = usize> + '_ {
        self.queued.iter().map(|q| q.port)
    }
}

impl Default for Tx {
    fn default() -> Self {
        Tx::new()
    }
}

/// What became of one transmit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Yes,
    /// The kernel buffer is full: try again when the socket is writable.
    Blocked,
    /// Refused for another reason.
    Refused,
}

/// One non-blocking send; a full kernel buffer clears the socket's writable readiness, so
/// the task's next `writable().await` really waits for the kernel.
fn send_now(io: &Io, to: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> Sent {
    // The core names IPv4 peers by IPv4 address; a dual-stack (IPv6) socket reaches them at
    // the mapped address.
    let to = match to {
        SocketAddr::V4(v4) if io.local.is_ipv6() => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        other => other,
    };
    let transmit = Transmit {
        destination: to,
        ecn: None,
        contents,
        segment_size,
        src_ip: None,
    };
    // Straight to the kernel, whatever writability the task's reactor has seen: a socket
    // bound while the reactor could not run (the I/O thread busy) has none recorded yet, and
    // `try_io` would refuse without trying, sending the caller's datagram to the task.
    match io.udp.try_send((&io.socket).into(), &transmit) {
        Ok(()) => Sent::Yes,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            // Forget the writable readiness, so the task's next wait really waits for the
            // kernel.
            crate::readiness::forget_writable(io);
            Sent::Blocked
        }
        Err(_) => Sent::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One system call as the fake kernel saw it.
    #[derive(Debug, PartialEq, Eq)]
    struct Call {
        port: usize,
        to: SocketAddr,
        bytes: Vec<u8>,
        segment_size: Option<usize>,
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// `len` bytes, all `tag`: each datagram's bytes tell it apart.
    fn dgram(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    /// Flushes through a fake kernel that answers each call with the next of `answers`
    /// (then `Yes`); returns the calls and what `flush_with` returned.
    fn flush_fake(
        tx: &mut Tx,
        max: usize,
        gone: &[usize],
        answers: &[Sent],
        drop_rest: bool,
    ) -> (Vec<Call>, bool) {
        let mut calls = Vec::new();
        let mut answers = answers.iter().copied();
        let empty = tx.flush_with(
            |p| (!gone.contains(&p)).then_some(max),
            |port, to, bytes, segment_size| {
                calls.push(Call {
                    port,
                    to,
                    bytes: bytes.to_vec(),
                    segment_size,
                });
                answers.next().unwrap_or(Sent::Yes)
            },
            drop_rest,
        );
        (calls, empty)
    }

    fn call(port: usize, to: SocketAddr, parts: &[Vec<u8>], seg: Option<usize>) -> Call {
        Call {
            port,
            to,
            bytes: parts.concat(),
            segment_size: seg,
        }
    }

    #[test]
    fn same_size_runs_to_one_peer_leave_as_one_slice() {
        let (a, b) = (addr(1000), addr(2000));
        let mut tx = Tx::new();
        let d: Vec<Vec<u8>> = (0..6u8)
            .map(|t| dgram(t, if t == 3 { 60 } else { 100 }))
            .collect();
        // Three full and a shorter last to `a`, one to `b`, one to `a` from another port.
        for x in &d[0..4] {
            tx.push(0, a, x);
        }
        tx.push(0, b, &d[4]);
        tx.push(1, a, &d[5]);
        let (calls, empty) = flush_fake(&mut tx, 64, &[], &[], false);
        assert!(empty);
        assert_eq!(
            calls,
            vec![
                call(0, a, &d[0..4], Some(100)),
                call(0, b, &d[4..5], None),
                call(1, a, &d[5..6], None),
            ]
        );
        assert_eq!(tx.waiting_ports().count(), 0);
    }

    #[test]
    fn a_run_is_cut_at_the_segment_limit_and_after_a_short_datagram() {
        let a = addr(1000);
        let mut tx = Tx::new();
        let d = [
            dgram(0, 50),
            dgram(1, 50),
            dgram(2, 50),
            dgram(3, 40),
            dgram(4, 40),
        ];
        for x in &d {
            tx.push(0, a, x);
        }
        let (calls, _) = flush_fake(&mut tx, 2, &[], &[], false);
        assert_eq!(
            calls,
            vec![
                call(0, a, &d[0..2], Some(50)),
                // A short datagram ends its run: 40 after 50 closes it.
                call(0, a, &d[2..4], Some(50)),
                call(0, a, &d[4..5], None),
            ]
        );
    }

    #[test]
    fn a_full_kernel_buffer_keeps_the_rest_in_order() {
        let (a, b) = (addr(1000), addr(2000));
        let mut tx = Tx::new();
        let d: Vec<Vec<u8>> = (0..5u8).map(|t| dgram(t, 30 + usize::from(t))).collect();
        for (t, x) in d.iter().enumerate() {
            tx.push(0, if t % 2 == 0 { a } else { b }, x);
        }
        // The first goes; the second finds the buffer full.
        let (calls, empty) = flush_fake(&mut tx, 64, &[], &[Sent::Yes, Sent::Blocked], false);
        assert!(!empty);
        assert_eq!(calls.len(), 2);
        assert_eq!(tx.waiting_ports().count(), 4);
        // Datagrams queued after the block go after the waiting ones.
        tx.push(0, a, &dgram(9, 10));
        let (calls, empty) = flush_fake(&mut tx, 64, &[], &[], false);
        assert!(empty);
        assert_eq!(
            calls,
            vec![
                call(0, b, &d[1..2], None),
                call(0, a, &d[2..3], None),
                call(0, b, &d[3..4], None),
                // The new one is shorter: it ends the last waiting one's run.
                call(0, a, &[d[4].clone(), dgram(9, 10)], Some(34)),
            ]
        );
    }

    #[test]
    fn a_blocked_run_is_kept_whole_unless_the_rest_is_dropped() {
        let a = addr(1000);
        let d = [dgram(0, 20), dgram(1, 20), dgram(2, 20)];
        let mut tx = Tx::new();
        for x in &d {
            tx.push(0, a, x);
        }
        let (_, empty) = flush_fake(&mut tx, 64, &[], &[Sent::Blocked], false);
        assert!(!empty);
        let (calls, _) = flush_fake(&mut tx, 64, &[], &[], false);
        assert_eq!(calls, vec![call(0, a, &d, Some(20))]);

        for x in &d {
            tx.push(0, a, x);
        }
        let (_, empty) = flush_fake(&mut tx, 64, &[], &[Sent::Blocked], true);
        assert!(empty);
        assert_eq!(tx.waiting_ports().count(), 0);
    }

    #[test]
    fn a_refused_run_is_tried_one_by_one_and_a_gone_socket_skipped() {
        let a = addr(1000);
        let d = [dgram(0, 20), dgram(1, 20), dgram(2, 20), dgram(3, 20)];
        let mut tx = Tx::new();
        tx.push(0, a, &d[0]);
        tx.push(0, a, &d[1]);
        // Port 1 is gone: its datagram is dropped, and the bytes after it stay aligned.
        tx.push(1, a, &d[2]);
        tx.push(0, a, &d[3]);
        let (calls, empty) = flush_fake(&mut tx, 64, &[1], &[Sent::Refused], false);
        assert!(empty);
        assert_eq!(
            calls,
            vec![
                call(0, a, &d[0..2], Some(20)),
                call(0, a, &d[0..1], None),
                call(0, a, &d[1..2], None),
                call(0, a, &d[3..4], None),
            ]
        );
    }

    #[test]
    fn a_burst_does_not_keep_its_memory() {
        let a = addr(1000);
        let mut tx = Tx::new();
        let d = dgram(7, 1200);
        for _ in 0..4000 {
            tx.push(0, a, &d);
        }
        assert!(tx.bytes.capacity() > MAX_RETAINED_BYTES);
        let (calls, empty) = flush_fake(&mut tx, 64, &[], &[], false);
        assert!(empty);
        assert_eq!(
            calls.iter().map(|c| c.bytes.len()).sum::<usize>(),
            4000 * 1200
        );
        assert!(tx.bytes.capacity() <= MAX_RETAINED_BYTES);
    }
}
