//! What no client can do to the others (README, Client protocol): grow the server's memory
//! past its own queue with control frames, get its neighbours closed with one
//! oversized event, or hold every publisher back by never reading — while
//! clients that do read, however slowly, still hold publishers back.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tungstenite::Message;

const PING: u8 = 0x9;
/// The largest control frame payload (RFC 6455).
const CONTROL_PAYLOAD: usize = 125;

#[test]
fn control_frames_count_against_flood_control() {
    let s = server().start();
    let (mut ws, _) = s.connect("pinger", "client");
    // Past the burst of 200 and the 100 refusals that follow it.
    for _ in 0..400 {
        if ws.send(Message::Ping(vec![7u8; CONTROL_PAYLOAD].into())).is_err() {
            break;
        }
    }
    let mut refused = 0;
    let closed = loop {
        match next_event(&mut ws, DEFAULT_DEADLINE) {
            Some(Event::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                assert_error(&v, "rate_limited", "a ping past the burst");
                refused += 1;
            }
            Some(Event::Pong) | Some(Event::Ping) => {}
            Some(end @ (Event::Close(_) | Event::Eof(_))) => break end,
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("a flood of pings was not closed ({refused} refused)\n{}", s.output_dump()),
        }
    };
    assert!(matches!(closed, Event::Close(Some(1008))), "closed with {closed:?}");
    assert_eq!(refused, 100, "pings answered rate_limited before the close");
    assert_eq!(s.metric("realtime_rate_limited_total"), 100.0);
}

#[test]
fn a_ping_flood_from_a_client_that_never_reads_leaves_memory_bounded() {
    let s = server().env("SHARDS", "1").start();
    let mut flooder = RawWs::connect(s.port, &token(SECRET, "flooder", "client"));
    let before = s.peak_rss_kib();
    let ping = [7u8; CONTROL_PAYLOAD];
    let mut sent = 0u64;
    let flood_until = Instant::now() + Duration::from_secs(3);
    // Until the server stops taking them (it stopped reading, or closed).
    while Instant::now() < flood_until && flooder.send_frame(PING, &ping, Duration::from_millis(500)).is_ok()
    {
        sent += 1;
    }
    let grown = s.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "{sent} pings of {CONTROL_PAYLOAD} bytes, never reading: peak RSS grew by {grown} KiB\n{}",
        s.output_dump()
    );
    s.wait_connections(0);
    assert_eq!(s.metric("realtime_rate_limited_total"), 100.0, "the flooder was cut off by flood control");
}

#[test]
fn an_event_larger_than_a_client_queue_is_refused_at_the_api() {
    let s = server().env("SEND_QUEUE_BYTES", "65536").env("MAX_MESSAGE_SIZE", "65536").start();
    let mut reader = s.subscriber("reader", "seller", &["orders"]);
    // The body fits MAX_MESSAGE_SIZE; with the id and timestamp the server
    // adds, the envelope no longer fits a client's queue.
    let body = json!({"room": "orders", "type": "bulk", "payload": {"blob": "x".repeat(65_536 - 100)}});
    assert!(body.to_string().len() <= 65_536);
    let r = s.publish(BROADCAST, &body);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.error_message().contains("SEND_QUEUE_BYTES"), "{r:?}");

    let e = s.broadcast(room_event("orders", 1));
    expect_event(&mut reader, &e);
    assert_eq!(s.health()["connections"], 1);
    assert_eq!(s.metric("realtime_slow_client_closes_total"), 0.0);
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn an_envelope_larger_than_a_client_queue_from_redis_is_dropped_as_too_large() {
    let redis = RedisServer::start();
    let s = server()
        .without_history()
        .env("REDIS_URL", &redis.url())
        .env("SEND_QUEUE_BYTES", "65536")
        .env("MAX_MESSAGE_SIZE", "65536")
        .start();
    s.wait_health("redis", &json!("connected"), Duration::from_secs(30));
    let mut readers = s.connect_on_both_shards(2, |i| s.subscriber(&format!("r{i}"), "admin", &["orders"]));
    let too_large = |s: &Server| {
        s.metric_samples().get("realtime_events_dropped_total{reason=\"too_large\"}").copied().unwrap_or(0.0)
    };
    assert_eq!(too_large(&s), 0.0);

    let envelope =
        json!({"id": "too-large-1", "type": "bulk", "room": "all", "payload": {"blob": "x".repeat(70_000)}});
    assert!(redis.publish("realtime:broadcasts", &envelope.to_string()) >= 1, "nobody subscribed");
    let marker = s.marker();
    for (i, ws) in readers.iter_mut().enumerate() {
        expect_only_marker(ws, &marker, &format!("reader {i}"));
        assert_ping_pong(ws);
    }
    assert_eq!(too_large(&s), 1.0, "counted once per instance");
    assert_eq!(s.metric("realtime_slow_client_closes_total"), 0.0);
}

