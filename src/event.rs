//! Events: the envelope of README's Client protocol section, encoded once per event, and who receives
//! it ([`Audience`], README's Client protocol targeting rules). Also the typed checks of the
//! known event types (README, Publish API).

use std::time::SystemTime;

use async_tungstenite::tungstenite::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::auth::{Role, UnknownRole};
use crate::models::inventory::InventoryAlertPayload;
use crate::models::message::BroadcastPayload;
use crate::models::notification::NotificationPayload;
use crate::models::order::OrderUpdatePayload;
use crate::room::{self, InvalidRoom, RoomName};

/// Who receives an event, resolved once where it is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every connection (room `all`, no user).
    Everyone,
    /// Every member of the room (personal rooms already resolved: `cart:V`).
    Room(String),
    /// Every connection of the user.
    User(String),
    /// The user's connections that are in the room.
    UserInRoom { user: String, room: String },
    /// The user's personal room `user:U`: every connection of the user, and
    /// whoever watches the room (admins).
    Personal(String),
}

impl Audience {
    /// The stream the event belongs to (README, History and recovery): its
    /// room, `user:U` for a `send` without a room.
    pub fn stream(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Audience::Everyone | Audience::User(_) => room::ALL.into(),
            Audience::Room(room) | Audience::UserInRoom { room, .. } => room.as_str().into(),
            Audience::Personal(user) => room::personal_user_room(user).into(),
        }
    }

    /// The stream a shard must hold (`bus::interest`) to have anyone this
    /// event is for; `None` when every shard has (room `all`).
    pub fn interest(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Audience::Everyone => None,
            Audience::Room(room) => Some(room.as_str().into()),
            Audience::User(user) | Audience::UserInRoom { user, .. } | Audience::Personal(user) => {
                Some(room::personal_user_room(user).into())
            }
        }
    }

    /// The one user a shared room's event is for, whom alone a replay may
    /// reach, like its delivery.
    pub fn only_user(&self) -> Option<&str> {
        match self {
            Audience::User(user) | Audience::UserInRoom { user, .. } => Some(user),
            _ => None,
        }
    }
}

/// An event ready for delivery: its audience and its encoded envelope.
#[derive(Debug)]
pub struct Event {
    pub id: String,
    /// The room as the publisher named it (it picks the Redis channel).
    pub room: Option<String>,
    pub audience: Audience,
    /// Only sessions of this role receive it (where each role numbers its
    /// users separately, seller 5 is not client 5).
    pub role: Option<Role>,
    /// Its place in its room's stream, with history on (the frame says so
    /// too); `None` for an event that is not kept.
    pub position: Option<Position>,
    pub frame: Utf8Bytes,
}

/// Where an event stands in its room's stream, or where a stream stands:
/// its epoch and (latest) offset, 0 before any event (README, History and recovery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
}

/// What a publisher asks for, before validation.
#[derive(Debug, Default, Deserialize)]
pub struct Draft<'a> {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    #[serde(rename = "userId", default)]
    pub user_id: Option<crate::models::Id>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(borrow, default)]
    pub payload: Option<&'a RawValue>,
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Set by the server that kept the event (an envelope from Redis).
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub epoch: Option<String>,
}

/// Why a draft cannot become an event; the message is the API's 400 body.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    #[error("missing type")]
    MissingType,
    #[error("missing room")]
    MissingRoom,
    #[error("missing userId")]
    MissingUser,
    #[error(transparent)]
    Room(#[from] InvalidRoom),
    #[error("an event for room {0:?} needs a userId")]
    PersonalWithoutUser(String),
    #[error("room {0:?} is another user's than userId")]
    NotTheOwner(String),
    #[error(transparent)]
    Role(#[from] UnknownRole),
    #[error("missing payload: it must be a JSON object")]
    MissingPayload,
    #[error("payload must be a JSON object")]
    PayloadNotObject,
    #[error("invalid {kind} payload: {reason}")]
    Payload { kind: String, reason: String },
}

/// An event no client could receive: its frame is larger than a client's
/// whole send queue (README, Client protocol). Refused where it enters, so that it is never
/// delivered by closing its readers as slow.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "the event is {bytes} bytes once encoded, above SEND_QUEUE_BYTES ({limit}): no client could receive it"
)]
pub struct TooLarge {
    pub bytes: usize,
    pub limit: usize,
}

impl Event {
    /// Whether a client's send queue of `send_queue_bytes` can hold this
    /// event's frame at all.
    pub fn fits(&self, send_queue_bytes: usize) -> Result<(), TooLarge> {
        let bytes = self.frame.len() + POSITION_MAX;
        if bytes > send_queue_bytes {
            return Err(TooLarge { bytes, limit: send_queue_bytes });
        }
        Ok(())
    }

