//! Several instances through Redis (README, Several instances): real `redis-server` processes
//! on free ports, two `realtime` instances (SHARDS=2 each) on one Redis,
//! real clients on both.
//!
//! As in the room tests, "nothing else arrived" is proven with a marker
//! published afterwards to `all`: Redis hands every subscriber the messages
//! in the order it took them, and a publish is answered 202 only once Redis
//! has taken it.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// Time for an instance to (re)connect every shard's links; the backoff is
/// capped at 5 s.
const REDIS_DEADLINE: Duration = Duration::from_secs(30);

/// An instance on `url`, once `/health` says Redis is `connected`.
fn instance(url: &str) -> Server {
    let s = server().env("REDIS_URL", url).start();
    s.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let r = s.get("/ready");
    assert_eq!(r.status, 200, "/ready with Redis connected: {r:?}");
    s
}

fn pair(redis: &RedisServer) -> (Server, Server) {
    (instance(&redis.url()), instance(&redis.url()))
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn event_published_on_one_instance_reaches_both_once() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis);
    let mut on_a = a.connect_on_both_shards(4, |i| a.subscriber(&format!("a{i}"), "seller", &["orders"]));
    let mut on_b = b.connect_on_both_shards(4, |i| b.subscriber(&format!("b{i}"), "delivery", &["orders"]));
    let mut outsiders =
        vec![a.subscriber("xa", "seller", &["inventory"]), b.subscriber("xb", "client", &["notifications"])];

    let payload = json!({"orderId": "12345", "status": "shipped"});
    let from_a = a.broadcast(json!({"room": "orders", "type": "order_update", "payload": payload}));
    let from_b = b.broadcast(json!({"room": "orders", "type": "order_update", "payload": payload}));
    let marker = a.marker();

    for (i, ws) in on_a.iter_mut().chain(on_b.iter_mut()).enumerate() {
        let got = read_until_marker(ws, &marker);
        assert_eq!(ids(&got), [from_a.clone(), from_b.clone()], "member {i}: {got:?}");
        for v in &got {
            assert_eq!(v["room"], "orders", "{v}");
            assert_eq!(v["payload"], payload, "{v}");
            assert!(is_rfc3339_millis_utc(v["timestamp"].as_str().unwrap_or("")), "{v}");
        }
    }
    for ws in &mut outsiders {
        expect_only_marker(ws, &marker, "non-member");
    }
    assert_eq!(a.get("/ready").status, 200);
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn send_reaches_a_user_connected_to_both_instances() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis);
    let mut sessions = a.connect_on_both_shards(2, |_| a.subscriber("u1", "client", &["notifications"]));
    let on_a = sessions.len();
    sessions.extend(b.connect_on_both_shards(2, |_| b.connect("u1", "client").0));
    let mut others = vec![a.subscriber("u2", "client", &["notifications"]), b.connect("u2", "client").0];

    let everywhere = b.send(json!({"userId": "u1", "type": "notification",
        "payload": {"title": "Hi", "message": "to every session"}}));
    let in_room = a.send(json!({"userId": "u1", "room": "notifications", "type": "notification",
        "payload": {"title": "Hi", "message": "only in notifications"}}));
    let marker = b.marker();

    for (i, ws) in sessions.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        // the sessions on A are in `notifications`, those on B are not
        let want =
            if i < on_a { vec![everywhere.clone(), in_room.clone()] } else { vec![everywhere.clone()] };
        assert_eq!(ids(&got), want, "session {i}: {got:?}");
        assert!(got.iter().all(|v| v["userId"] == "u1"), "{got:?}");
    }
    for ws in &mut others {
        expect_only_marker(ws, &marker, "u2");
    }
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn external_publish_is_delivered_with_id_and_timestamp() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis);
    let mut clients = a.connect_on_both_shards(2, |_| a.subscriber("c1", "client", &["myOrders"]));
    clients.extend(b.connect_on_both_shards(2, |_| b.subscriber("c1", "client", &["myOrders"])));
    let mut other = b.subscriber("c2", "client", &["myOrders"]);

    // Every shard of every instance has its own subscriber.
    let plain = json!({"type": "order_update", "room": "myOrders", "userId": "c1",
        "payload": {"orderId": "A-1", "status": "delivered"}});
    let receivers = redis.publish("realtime:orders", &plain.to_string());
    assert_eq!(receivers, 4, "subscribers on realtime:orders (2 instances x 2 shards)");

    // With id and timestamp given, they are kept.
    let given = json!({"id": "01HZZZZZZZZZZZZZZZZZZZZZZZ", "type": "order_update", "room": "myOrders",
        "userId": "c1", "payload": {"orderId": "A-2", "status": "paid"}, "timestamp": "2026-11-27T18:00:00.000Z"});
    redis.publish("realtime:orders", &given.to_string());
    let marker = a.marker();

    let mut first_id: Option<String> = None;
    for (i, ws) in clients.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        assert_eq!(got.len(), 2, "session {i}: {got:?}");
        let v = &got[0];
        let id = v["id"].as_str().unwrap_or_else(|| panic!("no id filled in {v}"));
        assert!(!id.is_empty(), "{v}");
        assert_ne!(id, marker, "{v}");
        match &first_id {
            None => first_id = Some(id.to_string()),
            Some(first) => assert_eq!(id, first, "the same event has the same id on every connection"),
        }
        assert!(is_rfc3339_millis_utc(v["timestamp"].as_str().unwrap_or("")), "timestamp filled: {v}");
        assert_eq!(v["type"], "order_update", "{v}");
        assert_eq!(v["room"], "myOrders", "{v}");
        assert_eq!(v["userId"], "c1", "{v}");
        assert_eq!(v["payload"], json!({"orderId": "A-1", "status": "delivered"}), "{v}");

        assert_eq!(got[1], given, "an envelope with id and timestamp is delivered as given");
    }
    expect_only_marker(&mut other, &marker, "c2");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn events_travel_on_the_channels_the_spec_names() {
    let redis = RedisServer::start();
    let a = instance(&redis.url());
    let mut sub = redis.psubscriber(&["*"]);
    let n = || json!({"title": "t", "message": "m"});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            BROADCAST,
            json!({"room": "notifications", "type": "notification", "payload": n()}),
            "notifications",
        ),
        (BROADCAST, json!({"room": "notifications:x", "type": "t", "payload": {}}), "notifications"),
        (SEND, json!({"userId": "u1", "type": "notification", "payload": n()}), "notifications"),
        (SEND, json!({"userId": "u1", "room": "notifications", "type": "t", "payload": {}}), "notifications"),
        (
            BROADCAST,
            json!({"room": "orders", "type": "order_update",
            "payload": {"orderId": "1", "status": "paid"}}),
            "orders",
        ),
        (BROADCAST, json!({"room": "orders:12345", "type": "t", "payload": {}}), "orders"),
        (BROADCAST, json!({"room": "myOrders", "userId": "u1", "type": "t", "payload": {}}), "orders"),
        (BROADCAST, json!({"room": "deliveries", "type": "t", "payload": {}}), "orders"),
        (SEND, json!({"userId": "u1", "room": "orders", "type": "t", "payload": {}}), "orders"),
        (
            BROADCAST,
            json!({"room": "inventory", "type": "inventory_alert",
            "payload": {"productId": "p", "stockLevel": 1, "threshold": 2, "alert": "low_stock"}}),
            "inventory",
        ),
        (BROADCAST, json!({"room": "products", "type": "t", "payload": {}}), "inventory"),
        (BROADCAST, json!({"room": "products:sku.1", "type": "t", "payload": {}}), "inventory"),
        (BROADCAST, json!({"room": "all", "type": "broadcast", "payload": {"message": "m"}}), "broadcasts"),
        (BROADCAST, json!({"room": "all", "userId": "u1", "type": "t", "payload": {}}), "broadcasts"),
        (BROADCAST, json!({"room": "cart", "userId": "u1", "type": "t", "payload": {}}), "broadcasts"),
        (SEND, json!({"userId": "u1", "room": "cart", "type": "t", "payload": {}}), "broadcasts"),
        (BROADCAST, json!({"room": "promotions", "type": "t", "payload": {}}), "broadcasts"),
        (BROADCAST, json!({"room": "promotions:summer", "type": "t", "payload": {}}), "broadcasts"),
    ];
    for (path, body, channel) in &cases {
        let id = a.publish_ok(path, body);
        let m = sub.expect_message();
        assert_eq!(m.channel, format!("realtime:{channel}"), "POST {path} {body}");
        let v: Value = serde_json::from_str(&m.payload)
            .unwrap_or_else(|e| panic!("the message on {} is not JSON ({e}): {:?}", m.channel, m.payload));
        assert_eq!(v["id"], id, "the message is the event's envelope: {v}");
        assert_eq!(v["type"], body["type"], "{v}");
        assert_eq!(v["payload"], body["payload"], "{v}");
        // A send without a room is an event of the user's personal room.
        let room = body
            .get("room")
            .cloned()
            .unwrap_or_else(|| json!(format!("user:{}", body["userId"].as_str().unwrap_or_default())));
        assert_eq!(v["room"], room, "{v}");
        assert!(is_rfc3339_millis_utc(v["timestamp"].as_str().unwrap_or("")), "{v}");
    }
    // each event went out once: the next message is the marker's
    let marker = a.marker();
    let m = sub.expect_message();
    let v: Value = serde_json::from_str(&m.payload).expect("JSON");
    assert_eq!(v["id"], marker, "expected only the marker after the cases, got {m:?}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn redis_prefix_changes_the_channels() {
    let redis = RedisServer::start();
    let a = server().env("REDIS_URL", &redis.url()).env("REDIS_PREFIX", "shop").start();
    a.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let mut sub = redis.psubscriber(&["*"]);
    let mut ws = a.subscriber("s1", "seller", &["inventory"]);

    let id = a.broadcast(json!({"room": "inventory", "type": "t", "payload": {}}));
    let m = sub.expect_message();
    assert_eq!(m.channel, "shop:inventory", "{m:?}");
    expect_event(&mut ws, &id);

    let envelope = |via: &str| json!({"room": "inventory", "type": "t", "payload": {"via": via}}).to_string();
    // receivers: the test's own pattern subscriber, plus one per shard on `shop:`
    assert_eq!(
        redis.publish("realtime:inventory", &envelope("default")),
        1,
        "only the test listens on `realtime:`"
    );
    assert_eq!(redis.publish("shop:inventory", &envelope("shop")), 3, "one subscriber per shard on `shop:`");
    let v = next_json(&mut ws, DEFAULT_DEADLINE);
    assert_eq!(v["payload"], json!({"via": "shop"}), "{v}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn garbage_on_a_channel_changes_nothing() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis);
    let rooms = ["orders", "inventory", "notifications", "promotions", "cart", "myOrders"];
    let mut clients = [
        a.subscriber("root", "admin", &rooms),
        b.subscriber("root", "admin", &rooms),
        a.subscriber("c1", "client", &["cart", "myOrders", "notifications"]),
        b.subscriber("s1", "seller", &["orders", "inventory", "products"]),
    ];
    let dropped = |s: &Server| {
        s.metric_samples().get("realtime_events_dropped_total{reason=\"invalid\"}").copied().unwrap_or(0.0)
    };
    let before = (dropped(&a), dropped(&b));

    let garbage: Vec<Vec<u8>> = [
        "not json",
        "",
        "{",
        "[1,2]",
        "null",
        "42",
        "\"orders\"",
        r#"{"type":"x","payload":{}}"#,
        r#"{"room":"orders","type":"x"}"#,
        r#"{"room":"orders","payload":{}}"#,
        r#"{"room":"orders","type":"x","payload":"text"}"#,
        r#"{"room":"bad room","type":"x","payload":{}}"#,
        r#"{"room":"cart","type":"x","payload":{}}"#,
        r#"{"room":"orders","type":"order_update","payload":{"orderId":"1"}}"#,
        r#"{"room":"notifications","type":"notification","payload":{"title":"no message"}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([vec![0xff, 0xfe, 0x00, 0x7b]])
    .collect();
    let channels = ["realtime:notifications", "realtime:orders", "realtime:inventory", "realtime:broadcasts"];
    for channel in channels {
        for g in &garbage {
            assert_eq!(redis.publish_bytes(channel, g), 4, "PUBLISH {g:?} to {channel}: receivers");
        }
    }
    let marker = a.marker();
    for (i, ws) in clients.iter_mut().enumerate() {
        expect_only_marker(ws, &marker, &format!("client {i}"));
        assert_ping_pong(ws);
    }
    // each instance counts every bad message once
    let count = (garbage.len() * channels.len()) as f64;
    for (name, s, before) in [("A", &a, before.0), ("B", &b, before.1)] {
        let deadline = Instant::now() + DEFAULT_DEADLINE;
        while dropped(s) < before + count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            dropped(s),
            before + count,
            "instance {name}: realtime_events_dropped_total{{reason=\"invalid\"}}"
        );
        let h = s.health();
        assert_eq!(h["redis"], "connected", "{name}: {h}");
        assert_eq!(h["connections"], 2, "{name}: {h}");
    }
    // and delivery still works both ways
    let e = b.broadcast(room_event("orders", 1));
    expect_event(&mut clients[0], &e);
    expect_event(&mut clients[1], &e);
    expect_event(&mut clients[3], &e);
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn redis_outage_then_recovery_without_restarting_servers() {
    let mut redis = RedisServer::start();
    let (a, b) = pair(&redis);
    let mut on_a = a.subscriber("s1", "seller", &["orders"]);
    let mut on_b = b.subscriber("s2", "seller", &["orders"]);

    redis.kill();
    for s in [&a, &b] {
        let h = s.wait_health("redis", &json!("disconnected"), DEFAULT_DEADLINE);
        assert_eq!(h["status"], "healthy", "{h}");
        let r = s.get("/ready");
        assert_eq!(r.status, 503, "/ready while Redis is down: {r:?}");
        assert_eq!(s.metric("realtime_redis_connected"), 0.0);
    }
    // publishes are refused, nothing delivered
    let refused = [
        (&a, BROADCAST, room_event("orders", 1)),
        (&b, BROADCAST, room_event("all", 2)),
        (&a, SEND, json!({"userId": "s2", "type": "t", "payload": {}})),
    ];
    for (s, path, body) in &refused {
        let r = s.publish(path, body);
        assert_eq!(r.status, 503, "POST {path} while Redis is down: {r:?}");
        r.error_message();
    }
    // clients stay connected and served
    assert_ping_pong(&mut on_a);
    assert_ping_pong(&mut on_b);
    assert_eq!(a.health()["connections"], 1);
    assert_eq!(b.health()["connections"], 1);
    // Long enough for every link to try, and fail, several times.
    std::thread::sleep(Duration::from_secs(2));

    redis.restart();
    for s in [&a, &b] {
        s.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
        let r = s.get("/ready");
        assert_eq!(r.status, 200, "/ready after Redis is back: {r:?}");
        assert!(s.metric("realtime_redis_reconnects_total") >= 1.0, "reconnects not counted");
        assert_eq!(s.metric("realtime_redis_connected"), 1.0);
    }
    // The outage is logged once per link (2 shards x subscriber and
    // publisher) and so is the recovery, not once per reconnection attempt.
    for s in [&a, &b] {
        let log = s.stderr();
        let warnings = log.lines().filter(|l| l.contains("WARN") && l.contains("redis")).count();
        assert_eq!(warnings, 4, "one warning per link:\n{log}");
        assert_eq!(log.matches("redis link recovered").count(), 4, "{log}");
    }
    let from_a = a.broadcast(room_event("orders", 3));
    let from_b = b.broadcast(room_event("orders", 4));
    let marker = a.marker();
    for (who, user, ws) in [("client on A", "s1", &mut on_a), ("client on B", "s2", &mut on_b)] {
        let got = read_until_marker(ws, &marker);
        // Redis lost its history with its data: what the subscribers missed
        // cannot be known, so each of the client's rooms is told to resync.
        let resyncs = got.iter().take_while(|v| v["type"] == "resync").count();
        let rooms: Vec<&Value> = got[..resyncs].iter().map(|v| &v["room"]).collect();
        assert_eq!(
            rooms,
            [&json!(format!("user:{user}")), &json!("orders"), &json!("all")],
            "{who}: {got:?}"
        );
        assert_eq!(ids(&got[resyncs..]), [from_a.clone(), from_b.clone()], "{who}: {got:?}");
    }
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn password_protected_redis_with_a_database_number() {
    let redis = RedisServer::start_with_password("s3cret-pw");
    let url = format!("{}/3", redis.url());
    let a = instance(&url);
    let b = instance(&url);
    let mut on_b = b.subscriber("s1", "seller", &["orders"]);
    let id = a.broadcast(room_event("orders", 1));
    expect_event(&mut on_b, &id);

    // a wrong password never counts as connected, and publishes are refused
    let wrong =
        server().env("REDIS_URL", &format!("redis://:not-the-pw-7Q@127.0.0.1:{}", redis.port)).start();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(wrong.health()["redis"], "disconnected", "with a wrong password");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(wrong.get("/ready").status, 503);
    let r = wrong.publish(BROADCAST, &room_event("orders", 2));
    assert_eq!(r.status, 503, "{r:?}");
    let marker = a.marker();
    expect_only_marker(&mut on_b, &marker, "after the refused publish");

    // passwords stay out of the logs
    for (s, pw) in [(&a, "s3cret-pw"), (&wrong, "not-the-pw-7Q")] {
        let out = format!("{}{}", s.stdout(), s.stderr());
        assert!(!out.contains(pw), "the Redis password appears in the output:\n{out}");
    }
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn redis_url_is_decoded_as_a_url_and_names_an_acl_user() {
    let redis = RedisServer::start();
    let password = "p+q@r&s";
    let _: String = redis.query(
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("ops")
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all"),
    );
    // A literal `+` stays `+`; `%2B` is `+` too; `@` and `&` are escaped.
    for userinfo in ["ops:p+q%40r%26s", "ops:p%2Bq%40r%26s"] {
        let s = instance(&format!("redis://{userinfo}@127.0.0.1:{}", redis.port));
        let clients: String = redis.query(redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub"));
        assert!(clients.contains("user=ops"), "the subscribers authenticate as ops:\n{clients}");
        let mut client = s.subscriber("u1", "seller", &["orders"]);
        let id = s.broadcast(room_event("orders", 1));
        expect_event(&mut client, &id);
        let out = format!("{}{}", s.stdout(), s.stderr());
        assert!(!out.contains(password), "the Redis password appears in the output:\n{out}");
    }
}

/// A shard whose subscriber is down would miss events: while any of the
/// instance's links is down, every publish answers 503, whichever shard takes
/// it. Redis refuses SUBSCRIBE (ACL) so that only the subscribers stay down.
#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn publishes_answer_503_while_any_shards_subscriber_is_down() {
    let redis = RedisServer::start();
    let s = instance(&redis.url());
    let mut clients = s.connect_on_both_shards(2, |i| s.subscriber(&format!("p{i}"), "seller", &["orders"]));

    let _: String = redis.query(redis::cmd("ACL").arg("SETUSER").arg("default").arg("-subscribe"));
    let _: i64 = redis.query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"));
    s.wait_health("redis", &json!("disconnected"), DEFAULT_DEADLINE);
    for n in 0..20 {
        let r = s.publish(BROADCAST, &room_event("orders", n));
        assert_eq!(r.status, 503, "publish {n} while the subscribers are down: {r:?}");
    }

    let _: String = redis.query(redis::cmd("ACL").arg("SETUSER").arg("default").arg("+subscribe"));
    s.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let id = s.broadcast(room_event("orders", 99));
    let marker = s.marker();
    for ws in &mut clients {
        assert_eq!(ids(&read_until_marker(ws, &marker)), std::slice::from_ref(&id));
    }
}

/// A frozen Redis (SIGSTOP) answers nothing: a publish answers 503 within
/// the publish timeout instead of hanging, and the link counts as down until
/// Redis answers again.
#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn frozen_redis_answers_503_and_counts_as_down() {
    let redis = RedisServer::start();
    let s = instance(&redis.url());
    let mut client = s.subscriber("f1", "seller", &["orders"]);

    redis.signal(libc::SIGSTOP);
    let r = s.publish(BROADCAST, &room_event("orders", 1));
    assert_eq!(r.status, 503, "a publish to a frozen Redis: {r:?}");
    s.wait_health("redis", &json!("disconnected"), DEFAULT_DEADLINE);
    assert_eq!(s.get("/ready").status, 503);

    redis.signal(libc::SIGCONT);
    s.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let id = s.broadcast(room_event("orders", 2));
    let marker = s.marker();
    let got = read_until_marker(&mut client, &marker);
    assert!(ids(&got).ends_with(&[id]), "{got:?}");
}

/// The role travels in the envelope: the other instance scopes it too.
#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn role_scoping_holds_across_instances() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis);
    let mut seller = b.connect("7", "seller").0;
    let mut client = b.connect("7", "client").0;
    let id = a.send(json!({"userId": "7", "role": "seller", "type": "t", "payload": {}}));
    let marker = a.marker();
    let got = read_until_marker(&mut seller, &marker);
    assert_eq!(ids(&got), [id]);
    assert_eq!(got[0]["role"], "seller", "{got:?}");
    expect_only_marker(&mut client, &marker, "client 7");
}
