//! The checks a `GET /ws` passes to become a session (README, Client
//! protocol), in one order ([`check`]) whichever way it came: inside
//! tungstenite's handshake callback for a connection's first request, which
//! writes our refusal, and on HTTP for the rest (an upgrade on a kept-alive
//! connection, one that is no valid opening handshake).

use async_tungstenite::tungstenite::handshake::server::ErrorResponse;
use http::header::{
    HeaderName, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, SEC_WEBSOCKET_VERSION,
};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, Version};
use tracing::info;

use super::upgrade::{self, Invalid};
use crate::auth::{AuthError, Verified};
use crate::instance::Admission;
use crate::origin;
use crate::shard::Shard;

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `Upgrade: websocket`: not a WebSocket request at all.
    NotAnUpgrade,
    ShuttingDown,
    Origin,
    Unauthorized(AuthError),
    /// It asks for a WebSocket but is no valid RFC 6455 opening handshake.
    Handshake(Invalid),
    Full,
}

impl Rejection {
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::NotAnUpgrade => StatusCode::UPGRADE_REQUIRED,
            Rejection::ShuttingDown | Rejection::Full => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Origin => StatusCode::FORBIDDEN,
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::Handshake(invalid) => invalid.status(),
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Rejection::NotAnUpgrade => "WebSocket upgrade required",
            Rejection::Handshake(invalid) => invalid.message(),
            Rejection::ShuttingDown => "server is shutting down",
            Rejection::Full => "connection limit reached",
            Rejection::Origin => "origin not allowed",
            Rejection::Unauthorized(
                e @ (AuthError::Missing
                | AuthError::Expired
                | AuthError::NotYetValid
                | AuthError::Issuer
                | AuthError::Audience
                | AuthError::MissingClaim
                | AuthError::UnknownRole),
            ) => e.message(),
            Rejection::Unauthorized(_) => "invalid token",
        }
    }

    /// Counted (a refused token) and logged, never with the token or the URI.
    pub fn record(self, shard: &Shard) {
        match self {
            Rejection::Unauthorized(reason) => {
                shard.instance.metrics.auth_failed(reason);
                info!(reason = reason.reason(), "websocket auth failed");
            }
            other => info!(status = other.status().as_u16(), reason = other.message(), "websocket refused"),
        }
    }

    /// The header a refusal carries beside its body: the version we speak,
    /// for a client that asked for another.
    pub fn header(self) -> Option<(HeaderName, HeaderValue)> {
        (self == Rejection::Handshake(Invalid::Version))
            .then(|| (SEC_WEBSOCKET_VERSION, HeaderValue::from_static(upgrade::VERSION)))
    }

    /// The HTTP answer, `{"error": "..."}`, and the connection ends.
    pub fn response(self) -> ErrorResponse {
        let body = serde_json::json!({ "error": self.message() }).to_string();
        let mut response = ErrorResponse::new(Some(body.clone()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, body.len().into());
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        headers.extend(self.header());
        response
    }
}

/// A client that passed every check, with its connection slot and the rooms
/// it asked to join at connect (`?rooms=a,b`).
pub struct Admitted {
    pub verified: Verified,
    pub admission: Admission,
    pub rooms: Vec<String>,
}

/// Every check of a `GET /ws`, in one order for both ways in (a
/// connection's first request, an upgrade on a kept-alive connection), so
/// that a request with two faults gets the same answer on either; the first
/// check that fails answers:
/// 1. `Upgrade: websocket`, else 426 (not a WebSocket request);
/// 2. not shutting down, else 503;
/// 3. an allowed `Origin`, else 403;
/// 4. a valid token, else 401;
/// 5. a valid RFC 6455 opening handshake, else 400, or 426 naming version 13;
/// 6. a free connection slot (`MAX_CONNECTIONS`), else 503; taken here, and
///    held by the [`Admitted`].
///
/// What needs no key comes before the token's check (a foreign page learns
/// nothing about tokens); the token's comes before the handshake's, so a
/// client without one is told first that it needs one.
pub fn check<B>(shard: &Shard, request: &http::Request<B>) -> Result<Admitted, Rejection> {
    let (headers, uri) = (request.headers(), request.uri());
    if !upgrade::asks(pairs(headers)) {
        return Err(Rejection::NotAnUpgrade);
    }
    let instance = shard.instance;
    if instance.is_shutting_down() {
        return Err(Rejection::ShuttingDown);
    }
    if !origin::allowed(&instance.config.allowed_origins, header(headers, ORIGIN), header(headers, HOST)) {
        return Err(Rejection::Origin);
    }
    let verified = authenticate(shard, uri, headers)?;
    upgrade::check(request.version() >= Version::HTTP_11, pairs(headers)).map_err(Rejection::Handshake)?;
    let admission = instance.admit().ok_or(Rejection::Full)?;
    Ok(Admitted { verified, admission, rooms: rooms(uri) })
}

fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &[u8])> {
    headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes()))
}

/// The rooms of every `rooms=` in the query, comma-separated, blanks skipped.
fn rooms(uri: &Uri) -> Vec<String> {
    let Some(query) = uri.query() else { return Vec::new() };
    form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == "rooms")
        .flat_map(|(_, value)| {
            value.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

/// The identity in the request's token (`?token=` first, then
/// `Authorization: Bearer`).
fn authenticate(shard: &Shard, uri: &Uri, headers: &HeaderMap) -> Result<Verified, Rejection> {
    let token = token(uri, headers).ok_or(Rejection::Unauthorized(AuthError::Missing))?;
    shard.verify(&token).map_err(Rejection::Unauthorized)
}

fn token(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let from_query = uri.query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
    });
    from_query.or_else(|| {
        let value = header(headers, AUTHORIZATION)?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    })
}

fn header(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
