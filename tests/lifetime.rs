//! SIGTERM / SIGINT: every client gets close 1001 and the process exits 0.

mod support;

use std::time::Duration;

use support::*;

fn shutdown_closes_clients_with_1001(sig: libc::c_int, name: &str) {
    let mut s = server().env("SHUTDOWN_TIMEOUT", "5").start();
    let mut clients: Vec<Ws> = ["admin", "seller", "client", "delivery"]
        .iter()
        .enumerate()
        .map(|(i, role)| s.connect(&format!("sd{i}"), role).0)
        .collect();
    s.wait_connections(clients.len() as u64);

    s.signal(sig);

    for (i, ws) in clients.iter_mut().enumerate() {
        match expect_close(ws, Duration::from_secs(15)) {
            Event::Close(Some(1001)) => {}
            other => panic!("{name}: client {i} got {other:?} instead of close 1001\n{}", s.output_dump()),
        }
    }
    let status = s.wait_exit(Duration::from_secs(15)).unwrap_or_else(|| {
        panic!("{name}: process still running 15 s after the signal\n{}", s.output_dump())
    });
    assert_eq!(status.code(), Some(0), "{name}: exit status {status}\n{}", s.output_dump());
    // the listener is gone
    assert!(
        try_http(s.port, "GET", "/health", &[], None).is_err(),
        "{name}: /health still answers after exit"
    );
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    shutdown_closes_clients_with_1001(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_closes_clients_with_1001_and_exits_0() {
    shutdown_closes_clients_with_1001(libc::SIGINT, "SIGINT");
}

/// As soon as `/health` answers 200 the server is up; a SIGTERM from then on
/// is a clean shutdown (exit 0). Repeated a few times because the window
/// right after start-up is where a race would be.
#[test]
fn sigterm_right_after_ready_exits_0() {
    for round in 0..5 {
        let mut s = server().start();
        s.signal(libc::SIGTERM);
        let status = s
            .wait_exit(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("round {round}: still running after SIGTERM\n{}", s.output_dump()));
        assert_eq!(status.code(), Some(0), "round {round}: exit status {status}\n{}", s.output_dump());
    }
}

/// Once shutting down nothing is accepted that would not be delivered: a
/// publish on a connection opened before the signal answers 503 (or finds the
/// connection closed), never 202, and `/ready` says 503 so a load balancer
/// stops sending work.
#[test]
fn publishes_during_the_shutdown_drain_answer_503() {
    let mut s = server().env("SHUTDOWN_TIMEOUT", "5").start();
    let (mut client, _) = s.connect("drain", "seller");
    let mut kept = HttpConn::open(s.port);
    assert_eq!(kept.request("GET", "/ready", &[], None).status, 200);

    s.signal(libc::SIGTERM);
    match expect_close(&mut client, Duration::from_secs(15)) {
        Event::Close(Some(1001)) => {}
        other => panic!("got {other:?} instead of close 1001\n{}", s.output_dump()),
    }
    let body = room_event("orders", 1).to_string();
    if let Ok(r) = kept.try_request("POST", BROADCAST, &[("Content-Type", "application/json")], Some(&body)) {
        assert_eq!(r.status, 503, "a publish after SIGTERM: {r:?}");
        assert!(r.error_message().contains("shutting down"), "{r:?}");
        if let Ok(r) = kept.try_request("GET", "/ready", &[], None) {
            assert_eq!(r.status, 503, "/ready while shutting down: {r:?}");
        }
    }
    s.wait_exit(Duration::from_secs(15)).unwrap_or_else(|| panic!("still running\n{}", s.output_dump()));
}

/// A client that ignores the 1001 (neither reads nor hangs up) keeps its
/// session past `SHUTDOWN_TIMEOUT`; the process still exits 0, with Redis and
/// its presence bookkeeping too (the sessions left are dropped while the
/// shard still runs).
#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_drain_that_times_out_still_exits_0() {
    let redis = RedisServer::start();
    for redis_url in [None, Some(redis.url())] {
        let mut s = server().env("SHUTDOWN_TIMEOUT", "1").env("SHARDS", "1");
        if let Some(url) = &redis_url {
            s = s.env("REDIS_URL", url);
        }
        let mut s = s.start();
        if redis_url.is_some() {
            s.wait_health("redis", &serde_json::json!("connected"), Duration::from_secs(30));
        }
        let deaf: Vec<RawWs> =
            (0..300).map(|i| RawWs::connect(s.port, &token(SECRET, &format!("deaf{i}"), "seller"))).collect();
        s.wait_connections(deaf.len() as u64);
        s.signal(libc::SIGTERM);
        let status = s
            .wait_exit(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("still running 15 s after SIGTERM\n{}", s.output_dump()));
        assert_eq!(status.code(), Some(0), "redis {redis_url:?}: exit status {status}\n{}", s.output_dump());
        assert!(s.output_dump().contains("drain timed out"), "the drain did time out\n{}", s.output_dump());
        drop(deaf);
    }
}
