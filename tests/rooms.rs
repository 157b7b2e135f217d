//! Rooms and roles (README, Client protocol) seen by real clients: the role × room
//! matrix, scoped and personal rooms, invalid names, the room limit, and how
//! published events reach sessions on both shards (`send`, `broadcast`,
//! `all`, the `userId` filter). Also flood control (README, Client protocol).
//!
//! "Nothing else arrived" is always proven with a marker: an event published
//! afterwards to `all`, which every connection receives. Events from one
//! publisher reach each connection in publish order, so whatever a connection
//! should not get must not be there before its marker.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// The base rooms of the README's Client protocol section table, and one room it does not list.
const BASE_ROOMS: &[&str] =
    &["orders", "inventory", "products", "notifications", "cart", "myOrders", "deliveries"];
const UNLISTED: &str = "promotions";
const PERSONAL: &[&str] = &["cart", "myOrders"];

fn may_join(role: &str, room: &str) -> bool {
    role == "admin" || rooms_of(role).contains(&room)
}

#[test]
fn role_room_matrix() {
    let s = server().without_history().start();
    let rooms: Vec<&str> = BASE_ROOMS.iter().copied().chain([UNLISTED]).collect();
    // (user, socket, rooms joined)
    let mut conns = Vec::new();
    for (role, _) in ROLES {
        let user = format!("{role}-1");
        let (mut ws, _) = s.connect(&user, role);
        let mut joined = Vec::new();
        for room in &rooms {
            let v = subscribe_answer(&mut ws, room);
            if may_join(role, room) {
                assert_subscribed(&v, room);
                joined.push(*room);
            } else {
                assert_error(&v, "forbidden", &format!("{role} subscribing to {room}"));
            }
        }
        // every role is (and may say it is) in `all`
        subscribe(&mut ws, "all");
        conns.push((user, ws, joined));
    }

    // One event per shared room; one per personal room and user who joined it.
    let mut published: Vec<(String, Option<String>, String)> = Vec::new(); // (room, user, id)
    for room in &rooms {
        if PERSONAL.contains(room) {
            for (user, _, joined) in &conns {
                if joined.contains(room) {
                    let mut body = room_event(room, 0);
                    body["userId"] = json!(user);
                    published.push((room.to_string(), Some(user.clone()), s.broadcast(body)));
                }
            }
        } else {
            published.push((room.to_string(), None, s.broadcast(room_event(room, 0))));
        }
    }
    let marker = s.marker();

    for (user, ws, joined) in &mut conns {
        let want: Vec<String> = published
            .iter()
            .filter(|(room, owner, _)| {
                joined.contains(&room.as_str()) && owner.as_ref().is_none_or(|o| o == user)
            })
            .map(|(_, _, id)| id.clone())
            .collect();
        let got = read_until_marker(ws, &marker);
        assert_eq!(ids(&got), want, "{user} (joined {joined:?}) received {got:?}");
        for v in &got {
            assert!(joined.contains(&v["room"].as_str().unwrap_or("")), "{user} got {v}");
        }
    }
}

#[test]
fn scoped_rooms_match_exactly() {
    let s = server().without_history().start();
    let mut exact = s.subscriber("s1", "seller", &["orders:12345"]);
    let mut delivery = s.subscriber("d1", "delivery", &["orders:12345"]);
    let mut base = s.subscriber("s2", "seller", &["orders"]);
    let mut other = s.subscriber("s3", "seller", &["orders:999"]);

    // The base decides who may join; scopes take dots.
    let (mut client, _) = s.connect("c1", "client");
    assert_error(&subscribe_answer(&mut client, "orders:12345"), "forbidden", "client to orders:12345");
    subscribe(&mut other, "products:sku-1.blue_XL");

    let scoped = s.broadcast(json!({"room": "orders:12345", "type": "order_update",
        "payload": {"orderId": "12345", "status": "shipped"}}));
    let plain = s.broadcast(json!({"room": "orders", "type": "order_update",
        "payload": {"orderId": "1", "status": "paid"}}));
    let product = s.broadcast(room_event("products:sku-1.blue_XL", 1));
    let marker = s.marker();

    let got = read_until_marker(&mut exact, &marker);
    assert_eq!(ids(&got), [scoped.as_str()], "subscriber of orders:12345: {got:?}");
    assert_eq!(got[0]["room"], "orders:12345", "{}", got[0]);
    assert_eq!(got[0]["payload"], json!({"orderId": "12345", "status": "shipped"}), "{}", got[0]);
    assert_eq!(ids(&read_until_marker(&mut delivery, &marker)), [scoped]);
    assert_eq!(ids(&read_until_marker(&mut base, &marker)), [plain], "subscriber of orders");
    assert_eq!(ids(&read_until_marker(&mut other, &marker)), [product], "subscriber of orders:999");
    expect_only_marker(&mut client, &marker, "client");
}

