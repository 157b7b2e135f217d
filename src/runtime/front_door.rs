//! One port, two protocols: peek at the request head without consuming it and
//! decide whether the socket is a WebSocket upgrade on `/ws` or plain HTTP.
//! The peek is bounded in size and time by the limits every request head has
//! ([`MAX_HEAD`], [`HEAD_TIMEOUT`]); a longer head is HTTP's to refuse (431).

use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use crate::api::clock::HEAD_TIMEOUT;
use crate::api::MAX_HEAD;
use crate::gateway::upgrade;
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

/// `None` while the head is incomplete. Anything unparseable, and any
/// upgrade that is not a valid opening handshake, goes to HTTP, which answers
/// it properly.
fn classify(head: &[u8]) -> Option<Route> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(Route::Http),
        Ok(httparse::Status::Complete(_)) => {
            let path = request.path.unwrap_or("");
            let on_ws = path.split('?').next() == Some("/ws");
            let headers = || request.headers.iter().map(|h| (h.name, h.value));
            let upgrade =
                upgrade::asks(headers()) && upgrade::check(request.version == Some(1), headers()).is_ok();
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
        let ws = b"GET /ws?token=x HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(classify(ws), Some(Route::WebSocket));
        let no_key = b"GET /ws?token=x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(classify(no_key), Some(Route::Http), "an invalid upgrade is HTTP's to answer");
        assert_eq!(classify(b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n"), Some(Route::Http));
        assert_eq!(classify(b"GET /health HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), Some(Route::Http));
        assert_eq!(classify(b"GET /ws HTTP/1.1\r\nHost: a"), None);
        assert_eq!(classify(b"\x16\x03\x01garbage\r\n\r\n"), Some(Route::Http));
    }
}

/// Classification on generated request heads and arbitrary bytes: no panic,
/// the route a model of the rule gives, and the same route whatever prefix
/// of the head the peek happened to see first (`PROPTEST_CASES` for longer runs).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A request head and whether it should be a WebSocket upgrade: a GET of
    /// `/ws` with every piece of a valid RFC 6455 opening handshake.
    fn head() -> impl Strategy<Value = (Vec<u8>, bool)> {
        let method = prop::sample::select(vec!["GET", "POST", "get", "HEAD", "OPTIONS"]);
        let path =
            prop::sample::select(vec!["/ws", "/ws?token=a.b.c", "/ws/", "/wss", "/health", "/ws?", "*"]);
        let upgrade = prop::sample::select(vec!["websocket", "WebSocket", "websockets", "h2c", ""]);
        let connection = prop::sample::select(vec!["Upgrade", "keep-alive, upgrade", "keep-alive", "close"]);
        let version = prop::sample::select(vec!["13", "8", ""]);
        let handshake = (prop::option::of(connection), any::<bool>(), prop::option::of(version));
        let header = ("[A-Za-z-]{1,12}", "[ -~]{0,20}");
        let headers = prop::collection::vec(header, 0..6);
        (method, path, prop::option::of(upgrade), handshake, headers, any::<bool>()).prop_map(
            |(method, path, upgrade, (connection, key, version), headers, upgrade_first)| {
                let ours = ["upgrade", "connection", "sec-websocket-key", "sec-websocket-version"];
                let mut lines: Vec<(String, String)> = headers
                    .into_iter()
                    .filter(|(k, _)| !ours.iter().any(|o| k.eq_ignore_ascii_case(o)))
                    .collect();
                if let Some(u) = upgrade {
                    let at = if upgrade_first { 0 } else { lines.len() };
                    lines.insert(at, ("Upgrade".into(), u.into()));
                }
                lines.extend(connection.map(|c| ("Connection".into(), c.into())));
                lines.extend(key.then(|| ("Sec-WebSocket-Key".into(), "dGhlIHNhbXBsZSBub25jZQ==".into())));
                lines.extend(version.map(|v| ("Sec-WebSocket-Version".into(), v.into())));
                let mut text = format!("{method} {path} HTTP/1.1\r\n");
                for (k, v) in &lines {
                    text += &format!("{k}: {}\r\n", v.trim());
                }
                text += "\r\n";
                let ws = method == "GET"
                    && path.split('?').next() == Some("/ws")
                    && upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
                    && connection.is_some_and(|c| c.to_ascii_lowercase().contains("upgrade"))
                    && key
                    && version == Some("13");
                (text.into_bytes(), ws)
            },
        )
    }

    proptest! {
        #[test]
        fn a_head_routes_by_the_rule_whatever_prefix_is_seen((head, ws) in head()) {
            let route = if ws { Route::WebSocket } else { Route::Http };
            prop_assert_eq!(classify(&head), Some(route));
            for split in 0..head.len() {
                let seen = classify(&head[..split]);
                prop_assert!(seen.is_none() || seen == Some(route), "prefix {} routed {:?}", split, seen);
            }
        }

        #[test]
        fn any_bytes_route_somewhere_or_wait(bytes in prop::collection::vec(any::<u8>(), 0..MAX_HEAD / 8)) {
            if let Some(route) = classify(&bytes) {
                let mut longer = bytes.clone();
                longer.extend_from_slice(b"\r\n\r\nmore");
                prop_assert_eq!(classify(&longer), Some(route), "more bytes after a decided head change nothing");
            }
        }
    }
}