    /// The event as its room's stream keeps it: at `position`, which its
    /// envelope carries as `offset` and `epoch` after the other fields.
    pub fn at(self, position: Position) -> Event {
        let frame = self.frame.as_str();
        let body = frame.strip_suffix('}').unwrap_or(frame);
        let epoch = serde_json::to_string(&position.epoch).unwrap_or_default();
        let mut frame = format!("{body},\"offset\":{},\"epoch\":{epoch}}}", position.offset);
        // Kept for HISTORY_TTL: without the slack format! leaves as it grows
        // (a 300-byte envelope sat in a 540-byte buffer, a third of what a
        // kept event cost), and with length = capacity Bytes needs no
        // shared header of its own.
        frame.shrink_to_fit();
        Event { frame: Utf8Bytes::from(frame), position: Some(position), ..self }
    }

    pub fn stream(&self) -> std::borrow::Cow<'_, str> {
        self.audience.stream()
    }
}

/// The most bytes `offset` and `epoch` add to an envelope (an epoch is a
/// short token of the server's).
const POSITION_MAX: usize = 96;

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    payload: &'a RawValue,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
}

/// `send` needs a user, `broadcast` a room; an envelope from Redis either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    User,
    Room,
    Either,
}

impl Draft<'_> {
    /// Validates the draft and encodes its envelope. `id` and `timestamp`
    /// are kept when given (an envelope from Redis), made otherwise.
    pub fn into_event(self, required: Required) -> Result<Event, EventError> {
        let kind = self.kind.filter(|k| !k.is_empty()).ok_or(EventError::MissingType)?;
        let user = self.user_id.map(|id| id.to_string());
        let room = self.room.filter(|r| !r.is_empty());
        match required {
            Required::User if user.is_none() => return Err(EventError::MissingUser),
            Required::Room if room.is_none() => return Err(EventError::MissingRoom),
            _ => {}
        }
        let audience = audience(room.as_deref(), user.as_deref())?;
        // A `send` without a room is an event of the user's personal room,
        // and its envelope says so.
        let room = match &audience {
            Audience::Personal(_) => Some(audience.stream().into_owned()),
            _ => room,
        };
        let role = match self.role.filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => Some(r.parse::<Role>()?),
        };
        let payload = self.payload.ok_or(EventError::MissingPayload)?;
        check_payload(&kind, payload)?;
        let id = self.id.filter(|id| !id.is_empty()).unwrap_or_else(|| ulid::Ulid::new().to_string());
        let timestamp =
            self.timestamp.filter(|t| !t.is_empty()).unwrap_or_else(|| timestamp(SystemTime::now()));
        let position = match (self.offset, self.epoch) {
            (Some(offset), Some(epoch)) if !epoch.is_empty() => Some(Position { epoch, offset }),
            _ => None,
        };
        let envelope = Envelope {
            id: &id,
            kind: &kind,
            room: room.as_deref(),
            user_id: user.as_deref(),
            role: role.map(Role::as_str),
            payload,
            timestamp: &timestamp,
            offset: position.as_ref().map(|p| p.offset),
            epoch: position.as_ref().map(|p| p.epoch.as_str()),
        };
        // Strings and an already-valid raw value: serialisation cannot fail.
        let frame = Utf8Bytes::from(serde_json::to_string(&envelope).unwrap_or_default());
        Ok(Event { id, room, audience, role, position, frame })
    }
}

/// The id of an envelope that arrived without one (a `PUBLISH` by another
/// program). Every shard of every instance receives the same bytes and must
/// name the event alike, so the id is derived from them: a ULID whose time is
/// the envelope's `timestamp` when it has one, and whose random part is a
/// SHA-256 of the message. Two byte-identical envelopes without `id` or
/// `timestamp` therefore share an id.
pub fn content_id(message: &[u8], timestamp: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let millis = timestamp
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let digest = Sha256::digest(message);
    let mut random = [0u8; 16];
    random.copy_from_slice(&digest[..16]);
    ulid::Ulid::from_parts(millis, u128::from_be_bytes(random)).to_string()
}

