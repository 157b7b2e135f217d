//! `GET /api/rooms/{room}/history?since=41&epoch=e1&limit=100` (README,
//! History and recovery), with the publisher API's authentication: the
//! events a room's history holds after `since` (without it, the newest), as
//! the stream that orders the room answers.

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::response::{error, json, Body};
use crate::history::Since;
use crate::room::RoomName;
use crate::shard::Shard;

/// What the query string may say.
#[derive(Debug, Default, Deserialize)]
struct Query {
    since: Option<u64>,
    epoch: Option<String>,
    limit: Option<usize>,
}

pub async fn handle(shard: &Shard, room: &str, query: Option<&str>) -> Response<Body> {
    let size = shard.instance.config.history_size;
    if size == 0 {
        return error(StatusCode::NOT_FOUND, "history is off (HISTORY_SIZE=0)");
    }
    if let Err(e) = RoomName::parse(room) {
        return error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let query: Query = match serde_urlencoded::from_str(query.unwrap_or_default()) {
        Ok(query) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid query: {e}")),
    };
    let since = match (query.since, query.epoch) {
        (Some(offset), Some(epoch)) => Some(Since { offset, epoch }),
        (None, None) => None,
        _ => return error(StatusCode::BAD_REQUEST, "since and epoch go together"),
    };
    let limit = query.limit.unwrap_or(size).min(size);
    let recovery = match shard.history(room, since, limit).await {
        Ok(recovery) => recovery,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}; retry later")),
    };
    let events: Vec<Box<RawValue>> =
        recovery.events.iter().filter_map(|e| RawValue::from_string(e.frame.to_string()).ok()).collect();
    json(
        StatusCode::OK,
        serde_json::json!({
            "room": room,
            "epoch": recovery.position.epoch,
            "offset": recovery.position.offset,
            "recovered": recovery.recovered,
            "events": events,
        }),
    )
}
