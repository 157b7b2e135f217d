//! What every shard of this process shares, read-only or through atomics that
//! only their owner writes: configuration, the token verifier, metrics, the
//! shards' mailboxes, the connection admission count. Built once in
//! [`crate::server`] and leaked, so shards hold a plain `&'static Instance`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::shard::backlog::Backlogs;
use crate::shard::inbox::{Inbox, Mailbox};
use crate::shard::ShardId;

pub struct Instance {
    pub config: Config,
    pub verifier: TokenVerifier,
    pub metrics: Metrics,
    pub started: Instant,
    /// One per shard, indexed by [`ShardId`]: how anyone reaches a shard.
    mailboxes: Vec<Mailbox>,
    /// Bytes each shard has queued for its clients and not yet written.
    pub backlogs: Backlogs,
    /// The receiving halves, taken by their owners at start-up.
    inboxes: Vec<Inbox>,
    /// Connections admitted on every shard; the `MAX_CONNECTIONS` gate.
    admitted: AtomicUsize,
    shutting_down: AtomicBool,
    /// Redis connections (a subscriber and a publisher per shard) now up.
    redis_links: AtomicUsize,
}

impl Instance {
    pub fn new(config: Config, verifier: TokenVerifier) -> Self {
        let (mailboxes, inboxes) = (0..config.shards).map(|_| crate::shard::inbox::pair()).unzip();
        Self {
            metrics: Metrics::new(config.shards),
            backlogs: Backlogs::new(config.shards),
            config,
            verifier,
            started: Instant::now(),
            mailboxes,
            inboxes,
            admitted: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            redis_links: AtomicUsize::new(0),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.mailboxes.len()
    }

    pub fn mailboxes(&self) -> &[Mailbox] {
        &self.mailboxes
    }

    pub fn inbox(&self, shard: ShardId) -> Inbox {
        self.inboxes[shard.index()].clone()
    }

    /// Messages waiting in each shard's inbox, by shard index.
    pub fn inbox_depths(&self) -> impl Iterator<Item = usize> + '_ {
        self.inboxes.iter().map(Inbox::waiting)
    }

    /// Connections open on every shard (the sum of the shards' gauges).
    pub fn connections(&self) -> i64 {
        self.metrics.connections_total()
    }

    /// `None` without `REDIS_URL`; otherwise whether every shard's
    /// subscriber and publisher are connected.
    pub fn redis_connected(&self) -> Option<bool> {
        self.config.redis.as_ref()?;
        Some(self.redis_links.load(Ordering::Acquire) == 2 * self.shard_count())
    }

    pub fn redis_link_up(&self) {
        self.redis_links.fetch_add(1, Ordering::AcqRel);
        self.metrics.redis_connected.set(i64::from(self.redis_connected() == Some(true)));
    }

    pub fn redis_link_down(&self) {
        self.redis_links.fetch_sub(1, Ordering::AcqRel);
        self.metrics.redis_connected.set(0);
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Reserves a connection slot, or `None` at `MAX_CONNECTIONS`.
    pub fn admit(&'static self) -> Option<Admission> {
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        if before >= self.config.max_connections {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Admission { instance: self })
    }
}

/// A held connection slot; dropping it frees the slot.
pub struct Admission {
    instance: &'static Instance,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.instance.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}
