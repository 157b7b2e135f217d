//! `recover`: the recovery storm. Client i joins room `ROOM:(i % R)` and
//! keeps the room's `offset`/`epoch` from its `subscribed` answer; then all
//! disconnect, the scenario publishes while they are away, and all reconnect
//! at once with `since`. Each client counts as recovered once it has its
//! `subscribed` with `recovered:true` and every event up to the offset that
//! answer names; offsets tell gaps and duplicates apart.
//!
//! Each phase is one run of an executor pool; the connections a phase opened
//! are held until every client of the phase is done (so that closing them
//! is not part of what the storm measures), then closed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use async_tungstenite::tungstenite::Message;
use glommio::sync::Semaphore;
use glommio::PoolThreadHandles;
use serde_json::Value;

use crate::client::{self, Failure, Ws};
use crate::fleet::executor_pool;
use crate::hist::Histogram;
use crate::recovery::{subscribe_request, Position};
use crate::target::Target;
use crate::token::{self, Minter};

/// How often a phase's executors look whether they may close their connections.
const RELEASE_POLL: Duration = Duration::from_millis(10);
/// Time a closing connection waits for the server's close frame.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

pub struct RecoverSpec {
    pub target: Target,
    pub minter: Minter,
    pub conns: usize,
    /// Rooms are `{room}:0` … `{room}:(rooms - 1)`.
    pub room: String,
    pub rooms: usize,
    pub threads: usize,
    pub connect_concurrency: usize,
    /// How long one client may take: to join, or to reconnect and recover.
    pub client_limit: Duration,
}

impl RecoverSpec {
    pub fn room_name(&self, k: usize) -> String {
        format!("{}:{k}", self.room)
    }

    fn room_of(&self, client: usize) -> String {
        self.room_name(client % self.rooms)
    }
}

/// The position a `subscribed` answer (or a kept event) gives: the `since`
/// a client reconnects with.
fn position_of(message: &Value) -> Option<Position> {
    Some(Position { offset: message["offset"].as_u64()?, epoch: message["epoch"].as_str()?.to_owned() })
}

/// What one phase saw, summed over its executors.
#[derive(Default)]
pub struct PhaseReport {
    /// Join: every client's position, by client index (`None`: it did not join).
    pub positions: Vec<Option<Position>>,
    pub connected: u64,
    pub connect_retries: u64,
    /// Recover: `subscribed` with `recovered:true` and every missed event.
    pub recovered: u64,
    /// Recover: `subscribed` with `recovered:false`.
    pub not_recovered: u64,
    /// Recover: events the clients should have had replayed (the answers'
    /// offsets less `since`), and those that came.
    pub missed: u64,
    pub replayed: u64,
    /// Offsets skipped over, and offsets seen again.
    pub gaps: u64,
    pub duplicates: u64,
    pub event_bytes: u64,
    pub errors: BTreeMap<String, u64>,
    /// Per client that joined (or recovered), µs from its first connect
    /// attempt until it had.
    pub client_time: Histogram,
    /// µs from the phase's start until the last of them had.
    pub last_done_us: u64,
}

impl PhaseReport {
    fn merge(&mut self, o: PhaseReport) {
        if self.positions.len() < o.positions.len() {
            self.positions.resize(o.positions.len(), None);
        }
        for (mine, theirs) in self.positions.iter_mut().zip(o.positions) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        self.connected += o.connected;
        self.connect_retries += o.connect_retries;
        self.recovered += o.recovered;
        self.not_recovered += o.not_recovered;
        self.missed += o.missed;
        self.replayed += o.replayed;
        self.gaps += o.gaps;
        self.duplicates += o.duplicates;
        self.event_bytes += o.event_bytes;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.client_time.merge(&o.client_time);
        self.last_done_us = self.last_done_us.max(o.last_done_us);
    }

    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

/// What a phase does with each client.
enum Task {
    /// Connect and subscribe; keep the room's position.
    Join,
    /// Reconnect and subscribe with `since` the position kept.
    Recover(Vec<Option<Position>>),
}

struct Shared {
    spec: Arc<RecoverSpec>,
    task: Task,
    started: Instant,
    /// Clients done (either way).
    finished: AtomicUsize,
    /// Set once every client is done: the executors close what they hold.
    release: AtomicBool,
}

/// One phase under way.
pub struct Phase {
    shared: Arc<Shared>,
    handles: PoolThreadHandles<PhaseReport>,
}

impl Phase {
    /// Connects (and subscribes) every client, each from its first connect attempt.
    pub fn join(spec: Arc<RecoverSpec>) -> anyhow::Result<Phase> {
        Phase::start(spec, Task::Join)
    }

    /// Reconnects every client that has a position, all at once.
    pub fn recover(spec: Arc<RecoverSpec>, positions: Vec<Option<Position>>) -> anyhow::Result<Phase> {
        Phase::start(spec, Task::Recover(positions))
    }

