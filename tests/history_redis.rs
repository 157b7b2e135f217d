//! History and recovery with Redis (README, History and recovery): real
//! `redis-server` processes on free ports, `realtime` instances (SHARDS=2
//! each) on them, real clients.
//!
//! An instance that must be cut off alone connects as its own Redis user,
//! so `CLIENT KILL ... USER` and `ACL SETUSER ... off` reach it and no other.
//! "Nothing else arrived" is proven with a marker published afterwards to
//! `all`, as in the other Redis tests.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Time for an instance to (re)connect every shard's links; the backoff is
/// capped at 5 s.
const REDIS_DEADLINE: Duration = Duration::from_secs(30);

/// Events a steady publisher must have had taken before each blip of a
/// test, so that every blip falls among events in flight.
const EVENTS_PER_BLIP: usize = 11;

/// An instance on `url` with `HISTORY_SIZE=size`, once Redis is connected.
fn instance(url: &str, size: usize) -> Server {
    let s = server().env("REDIS_URL", url).env("HISTORY_SIZE", &size.to_string()).start();
    s.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    s
}

/// Instance A on a Redis user of its own (to be cut off alone) and B, both
/// with `HISTORY_SIZE=size`, and sellers in `orders` on both shards of A.
fn cut_off_pair(redis: &RedisServer, user: &str, size: usize) -> (Server, Server, Vec<Ws>) {
    let a = instance(&redis.add_user(user, &format!("{user}-pw-7")), size);
    let b = instance(&redis.url(), size);
    let on_a = a.connect_on_both_shards(2, |i| a.subscriber(&format!("s{i}"), "seller", &["orders"]));
    (a, b, on_a)
}

/// Each event's offset; all must share one epoch, which is returned.
fn offsets(events: &[Value]) -> (Vec<u64>, String) {
    let epoch = events.first().map(|e| e["epoch"].as_str().unwrap_or("").to_owned()).unwrap_or_default();
    for e in events {
        assert_eq!(e["epoch"].as_str(), Some(epoch.as_str()), "one epoch for the stream: {e}");
    }
    (events.iter().map(|e| e["offset"].as_u64().unwrap_or(0)).collect(), epoch)
}

