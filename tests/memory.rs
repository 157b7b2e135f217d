//! Memory a crowd of connections took comes back once they have gone: the
//! server hands its allocator's freed pages back to the system instead of
//! keeping them resident (README "Sizing").

mod support;

use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// Kept-alive HTTP connections in the crowd: past the 1,024 closes that
/// make a shard hand memory back, on either shard.
const CROWD: usize = 3000;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn memory_comes_back_after_a_crowd_leaves() {
    let s = server().start();
    let start = rss_kb(s.pid());
    let crowd: Vec<TcpStream> = (0..CROWD)
        .map(|_| {
            let mut conn = HttpConn::open(s.port);
            assert_eq!(conn.request("GET", "/health", &[], None).status, 200);
            conn.into_stream()
        })
        .collect();
    let held = rss_kb(s.pid());
    let grown = held.saturating_sub(start);
    assert!(grown > 10_000, "the crowd took only {grown} KiB: the test would prove nothing");

    drop(crowd);
    // glibc alone kept about half of it resident for good.
    let back = poll(
        DEFAULT_DEADLINE,
        Duration::from_millis(200),
        || rss_kb(s.pid()),
        |&now| now <= start + grown / 4,
    );
    assert!(
        back.is_ok(),
        "RSS {start} KiB at start, {held} KiB with the crowd, {:?} KiB after it left",
        back
    );
}

/// Fewer than the 1,024 closes from the peak that hand memory back at once,
/// one shard, so that the closes count on it.
const CHURN: usize = 400;

#[test]
fn memory_comes_back_after_a_churn_that_never_drops_far() {
    let s = server().env("SHARDS", "1").start();
    for _ in 0..2 {
        let wave: Vec<TcpStream> = (0..CHURN / 2)
            .map(|_| {
                let mut conn = HttpConn::open(s.port);
                assert_eq!(conn.request("GET", "/health", &[], None).status, 200);
                conn.into_stream()
            })
            .collect();
        drop(wave);
    }
    s.wait_metric("realtime_memory_trims_total", DEFAULT_DEADLINE, |trims| trims >= 1.0);
}
