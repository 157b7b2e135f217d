//! The listening sockets: one per shard on the same address, SO_REUSEPORT so
//! the kernel spreads connections, built with socket2 so the backlog and
//! TCP_NODELAY are ours to choose. Bound on the main thread, so a port we
//! cannot bind (an address not of this host, a port held by a socket without
//! SO_REUSEPORT, or by another user) stops start-up before any executor runs.
//! Another process of the same user listening with SO_REUSEPORT on the same
//! port is not detected: the kernel lets it share the port.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel may hold per shard (capped by somaxconn).
const BACKLOG: i32 = 16_384;

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

/// Binds `count` listeners on `addr`.
pub fn bind_all(addr: SocketAddr, count: usize) -> io::Result<Vec<OwnedFd>> {
    (0..count).map(|_| bind(addr)).collect()
}
