//! The client protocol (README, Client protocol): what a client may send, and the server's
//! own messages (events are encoded elsewhere, once per event).

use std::time::SystemTime;

use async_tungstenite::tungstenite::Utf8Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::{Identity, Role};
use crate::event::timestamp;
use crate::presence::{Member, RoomPresence};

/// A message from a client.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMessage {
    Subscribe {
        room: String,
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
}

/// Parses a text frame; the error is the `bad_request` message to send back.
pub fn parse(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("invalid message: {e}"),
        _ => "invalid JSON".to_owned(),
    })
}

pub fn subscribed(room: &str) -> Utf8Bytes {
    room_answer("subscribed", room)
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

/// The first message of every session; `exp` is its token's.
pub fn connected(identity: &Identity, exp: u64) -> Utf8Bytes {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a> {
        user_id: &'a str,
        role: Role,
        rooms: &'static [&'static str],
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
            Ok(ClientMessage::Subscribe { room: "orders".into() })
        );
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
            serde_json::from_str(connected(&id, 1_796_000_000).as_str()).expect("json");
        assert_eq!(v["payload"]["rooms"], serde_json::json!(["deliveries", "orders"]));
        assert_eq!(v["payload"]["exp"], 1_796_000_000);
        assert_eq!(v["payload"]["userId"], "7");
        assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
