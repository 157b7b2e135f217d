//! The listening side of a run: N WebSocket connections held open, shared
//! among glommio executors, in this process or — past what one process's
//! file descriptors allow — in child processes of this same binary, each with
//! its share of N and its own 127.0.0.x source address.
//!
//! A fleet goes through three phases, driven by the scenario: connect (and
//! subscribe) everything and report readiness; run (count and time what
//! arrives, answer pings, and on the busy connections send client pings on
//! schedule); stop (close, report). Children are driven over their stdin and
//! answer on stdout, one JSON line per step.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::pin::{pin, Pin};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use crossbeam_channel::{Receiver, Sender};
use futures_lite::future::or;
use futures_util::task::AtomicWaker;
use futures_util::StreamExt;
use glommio::sync::{Semaphore, StaticPermit};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};
use serde::{Deserialize, Serialize};

use crate::client::{self, Answer, Failure, Seen, SeqTracker, Ws};
use crate::hist::Histogram;
use crate::procstat;
use crate::recovery::{self, Position, RoomTrack, Subscribed};
use crate::signal::{Signal, Wait};
use crate::target::Target;
use crate::token::{self, Minter};
use crate::window::DeliveryWindow;

/// io_uring memory per executor: small, to fit RLIMIT_MEMLOCK (8 MiB here).
pub const IO_MEMORY: usize = 256 * 1024;
/// io_uring ring depth per executor. Not for concurrency: the kernel sizes
/// the hash table it searches on every cancellation from the ring's size
/// (2^(log2(CQ entries) - 5) buckets, at most 256), and every socket read
/// waiting in the ring sits in that table. The vendored glommio no longer
/// cancels its timers that way (deploy/vendor/README.md), but a read that a
/// timeout gives up on is still cancelled so; with the default depth of 128
/// (8 buckets) and 10,000 idle sockets that walks ~1,250 entries. 4096 gives
/// the full 256 buckets.
pub const RING_DEPTH: usize = 4096;
/// A pool of `threads` unbound executors sized as above: one place for the
/// settings every multi-threaded scenario shares.
pub fn executor_pool(name: &str, threads: usize) -> LocalExecutorPoolBuilder {
    LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(threads))
        .name(name)
        .io_memory(IO_MEMORY)
        .ring_depth(RING_DEPTH)
}

/// Time a closing connection waits for the server's close frame.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);
// Phase 0 is connecting.
const PHASE_RUN: u8 = 1;
const PHASE_STOP: u8 = 2;

/// What a fleet (or one child's share of it) is asked to do.
#[derive(Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub target: Target,
    pub secret: String,
    pub role: String,
    pub room: String,
    pub subscribe: bool,
    /// Connections this worker holds, global indices `index_base..index_base + conns`.
    pub conns: usize,
    pub index_base: usize,
    /// Source address slot (see `Target::source`).
    pub source_slot: usize,
    pub threads: usize,
    /// Connection attempts in flight at once, over all executors.
    pub connect_concurrency: usize,
    pub connect_timeout_ms: u64,
    pub token_ttl_s: u64,
    /// A child stops by itself this long after it is ready, whatever its parent does.
    pub max_lifetime_s: u64,
    pub pings: Option<PingPlan>,
    /// A connection the server closes comes back, as a real client would:
    /// it reconnects and subscribes with `since` its last event's place.
    pub reconnect: bool,
}

/// Client pings from the connections with global index below `busy`:
/// `rate` a second over all of them, evenly interleaved, for `for_ms` after
/// `go`. The schedule is open loop: a ping goes out when due, answered or not.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct PingPlan {
    pub busy: usize,
    pub rate: f64,
    pub for_ms: u64,
}

/// How far the run has got, summed over executors and processes.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Progress {
    /// Bench events received (new ones only).
    pub delivered: u64,
    pub pings_sent: u64,
    pub pongs: u64,
    /// Busy connections whose ping schedule is not over yet.
    pub pinging: u64,
}

/// What the children's answers to one command add up to.
trait Merge: Default + serde::de::DeserializeOwned {
    fn merge(&mut self, other: Self);
}

impl Merge for Progress {
    fn merge(&mut self, o: Progress) {
        self.delivered += o.delivered;
        self.pings_sent += o.pings_sent;
        self.pongs += o.pongs;
        self.pinging += o.pinging;
    }
}

