//! Plain HTTP on the shared port (hyper's HTTP/1.1 server over glommio's
//! socket): the publish API (`POST /api/notifications/send` and
//! `/broadcast`, with CORS), `/health`, `/ready`, `/metrics`, the operator
//! page; JSON errors for everything else. Runs on the shard that accepted the socket.
//!
//! - `admin`: the operator page and the stats it reads;
//! - `clock`: the head and idle time limits of each connection;
//! - `publish`: the publish API;
//! - `presence`: presence queries and the disconnect API;
//! - `history`: a room's history;
//! - `health`: `/health` and `/ready`;
//! - `cors`: the CORS answers for browsers that publish;
//! - `response`: JSON bodies and errors;
//! - `upgrade`: the `GET /ws` requests the front door did not hand to the
//!   WebSocket side.

pub mod admin;
pub mod clock;
pub mod cors;
pub mod health;
pub mod history;
pub mod presence;
pub mod publish;
pub mod response;
pub mod upgrade;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use http::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use smol_hyper::rt::FuturesIo;
use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use tracing::debug;

use crate::gateway::handshake::Admitted;
use crate::metrics::Exposition;
use crate::shard::Shard;
use clock::{Clock, Clocked, Phase};
use publish::Endpoint;
pub use response::refuse;
use response::{error, json, Body};

/// Longest request head (README, Client protocol); hyper answers 431 to a longer one. Also
/// what hyper may buffer of a connection: its smallest allowed buffer.
pub const MAX_HEAD: usize = 8192;

/// Serves HTTP/1.1 requests on `stream` until the client leaves or a time
/// limit of [`clock`] ends the connection.
/// A connection HTTP upgraded to a WebSocket (on a kept-alive connection,
/// where the front door saw only the first request): the session's to run.
pub struct Upgraded {
    pub stream: TcpStream,
    pub client: Admitted,
}

/// Serves HTTP/1.1 requests on `stream` until the client leaves, or until a
/// request upgrades it to a WebSocket: then the connection is handed back.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) -> Option<Upgraded> {
    let Ok(peer) = stream.peer_addr() else { return None };
    let Some(_slot) = shard.instance.admit_http() else {
        debug!("http connection refused: limit reached");
        refuse(stream, StatusCode::SERVICE_UNAVAILABLE, "connection limit reached").await;
        return None;
    };
    let clock = Clock::new();
    let upgraded_client = Cell::new(None);
    let mut io = Clocked::new(stream, clock.clone());
    let service = service_fn(|request| {
        clock.head_complete();
        let shard = shard.clone();
        let clock = clock.clone();
        let upgraded_client = &upgraded_client;
        // Boxed: hyper gives the connection back (for an upgrade) only to a
        // service whose futures are Unpin.
        Box::pin(async move {
            let response = respond(&shard, peer, request, upgraded_client).await;
            clock.answered();
            Ok::<_, Infallible>(response)
        })
    });
    let served = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD)
        .serve_connection(FuturesIo::new(&mut io), service)
        .without_shutdown()
        .await;
    match served {
        // A client may not send frames before it reads the 101 (RFC 6455 §4.1).
        Ok(parts) if parts.read_buf.is_empty() => {
            drop(parts);
            if let Some(client) = upgraded_client.take() {
                return Some(Upgraded { stream: io.into_inner(), client });
            }
        }
        Ok(_) => debug!("bytes before the 101 on an upgraded http connection"),
        Err(e) => debug!(error = %e, "http connection ended with an error"),
    }
    if clock.expired() == Some(Phase::Head) {
        refuse(io.into_inner(), StatusCode::REQUEST_TIMEOUT, "request head not complete in time").await;
    } else {
        let _ = io.close().await;
    }
    None
}

async fn respond(
    shard: &Shard,
    peer: SocketAddr,
    request: Request<Incoming>,
    upgraded_client: &Cell<Option<Admitted>>,
) -> Response<Body> {
    let instance = shard.instance;
    crate::fault::panic_on(request.uri().path().trim_start_matches('/'));
    let origin = cors::allowed_origin(&instance.config.allowed_origins, request.headers());
    let method = request.method().clone();
    let mut response = match (request.uri().path(), &method) {
        ("/health", &Method::GET | &Method::HEAD) => json(StatusCode::OK, health::health(instance)),
        ("/ready", &Method::GET | &Method::HEAD) => health::ready(instance),
        ("/metrics", &Method::GET | &Method::HEAD) => metrics(shard, &request),
        ("/health" | "/ready" | "/metrics", _) => method_not_allowed("GET, HEAD"),
        ("/ws", &Method::GET) => upgrade::answer(shard, &request, upgraded_client),
        ("/ws", _) => method_not_allowed("GET"),
        ("/api/admin/stats", &Method::GET) => admin::stats(shard, peer, request.headers()).await,
        ("/api/admin/stats", _) => method_not_allowed("GET"),
        (path, &Method::GET | &Method::HEAD) if path.starts_with("/admin") => {
            match admin::Asset::from_path(path) {
                Some(asset) => admin::asset(shard, peer, request.headers(), asset),
                None => error(StatusCode::NOT_FOUND, "not found"),
            }
        }
        (path, _) if path.starts_with("/api/rooms/") || path.starts_with("/api/users/") => {
            match presence::Endpoint::from_path(path) {
                Some(_) if method == Method::OPTIONS => return cors::preflight(origin),
                Some(endpoint) if endpoint.accepts(&method) => {
                    match publish::refuse_caller(shard, peer, request.headers()) {
                        Some(refusal) => refusal,
                        None => presence::handle(shard, endpoint, request).await,
                    }
                }
                Some(endpoint) => method_not_allowed(endpoint.allow()),
                None => error(StatusCode::NOT_FOUND, "not found"),
            }
        }
        (path, _) => match (Endpoint::from_path(path), &method) {
            (Some(_), &Method::OPTIONS) => return cors::preflight(origin),
            (Some(endpoint), &Method::POST) => publish::handle(shard, peer, endpoint, request).await,
            (Some(_), _) => method_not_allowed("POST, OPTIONS"),
            (None, _) => error(StatusCode::NOT_FOUND, "not found"),
        },
    };
    cors::decorate(&mut response, origin);
    response
}

fn metrics<B>(shard: &Shard, request: &Request<B>) -> Response<Body> {
    let instance = shard.instance;
    instance.record_scraped();
    let format = Exposition::for_accept(request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let mut response = Response::new(Body::from(instance.metrics.render(format)));
    response.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static(format.content_type()));
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response.headers_mut().insert(ALLOW, http::HeaderValue::from_static(allow));
    response
}
