//! The limits every HTTP connection lives under (README, Client protocol): each request
//! head, not only the first, completes within 10 s and 8 KiB (else 408 /
//! 431 and close), an idle kept-alive connection is not cut at the head
//! limit, and HTTP connections have a bounded share of their own that never
//! takes a WebSocket client's slot.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

/// How long the head limit may take to show, beyond its 10 s.
const HEAD_LIMIT_BOUND: Duration = Duration::from_secs(20);

/// A kept-alive connection that has already had one answer.
fn kept_alive(port: u16) -> TcpStream {
    let mut conn = HttpConn::open(port);
    assert_eq!(conn.request("GET", "/health", &[], None).status, 200);
    conn.into_stream()
}

/// Everything the server sends until it closes, or until `bound`; `true`
/// with it when the server closed. Meanwhile `trickle` is called about once
/// a second to send a little more.
fn read_until_closed(
    s: &mut TcpStream,
    bound: Duration,
    mut trickle: impl FnMut(&mut TcpStream),
) -> (String, bool) {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let deadline = Instant::now() + bound;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        trickle(s);
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&seen).into_owned(), false)
}

/// Trickles a head's header lines about once a second on `conn` and
/// asserts the server answers 408 and closes, no sooner than 10 s.
fn assert_trickled_head_times_out(mut conn: TcpStream, which: &str) {
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut line = 0;
    let (answer, closed) = read_until_closed(&mut conn, HEAD_LIMIT_BOUND, |c| {
        line += 1;
        // Broken once the server has closed; the read sees that.
        let _ = c.write_all(format!("X-Trickle-{line}: 1\r\n").as_bytes());
    });
    assert!(closed, "{which} head trickled for {HEAD_LIMIT_BOUND:?} kept its connection; got {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "answer to a late {which} head: {answer:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed before the 10 s limit: {:?}",
        started.elapsed()
    );
}

#[test]
fn every_trickled_head_gets_408_and_close() {
    let s = server().start();
    let port = s.port;
    let first = std::thread::spawn(move || {
        assert_trickled_head_times_out(TcpStream::connect(("127.0.0.1", port)).unwrap(), "first")
    });
    assert_trickled_head_times_out(kept_alive(port), "second");
    first.join().expect("the first head's check");
}

#[test]
fn an_oversized_head_gets_431_on_any_request() {
    let s = server().start();
    let big = "a".repeat(100 * 1024);
    let first = http(s.port, "GET", "/health", &[("X-Big", &big)], None);
    assert_eq!(first.status, 431, "first request with a 100 KB head: {first:?}");

    let mut conn = kept_alive(s.port);
    let request = build_request(s.port, "GET", "/health", &[("X-Big", &big)], None, false);
    // The server may close before it has read it all.
    let _ = conn.write_all(request.as_bytes());
    let (answer, closed) = read_until_closed(&mut conn, DEFAULT_DEADLINE, |_| {});
    assert!(answer.starts_with("HTTP/1.1 431"), "second request with a 100 KB head: {answer:?}");
    assert!(closed, "the connection stays open after a 431");
    assert_eq!(s.get("/health").status, 200);
}

#[test]
fn an_idle_kept_alive_connection_outlives_the_head_limit() {
    let s = server().start();
    let mut conn = HttpConn::open(s.port);
    assert_eq!(conn.request("GET", "/health", &[], None).status, 200);
    // Idle past the 10 s a head may take, well short of the 60 s idle limit.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(conn.request("GET", "/health", &[], None).status, 200, "idle connection cut early");
}

#[test]
fn http_connections_have_a_bounded_share_of_their_own() {
    // MAX_CONNECTIONS / 32 is below the floor of 16 HTTP connections.
    let s = server().env("MAX_CONNECTIONS", "64").env("SHARDS", "1").start();
    let mut held: Vec<TcpStream> = (0..16).map(|_| kept_alive(s.port)).collect();

    let refused = http(s.port, "GET", "/health", &[], None);
    assert_eq!(refused.status, 503, "17th HTTP connection: {refused:?}");
    refused.error_message();

    // WebSocket clients have their own slots.
    let (ws, _) = s.connect("u1", "client");
    close(ws);

    // A slot freed is a slot taken again.
    held.pop();
    poll(
        DEFAULT_DEADLINE,
        Duration::from_millis(50),
        || try_http(s.port, "GET", "/health", &[], None).ok(),
        |r| r.as_ref().is_some_and(|r| r.status == 200),
    )
    .unwrap_or_else(|last| panic!("no HTTP slot came free after a client left: {last:?}"));
}
