//! The Prometheus metrics of SPEC §5, registered at start-up so `/metrics`
//! shows every family from the first scrape. Handles are atomics: each shard
//! keeps clones of its own series, so no registry lock is taken on a hot path.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::auth::AuthError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// `realtime_connections{shard}`, one handle per shard, by shard index.
    connections: Vec<Gauge>,
    pub handshakes: Counter,
    auth_failures: Vec<(AuthError, Counter)>,
    pub uptime_seconds: Gauge,
    pub redis_connected: Gauge,
}

impl Metrics {
    pub fn new(shards: usize) -> Self {
        let mut registry = Registry::default();

        let connections_family = Family::<ShardLabel, Gauge>::default();
        registry.register("realtime_connections", "Open WebSocket connections", connections_family.clone());
        let connections = (0..shards)
            .map(|i| connections_family.get_or_create(&ShardLabel { shard: i.to_string() }).clone())
            .collect();

        let handshakes = Counter::default();
        registry.register("realtime_handshakes", "Completed WebSocket handshakes", handshakes.clone());

        let auth_family = Family::<ReasonLabel, Counter>::default();
        registry.register("realtime_auth_failures", "Refused tokens by reason", auth_family.clone());
        let auth_failures = AuthError::ALL
            .into_iter()
            .map(|e| (e, auth_family.get_or_create(&ReasonLabel { reason: e.reason() }).clone()))
            .collect();

        let published = Family::<SourceLabel, Counter>::default();
        registry.register("realtime_events_published", "Events accepted for delivery", published.clone());
        for source in ["api", "redis"] {
            drop(published.get_or_create(&SourceLabel { source }));
        }
        registry.register(
            "realtime_deliveries",
            "Events written to a client's queue",
            Counter::<u64>::default(),
        );
        registry.register(
            "realtime_events_dropped",
            "Events not delivered by reason",
            Family::<ReasonLabel, Counter>::default(),
        );
        registry.register(
            "realtime_slow_client_closes",
            "Clients closed because their send queue overflowed",
            Counter::<u64>::default(),
        );
        registry.register(
            "realtime_rate_limited",
            "Client messages refused by flood control",
            Counter::<u64>::default(),
        );
        let redis_connected = Gauge::default();
        registry.register("realtime_redis_connected", "1 while Redis is connected", redis_connected.clone());
        registry.register("realtime_redis_reconnects", "Redis reconnections", Counter::<u64>::default());
        let uptime_seconds = Gauge::default();
        registry.register("realtime_uptime_seconds", "Seconds since start", uptime_seconds.clone());

        Self { registry, connections, handshakes, auth_failures, uptime_seconds, redis_connected }
    }

    /// The connection gauge of one shard; only that shard changes it.
    pub fn shard_connections(&self, shard: usize) -> Gauge {
        self.connections[shard].clone()
    }

    pub fn connections_total(&self) -> i64 {
        self.connections.iter().map(Gauge::get).sum()
    }

    pub fn auth_failed(&self, error: AuthError) {
        if let Some((_, counter)) = self.auth_failures.iter().find(|(e, _)| *e == error) {
            counter.inc();
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
