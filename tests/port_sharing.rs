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
    let shards = new.health()["shards"].as_u64().expect("shards");
    old.signal(libc::SIGTERM);
    old.wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("old still running\n{}", old.output_dump()));
    assert_eq!(listening_sockets(old.port), shards as usize, "only the new process's listeners are left");
    // Every request on the port now reaches the new process.
    for _ in 0..20 {
        assert_eq!(new.health()["status"], "healthy");
    }
    let (mut ws, _) = new.connect("joined", "seller");
    assert_ping_pong(&mut ws);
}

/// A server's listeners must have left the port by the time it exits: the
/// kernel releases an io_uring's files after the process is gone, and a
/// listener still there would take, and lose, connections meant for the
/// process that took the port over. Several rounds, as the release races.
#[test]
fn a_stopped_server_has_left_the_port_when_it_exits() {
    for _ in 0..16 {
        let mut s = server().start();
        s.signal(libc::SIGTERM);
        // Looked at as soon as it has exited: the release takes milliseconds.
        poll(EXIT_BOUND, Duration::from_millis(1), || s.try_exit(), Option::is_some)
            .unwrap_or_else(|_| panic!("still running\n{}", s.output_dump()));
        assert_eq!(listening_sockets(s.port), 0, "a listener outlived its process\n{}", s.output_dump());
    }
}

/// Sockets listening on `port` on this machine, from the kernel's tables.
fn listening_sockets(port: u16) -> usize {
    const LISTEN: &str = "0A";
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            fields.get(3) == Some(&LISTEN) && local_port == Some(port)
        })
        .count()
}

#[test]
fn share_port_without_redis_warns_that_processes_share_no_events() {
    let s = server().env("SHARE_PORT", "true").unset("REDIS_URL").start();
    s.wait_stderr(DEFAULT_DEADLINE, |log| {
        log.lines().any(|l| l.contains("WARN") && l.contains("SHARE_PORT") && l.contains("REDIS_URL"))
    });
}