/// Shared between the scenario thread and the executors of one process.
/// The scenario sets the phase and rings each executor's doorbell; executors
/// sleep until then (no timer polling: with thousands of sockets registered
/// with io_uring, every wake-up of an idle executor has a kernel cost).
struct Control {
    phase: AtomicU8,
    doorbells: Vec<AtomicWaker>,
    shards_connected: AtomicUsize,
    connected: AtomicU64,
    subscribed: AtomicU64,
    connect_failed: AtomicU64,
    subscribe_failed: AtomicU64,
    unique: AtomicU64,
    pings_sent: AtomicU64,
    pongs: AtomicU64,
    pinging: AtomicU64,
}

/// The fleet after its connect phase.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Readiness {
    pub connected: u64,
    pub subscribed: u64,
    pub connect_failed: u64,
    pub subscribe_failed: u64,
    /// Global indices of connections that are not ready (not connected, or
    /// not subscribed when subscribing was asked for).
    pub not_ready: Vec<u32>,
}

impl Control {
    fn new(executors: usize) -> Control {
        Control {
            phase: AtomicU8::new(0),
            doorbells: (0..executors).map(|_| AtomicWaker::new()).collect(),
            shards_connected: AtomicUsize::new(0),
            connected: AtomicU64::new(0),
            subscribed: AtomicU64::new(0),
            connect_failed: AtomicU64::new(0),
            subscribe_failed: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            pings_sent: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
            pinging: AtomicU64::new(0),
        }
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Release);
        for doorbell in &self.doorbells {
            doorbell.wake();
        }
    }

    async fn wait_phase(&self, shard: usize, phase: u8) {
        std::future::poll_fn(|cx| {
            self.doorbells[shard].register(cx.waker());
            if self.phase.load(Ordering::Acquire) >= phase {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Merge for Readiness {
    fn merge(&mut self, o: Readiness) {
        self.connected += o.connected;
        self.subscribed += o.subscribed;
        self.connect_failed += o.connect_failed;
        self.subscribe_failed += o.subscribe_failed;
        self.not_ready.extend(o.not_ready);
    }
}

/// Everything the connections saw, mergeable across executors and processes.
#[derive(Default, Serialize, Deserialize)]
pub struct WorkerReport {
    pub connected: u64,
    pub subscribed: u64,
    pub connect_failed: u64,
    pub subscribe_failed: u64,
    pub connect_retries: u64,
    /// Connections the server closed (or lost) before the stop.
    pub disconnects: u64,
    /// Bench events received for the first time on their connection.
    pub unique: u64,
    pub duplicates: u64,
    /// Sequence numbers a connection's window moved past without seeing them.
    pub skipped: u64,
    /// Of `unique`, those that arrived after their connection's window had
    /// moved past them (reordered by more than the window, or very slow).
    pub late: u64,
    /// When the last of `unique` arrived, µs since the Unix epoch (0: none).
    pub last_delivery_us: u64,
    /// Text messages that were not bench events.
    pub other_messages: u64,
    /// WebSocket pings from the server (answered by tungstenite).
    pub pings: u64,
    /// Client `ping` messages sent, and `pong`s back.
    pub pings_sent: u64,
    pub pongs: u64,
    /// CPU seconds child processes spent from `go` to their report (the
    /// scenario adds its own process's).
    pub worker_cpu_s: f64,
    pub errors: BTreeMap<String, u64>,
    /// Event latency, µs from `sentAt` to receipt.
    pub latency: Histogram,
    /// Connect + upgrade + `connected` (+ subscribe), µs.
    pub connect_latency: Histogram,
    /// Client `ping` to its `pong`, µs.
    pub pong_rtt: Histogram,
    /// Connections that came back after the server closed them (`reconnect`).
    pub reconnects: u64,
    /// Events that reached a connection through a recovery (a replay).
    pub recovered: u64,
    /// Subscribes with `since` answered `recovered:false`.
    pub not_recovered: u64,
    /// Offsets a connection skipped between two events it saw.
    pub offset_gaps: u64,
    pub epoch_changes: u64,
    /// Where each connection's room ended for it: how many connections
    /// know an offset, the sum of their last offsets, and the highest. The
    /// room's last event is the highest; each connection short of it missed
    /// the difference, so loss counts by offsets even for events whose
    /// publish got no answer but went through.
    pub offset_ends: u64,
    pub offset_end_sum: u64,
    pub offset_end_max: u64,
    /// From the server's close to the new connection's `subscribed`, µs.
    pub reconnect_latency: Histogram,
    /// The reconnects by when their connection was closed (Unix
    /// milliseconds, rounded down to `OUTAGE_SLOT_MS`): how many, and when
    /// the last of them was back.
    pub outages: BTreeMap<u64, Outage>,
}

/// Closes are counted in slots of this many milliseconds: fine enough to
/// tell apart restarts a fraction of a second apart.
pub const OUTAGE_SLOT_MS: u64 = 100;

/// The connections closed within one slot, and when the last was back.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Outage {
    pub clients: u64,
    /// Unix milliseconds.
    pub last_back_ms: u64,
}

impl Merge for WorkerReport {
    fn merge(&mut self, o: WorkerReport) {
        self.connected += o.connected;
        self.subscribed += o.subscribed;
        self.connect_failed += o.connect_failed;
        self.subscribe_failed += o.subscribe_failed;
        self.connect_retries += o.connect_retries;
        self.disconnects += o.disconnects;
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.skipped += o.skipped;
        self.late += o.late;
        self.last_delivery_us = self.last_delivery_us.max(o.last_delivery_us);
        self.other_messages += o.other_messages;
        self.pings += o.pings;
        self.pings_sent += o.pings_sent;
        self.pongs += o.pongs;
        self.worker_cpu_s += o.worker_cpu_s;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.latency.merge(&o.latency);
        self.connect_latency.merge(&o.connect_latency);
        self.pong_rtt.merge(&o.pong_rtt);
        self.reconnects += o.reconnects;
        self.recovered += o.recovered;
        self.not_recovered += o.not_recovered;
        self.offset_gaps += o.offset_gaps;
        self.epoch_changes += o.epoch_changes;
        self.offset_ends += o.offset_ends;
        self.offset_end_sum += o.offset_end_sum;
        self.offset_end_max = self.offset_end_max.max(o.offset_end_max);
        self.reconnect_latency.merge(&o.reconnect_latency);
        for (second, outage) in o.outages {
            let mine = self.outages.entry(second).or_default();
            mine.clients += outage.clients;
            mine.last_back_ms = mine.last_back_ms.max(outage.last_back_ms);
        }
    }
}

/// Connections in this process or in children.
pub enum Fleet {
    Local(LocalFleet),
    Remote(RemoteFleet),
}

impl Fleet {
    /// Holds `spec.conns` connections: here when they fit in `per_process`,
    /// otherwise split over child processes. Receipts are counted into
    /// `window`, which only this process can see.
    pub fn launch(
        spec: WorkerSpec,
        per_process: usize,
        window: Option<Arc<DeliveryWindow>>,
    ) -> anyhow::Result<Fleet> {
        if spec.conns <= per_process {
            return Ok(Fleet::Local(LocalFleet::start(spec, window)?));
        }
        if window.is_some() {
            bail!(
                "the closed loop counts receipts in this process: --conns {} must be at most --per-process {per_process}",
                spec.conns
            );
        }
        let children = spec.conns.div_ceil(per_process);
        if children > 250 {
            bail!("{} connections need {children} processes; at most 250 are supported", spec.conns);
        }
        let mut specs = Vec::with_capacity(children);
        let mut base = 0;
        for k in 0..children {
            let share = spec.conns / children + usize::from(k < spec.conns % children);
            specs.push(WorkerSpec {
                conns: share,
                index_base: spec.index_base + base,
                source_slot: k + 1,
                connect_concurrency: (spec.connect_concurrency / children).max(8),
                ..spec.clone()
            });
            base += share;
        }
        Ok(Fleet::Remote(RemoteFleet::start(specs)?))
    }

    pub fn processes(&self) -> usize {
        match self {
            Fleet::Local(_) => 1,
            Fleet::Remote(r) => r.children.len(),
        }
    }

    /// Blocks until every connection is open (or has failed), at most `limit`.
    pub fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<Readiness> {
        match self {
            Fleet::Local(f) => f.wait_ready(limit),
            Fleet::Remote(f) => f.wait_ready(limit),
        }
    }

    /// Marks the start of the measured phase.
    pub fn go(&mut self) -> anyhow::Result<()> {
        match self {
            Fleet::Local(f) => {
                f.go();
                Ok(())
            }
            Fleet::Remote(f) => f.broadcast("go"),
        }
    }

    pub fn progress(&mut self) -> anyhow::Result<Progress> {
        match self {
            Fleet::Local(f) => Ok(f.progress()),
            Fleet::Remote(f) => f.progress(),
        }
    }

    /// Closes every connection and collects what they saw.
    pub fn stop(self) -> anyhow::Result<WorkerReport> {
        match self {
            Fleet::Local(f) => f.stop(),
            Fleet::Remote(f) => f.stop(),
        }
    }
}

/// Connections held by executors of this process.
pub struct LocalFleet {
    control: Arc<Control>,
    handles: PoolThreadHandles<WorkerReport>,
    threads: usize,
    not_ready: Receiver<u32>,
    subscribe: bool,
}

impl LocalFleet {
    pub fn start(spec: WorkerSpec, window: Option<Arc<DeliveryWindow>>) -> anyhow::Result<LocalFleet> {
        let threads = spec.threads.clamp(1, spec.conns.max(1));
        let control = Arc::new(Control::new(threads));
        let (not_ready_tx, not_ready) = crossbeam_channel::unbounded();
        let (assign, assignments) = crossbeam_channel::bounded(threads);
        for shard in 0..threads {
            let _ = assign.send(shard);
        }
        let subscribe = spec.subscribe;
        let spec = Arc::new(WorkerSpec { threads, ..spec });
        let shared = control.clone();
        let handles = executor_pool("bench-conns", threads)
            .on_all_shards(move || async move {
                let shard = assignments.try_recv().unwrap_or(0);
                shard_main(spec, shared, not_ready_tx, window, shard).await
            })
            .map_err(|e| anyhow!("cannot start executors: {e}"))?;
        Ok(LocalFleet { control, handles, threads, not_ready, subscribe })
    }

    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<Readiness> {
        let deadline = Instant::now() + limit;
        while self.control.shards_connected.load(Ordering::Acquire) < self.threads {
            if Instant::now() >= deadline {
                bail!("connections not all open after {:.0} s", limit.as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let c = &self.control;
        let connected = c.connected.load(Ordering::Acquire);
        let subscribed = c.subscribed.load(Ordering::Acquire);
        Ok(Readiness {
            connected,
            subscribed: if self.subscribe { subscribed } else { 0 },
            connect_failed: c.connect_failed.load(Ordering::Acquire),
            subscribe_failed: c.subscribe_failed.load(Ordering::Acquire),
            not_ready: self.not_ready.try_iter().collect(),
        })
    }

    fn go(&self) {
        self.control.set_phase(PHASE_RUN);
    }

    fn progress(&self) -> Progress {
        let c = &self.control;
        // `pinging` first: once it reads 0, every ping sent is in `pings_sent`.
        let pinging = c.pinging.load(Ordering::Acquire);
        let pings_sent = c.pings_sent.load(Ordering::Acquire);
        Progress {
            delivered: c.unique.load(Ordering::Relaxed),
            pings_sent,
            pongs: c.pongs.load(Ordering::Acquire),
            pinging,
        }
    }

    fn stop(self) -> anyhow::Result<WorkerReport> {
        self.control.set_phase(PHASE_STOP);
        let mut total = WorkerReport::default();
        for result in self.handles.join_all() {
            match result {
                Ok(report) => total.merge(report),
                Err(e) => bail!("an executor failed: {e}"),
            }
        }
        Ok(total)
    }
}

/// One executor's part of the fleet.
struct ShardState {
    spec: Arc<WorkerSpec>,
    control: Arc<Control>,
    minter: Minter,
    not_ready: Sender<u32>,
    window: Option<Arc<DeliveryWindow>>,
    report: RefCell<WorkerReport>,
    /// Connection attempts in flight, opening and reconnecting alike.
    permits: Rc<Semaphore>,
    pending: Cell<usize>,
    all_connected: Rc<Signal>,
    /// The measured phase has begun (at `went`).
    go: Rc<Signal>,
    went: Cell<Option<Instant>>,
    stop: Rc<Signal>,
}

impl ShardState {
    fn connect_done(&self) {
        let left = self.pending.get().saturating_sub(1);
        self.pending.set(left);
        if left == 0 {
            self.all_connected.fire();
        }
    }

    fn error(&self, kind: String) {
        *self.report.borrow_mut().errors.entry(kind).or_default() += 1;
    }
}

async fn shard_main(
    spec: Arc<WorkerSpec>,
    control: Arc<Control>,
    not_ready: Sender<u32>,
    window: Option<Arc<DeliveryWindow>>,
    shard: usize,
) -> WorkerReport {
    let mine: Vec<usize> = (shard..spec.conns).step_by(spec.threads).collect();
    let in_flight = (spec.connect_concurrency / spec.threads).max(1) as u64;
    let state = Rc::new(ShardState {
        minter: Minter::new(&spec.secret, &spec.role, spec.token_ttl_s),
        spec: spec.clone(),
        control: control.clone(),
        not_ready,
        window,
        report: RefCell::new(WorkerReport::default()),
        permits: Rc::new(Semaphore::new(in_flight)),
        pending: Cell::new(mine.len()),
        all_connected: Rc::new(Signal::default()),
        go: Rc::new(Signal::default()),
        went: Cell::new(None),
        stop: Rc::new(Signal::default()),
    });
    if mine.is_empty() {
        state.all_connected.fire();
    }
    let mut tasks = Vec::with_capacity(mine.len());
    for local in mine {
        let Ok(permit) = state.permits.acquire_static_permit(1).await else { break };
        if control.phase.load(Ordering::Acquire) >= PHASE_STOP {
            break;
        }
        tasks.push(glommio::spawn_local(connection(state.clone(), local, permit)));
    }
    futures_lite::future::or(state.all_connected.wait(), control.wait_phase(shard, PHASE_STOP)).await;
    control.shards_connected.fetch_add(1, Ordering::AcqRel);
    control.wait_phase(shard, PHASE_RUN).await;
    state.went.set(Some(Instant::now()));
    state.go.fire();
    control.wait_phase(shard, PHASE_STOP).await;
    state.stop.fire();
    for task in tasks {
        task.await;
    }
    state.report.take()
}

/// Tries per reconnect: a client keeps trying while its server is replaced
/// (a full instance answers 503, a closing listener resets).
const RECONNECT_TRIES: u32 = 20;

/// What became of a connection's subscribe.
enum Joined {
    /// The fleet does not subscribe.
    NotAsked,
    Refused,
    Subscribed(Subscribed),
}

/// One connection's whole life: open (with retries), then listen until
/// stop; with `reconnect`, come back each time the server closes it.
async fn connection(state: Rc<ShardState>, local: usize, permit: StaticPermit) {
    let spec = &state.spec;
    let global = spec.index_base + local;
    let token = state.minter.token(&token::user_id(global));
    let started = Instant::now();
    let mut room = RoomTrack::default();
    let opened = open(&state, &token, None, client::CONNECT_TRIES).await;
    drop(permit);
    let ws = match opened {
        Ok((ws, joined)) => {
            let mut report = state.report.borrow_mut();
            report.connect_latency.record(started.elapsed().as_micros() as u64);
            report.connected += 1;
            state.control.connected.fetch_add(1, Ordering::AcqRel);
            match joined {
                Joined::NotAsked => {}
                Joined::Subscribed(answer) => {
                    room.subscribed(&answer);
                    report.subscribed += 1;
                    state.control.subscribed.fetch_add(1, Ordering::AcqRel);
                }
                Joined::Refused => {
                    report.subscribe_failed += 1;
                    *report.errors.entry("subscribe_refused".into()).or_default() += 1;
                    state.control.subscribe_failed.fetch_add(1, Ordering::AcqRel);
                    let _ = state.not_ready.send(global as u32);
                }
            }
            ws
        }
        Err(e) => {
            state.report.borrow_mut().connect_failed += 1;
            state.error(e.kind());
            state.control.connect_failed.fetch_add(1, Ordering::AcqRel);
            let _ = state.not_ready.send(global as u32);
            state.connect_done();
            return;
        }
    };
    let mut pinger = Pinger::new(&state, global);
    state.connect_done();
    let mut tracker = SeqTracker::default();
    let mut ws = Some(ws);
    while let Some(open) = ws.take() {
        let Some(lost) = listen(&state, open, pinger.as_mut(), &mut tracker, &mut room).await else { break };
        if spec.reconnect && !state.stop.is_fired() {
            ws = reconnect(&state, &token, &mut room).await;
        }
        if ws.is_none() {
            state.report.borrow_mut().disconnects += 1;
            state.error(format!("lost_{}", lost.kind()));
        }
    }
    if let Some(p) = pinger.as_mut() {
        p.finish(&state.control);
    }
    let mut report = state.report.borrow_mut();
    report.skipped += tracker.skipped;
    report.recovered += room.recovered;
    report.not_recovered += room.not_recovered;
    report.offset_gaps += room.gaps;
    report.epoch_changes += room.epoch_changes;
    if let Some(end) = room.end() {
        report.offset_ends += 1;
        report.offset_end_sum += end;
        report.offset_end_max = report.offset_end_max.max(end);
    }
}

impl WorkerReport {
    /// Events of the room that connections did not get, by offsets: the
    /// gaps between what each saw, and how far each ended short of the
    /// room's last event.
    pub fn lost_by_offsets(&self) -> u64 {
        self.offset_gaps + (self.offset_ends * self.offset_end_max).saturating_sub(self.offset_end_sum)
    }
}

/// Connects, upgrades and (when the fleet subscribes) subscribes, resuming
/// `since` a place when given; retries what may pass, up to `tries` times.
async fn open(
    state: &ShardState,
    token: &str,
    since: Option<&Position>,
    tries: u32,
) -> Result<(Ws, Joined), Failure> {
    let spec = &state.spec;
    let src = spec.target.source(spec.source_slot);
    let limit = Duration::from_millis(spec.connect_timeout_ms);
    let (opened, retries) = client::retrying(
        tries,
        || state.stop.is_fired(),
        || {
            client::within(limit, async {
                let mut ws = client::open(&spec.target, src, token, limit).await?;
                let joined = if !spec.subscribe {
                    Joined::NotAsked
                } else {
                    match client::subscribe(&mut ws, &spec.room, since).await? {
                        Some(answer) => Joined::Subscribed(answer),
                        None => Joined::Refused,
                    }
                };
                Ok((ws, joined))
            })
        },
    )
    .await;
    state.report.borrow_mut().connect_retries += u64::from(retries);
    opened
}

/// After the server closed a connection: opens it again as a client whose
/// server went away would (a connect slot, backoff), subscribing with
/// `since` the last place it saw. The new connection, or `None`.
async fn reconnect(state: &ShardState, token: &str, room: &mut RoomTrack) -> Option<Ws> {
    let closed = Instant::now();
    let closed_unix_ms = client::unix_micros() / 1000;
    let permit = state.permits.acquire_static_permit(1).await.ok()?;
    let since = room.since().cloned();
    let opened = open(state, token, since.as_ref(), RECONNECT_TRIES).await;
    drop(permit);
    let ws = match opened {
        Ok((ws, Joined::Subscribed(answer))) => {
            room.subscribed(&answer);
            ws
        }
        Ok((ws, Joined::NotAsked)) => ws,
        Ok((_, Joined::Refused)) => {
            state.error("resubscribe_refused".into());
            return None;
        }
        Err(e) => {
            state.error(format!("reconnect_{}", e.kind()));
            return None;
        }
    };
    let mut report = state.report.borrow_mut();
    report.reconnects += 1;
    report.reconnect_latency.record(closed.elapsed().as_micros() as u64);
    let outage = report.outages.entry(closed_unix_ms - closed_unix_ms % OUTAGE_SLOT_MS).or_default();
    outage.clients += 1;
    outage.last_back_ms = outage.last_back_ms.max(client::unix_micros() / 1000);
    Some(ws)
}

/// A busy connection's client pings: its turns in the shared schedule, and
/// when each ping not yet answered went out (the server answers in order).
struct Pinger {
    /// Its pings are turns `first`, `first + stride`, … of the schedule.
    first: u64,
    stride: u64,
    rate: f64,
    until: Duration,
    sent: u64,
    unanswered: VecDeque<Instant>,
    /// Still counted in `Control::pinging`.
    scheduled: bool,
}

const PING: &str = r#"{"type":"ping"}"#;

impl Pinger {
    /// The pinger of connection `global`, if it is a busy one; counted in
    /// `pinging` from now, so that the scenario waits for its schedule.
    fn new(state: &ShardState, global: usize) -> Option<Pinger> {
        let plan = state.spec.pings.filter(|p| global < p.busy)?;
        state.control.pinging.fetch_add(1, Ordering::AcqRel);
        Some(Pinger {
            first: global as u64,
            stride: plan.busy as u64,
            rate: plan.rate,
            until: Duration::from_millis(plan.for_ms),
            sent: 0,
            unanswered: VecDeque::new(),
            scheduled: true,
        })
    }

    /// When the next ping is due, counted from `go`; none once the schedule is over.
    fn next_due(&self) -> Option<Duration> {
        let at = Duration::from_secs_f64((self.first + self.sent * self.stride) as f64 / self.rate);
        (self.scheduled && at < self.until).then_some(at)
    }

    fn finish(&mut self, control: &Control) {
        if std::mem::replace(&mut self.scheduled, false) {
            control.pinging.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Resolves when the next ping is due, or the schedule has just run out;
/// never on an idle connection, nor before `go`.
async fn ping_due(state: &ShardState, pinger: Option<&Pinger>, go: Pin<&mut Wait>) {
    let Some(pinger) = pinger.filter(|p| p.scheduled) else { return std::future::pending().await };
    go.await;
    let (Some(went), Some(at)) = (state.went.get(), pinger.next_due()) else { return };
    let wait = (went + at).saturating_duration_since(Instant::now());
    if !wait.is_zero() {
        glommio::timer::sleep(wait).await;
    }
}

/// Sends the ping that is due, or ends the schedule when none is.
async fn ping(state: &ShardState, ws: &mut Ws, pinger: Option<&mut Pinger>) -> Result<(), Failure> {
    let Some(p) = pinger else { return Ok(()) };
    if p.next_due().is_some() {
        let sent = Instant::now();
        ws.send(Message::Text(Utf8Bytes::from_static(PING))).await.map_err(Failure::Ws)?;
        p.sent += 1;
        p.unanswered.push_back(sent);
        state.report.borrow_mut().pings_sent += 1;
        state.control.pings_sent.fetch_add(1, Ordering::AcqRel);
    }
    if p.next_due().is_none() {
        p.finish(&state.control);
    }
    Ok(())
}

enum Wake {
    Message(Option<Result<Message, WsError>>),
    Ping,
    Stop,
}

/// Reads everything the server sends until the stop signal, then closes;
/// a busy connection sends its pings meanwhile. Why the connection ended
/// early, if it did.
async fn listen(
    state: &ShardState,
    mut ws: Ws,
    mut pinger: Option<&mut Pinger>,
    tracker: &mut SeqTracker,
    room: &mut RoomTrack,
) -> Option<Failure> {
    let mut stop = pin!(state.stop.wait());
    let mut go = pin!(state.go.wait());
    let lost = loop {
        let wake = or(
            async { Wake::Message(ws.next().await) },
            or(
                async {
                    stop.as_mut().await;
                    Wake::Stop
                },
                async {
                    ping_due(state, pinger.as_deref(), go.as_mut()).await;
                    Wake::Ping
                },
            ),
        )
        .await;
        let next = match wake {
            Wake::Message(next) => next,
            Wake::Stop => break None,
            Wake::Ping => match ping(state, &mut ws, pinger.as_deref_mut()).await {
                Ok(()) => continue,
                Err(e) => break Some(e),
            },
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                on_text(state, tracker, room, pinger.as_deref_mut(), text.as_str())
            }
            Some(Ok(Message::Ping(_))) => state.report.borrow_mut().pings += 1,
            Some(Ok(Message::Close(_))) | None => break Some(Failure::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Some(Failure::Ws(e)),
        }
    };
    if lost.is_none() {
        client::close(ws, CLOSE_LIMIT).await;
    }
    lost
}

fn on_text(
    state: &ShardState,
    tracker: &mut SeqTracker,
    room: &mut RoomTrack,
    pinger: Option<&mut Pinger>,
    text: &str,
) {
    let mut report = state.report.borrow_mut();
    if let Some(p) = pinger {
        if let Some(answer) = client::ping_answer(text) {
            if let Some(sent) = p.unanswered.pop_front() {
                match answer {
                    Answer::Pong => {
                        report.pong_rtt.record(sent.elapsed().as_micros() as u64);
                        report.pongs += 1;
                        state.control.pongs.fetch_add(1, Ordering::AcqRel);
                    }
                    Answer::Refused => *report.errors.entry("ping_refused".into()).or_default() += 1,
                }
                return;
            }
        }
    }
    let Some((seq, sent_at)) = client::parse_event(text) else {
        report.other_messages += 1;
        return;
    };
    if state.spec.reconnect {
        if let Some((offset, epoch)) = recovery::event_position(text) {
            room.event(offset, epoch);
        }
    }
    match tracker.see(seq) {
        Seen::Duplicate => report.duplicates += 1,
        seen => {
            // A late event still arrived once: it is delivered, and counted apart.
            report.late += u64::from(seen == Seen::Late);
            let now = client::unix_micros();
            report.latency.record(now.saturating_sub(sent_at));
            report.last_delivery_us = report.last_delivery_us.max(now);
            report.unique += 1;
            state.control.unique.fetch_add(1, Ordering::Relaxed);
            if let Some(window) = &state.window {
                window.delivered(seq);
            }
        }
    }
}

/// Child processes, each a `LocalFleet` of its own.
pub struct RemoteFleet {
    children: Vec<ChildProc>,
}

struct ChildProc {
    process: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

/// How long a child may take to answer a step other than connecting.
const CHILD_REPLY: Duration = Duration::from_secs(30);

impl RemoteFleet {
    fn start(specs: Vec<WorkerSpec>) -> anyhow::Result<RemoteFleet> {
        let exe = std::env::current_exe().context("cannot find this executable to start workers")?;
        let mut fleet = RemoteFleet { children: Vec::with_capacity(specs.len()) };
        for spec in specs {
            let mut process = Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("cannot start a worker process")?;
            let (Some(mut stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
                let _ = process.kill();
                let _ = process.wait();
                bail!("worker process without pipes");
            };
            // The spec (with the secret) goes over the pipe, not the command line.
            writeln!(stdin, "{}", serde_json::to_string(&spec)?)?;
            stdin.flush()?;
            let (tx, lines) = crossbeam_channel::unbounded();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            fleet.children.push(ChildProc { process, stdin, lines });
        }
        Ok(fleet)
    }

    fn broadcast(&mut self, command: &str) -> anyhow::Result<()> {
        for child in &mut self.children {
            writeln!(child.stdin, "{command}").context("a worker process went away")?;
            child.stdin.flush()?;
        }
        Ok(())
    }

    /// The next JSON line a child prints with `key`, as that value.
    fn expect<T: serde::de::DeserializeOwned>(
        child: &ChildProc,
        key: &str,
        deadline: Instant,
    ) -> anyhow::Result<T> {
        loop {
            let line = child
                .lines
                .recv_deadline(deadline)
                .map_err(|_| anyhow!("worker process {} gave no {key}", child.process.id()))?;
            let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
                bail!("worker process {}: {error}", child.process.id());
            }
            if let Some(v) = value.get_mut(key) {
                return Ok(serde_json::from_value(v.take())?);
            }
        }
    }

    /// Every child's answer `key`, added up, each by `deadline`.
    fn gather<T: Merge>(&self, key: &str, deadline: Instant) -> anyhow::Result<T> {
        let mut total = T::default();
        for child in &self.children {
            total.merge(Self::expect(child, key, deadline)?);
        }
        Ok(total)
    }

    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<Readiness> {
        self.gather("ready", Instant::now() + limit)
    }

    fn progress(&mut self) -> anyhow::Result<Progress> {
        self.broadcast("progress")?;
        self.gather("progress", Instant::now() + CHILD_REPLY)
    }

    fn stop(mut self) -> anyhow::Result<WorkerReport> {
        self.broadcast("stop")?;
        self.gather("report", Instant::now() + CHILD_REPLY)
    }
}

impl Drop for RemoteFleet {
    /// Children exit after their report; any that has not by now is ended.
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            loop {
                match child.process.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    Ok(None) => {
                        let _ = child.process.kill();
                        let _ = child.process.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// The `worker` subcommand: a child's side of the protocol. Reads its spec
/// from the first stdin line, prints `{"ready":..}`, then obeys `go`,
/// `progress` and `stop` lines, and ends with `{"report":..}`.
pub fn worker_main() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut first = String::new();
    stdin.lock().read_line(&mut first)?;
    let spec: WorkerSpec = serde_json::from_str(&first).context("worker: bad spec line")?;
    let lifetime = Duration::from_secs(spec.max_lifetime_s);
    let connect_limit = connect_limit(spec.conns);
    let mut fleet = LocalFleet::start(spec, None)?;
    let ready = fleet.wait_ready(connect_limit);
    let out = std::io::stdout();
    let say = |value: serde_json::Value| {
        let mut out = out.lock();
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    };
    match ready {
        Ok(ready) => say(serde_json::json!({ "ready": ready })),
        Err(e) => say(serde_json::json!({ "error": e.to_string() })),
    }
    let (tx, commands) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The parent going away (stdin closed) or the lifetime running out stops it too.
    let deadline = Instant::now() + lifetime;
    let mut cpu_at_go = procstat::own_cpu_s();
    loop {
        match commands.recv_deadline(deadline).as_deref() {
            Ok("go") => {
                cpu_at_go = procstat::own_cpu_s();
                fleet.go();
            }
            Ok("progress") => say(serde_json::json!({ "progress": fleet.progress() })),
            Ok("stop") | Err(_) => break,
            Ok(_) => {}
        }
    }
    let mut report = fleet.stop()?;
    report.worker_cpu_s = procstat::own_cpu_s() - cpu_at_go;
    say(serde_json::json!({ "report": report }));
    Ok(())
}

/// How long opening `conns` connections may take before the run gives up.
pub fn connect_limit(conns: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(conns as u64 * 2)
}
