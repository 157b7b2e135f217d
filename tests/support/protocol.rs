//! The service's message protocol on the WebSocket side (README, Client protocol and Publish API):
//! connecting as a user, `connected`, subscribing to rooms, errors, and
//! proving with a marker event what arrived and what did not.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    next_event, next_json, rooms_of, send_json, token, ws_connect, Event, Server, Ws, DEFAULT_DEADLINE,
    SECRET,
};

impl Server {
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?token={}", self.port, token)
    }

    /// Connect with `?token=` and return the socket with `connected` consumed.
    pub fn connect(&self, user_id: &str, role: &str) -> (Ws, Value) {
        let token = token(SECRET, user_id, role);
        self.connect_token(&token)
    }

    pub fn connect_token(&self, token: &str) -> (Ws, Value) {
        let mut ws = ws_connect(&self.ws_url(token))
            .unwrap_or_else(|e| panic!("ws connect failed: {e}\n{}", self.output_dump()));
        let hello = next_json(&mut ws, DEFAULT_DEADLINE);
        assert_eq!(hello["type"], "connected", "first message: {hello}");
        (ws, hello)
    }

    /// Connects and subscribes to every room in `rooms`.
    pub fn subscriber(&self, user_id: &str, role: &str, rooms: &[&str]) -> Ws {
        let (mut ws, _) = self.connect(user_id, role);
        for room in rooms {
            subscribe(&mut ws, room);
        }
        ws
    }

    /// Opens connections with `open(i)` (at least `min`, at most 64) until
    /// both shards hold some of them. Counts through the shard gauges: the
    /// difference before and after, so other open connections do not count.
    pub fn connect_on_both_shards(&self, min: usize, mut open: impl FnMut(usize) -> Ws) -> Vec<Ws> {
        let before = self.shard_gauges();
        let base = self.health()["connections"].as_u64().expect("connections");
        let mut out = Vec::new();
        loop {
            while out.len() < min {
                out.push(open(out.len()));
            }
            self.wait_connections(base + out.len() as u64);
            let after = self.shard_gauges();
            let (a, b) = (after.0 - before.0, after.1 - before.1);
            if a > 0.0 && b > 0.0 {
                return out;
            }
            assert!(out.len() < 64, "{} connections all landed on one shard ({a}, {b})", out.len());
            out.push(open(out.len()));
        }
    }
}

/// Send `{"type":"ping"}` and expect `{"type":"pong"}` as the next message.
pub fn assert_ping_pong(ws: &mut Ws) {
    send_json(ws, &json!({"type": "ping"}));
    let v = next_json(ws, DEFAULT_DEADLINE);
    assert_eq!(v, json!({"type": "pong"}), "answer to ping");
}