/// RFC 3339 in UTC with milliseconds, as the envelope carries it.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// README's Client protocol targeting rules.
fn audience(room: Option<&str>, user: Option<&str>) -> Result<Audience, EventError> {
    let Some(room) = room else {
        return user.map(|u| Audience::Personal(u.to_owned())).ok_or(EventError::MissingUser);
    };
    let name = RoomName::parse(room)?;
    if name.is_user_room() {
        return match (name.scope, user) {
            (Some(owner), Some(user)) if owner != user => Err(EventError::NotTheOwner(room.to_owned())),
            (Some(owner), _) | (None, Some(owner)) => Ok(Audience::Personal(owner.to_owned())),
            (None, None) => Err(EventError::PersonalWithoutUser(room.to_owned())),
        };
    }
    if name.is_all() {
        return Ok(user.map_or(Audience::Everyone, |u| Audience::User(u.to_owned())));
    }
    let target =
        room::event_room(name, user).ok_or_else(|| EventError::PersonalWithoutUser(room.to_owned()))?;
    Ok(match (name.is_personal() && name.scope.is_none(), user) {
        (false, Some(user)) => Audience::UserInRoom { user: user.to_owned(), room: target },
        _ => Audience::Room(target),
    })
}

/// Every payload is a JSON object; the known types must also parse as theirs.
fn check_payload(kind: &str, payload: &RawValue) -> Result<(), EventError> {
    if !payload.get().trim_start().starts_with('{') {
        return Err(EventError::PayloadNotObject);
    }
    let text = payload.get();
    let checked = match kind {
        "notification" => serde_json::from_str::<NotificationPayload>(text).map(drop),
        "order_update" => serde_json::from_str::<OrderUpdatePayload>(text).map(drop),
        "inventory_alert" => serde_json::from_str::<InventoryAlertPayload>(text).map(drop),
        "broadcast" => serde_json::from_str::<BroadcastPayload>(text).map(drop),
        _ => return Ok(()),
    };
    checked.map_err(|e| EventError::Payload { kind: kind.to_owned(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str, required: Required) -> Result<Event, EventError> {
        serde_json::from_str::<Draft<'_>>(body).expect("draft parses").into_event(required)
    }

    #[test]
    fn envelope_is_encoded_once_with_its_fields() {
        let e = event(
            r#"{"room":"orders","type":"order_update","userId":123,"payload":{"orderId":"1","status":"shipped"}}"#,
            Required::Room,
        )
        .expect("valid");
        let v: serde_json::Value = serde_json::from_str(e.frame.as_str()).expect("json");
        assert_eq!(v["userId"], "123");
        assert_eq!(v["room"], "orders");
        assert_eq!(v["payload"]["status"], "shipped");
        assert_eq!(v["id"], e.id.as_str());
        assert_eq!(e.audience, Audience::UserInRoom { user: "123".into(), room: "orders".into() });
    }

    #[test]
    fn targeting_follows_the_spec() {
        assert_eq!(audience(Some("all"), None), Ok(Audience::Everyone));
        assert_eq!(audience(None, Some("5")), Ok(Audience::Personal("5".into())));
        assert_eq!(audience(Some("user:5"), None), Ok(Audience::Personal("5".into())));
        assert_eq!(audience(Some("user"), Some("5")), Ok(Audience::Personal("5".into())));
        assert!(matches!(audience(Some("user:5"), Some("6")), Err(EventError::NotTheOwner(_))));
        assert_eq!(audience(Some("all"), Some("5")), Ok(Audience::User("5".into())));
        assert_eq!(audience(Some("cart"), Some("5")), Ok(Audience::Room("cart:5".into())));
        assert!(matches!(audience(Some("myOrders"), None), Err(EventError::PersonalWithoutUser(_))));
        assert_eq!(audience(Some("orders:9"), None), Ok(Audience::Room("orders:9".into())));
    }

    #[test]
    fn content_ids_are_the_same_for_the_same_bytes() {
        let a = content_id(b"{}", Some("2026-11-27T18:00:00.000Z"));
        assert_eq!(a, content_id(b"{}", Some("2026-11-27T18:00:00.000Z")));
        assert_ne!(a, content_id(b"{ }", Some("2026-11-27T18:00:00.000Z")));
        assert!(a < content_id(b"{}", Some("2026-11-27T18:00:01.000Z")), "time-ordered by timestamp");
    }

    #[test]
    fn known_types_are_checked() {
        let bad = r#"{"room":"all","type":"notification","payload":{"title":"t"}}"#;
        assert!(matches!(event(bad, Required::Room), Err(EventError::Payload { .. })));
        let other = r#"{"room":"all","type":"custom","payload":[1]}"#;
        assert_eq!(event(other, Required::Room).err(), Some(EventError::PayloadNotObject));
        let missing = r#"{"type":"custom","payload":{}}"#;
        assert_eq!(event(missing, Required::User).err(), Some(EventError::MissingUser));
    }
}
