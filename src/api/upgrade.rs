//! What `GET /ws` answers over HTTP. The front door hands the first request
//! of a connection to the WebSocket side when it is a valid upgrade; what
//! reaches here is
//! - a request without an upgrade: 426;
//! - one that asks for a WebSocket but is not a valid opening handshake: its
//!   token is checked first (401), then 400, or 426 with
//!   `Sec-WebSocket-Version: 13`;
//! - a valid upgrade on a connection that already carried HTTP requests: the
//!   same checks as the WebSocket side, then 101, and the connection becomes
//!   a session once hyper lets go of it ([`super::serve`]).

use std::cell::Cell;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};

use super::response::{error, Body};
use crate::gateway::handshake::{self, Admitted};
use crate::gateway::upgrade;
use crate::shard::Shard;

/// `admitted` receives the client of a 101 answer.
pub fn answer<B>(shard: &Shard, request: &Request<B>, admitted: &Cell<Option<Admitted>>) -> Response<Body> {
    let headers = request.headers();
    if !upgrade::asks(pairs(headers)) {
        return error(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required");
    }
    if let Err(rejection) = handshake::authenticate(shard, request.uri(), headers) {
        rejection.record(shard);
        return error(rejection.status(), rejection.message());
    }
    let http_1_1 = request.version() >= Version::HTTP_11;
    if let Err(invalid) = upgrade::check(http_1_1, pairs(headers)) {
        let mut response = error(invalid.status(), &invalid.to_string());
        if invalid == upgrade::Invalid::Version {
            response.headers_mut().insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static(upgrade::VERSION));
        }
        return response;
    }
    match handshake::check(shard, &head_of(request)) {
        Ok(client) => {
            admitted.set(Some(client));
            switching_protocols(headers)
        }
        Err(rejection) => {
            rejection.record(shard);
            error(rejection.status(), rejection.message())
        }
    }
}

/// The request without its body, as the handshake checks take it.
fn head_of<B>(request: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    head
}

/// RFC 6455 §4.2.2's answer to a valid opening handshake.
fn switching_protocols(headers: &HeaderMap) -> Response<Body> {
    let key = headers.get(SEC_WEBSOCKET_KEY).map_or(&[][..], HeaderValue::as_bytes);
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let fields = response.headers_mut();
    fields.insert(UPGRADE, HeaderValue::from_static("websocket"));
    fields.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    // Base64 of a SHA-1: always a valid header value.
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key)) {
        fields.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes()))
}