/// A client with a small receive buffer, past its `connected` message: what
/// it reads from here is up to the test.
fn small_window_client(s: &Server, user: &str) -> Ws {
    let stream = tcp_from("127.0.0.1", s.port, Some(4096));
    let mut ws = ws_connect_over(&s.ws_url(&token(SECRET, user, "client")), stream).expect("client");
    assert_eq!(next_json(&mut ws, DEFAULT_DEADLINE)["type"], "connected");
    ws
}

#[test]
fn clients_that_never_read_do_not_hold_publishers_back() {
    // One shard, 1 MiB queues: each client counts at most 256 KiB towards
    // the shard's backlog, so 40 that never read count 10 MiB at most, under
    // the 16 MiB a shard may always hold. Counted in full, their queues pass
    // it long before they are full.
    let s = server().env("SHARDS", "1").env("WS_WRITE_TIMEOUT", "120").start();
    let _stalled: Vec<Ws> = (0..40).map(|i| small_window_client(&s, &format!("stalled{i}"))).collect();
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let (mut ws, _) = s.connect(&format!("reader{i}"), "client");
            thread::spawn(move || {
                let mut ids = Vec::new();
                loop {
                    let v = next_json(&mut ws, DEFAULT_DEADLINE);
                    if v["type"] == "marker" {
                        return (ws, ids);
                    }
                    ids.push(v["id"].clone());
                }
            })
        })
        .collect();
    s.wait_connections(48);

    // 30 KiB events until the never-readers' queues overflow, past what
    // the kernel takes of each: their own limit cuts them off.
    let blob = "x".repeat(30 * 1024);
    let mut conn = HttpConn::open(s.port);
    let mut ids = Vec::new();
    while s.metric("realtime_slow_client_closes_total") < 40.0 {
        assert!(ids.len() < 2000, "the never-readers were not closed as slow after {} events", ids.len());
        for _ in 0..10 {
            let body = json!({"room": "all", "type": "bulk", "payload": {"blob": blob}});
            let r = conn.request("POST", BROADCAST, &[], Some(&body.to_string()));
            ids.push(json!(accepted_id(&r, "bulk publish")));
        }
    }
    s.marker();
    // Kept open: they must still be counted below.
    let _readers: Vec<Ws> = readers
        .into_iter()
        .map(|reader| {
            let (ws, got) = reader.join().expect("reader");
            assert_eq!(got, ids, "a reader's events");
            ws
        })
        .collect();
    let held = s.metric("realtime_publishes_held_total");
    assert_eq!(held, 0.0, "of {} publishes, some waited for 40 clients that never read", ids.len());
    // Only the never-readers were closed.
    s.wait_connections(8);
}

#[test]
fn publishers_are_held_back_while_a_shard_owes_its_clients_too_much() {
    // One shard whose clients may each hold 128 MiB: a quarter of it, what
    // one client counts towards the backlog, is more than the 16 MiB the
    // shard may always hold, so a single client can take the shard past it
    // without being cut off as slow. It reads, but far slower than a
    // publisher can queue.
    let s = server()
        .env("SHARDS", "1")
        .env("SEND_QUEUE_BYTES", "134217728")
        .env("WS_WRITE_TIMEOUT", "120")
        .start();
    let mut slow = small_window_client(&s, "slow");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        thread::spawn(move || {
            // Pacing, not waiting: a 60 KiB message every 40 ms (1.5 MB/s)
            // keeps its writer moving, slower than even a debug build's
            // publisher can queue.
            while !stop.load(Ordering::SeqCst) {
                match next_event(&mut slow, Duration::from_millis(5)) {
                    Some(Event::Close(_) | Event::Eof(_)) => return,
                    _ => thread::sleep(Duration::from_millis(40)),
                }
            }
        })
    };

    // ~60 KiB events (under MAX_MESSAGE_SIZE) until a publish has to wait:
    // 16 MiB of queue plus what the kernel's socket buffers take first.
    let blob = "x".repeat(60 * 1024);
    let mut conn = HttpConn::open(s.port);
    let mut published = 0;
    while s.metric("realtime_publishes_held_total") < 1.0 {
        assert!(
            published < 2000,
            "no publish was held after {published} events of 60 KiB\n{}",
            s.output_dump()
        );
        for _ in 0..10 {
            let body = json!({"room": "all", "type": "bulk", "payload": {"blob": blob}});
            let r = conn.request("POST", BROADCAST, &[], Some(&body.to_string()));
            accepted_id(&r, "bulk publish");
            published += 1;
        }
    }
    assert_eq!(s.metric("realtime_slow_client_closes_total"), 0.0);

    // The client goes: what it was owed is released, and publishers no
    // longer wait.
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("slow reader");
    s.wait_connections(0);
    s.wait_metric("realtime_shard_send_queue_bytes", DEFAULT_DEADLINE, |bytes| bytes == 0.0);
    let held = s.metric("realtime_publishes_held_total");
    s.broadcast(json!({"room": "all", "type": "after", "payload": {}}));
    assert_eq!(s.metric("realtime_publishes_held_total"), held);
}
