//! The Prometheus metrics of SPEC §5, registered at start-up so `/metrics`
//! shows every family from the first scrape. Handles are atomics: each shard
//! keeps clones of its own series and adds to shared counters once per event,
//! not once per recipient, so no registry lock and little contention is on a
//! hot path.

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

/// Where an event entered the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Redis,
}

/// Why an event (or one copy of it) was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A shard's inbox was full.
    InboxFull,
    /// An event from Redis that is not an envelope, or that nobody may receive.
    Invalid,
}

impl DropReason {
    const ALL: [DropReason; 2] = [DropReason::InboxFull, DropReason::Invalid];

    fn label(self) -> &'static str {
        match self {
            DropReason::InboxFull => "inbox_full",
            DropReason::Invalid => "invalid",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// `realtime_connections{shard}`, one handle per shard, by shard index.
    connections: Vec<Gauge>,
    pub handshakes: Counter,
    auth_failures: Vec<(AuthError, Counter)>,
    published_api: Counter,
    published_redis: Counter,
    pub deliveries: Counter,
    dropped: Vec<(DropReason, Counter)>,
    pub slow_client_closes: Counter,
    pub rate_limited: Counter,
    pub redis_connected: Gauge,
    pub redis_reconnects: Counter,
    pub uptime_seconds: Gauge,
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
        let published_api = published.get_or_create(&SourceLabel { source: "api" }).clone();
        let published_redis = published.get_or_create(&SourceLabel { source: "redis" }).clone();

        let deliveries = Counter::default();
        registry.register("realtime_deliveries", "Events queued to a client", deliveries.clone());

        let dropped_family = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "realtime_events_dropped",
            "Events not delivered by reason",
            dropped_family.clone(),
        );
        let dropped = DropReason::ALL
            .into_iter()
            .map(|r| (r, dropped_family.get_or_create(&ReasonLabel { reason: r.label() }).clone()))
            .collect();

        let slow_client_closes = Counter::default();
        registry.register(
            "realtime_slow_client_closes",
            "Clients closed because their send queue overflowed",
            slow_client_closes.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "realtime_rate_limited",
            "Client messages refused by flood control",
            rate_limited.clone(),
        );
        let redis_connected = Gauge::default();
        registry.register("realtime_redis_connected", "1 while Redis is connected", redis_connected.clone());
        let redis_reconnects = Counter::default();
        registry.register("realtime_redis_reconnects", "Redis reconnections", redis_reconnects.clone());
        let uptime_seconds = Gauge::default();
        registry.register("realtime_uptime_seconds", "Seconds since start", uptime_seconds.clone());

        Self {
            registry,
            connections,
            handshakes,
            auth_failures,
            published_api,
            published_redis,
            deliveries,
            dropped,
            slow_client_closes,
            rate_limited,
            redis_connected,
            redis_reconnects,
            uptime_seconds,
        }
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

    pub fn published(&self, source: Source) {
        match source {
            Source::Api => self.published_api.inc(),
            Source::Redis => self.published_redis.inc(),
        };
    }

    pub fn dropped(&self, reason: DropReason) {
        if let Some((_, counter)) = self.dropped.iter().find(|(r, _)| *r == reason) {
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
