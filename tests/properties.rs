//! Properties of the pure vocabulary, on generated input: room names (README, Client protocol)
//! against an independent model of the rule, the room a subscription joins
//! and the room an event reaches, publish drafts and envelopes (README, Client protocol and Publish API)
//! and the REST service's types. Case counts are proptest's
//! (`PROPTEST_CASES`, 256 by default); `tests/fuzz.sh` runs them longer.

use proptest::prelude::*;
use realtime::auth::{Identity, Role};
use realtime::event::{Audience, Draft, EventError, Required};
use realtime::models;
use realtime::room::{event_room, room_to_join, JoinError, RoomName};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// README's Client protocol section read literally, without the code's helpers.
fn is_valid_room(name: &str) -> bool {
    let part_ok = |part: &str, extra: &[u8]| {
        (1..=64).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || extra.contains(&b))
    };
    match name.split_once(':') {
        None => part_ok(name, &[]),
        Some((base, scope)) => part_ok(base, &[]) && part_ok(scope, b"."),
    }
}

/// Names near the rule's edges: valid ones, the personal bases, `all`, and
/// strings of the characters that matter (`:`, `.`, non-ASCII, lengths 64/65).
fn room_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_.-]{1,64})?",
        "(cart|myOrders|orders|all|notifications)(:[0-9a-z.]{0,3})?",
        "[a:._é -]{0,6}",
        "[a-z]{63,66}(:[a-z]{63,66})?",
        any::<String>(),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn user_id() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9]{1,4}", "[a-z:. ]{1,5}", any::<String>().prop_filter("non-empty", |s| !s.is_empty())]
}

proptest! {
    #[test]
    fn room_names_follow_the_rule(name in room_like()) {
        match RoomName::parse(&name) {
            Ok(parsed) => {
                prop_assert!(is_valid_room(&name), "accepted {name:?}");
                let joined = match parsed.scope {
                    Some(scope) => format!("{}:{scope}", parsed.base),
                    None => parsed.base.to_owned(),
                };
                prop_assert_eq!(joined, name);
            }
            Err(_) => prop_assert!(!is_valid_room(&name), "refused {:?}", name),
        }
    }

    /// A subscription joins the very room its user's events go to, and a
    /// non-admin never gets into a room its role may not join or into
    /// another user's personal room.
    #[test]
    fn a_subscription_joins_where_its_events_go(user in user_id(), role in role(), requested in room_like()) {
        let identity = Identity { user_id: user.clone(), role };
        match room_to_join(&identity, &requested) {
            Ok(room) => {
                let name = RoomName::parse(&requested).expect("a joined name is valid");
                prop_assert!(name.is_all() || role.may_join(name.base));
                if name.is_personal() {
                    match name.scope {
                        None => prop_assert_eq!(Some(room.clone()), event_room(name, Some(&user))),
                        Some(owner) => prop_assert!(owner == user || role.sees_every_room()),
                    }
                    if !role.sees_every_room() {
                        prop_assert_eq!(room, format!("{}:{user}", name.base));
                    }
                } else if !name.is_all() {
                    prop_assert_eq!(room, requested);
                }
            }
            Err(JoinError::Invalid(_)) => prop_assert!(!is_valid_room(&requested)),
            Err(JoinError::Forbidden(_)) => prop_assert!(is_valid_room(&requested)),
        }
    }
}

/// Any JSON value, small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field of a draft: absent, or one of the values that decide its fate.
fn maybe(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop::option::weighted(0.8, values)
}

/// The keys of the REST service's JSON, the checked payloads' among them.
const REST_KEYS: &[&str] = &[
    "id",
    "userId",
    "orderId",
    "productId",
    "status",
    "priority",
    "alert",
    "action",
    "title",
    "message",
    "name",
    "email",
    "items",
    "quantity",
    "price",
    "total",
    "stockLevel",
    "threshold",
    "kind",
    "type",
    "createdAt",
    "address",
    "street",
    "city",
];

/// An object of up to `most` of these keys, each with a value from `values`.
fn object_of(
    keys: &[&'static str],
    values: impl Strategy<Value = Value>,
    most: usize,
) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(keys.to_vec()), values, 0..most)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// Payloads with the REST service's keys (those of the checked types
/// among them), with values of every kind.
fn payload() -> impl Strategy<Value = Value> {
    let values = prop_oneof![
        json_value(),
        prop::sample::select(vec!["low", "normal", "high", "", "shipped", "low_stock"]).prop_map(Value::from),
    ];
    prop_oneof![4 => object_of(REST_KEYS, values, 8), 1 => json_value()]
}

fn draft() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        prop::sample::select(vec![
            "notification",
            "order_update",
            "inventory_alert",
            "broadcast",
            "custom",
            ""
        ])
        .prop_map(Value::from),
        json_value(),
    ];
    let id = prop_oneof![Just(Value::from("")), "[0-9A-Z]{1,26}".prop_map(Value::from), json_value()];
    let user = prop_oneof![user_id().prop_map(Value::from), any::<i64>().prop_map(Value::from), json_value()];
    let room = prop_oneof![room_like().prop_map(Value::from), json_value()];
    let timestamp = prop_oneof![Just(Value::from("2026-11-27T18:00:00.000Z")), json_value()];
    (maybe(id), maybe(kind), maybe(room), maybe(user), maybe(payload()), maybe(timestamp)).prop_map(
        |(id, kind, room, user, payload, timestamp)| {
            let fields = [
                ("id", id),
                ("type", kind),
                ("room", room),
                ("userId", user),
                ("payload", payload),
                ("timestamp", timestamp),
            ];
            Value::Object(fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect())
        },
    )
}

