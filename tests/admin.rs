//! The operator page (README, Operator page) over plain HTTP: who may read
//! its stats (the publish API's rule), that the page itself holds no data,
//! that the stats show what the shards hold, and that every query of the
//! Grafana dashboard in `deploy/grafana/` names a metric `/metrics` exports.
//! The page in a browser is tests/admin_browser.rs.

mod support;

use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;

const API_KEY: &str = "admin-test-api-key-7c1e";
const STATS: &str = "/api/admin/stats";

fn stats(s: &Server) -> Value {
    let r = http(s.port, "GET", STATS, &[("X-API-Key", API_KEY)], None);
    assert_eq!(r.status, 200, "{STATS}: {r:?}\n{}", s.output_dump());
    r.json()
}

#[test]
fn stats_need_the_api_key_and_the_page_holds_no_data() {
    let s = server().env("API_KEY", API_KEY).start();
    for headers in [vec![], vec![("X-API-Key", "wrong")], vec![("Authorization", "Bearer wrong")]] {
        let r = http(s.port, "GET", STATS, &headers, None);
        assert_eq!(r.status, 401, "{headers:?}: {r:?}");
        assert!(!r.body.contains("\"shards\""), "a refusal holds no figures: {}", r.body);
    }
    let bearer = format!("Bearer {API_KEY}");
    let r = http(s.port, "GET", STATS, &[("Authorization", &bearer)], None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");

    // The page is served to anyone (it only asks for the key), and is the
    // same whatever the server holds.
    let page = s.get("/admin");
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    let _clients: Vec<Ws> = (0..3).map(|i| s.subscriber(&format!("u{i}"), "seller", &["orders"])).collect();
    s.wait_connections(3);
    assert_eq!(s.get("/admin").body, page.body, "the page holds no figures");
    for asset in ["/admin/admin.js", "/admin/admin.css"] {
        assert_eq!(s.get(asset).status, 200, "{asset}");
    }
    assert_eq!(s.get("/admin/other").status, 404);
    assert_eq!(http(s.port, "POST", STATS, &[("X-API-Key", API_KEY)], None).status, 405);
}

/// This machine's address that is not loopback (the one it would route
/// out by; no packet is sent).
fn routable_address() -> IpAddr {
    let probe = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    probe.connect("192.0.2.1:9").expect("a route out of this machine");
    let ip = probe.local_addr().expect("local address").ip();
    assert!(!ip.is_loopback(), "this machine has no address other than loopback");
    ip
}

fn get_from(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, DEFAULT_DEADLINE).expect("connect");
    stream.set_read_timeout(Some(DEFAULT_DEADLINE)).expect("read timeout");
    stream.write_all(build_request(addr.port(), "GET", path, &[], None, true).as_bytes()).expect("write");
    read_response(&mut BufReader::new(stream), false).expect("response")
}

#[test]
fn without_an_api_key_only_loopback_peers_get_the_page_or_the_stats() {
    let s = server().env("BIND_ADDR", "0.0.0.0").start();
    let outside = SocketAddr::new(routable_address(), s.port);
    for path in ["/admin", STATS] {
        let r = get_from(outside, path);
        assert_eq!(r.status, 401, "{path} from {outside}: {r:?}");
        assert!(r.error_message().contains("loopback"), "{r:?}");
        assert_eq!(s.get(path).status, 200, "{path} from loopback");
    }
}