/// `realtime_redis_catch_ups_total{result}` of an instance.
fn catch_ups(s: &Server, result: &str) -> f64 {
    let key = format!("realtime_redis_catch_ups_total{{result=\"{result}\"}}");
    s.metric_samples().get(&key).copied().unwrap_or(0.0)
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn two_instances_share_offsets() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), 100), instance(&redis.url(), 100));
    let mut clients = a.connect_on_both_shards(2, |i| a.subscriber(&format!("a{i}"), "seller", &["orders"]));
    clients.extend(b.connect_on_both_shards(2, |i| b.subscriber(&format!("b{i}"), "seller", &["orders"])));

    let published: Vec<String> =
        (1..=10).map(|n| if n % 2 == 0 { &a } else { &b }.broadcast(room_event("orders", n))).collect();
    let marker = a.marker();
    let mut epochs = Vec::new();
    for (i, ws) in clients.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        assert_eq!(ids(&got), published, "client {i}: {got:?}");
        let (offsets, epoch) = offsets(&got);
        assert_eq!(offsets, (1..=10).collect::<Vec<u64>>(), "client {i}: {got:?}");
        assert!(got.iter().all(|e| e.get("seq").is_none()), "clients never see seq: {got:?}");
        epochs.push(epoch);
    }
    assert!(!epochs[0].is_empty(), "events carry an epoch");
    assert!(epochs.iter().all(|e| *e == epochs[0]), "one epoch on every instance: {epochs:?}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn history_in_redis_is_capped_and_expires() {
    let redis = RedisServer::start();
    let a = server().env("REDIS_URL", &redis.url()).env("HISTORY_SIZE", "3").env("HISTORY_TTL", "60").start();
    a.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let mut sub = redis.subscriber(&["realtime:orders"]);
    for n in 1..=5 {
        a.broadcast(room_event("orders", n));
    }
    let kept: Vec<String> = redis.query(redis::cmd("LRANGE").arg("realtime:history:orders").arg(0).arg(-1));
    let kept: Vec<Value> = kept.iter().map(|e| serde_json::from_str(e).expect("JSON")).collect();
    assert_eq!(offsets(&kept).0, [3, 4, 5], "the last HISTORY_SIZE events: {kept:?}");
    assert!(kept.iter().all(|e| e.get("seq").is_none()), "the stream keeps envelopes: {kept:?}");
    for key in ["realtime:history:orders", "realtime:history-meta:orders", "realtime:orders:log"] {
        let ttl: i64 = redis.query(redis::cmd("TTL").arg(key));
        assert!((1..=60).contains(&ttl), "{key} expires within HISTORY_TTL: {ttl}");
    }
    // What the channel carries: the envelope with its offset, epoch and the
    // channel's sequence (which clients never see).
    let first: Value = serde_json::from_str(&sub.expect_message().payload).expect("JSON");
    assert_eq!((first["offset"].as_u64(), first["seq"].as_u64()), (Some(1), Some(1)), "{first}");
    assert_eq!(first["epoch"], kept[0]["epoch"], "{first}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn no_history_with_redis_is_plain_publish() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), 0);
    let mut ws = a.subscriber("s1", "seller", &["orders"]);
    let mut sub = redis.subscriber(&["realtime:orders"]);
    let id = a.broadcast(room_event("orders", 1));
    let got = expect_event(&mut ws, &id);
    assert!(got.get("offset").is_none() && got.get("epoch").is_none(), "no position: {got}");
    let raw: Value = serde_json::from_str(&sub.expect_message().payload).expect("JSON");
    assert_eq!(raw, got, "the channel carries the envelope as it is");
    let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("*"));
    // Presence, the control channel's sequence (its log is always kept) and
    // the Redis life that sequence belongs to.
    let kept = |k: &String| {
        k.starts_with("realtime:presence:")
            || k.starts_with("realtime:control:")
            || k == "realtime:history-life"
    };
    assert!(keys.iter().all(kept), "no history in Redis: {keys:?}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_subscriber_blip_loses_nothing_and_repeats_nothing() {
    let redis = RedisServer::start();
    let (a, b, mut clients) = cut_off_pair(&redis, "blip", 100);
    let on_b = b.subscriber("sb", "seller", &["orders"]);

    // B publishes steadily until told to stop; what it took (202) must reach
    // every client once, in order.
    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (stop, counted, port) = (stop.clone(), counted.clone(), b.port);
        thread::spawn(move || {
            let mut taken = Vec::new();
            for n in 1.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = publish(port, BROADCAST, &room_event("orders", n).to_string(), &[]);
                assert_eq!(r.status, 202, "B's links are never cut: {r:?}");
                taken.push(accepted_id(&r, "publish on B"));
                counted.store(taken.len(), Ordering::Relaxed);
            }
            taken
        })
    };
    for blip in 1..=3 {
        // Events flow between the blips however slowly the publisher gets
        // going: each blip waits for a few more to be taken.
        let flowed = counted.load(Ordering::Relaxed) + EVENTS_PER_BLIP;
        poll(REDIS_DEADLINE, Duration::from_millis(5), || counted.load(Ordering::Relaxed), |n| *n >= flowed)
            .unwrap_or_else(|n| panic!("blip {blip}: only {n} events taken\n{}", b.output_dump()));
        let before = catch_ups(&a, "complete");
        // Both shards' subscribers, and nothing else.
        assert_eq!(redis.kill_subscribers_of("blip"), 2, "blip {blip}");
        // Each shard catches up on its four channels.
        poll(REDIS_DEADLINE, Duration::from_millis(20), || catch_ups(&a, "complete"), |n| *n >= before + 8.0)
            .unwrap_or_else(|n| panic!("blip {blip}: caught up {n} channels\n{}", a.output_dump()));
    }
    stop.store(true, Ordering::Relaxed);
    let taken = publisher.join().expect("the publishing thread");
    assert!(taken.len() >= 3 * EVENTS_PER_BLIP, "events flowed during the blips: {}", taken.len());
    assert_eq!(catch_ups(&a, "resync"), 0.0);

    let marker = b.marker();
    clients.push(on_b);
    for (i, ws) in clients.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        assert_eq!(ids(&got), taken, "client {i}: every event once, in order");
        let expected: Vec<u64> = (1..=taken.len() as u64).collect();
        assert_eq!(offsets(&got).0, expected, "client {i}");
    }
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_log_trimmed_during_an_outage_means_resync() {
    let redis = RedisServer::start();
    // HISTORY_SIZE=1: each channel's catch-up log holds 100 messages, and
    // is trimmed back to that once it passes 164.
    let (a, b, mut orders) = cut_off_pair(&redis, "cut", 1);
    let mut stock = a.subscriber("w1", "seller", &["inventory"]);

    redis.lock_out("cut");
    a.wait_health("redis", &json!("disconnected"), DEFAULT_DEADLINE);
    for n in 1..=165 {
        b.broadcast(room_event("orders", n));
    }
    let missed = b.broadcast(json!({"room": "inventory", "type": "t", "payload": {}}));
    redis.let_in("cut");
    a.wait_health("redis", &json!("connected"), REDIS_DEADLINE);

    let marker = b.marker();
    for (i, ws) in orders.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        assert_eq!(got, [json!({"type": "resync", "room": "orders"})], "client {i}");
    }
    // The inventory channel's log still held its one missed event.
    let got = read_until_marker(&mut stock, &marker);
    assert_eq!(ids(&got), [missed], "{got:?}");
    assert_eq!(catch_ups(&a, "resync"), 2.0, "the orders channel on each shard");
}

