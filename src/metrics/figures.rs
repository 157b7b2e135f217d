//! The figures of the operator page (README, Operator page): the same
//! counters and gauges `/metrics` renders, as plain numbers for JSON
//! ([`super::Metrics::figures`] reads them, each an atomic, without a lock).

use std::collections::BTreeMap;

use serde::Serialize;

/// One shard's series.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardFigures {
    pub shard: usize,
    pub connections: i64,
    pub deliveries: u64,
    pub inbox_messages: i64,
    pub send_queue_bytes: i64,
    pub history_events: i64,
    pub history_bytes: i64,
}

/// Every process-wide series the page shows; counters since start-up, so
/// the page works out rates from two readings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub shards: Vec<ShardFigures>,
    pub handshakes: u64,
    /// `realtime_events_published_total` by `source`.
    pub published: BTreeMap<&'static str, u64>,
    pub deliveries: u64,
    /// `realtime_auth_failures_total` by `reason`.
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// `realtime_events_dropped_total` by `reason`.
    pub dropped: BTreeMap<&'static str, u64>,
    pub slow_client_closes: u64,
    pub rate_limited: u64,
    pub publishes_held: u64,
    pub redis_reconnects: u64,
    pub disconnected_sessions: u64,
}
