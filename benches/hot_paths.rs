//! Micro-benchmarks of the hot paths: encoding an event's envelope (once per
//! event), delivering one event to 10,000 members of a room on one shard
//! (once per recipient), and verifying a client's JWT (once per handshake).
//!
//! `cargo bench --bench hot_paths`

use std::rc::Rc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use realtime::auth::{jwt, Identity, KeySet, Role, SigningKey, TokenVerifier};
use realtime::cli::ServeArgs;
use realtime::config::Config;
use realtime::event::{Draft, Event, Required};
use realtime::instance::{jwks, Instance};
use realtime::shard::handle::SessionHandle;
use realtime::shard::Shard;

const BROADCAST: &str = r#"{"room":"orders","type":"order_update","userId":"123","payload":{"orderId":"12345","status":"shipped","items":[{"productId":"p1","quantity":2}]}}"#;
const MEMBERS: usize = 10_000;

fn event() -> Event {
    let draft: Draft<'_> = serde_json::from_str(BROADCAST).unwrap_or_else(|e| panic!("{e}"));
    draft.into_event(Required::Room).unwrap_or_else(|e| panic!("{e}"))
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse, validate and encode a broadcast", |b| b.iter(event));
    group.finish();
}

fn deliver(c: &mut Criterion) {
    let args = ServeArgs { shards: Some("1".into()), ..ServeArgs::default() };
    let config = Config::from_args(&args).unwrap_or_else(|e| panic!("{e}"));
    let verifier = TokenVerifier::hs256(b"bench");
    let (instance, mut parts) = Instance::new(config, verifier, KeySet::default(), jwks::channel().0);
    let instance: &'static Instance = Box::leak(Box::new(instance));
    let Some(parts) = parts.pop() else { panic!("one shard's parts") };
    let (shard, _) = Shard::new(instance, parts);
    let sessions: Vec<_> = (0..MEMBERS)
        .map(|i| {
            let identity = Identity { user_id: i.to_string(), role: Role::Seller };
            let session = Rc::new(SessionHandle::new(identity, u64::MAX, usize::MAX, Instant::now()));
            shard.register(session.clone());
            shard.subscribe(&session, "orders", None).unwrap_or_else(|e| panic!("{e}"));
            session
        })
        .collect();
    let event = event();
    let mut batch = std::collections::VecDeque::new();
    let mut group = c.benchmark_group("fan-out");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    group.bench_function("deliver one event to 10,000 room members", |b| {
        b.iter_batched(
            || (),
            |()| {
                shard.deliver(&event);
                // What the session tasks would take; outside the timing
                // would let queues grow without bound.
                for session in &sessions {
                    session.take_outbound(&mut batch);
                    batch.clear();
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn verify(c: &mut Criterion) {
    let secret = b"a secret of reasonable length";
    let verifier = TokenVerifier::hs256(secret);
    let token = jwt::mint(&SigningKey::hs256(secret), None, "123", Role::Seller, 3600)
        .unwrap_or_else(|e| panic!("{e}"));
    let keys = KeySet::default();
    let mut group = c.benchmark_group("jwt");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify an HS256 token", |b| b.iter(|| verifier.verify(&token, &keys)));
    group.finish();
}

criterion_group!(benches, encode, deliver, verify);
criterion_main!(benches);