fn required() -> impl Strategy<Value = Required> {
    prop::sample::select(vec![Required::User, Required::Room, Required::Either])
}

/// The `userId` the envelope must carry for a draft's `userId` value.
fn user_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => n.as_i64().map(|n| n.to_string()),
        _ => None,
    }
}

proptest! {
    /// Whatever a publisher sends: no panic, and an accepted draft becomes an
    /// envelope that says what the draft said, to the audience README's Client protocol section names.
    #[test]
    fn a_draft_becomes_the_envelope_it_describes(body in draft(), required in required()) {
        let text = body.to_string();
        // What the server reads: serde_json's floats do not survive a round trip exactly.
        let body: Value = serde_json::from_str(&text).expect("generated JSON parses");
        let Ok(draft) = serde_json::from_str::<Draft<'_>>(&text) else { return Ok(()) };
        let given = |k: &str| body.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        match draft.into_event(required) {
            Ok(event) => {
                let envelope: Value = serde_json::from_str(event.frame.as_str()).expect("the envelope is JSON");
                prop_assert_eq!(envelope["id"].as_str(), Some(event.id.as_str()));
                if let Some(id) = given("id") {
                    prop_assert_eq!(event.id.as_str(), id);
                }
                prop_assert_eq!(envelope["type"].as_str(), given("type"));
                // A send without a room, and `user`/`user:U`, is an event of the
                // user's personal room, and its envelope says so.
                let room_said = match &event.audience {
                    Audience::Personal(owner) => Some(format!("user:{owner}")),
                    _ => given("room").map(str::to_owned),
                };
                prop_assert_eq!(envelope.get("room").and_then(Value::as_str), room_said.as_deref());
                prop_assert_eq!(&envelope["payload"], &body["payload"]);
                prop_assert!(envelope["payload"].is_object());
                prop_assert!(envelope["timestamp"].as_str().is_some_and(|t| !t.is_empty()));
                let user = body.get("userId").and_then(user_text);
                prop_assert_eq!(envelope.get("userId").and_then(Value::as_str), user.as_deref());
                match required {
                    Required::User => prop_assert!(user.is_some()),
                    Required::Room => prop_assert!(given("room").is_some()),
                    Required::Either => prop_assert!(user.is_some() || given("room").is_some()),
                }
                let room = given("room").map(|r| RoomName::parse(r).expect("an accepted room is valid"));
                let expected = match (room, user) {
                    (None, Some(u)) => Audience::Personal(u),
                    (Some(r), user) if r.is_user_room() => {
                        let owner = r.scope.map(str::to_owned).or(user.clone());
                        prop_assert!(user.is_none() || user == owner, "another user's room is refused");
                        Audience::Personal(owner.expect("a user room names its user or has one"))
                    }
                    (Some(r), None) if r.is_all() => Audience::Everyone,
                    (Some(r), Some(u)) if r.is_all() => Audience::User(u),
                    (Some(r), Some(u)) if r.is_personal() && r.scope.is_none() => {
                        Audience::Room(format!("{}:{u}", r.base))
                    }
                    (Some(_), Some(u)) => Audience::UserInRoom { user: u, room: given("room").unwrap_or_default().to_owned() },
                    (Some(r), None) => {
                        prop_assert!(!(r.is_personal() && r.scope.is_none()));
                        Audience::Room(given("room").unwrap_or_default().to_owned())
                    }
                    (None, None) => unreachable!("an event needs a room or a user"),
                };
                prop_assert_eq!(event.audience, expected);
            }
            Err(EventError::MissingType) => prop_assert!(given("type").is_none()),
            Err(EventError::PayloadNotObject | EventError::MissingPayload) => {
                prop_assert!(!body.get("payload").is_some_and(Value::is_object))
            }
            Err(_) => {}
        }
    }

    #[test]
    fn any_bytes_are_a_draft_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(draft) = serde_json::from_slice::<Draft<'_>>(&bytes) {
            let _ = draft.into_event(Required::Either);
        }
    }
}

/// A REST type read from any JSON is written back to JSON that reads the same.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    v: &Value,
) -> Result<(), TestCaseError> {
    if let Ok(read) = serde_json::from_value::<T>(v.clone()) {
        let written = serde_json::to_value(&read).expect("a read value writes");
        prop_assert_eq!(serde_json::from_value::<T>(written).ok(), Some(read));
    }
    Ok(())
}

/// An object with the REST service's keys, as the types read them.
fn rest_object() -> impl Strategy<Value = Value> {
    object_of(REST_KEYS, json_value(), 8)
}

proptest! {
    #[test]
    fn rest_types_write_back_what_they_read(v in prop_oneof![rest_object(), json_value()]) {
        round_trips::<models::Id>(&v)?;
        round_trips::<models::order::OrderUpdatePayload>(&v)?;
        round_trips::<models::notification::NotificationPayload>(&v)?;
        round_trips::<models::inventory::InventoryAlertPayload>(&v)?;
        round_trips::<models::message::BroadcastPayload>(&v)?;
    }
}

#[test]
fn the_model_of_the_rule_agrees_with_the_spec_examples() {
    for good in ["orders", "orders:12345", "a-b_C:1.2-x_y", &"x".repeat(64)] {
        assert!(is_valid_room(good), "{good}");
    }
    for bad in ["", ":x", "orders:", "a:b:c", "a.b", "ordérs", &"x".repeat(65)] {
        assert!(!is_valid_room(bad), "{bad}");
    }
}
