//! CORS for the HTTP API (README, Publish API and Client protocol): `ALLOWED_ORIGINS` decides which
//! origins get CORS headers; an unlisted origin gets none and its request is
//! otherwise handled as usual.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, HOST, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::response::Body;
use crate::config::AllowedOrigins;
use crate::origin;

/// The origin to echo in `Access-Control-Allow-Origin`, if it is allowed.
pub fn allowed_origin(rules: &AllowedOrigins, request: &HeaderMap) -> Option<HeaderValue> {
    let origin = request.get(ORIGIN)?;
    let host = request.get(HOST).and_then(|h| h.to_str().ok());
    let allowed = origin::allowed(rules, Some(origin.to_str().ok()?), host);
    allowed.then(|| origin.clone())
}

/// Adds the CORS headers for an allowed origin.
pub fn decorate(response: &mut Response<Body>, origin: Option<HeaderValue>) {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(VARY, HeaderValue::from_static("Origin"));
    }
}

/// The answer to an `OPTIONS` preflight of a publish endpoint.
pub fn preflight(origin: Option<HeaderValue>) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    if origin.is_some() {
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, X-API-Key"),
        );
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    decorate(&mut response, origin);
    response
}