    fn start(spec: Arc<RecoverSpec>, task: Task) -> anyhow::Result<Phase> {
        let threads = spec.threads.clamp(1, spec.conns.max(1));
        let shared = Arc::new(Shared {
            spec,
            task,
            started: Instant::now(),
            finished: AtomicUsize::new(0),
            release: AtomicBool::new(false),
        });
        let (assign, assignments) = crossbeam_channel::bounded(threads);
        for shard in 0..threads {
            let _ = assign.send(shard);
        }
        let on_shards = shared.clone();
        let handles = executor_pool("bench-recover", threads)
            .on_all_shards(move || async move {
                let shard = assignments.try_recv().unwrap_or(0);
                shard_main(on_shards, shard, threads).await
            })
            .map_err(|e| anyhow!("cannot start executors: {e}"))?;
        Ok(Phase { shared, handles })
    }

    /// Blocks until every client is done, each bounded by the client limit
    /// (plus the time its turn to connect took); how long the phase took.
    pub fn wait(&self) -> anyhow::Result<Duration> {
        let conns = self.shared.spec.conns;
        // Turns to connect come `connect_concurrency` at a time, each at most a client limit.
        let turns = conns.div_ceil(self.shared.spec.connect_concurrency.max(1)) as u32;
        let deadline =
            self.shared.started + self.shared.spec.client_limit * (turns + 1) + Duration::from_secs(10);
        while self.shared.finished.load(Ordering::Acquire) < conns {
            if Instant::now() >= deadline {
                bail!("clients not all done after {:.0} s", (deadline - self.shared.started).as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(self.shared.started.elapsed())
    }

    /// Closes every connection; what the phase saw.
    pub fn close(self) -> anyhow::Result<PhaseReport> {
        self.shared.release.store(true, Ordering::Release);
        let mut total = PhaseReport::default();
        for result in self.handles.join_all() {
            total.merge(result.map_err(|e| anyhow!("an executor failed: {e}"))?);
        }
        Ok(total)
    }
}

async fn shard_main(shared: Arc<Shared>, shard: usize, threads: usize) -> PhaseReport {
    let spec = &shared.spec;
    let report =
        Rc::new(RefCell::new(PhaseReport { positions: vec![None; spec.conns], ..Default::default() }));
    let held: Rc<RefCell<Vec<Ws>>> = Rc::default();
    let permits = Rc::new(Semaphore::new((spec.connect_concurrency / threads).max(1) as u64));
    let mut tasks = Vec::new();
    for i in (shard..spec.conns).step_by(threads) {
        let since = match &shared.task {
            Task::Join => None,
            Task::Recover(positions) => match positions.get(i).cloned().flatten() {
                Some(p) => Some(p),
                None => {
                    shared.finished.fetch_add(1, Ordering::AcqRel);
                    continue;
                }
            },
        };
        let Ok(permit) = permits.acquire_static_permit(1).await else { break };
        let (shared, report, held) = (shared.clone(), report.clone(), held.clone());
        tasks.push(glommio::spawn_local(async move {
            let outcome = client(&shared, i, since).await;
            drop(permit);
            let done_us = shared.started.elapsed().as_micros() as u64;
            if let Some(ws) = outcome.record(i, done_us, &mut report.borrow_mut()) {
                held.borrow_mut().push(ws);
            }
            shared.finished.fetch_add(1, Ordering::AcqRel);
        }));
    }
    for task in tasks {
        task.await;
    }
    while !shared.release.load(Ordering::Acquire) {
        glommio::timer::sleep(RELEASE_POLL).await;
    }
    let closing: Vec<_> =
        held.take().into_iter().map(|ws| glommio::spawn_local(client::close(ws, CLOSE_LIMIT))).collect();
    for task in closing {
        task.await;
    }
    report.take()
}

/// How one client's part of the phase went.
struct Outcome {
    /// The connection to hold until the phase is over, if it opened.
    ws: Option<Ws>,
    retries: u32,
    done: Result<Done, Failure>,
    /// µs from its first connect attempt until it was done.
    took_us: u64,
}

enum Done {
    Joined(Position),
    Recovered(Recovery),
}

impl Outcome {
    /// Adds this client's part (client `i`, done `done_us` into the phase) to the report.
    fn record(self, i: usize, done_us: u64, report: &mut PhaseReport) -> Option<Ws> {
        report.connect_retries += u64::from(self.retries);
        report.connected += u64::from(self.ws.is_some());
        let finished = match self.done {
            Ok(Done::Joined(position)) => {
                report.positions[i] = Some(position);
                true
            }
            Ok(Done::Recovered(recovery)) => {
                let recovered = recovery.recovered;
                recovery.count(report);
                recovered
            }
            Err(e) => {
                report.error(e.kind());
                false
            }
        };
        // The times are those of the clients that got what they came for.
        if finished {
            report.client_time.record(self.took_us);
            report.last_done_us = report.last_done_us.max(done_us);
        }
        self.ws
    }
}

/// One client's part of the phase.
async fn client(shared: &Shared, i: usize, since: Option<Position>) -> Outcome {
    let spec = &shared.spec;
    let token = spec.minter.token(&token::user_id(i));
    // The storm comes from another source address than the join, so that
    // the join's sockets still closing take none of its ports.
    let src = spec.target.source(usize::from(since.is_some()));
    let room = spec.room_of(i);
    let started = Instant::now();
    let (opened, retries) = client::retrying(
        client::CONNECT_TRIES,
        || false,
        || client::within(spec.client_limit, client::open(&spec.target, src, &token, spec.client_limit)),
    )
    .await;
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(e) => return Outcome { ws: None, retries, done: Err(e), took_us: 0 },
    };
    let left = spec.client_limit.saturating_sub(started.elapsed());
    let done = match &since {
        None => client::within(left, join(&mut ws, &room)).await.map(Done::Joined),
        Some(since) => client::within(left, recover(&mut ws, &room, since)).await.map(Done::Recovered),
    };
    Outcome { ws: Some(ws), retries, done, took_us: started.elapsed().as_micros() as u64 }
}

/// Subscribes without `since`: the room's position from the answer.
async fn join(ws: &mut Ws, room: &str) -> Result<Position, Failure> {
    send(ws, subscribe_request(room, None)).await?;
    let answer = answer(ws, room).await?;
    position_of(&answer)
        .ok_or_else(|| Failure::Unexpected(format!("no offset/epoch (history off?): {answer}")))
}

/// What one client's recovery gave.
#[derive(Debug, Default, PartialEq, Eq)]
struct Recovery {
    recovered: bool,
    missed: u64,
    replayed: u64,
    gaps: u64,
    duplicates: u64,
    bytes: u64,
}

impl Recovery {
    fn count(self, report: &mut PhaseReport) {
        if self.recovered {
            report.recovered += 1;
        } else {
            report.not_recovered += 1;
        }
        report.missed += self.missed;
        report.replayed += self.replayed;
        report.gaps += self.gaps;
        report.duplicates += self.duplicates;
        report.event_bytes += self.bytes;
    }

    /// Counts one replayed event of the room at `offset` after `last`; the new last.
    fn see(&mut self, last: u64, offset: u64, bytes: usize) -> u64 {
        if offset <= last {
            self.duplicates += 1;
            return last;
        }
        self.gaps += offset - last - 1;
        self.replayed += 1;
        self.bytes += bytes as u64;
        offset
    }
}

/// Subscribes with `since`; reads the answer and, when recovered, the
/// room's events up to the answer's offset.
async fn recover(ws: &mut Ws, room: &str, since: &Position) -> Result<Recovery, Failure> {
    send(ws, subscribe_request(room, Some(since))).await?;
    let answer = answer(ws, room).await?;
    let mut recovery = Recovery { recovered: answer["recovered"] == true, ..Recovery::default() };
    let Some(head) = position_of(&answer) else {
        return Err(Failure::Unexpected(format!("no offset/epoch: {answer}")));
    };
    if !recovery.recovered {
        return Ok(recovery);
    }
    recovery.missed = head.offset.saturating_sub(since.offset);
    let mut last = since.offset;
    while last < head.offset {
        let text = client::next_text(ws).await?;
        let Ok(event) = serde_json::from_str::<Value>(&text) else { continue };
        if event["room"] != room {
            continue;
        }
        match event["offset"].as_u64() {
            Some(offset) => last = recovery.see(last, offset, text.len()),
            None => return Err(Failure::Unexpected(format!("an event without offset: {text}"))),
        }
    }
    Ok(recovery)
}

async fn send(ws: &mut Ws, message: String) -> Result<(), Failure> {
    ws.send(Message::Text(message.into())).await.map_err(Failure::Ws)
}

/// The answer to a subscribe to `room`: `subscribed`, or a failure with the error.
async fn answer(ws: &mut Ws, room: &str) -> Result<Value, Failure> {
    loop {
        let text = client::next_text(ws).await?;
        let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
        match message["type"].as_str() {
            Some("subscribed") if message["room"] == room => return Ok(message),
            Some("error") => return Err(Failure::Unexpected(text)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_tell_gaps_and_duplicates() {
        let mut r = Recovery::default();
        let mut last = 3;
        for offset in [4, 5, 5, 8, 2, 9] {
            last = r.see(last, offset, 10);
        }
        assert_eq!(last, 9);
        assert_eq!((r.replayed, r.gaps, r.duplicates, r.bytes), (4, 2, 2, 40));
    }
}
