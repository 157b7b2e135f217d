//! The listening sockets: one per shard on the same address, SO_REUSEPORT so
//! the kernel spreads connections, built with socket2 so the backlog and
//! TCP_NODELAY are ours to choose. Bound on the main thread, so a port we
//! cannot bind (an address not of this host, a port held by a socket without
//! SO_REUSEPORT, or by another user) stops start-up before any executor runs.
//! SO_REUSEPORT would also let another process of the same user share the
//! port unnoticed: unless sharing is asked for (`SHARE_PORT`), a probe bound
//! without it first proves that nobody listens there.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel may hold per shard (capped by somaxconn).
const BACKLOG: i32 = 16_384;
/// How long a listener may outlive the process that held it: an exited
/// process's io_uring releases its files asynchronously, so a restart that
/// follows at once can find the old listener for a few milliseconds.
const PREVIOUS_LISTENER_GONE: Duration = Duration::from_secs(2);

pub fn bind(addr: SocketAddr) -> io::Result<OwnedFd> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux, which
    // saves a syscall per connection.
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Takes the listener `fd` out of the port at once, before its descriptor
/// is closed: the listening socket outlives its close while io_uring still
/// holds it (the executor's pending accept, released asynchronously, even
/// after the process exits), and until then the kernel keeps handing it
/// connections, which die with it. Under `SHARE_PORT` those belong to the
/// process taking the port over. `shutdown` of a listening socket unhashes
/// it from the port's SO_REUSEPORT group synchronously; connections still
/// in its own queue are refused, as its close would.
pub fn stop_listening(fd: RawFd) {
    // SAFETY: shutdown() takes no memory; the caller's `fd` is its
    // listener, still open.
    if unsafe { libc::shutdown(fd, libc::SHUT_RD) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "listener shutdown failed");
    }
}

/// Binds `count` listeners on `addr`; unless `share`, only where no other
/// process listens.
pub fn bind_all(addr: SocketAddr, count: usize, share: bool) -> io::Result<Vec<OwnedFd>> {
    if !share {
        ensure_unused(addr)?;
    }
    (0..count).map(|_| bind(addr)).collect()
}

/// A socket without SO_REUSEPORT cannot bind where anyone listens, whatever
/// options the listener set. It is closed before our listeners bind. A port
/// still held after [`PREVIOUS_LISTENER_GONE`] is another process's.
fn ensure_unused(addr: SocketAddr) -> io::Result<()> {
    let give_up = Instant::now() + PREVIOUS_LISTENER_GONE;
    loop {
        match probe(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < give_up => {
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "the port is in use by another process (set SHARE_PORT=true to share it deliberately)",
                ))
            }
            other => return other,
        }
    }
}

fn probe(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets the probe bind over connections of an earlier process in TIME_WAIT.
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}
