//! Presence and control over several instances (README, Presence and control): two `realtime`
//! instances (SHARDS=2 each, sessions on both shards) on one real
//! `redis-server`. Counts and members, user presence, `join`/`leave` once
//! over both instances, an instance killed with SIGKILL dropping out within
//! 60 s, and the disconnect API closing the user's sessions on both; also
//! a disconnect and a `join` sent while an instance's subscribers were away
//! (they come once those are back).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Time for an instance to connect every shard's links.
const REDIS_DEADLINE: Duration = Duration::from_secs(30);

fn instance(url: &str, events: bool) -> Server {
    let s = server().env("REDIS_URL", url).env("PRESENCE_EVENTS", &events.to_string()).start();
    s.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    s
}

/// Polls `path` on `s` until `done` holds (bounded by `timeout`).
fn wait_get(s: &Server, path: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let v = r.json();
        if done(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} stayed {v} for {timeout:?}\n{}",
            s.output_dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn room_and_user_presence_cover_both_instances() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), false), instance(&redis.url(), false));
    let on_a = a.connect_on_both_shards(2, |i| a.subscriber(&format!("a{i}"), "seller", &["orders"]));
    let on_b = b.connect_on_both_shards(2, |i| b.subscriber(&format!("b{i}"), "delivery", &["orders"]));
    let _seven_a = a.subscriber("7", "seller", &["orders"]);
    let _seven_b = b.subscriber("7", "seller", &["inventory"]);
    let users = (on_a.len() + on_b.len() + 1) as u64;
    let connections = users + 1;

    for s in [&a, &b] {
        let room =
            wait_get(s, "/api/rooms/orders/presence", DEFAULT_DEADLINE, |v| v["users"] == json!(users));
        assert_eq!(room["connections"], json!(users), "{room}");
        let members = room["members"].as_array().expect("members");
        assert!(members.iter().any(|m| m["userId"] == "b0" && m["role"] == "delivery"), "{room}");
        let all = wait_get(s, "/api/rooms/all/presence", DEFAULT_DEADLINE, |v| {
            v["connections"] == json!(connections)
        });
        assert_eq!(all["users"], json!(users), "{all}");
        let seven = wait_get(s, "/api/users/7/presence", DEFAULT_DEADLINE, |v| v["connections"] == json!(2));
        assert_eq!(seven["rooms"], json!(["all", "user:7", "inventory", "orders"]), "{seven}");
    }
    let mut admin = b.subscriber("x", "admin", &["orders"]);
    send_json(&mut admin, &json!({"type": "presence", "room": "orders"}));
    let answer = next_json(&mut admin, DEFAULT_DEADLINE);
    assert_eq!(answer["payload"]["users"], json!(users + 1), "{answer}");
    assert!(answer["payload"]["members"].as_array().is_some_and(|m| m.iter().any(|m| m["userId"] == "a0")));
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn an_instance_killed_with_sigkill_drops_out_within_60_s() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), false), instance(&redis.url(), false));
    let _on_a = a.subscriber("a", "seller", &["orders"]);
    let _on_b = b.connect_on_both_shards(2, |i| b.subscriber(&format!("b{i}"), "seller", &["orders"]));
    let both = (1 + _on_b.len()) as u64;
    wait_get(&a, "/api/rooms/orders/presence", DEFAULT_DEADLINE, |v| v["users"] == json!(both));

    b.signal(libc::SIGKILL);
    let left =
        wait_get(&a, "/api/rooms/orders/presence", Duration::from_secs(60), |v| v["users"] == json!(1));
    assert_eq!(left["members"], json!([{"userId": "a", "role": "seller", "connections": 1}]));
    let gone = a.get("/api/users/b0/presence").json();
    assert_eq!(gone["online"], json!(false), "{gone}");
}

