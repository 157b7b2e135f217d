//! What an operator watches: `/metrics` parsed by a real OpenMetrics parser
//! while clients connect and events are delivered, and the log lines a
//! connection leaves (README, Health and metrics; README "Operations").

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Redis links reconnect with a backoff capped at 5 s.
const REDIS_DEADLINE: Duration = Duration::from_secs(30);

fn sample(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("{key} missing from /metrics: {m:?}"))
}

#[test]
fn counters_move_as_clients_connect_and_events_are_delivered() {
    let s = server().start();
    let before = s.metric_samples();
    assert_eq!(sample(&before, "realtime_deliveries_total"), 0.0);

    let mut clients = s.connect_on_both_shards(4, |i| s.subscriber(&format!("m{i}"), "client", &[]));
    let n = clients.len() as f64;
    let opened = s.metric_samples();
    assert_eq!(metric_sum(&opened, "realtime_connections"), n);
    assert_eq!(
        sample(&opened, "realtime_handshakes_total") - sample(&before, "realtime_handshakes_total"),
        n
    );

    let id = s.broadcast(json!({"room": "all", "type": "announcement", "payload": {"text": "sale"}}));
    for ws in &mut clients {
        expect_event(ws, &id);
    }
    // A shard counts a delivery when it queues the frame, before the client
    // can read it: once every client has the event, the counts are final.
    let after = s.metric_samples();
    assert_eq!(sample(&after, "realtime_events_published_total{source=\"api\"}"), 1.0);
    assert_eq!(sample(&after, "realtime_publishes_held_total"), 0.0);
    assert_eq!(sample(&after, "realtime_deliveries_total"), n);
    for shard in ["0", "1"] {
        let label = format!("{{shard=\"{shard}\"}}");
        assert_eq!(
            sample(&after, &format!("realtime_shard_deliveries_total{label}")),
            sample(&after, &format!("realtime_connections{label}")),
            "shard {shard} delivers to each of its sessions once"
        );
        assert_eq!(sample(&after, &format!("realtime_shard_inbox_messages{label}")), 0.0);
        // Each session took its frame for writing before the client could read it.
        assert_eq!(sample(&after, &format!("realtime_shard_send_queue_bytes{label}")), 0.0);
    }

    for ws in clients {
        close(ws);
    }
    s.wait_connections(0);
    assert_eq!(metric_sum(&s.metric_samples(), "realtime_connections"), 0.0);
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn publishes_through_redis_are_timed_and_counted() {
    let redis = RedisServer::start();
    let s = server().env("REDIS_URL", &redis.url()).start();
    s.wait_health("redis", &json!("connected"), REDIS_DEADLINE);
    let mut ws = s.subscriber("r1", "client", &[]);

    let id = s.broadcast(json!({"room": "all", "type": "announcement", "payload": {}}));
    expect_event(&mut ws, &id);
    // One shard counts what Redis hands in, and it may be the other one than the client's.
    s.wait_metric("realtime_events_published_total{source=\"redis\"}", DEFAULT_DEADLINE, |v| v == 1.0);
    let m = s.metric_samples();
    assert_eq!(sample(&m, "realtime_redis_connected"), 1.0);
    assert_eq!(sample(&m, "realtime_events_published_total{source=\"api\"}"), 1.0);
    assert_eq!(sample(&m, "realtime_events_published_total{source=\"redis\"}"), 1.0);
    assert_eq!(metric_sum(&m, "realtime_redis_publish_seconds_count"), 1.0);
    assert!(metric_sum(&m, "realtime_redis_publish_seconds_sum") > 0.0, "{m:?}");
    close(ws);
}

/// The JSON log lines written while `user` connected and left.
fn connection_lines(s: &Server, user: &str) -> Vec<Value> {
    let err = s.wait_stderr(DEFAULT_DEADLINE, |err| err.contains("connection closed"));
    let lines: Vec<Value> = non_empty_lines(&err)
        .into_iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect();
    // Only the main thread (start-up, shutdown) speaks outside a shard.
    for line in &lines {
        if line["target"] != "realtime::server" {
            assert!(line["span"]["shard"].is_u64(), "a shard's line without its shard: {line}");
        }
    }
    lines.into_iter().filter(|l| l["user"] == user).collect()
}

#[test]
fn connection_log_lines_carry_shard_user_and_role() {
    let s = server().env("LOG_FORMAT", "json").env("RUST_LOG", "realtime=debug").start();
    let token = token(SECRET, "logged-user", "seller");
    let (ws, _) = s.connect_token(&token);
    close(ws);
    s.wait_connections(0);

    let lines = connection_lines(&s, "logged-user");
    for message in ["connection opened", "connection closed"] {
        let line = lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line for the user in {lines:?}"));
        assert_eq!(line["role"], "seller", "{line}");
        assert!(line["span"]["shard"].as_u64().is_some_and(|shard| shard < 2), "{line}");
    }
    let signature = token.rsplit('.').next().expect("a JWT has three parts");
    assert!(!s.stderr().contains(signature), "the token is in the log");
}

/// `/metrics` answers the format the scraper asks for, as the Prometheus
/// client libraries negotiate: OpenMetrics when `Accept` names it, the text
/// format 0.0.4 otherwise (a plain `curl`, or a scraper that asks for it).
#[test]
fn metrics_format_follows_accept() {
    let s = server().start();
    let open_metrics = http(s.port, "GET", "/metrics", &[("Accept", PROMETHEUS_ACCEPT)], None);
    assert_eq!(
        open_metrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(open_metrics.body.ends_with("# EOF\n"), "{}", open_metrics.body);

    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let headers: Vec<_> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let r = http(s.port, "GET", "/metrics", &headers, None);
        assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"), "{accept:?}");
        assert!(!r.body.contains("# EOF"), "{accept:?}: {}", r.body);
        assert!(r.body.contains("# TYPE realtime_handshakes_total counter\n"), "{accept:?}: {}", r.body);
        let parsed = openmetrics_parser::prometheus::parse_prometheus(&r.body)
            .unwrap_or_else(|e| panic!("{accept:?}: not the text format ({e:?}):\n{}", r.body));
        assert!(parsed.families.contains_key("realtime_handshakes_total"), "{:?}", parsed.families.keys());
        assert!(parsed.families.contains_key("realtime_connections"));
    }
}