#[test]
fn personal_room_scopes_are_checked() {
    let s = server().without_history().start();
    let (mut c1, _) = s.connect("c1", "client");
    // one's own scope is allowed and named as written
    subscribe(&mut c1, "cart:c1");
    subscribe(&mut c1, "myOrders:c1");
    for room in ["cart:c2", "myOrders:c2", "cart:c10", "myOrders:c"] {
        assert_error(&subscribe_answer(&mut c1, room), "forbidden", &format!("c1 to {room}"));
    }
    // roles without the base may not join even their own
    let (mut seller, _) = s.connect("s1", "seller");
    for room in ["cart", "cart:s1", "myOrders:s1"] {
        assert_error(&subscribe_answer(&mut seller, room), "forbidden", &format!("seller to {room}"));
    }
    let (mut d, _) = s.connect("d1", "delivery");
    assert_error(&subscribe_answer(&mut d, "myOrders"), "forbidden", "delivery to myOrders");

    // `cart:c1` is the same room as c1's `cart`
    let mine =
        s.broadcast(json!({"room": "cart", "userId": "c1", "type": "cart_update", "payload": {"items": 2}}));
    let theirs = s.broadcast(json!({"room": "cart", "userId": "c2", "type": "cart_update", "payload": {}}));
    let marker = s.marker();
    let got = read_until_marker(&mut c1, &marker);
    assert_eq!(ids(&got), [mine], "c1 got {got:?} (c2's event was {theirs})");
    assert_eq!(got[0]["room"], "cart", "{}", got[0]);
    assert_eq!(got[0]["userId"], "c1", "{}", got[0]);
    expect_only_marker(&mut seller, &marker, "seller");
}

#[test]
fn invalid_room_names_are_bad_requests() {
    let s = server().start();
    let (mut ws, _) = s.connect("a1", "admin");
    let long = "x".repeat(65);
    let long_scope = format!("orders:{}", "1".repeat(65));
    let bad: Vec<Value> = [
        "",
        "a b",
        "orders:",
        ":123",
        "orders:1:2",
        "ord/ers",
        "orders:a b",
        "a.b",
        "ünï",
        "orders\n",
        "*",
        long.as_str(),
        long_scope.as_str(),
    ]
    .iter()
    .map(|r| json!(r))
    .chain([json!(null), json!(12), json!(["orders"]), json!({"name": "orders"})])
    .collect();
    for room in &bad {
        for kind in ["subscribe", "unsubscribe"] {
            send_json(&mut ws, &json!({"type": kind, "room": room}));
            let v = next_json(&mut ws, DEFAULT_DEADLINE);
            assert_error(&v, "bad_request", &format!("{kind} {room}"));
        }
    }
    // no room at all
    send_json(&mut ws, &json!({"type": "subscribe"}));
    assert_error(&next_json(&mut ws, DEFAULT_DEADLINE), "bad_request", "subscribe without room");

    // the limits themselves are fine
    subscribe(&mut ws, &"x".repeat(64));
    subscribe(&mut ws, &format!("orders:{}", "1".repeat(64)));
    subscribe(&mut ws, "A-b_9:x.Y-z_0");
    // and the connection is still open
    assert_ping_pong(&mut ws);
}

