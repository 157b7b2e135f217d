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
