//! The kernel's floor under a delivery on this machine: one `write` of a
//! 200-byte frame (an event envelope's size) to the next of 5,000 loopback
//! TCP sockets, round robin, as a shard does when events arrive 50 ms apart
//! and every delivery is its own write. No server code runs here: whatever a
//! server does in user space comes on top. On loopback the kernel runs the
//! receiving socket's side of TCP inside the sender's `write`, so this is the
//! sender's CPU for the pair, the way the fan-out benchmarks count it. The
//! reader drains every socket from another thread without sleeping, so no
//! wake-up cost is included: a real client's wake-ups would only add to it.
//!
//! `cargo bench --bench loopback_floor`

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A shard's share of the 10,000 connections with two shards.
const SOCKETS: usize = 5_000;
const FRAME: usize = 200;

/// `SOCKETS` connected pairs: the sending ends, and a thread draining the
/// receiving ends until the returned flag is set.
fn pairs() -> (Vec<TcpStream>, Arc<AtomicBool>, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let mut senders = Vec::with_capacity(SOCKETS);
    let mut receivers = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let receiver = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        let (sender, _) = listener.accept().unwrap_or_else(|e| panic!("accept: {e}"));
        sender.set_nodelay(true).unwrap_or_else(|e| panic!("{e}"));
        receiver.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        senders.push(sender);
        receivers.push(receiver);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let draining = stop.clone();
    let drain = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !draining.load(Ordering::Relaxed) {
            for receiver in &mut receivers {
                match receiver.read(&mut buf) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    });
    (senders, stop, drain)
}

fn one_write_per_delivery(c: &mut Criterion) {
    let (mut senders, stop, drain) = pairs();
    let frame = [b'x'; FRAME];
    let mut next = 0;
    let mut group = c.benchmark_group("loopback floor");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one 200-byte write to the next of 5,000 sockets", |b| {
        b.iter(|| {
            senders[next].write_all(&frame).unwrap_or_else(|e| panic!("write: {e}"));
            next = (next + 1) % SOCKETS;
        })
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    drain.join().unwrap_or_else(|_| panic!("the drain thread panicked"));
}

criterion_group!(benches, one_write_per_delivery);
criterion_main!(benches);