#[test]
fn subscribe_twice_unsubscribe_and_all() {
    let s = server().without_history().start();
    let (mut ws, _) = s.connect("s1", "seller");
    subscribe(&mut ws, "orders");
    subscribe(&mut ws, "orders");
    let first = s.broadcast(room_event("orders", 1));
    let marker = s.marker();
    assert_eq!(ids(&read_until_marker(&mut ws, &marker)), [first], "one copy after subscribing twice");

    unsubscribe(&mut ws, "orders");
    let after = s.broadcast(room_event("orders", 2));
    let marker = s.marker();
    let got = read_until_marker(&mut ws, &marker);
    assert!(got.is_empty(), "received {got:?} after unsubscribing (event {after})");
    // unsubscribing again (no longer in it) is harmless
    unsubscribe(&mut ws, "orders");

    // `all` cannot be left; subscribing to it is fine
    subscribe(&mut ws, "all");
    assert_error(&unsubscribe_answer(&mut ws, "all"), "bad_request", "unsubscribe from all");
    let everyone = s.broadcast(room_event("all", 3));
    expect_event(&mut ws, &everyone);
    // still there afterwards: only the one copy
    let marker = s.marker();
    expect_only_marker(&mut ws, &marker, "after all");
}

#[test]
fn at_most_128_rooms_per_connection() {
    let s = server().without_history().start();
    let (mut ws, _) = s.connect("a1", "admin");
    for i in 0..128 {
        subscribe(&mut ws, &format!("room-{i}"));
    }
    assert_error(&subscribe_answer(&mut ws, "room-128"), "bad_request", "129th room");
    // `all` is not one of the 128, and repeating a subscription is harmless
    subscribe(&mut ws, "all");
    subscribe(&mut ws, "room-5");
    // leaving one makes room for another
    unsubscribe(&mut ws, "room-0");
    subscribe(&mut ws, "room-128");
    assert_error(&subscribe_answer(&mut ws, "room-129"), "bad_request", "129th room again");

    let last = s.broadcast(room_event("room-128", 0));
    let refused = s.broadcast(room_event("room-129", 0));
    let left = s.broadcast(room_event("room-0", 0));
    let kept = s.broadcast(room_event("room-127", 0));
    let marker = s.marker();
    let got = read_until_marker(&mut ws, &marker);
    assert_eq!(ids(&got), [last, kept], "(refused {refused}, left {left})");
}

#[test]
fn clients_never_see_each_others_personal_events() {
    let s = server().without_history().start();
    let mut c1 = s.subscriber("c1", "client", &["cart", "myOrders"]);
    let mut c1_other_tab = s.subscriber("c1", "client", &["cart"]);
    let mut c2 = s.subscriber("c2", "client", &["cart", "myOrders"]);
    let mut c3 = s.subscriber("c3", "client", &["notifications"]);
    // someone whose id starts like c1's
    let mut c10 = s.subscriber("c10", "client", &["cart", "myOrders"]);

    let cart =
        |user: &str| json!({"room": "cart", "userId": user, "type": "cart_update", "payload": {"for": user}});
    let orders = |user: &str| {
        json!({"room": "myOrders", "userId": user, "type": "order_update",
               "payload": {"orderId": format!("o-{user}"), "status": "shipped"}})
    };
    let cart1 = s.broadcast(cart("c1"));
    let orders2 = s.broadcast(orders("c2"));
    let cart2 = s.broadcast(cart("c2"));
    let orders1 = s.broadcast(orders("c1"));
    // `send` with a room is `broadcast` with that user
    let sent1 =
        s.send(json!({"userId": "c1", "room": "cart", "type": "cart_update", "payload": {"for": "c1"}}));
    let marker = s.marker();

    let got = read_until_marker(&mut c1, &marker);
    assert_eq!(ids(&got), [cart1.clone(), orders1, sent1.clone()], "c1: {got:?}");
    assert!(got.iter().all(|v| v["userId"] == "c1"), "c1: {got:?}");
    let got = read_until_marker(&mut c1_other_tab, &marker);
    assert_eq!(ids(&got), [cart1, sent1], "c1's second session (cart only): {got:?}");
    let got = read_until_marker(&mut c2, &marker);
    assert_eq!(ids(&got), [orders2, cart2], "c2: {got:?}");
    assert!(got.iter().all(|v| v["userId"] == "c2"), "c2: {got:?}");
    expect_only_marker(&mut c3, &marker, "c3");
    expect_only_marker(&mut c10, &marker, "c10");
}

