//! What the driver task waits on for a socket: a registration with its runtime's reactor
//! that the task holds only while it reads the socket itself.
//!
//! While the application's thread reads a socket (`caller_receive.rs`), a registration
//! would wake the driver thread's reactor for every datagram that arrives, only for it to
//! find nothing to do: on two cores, a context switch per datagram beside the thread doing
//! the work, which showed in the ping-pong's tail. So on Unix the socket itself is not
//! registered; the task registers a duplicate of its descriptor (one open socket, so the
//! same readiness) while it waits to read, and drops it (deregistering) while the
//! application's thread has the reading. Elsewhere the socket stays registered throughout,
//! as tokio's `UdpSocket`, and dropping a [`Watch`] changes nothing.

use std::io;
use std::task::{Context, Poll};

use crate::io::Io;

/// The socket type [`Io`] holds: a plain socket on Unix (registered only through a
/// [`Watch`]), tokio's elsewhere.
#[cfg(unix)]
pub type IoSocket = std::net::UdpSocket;
/// The socket type [`Io`] holds: a plain socket on Unix (registered only through a
/// [`Watch`]), tokio's elsewhere.
#[cfg(not(unix))]
pub type IoSocket = tokio::net::UdpSocket;

/// Makes the [`Io`] socket from a bound one, inside the runtime of the driver thread that
/// will serve it.
pub fn adopt(sock: std::net::UdpSocket) -> io::Result<IoSocket> {
    #[cfg(unix)]
    {
        Ok(sock)
    }
    #[cfg(not(unix))]
    {
        tokio::net::UdpSocket::from_std(sock)
    }
}

/// The task's interest in a socket's readability, while it holds one.
pub struct Watch {
    #[cfg(unix)]
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Watch {
    /// Registers `io`'s socket with the current runtime (must run on the driver task).
    pub fn new(io: &Io) -> io::Result<Self> {
        #[cfg(unix)]
        {
            Ok(Watch {
                fd: register(io, tokio::io::Interest::READABLE)?,
            })
        }
        #[cfg(not(unix))]
        {
            let _ = io;
            Ok(Watch {})
        }
    }

    /// Ready once the socket is readable (or reports an error, which the read then sees).
    pub fn poll_readable(&self, io: &Io, cx: &mut Context<'_>) -> Poll<()> {
        #[cfg(unix)]
        {
            let _ = io;
            self.fd.poll_read_ready(cx).map(|_| ())
        }
        #[cfg(not(unix))]
        {
            io.socket.poll_recv_ready(cx).map(|_| ())
        }
    }

    /// Runs a read of `io`'s socket; a `WouldBlock` from it forgets the readiness, so the
    /// next [`Watch::poll_readable`] waits for the kernel.
    pub fn try_read<R>(&self, io: &Io, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        #[cfg(unix)]
        {
            let _ = io;
            self.fd.try_io(tokio::io::Interest::READABLE, |_| f())
        }
        #[cfg(not(unix))]
        {
            io.socket.try_io(tokio::io::Interest::READABLE, f)
        }
    }
}

/// A duplicate of `io`'s descriptor registered with the current runtime for `interest`.
#[cfg(unix)]
fn register(
    io: &Io,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use std::os::fd::AsFd;
    let dup = io.socket.as_fd().try_clone_to_owned()?;
    // SAFETY: an `OwnedFd` stays open, and names the same descriptor, until it is dropped,
    // which is when the `AsyncFd` that owns it is.
    let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(dup, interest) }?;
    Ok(fd)
}

/// Waits until `io`'s socket has room to send (must run on the driver task).
pub async fn writable(io: &Io) -> io::Result<()> {
    #[cfg(unix)]
    {
        // Only while a kernel buffer is full: a registration for the wait, then none.
        let fd = register(io, tokio::io::Interest::WRITABLE)?;
        let _ = fd.writable().await?;
        Ok(())
    }
    #[cfg(not(unix))]
    {
        io.socket.writable().await
    }
}

/// A send found the kernel buffer full: forget any writability seen, so the next
/// [`writable`] really waits (a fresh registration on Unix needs nothing).
pub fn forget_writable(io: &Io) {
    #[cfg(unix)]
    {
        let _ = io;
    }
    #[cfg(not(unix))]
    {
        let _ = io.socket.try_io(tokio::io::Interest::WRITABLE, || {
            Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
        });
    }
}
