//! Backpressure for publishers: how many bytes of frames each shard holds
//! for its clients and has not yet written, and the wait a publish takes
//! while any shard holds too many.
//!
//! Each session counts at most a quarter of its `SEND_QUEUE_BYTES`
//! ([`counted_share`]), and a shard is congested past an eighth per session
//! on average ([`limit`]), never less than [`FLOOR`] nor more than [`CAP`].
//! Clients that never read thus congest a shard only when they are more than
//! half of its sessions and more than `FLOOR` / a quarter queue of them (64
//! with 1 MiB queues; 512 past 1,024 sessions, where `CAP` rules): a few
//! cannot make every publisher wait, and their own queue limit closes them
//! as slow. When most clients are behind together (a saturated machine, a
//! publisher flat out), the average passes the eighth and publishers are
//! held. Proportion, not time: a reader starved of CPU and one that stalled
//! look the same by the clock.
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
/// What a shard may always hold: more than 64 stalled clients' counted
/// shares with 1 MiB queues, so that a few cannot make publishers wait; they
/// are closed as slow instead.
const FLOOR: usize = 16 * 1024 * 1024;
/// Between the two, a shard may hold this fraction of `SEND_QUEUE_BYTES` per
/// client on average, so that publishers wait long before healthy clients'
/// queues overflow. It must stay below the share one session may count
/// ([`SHARE_DIVISOR`]), or no number of stalled sessions could reach it, nor
/// clients all behind together.
const PER_CLIENT_DIVISOR: usize = 8;
/// The most of its queue one session counts towards the backlog: this
/// fraction of `SEND_QUEUE_BYTES`. Twice the average a shard may hold, so
/// that only a majority of its sessions, full, can congest it.
const SHARE_DIVISOR: usize = 4;
/// How often a waiting publish looks again.
const RECHECK: Duration = Duration::from_millis(1);
/// The longest a publish waits: past it the event is taken anyway, and each
/// client's send queue limit bounds memory from there. Keeps one stalled
/// client of a tiny shard from holding publishers for long.
const MAX_WAIT: Duration = Duration::from_millis(250);
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
        self.bytes().enumerate().any(|(shard, bytes)| {
            let clients = usize::try_from(metrics.connections_of(shard)).unwrap_or(0);
            bytes > limit(clients, send_queue_bytes)
        })
    }
}

/// What a shard of `clients` sessions may hold before publishers wait.
fn limit(clients: usize, send_queue_bytes: usize) -> usize {
    clients.saturating_mul(send_queue_bytes / PER_CLIENT_DIVISOR).clamp(FLOOR, CAP)
}

/// The part of a session's `queued` bytes that its shard's backlog counts,
/// given its `send_queue_bytes`.
pub fn counted_share(queued: usize, send_queue_bytes: usize) -> usize {
    queued.min(send_queue_bytes / SHARE_DIVISOR)
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

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUE: usize = 1024 * 1024;

    /// Whether `full` sessions with full queues, among `sessions`, take a
    /// shard past its limit.
    fn congested_by(full: usize, sessions: usize) -> bool {
        full * counted_share(QUEUE, QUEUE) > limit(sessions, QUEUE)
    }

    #[test]
    fn a_session_counts_at_most_a_quarter_of_its_queue() {
        assert_eq!(counted_share(1000, QUEUE), 1000);
        assert_eq!(counted_share(QUEUE, QUEUE), QUEUE / 4);
        assert_eq!(counted_share(QUEUE / 2, 64 * QUEUE), QUEUE / 2);
    }

    #[test]
    fn stalled_sessions_congest_a_shard_only_as_more_than_half_of_it_and_more_than_64() {
        assert!(!congested_by(40, 41), "fewer than 64, however few readers");
        assert!(!congested_by(64, 64));
        assert!(congested_by(65, 65));
        assert!(!congested_by(100, 200), "half");
        assert!(congested_by(101, 200));
        assert!(!congested_by(512, 5000), "past 1,024 sessions the cap: 512");
        assert!(congested_by(513, 5000));
    }

    #[test]
    fn clients_all_a_little_behind_congest_a_big_shard() {
        // 5,000 sessions each behind by 27 KiB: an average under a tenth of
        // a queue, past the 128 MiB cap.
        assert!(5000 * counted_share(27 * 1024, QUEUE) > limit(5000, QUEUE));
        // 200 sessions: past an eighth of a queue each on average.
        assert!(200 * counted_share(QUEUE / 8, QUEUE) <= limit(200, QUEUE));
        assert!(200 * counted_share(QUEUE / 8 + 1, QUEUE) > limit(200, QUEUE));
    }
}
