//! Whether a request that asks for a WebSocket is a valid RFC 6455 opening
//! handshake (§4.2.1), and what it is answered when it is not: 400, or 426
//! with the one version we speak. The front door hands only valid upgrades to
//! the WebSocket side (tungstenite would hang up on the others without a
//! word); the rest reach HTTP, and both sides answer them by
//! [`super::handshake::check`].

use std::fmt;

use http::StatusCode;

/// The only `Sec-WebSocket-Version` there is (RFC 6455 §4.1).
pub const VERSION: &str = "13";

/// What is wrong with an upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    OldHttp,
    NoConnectionUpgrade,
    NoKey,
    Version,
}

impl Invalid {
    pub fn status(self) -> StatusCode {
        match self {
            Invalid::Version => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// What the client is told, in its `{"error": "..."}`.
    pub fn message(self) -> &'static str {
        match self {
            Invalid::OldHttp => "a WebSocket upgrade needs HTTP/1.1",
            Invalid::NoConnectionUpgrade => "a WebSocket upgrade needs Connection: Upgrade",
            Invalid::NoKey => "a WebSocket upgrade needs a Sec-WebSocket-Key",
            Invalid::Version => "unsupported Sec-WebSocket-Version (13 is supported)",
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// `Upgrade: websocket` (any case, possibly in a list): the client wants a
/// WebSocket, valid or not.
pub fn asks<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> bool {
    headers
        .into_iter()
        .any(|(name, value)| name.eq_ignore_ascii_case("upgrade") && has_token(value, "websocket"))
}

/// `Ok` for a valid opening handshake (the method and path are the
/// caller's); `http_1_1` is whether the request is HTTP/1.1 or later.
pub fn check<'a>(
    http_1_1: bool,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<(), Invalid> {
    if !http_1_1 {
        return Err(Invalid::OldHttp);
    }
    let (mut connection_upgrade, mut key, mut version) = (false, false, None);
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = !value.trim_ascii().is_empty();
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(value.trim_ascii());
        }
    }
    match (connection_upgrade, key, version) {
        (false, _, _) => Err(Invalid::NoConnectionUpgrade),
        (_, false, _) => Err(Invalid::NoKey),
        (_, _, Some(v)) if v == VERSION.as_bytes() => Ok(()),
        _ => Err(Invalid::Version),
    }
}

/// A comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|b| *b == b',').any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static [u8])> {
        list.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
    }

    const VALID: &[(&str, &str)] = &[
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];

    #[test]
    fn a_valid_handshake_passes() {
        assert!(asks(headers(VALID)));
        assert_eq!(check(true, headers(VALID)), Ok(()));
    }

    #[test]
    fn each_missing_piece_is_named() {
        assert_eq!(check(false, headers(VALID)), Err(Invalid::OldHttp));
        let without = |name: &str| headers(VALID).into_iter().filter(|(n, _)| *n != name).collect::<Vec<_>>();
        assert_eq!(check(true, without("Connection")), Err(Invalid::NoConnectionUpgrade));
        assert_eq!(check(true, without("Sec-WebSocket-Key")), Err(Invalid::NoKey));
        assert_eq!(check(true, without("Sec-WebSocket-Version")), Err(Invalid::Version));
        let mut v8 = without("Sec-WebSocket-Version");
        v8.push(("Sec-WebSocket-Version", b"8"));
        assert_eq!(check(true, v8), Err(Invalid::Version));
        assert!(!asks(headers(&[("Upgrade", "h2c")])));
    }
}
