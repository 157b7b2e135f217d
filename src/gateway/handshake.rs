//! The checks before a WebSocket upgrade (README, Client protocol): shutting down → 503, a
//! foreign `Origin` → 403, a bad token → 401, `MAX_CONNECTIONS` → 503. Runs
//! inside tungstenite's handshake callback, which writes our refusal, and on
//! HTTP for an upgrade that comes on a kept-alive connection.

use async_tungstenite::tungstenite::handshake::server::ErrorResponse;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, StatusCode, Uri};
use tracing::info;

use crate::auth::{AuthError, Verified};
use crate::instance::Admission;
use crate::origin;
use crate::shard::Shard;

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    ShuttingDown,
    Origin,
    Unauthorized(AuthError),
    Full,
}

impl Rejection {
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::ShuttingDown | Rejection::Full => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Origin => StatusCode::FORBIDDEN,
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
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

    /// The HTTP answer, `{"error": "..."}`, and the connection ends.
    pub fn response(self) -> ErrorResponse {
        let body = serde_json::json!({ "error": self.message() }).to_string();
        let mut response = ErrorResponse::new(Some(body.clone()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, body.len().into());
        headers.insert(CONNECTION, http::HeaderValue::from_static("close"));
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

pub fn check<B>(shard: &Shard, request: &http::Request<B>) -> Result<Admitted, Rejection> {
    welcome(shard, request.headers())?;
    admit(shard, authenticate(shard, request.uri(), request.headers())?, request.uri())
}

/// The checks before the token's: shutting down → 503, a foreign `Origin` → 403.
pub fn welcome(shard: &Shard, headers: &HeaderMap) -> Result<(), Rejection> {
    let instance = shard.instance;
    if instance.is_shutting_down() {
        return Err(Rejection::ShuttingDown);
    }
    if !origin::allowed(&instance.config.allowed_origins, header(headers, ORIGIN), header(headers, HOST)) {
        return Err(Rejection::Origin);
    }
    Ok(())
}

/// The last check, for a client whose token has passed: a connection slot.
pub fn admit(shard: &Shard, verified: Verified, uri: &Uri) -> Result<Admitted, Rejection> {
    let admission = shard.instance.admit().ok_or(Rejection::Full)?;
    Ok(Admitted { verified, admission, rooms: rooms(uri) })
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
pub fn authenticate(shard: &Shard, uri: &Uri, headers: &HeaderMap) -> Result<Verified, Rejection> {
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