/// The next `join` or `leave` `ws` reads.
fn first(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws, DEFAULT_DEADLINE);
        if v["type"] == "join" || v["type"] == "leave" {
            return v;
        }
    }
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn join_and_leave_once_over_both_instances() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), true), instance(&redis.url(), true));
    let mut watcher = b.subscriber("w", "admin", &["orders"]);
    assert_eq!(first(&mut watcher)["payload"]["userId"], "w");

    let mut sessions = a.connect_on_both_shards(2, |_| a.subscriber("1", "seller", &["orders"]));
    sessions.push(b.subscriber("1", "seller", &["orders"]));
    let join = first(&mut watcher);
    assert_eq!(
        (join["type"].clone(), join["payload"].clone()),
        (json!("join"), json!({"userId": "1", "role": "seller"}))
    );
    let last = sessions.pop().expect("the session on b");
    for ws in sessions {
        close(ws);
    }
    a.wait_connections(0);
    let marker = a.marker();
    let before = read_until_marker(&mut watcher, &marker);
    assert!(before.is_empty(), "one join for three sessions, no leave while one is left: {before:?}");
    assert_no_message_within(&mut watcher, Duration::from_millis(300));

    close(last);
    let leave = first(&mut watcher);
    assert_eq!((leave["type"].clone(), leave["payload"]["userId"].clone()), (json!("leave"), json!("1")));
    let marker = b.marker();
    let after = read_until_marker(&mut watcher, &marker);
    assert!(after.is_empty(), "one leave: {after:?}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn the_members_of_an_instance_stopped_with_sigterm_get_their_leave() {
    let redis = RedisServer::start();
    let (mut a, b) = (instance(&redis.url(), true), instance(&redis.url(), true));
    let mut watcher = b.subscriber("w", "admin", &["orders"]);
    assert_eq!(first(&mut watcher)["payload"]["userId"], "w");
    let _member = a.subscriber("1", "seller", &["orders"]);
    assert_eq!(first(&mut watcher)["type"], "join");

    a.signal(libc::SIGTERM);
    let exit = a.wait_exit(Duration::from_secs(15));
    assert!(exit.is_some_and(|st| st.success()), "{exit:?}\n{}", a.output_dump());
    let leave = first(&mut watcher);
    assert_eq!((leave["type"].clone(), leave["payload"]["userId"].clone()), (json!("leave"), json!("1")));
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn disconnect_reaches_the_users_sessions_on_both_instances() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), false), instance(&redis.url(), false));
    let mut target = a.connect_on_both_shards(2, |_| a.subscriber("42", "client", &["cart"]));
    target.extend(b.connect_on_both_shards(2, |_| b.subscriber("42", "client", &["cart"])));
    let mut others = [a.subscriber("43", "client", &["cart"]), b.subscriber("43", "client", &["cart"])];

    let r = b.publish("/api/users/42/disconnect", &json!({"reason": "password changed"}));
    assert_eq!(r.status, 202, "{r:?}");
    // README: within a second; the bound leaves room for a loaded machine.
    for ws in &mut target {
        assert_eq!(expect_close_frame(ws, Duration::from_secs(3)), (4003, "password changed".to_owned()));
    }
    for ws in &mut others {
        assert_ping_pong(ws);
    }
    a.wait_connections(1);
    b.wait_connections(1);
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_disconnect_sent_while_the_subscribers_are_away_closes_the_sessions_once_they_are_back() {
    let redis = RedisServer::start();
    let a = instance(&redis.add_user("away", "away-pw-3"), false);
    let b = instance(&redis.url(), false);
    let mut target = a.connect_on_both_shards(4, |_| a.subscriber("42", "client", &["cart"]));
    let mut other = a.subscriber("43", "client", &["cart"]);

    keep_subscribers_out(&redis, "away", &a);
    let r = b.publish("/api/users/42/disconnect", &json!({"reason": "password changed"}));
    assert_eq!(r.status, 202, "{r:?}");
    assert_ping_pong(&mut target[0]);

    redis.let_in("away");
    a.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    for ws in &mut target {
        assert_eq!(expect_close_frame(ws, Duration::from_secs(3)), (4003, "password changed".to_owned()));
    }
    assert_ping_pong(&mut other);
}

/// Cuts off the subscribers of `instance` (on Redis user `user`) and keeps
/// them out until `let_in`; its publishers stay.
fn keep_subscribers_out(redis: &RedisServer, user: &str, instance: &Server) {
    let _: () = redis.query(redis::cmd("ACL").arg("SETUSER").arg(user).arg("off"));
    assert_eq!(redis.kill_subscribers_of(user), 2, "one subscriber per shard");
    instance.wait_health("redis", &json!("disconnected"), DEFAULT_DEADLINE);
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_join_published_while_the_subscribers_are_away_arrives_once_they_are_back() {
    let redis = RedisServer::start();
    let a = instance(&redis.add_user("gone", "gone-pw-5"), true);
    let b = instance(&redis.url(), true);
    let mut watcher = a.subscriber("w", "admin", &["orders"]);
    let marker = a.marker();
    read_until_marker(&mut watcher, &marker);

    keep_subscribers_out(&redis, "gone", &a);
    let _joining = b.subscriber("1", "seller", &["orders"]);
    // The join is published by the same script that writes the seat.
    wait_get(&b, "/api/rooms/orders/presence", DEFAULT_DEADLINE, |v| v["users"] == json!(2));
    redis.let_in("gone");
    a.wait_health("redis", &json!("connected"), REDIS_DEADLINE);

    let marker = b.marker();
    let got = read_until_marker(&mut watcher, &marker);
    let joins: Vec<&Value> = got.iter().filter(|v| v["type"] == "join").map(|v| &v["payload"]).collect();
    assert_eq!(joins, [&json!({"userId": "1", "role": "seller"})], "{got:?}");
}
