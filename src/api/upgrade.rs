//! What `GET /ws` answers over plain HTTP. The front door hands valid
//! upgrades to the WebSocket side; what reaches here is a request without an
//! upgrade (426), or one that asks for a WebSocket but is not a valid opening
//! handshake: its token is checked first (401), then it gets 400, or 426 with
//! `Sec-WebSocket-Version: 13`.

use http::header::SEC_WEBSOCKET_VERSION;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};

use super::response::{error, Body};
use crate::gateway::{handshake, upgrade};
use crate::shard::Shard;

pub fn answer<B>(shard: &Shard, request: &Request<B>) -> Response<Body> {
    let headers = request.headers();
    if !upgrade::asks(pairs(headers)) {
        return error(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade required");
    }
    if let Err(rejection) = handshake::authenticate(shard, request.uri(), headers) {
        return error(rejection.status(), rejection.message());
    }
    let http_1_1 = request.version() >= Version::HTTP_11;
    match upgrade::check(http_1_1, pairs(headers)) {
        Err(invalid) => {
            let mut response = error(invalid.status(), &invalid.to_string());
            if invalid == upgrade::Invalid::Version {
                response
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static(upgrade::VERSION));
            }
            response
        }
        Ok(()) => error(
            StatusCode::UPGRADE_REQUIRED,
            "a WebSocket upgrade must be the first request on its connection",
        ),
    }
}

fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes()))
}
