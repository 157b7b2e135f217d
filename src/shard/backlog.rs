//! Backpressure for publishers: how many bytes of frames each shard holds
//! for its clients and has not yet written, and the wait a publish takes
//! while any shard holds too many.
//!
//! Publishes are taken ahead of session writes (the ingest task queue), so
//! without this a fast publisher could queue events faster than the shards
//! write them, until clients are closed as slow. Each shard's figure is an
//! atomic only that shard writes — once per event and once per session
//! write — on its own cache line; publishers only read them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::ShardId;
use crate::instance::Instance;

/// Most bytes of undelivered frames one shard may hold before publishers
/// wait, however many clients it has.
const CAP: usize = 128 * 1024 * 1024;
/// What a shard may always hold: more than a few stalled clients' full send
/// queues, so that they cannot make publishers wait; they are closed as slow
/// instead.
const FLOOR: usize = 16 * 1024 * 1024;
/// Between the two, a shard may hold this fraction of `SEND_QUEUE_BYTES` per
/// client on average, so that publishers wait long before healthy clients'
/// queues overflow.
const PER_CLIENT_DIVISOR: usize = 4;
/// How often a waiting publish looks again.
const RECHECK: Duration = Duration::from_millis(1);
/// The longest a publish waits: past it the event is taken anyway, and each
/// client's send queue limit bounds memory from there. Keeps one stalled
/// client of a tiny shard from holding publishers for long.
const MAX_WAIT: Duration = Duration::from_millis(250);

pub struct Backlogs {
    shards: Vec<CachePadded<AtomicUsize>>,
}

impl Backlogs {
    pub fn new(shards: usize) -> Self {
        Self { shards: (0..shards).map(|_| CachePadded::new(AtomicUsize::new(0))).collect() }
    }

    /// `bytes` more are queued on `shard`; called by that shard only.
    pub fn add(&self, shard: ShardId, bytes: usize) {
        self.shards[shard.index()].fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` were taken for writing or discarded on `shard`; called by that
    /// shard only.
    pub fn remove(&self, shard: ShardId, bytes: usize) {
        self.shards[shard.index()].fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes queued on each shard, by shard index.
    pub fn bytes(&self) -> impl Iterator<Item = usize> + '_ {
        self.shards.iter().map(|b| b.load(Ordering::Relaxed))
    }
}

/// Whether some shard holds more than its clients' share.
fn congested(instance: &Instance) -> bool {
    let per_client = instance.config.send_queue_bytes / PER_CLIENT_DIVISOR;
    instance.backlogs.bytes().enumerate().any(|(shard, bytes)| {
        let clients = usize::try_from(instance.metrics.connections_of(shard)).unwrap_or(0);
        bytes > clients.saturating_mul(per_client).clamp(FLOOR, CAP)
    })
}

/// Waits (bounded by [`MAX_WAIT`]) until every shard is within its limit.
pub async fn wait_for_room(instance: &Instance) {
    if !congested(instance) {
        return;
    }
    instance.metrics.publishes_held.inc();
    let give_up = Instant::now() + MAX_WAIT;
    while congested(instance) && Instant::now() < give_up {
        glommio::timer::sleep(RECHECK).await;
    }
}
