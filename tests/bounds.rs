//! What no client can do to the others (SPEC §8): get its neighbours closed
//! with one oversized event.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

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
fn an_envelope_larger_than_a_client_queue_from_redis_is_dropped_as_too_large() {
    let redis = RedisServer::start();
    let s = server()
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
