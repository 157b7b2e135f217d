//! The figures of the operator page (README, Operator page): the same
//! counters and gauges `/metrics` renders, read in one pass into plain
//! numbers for JSON. Reading them takes no lock: each is an atomic.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Metrics;

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

impl Metrics {
    /// Reads every series of [`Figures`]. Queue depths are what the last
    /// [`Metrics::set_scraped`] recorded: call it first.
    pub fn figures(&self) -> Figures {
        let shards = self
            .shards
            .iter()
            .enumerate()
            .map(|(shard, view)| ShardFigures {
                shard,
                connections: view.connections.get(),
                deliveries: view.deliveries.get(),
                inbox_messages: view.inbox_messages.get(),
                send_queue_bytes: view.send_queue_bytes.get(),
                history_events: view.history_events.get(),
                history_bytes: view.history_bytes.get(),
            })
            .collect();
        Figures {
            shards,
            handshakes: self.handshakes.get(),
            published: BTreeMap::from([
                ("api", self.published_api.get()),
                ("redis", self.published_redis.get()),
            ]),
            deliveries: self.deliveries.get(),
            auth_failures: self.auth_failures.iter().map(|(e, c)| (e.reason(), c.get())).collect(),
            dropped: self.dropped.iter().map(|(r, c)| (r.label(), c.get())).collect(),
            slow_client_closes: self.slow_client_closes.get(),
            rate_limited: self.rate_limited.get(),
            publishes_held: self.publishes_held.get(),
            redis_reconnects: self.redis_reconnects.get(),
            disconnected_sessions: self.presence.disconnected_sessions.get(),
        }
    }
}
