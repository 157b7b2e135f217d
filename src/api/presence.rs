//! Presence and control over HTTP (README, Presence and control), with the publisher API's
//! authentication: `GET /api/rooms/{room}/presence`,
//! `GET /api/users/{userId}/presence` and
//! `POST /api/users/{userId}/disconnect` (202 at once; the sessions close
//! within a second, on every shard and instance).

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde::Deserialize;

use super::publish::read_body;
use super::response::{error, json, Body};
use crate::presence::Control;
use crate::room::RoomName;
use crate::shard::{Busy, Shard};

/// The longest user id a path may name (a token's `userId` is bounded by the
/// token's own size cap).
const MAX_USER_ID: usize = 256;

/// Which endpoint, with its path parameter decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Room(String),
    /// A room's history (README, History and recovery), answered by `history`.
    History(String),
    User(String),
    Disconnect(String),
}

impl Endpoint {
    /// `None` for paths that are none of these (404).
    pub fn from_path(path: &str) -> Option<Self> {
        let (kind, rest) = path.strip_prefix("/api/")?.split_once('/')?;
        let (param, action) = rest.split_once('/')?;
        let param = percent_decode_str(param).decode_utf8().ok()?.into_owned();
        match (kind, action) {
            ("rooms", "presence") => Some(Endpoint::Room(param)),
            ("rooms", "history") => Some(Endpoint::History(param)),
            ("users", "presence") => Some(Endpoint::User(param)),
            ("users", "disconnect") => Some(Endpoint::Disconnect(param)),
            _ => None,
        }
    }

    /// The methods it answers, for `Allow`.
    pub fn allow(&self) -> &'static str {
        match self {
            Endpoint::Room(_) | Endpoint::User(_) | Endpoint::History(_) => "GET, OPTIONS",
            Endpoint::Disconnect(_) => "POST, OPTIONS",
        }
    }

    pub fn accepts(&self, method: &Method) -> bool {
        match self {
            Endpoint::Room(_) | Endpoint::User(_) | Endpoint::History(_) => method == Method::GET,
            Endpoint::Disconnect(_) => method == Method::POST,
        }
    }
}

/// Answers one request for `endpoint` from an authenticated caller (method
/// already checked).
pub async fn handle(shard: &Shard, endpoint: Endpoint, request: Request<Incoming>) -> Response<Body> {
    match endpoint {
        Endpoint::Room(room) => room_presence(shard, &room).await,
        Endpoint::History(room) => super::history::handle(shard, &room, request.uri().query()).await,
        Endpoint::User(user) => match refuse_user(&user) {
            None => match shard.user_presence(&user).await {
                Ok(presence) => json(StatusCode::OK, serde_json::json!(presence)),
                Err(busy) => busy_response(busy),
            },
            Some(refusal) => refusal,
        },
        Endpoint::Disconnect(user) => match refuse_user(&user) {
            None => disconnect(shard, &user, request).await,
            Some(refusal) => refusal,
        },
    }
}

async fn room_presence(shard: &Shard, room: &str) -> Response<Body> {
    if let Err(e) = RoomName::parse(room) {
        return error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let shared = match shard.room_presence(room, true).await {
        Ok(shared) => shared,
        Err(busy) => return busy_response(busy),
    };
    json(
        StatusCode::OK,
        serde_json::json!({
            "room": room,
            "users": shared.presence.users,
            "connections": shared.presence.connections,
            "members": shared.presence.members,
        }),
    )
}

/// 503 with `Retry-After`: the shard has as many queries out as it takes.
fn busy_response(busy: Busy) -> Response<Body> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, &busy.to_string());
    response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    response
}

/// `None` for a user id a path may name, else the 400.
fn refuse_user(user: &str) -> Option<Response<Body>> {
    (user.is_empty() || user.len() > MAX_USER_ID)
        .then(|| error(StatusCode::BAD_REQUEST, &format!("the userId must be 1 to {MAX_USER_ID} bytes")))
}

#[derive(Deserialize)]
struct DisconnectBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn disconnect(shard: &Shard, user: &str, request: Request<Incoming>) -> Response<Body> {
    let body = match read_body(request, shard.instance.config.max_message_size).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let reason = match body.iter().all(u8::is_ascii_whitespace) {
        true => None,
        false => match serde_json::from_slice::<DisconnectBody>(&body) {
            Ok(parsed) => parsed.reason,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")),
        },
    };
    let control = match Control::disconnect(user, reason.as_deref()) {
        Ok(control) => control,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match shard.send_control(control).await {
        Ok(()) => {
            shard.instance.metrics.presence.disconnects_sent.inc();
            json(StatusCode::ACCEPTED, serde_json::json!({ "userId": user, "status": "accepted" }))
        }
        Err(e) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}; nobody was disconnected, retry later"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_parameter() {
        assert_eq!(
            Endpoint::from_path("/api/rooms/orders:1/presence"),
            Some(Endpoint::Room("orders:1".into()))
        );
        assert_eq!(Endpoint::from_path("/api/users/a%20b/presence"), Some(Endpoint::User("a b".into())));
        assert_eq!(Endpoint::from_path("/api/users/7/disconnect"), Some(Endpoint::Disconnect("7".into())));
        assert_eq!(Endpoint::from_path("/api/rooms/x/history"), Some(Endpoint::History("x".into())));
        for other in
            ["/api/users/7", "/api/users/7/presence/x", "/api/users/x/history", "/api/notifications/send"]
        {
            assert_eq!(Endpoint::from_path(other), None, "{other}");
        }
    }
}
