//! Faults that must stay local: running out of file descriptors costs a log
//! line a second, not a line per retry, and the server serves again once
//! descriptors come free; a panic in one connection's task (injected, debug
//! builds only) closes that connection and nothing else.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use support::*;

/// The room and the path whose use panics in the server under test.
const TRIGGER: &str = "boom";

/// Descriptors the test server gets: enough to start one shard, a few
/// connections more.
const NOFILE: u64 = 64;
/// How long the test holds the process out of descriptors.
const EXHAUSTED_FOR: Duration = Duration::from_secs(3);

fn accept_failures(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.contains("accept failed")).count()
}

#[test]
fn out_of_descriptors_logs_once_a_second_and_recovers() {
    let s = server().env("SHARDS", "1").nofile(NOFILE).start();
    // The kernel completes these handshakes into the listen backlog; the
    // server runs out of descriptors accepting them.
    let held: Vec<TcpStream> =
        (0..2 * NOFILE).filter_map(|_| TcpStream::connect(("127.0.0.1", s.port)).ok()).collect();
    s.wait_stderr(DEFAULT_DEADLINE, |e| accept_failures(e) > 0);
    let before = accept_failures(&s.stderr());
    std::thread::sleep(EXHAUSTED_FOR);
    let logged = accept_failures(&s.stderr()) - before;
    // One line a second, and one more for where the window falls.
    assert!(logged <= 4, "{logged} `accept failed` lines in {EXHAUSTED_FOR:?}");
    assert!(
        s.stderr()
            .lines()
            .any(|l| l.contains("accept failed") && l.contains("unlogged=") && !l.contains("unlogged=0")),
        "the lines do not count the failures left out:\n{}",
        s.stderr()
    );

    drop(held);
    poll(
        DEFAULT_DEADLINE,
        Duration::from_millis(50),
        || try_http(s.port, "GET", "/health", &[], None).ok(),
        |r| r.as_ref().is_some_and(|r| r.status == 200),
    )
    .unwrap_or_else(|last| panic!("no answer once descriptors came free: {last:?}\n{}", s.output_dump()));
}

#[test]
fn a_panic_closes_its_own_connection_only() {
    // One shard: the bystander shares the panicking task's executor.
    let mut s = server().env("SHARDS", "1").env("REALTIME_INJECT_PANIC", TRIGGER).start();
    let (mut bystander, _) = s.connect("bystander", "client");
    let (mut victim, _) = s.connect("victim", "client");

    send_json(&mut victim, &json!({"type": "subscribe", "room": TRIGGER}));
    let ended = expect_close(&mut victim, DEFAULT_DEADLINE);
    assert!(matches!(ended, Event::Close(Some(1011))), "the panicking session: {ended:?}");

    let answer = try_http(s.port, "GET", &format!("/{TRIGGER}"), &[], None);
    assert!(answer.is_err(), "a request whose task panicked was answered: {answer:?}");

    assert_ping_pong(&mut bystander);
    assert_eq!(s.get("/health").status, 200);
    // The session's count comes once its close is done (the peer's hang-up
    // is waited for, bounded).
    s.wait_metric("realtime_task_panics_total", DEFAULT_DEADLINE, |n| n == 2.0);
    assert!(s.try_exit().is_none(), "the process ended:\n{}", s.output_dump());
    s.wait_stderr(DEFAULT_DEADLINE, |e| e.contains("fault injected: boom"));
}