/// Subscribes `ws` to `room` with `since`; returns the `subscribed` answer.
fn subscribe_since(ws: &mut Ws, room: &str, offset: u64, epoch: &str) -> Value {
    send_json(ws, &json!({"type": "subscribe", "room": room, "since": {"offset": offset, "epoch": epoch}}));
    next_json(ws, DEFAULT_DEADLINE)
}

/// `orders`' stream as Redis holds it: (epoch, latest offset).
fn orders_position(redis: &RedisServer) -> (String, u64) {
    let (epoch, offset): (String, u64) =
        redis.query(redis::cmd("HMGET").arg("realtime:history-meta:orders").arg("epoch").arg("offset"));
    (epoch, offset)
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_restarted_instance_keeps_the_history() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), 100);
    let published: Vec<String> = (1..=5).map(|n| a.broadcast(room_event("orders", n))).collect();
    drop(a);
    let (epoch, _) = orders_position(&redis);

    let again = instance(&redis.url(), 100);
    let (mut ws, _) = again.connect("s1", "seller");
    let answer = subscribe_since(&mut ws, "orders", 2, &epoch);
    assert_eq!(
        answer,
        json!({"type": "subscribed", "room": "orders", "offset": 5, "epoch": epoch, "recovered": true})
    );
    for (offset, id) in (3..=5).zip(&published[2..]) {
        let event = expect_event(&mut ws, id);
        assert_eq!((event["offset"].as_u64(), event["epoch"].as_str()), (Some(offset), Some(epoch.as_str())));
    }
    let marker = again.marker();
    expect_only_marker(&mut ws, &marker, "after the replay");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn recovery_while_events_keep_coming_has_no_gap_and_no_duplicate() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), 100), instance(&redis.url(), 100));
    b.broadcast(room_event("orders", 0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (stop, port) = (stop.clone(), b.port);
        thread::spawn(move || {
            let mut taken = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = publish(port, BROADCAST, &room_event("orders", taken).to_string(), &[]);
                assert_eq!(r.status, 202, "{r:?}");
                taken += 1;
            }
            taken
        })
    };
    // Clients on both shards of A join while events flow, each from a point
    // a few events back.
    let mut joined = Vec::new();
    let mut last = 0;
    for round in 0..6 {
        // Each round joins while events are in flight, however slowly the
        // publisher gets going.
        let (epoch, latest) =
            poll(REDIS_DEADLINE, Duration::from_millis(5), || orders_position(&redis), |(_, n)| *n > last)
                .unwrap_or_else(|(_, n)| panic!("round {round}: the stream stayed at {n}"));
        last = latest;
        let since = latest.saturating_sub(3);
        let (mut ws, _) = a.connect(&format!("r{round}"), "seller");
        let answer = subscribe_since(&mut ws, "orders", since, &epoch);
        assert_eq!(answer["recovered"], true, "round {round}: {answer}");
        joined.push((since, ws));
    }
    stop.store(true, Ordering::Relaxed);
    let total = 1 + publisher.join().expect("the publishing thread");
    let marker = b.marker();
    for (round, (since, ws)) in joined.iter_mut().enumerate() {
        let got = read_until_marker(ws, &marker);
        let expected: Vec<u64> = (*since + 1..=total).collect();
        assert_eq!(offsets(&got).0, expected, "round {round}: replayed then live, each once");
    }
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn the_history_api_reads_redis_from_any_instance() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis.url(), 100), instance(&redis.url(), 100));
    let published: Vec<String> = (1..=4).map(|n| a.broadcast(room_event("orders", n))).collect();
    let (epoch, _) = orders_position(&redis);
    let page = b.get(&format!("/api/rooms/orders/history?since=1&epoch={epoch}&limit=2")).json();
    assert_eq!(
        (&page["offset"], &page["recovered"], &page["epoch"]),
        (&json!(4), &json!(true), &json!(epoch))
    );
    assert_eq!(ids(page["events"].as_array().expect("events")), published[1..3], "{page}");
    let newest = b.get("/api/rooms/orders/history").json();
    assert_eq!(ids(newest["events"].as_array().expect("events")), published, "{newest}");
    let stale = b.get("/api/rooms/orders/history?since=1&epoch=other").json();
    assert_eq!((&stale["recovered"], &stale["events"]), (&json!(false), &json!([])), "{stale}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_subscribe_while_redis_is_out_of_reach_is_unavailable() {
    let redis = RedisServer::start();
    let (a, _b, _) = cut_off_pair(&redis, "gone", 100);
    let (mut ws, _) = a.connect("s9", "seller");
    redis.lock_out("gone");
    a.wait_health("redis", &json!("disconnected"), DEFAULT_DEADLINE);
    send_json(&mut ws, &json!({"type": "subscribe", "room": "orders"}));
    assert_error(&next_json(&mut ws, DEFAULT_DEADLINE), "unavailable", "subscribe while Redis is away");
    redis.let_in("gone");
    a.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let answer = subscribe_answer(&mut ws, "orders");
    assert_eq!(answer["type"], "subscribed", "{answer}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_fetch_does_not_wait_on_a_frozen_redis() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), 100);
    let (mut ws, _) = a.connect("s1", "seller");
    redis.signal(libc::SIGSTOP);
    send_json(&mut ws, &json!({"type": "subscribe", "room": "orders"}));
    let answer = next_json(&mut ws, DEFAULT_DEADLINE);
    redis.signal(libc::SIGCONT);
    assert_error(&answer, "unavailable", "subscribe while Redis is frozen");
    a.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let answer = subscribe_answer(&mut ws, "orders");
    assert_eq!(answer["type"], "subscribed", "{answer}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn asking_about_a_quiet_room_keeps_nothing_and_stays_true() {
    let redis = RedisServer::start();
    // Epochs name HISTORY_TTL windows: with windows of 11 days, the question
    // and the first event fall in one window but once in a million runs.
    let a = server().env("REDIS_URL", &redis.url()).env("HISTORY_TTL", "1000000").start();
    a.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let (mut ws, _) = a.connect("s1", "seller");
    let answer = subscribe_answer(&mut ws, "orders:quiet");
    assert_eq!(answer["offset"], 0, "{answer}");
    let epoch = answer["epoch"].as_str().expect("an epoch").to_owned();
    let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("realtime:history*:orders:quiet"));
    assert!(keys.is_empty(), "a question keeps nothing: {keys:?}");

    let id = a.broadcast(room_event("orders:quiet", 1));
    let event = expect_event(&mut ws, &id);
    assert_eq!((event["offset"].as_u64(), event["epoch"].as_str()), (Some(1), Some(epoch.as_str())));
    let (mut again, _) = a.connect("s2", "seller");
    let answer = subscribe_since(&mut again, "orders:quiet", 0, &epoch);
    assert_eq!(answer["recovered"], true, "the first event came in the same window: {answer}");
    expect_event(&mut again, &id);
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn scripts_flushed_from_redis_are_sent_again_by_text() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), 100);
    let first = a.broadcast(room_event("orders", 1));
    let _: () = redis.query(redis::cmd("SCRIPT").arg("FLUSH"));
    // Both the publish (publisher connection) and the fetch (subscriber
    // connection) meet NOSCRIPT once, and go on with EVAL.
    let second = a.broadcast(room_event("orders", 2));
    let (epoch, _) = orders_position(&redis);
    let (mut ws, _) = a.connect("s1", "seller");
    let answer = subscribe_since(&mut ws, "orders", 0, &epoch);
    assert_eq!(answer["recovered"], true, "{answer}");
    expect_event(&mut ws, &first);
    expect_event(&mut ws, &second);
    assert_eq!(a.metric("realtime_redis_script_failures_total"), 0.0);
}