#[test]
fn stats_show_each_shard_and_the_busiest_rooms() {
    let s = server().env("API_KEY", API_KEY).start();
    let mut open =
        s.connect_on_both_shards(4, |i| s.subscriber(&format!("seller{i}"), "seller", &["orders"]));
    open.extend((0..2).map(|i| s.subscriber(&format!("seller-i{i}"), "seller", &["inventory"])));
    let total = open.len() as u64;
    s.wait_connections(total);
    let v = stats(&s);
    assert_eq!(v["connections"], total, "{v}");
    let shards = v["shards"].as_array().unwrap_or_else(|| panic!("no shards in {v}"));
    assert_eq!(shards.len(), 2, "{v}");
    let per_shard: Vec<u64> = shards.iter().map(|s| s["connections"].as_u64().unwrap_or(0)).collect();
    assert!(per_shard.iter().all(|&n| n > 0), "both shards hold connections: {v}");
    assert_eq!(per_shard.iter().sum::<u64>(), total, "{v}");

    // Summed over both shards, biggest first; `all` and `user:*` are not rooms to list.
    let rooms: Vec<(String, u64)> = v["busiestRooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no busiestRooms in {v}"))
        .iter()
        .map(|r| (r["room"].as_str().unwrap_or_default().to_owned(), r["connections"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(rooms, [("orders".to_owned(), total - 2), ("inventory".to_owned(), 2)], "{v}");
    assert_eq!(v["redis"], Value::Null, "no Redis configured: {v}");

    // The counters the chart and the refusals come from are /metrics' own.
    let event = serde_json::json!({"room": "orders", "type": "broadcast", "payload": {"message": "m"}});
    let r = publish(s.port, "/api/notifications/broadcast", &event.to_string(), &[("X-API-Key", API_KEY)]);
    assert_eq!(r.status, 202, "{r:?}");
    // Each shard adds to the total, then to its own: once the shards' sum is
    // there, so is the total.
    let orders = total - 2;
    let by_shard = |v: &Value| -> u64 {
        v["shards"].as_array().into_iter().flatten().map(|s| s["deliveries"].as_u64().unwrap_or(0)).sum()
    };
    let v = poll(DEFAULT_DEADLINE, Duration::from_millis(20), || stats(&s), |v| by_shard(v) == orders)
        .unwrap_or_else(|v| panic!("the shards' deliveries never reached {orders}: {v}"));
    assert_eq!(v["deliveries"], orders, "{v}");
    assert_eq!(v["published"]["api"], 1, "{v}");
    assert_eq!(s.metric("realtime_deliveries_total"), orders as f64, "the same figure as /metrics");

    let (status, _) = ws_reject(&format!("ws://127.0.0.1:{}/ws?token=bad", s.port), &[]);
    assert_eq!(status, 401);
    poll(DEFAULT_DEADLINE, Duration::from_millis(20), || stats(&s), |v| v["authFailures"]["malformed"] == 1)
        .unwrap_or_else(|v| panic!("the malformed token is not counted: {v}"));
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn stats_show_each_shards_redis_links() {
    let redis = RedisServer::start();
    let s = server().env("API_KEY", API_KEY).env("REDIS_URL", &redis.url()).start();
    s.wait_health("redis", &Value::from("connected"), DEFAULT_DEADLINE);
    let v = stats(&s);
    let links = v["redis"].as_array().unwrap_or_else(|| panic!("no redis links in {v}"));
    assert_eq!(links.len(), 2, "{v}");
    assert!(links.iter().all(|l| l["subscriber"] == true && l["publisher"] == true), "{v}");
}

/// The metric names a PromQL expression reads: what is left once strings,
/// label matchers, ranges, grouping clauses, functions and keywords are
/// taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] =
        &["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"];
    let mut plain = String::new();
    let mut closing: Vec<char> = Vec::new();
    for c in expr.chars() {
        match (closing.last(), c) {
            (Some(&end), _) if c == end => {
                closing.pop();
            }
            (Some('"'), _) => {}
            (_, '"') => closing.push('"'),
            (_, '{') => closing.push('}'),
            (_, '[') => closing.push(']'),
            (Some(_), _) => {}
            (None, _) => plain.push(c),
        }
    }
    let mut names = BTreeSet::new();
    let mut rest = plain.as_str();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_word(c)).unwrap_or(tail.len());
        let word = &tail[..end];
        let after = tail[end..].trim_start();
        rest = &tail[end..];
        if KEYWORDS.contains(&word) {
            // `by (instance, shard)`: labels, not metrics.
            if let Some(list) = after.strip_prefix('(') {
                rest = list.split_once(')').map_or("", |(_, r)| r);
            }
        } else {
            // A function, or an aggregation written `sum by (...) (...)`.
            let next = after.split(|c: char| !is_word(c)).next().unwrap_or_default();
            if !after.starts_with('(') && !["by", "without"].contains(&next) {
                names.insert(word.to_owned());
            }
        }
    }
    names
}

fn queries(dashboard: &Value, out: &mut Vec<String>) {
    match dashboard {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| queries(item, out)),
        _ => {}
    }
}

#[test]
fn promql_metric_names_skip_functions_labels_and_ranges() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{instance=~"$instance",x="b c"}[$__rate_interval]))) / sum(b_total)"#,
    );
    assert_eq!(names, BTreeSet::from(["a_bucket".to_owned(), "b_total".to_owned()]));
    assert_eq!(
        metric_names("label_values(c, instance)"),
        BTreeSet::from(["c".to_owned(), "instance".to_owned()])
    );
}

#[test]
fn every_metric_the_grafana_dashboard_queries_is_exported() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/realtime.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        dashboard["templating"]["list"].as_array().into_iter().flatten().any(|v| v["type"] == "datasource"),
        "the dashboard has a Prometheus datasource variable"
    );
    let mut found = Vec::new();
    queries(&dashboard, &mut found);
    assert!(found.len() >= 15, "the dashboard's queries: {found:?}");

    let s = server().start();
    // Sample names as Prometheus stores them; a histogram's buckets too.
    let mut exported: BTreeSet<String> =
        s.metric_samples().keys().map(|k| k.split('{').next().unwrap_or(k).to_owned()).collect();
    let buckets: Vec<String> =
        exported.iter().filter_map(|n| n.strip_suffix("_count")).map(|h| format!("{h}_bucket")).collect();
    exported.extend(buckets);
    let mut queried = BTreeSet::new();
    for query in &found {
        // `label_values(metric, label)` names a label after the metric.
        let names = metric_names(query);
        let names = match query.strip_prefix("label_values(") {
            Some(args) => names.into_iter().filter(|n| args.starts_with(n.as_str())).collect(),
            None => names,
        };
        assert!(!names.is_empty(), "a query that reads no metric: {query}");
        queried.extend(names);
    }
    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics /metrics lacks: {missing:?}");
    for needed in [
        "realtime_connections",
        "realtime_handshakes_total",
        "realtime_auth_failures_total",
        "realtime_deliveries_total",
        "realtime_events_dropped_total",
        "realtime_shard_send_queue_bytes",
        "realtime_redis_connected",
        "realtime_redis_reconnects_total",
        "realtime_history_bytes",
        "realtime_shard_inbox_messages",
    ] {
        assert!(queried.contains(needed), "the dashboard shows {needed}");
    }
}
