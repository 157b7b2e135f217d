//! Sharing the port: SO_REUSEPORT lets the shards of one process share it,
//! but another process may join only when `SHARE_PORT=true` says so.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use support::*;

const EXIT_BOUND: Duration = Duration::from_secs(10);

/// Exit 1 with one error line that names the address and the way out.
fn assert_refused_port(done: &Finished, port: u16) {
    assert_eq!(done.code(), Some(1), "exit status {:?}\n{}", done.status, done.stderr);
    let errors: Vec<_> = done.stderr_lines().into_iter().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one error line:\n{}", done.stderr);
    assert!(errors[0].contains(&format!("127.0.0.1:{port}")), "names the address: {}", errors[0]);
    assert!(errors[0].contains("SHARE_PORT"), "says how to share: {}", errors[0]);
}

#[test]
fn a_second_server_on_a_busy_port_stops_start_up() {
    let first = server().start();
    for secret in ["same-secret-as-the-test-default", "another-secret"] {
        let done = server().port(first.port).env("JWT_SECRET", secret).run(EXIT_BOUND);
        assert_refused_port(&done, first.port);
    }
    assert_eq!(first.health()["status"], "healthy");
}

#[test]
fn a_foreign_listener_with_so_reuseport_stops_start_up() {
    let foreign = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    foreign.set_reuse_port(true).expect("SO_REUSEPORT");
    foreign.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
    foreign.listen(16).expect("listen");
    let foreign: TcpListener = foreign.into();
    let port = foreign.local_addr().expect("local address").port();
    let done = server().port(port).run(EXIT_BOUND);
    assert_refused_port(&done, port);
}

#[test]
fn share_port_lets_a_new_process_join_and_take_over() {
    let mut old = server().start();
    let new = server().port(old.port).env("SHARE_PORT", "true").start();
    // Its health check may have been answered by the old process: wait for
    // the new one's own word that it listens before the old one goes.
    new.wait_stderr(DEFAULT_DEADLINE, |log| log.contains("listening"));
    old.signal(libc::SIGTERM);
    old.wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("old still running\n{}", old.output_dump()));
    // Every request on the port now reaches the new process.
    for _ in 0..20 {
        assert_eq!(new.health()["status"], "healthy");
    }
    let (mut ws, _) = new.connect("joined", "seller");
    assert_ping_pong(&mut ws);
}

#[test]
fn share_port_without_redis_warns_that_processes_share_no_events() {
    let s = server().env("SHARE_PORT", "true").unset("REDIS_URL").start();
    s.wait_stderr(DEFAULT_DEADLINE, |log| {
        log.lines().any(|l| l.contains("WARN") && l.contains("SHARE_PORT") && l.contains("REDIS_URL"))
    });
}