/// Each event's (epoch, offset), in the order read; `resync`s are left out.
fn positions(events: &[Value]) -> Vec<(String, u64)> {
    events
        .iter()
        .filter(|e| e["type"] != "resync")
        .map(|e| (e["epoch"].as_str().unwrap_or("").to_owned(), e["offset"].as_u64().unwrap_or(0)))
        .collect()
}

/// The (epoch, offset) pairs that come more than once.
fn repeated(positions: &[(String, u64)]) -> Vec<&(String, u64)> {
    let mut seen = std::collections::HashSet::new();
    positions.iter().filter(|p| !seen.insert(*p)).collect()
}

/// Publishes to `room` on `s`, again while a link of `s` is still coming
/// back (503, nothing published), until it is taken.
fn publish_once_back(s: &Server, room: &str, n: u64) -> String {
    let body = room_event(room, n).to_string();
    let taken = poll(
        REDIS_DEADLINE,
        Duration::from_millis(20),
        || publish(s.port, BROADCAST, &body, &[]),
        |r| r.status == 202,
    )
    .unwrap_or_else(|r| panic!("no publish taken after Redis came back: {r:?}\n{}", s.output_dump()));
    accepted_id(&taken, "publish after Redis came back")
}

/// A Redis restarted from a snapshot older than what it had given: the
/// history goes on in a new epoch. A client with a position past the
/// snapshot is not told it recovered (it would miss the events numbered
/// again), and one connected throughout is told to resync and then gets no
/// (epoch, offset) twice.
#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_redis_restored_from_an_older_snapshot_begins_a_new_epoch() {
    let mut redis = RedisServer::start_saving();
    let a = instance(&redis.url(), 100);
    let mut throughout = a.subscriber("t1", "seller", &["orders"]);
    for n in 1..=5 {
        a.broadcast(room_event("orders", n));
    }
    let snapshot = redis.snapshot();
    for n in 6..=10 {
        a.broadcast(room_event("orders", n));
    }
    let (epoch, latest) = orders_position(&redis);
    assert_eq!(latest, 10);

    redis.restart_from(&snapshot);
    let after: Vec<String> = (11..=16).map(|n| publish_once_back(&a, "orders", n)).collect();
    let (mut again, _) = a.connect("s1", "seller");
    let answer = subscribe_since(&mut again, "orders", latest, &epoch);
    assert_eq!((&answer["type"], &answer["recovered"]), (&json!("subscribed"), &json!(false)), "{answer}");
    assert_ne!(answer["epoch"], json!(epoch), "{answer}");

    let marker = a.marker();
    let got = read_until_marker(&mut throughout, &marker);
    assert!(got.contains(&json!({"type": "resync", "room": "orders"})), "told to resync: {got:?}");
    let positions = positions(&got);
    assert_eq!(repeated(&positions), Vec::<&(String, u64)>::new(), "{positions:?}");
    assert_eq!(ids(&got[got.len() - after.len()..]), after, "the new events come live: {got:?}");
}