#[test]
fn admin_watches_a_users_cart() {
    let s = server().without_history().start();
    let mut c1 = s.subscriber("c1", "client", &["cart"]);
    let mut c2 = s.subscriber("c2", "client", &["cart", "myOrders"]);
    let (mut admin, _) = s.connect("root", "admin");
    subscribe(&mut admin, "cart:c1");
    subscribe(&mut admin, "myOrders:c1");
    // an admin's own `cart` is its own room, not everybody's
    let mut admin2 = s.subscriber("root2", "admin", &["cart", "myOrders"]);

    let cart1 =
        s.broadcast(json!({"room": "cart", "userId": "c1", "type": "cart_update", "payload": {"n": 1}}));
    let cart2 =
        s.broadcast(json!({"room": "cart", "userId": "c2", "type": "cart_update", "payload": {"n": 2}}));
    let orders1 = s.broadcast(json!({"room": "myOrders", "userId": "c1", "type": "order_update",
        "payload": {"orderId": "7", "status": "delivered"}}));
    let orders2 = s.broadcast(json!({"room": "myOrders", "userId": "c2", "type": "order_update",
        "payload": {"orderId": "8", "status": "delivered"}}));
    let marker = s.marker();

    let got = read_until_marker(&mut admin, &marker);
    assert_eq!(ids(&got), [cart1.clone(), orders1], "admin watching c1: {got:?}");
    assert_eq!(got[0]["room"], "cart", "{}", got[0]);
    assert_eq!(got[0]["userId"], "c1", "{}", got[0]);
    assert_eq!(ids(&read_until_marker(&mut c1, &marker)), [cart1], "c1 (cart only)");
    assert_eq!(ids(&read_until_marker(&mut c2, &marker)), [cart2, orders2], "c2");
    expect_only_marker(&mut admin2, &marker, "admin subscribed to its own cart");
}

#[test]
fn send_reaches_every_session_of_the_user_on_both_shards() {
    let s = server().without_history().start();
    let mut sessions = s.connect_on_both_shards(8, |i| {
        let (mut ws, _) = s.connect("multi", "client");
        if i % 2 == 0 {
            subscribe(&mut ws, "notifications");
        }
        ws
    });
    let mut other = s.subscriber("other", "client", &["notifications"]);
    // a numeric userId names the same user as its decimal string
    let mut numeric = s.connect_on_both_shards(4, |_| s.connect("42", "seller").0);

    let payload = json!({"title": "Hello", "message": "Your order shipped", "priority": "high", "action": {"url": "/o/1"}});
    let everywhere = s.send(json!({"userId": "multi", "type": "notification", "payload": payload}));
    let in_room = s.send(json!({"userId": "multi", "room": "notifications", "type": "notification",
        "payload": {"title": "t", "message": "m"}}));
    let to_42 =
        s.send(json!({"userId": 42, "type": "notification", "payload": {"title": "t", "message": "m"}}));
    let marker = s.marker();

    for (i, ws) in sessions.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        let want =
            if i % 2 == 0 { vec![everywhere.clone(), in_room.clone()] } else { vec![everywhere.clone()] };
        assert_eq!(ids(&got), want, "session {i} of multi: {got:?}");
        let v = &got[0];
        assert_eq!(v["type"], "notification", "{v}");
        assert_eq!(v["userId"], "multi", "{v}");
        assert_eq!(v["payload"], payload, "{v}");
        assert_eq!(v["room"], "user:multi", "a send without a room is an event of user:U: {v}");
        assert!(is_rfc3339_millis_utc(v["timestamp"].as_str().unwrap_or("")), "{v}");
        if i % 2 == 0 {
            assert_eq!(got[1]["room"], "notifications", "{}", got[1]);
        }
    }
    for (i, ws) in numeric.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        assert_eq!(ids(&got), [to_42.as_str()], "session {i} of user 42: {got:?}");
        assert_eq!(got[0]["userId"], "42", "the envelope carries the userId as a string: {}", got[0]);
    }
    expect_only_marker(&mut other, &marker, "other user");
}

