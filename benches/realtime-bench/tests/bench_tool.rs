//! The load generator against a real server: every scenario runs briefly,
//! reports `ok`, and loses nothing. Figures are not checked (this machine
//! is shared); that the tool keeps working is.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{output_within, Server, SECRET};

/// Far above what any run below takes (about a second each, plus connecting
/// and draining).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `realtime-bench` with `args` against `port`; its JSON result.
fn bench(port: u16, pid: u32, args: &[&str]) -> Value {
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_realtime-bench"))
            .args(["--url", &format!("ws://127.0.0.1:{port}"), "--secret", SECRET, "--pid", &pid.to_string()])
            .args(args),
        RUN_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "realtime-bench {args:?} failed\nstdout: {stdout}\nstderr: {stderr}");
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no result line\nstderr: {stderr}"));
    let result: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(result["ok"], true, "{line}");
    result
}

#[test]
fn every_scenario_runs_and_loses_nothing() {
    let s = Server::start();
    let (port, pid) = (s.port, s.pid());

    let idle = bench(port, pid, &["--conns", "50", "--duration", "1", "idle"]);
    assert_eq!(idle["connected"], 50, "{idle}");
    assert!(idle["rss_per_conn_kib"].is_number(), "RSS read from /proc: {idle}");

    let storm = bench(port, pid, &["--duration", "1", "storm", "--count", "100", "--concurrency", "4"]);
    assert_eq!(storm["errors"], 0, "{storm}");
    assert!(storm["handshakes"].as_u64().is_some_and(|n| n > 0), "{storm}");

    let fanout = bench(port, pid, &["--conns", "20", "--duration", "1", "fanout", "--rate", "20"]);
    assert_eq!((fanout["lost"].as_u64(), fanout["duplicates"].as_u64()), (Some(0), Some(0)), "{fanout}");
    assert!(fanout["delivered"].as_u64().is_some_and(|n| n > 0), "{fanout}");
    assert_eq!(fanout["delivered"], fanout["expected"], "{fanout}");
    assert_eq!(fanout["late"], 0, "{fanout}");
    // Throughput spans the first publish to the last delivery; the drain's share is apart.
    let (delivered, span) =
        (fanout["delivered"].as_f64().unwrap_or(0.0), fanout["delivery_s"].as_f64().unwrap_or(0.0));
    assert!(span > 0.0, "{fanout}");
    let per_s = fanout["deliveries_per_s"].as_f64().unwrap_or(0.0);
    assert!((per_s - delivered / span).abs() <= 0.1 + per_s * 0.01, "{fanout}");
    assert!(fanout["drain_deliveries"].as_f64().is_some_and(|d| d <= delivered), "{fanout}");

    let send = bench(port, pid, &["--conns", "20", "--duration", "1", "send", "--rate", "50"]);
    assert_eq!(send["lost"], 0, "{send}");
    assert_eq!(send["delivered"], send["expected"], "{send}");
    assert!(send["cpu_us_per_event"].is_number(), "server CPU per event: {send}");

    // At most 2 events short of every subscriber at a time, counted at the subscribers.
    let closed = bench(
        port,
        pid,
        &["--conns", "20", "--duration", "1", "fanout", "--closed-window", "2", "--publishers", "3"],
    );
    assert_eq!((closed["lost"].as_u64(), closed["duplicates"].as_u64()), (Some(0), Some(0)), "{closed}");
    assert_eq!(closed["events_timed_out"], 0, "{closed}");
    assert_eq!(closed["closed_window"], 2, "{closed}");
    let events = closed["events_published"].as_u64().unwrap_or(0);
    assert!(events > 0, "{closed}");
    assert_eq!(closed["delivered"].as_u64(), Some(events * 20), "{closed}");

    // 120 pings in 1 s from 12 of 20 connections (10 each), the 20 held by
    // two processes and the busy ones in both: every ping sent, every one answered.
    let ping = bench(
        port,
        pid,
        &["--conns", "20", "--per-process", "10", "--duration", "1", "ping", "--busy", "12", "--rate", "120"],
    );
    assert_eq!(ping["processes"], 2, "{ping}");
    assert_eq!(
        (ping["busy_connected"].as_u64(), ping["pings_sent"].as_u64()),
        (Some(12), Some(120)),
        "{ping}"
    );
    assert_eq!((ping["pongs"].as_u64(), ping["lost"].as_u64()), (Some(120), Some(0)), "{ping}");
    assert_eq!(ping["rtt_ms"]["count"], 120, "{ping}");
    assert!(ping["cpu_us_per_ping"].is_number(), "server CPU per ping: {ping}");

    // The server is still fine after all of it.
    assert_eq!(s.health()["status"], "healthy");
}

#[test]
fn the_recovery_storm_recovers_every_missed_event_once() {
    let s = Server::start();
    // 30 clients in 3 rooms; 5 events into each room while they are away.
    let storm = bench(
        s.port,
        s.pid(),
        &["--conns", "30", "--threads", "2", "recover", "--rooms", "3", "--missed", "5", "--pad", "50"],
    );
    assert_eq!(
        (storm["joined"].as_u64(), storm["events_published"].as_u64()),
        (Some(30), Some(15)),
        "{storm}"
    );
    assert_eq!(
        (storm["recovered"].as_u64(), storm["not_recovered"].as_u64(), storm["failed"].as_u64()),
        (Some(30), Some(0), Some(0)),
        "{storm}"
    );
    // Each client missed its room's 5 events and had each replayed once, in order.
    assert_eq!((storm["missed"].as_u64(), storm["replayed"].as_u64()), (Some(150), Some(150)), "{storm}");
    assert_eq!((storm["gaps"].as_u64(), storm["duplicates"].as_u64()), (Some(0), Some(0)), "{storm}");
    assert_eq!(storm["client_recovery_ms"]["count"], 30, "{storm}");
    assert!(storm["server_cpu_s"].is_number(), "server CPU for the storm: {storm}");
    // The server's metrics show what the events added to its history.
    let kept = storm["history_bytes_after_publish"].as_u64().unwrap_or(0);
    let before = storm["history_bytes_before_publish"].as_u64().unwrap_or(u64::MAX);
    assert!(kept > before, "history grew by the events published: {storm}");
}
