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

use async_tungstenite::tungstenite::handshake::server::create_response_with_body;
use http::header::SEC_WEBSOCKET_VERSION;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};

use super::response::{error, Body};
use crate::gateway::handshake::{self, Admitted, Rejection};
use crate::gateway::upgrade;
use crate::shard::Shard;

/// `admitted` receives the client of a 101 answer.
pub fn answer<B>(shard: &Shard, request: &Request<B>, admitted: &Cell<Option<Admitted>>) -> Response<Body> {
    let headers = request.headers();
    if !upgrade::asks(pairs(headers)) {
        return error(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required");
    }
    let verified = match handshake::authenticate(shard, request.uri(), headers) {
        Ok(verified) => verified,
        Err(rejection) => return refused(shard, rejection),
    };
    let http_1_1 = request.version() >= Version::HTTP_11;
    if let Err(invalid) = upgrade::check(http_1_1, pairs(headers)) {
        let mut response = error(invalid.status(), &invalid.to_string());
        if invalid == upgrade::Invalid::Version {
            response.headers_mut().insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static(upgrade::VERSION));
        }
        return response;
    }
    let admitted_client =
        handshake::welcome(shard, headers).and_then(|()| handshake::admit(shard, verified, request.uri()));
    match admitted_client {
        // The request passed the checks above, which are tungstenite's own.
        Ok(client) => match create_response_with_body(request, Body::default) {
            Ok(switching) => {
                admitted.set(Some(client));
                switching
            }
            Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        Err(rejection) => refused(shard, rejection),
    }
}

fn refused(shard: &Shard, rejection: Rejection) -> Response<Body> {
    rejection.record(shard);
    error(rejection.status(), rejection.message())
}

fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes()))
}
