//! The client protocol (README, Client protocol): what a client may send, and the server's
//! own messages (events are encoded elsewhere, once per event). No I/O: the
//! gateway and the shard both speak it.

use std::time::SystemTime;

use async_tungstenite::tungstenite::Utf8Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::{Identity, Role};
use crate::event::timestamp;
use crate::history::{Position, Since};
use crate::presence::{Member, RoomPresence};

/// A message from a client.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMessage {
    Subscribe {
        room: String,
        /// The last event the client saw of the room (README, History and recovery).
        #[serde(default)]
        since: Option<Since>,
    },
    Unsubscribe {
        room: String,
    },
    Ping,
    /// A new token for the session (README, Tokens during a session).
    Refresh {
        token: String,
    },
    Presence {
        room: String,
    },
}

/// Error codes of the `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Forbidden,
    RateLimited,
    /// A `refresh` with a token that is not valid.
    Unauthorized,
    /// The room's history could not be reached (Redis is down): try again.
    Unavailable,
}

/// Parses a text frame; the error is the `bad_request` message to send back.
pub fn parse(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("invalid message: {e}"),
        _ => "invalid JSON".to_owned(),
    })
}

/// `subscribed`, with the room's position when history is on, and
/// `recovered` when the client asked to recover.
pub fn subscribed(room: &str, position: Option<&Position>, recovered: Option<bool>) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Answer<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        room: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    }
    encode(&Answer {
        kind: "subscribed",
        room,
        offset: position.map(|p| p.offset),
        epoch: position.map(|p| p.epoch.as_str()),
        recovered,
    })
}

/// The room's history no longer covers what the client missed: reload it.
pub fn resync(room: &str) -> Utf8Bytes {
    room_answer("resync", room)
}

pub fn unsubscribed(room: &str) -> Utf8Bytes {
    room_answer("unsubscribed", room)
}

fn room_answer(kind: &'static str, room: &str) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Answer<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        room: &'a str,
    }
    encode(&Answer { kind, room })
}

/// The answer to `presence`: counts for everyone, members for admins.
pub fn presence(room: &str, presence: &RoomPresence, with_members: bool) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Payload<'a> {
        users: usize,
        connections: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        members: Option<&'a [Member]>,
    }
    #[derive(Serialize)]
    struct Answer<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        room: &'a str,
        payload: Payload<'a>,
    }
    let members = with_members.then_some(presence.members.as_slice());
    let payload = Payload { users: presence.users, connections: presence.connections, members };
    encode(&Answer { kind: "presence", room, payload })
}

pub fn pong() -> Utf8Bytes {
    Utf8Bytes::from_static(r#"{"type":"pong"}"#)
}

pub fn error(code: ErrorCode, message: &str) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Payload<'a> {
        code: ErrorCode,
        message: &'a str,
    }
    encode(&Tagged { kind: "error", payload: Payload { code, message } })
}

/// `exp` seconds before the session's token expires (README, Tokens during a session).
pub fn token_expiring(expires_in: u64) -> Utf8Bytes {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        expires_in: u64,
    }
    encode(&Tagged { kind: "token_expiring", payload: Payload { expires_in } })
}

/// A refresh was taken: the session goes on until `exp`.
pub fn refreshed(exp: u64) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Payload {
        exp: u64,
    }
    encode(&Tagged { kind: "refreshed", payload: Payload { exp } })
}

/// The first message of every session: `joined` the rooms it is in, `exp`
/// its token's expiry.
pub fn connected(identity: &Identity, exp: u64, joined: &[String]) -> Utf8Bytes {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a> {
        user_id: &'a str,
        role: Role,
        rooms: &'static [&'static str],
        joined: &'a [String],
        exp: u64,
    }
    #[derive(Serialize)]
    struct Connected<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        payload: Payload<'a>,
        timestamp: String,
    }
    encode(&Connected {
        kind: "connected",
        payload: Payload {
            user_id: &identity.user_id,
            role: identity.role,
            rooms: identity.role.rooms().unwrap_or(&["*"]),
            joined,
            exp,
        },
        timestamp: timestamp(SystemTime::now()),
    })
}

#[derive(Serialize)]
struct Tagged<P> {
    #[serde(rename = "type")]
    kind: &'static str,
    payload: P,
}

fn encode(message: &impl Serialize) -> Utf8Bytes {
    // These types serialise infallibly (no maps with non-string keys).
    Utf8Bytes::from(serde_json::to_string(message).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse() {
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
        assert_eq!(
            parse(r#"{"type":"subscribe","room":"orders"}"#),
            Ok(ClientMessage::Subscribe { room: "orders".into(), since: None })
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","room":"orders","since":{"offset":41,"epoch":"e1"}}"#),
            Ok(ClientMessage::Subscribe {
                room: "orders".into(),
                since: Some(Since { offset: 41, epoch: "e1".into() })
            })
        );
        assert!(parse(r#"{"type":"subscribe","room":"orders","since":{"offset":-1,"epoch":"e1"}}"#).is_err());
        assert!(parse(r#"{"type":"dance"}"#).is_err());
        assert_eq!(
            parse(r#"{"type":"refresh","token":"t"}"#),
            Ok(ClientMessage::Refresh { token: "t".into() })
        );
        assert!(parse(r#"{"type":"refresh"}"#).is_err());
        assert_eq!(parse("{").unwrap_err(), "invalid JSON");
    }

    #[test]
    fn connected_lists_the_role_rooms() {
        let id = Identity { user_id: "7".into(), role: Role::Delivery };
        let v: serde_json::Value =
            serde_json::from_str(connected(&id, 1_796_000_000, &["all".into(), "user:7".into()]).as_str())
                .expect("json");
        assert_eq!(v["payload"]["joined"], serde_json::json!(["all", "user:7"]));
        assert_eq!(v["payload"]["rooms"], serde_json::json!(["deliveries", "orders"]));
        assert_eq!(v["payload"]["exp"], 1_796_000_000);
        assert_eq!(v["payload"]["userId"], "7");
        assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