/// An event is posted only to the shards that may have someone it is for:
/// with one client, the other shard takes none of the `send`s to its user
/// nor the broadcasts to its room, from whichever shard took the publish
/// (each publish is a connection of its own, so both shards take some),
/// with history (where the room's owner shard puts each event in order) and
/// without.
#[test]
fn events_reach_only_the_shards_that_have_someone_they_are_for() {
    for history in [false, true] {
        let s = if history { server().start() } else { server().without_history().start() };
        let mut ws = s.subscriber("lone", "client", &["notifications"]);
        let other = if s.shard_gauges().0 == 1.0 { 1 } else { 0 };
        for n in 0..20 {
            s.send(json!({"userId": "lone", "type": "t", "payload": {"n": n}}));
            s.broadcast(json!({"room": "notifications", "type": "t", "payload": {"n": n}}));
        }
        // Every one arrives (with history, not in publish order across the two streams).
        let mut got: Vec<u64> =
            (0..40).filter_map(|_| next_json(&mut ws, DEFAULT_DEADLINE)["payload"]["n"].as_u64()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..40).map(|i| i / 2).collect::<Vec<u64>>(), "history {history}");
        let posted = s.metric(&format!("realtime_shard_inbox_events_total{{shard=\"{other}\"}}"));
        assert_eq!(posted, 0.0, "history {history}: events posted to the shard without the client");
    }
}

#[test]
fn broadcast_reaches_every_member_once_and_nobody_else() {
    let s = server().without_history().start();
    let mut members = s.connect_on_both_shards(10, |i| s.subscriber(&format!("s{i}"), "seller", &["orders"]));
    let mut outsiders: Vec<(String, Ws)> = vec![
        ("seller without orders".into(), s.subscriber("x1", "seller", &["inventory", "orders:1"])),
        ("client".into(), s.subscriber("x2", "client", &["notifications"])),
        ("delivery in deliveries".into(), s.subscriber("x3", "delivery", &["deliveries"])),
        ("admin elsewhere".into(), s.subscriber("x4", "admin", &["products"])),
    ];
    // one member's second session, not in the room
    outsiders.push(("s0 second session".into(), s.connect("s0", "seller").0));
    let n = members.len();

    let payload = json!({"orderId": "12345", "status": "shipped", "extra": [1, 2, 3]});
    let id = s.broadcast(json!({"room": "orders", "type": "order_update", "payload": payload}));
    let marker = s.marker();

    let mut copies = 0;
    for (i, ws) in members.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        assert_eq!(ids(&got), [id.as_str()], "member {i} of {n}: {got:?}");
        let v = &got[0];
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["id", "payload", "room", "timestamp", "type"], "{v}");
        assert_eq!(v["type"], "order_update", "{v}");
        assert_eq!(v["room"], "orders", "{v}");
        assert_eq!(v["payload"], payload, "{v}");
        assert!(is_rfc3339_millis_utc(v["timestamp"].as_str().unwrap_or("")), "{v}");
        copies += got.len();
    }
    assert_eq!(copies, n, "one copy per member");
    for (who, ws) in &mut outsiders {
        expect_only_marker(ws, &marker, who);
    }
}

#[test]
fn all_reaches_every_connection_and_user_id_narrows_it() {
    let s = server().without_history().start();
    let mut conns = s.connect_on_both_shards(8, |i| {
        let (role, _) = ROLES[i % ROLES.len()];
        s.connect(&format!("u{}", i % 5), role).0
    });
    let everyone = s
        .broadcast(json!({"room": "all", "type": "broadcast", "payload": {"message": "maintenance at 2am"}}));
    let to_u1 = s.broadcast(
        json!({"room": "all", "userId": "u1", "type": "broadcast", "payload": {"message": "hi u1"}}),
    );
    let marker = s.marker();
    for (i, ws) in conns.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        let want = if i % 5 == 1 { vec![everyone.clone(), to_u1.clone()] } else { vec![everyone.clone()] };
        assert_eq!(ids(&got), want, "connection {i} (user u{}): {got:?}", i % 5);
        assert_eq!(got[0]["room"], "all", "{}", got[0]);
        assert_eq!(got[0]["payload"], json!({"message": "maintenance at 2am"}), "{}", got[0]);
    }
}

