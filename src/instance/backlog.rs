//! Backpressure for publishers: how many bytes of frames each shard holds
//! for its clients and has not yet written, and the wait a publish takes
//! while any shard holds too many.
//!
//! Only what the shard's writers will take counts: the bytes of a session
//! whose socket has taken nothing for [`STALLED_AFTER`] are left out (its own
//! `SEND_QUEUE_BYTES` bounds them), so that clients which never read cannot
//! make every publisher wait; backpressure follows the pace of the clients
//! that do read.
//!
//! Publishes are taken ahead of session writes (the ingest task queue), so
//! without this a fast publisher could queue events faster than the shards
//! write them, until clients are closed as slow. Each shard's figure is an
//! atomic only that shard writes — once per event and once per session
//! write — on its own cache line, through its [`BacklogWriter`], which is
//! made once and moved to it; publishers only read them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::metrics::Metrics;

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
/// How long a session's writer may wait for its socket before its bytes
/// leave the backlog. The kernel wakes a writer only once half of the
/// socket's send buffer has drained (megabytes, once autotuned), so a client
/// reading a few MB/s already leaves a few hundred milliseconds between
/// wake-ups; one that leaves a whole second takes nothing worth waiting for.
pub const STALLED_AFTER: Duration = Duration::from_secs(1);

type Counts = Arc<[CachePadded<AtomicUsize>]>;

/// The read side: bytes each shard owes its clients.
pub struct Backlogs {
    shards: Counts,
}

/// One shard's count, owned by that shard. Not `Clone`.
pub struct BacklogWriter {
    shards: Counts,
    at: usize,
}

impl Backlogs {
    /// The counts of `shards` shards, and each shard's writer by shard index.
    pub fn new(shards: usize) -> (Self, Vec<BacklogWriter>) {
        let counts: Counts = (0..shards).map(|_| CachePadded::new(AtomicUsize::new(0))).collect();
        let writers = (0..shards).map(|at| BacklogWriter { shards: counts.clone(), at }).collect();
        (Self { shards: counts }, writers)
    }

    /// Bytes queued on each shard, by shard index.
    pub fn bytes(&self) -> impl Iterator<Item = usize> + '_ {
        self.shards.iter().map(|b| b.load(Ordering::Relaxed))
    }

    /// Waits (bounded by [`MAX_WAIT`]) until every shard is within its limit,
    /// given each client's `send_queue_bytes`.
    pub async fn wait_for_room(&self, metrics: &Metrics, send_queue_bytes: usize) {
        if !self.congested(metrics, send_queue_bytes) {
            return;
        }
        metrics.publishes_held.inc();
        let give_up = Instant::now() + MAX_WAIT;
        while self.congested(metrics, send_queue_bytes) && Instant::now() < give_up {
            glommio::timer::sleep(RECHECK).await;
        }
    }

    /// Whether some shard holds more than its clients' share.
    fn congested(&self, metrics: &Metrics, send_queue_bytes: usize) -> bool {
        let per_client = send_queue_bytes / PER_CLIENT_DIVISOR;
        self.bytes().enumerate().any(|(shard, bytes)| {
            let clients = usize::try_from(metrics.connections_of(shard)).unwrap_or(0);
            bytes > clients.saturating_mul(per_client).clamp(FLOOR, CAP)
        })
    }
}

impl BacklogWriter {
    /// `bytes` more are queued to this shard's clients.
    pub fn add(&self, bytes: usize) {
        self.shards[self.at].fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` were taken for writing or discarded.
    pub fn remove(&self, bytes: usize) {
        self.shards[self.at].fetch_sub(bytes, Ordering::Relaxed);
    }
}
