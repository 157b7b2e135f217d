//! The publish API (README, Publish API): `POST /api/notifications/send` and
//! `/broadcast`. Checks the caller (API key, or a loopback peer without one),
//! reads a bounded body, validates it into an [`Event`] and hands the event to
//! the bus.

use std::net::SocketAddr;

use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, ORIGIN};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::response::{error, json, Body};
use crate::event::{Draft, Event, Required};
use crate::metrics::Source;
use crate::shard::Shard;

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Send,
    Broadcast,
}

impl Endpoint {
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/api/notifications/send" => Some(Endpoint::Send),
            "/api/notifications/broadcast" => Some(Endpoint::Broadcast),
            _ => None,
        }
    }

    fn required(self) -> Required {
        match self {
            Endpoint::Send => Required::User,
            Endpoint::Broadcast => Required::Room,
        }
    }
}

pub async fn handle(
    shard: &Shard,
    peer: SocketAddr,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Response<Body> {
    let config = &shard.instance.config;
    if let Some(refusal) = refuse_caller(shard, peer, request.headers()) {
        return refusal;
    }
    let body = match read_body(request, config.max_message_size).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let event = match parse(&body, endpoint) {
        Ok(event) => event,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if let Err(too_large) = event.fits(config.send_queue_bytes) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, &too_large.to_string());
    }
    let id = event.id.clone();
    shard.instance.wait_for_room().await;
    if shard.instance.is_shutting_down() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down: nothing is accepted that would not be delivered; publish to another instance",
        );
    }
    match shard.publish(event).await {
        Ok(()) => {
            shard.instance.metrics.published(Source::Api);
            json(StatusCode::ACCEPTED, serde_json::json!({ "id": id, "status": "accepted" }))
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}; nothing was delivered, retry later")),
    }
}

/// 401 unless the caller may use the publisher API (README, Publish API), which the
/// presence and control endpoints share.
pub(super) fn refuse_caller(shard: &Shard, peer: SocketAddr, headers: &HeaderMap) -> Option<Response<Body>> {
    let api_key = shard.instance.config.api_key.as_deref();
    if authorized(api_key, peer, headers) {
        return None;
    }
    let message = match api_key {
        Some(_) => "missing or wrong API key",
        None => "the API without API_KEY is open to loopback peers only, asking for localhost, not from another site's page",
    };
    Some(error(StatusCode::UNAUTHORIZED, message))
}

fn parse(body: &[u8], endpoint: Endpoint) -> Result<Event, String> {
    let draft: Draft<'_> = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    // The server names and dates what publishers send over HTTP.
    let draft = Draft { id: None, timestamp: None, ..draft };
    draft.into_event(endpoint.required()).map_err(|e| e.to_string())
}

/// The body, at most `limit` bytes; 413 beyond, 400 when it cannot be read.
pub(super) async fn read_body(
    request: Request<Incoming>,
    limit: usize,
) -> Result<bytes::Bytes, Response<Body>> {
    let too_large = || error(StatusCode::PAYLOAD_TOO_LARGE, &format!("body over {limit} bytes"));
    let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(error(StatusCode::BAD_REQUEST, "cannot read the body")),
    }
}

/// With `API_KEY`: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
/// Without: loopback peers only (`X-Forwarded-For` is never consulted),
/// asking for this machine by name and not from another site's page: a
/// browser on this machine would otherwise carry out any page's form post
/// (no preflight for `text/plain`) or a rebound name's reads for it.
fn authorized(api_key: Option<&str>, peer: SocketAddr, headers: &HeaderMap) -> bool {
    let Some(key) = api_key else {
        let host = headers.get(HOST).map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<http::uri::Authority>().ok())
                .is_some_and(|a| names_loopback(a.host()))
        });
        let origin = headers.get(ORIGIN).map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| url::Url::parse(v).ok())
                .is_some_and(|u| u.host_str().is_some_and(names_loopback))
        });
        return is_loopback(peer) && host != Some(false) && origin != Some(false);
    };
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let header = headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim);
    [bearer, header].into_iter().flatten().any(|given| constant_time_eq(given.as_bytes(), key.as_bytes()))
}

fn is_loopback(peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a `Host` header's or an origin's host (no port) is this machine.
fn names_loopback(host: &str) -> bool {
    let address = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || address.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares without an early exit, so timing does not reveal the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().expect("value"))).collect()
    }

    #[test]
    fn api_key_in_either_header() {
        let peer: SocketAddr = "10.0.0.1:1".parse().expect("addr");
        assert!(authorized(Some("k"), peer, &headers(&[("authorization", "Bearer k")])));
        assert!(authorized(Some("k"), peer, &headers(&[("x-api-key", "k")])));
        assert!(!authorized(Some("k"), peer, &headers(&[("x-api-key", "K")])));
        assert!(!authorized(Some("k"), peer, &headers(&[])));
    }

    #[test]
    fn without_a_key_only_loopback() {
        let forwarded = headers(&[("x-forwarded-for", "127.0.0.1")]);
        assert!(!authorized(None, "10.0.0.1:1".parse().expect("addr"), &forwarded));
        assert!(authorized(None, "127.0.0.1:1".parse().expect("addr"), &forwarded));
        assert!(authorized(None, "[::ffff:127.0.0.1]:1".parse().expect("addr"), &forwarded));
    }

    #[test]
    fn without_a_key_only_requests_for_this_machine_not_from_other_sites() {
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        for (name, value) in [
            ("host", "localhost:8080"),
            ("host", "LOCALHOST"),
            ("host", "127.0.0.2:80"),
            ("host", "[::1]:8080"),
            ("origin", "http://localhost:5173"),
            ("origin", "https://[::1]"),
        ] {
            assert!(authorized(None, peer, &headers(&[(name, value)])), "{name}: {value}");
        }
        for (name, value) in [
            ("host", "localhost.evil.example:8080"),
            ("host", "evil.example"),
            ("host", "10.0.0.1"),
            ("host", "[::2]"),
            ("origin", "https://evil.example"),
            ("origin", "null"),
            ("origin", "http://localhost:80@evil.example"),
        ] {
            assert!(!authorized(None, peer, &headers(&[(name, value)])), "{name}: {value}");
        }
    }
}
