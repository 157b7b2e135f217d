//! Where the load goes, and the sockets that carry it. The target must be a
//! loopback address; client sockets may be bound to other 127.0.0.x source
//! addresses so that more than one address's ephemeral ports are available.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The server under test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value: `127.0.0.1:8080`.
    pub host: String,
    /// WebSocket path, `/ws` unless the URL names another.
    pub path: String,
}

impl Target {
    /// Accepts `ws://host:port[/path]`, `http://host:port` or `host:port`;
    /// refuses anything that does not resolve to loopback only.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url.strip_prefix("ws://").or_else(|| url.strip_prefix("http://")).unwrap_or(url);
        if rest.contains("://") {
            bail!("--url {url}: only ws:// (or http://) to a loopback address is supported");
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = match path.split('?').next().unwrap_or("") {
            "" | "/" => "/ws".to_owned(),
            p => p.to_owned(),
        };
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addrs: Vec<SocketAddr> =
            authority.to_socket_addrs().with_context(|| format!("--url {url}: cannot resolve"))?.collect();
        let Some(&addr) = addrs.first() else { bail!("--url {url}: resolves to no address") };
        if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "--url {url}: {} is not a loopback address; this tool only loads 127.0.0.0/8 or ::1",
                bad.ip()
            );
        }
        let host = match addr {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        Ok(Target { addr, host, path })
    }

    /// `ws://127.0.0.1:8080/ws?token=...`
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}{}?token={}", self.host, self.path, token)
    }

    /// The source address for slot `n`: 127.0.0.(n+1) for an IPv4 target
    /// (slots wrap within 127.0.0.1..=127.0.0.254), none for IPv6 (::1 only).
    pub fn source(&self, slot: usize) -> Option<IpAddr> {
        match self.addr {
            SocketAddr::V4(_) => Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, (slot % 254) as u8 + 1))),
            SocketAddr::V6(_) => None,
        }
    }
}

/// Opens a TCP connection to `dst` from `src` (port picked at connect time)
/// and hands it to glommio. Bounded by `timeout`.
pub async fn connect(
    dst: SocketAddr,
    src: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<glommio::net::TcpStream> {
    let socket = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = src {
        if ip.is_ipv4() {
            set_bind_address_no_port(&socket)?;
        }
        socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    match socket.connect(&SockAddr::from(dst)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => wait_connected(&socket, timeout).await?,
        Err(e) => return Err(e),
    }
    if let Some(e) = socket.take_error()? {
        return Err(e);
    }
    // glommio drives its sockets through io_uring, which honours O_NONBLOCK by
    // failing with EAGAIN instead of waiting: hand it a blocking descriptor,
    // as its own `connect` does.
    socket.set_nonblocking(false)?;
    // SAFETY: the descriptor is a connected TCP socket whose ownership moves
    // into the glommio stream here.
    Ok(unsafe { glommio::net::TcpStream::from_raw_fd(socket.into_raw_fd()) })
}

/// Waits for a non-blocking connect to finish. On loopback it almost always
/// has by the first look; otherwise look again with growing pauses.
async fn wait_connected(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_micros(50);
    loop {
        let mut pfd = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout: never blocks.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n > 0 && pfd.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0 {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        glommio::timer::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Lets many sockets bound to one source address share ports across
/// destinations: the port is chosen at connect, not at bind.
fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises this process's open-files limit to its hard limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        let t = Target::parse("ws://127.0.0.1:8080").unwrap();
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/ws");
        assert_eq!(t.ws_url("x"), "ws://127.0.0.1:8080/ws?token=x");
        assert!(Target::parse("127.0.0.9:1/ws").is_ok());
        assert_eq!(Target::parse("ws://[::1]:9000/").unwrap().host, "[::1]:9000");
        assert!(Target::parse("ws://10.0.0.1:8080").is_err());
        assert!(Target::parse("ws://8.8.8.8:80").is_err());
        assert!(Target::parse("wss://127.0.0.1:8080").is_err());
    }

    #[test]
    fn source_slots_stay_in_loopback() {
        let t = Target::parse("127.0.0.1:80").unwrap();
        for slot in 0..600 {
            let ip = t.source(slot).unwrap();
            assert!(ip.is_loopback());
            assert_ne!(ip, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)));
            assert_ne!(ip, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 255)));
        }
    }
}
