//! The sockets: opening them, and sending queued datagrams in as few system calls as the
//! kernel allows (UDP GSO through quinn-udp).

use std::io;
use std::net::SocketAddr;

use quinn_udp::{Transmit, UdpSocketState};

/// Kernel socket buffer asked for in each direction.
const SOCKET_BUFFER: usize = 4 << 20;
/// Most spare datagram buffers kept for reuse (a burst beyond it allocates, then frees).
pub const MAX_SPARE_BUFFERS: usize = 1024;

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

/// A datagram on its way to the kernel: which socket it leaves from, where to, the bytes.
pub struct Outgoing {
    /// The socket (port index).
    pub port: usize,
    /// The destination.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Datagrams on their way to the kernel, in the order the protocol produced them, and the
/// buffers reused for them.
pub struct Tx {
    /// Queued datagrams.
    pub outgoing: Vec<Outgoing>,
    /// Buffers of datagrams already sent, reused: no allocation per datagram at steady state.
    pub spare: Vec<Vec<u8>>,
    /// Where the protocol writes one datagram.
    pub scratch: Vec<u8>,
    /// Consecutive same-size datagrams to one peer, concatenated for one GSO send.
    gso: Vec<u8>,
}

impl Tx {
    /// An empty queue.
    pub fn new() -> Self {
        Tx {
            outgoing: Vec::new(),
            spare: Vec::new(),
            scratch: Vec::with_capacity(1500),
            gso: Vec::new(),
        }
    }

    /// Queues a copy of `d` (in a reused buffer when one is spare).
    pub fn push(&mut self, port: usize, to: SocketAddr, d: &[u8]) {
        let mut data = self.spare.pop().unwrap_or_default();
        data.extend_from_slice(d);
        self.outgoing.push(Outgoing { port, to, data });
    }

    /// Queues an owned datagram.
    pub fn push_owned(&mut self, port: usize, to: SocketAddr, data: Vec<u8>) {
        self.outgoing.push(Outgoing { port, to, data });
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
        let Tx {
            outgoing,
            spare,
            gso,
            ..
        } = self;
        let mut i = 0;
        let mut blocked = false;
        'all: while i < outgoing.len() {
            let Some(first) = outgoing.get(i) else {
                break;
            };
            let (port, to, seg) = (first.port, first.to, first.data.len());
            let Some(io) = port_io(port) else {
                i += 1;
                continue;
            };
            // Consecutive datagrams to one peer from one socket, of one size (the last may
            // be shorter), leave in one system call with UDP GSO where the kernel offers it
            // (quinn-udp reports 1 otherwise).
            let max_segments = io.udp.max_gso_segments().max(1);
            let mut j = i + 1;
            while j < outgoing.len() && j - i < max_segments {
                let (Some(next), Some(prev)) = (outgoing.get(j), outgoing.get(j - 1)) else {
                    break;
                };
                let prev_full = prev.data.len() == seg;
                if next.port != port
                    || next.to != to
                    || next.data.len() > seg
                    || !prev_full
                    || seg == 0
                {
                    break;
                }
                j += 1;
            }
            if j - i > 1 {
                gso.clear();
                for o in &outgoing[i..j] {
                    gso.extend_from_slice(&o.data);
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
                if let Some(o) = outgoing.get(i) {
                    if send_now(io, o.to, &o.data, None) == Sent::Blocked {
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
        for o in outgoing.drain(..done) {
            if spare.len() < MAX_SPARE_BUFFERS {
                let mut buf = o.data;
                buf.clear();
                spare.push(buf);
            }
        }
        outgoing.is_empty()
    }

    /// The ports that still have datagrams waiting (after a blocked flush).
    pub fn waiting_ports(&self) -> impl Iterator<Item = usize> + '_ {
        self.outgoing.iter().map(|o| o.port)
    }
}

impl Default for Tx {
    fn default() -> Self {
        Tx::new()
    }
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