/// Checks `connected` per README's Client protocol section for `user_id`/`role`.
pub fn assert_connected(v: &Value, user_id: &str, role: &str) {
    assert_eq!(v["type"], "connected", "{v}");
    assert_eq!(v["payload"]["userId"], json!(user_id), "userId in {v}");
    assert_eq!(v["payload"]["role"], json!(role), "role in {v}");
    assert_eq!(v["payload"]["rooms"], json!(rooms_of(role)), "rooms in {v}");
    let joined = v["payload"]["joined"].as_array().unwrap_or_else(|| panic!("joined is not a list in {v}"));
    assert_eq!(joined[..2], [json!("all"), json!(format!("user:{user_id}"))], "joined in {v}");
    assert!(v["payload"]["exp"].is_u64(), "exp in {v}");
    let ts = v["timestamp"].as_str().unwrap_or_else(|| panic!("timestamp is not a string in {v}"));
    assert!(is_rfc3339_millis_utc(ts), "timestamp {ts:?} in {v}");
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`
pub fn is_rfc3339_millis_utc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 24 {
        return false;
    }
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    digits.iter().all(|&i| b[i].is_ascii_digit())
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
}

/// Sends `subscribe` for `room` and returns the answer.
pub fn subscribe_answer(ws: &mut Ws, room: &str) -> Value {
    send_json(ws, &json!({"type": "subscribe", "room": room}));
    next_json(ws, DEFAULT_DEADLINE)
}

/// Subscribes and asserts `{"type":"subscribed","room":<room>}`, with the
/// room's `offset` and `epoch` when history is on.
pub fn subscribe(ws: &mut Ws, room: &str) -> Value {
    let v = subscribe_answer(ws, room);
    assert_subscribed(&v, room);
    v
}

/// Asserts `v` is `subscribed` for `room`: with history on, with its
/// position (an integer offset, a non-empty epoch) and nothing else.
pub fn assert_subscribed(v: &Value, room: &str) {
    let mut plain = v.clone();
    let position = plain.as_object_mut().map(|o| (o.remove("offset"), o.remove("epoch")));
    assert_eq!(plain, json!({"type": "subscribed", "room": room}), "answer to subscribe {room:?}");
    match position {
        Some((Some(offset), Some(epoch))) => {
            assert!(offset.is_u64() && epoch.as_str().is_some_and(|e| !e.is_empty()), "position in {v}")
        }
        Some((None, None)) => {}
        _ => panic!("offset and epoch come together: {v}"),
    }
}

/// Sends `unsubscribe` for `room` and returns the answer.
pub fn unsubscribe_answer(ws: &mut Ws, room: &str) -> Value {
    send_json(ws, &json!({"type": "unsubscribe", "room": room}));
    next_json(ws, DEFAULT_DEADLINE)
}

/// Unsubscribes and asserts `{"type":"unsubscribed","room":<room>}`.
pub fn unsubscribe(ws: &mut Ws, room: &str) {
    let v = unsubscribe_answer(ws, room);
    assert_eq!(v, json!({"type": "unsubscribed", "room": room}), "answer to unsubscribe {room:?}");
}

/// Asserts `v` is `{"type":"error","payload":{"code":<code>,"message":<non-empty>}}`.
pub fn assert_error(v: &Value, code: &str, what: &str) {
    assert_eq!(v["type"], "error", "{what}: {v}");
    assert_eq!(v["payload"]["code"], code, "{what}: {v}");
    assert!(v["payload"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: message in {v}");
}

/// The next message (pings skipped) must be the event with this `id`.
pub fn expect_event(ws: &mut Ws, id: &str) -> Value {
    let v = next_json(ws, DEFAULT_DEADLINE);
    assert_eq!(v["id"], id, "expected the event {id}, got {v}");
    v
}

/// Reads messages (pings skipped) until the one whose `id` is `marker`;
/// returns the messages that came before it. Panics when the marker does not
/// arrive within the default deadline.
pub fn read_until_marker(ws: &mut Ws, marker: &str) -> Vec<Value> {
    let deadline = Instant::now() + DEFAULT_DEADLINE;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(ws, left) {
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t)
                    .unwrap_or_else(|e| panic!("text frame is not JSON ({e}): {t:?}"));
                if v["id"] == marker {
                    return before;
                }
                before.push(v);
            }
            Some(Event::Ping) | Some(Event::Pong) => continue,
            Some(other) => panic!("waiting for marker {marker}: got {other:?} after {before:?}"),
            None => {
                panic!("marker {marker} not received within {DEFAULT_DEADLINE:?}; got before it: {before:?}")
            }
        }
    }
}

/// The ids of `events`, in order.
pub fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|v| v["id"].as_str().unwrap_or("<no id>").to_string()).collect()
}

/// Marker proof: the next message is the marker, nothing came before it.
pub fn expect_only_marker(ws: &mut Ws, marker: &str, who: &str) {
    let before = read_until_marker(ws, marker);
    assert!(before.is_empty(), "{who}: received before the marker: {before:?}");
}

/// A bounded read that expects nothing but pings for `dur`. Use it only
/// after a marker proof (something published later did arrive), never as
/// the only evidence that something does not arrive.
pub fn assert_no_message_within(ws: &mut Ws, dur: Duration) {
    let deadline = Instant::now() + dur;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match next_event(ws, left) {
            None => return,
            Some(Event::Ping) | Some(Event::Pong) => continue,
            Some(other) => panic!("expected no message within {dur:?}, got {other:?}"),
        }
    }
}
