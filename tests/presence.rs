//! Presence and control on one instance (README, Presence and control), SHARDS=2 with sessions on
//! both shards (checked with the per-shard gauges): room counts and members
//! merged over the shards, the client's `presence` message (counts for
//! members, members for admins, `forbidden` for the others), user presence,
//! `join`/`leave` once per first and last session, and the disconnect API.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn ask_presence(ws: &mut Ws, room: &str) -> Value {
    send_json(ws, &json!({"type": "presence", "room": room}));
    next_json(ws, DEFAULT_DEADLINE)
}

fn member<'a>(presence: &'a Value, user: &str, role: &str) -> Option<&'a Value> {
    presence["members"].as_array()?.iter().find(|m| m["userId"] == user && m["role"] == role)
}

#[test]
fn room_presence_merges_both_shards() {
    let s = server().start();
    let mut sellers = s.connect_on_both_shards(4, |i| s.subscriber(&format!("u{i}"), "seller", &["orders"]));
    // u0 twice (its second session may land on either shard), and seller 0
    // and client 0 are two users.
    let _again = s.subscriber("u0", "seller", &["orders"]);
    let mut admin = s.subscriber("u0", "admin", &["orders"]);
    let n = sellers.len() as u64;

    let seen_by_admin = ask_presence(&mut admin, "orders");
    assert_eq!(seen_by_admin["type"], "presence", "{seen_by_admin}");
    assert_eq!(seen_by_admin["room"], "orders");
    let payload = &seen_by_admin["payload"];
    assert_eq!(payload["users"], json!(n + 1), "{payload}");
    assert_eq!(payload["connections"], json!(n + 2), "{payload}");
    assert_eq!(member(payload, "u0", "seller").map(|m| &m["connections"]), Some(&json!(2)), "{payload}");
    assert_eq!(member(payload, "u0", "admin").map(|m| &m["connections"]), Some(&json!(1)), "{payload}");
    assert_eq!(payload["members"].as_array().map(Vec::len), Some(n as usize + 1));

    let seen_by_seller = ask_presence(&mut sellers[1], "orders");
    assert_eq!(seen_by_seller["payload"], json!({"users": n + 1, "connections": n + 2}), "counts only");

    let api = s.get("/api/rooms/orders/presence");
    assert_eq!(api.status, 200, "{api:?}");
    let body = api.json();
    assert_eq!((body["room"].clone(), body["users"].clone()), (json!("orders"), json!(n + 1)), "{body}");
    assert_eq!(body["connections"], json!(n + 2));
    assert_eq!(body["members"], payload["members"], "the API lists the members as admins see them");

    let everyone = s.get("/api/rooms/all/presence").json();
    assert_eq!(everyone["connections"], json!(n + 2), "{everyone}");
    let empty = s.get("/api/rooms/inventory/presence").json();
    assert_eq!(empty, json!({"room": "inventory", "users": 0, "connections": 0, "members": []}));
    assert!(s.metric("realtime_presence_queries_total") >= 4.0);
}

#[test]
fn presence_is_for_members_only() {
    let s = server().start();
    let mut seller = s.subscriber("1", "seller", &["inventory"]);
    let _member = s.subscriber("2", "seller", &["orders"]);
    assert_error(&ask_presence(&mut seller, "orders"), "forbidden", "a room one could join but is not in");
    let mut client = s.subscriber("3", "client", &["cart"]);
    assert_error(&ask_presence(&mut client, "orders"), "forbidden", "a room one may not join");
    assert_error(&ask_presence(&mut client, "cart:4"), "forbidden", "another user's cart");
    assert_error(&ask_presence(&mut client, "bad room!"), "bad_request", "an invalid name");

    let own_cart = ask_presence(&mut client, "cart");
    assert_eq!(own_cart["room"], "cart", "named as the client wrote it: {own_cart}");
    assert_eq!(own_cart["payload"], json!({"users": 1, "connections": 1}));
    let everyone = ask_presence(&mut seller, "all");
    assert_eq!(everyone["payload"], json!({"users": 3, "connections": 3}), "{everyone}");
    assert_ping_pong(&mut seller);
}

#[test]
fn user_presence_lists_sessions_and_rooms_on_both_shards() {
    let s = server().start();
    let rooms = ["orders", "inventory"];
    let _sessions = s.connect_on_both_shards(2, |i| s.subscriber("7", "seller", &rooms[i % 2..=i % 2]));
    let n = _sessions.len() as u64;
    let _other = s.subscriber("8", "seller", &["products"]);

    let seven = s.get("/api/users/7/presence");
    assert_eq!(seven.status, 200, "{seven:?}");
    let seven = seven.json();
    assert_eq!(seven["userId"], "7");
    assert_eq!((seven["online"].clone(), seven["connections"].clone()), (json!(true), json!(n)), "{seven}");
    assert_eq!(seven["rooms"], json!(["all", "user:7", "inventory", "orders"]), "{seven}");
    assert_eq!(
        s.get("/api/users/nobody/presence").json(),
        json!({"userId": "nobody", "online": false, "connections": 0, "rooms": []})
    );
}