/// A stream whose meta key is lost (`DEL`, an eviction) while its list is
/// kept begins again in an epoch no client was given: a client's position in
/// the old one is not recovered, and one in the room throughout gets no
/// (epoch, offset) twice.
#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_lost_meta_key_begins_a_new_epoch() {
    let redis = RedisServer::start();
    let a = instance(&redis.url(), 100);
    let mut throughout = a.subscriber("t1", "seller", &["orders"]);
    for n in 1..=5 {
        a.broadcast(room_event("orders", n));
    }
    let (epoch, _) = orders_position(&redis);
    let _: i64 = redis.query(redis::cmd("DEL").arg("realtime:history-meta:orders"));
    for n in 6..=8 {
        a.broadcast(room_event("orders", n));
    }
    let (mut again, _) = a.connect("s1", "seller");
    let answer = subscribe_since(&mut again, "orders", 2, &epoch);
    assert_eq!((&answer["type"], &answer["recovered"]), (&json!("subscribed"), &json!(false)), "{answer}");

    let marker = a.marker();
    let positions = positions(&read_until_marker(&mut throughout, &marker));
    assert_eq!(positions.len(), 8, "{positions:?}");
    assert_eq!(repeated(&positions), Vec::<&(String, u64)>::new(), "{positions:?}");
}

