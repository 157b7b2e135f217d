//! The operator page (README, Operator page): `GET /admin` and its script
//! and style sheet, embedded in the binary, and `GET /api/admin/stats`, the
//! JSON the page polls. The page holds no data and asks for the API key;
//! the stats need the publish API's authentication. Every action on the
//! page goes through the existing API endpoints with that key.

use std::net::SocketAddr;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde::Serialize;

use super::publish::refuse_caller;
use super::response::{error, json, Body};
use crate::metrics::Figures;
use crate::presence::RoomSize;
use crate::shard::Shard;

/// Rooms the stats list, biggest first.
pub const BUSIEST_ROOMS: usize = 10;

/// Only what the binary itself serves: no inline script, no other origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One of the page's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    content_type: &'static str,
    body: &'static str,
}

impl Asset {
    pub fn from_path(path: &str) -> Option<Self> {
        let (content_type, body) = match path {
            "/admin" | "/admin/" => ("text/html; charset=utf-8", include_str!("page.html")),
            "/admin/admin.js" => ("text/javascript; charset=utf-8", include_str!("admin.js")),
            "/admin/admin.css" => ("text/css; charset=utf-8", include_str!("admin.css")),
            _ => return None,
        };
        Some(Self { content_type, body })
    }
}

/// The page's file. Without `API_KEY` only loopback peers get it (what they
/// could do with it is loopback-only too); with a key anyone does, as it
/// holds nothing but the code that asks for the key.
pub fn asset(shard: &Shard, peer: SocketAddr, headers: &HeaderMap, asset: Asset) -> Response<Body> {
    if shard.instance.config.api_key.is_none() {
        if let Some(refusal) = refuse_caller(shard, peer, headers) {
            return refusal;
        }
    }
    let mut response = Response::new(Body::from(asset.body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("content-security-policy", HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// A shard's two Redis connections.
#[derive(Serialize)]
struct Link {
    shard: usize,
    subscriber: bool,
    publisher: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    uptime_seconds: u64,
    connections: i64,
    /// `None` without `REDIS_URL`.
    redis: Option<Vec<Link>>,
    busiest_rooms: Vec<RoomSize>,
    #[serde(flatten)]
    figures: Figures,
}

/// `GET /api/admin/stats`, for an authenticated caller.
pub async fn stats(shard: &Shard, peer: SocketAddr, headers: &HeaderMap) -> Response<Body> {
    if let Some(refusal) = refuse_caller(shard, peer, headers) {
        return refusal;
    }
    let instance = shard.instance;
    instance.record_scraped();
    let redis = instance.redis_links().map(|links| {
        links
            .into_iter()
            .enumerate()
            .map(|(shard, (subscriber, publisher))| Link { shard, subscriber, publisher })
            .collect()
    });
    let stats = Stats {
        uptime_seconds: instance.started.elapsed().as_secs(),
        connections: instance.connections(),
        redis,
        busiest_rooms: shard.busiest_rooms(BUSIEST_ROOMS).await,
        figures: instance.metrics.figures(),
    };
    let mut response = match serde_json::to_value(stats) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot encode: {e}")),
    };
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
