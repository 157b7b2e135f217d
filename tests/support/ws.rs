//! A WebSocket client (sync tungstenite over a std `TcpStream`) with reads
//! bounded by deadlines: connecting, refused handshakes, and the next event,
//! JSON message or close.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{Request, Response as WsResponse};
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use super::DEFAULT_DEADLINE;

pub type Ws = WebSocket<TcpStream>;

/// How long a single blocking read waits before the deadline is re-checked.
pub(super) const POLL_READ: Duration = Duration::from_millis(200);

/// Connect with a URL (`ws://127.0.0.1:PORT/ws?...`).
pub fn ws_connect(url: &str) -> Result<Ws, tungstenite::Error> {
    ws_connect_with(url, &[]).map(|(ws, _)| ws)
}

/// Connect with extra request headers; returns the socket and the 101 response.
/// A rejected handshake is `Err(tungstenite::Error::Http(response))`.
pub fn ws_connect_with(url: &str, headers: &[(&str, &str)]) -> Result<(Ws, WsResponse), tungstenite::Error> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    let host = req.uri().authority().expect("url with authority").as_str().to_string();
    let stream = TcpStream::connect(host.as_str()).map_err(tungstenite::Error::Io)?;
    handshake(req, stream)
}

/// A WebSocket client over an already connected stream (e.g. one made with
/// socket2 to set buffer sizes); `url` gives the path and host.
pub fn ws_connect_over(url: &str, stream: TcpStream) -> Result<Ws, tungstenite::Error> {
    handshake(url.into_client_request()?, stream).map(|(ws, _)| ws)
}

/// The handshake is bounded by the default deadline; afterwards reads wake
/// every [`POLL_READ`] so that the readers below can honour their deadlines.
fn handshake(req: Request, stream: TcpStream) -> Result<(Ws, WsResponse), tungstenite::Error> {
    stream.set_nodelay(true).map_err(tungstenite::Error::Io)?;
    stream.set_read_timeout(Some(DEFAULT_DEADLINE)).map_err(tungstenite::Error::Io)?;
    stream.set_write_timeout(Some(DEFAULT_DEADLINE)).map_err(tungstenite::Error::Io)?;
    match tungstenite::client::client(req, stream) {
        Ok((ws, resp)) => {
            ws.get_ref().set_read_timeout(Some(POLL_READ)).map_err(tungstenite::Error::Io)?;
            Ok((ws, resp))
        }
        Err(HandshakeError::Failure(e)) => Err(e),
        Err(HandshakeError::Interrupted(_)) => {
            Err(tungstenite::Error::Io(std::io::Error::new(ErrorKind::TimedOut, "handshake timed out")))
        }
    }
}

/// A TCP connection to `127.0.0.1:port` from the local address `from`
/// (port 0), with an optional receive buffer size set before connecting.
pub fn tcp_from(from: &str, port: u16, recv_buffer: Option<usize>) -> TcpStream {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let local: std::net::SocketAddr = format!("{from}:0").parse().expect("local address");
    socket.bind(&SockAddr::from(local)).unwrap_or_else(|e| panic!("bind {local}: {e}"));
    let remote: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("remote address");
    socket.connect_timeout(&SockAddr::from(remote), Duration::from_secs(5)).expect("connect");
    socket.into()
}

/// Expect the handshake to be refused; returns (status, body).
pub fn ws_reject(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match ws_connect_with(url, headers) {
        Ok((_, resp)) => {
            panic!("handshake to {url} with {headers:?} unexpectedly succeeded ({})", resp.status())
        }
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body =
                resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            (status, body)
        }
        Err(e) => panic!("handshake to {url} failed without an HTTP answer: {e}"),
    }
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::WouldBlock || io.kind() == ErrorKind::TimedOut)
}

/// What a read produced, for the bounded readers below.
#[derive(Debug)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Pong,
    /// A close frame with its code (`None`: a close frame without a code).
    Close(Option<u16>),
    /// The connection ended without a close frame (EOF / reset).
    Eof(String),
}

/// The next event within `timeout`, or `None` if nothing came.
pub fn next_event(ws: &mut Ws, timeout: Duration) -> Option<Event> {
    let deadline = Instant::now() + timeout;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(Event::Text(t.as_str().to_string())),
            Ok(Message::Binary(b)) => return Some(Event::Binary(b.to_vec())),
            Ok(Message::Ping(_)) => {
                // the pong is queued by tungstenite; push it out now
                let _ = ws.flush();
                return Some(Event::Ping);
            }
            Ok(Message::Pong(_)) => return Some(Event::Pong),
            Ok(Message::Close(f)) => {
                let _ = ws.flush();
                return Some(Event::Close(f.map(|f| u16::from(f.code))));
            }
            Ok(Message::Frame(_)) => continue,
            Err(e) if is_timeout(&e) => {
                if Instant::now() >= deadline {
                    return None;
                }
            }
            Err(e) => return Some(Event::Eof(e.to_string())),
        }
    }
}

/// The next text message parsed as JSON, skipping pings/pongs; panics on
/// timeout, close, or anything else.
pub fn next_json(ws: &mut Ws, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(ws, left) {
            Some(Event::Text(t)) => {
                return serde_json::from_str(&t)
                    .unwrap_or_else(|e| panic!("text frame is not JSON ({e}): {t:?}"))
            }
            Some(Event::Ping) | Some(Event::Pong) => continue,
            Some(other) => panic!("expected a JSON text message, got {other:?}"),
            None => panic!("no message within {timeout:?}"),
        }
    }
}

/// Read until the connection closes (skipping anything else); returns the
/// close code (`Some(code)`), `None` for a close frame without code or a
/// plain EOF. Panics if nothing closes within `timeout`.
pub fn expect_close(ws: &mut Ws, timeout: Duration) -> Event {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(ws, left) {
            Some(ev @ Event::Close(_)) | Some(ev @ Event::Eof(_)) => return ev,
            Some(_) => continue,
            None => panic!("connection not closed within {timeout:?}"),
        }
    }
}

pub fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send text");
}

pub fn send_json(ws: &mut Ws, v: &Value) {
    send_text(ws, &v.to_string());
}

/// Close politely (best effort).
pub fn close(mut ws: Ws) {
    let _ = ws.close(None);
    let _ = ws.flush();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => continue,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break,
        }
    }
}

pub fn close_code(code: u16) -> CloseCode {
    CloseCode::from(code)
}

/// Reads until a close frame arrives (skipping anything else) and returns
/// its code and reason; panics on a plain EOF or when nothing closes within
/// `timeout`.
pub fn expect_close_frame(ws: &mut Ws, timeout: Duration) -> (u16, String) {
    let deadline = Instant::now() + timeout;
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_owned())
            }
            Ok(Message::Close(None)) => panic!("a close frame without a code"),
            Ok(_) => continue,
            Err(e) if is_timeout(&e) => {
                assert!(Instant::now() < deadline, "connection not closed within {timeout:?}");
            }
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}