/// Many recoveries at once of a room whose history is larger than Redis
/// lets a subscriber's unread replies grow (here 8 MB; 32 MB by default):
/// each answer is bounded by what its session can take, and those in flight
/// on a shard's connection together, so Redis never closes the subscriber:
/// every subscribe is answered, and publishes go on.
#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn recoveries_at_once_cannot_get_the_subscriber_closed() {
    let limit = ["--client-output-buffer-limit", "pubsub 8mb 8mb 0"];
    let redis = RedisServer::start_with(&limit);
    // Queues of 4 MB: a session's first recovery may take 2 MB, the whole
    // history.
    let a = server()
        .env("REDIS_URL", &redis.url())
        .env("HISTORY_SIZE", "100")
        .env("SEND_QUEUE_BYTES", "4194304")
        .start();
    a.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let pad = "x".repeat(20_000);
    for n in 0..100 {
        a.broadcast(json!({"room": "orders", "type": "t", "payload": {"n": n, "pad": pad}}));
    }
    let (epoch, _) = orders_position(&redis);

    // 4 clients × 8 recoveries of 2 MB: 64 MB asked for at once.
    let mut clients = a.connect_on_both_shards(4, |i| a.connect(&format!("r{i}"), "seller").0);
    let since = json!({"type": "subscribe", "room": "orders", "since": {"offset": 0, "epoch": epoch}});
    for ws in &mut clients {
        for _ in 0..8 {
            ws.write(tungstenite::Message::text(since.to_string())).expect("write");
        }
        ws.flush().expect("flush");
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        // The answers, among the replayed events.
        let mut answers = Vec::new();
        while answers.len() < 8 {
            let v = next_json(ws, DEFAULT_DEADLINE);
            if v.get("id").is_none() {
                answers.push(v);
            }
        }
        assert!(answers.iter().all(|v| v["type"] == "subscribed"), "client {i}: {answers:?}");
        assert!(
            answers.iter().any(|v| v["recovered"] == true),
            "client {i}: one fits its queue: {answers:?}"
        );
    }
    assert_eq!(a.metric("realtime_redis_reconnects_total"), 0.0, "{}", redis.log());
    assert!(!redis.log().contains("output buffer limits"), "{}", redis.log());
    a.broadcast(room_event("orders", 101));
}