#[test]
fn presence_and_control_use_the_publishers_authentication() {
    let s = server().env("API_KEY", "k3y").start();
    for (method, path) in [
        ("GET", "/api/rooms/orders/presence"),
        ("GET", "/api/users/1/presence"),
        ("POST", "/api/users/1/disconnect"),
    ] {
        let r = http(s.port, method, path, &[], None);
        assert_eq!(r.status, 401, "{method} {path} without the key: {r:?}");
        let r = http(s.port, method, path, &[("X-API-Key", "k3y")], Some(""));
        assert!(r.status == 200 || r.status == 202, "{method} {path} with the key: {r:?}");
    }
    let key = [("Authorization", "Bearer k3y")];
    assert_eq!(http(s.port, "POST", "/api/rooms/orders/presence", &key, Some("")).status, 405);
    assert_eq!(http(s.port, "GET", "/api/users/1/disconnect", &key, None).status, 405);
    assert_eq!(http(s.port, "GET", "/api/rooms/orders/members", &key, None).status, 404);
    assert_eq!(http(s.port, "GET", "/api/rooms/no%20way/presence", &key, None).status, 400);
    let long = json!({"reason": "x".repeat(124)}).to_string();
    assert_eq!(http(s.port, "POST", "/api/users/1/disconnect", &key, Some(&long)).status, 400);
    assert_eq!(http(s.port, "POST", "/api/users/1/disconnect", &key, Some("{")).status, 400);
}

#[test]
fn disconnect_closes_every_session_of_the_user_with_4003() {
    let s = server().start();
    let mut target = s.connect_on_both_shards(2, |_| s.subscriber("42", "client", &["cart"]));
    let mut seller_42 = s.subscriber("42", "seller", &["orders"]);
    let mut bystander = s.subscriber("43", "client", &["cart"]);

    let r = s.publish("/api/users/42/disconnect", &json!({"reason": "account blocked"}));
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json(), json!({"userId": "42", "status": "accepted"}));
    // README: within a second; the bound here leaves room for a loaded machine.
    for ws in target.iter_mut().chain([&mut seller_42]) {
        assert_eq!(expect_close_frame(ws, Duration::from_secs(3)), (4003, "account blocked".to_owned()));
    }
    assert_ping_pong(&mut bystander);
    s.wait_connections(1);

    let mut again = s.subscriber("42", "client", &[]);
    assert_eq!(http(s.port, "POST", "/api/users/42/disconnect", &[], None).status, 202);
    assert_eq!(expect_close_frame(&mut again, Duration::from_secs(3)), (4003, "disconnected".to_owned()));
    assert_eq!(s.metric("realtime_disconnected_sessions_total"), (target.len() + 2) as f64);
    assert_eq!(s.metric("realtime_control_messages_total"), 2.0);
}

/// Reads until a `join`/`leave` of `user` arrives; returns the kinds of
/// every presence event read on the way, that one included.
fn until_presence_event(ws: &mut Ws, kind: &str, user: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let v = next_json(ws, DEFAULT_DEADLINE);
        if v["type"] == "join" || v["type"] == "leave" {
            assert_eq!(v["room"], "orders", "{v}");
            let who = v["payload"]["userId"].as_str().unwrap_or_default().to_owned();
            seen.push(format!("{} {who} {}", v["type"].as_str().unwrap_or_default(), v["payload"]["role"]));
            if v["type"] == kind && who == user {
                return seen;
            }
        }
    }
}

#[test]
fn join_and_leave_once_per_first_and_last_session() {
    let s = server().without_history().env("PRESENCE_EVENTS", "true").start();
    let mut watcher = s.subscriber("w", "admin", &["orders"]);
    assert_eq!(until_presence_event(&mut watcher, "join", "w"), ["join w \"admin\""]);

    let mut sessions = s.connect_on_both_shards(3, |_| s.subscriber("1", "seller", &["orders"]));
    assert_eq!(until_presence_event(&mut watcher, "join", "1"), ["join 1 \"seller\""]);
    let last = sessions.pop().expect("a session");
    for ws in sessions {
        close(ws);
    }
    s.wait_connections(2);
    // `all` and leaving through unsubscribe: no events for `all`.
    let mut quiet = s.subscriber("2", "seller", &["all"]);
    let marker = s.marker();
    let before = read_until_marker(&mut watcher, &marker);
    assert!(before.is_empty(), "nothing while one session of user 1 is left, nothing for all: {before:?}");
    assert_no_message_within(&mut watcher, Duration::from_millis(300));
    read_until_marker(&mut quiet, &marker);

    close(last);
    assert_eq!(until_presence_event(&mut watcher, "leave", "1"), ["leave 1 \"seller\""]);
    subscribe(&mut quiet, "orders");
    assert_eq!(until_presence_event(&mut watcher, "join", "2"), ["join 2 \"seller\""]);
    until_presence_event(&mut quiet, "join", "2");
    unsubscribe(&mut quiet, "orders");
    assert_eq!(until_presence_event(&mut watcher, "leave", "2"), ["leave 2 \"seller\""]);
    assert_eq!(s.metric("realtime_presence_events_total"), 5.0, "w, 1 and 2 joined; 1 and 2 left");
}

#[test]
fn no_presence_events_by_default() {
    let s = server().without_history().start();
    let mut watcher = s.subscriber("w", "admin", &["orders"]);
    let first = s.subscriber("1", "seller", &["orders"]);
    close(first);
    s.wait_connections(1);
    let marker = s.marker();
    expect_only_marker(&mut watcher, &marker, "watcher without PRESENCE_EVENTS");
}
