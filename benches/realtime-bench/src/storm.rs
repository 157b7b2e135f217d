//! `storm`: connect → upgrade (token in `?token=`) → read `connected` →
//! (with a room: subscribe, read `subscribed`) → close, in a loop, from C parallel workers spread over the executors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::client;
use crate::fleet::executor_pool;
use crate::hist::Histogram;
use crate::target::Target;
use crate::token::Minter;

/// Source addresses the workers rotate over (127.0.0.1 ..= 127.0.0.8).
const SOURCE_SLOTS: usize = 8;
/// Pause after a failed attempt, so a dead server does not make a busy loop.
const ERROR_PAUSE: Duration = Duration::from_millis(5);

pub struct StormSpec {
    pub target: Target,
    /// Signs each worker's token (HS256 or a private key's algorithm).
    pub minter: Arc<Minter>,
    pub concurrency: usize,
    pub threads: usize,
    pub duration: Duration,
    pub count: u64,
    pub attempt_limit: Duration,
    /// Subscribe to this room before closing.
    pub room: Option<String>,
}

#[derive(Default)]
pub struct StormReport {
    pub handshakes: u64,
    pub errors: BTreeMap<String, u64>,
    /// Connect to `connected`, µs.
    pub latency: Histogram,
    pub elapsed: Duration,
}

pub fn run(spec: StormSpec) -> anyhow::Result<StormReport> {
    let threads = spec.threads.clamp(1, spec.concurrency.max(1));
    let claimed = Arc::new(AtomicU64::new(0));
    let (assign, assignments) = crossbeam_channel::bounded(threads);
    for shard in 0..threads {
        let _ = assign.send(shard);
    }
    let spec = Arc::new(spec);
    let started = Instant::now();
    let deadline = started + spec.duration;
    let handles = executor_pool("bench-storm", threads)
        .on_all_shards(move || async move {
            let shard = assignments.try_recv().unwrap_or(0);
            let workers: Vec<usize> = (shard..spec.concurrency).step_by(threads).collect();
            let minter = spec.minter.clone();
            let tasks: Vec<_> = workers
                .into_iter()
                .map(|w| {
                    glommio::spawn_local(worker(spec.clone(), minter.clone(), claimed.clone(), deadline, w))
                })
                .collect();
            let mut report = StormReport::default();
            for task in tasks {
                merge(&mut report, task.await);
            }
            report
        })
        .map_err(|e| anyhow!("cannot start executors: {e}"))?;
    let mut total = StormReport::default();
    for result in handles.join_all() {
        merge(&mut total, result.map_err(|e| anyhow!("an executor failed: {e}"))?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

fn merge(into: &mut StormReport, from: StormReport) {
    into.handshakes += from.handshakes;
    for (k, v) in from.errors {
        *into.errors.entry(k).or_default() += v;
    }
    into.latency.merge(&from.latency);
}

async fn worker(
    spec: Arc<StormSpec>,
    minter: Arc<Minter>,
    claimed: Arc<AtomicU64>,
    deadline: Instant,
    index: usize,
) -> StormReport {
    let token = minter.token(&format!("storm{index}"));
    let mut report = StormReport::default();
    let mut round = 0;
    while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < spec.count {
        let src = spec.target.source((index + round) % SOURCE_SLOTS);
        round += 1;
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started).max(Duration::from_millis(1));
        let limit = spec.attempt_limit.min(left + Duration::from_secs(1));
        let attempt = async {
            let mut ws = client::open(&spec.target, src, &token, limit).await?;
            if let Some(room) = &spec.room {
                if client::subscribe(&mut ws, room, None).await?.is_none() {
                    return Err(client::Failure::Unexpected(format!("subscribe to {room} refused")));
                }
            }
            Ok(ws)
        };
        match client::within(limit, attempt).await {
            Ok(ws) => {
                report.latency.record(started.elapsed().as_micros() as u64);
                report.handshakes += 1;
                client::close(ws, Duration::from_secs(2)).await;
            }
            Err(e) => {
                *report.errors.entry(e.kind()).or_default() += 1;
                glommio::timer::sleep(ERROR_PAUSE).await;
            }
        }
    }
    report
}
