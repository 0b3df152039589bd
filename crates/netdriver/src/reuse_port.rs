//! Several driver threads on one UDP port: a group of `SO_REUSEPORT` sockets, one per
//! thread, with a classic BPF program that tells the kernel which socket of the group each
//! datagram goes to.
//!
//! The kernel's own choice (a hash of the 4-tuple with a per-boot secret) cannot be computed
//! here, and every shard must know which peers are its own before they send: a session we
//! open to an address must live on the shard that will receive that address's replies. So
//! the group routes by a function of the source address both sides can compute,
//! [`shard_of`]: (source port XOR the low 16 bits of the source IP) modulo the number of
//! shards. Every session with a peer address, whichever side opened it, lives on that
//! address's shard.
//!
//! Linux only (`SO_ATTACH_REUSEPORT_CBPF`, 4.5 and later); elsewhere opening a group fails
//! with `Unsupported`.

use std::io;
use std::net::{IpAddr, SocketAddr};

/// Most driver threads one endpoint may run.
pub const MAX_SHARDS: usize = 16;

/// Which of `shards` sockets the kernel hands a datagram from `from` to (the routing
/// program's function, computed here so a shard can tell which peers are its own).
pub fn shard_of(from: SocketAddr, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    // A dual-stack socket sees IPv4 peers as mapped addresses; their packets are IPv4.
    let ip = match from.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let low = match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            u16::from_be_bytes([o[2], o[3]])
        }
        IpAddr::V6(a) => a.segments()[7],
    };
    usize::from(from.port() ^ low) % shards
}

#[cfg(target_os = "linux")]
mod program {
    //! The routing program, in classic BPF. Reuse-port programs run with the packet's data
    //! at the UDP payload; the IP header is reached through the kernel's `SKF_NET_OFF` base.

    const LD: u16 = 0x00;
    const LDX: u16 = 0x01;
    const ST: u16 = 0x02;
    const ALU: u16 = 0x04;
    const JMP: u16 = 0x05;
    const RET: u16 = 0x06;
    const W: u16 = 0x00;
    const H: u16 = 0x08;
    const B: u16 = 0x10;
    const ABS: u16 = 0x20;
    const IND: u16 = 0x40;
    const MEM: u16 = 0x60;
    const MSH: u16 = 0xa0;
    const RSH: u16 = 0x70;
    const XOR: u16 = 0xa0;
    const MOD: u16 = 0x90;
    const JA: u16 = 0x00;
    const JEQ: u16 = 0x10;
    const K: u16 = 0x00;
    const X: u16 = 0x08;
    const A: u16 = 0x10;
    /// Loads relative to the network (IP) header.
    const NET: u32 = 0xfff0_0000;

    fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    /// The program for a group of `shards` sockets (the order they joined the group).
    pub(super) fn routing(shards: u32) -> Vec<libc::sock_filter> {
        vec![
            // 0: A = IP version.
            op(LD | B | ABS, 0, 0, NET),
            op(ALU | RSH | K, 0, 0, 4),
            // 2: IPv6 at 8, IPv4 falls through.
            op(JMP | JEQ | K, 5, 0, 6),
            // 3: IPv4: X = header length, M[0] = source port, A = low half of the source.
            op(LDX | B | MSH, 0, 0, NET),
            op(LD | H | IND, 0, 0, NET),
            op(ST, 0, 0, 0),
            op(LD | H | ABS, 0, 0, NET + 14),
            op(JMP | JA, 0, 0, 3),
            // 8: IPv6 (no extension headers before UDP): the same from the fixed header.
            op(LD | H | ABS, 0, 0, NET + 40),
            op(ST, 0, 0, 0),
            op(LD | H | ABS, 0, 0, NET + 22),
            // 11: index = (port ^ low) % shards.
            op(LDX | W | MEM, 0, 0, 0),
            op(ALU | XOR | X, 0, 0, 0),
            op(ALU | MOD | K, 0, 0, shards),
            op(RET | A, 0, 0, 0),
        ]
    }
}

/// Lets `sock` join a reuse-port group (before it binds).
pub fn allow_reuse(sock: &socket2::Socket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        sock.set_reuse_port(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        Err(unsupported())
    }
}

/// Installs the routing program on a group of `shards` sockets (any member; it applies to
/// the group), so datagrams go to the socket [`shard_of`] names.
pub fn attach_routing(sock: &std::net::UdpSocket, shards: usize) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let n = u32::try_from(shards.clamp(1, MAX_SHARDS)).unwrap_or(1);
        let mut code = program::routing(n);
        let prog = libc::sock_fprog {
            len: u16::try_from(code.len()).unwrap_or(u16::MAX),
            filter: code.as_mut_ptr(),
        };
        // SAFETY: `sock` is an open socket; `prog` points at `code`, alive for the call, and
        // its size is passed; the kernel copies the program.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_REUSEPORT_CBPF,
                std::ptr::from_ref(&prog).cast(),
                u32::try_from(std::mem::size_of::<libc::sock_fprog>()).unwrap_or(0),
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (sock, shards);
        Err(unsupported())
    }
}

#[cfg(not(target_os = "linux"))]
fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "several driver threads on one port need Linux (SO_REUSEPORT with a routing program)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_takes_everything() {
        assert_eq!(shard_of("10.1.2.3:4000".parse().unwrap(), 1), 0);
    }

    #[test]
    fn mapped_v4_routes_as_v4() {
        let v4: SocketAddr = "192.168.7.9:50000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.168.7.9]:50000".parse().unwrap();
        for n in 2..=MAX_SHARDS {
            assert_eq!(shard_of(v4, n), shard_of(mapped, n));
        }
    }

    #[test]
    fn consecutive_ports_spread_evenly() {
        let mut counts = [0usize; 4];
        for port in 40_000..40_400u16 {
            counts[shard_of(SocketAddr::from(([127, 0, 0, 1], port)), 4)] += 1;
        }
        assert_eq!(counts, [100; 4]);
    }
}
