//! What every shard of this process shares: configuration, the token
//! verifier, metrics, the shards' mailboxes, and read-only views of what each
//! shard owns (its backlog, its Redis links). Built once in
//! [`crate::server`] and leaked, so shards hold a plain `&'static Instance`.
//!
//! Building it also makes each shard's owned parts ([`ShardParts`]: the
//! receiving side of its inbox, the writers of its backlog, metrics and
//! Redis link flags) exactly once; they are moved to that shard's executor
//! and nobody else can reach them.
//!
//! - `backlog`: bytes each shard owes its clients, and publishers' wait;
//! - `jwks`: the key set of `JWKS_URL`, fetched off the executors and handed
//!   to each shard.

pub mod backlog;
pub mod jwks;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::auth::{KeySet, TokenVerifier};
use crate::bus::interest::InterestWriter;
use crate::bus::local::{Inbox, Mailboxes};
use crate::bus::redis::{Links, ShardLinks};
use crate::config::Config;
use crate::metrics::{Metrics, ShardMetrics};
use crate::shard_id::ShardId;
use backlog::{BacklogWriter, Backlogs};

pub struct Instance {
    pub config: Config,
    pub verifier: TokenVerifier,
    pub metrics: Metrics,
    pub started: Instant,
    /// How anyone reaches a shard.
    pub mailboxes: Mailboxes,
    /// Bytes each shard has queued for its clients and not yet written.
    pub backlogs: Backlogs,
    /// Asks the JWKS fetcher for a fresh set (a token named an unknown `kid`).
    pub jwks: jwks::Refetch,
    /// Which Redis connections are up (all down without `REDIS_URL`).
    redis_links: Links,
    /// WebSocket sessions admitted on every shard; the `MAX_CONNECTIONS`
    /// gate. With `http_slots`, the counts every shard writes: the limits are
    /// per process.
    sessions: Slots,
    /// HTTP connections open on every shard, a share of their own.
    http_slots: Slots,
    /// Written by the main thread when shutdown begins.
    shutting_down: AtomicBool,
}

/// What one shard owns alone, made once and moved to its executor.
pub struct ShardParts {
    pub id: ShardId,
    pub inbox: Inbox,
    /// What its sessions listen to, as the other shards read it.
    pub interest: InterestWriter,
    pub backlog: BacklogWriter,
    pub metrics: ShardMetrics,
    /// Its Redis connections' flags, for its subscriber and publisher tasks.
    pub redis_links: ShardLinks,
    /// Its own copy of the JWKS keys (empty without `JWKS_URL`).
    pub keys: KeySet,
}

impl Instance {
    /// The shared instance, and each shard's parts by shard index, each
    /// with a copy of `keys`.
    pub fn new(
        config: Config,
        verifier: TokenVerifier,
        keys: KeySet,
        jwks: jwks::Refetch,
    ) -> (Self, Vec<ShardParts>) {
        let shards = config.shards;
        let (config_max, http_max) = (config.max_connections, config.max_http_connections());
        let (mailboxes, ends) = Mailboxes::new(shards);
        let (backlogs, backlog_writers) = Backlogs::new(shards);
        let (metrics, shard_metrics) = Metrics::new(shards);
        let (redis_links, shard_links) = Links::new(shards);
        let parts = ends
            .into_iter()
            .zip(backlog_writers)
            .zip(shard_metrics)
            .zip(shard_links)
            .enumerate()
            .map(|(index, (((end, backlog), metrics), redis_links))| ShardParts {
                id: ShardId::new(index),
                inbox: end.inbox,
                interest: end.interest,
                backlog,
                metrics,
                redis_links,
                keys: keys.clone(),
            })
            .collect();
        let instance = Self {
            config,
            verifier,
            metrics,
            started: Instant::now(),
            mailboxes,
            backlogs,
            jwks,
            redis_links,
            sessions: Slots::new(config_max),
            http_slots: Slots::new(http_max),
            shutting_down: AtomicBool::new(false),
        };
        (instance, parts)
    }

    pub fn shard_count(&self) -> usize {
        self.mailboxes.len()
    }

    /// Connections open on every shard (the sum of the shards' gauges).
    pub fn connections(&self) -> i64 {
        self.metrics.connections_total()
    }

    /// `None` without `REDIS_URL`; otherwise whether every shard's
    /// subscriber and publisher are connected.
    pub fn redis_connected(&self) -> Option<bool> {
        self.config.redis.as_ref()?;
        Some(self.redis_links.all_up())
    }

    /// Sets the series that are read rather than kept (uptime, queue depths,
    /// the Redis state), before `/metrics` or the operator page reads them.
    pub fn record_scraped(&self) {
        self.metrics.uptime_seconds.set(self.started.elapsed().as_secs() as i64);
        self.metrics.set_scraped(
            self.mailboxes.depths(),
            self.backlogs.bytes(),
            self.redis_connected() == Some(true),
        );
    }

    /// `None` without `REDIS_URL`; otherwise each shard's (subscriber,
    /// publisher) state, by shard index.
    pub fn redis_links(&self) -> Option<Vec<(bool, bool)>> {
        self.config.redis.as_ref()?;
        Some(self.redis_links.by_shard().collect())
    }

    /// Holds a publish (briefly, and bounded) while some shard owes its
    /// clients more than their share.
    pub async fn wait_for_room(&self) {
        self.backlogs.wait_for_room(&self.metrics, self.config.send_queue_bytes, &self.mailboxes).await;
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Reserves a WebSocket session's slot, or `None` at `MAX_CONNECTIONS`.
    pub fn admit(&'static self) -> Option<Admission> {
        self.sessions.take()
    }

    /// Reserves an HTTP connection's slot, or `None` when they are all held.
    pub fn admit_http(&'static self) -> Option<Admission> {
        self.http_slots.take()
    }
}

/// A process-wide count of connections with its limit.
struct Slots {
    taken: AtomicUsize,
    limit: usize,
}

impl Slots {
    fn new(limit: usize) -> Self {
        Self { taken: AtomicUsize::new(0), limit }
    }

    fn take(&'static self) -> Option<Admission> {
        let before = self.taken.fetch_add(1, Ordering::AcqRel);
        if before >= self.limit {
            self.taken.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Admission { slots: self })
    }
}

/// A held connection slot; dropping it frees the slot.
pub struct Admission {
    slots: &'static Slots,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.slots.taken.fetch_sub(1, Ordering::AcqRel);
    }
}
