//! What the outside tried against presence, scaled down (README, Presence
//! and control): a crowd of members asking about `all` at once holds no
//! more than their answers, a session's presence queries have a bucket of
//! their own, and a member connecting and closing in a loop makes a bounded
//! number of `join`/`leave` deliveries.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Sellers (counts) and admins (counts and members) in the crowd.
const SELLERS: usize = 400;
const ADMINS: usize = 200;

fn ask_presence(ws: &mut Ws, room: &str) {
    send_json(ws, &json!({"type": "presence", "room": room}));
}

#[test]
fn a_crowd_asking_at_once_holds_only_the_answers() {
    let s = server().start();
    // Each member's answer held every shard's list of the room: about
    // 24 MiB here (growing as the square of the crowd); its answers alone
    // are a few KiB each, shared by the admins who asked at once.
    let grown = crowd_asks(&s);
    assert!(grown < 8 * 1024, "the crowd's queries took {grown} KiB at their peak");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_crowd_asking_at_once_holds_only_the_answers_with_redis() {
    let redis = RedisServer::start();
    let s = server().env("REDIS_URL", &redis.url()).start();
    s.wait_health("redis", &json!("connected"), Duration::from_secs(30));
    let redis_peak = || {
        let info: String = redis.query(redis::cmd("INFO").arg("memory"));
        let peak = info.lines().find_map(|l| l.strip_prefix("used_memory_peak:")?.trim().parse::<u64>().ok());
        peak.expect("used_memory_peak in INFO memory")
    };
    let redis_before = redis_peak();
    let grown = crowd_asks(&s);
    assert!(grown < 8 * 1024, "the crowd's queries took {grown} KiB of the server at their peak");
    // Each query was the room's whole hash, in Redis's reply buffers.
    let redis_grown = redis_peak().saturating_sub(redis_before) / 1024;
    assert!(redis_grown < 4 * 1024, "the crowd's queries took {redis_grown} KiB of Redis at their peak");
}

/// Every member of the crowd asks about `all` at once; each answer is
/// checked, and the server's peak RSS growth (KiB) returned.
fn crowd_asks(s: &Server) -> u64 {
    let mut sellers: Vec<Ws> = (0..SELLERS).map(|i| s.connect(&format!("s{i}"), "seller").0).collect();
    let mut admins: Vec<Ws> = (0..ADMINS).map(|i| s.connect(&format!("a{i}"), "admin").0).collect();
    let everyone = SELLERS + ADMINS;
    // With Redis, seats are written there as they come: all of them first.
    let counted = poll(
        DEFAULT_DEADLINE,
        Duration::from_millis(100),
        || s.get("/api/rooms/all/presence").json()["connections"].clone(),
        |n| *n == json!(everyone),
    );
    assert!(counted.is_ok(), "presence never counted the crowd: {counted:?}");
    let before = s.peak_rss_kib();

    for ws in sellers.iter_mut().chain(admins.iter_mut()) {
        ask_presence(ws, "all");
    }
    for ws in &mut sellers {
        let answer = next_json(ws, DEFAULT_DEADLINE);
        assert_eq!(answer["payload"], json!({"users": everyone, "connections": everyone}), "{answer}");
    }
    for ws in &mut admins {
        let answer = next_json(ws, DEFAULT_DEADLINE);
        let payload = &answer["payload"];
        assert_eq!(
            (payload["users"].clone(), payload["connections"].clone()),
            (json!(everyone), json!(everyone))
        );
        assert_eq!(payload["members"].as_array().map(Vec::len), Some(everyone), "{}", payload["users"]);
    }
    s.peak_rss_kib().saturating_sub(before)
}

#[test]
fn presence_queries_have_a_bucket_of_their_own() {
    let s = server().start();
    let (mut ws, _) = s.connect("1", "seller");
    const ASKED: usize = 30;
    for _ in 0..ASKED {
        ask_presence(&mut ws, "all");
    }
    let answers: Vec<Value> = (0..ASKED).map(|_| next_json(&mut ws, DEFAULT_DEADLINE)).collect();
    let answered = answers.iter().filter(|a| a["type"] == "presence").count();
    let refused: Vec<&Value> = answers.iter().filter(|a| a["type"] == "error").collect();
    assert!(answered >= 10, "the first ten are answered: {answers:?}");
    // Refilled at 2 a second: all thirty would take the server ten seconds.
    assert!(!refused.is_empty(), "a burst past the bucket is refused: {answers:?}");
    for refusal in &refused {
        assert_error(refusal, "rate_limited", "a presence query past the bucket");
    }
    assert_eq!(answered + refused.len(), ASKED, "{answers:?}");
    // Other messages are not limited by it, and the session stays open.
    subscribe(&mut ws, "orders");
    assert_ping_pong(&mut ws);
}

/// The `join`/`leave` events of `user` that `ws` gets until (and with) its
/// `leave`.
fn membership_until_leave(ws: &mut Ws, user: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let v = next_json(ws, DEFAULT_DEADLINE);
        if (v["type"] == "join" || v["type"] == "leave") && v["payload"]["userId"] == user {
            seen.push(v["type"].as_str().unwrap_or_default().to_owned());
            if v["type"] == "leave" {
                return seen;
            }
        }
    }
}

#[test]
fn a_member_reconnecting_in_a_loop_is_announced_once() {
    reconnect_loop(&server().without_history().env("PRESENCE_EVENTS", "true").start());
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_member_reconnecting_in_a_loop_is_announced_once_with_redis() {
    let redis = RedisServer::start();
    let s = server().without_history().env("PRESENCE_EVENTS", "true").env("REDIS_URL", &redis.url()).start();
    s.wait_health("redis", &json!("connected"), Duration::from_secs(30));
    reconnect_loop(&s);
}

fn reconnect_loop(s: &Server) {
    let mut watcher = s.subscriber("w", "admin", &["orders"]);
    const CYCLES: usize = 30;
    for _ in 0..CYCLES {
        close(s.subscriber("x", "seller", &["orders"]));
        // Gone before the next one comes: each cycle is a last session and a first.
        s.wait_connections(1);
    }
    let marker = s.marker();
    let mut seen: Vec<String> = read_until_marker(&mut watcher, &marker)
        .iter()
        .filter(|v| v["payload"]["userId"] == "x")
        .map(|v| v["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    // Once the member has been gone a while, the room learns it left: the
    // final state is right. A cycle is milliseconds; only one slower than
    // the two-second grace would add a pair.
    if seen.last().map(String::as_str) != Some("leave") {
        seen.extend(membership_until_leave(&mut watcher, "x"));
    }
    assert_eq!(seen.first().map(String::as_str), Some("join"), "{seen:?}");
    assert!(seen.len() <= 4, "{CYCLES} cycles made {} announcements: {seen:?}", seen.len());
}
