//! The server's HTTP API as tests use it: `/health` (read and waited on) and
//! the publish endpoints, with the 202 answer checked.

use std::time::Duration;

use serde_json::{json, Value};

use super::{http, poll, HttpResponse, Server, DEFAULT_DEADLINE};

pub const SEND: &str = "/api/notifications/send";
pub const BROADCAST: &str = "/api/notifications/broadcast";

/// `POST path` with a JSON body (as text) and extra headers.
pub fn publish(port: u16, path: &str, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http(port, "POST", path, headers, Some(body))
}

/// Asserts a 202 `{"id":<non-empty string>,"status":"accepted"}` and returns the id.
pub fn accepted_id(r: &HttpResponse, what: &str) -> String {
    assert_eq!(r.status, 202, "{what}: {r:?}");
    let v = r.json();
    assert_eq!(v["status"], "accepted", "{what}: {v}");
    let id = v["id"].as_str().unwrap_or_else(|| panic!("{what}: no string id in {v}"));
    assert!(!id.is_empty(), "{what}: empty id in {v}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{what}: unexpected keys in {v}");
    id.to_string()
}

/// A body for `broadcast` with a type that takes any payload.
pub fn room_event(room: &str, n: u64) -> Value {
    json!({"room": room, "type": "test_event", "payload": {"n": n}})
}

impl Server {
    pub fn get(&self, path: &str) -> HttpResponse {
        http(self.port, "GET", path, &[], None)
    }

    pub fn health(&self) -> Value {
        let r = self.get("/health");
        assert_eq!(r.status, 200, "/health: {r:?}\n{}", self.output_dump());
        r.json()
    }

    /// Poll `/health` until `connections` equals `n` (bounded).
    pub fn wait_connections(&self, n: u64) -> Value {
        let counted = |h: &Value| h["connections"].as_u64() == Some(n);
        poll(DEFAULT_DEADLINE, Duration::from_millis(50), || self.health(), counted).unwrap_or_else(|h| {
            panic!("/health connections stayed {} (wanted {n})\n{}", h["connections"], self.output_dump())
        })
    }

    /// Polls `/health` until `field` equals `value` (bounded); returns it.
    pub fn wait_health(&self, field: &str, value: &Value, timeout: Duration) -> Value {
        poll(timeout, Duration::from_millis(50), || self.health(), |h| &h[field] == value).unwrap_or_else(
            |h| {
                panic!(
                    "/health {field} stayed {} (wanted {value}) for {timeout:?}\n{}",
                    h[field],
                    self.output_dump()
                )
            },
        )
    }

    /// `POST path` with a JSON body, no extra headers.
    pub fn publish(&self, path: &str, body: &Value) -> HttpResponse {
        publish(self.port, path, &body.to_string(), &[])
    }

    /// Publishes and asserts 202; returns the event id.
    pub fn publish_ok(&self, path: &str, body: &Value) -> String {
        let r = self.publish(path, body);
        if r.status != 202 {
            panic!("POST {path} {body} answered {r:?}\n{}", self.output_dump());
        }
        accepted_id(&r, &format!("POST {path} {body}"))
    }

    pub fn broadcast(&self, body: Value) -> String {
        self.publish_ok(BROADCAST, &body)
    }

    pub fn send(&self, body: Value) -> String {
        self.publish_ok(SEND, &body)
    }

    /// Broadcasts a `marker` event to `all` (every connection gets it).
    pub fn marker(&self) -> String {
        self.broadcast(json!({"room": "all", "type": "marker", "payload": {}}))
    }
}
