//! One port, two protocols: peek at the request head without consuming it and
//! decide whether the socket is a WebSocket upgrade on `/ws` or plain HTTP.
//! The peek is bounded in size and time by the limits every request head has
//! ([`MAX_HEAD`], [`HEAD_TIMEOUT`]); a longer head is HTTP's to refuse (431).

use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use crate::api::clock::HEAD_TIMEOUT;
use crate::api::MAX_HEAD;
/// The first peek's size: most request heads (a browser's upgrade with its
/// token included) fit, and thousands of connections arriving at once do not
/// each hold 8 KiB while they are routed.
const FIRST_PEEK: usize = 2048;
/// Most headers a request head may carry.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    WebSocket,
    Http,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("peer closed before sending a request")]
    Closed,
    #[error("request head not complete within {HEAD_TIMEOUT:?}")]
    TimedOut,
    #[error("peek failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Waits for a complete request head and routes it. The bytes stay in the
/// socket for whichever protocol takes it next.
pub async fn route(stream: &TcpStream) -> Result<Route, HeadError> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = vec![0u8; FIRST_PEEK];
    let mut seen = 0;
    // A peek returns at once while any byte is waiting, so a head that
    // arrives in pieces is re-peeked after a short, growing pause.
    let mut pause = Duration::from_millis(1);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let n = match glommio::timer::timeout(remaining, stream.peek(&mut buf)).await {
            Ok(n) => n,
            Err(glommio::GlommioError::TimedOut(_)) => return Err(HeadError::TimedOut),
            Err(e) => return Err(HeadError::Io(e.into())),
        };
        if n == 0 {
            return Err(HeadError::Closed);
        }
        if let Some(route) = classify(&buf[..n]) {
            return Ok(route);
        }
        if n == MAX_HEAD {
            return Ok(Route::Http);
        }
        if n == buf.len() {
            buf.resize(MAX_HEAD, 0);
            continue;
        }
        if n == seen {
            if Instant::now() + pause >= deadline {
                return Err(HeadError::TimedOut);
            }
            glommio::timer::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        seen = n;
    }
}

/// `None` while the head is incomplete. Anything unparseable goes to HTTP,
/// which answers it properly.
fn classify(head: &[u8]) -> Option<Route> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(Route::Http),
        Ok(httparse::Status::Complete(_)) => {
            let path = request.path.unwrap_or("");
            let on_ws = path.split('?').next() == Some("/ws");
            let upgrade = request.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("upgrade") && h.value.eq_ignore_ascii_case(b"websocket")
            });
            Some(if request.method == Some("GET") && on_ws && upgrade {
                Route::WebSocket
            } else {
                Route::Http
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_path_and_upgrade() {
        let ws = b"GET /ws?token=x HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(classify(ws), Some(Route::WebSocket));
        assert_eq!(classify(b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n"), Some(Route::Http));
        assert_eq!(classify(b"GET /health HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), Some(Route::Http));
        assert_eq!(classify(b"GET /ws HTTP/1.1\r\nHost: a"), None);
        assert_eq!(classify(b"\x16\x03\x01garbage\r\n\r\n"), Some(Route::Http));
    }
}