#[test]
fn user_id_filter_on_a_room() {
    let s = server().without_history().start();
    let mut in_room = s.subscriber("s1", "seller", &["orders"]);
    let mut in_room_too = s.subscriber("s1", "seller", &["orders", "inventory"]);
    let mut not_in_room = s.subscriber("s1", "seller", &["inventory"]);
    let mut someone_else = s.subscriber("s2", "seller", &["orders"]);
    let mut admin = s.subscriber("a", "admin", &["orders"]);

    let filtered = s.broadcast(json!({"room": "orders", "userId": "s1", "type": "order_update",
        "payload": {"orderId": "1", "status": "paid"}}));
    let sent = s.send(json!({"room": "orders", "userId": "s1", "type": "order_update",
        "payload": {"orderId": "2", "status": "paid"}}));
    let marker = s.marker();

    for (who, ws) in [("s1 in orders", &mut in_room), ("s1 in orders and inventory", &mut in_room_too)] {
        let got = read_until_marker(ws, &marker);
        assert_eq!(ids(&got), [filtered.clone(), sent.clone()], "{who}: {got:?}");
        assert!(got.iter().all(|v| v["userId"] == "s1" && v["room"] == "orders"), "{who}: {got:?}");
    }
    expect_only_marker(&mut not_in_room, &marker, "s1 not in orders");
    expect_only_marker(&mut someone_else, &marker, "s2 in orders");
    expect_only_marker(&mut admin, &marker, "admin in orders");
}

#[test]
fn flooding_client_is_rate_limited_then_closed_with_1008() {
    let s = server().start();
    let (mut flooder, _) = s.connect("f1", "client");
    let (mut neighbour, _) = s.connect("f2", "client");

    // Send pings in chunks and read every answer (one per message: `pong`,
    // or a `rate_limited` error). A chunk never holds more messages than
    // refusals are left before the 100th, so nothing is sent after the
    // close (which could turn it into a reset).
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut sent, mut refused) = (0u32, 0u32);
    while refused < 100 {
        assert!(Instant::now() < deadline && sent < 20_000, "only {refused} refusals after {sent} messages");
        let chunk = 50.min(100 - refused);
        for _ in 0..chunk {
            send_json(&mut flooder, &json!({"type": "ping"}));
        }
        sent += chunk;
        for _ in 0..chunk {
            let v = next_json(&mut flooder, DEFAULT_DEADLINE);
            if v["type"] == "error" {
                assert_error(&v, "rate_limited", "flood answer");
                refused += 1;
            } else {
                assert_eq!(v, json!({"type": "pong"}), "flood answer");
            }
        }
    }
    assert!(sent > 200, "refused within the burst of 200 ({sent} sent)");
    assert!(s.metric("realtime_rate_limited_total") >= 1.0, "realtime_rate_limited_total not counted");

    // Going on: the next refusal closes the connection with 1008. Short
    // bursts, so that the refill (100/s) cannot keep up however slow the
    // round trip; whatever follows the closing message is drained by the
    // server, and nothing is sent once the close is seen.
    'flood: loop {
        assert!(Instant::now() < deadline && sent < 20_000, "not closed after {sent} messages");
        for _ in 0..10 {
            let _ = flooder.send(tungstenite::Message::text(r#"{"type":"ping"}"#));
        }
        sent += 10;
        for _ in 0..10 {
            match next_event(&mut flooder, DEFAULT_DEADLINE) {
                Some(Event::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON");
                    assert_eq!(v, json!({"type": "pong"}), "after 100 refusals, only a pong or the close");
                }
                Some(Event::Ping) | Some(Event::Pong) => {}
                Some(Event::Close(code)) => {
                    assert_eq!(code, Some(1008), "close code for flooding");
                    break 'flood;
                }
                other => panic!("expected a pong or close 1008, got {other:?}\n{}", s.output_dump()),
            }
        }
    }
    // flood control is per connection
    assert_ping_pong(&mut neighbour);
    drop(flooder);
    s.wait_connections(1);
}
