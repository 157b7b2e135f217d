//! HTTP side: /health, /ready, /metrics, errors, keep-alive, and the
//! connection count across shards.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// Go-style duration as README's Health and metrics section: `45s`, `5m0s`, `2h30m15s`.
fn is_go_duration(s: &str) -> bool {
    let mut rest = s;
    let mut units = Vec::new();
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(u) = rest.chars().next() else {
            return false;
        };
        units.push(u);
        rest = &rest[1..];
    }
    matches!(units.as_slice(), ['s'] | ['m', 's'] | ['h', 'm', 's'])
}

#[test]
fn go_duration_checker() {
    for ok in ["0s", "45s", "5m0s", "2h30m15s"] {
        assert!(is_go_duration(ok), "{ok}");
    }
    for bad in ["", "45", "5m", "2h30m", "1.5s", "s", "1d2h"] {
        assert!(!is_go_duration(bad), "{bad}");
    }
}

#[test]
fn health_and_ready() {
    let s = server().start();
    let r = s.get("/health");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type").is_some_and(|v| v.starts_with("application/json")),
        "content-type: {:?}",
        r.header("content-type")
    );
    let h = r.json();
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["connections"], 0, "{h}");
    assert_eq!(h["shards"], 2, "{h}");
    assert_eq!(h["redis"], "disabled", "{h}");
    assert!(h["uptimeSeconds"].is_u64(), "uptimeSeconds in {h}");
    let uptime = h["uptime"].as_str().expect("uptime string");
    assert!(is_go_duration(uptime), "uptime {uptime:?}");

    let ready = s.get("/ready");
    assert_eq!(ready.status, 200, "{ready:?}");

    // logs go to stderr; stdout is for people and scripts: outside development mode only the
    // line that says where to connect, with no token in it
    s.wait_stderr(DEFAULT_DEADLINE, |e| !e.trim().is_empty());
    let out = s.wait_stdout(DEFAULT_DEADLINE, |o| o.ends_with('\n'));
    let addr = format!("127.0.0.1:{}", s.port);
    assert_eq!(
        out,
        format!(
            "listening on http://{addr} (2 shards): WebSocket ws://{addr}/ws, health http://{addr}/health, \
             metrics http://{addr}/metrics, operator page http://{addr}/admin\n"
        ),
        "stdout outside development mode"
    );
}

#[test]
fn unknown_path_and_wrong_method() {
    let s = server().start();

    let r = s.get("/no/such/path");
    assert_eq!(r.status, 404, "{r:?}");
    r.error_message();

    let r = http(s.port, "POST", "/health", &[], Some("{}"));
    assert_eq!(r.status, 405, "{r:?}");
    r.error_message();

    // the server is still fine afterwards
    assert_eq!(s.get("/health").status, 200);
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let s = server().start();
    let mut conn = HttpConn::open(s.port);
    let a = conn.request("GET", "/health", &[], None);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["status"], "healthy");
    let b = conn.request("GET", "/ready", &[], None);
    assert_eq!(b.status, 200, "{b:?}");
    let c = conn.request("GET", "/health", &[], None);
    assert_eq!(c.status, 200, "{c:?}");
}

#[test]
fn metrics_are_present_from_start_up() {
    let s = server().start();
    let r = http(s.port, "GET", "/metrics", &[("Accept", PROMETHEUS_ACCEPT)], None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    for name in [
        "realtime_connections",
        "realtime_handshakes_total",
        "realtime_auth_failures_total",
        "realtime_events_published_total",
        "realtime_deliveries_total",
        "realtime_events_dropped_total",
        "realtime_slow_client_closes_total",
        "realtime_rate_limited_total",
        "realtime_redis_connected",
        "realtime_redis_reconnects_total",
        "realtime_uptime_seconds",
    ] {
        assert!(r.body.contains(name), "metric {name} missing from /metrics:\n{}", r.body);
    }
    let m = parse_metrics(&r.body);
    for shard in ["0", "1"] {
        let key = format!("realtime_connections{{shard=\"{shard}\"}}");
        assert_eq!(m.get(&key), Some(&0.0), "{key} in:\n{}", r.body);
    }
    assert!(!m.contains_key("realtime_connections{shard=\"2\"}"), "only two shards expected:\n{}", r.body);
}

fn shard_gauges(s: &support::Server) -> (f64, f64) {
    let m = parse_metrics(&s.metrics());
    let g = |i: u32| {
        m.get(&format!("realtime_connections{{shard=\"{i}\"}}"))
            .copied()
            .unwrap_or_else(|| panic!("no realtime_connections gauge for shard {i}"))
    };
    (g(0), g(1))
}

#[test]
fn connections_spread_over_both_shards_and_are_counted() {
    let s = server().start();
    let mut open = Vec::new();
    for i in 0..40 {
        let (ws, _) = s.connect(&format!("u{i}"), "client");
        open.push(ws);
    }
    s.wait_connections(open.len() as u64);
    // The kernel spreads connections by SO_REUSEPORT hash; add more until
    // both shards hold some (bounded).
    loop {
        let (a, b) = shard_gauges(&s);
        if (a > 0.0 && b > 0.0) || open.len() >= 200 {
            break;
        }
        for _ in 0..10 {
            let i = open.len();
            let (ws, _) = s.connect(&format!("u{i}"), "client");
            open.push(ws);
        }
        s.wait_connections(open.len() as u64);
    }
    let n = open.len() as u64;
    let h = s.wait_connections(n);
    assert_eq!(h["connections"], n);
    let (a, b) = shard_gauges(&s);
    assert!(a > 0.0 && b > 0.0, "both shards should hold connections after {n}: shard0={a} shard1={b}");
    assert_eq!(a + b, n as f64, "sum of shard gauges vs {n} open");

    // Closing every connection brings the count back to zero.
    for ws in open {
        close(ws);
    }
    s.wait_connections(0);
    let (a, b) = shard_gauges(&s);
    assert_eq!((a, b), (0.0, 0.0));
}

#[test]
fn dropped_tcp_connection_is_uncounted() {
    // A peer that simply vanishes (no close frame) is removed too.
    let s = server().start();
    let (ws, _) = s.connect("gone", "seller");
    s.wait_connections(1);
    let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
    drop(ws);
    s.wait_connections(0);
}

#[test]
fn uptime_seconds_advances() {
    let s = server().start();
    let first = s.health()["uptimeSeconds"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = s.health()["uptimeSeconds"].as_u64().unwrap();
        if now > first {
            break;
        }
        assert!(Instant::now() < deadline, "uptimeSeconds stuck at {first} for 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
