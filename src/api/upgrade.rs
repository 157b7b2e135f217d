//! What `GET /ws` answers over HTTP. The front door hands the first request
//! of a connection to the WebSocket side when it is a valid upgrade; what
//! reaches here (a request without an upgrade, one that is no valid opening
//! handshake, an upgrade on a connection that already carried HTTP requests)
//! goes through the same checks, in the same order
//! ([`handshake::check`]): its refusal, or 101, and the connection becomes a
//! session once hyper lets go of it ([`super::serve`]).

use std::cell::Cell;

use async_tungstenite::tungstenite::handshake::server::create_response_with_body;
use http::{Request, Response, StatusCode};

use super::response::{error, Body};
use crate::gateway::handshake::{self, Admitted};
use crate::shard::Shard;

/// `admitted` receives the client of a 101 answer: hyper's service can hand
/// back only the response.
pub fn answer<B>(shard: &Shard, request: &Request<B>, admitted: &Cell<Option<Admitted>>) -> Response<Body> {
    let rejection = match handshake::check(shard, request) {
        // The request passed the checks, which are tungstenite's own.
        Ok(client) => match create_response_with_body(request, Body::default) {
            Ok(switching) => {
                admitted.set(Some(client));
                return switching;
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        Err(rejection) => rejection,
    };
    rejection.record(shard);
    let mut response = error(rejection.status(), rejection.message());
    response.headers_mut().extend(rejection.header());
    response
}
