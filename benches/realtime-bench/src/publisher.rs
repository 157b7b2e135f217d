//! The publishing side: POSTs to the HTTP API over keep-alive HTTP/1.1
//! connections (hyper's client over glommio sockets), at a fixed rate or as
//! fast as a bounded window allows, on an executor thread of its own. The
//! window is either requests in flight (open loop: the HTTP answer frees a
//! place) or events not yet received by every subscriber (closed loop).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bytes::Bytes;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use rand::Rng;
use smol_hyper::rt::FuturesIo;

use crate::client::unix_micros;
use crate::fleet::{IO_MEMORY, RING_DEPTH};
use crate::hist::Histogram;
use crate::signal::Signal;
use crate::target::{self, Target};
use crate::token;
use crate::window::DeliveryWindow;

/// What each event is.
pub enum Kind {
    /// `POST /api/notifications/broadcast`, event `seq` to room `seq % rooms.len()`.
    Broadcast { rooms: Vec<String> },
    /// `POST /api/notifications/send` to a random one of these connection
    /// indices (each its own user); `seq` counts per user.
    Send { targets: Vec<u32> },
}

pub struct PubSpec {
    pub target: Target,
    pub kind: Kind,
    /// Events per second; 0 = as fast as the window allows.
    pub rate: f64,
    /// Publisher tasks, one keep-alive connection each: requests in flight at most.
    pub window: usize,
    pub closed: Option<ClosedLoop>,
    pub duration: Duration,
    /// At most this many events.
    pub count: u64,
    pub api_key: Option<String>,
    /// Characters of padding in each payload (`"pad"`), for events of a
    /// realistic size; 0 leaves the payload as small as it can be.
    pub pad: usize,
}

/// The closed loop's bound: at most `limit` events published and not yet
/// received by all `receivers`; one that is not within `timeout` gives its
/// place up (and is lost to some of them).
pub struct ClosedLoop {
    pub window: Arc<DeliveryWindow>,
    pub limit: usize,
    pub receivers: u64,
    pub timeout: Duration,
}

#[derive(Default)]
pub struct PubReport {
    /// Events the server took (202).
    pub accepted: u64,
    /// Answers other than 202.
    pub rejected: u64,
    /// Requests that got no answer (connection errors, timeouts).
    pub failed: u64,
    pub status: BTreeMap<u16, u64>,
    pub elapsed: Duration,
    /// When the first request went out, µs since the Unix epoch.
    pub first_sent_us: Option<u64>,
    /// Request round trips, µs.
    pub latency: Histogram,
    pub connections: u64,
    /// Closed loop: events that gave their place up unfinished.
    pub timed_out: u64,
}

/// A request that takes longer than this counts as failed.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// A worker gives up after this many failures in a row (server gone).
const MAX_FAILURES_IN_ROW: u32 = 50;

/// Runs the publisher on its own executor thread; blocks until it is done.
pub fn run(spec: PubSpec) -> anyhow::Result<PubReport> {
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("bench-publisher")
        .io_memory(IO_MEMORY)
        .ring_depth(RING_DEPTH)
        .spawn(move || publish(spec))
        .map_err(|e| anyhow!("cannot start the publisher: {e}"))?;
    handle.join().map_err(|e| anyhow!("the publisher failed: {e}"))
}

struct State {
    spec: PubSpec,
    schedule: Schedule,
    deadline: Instant,
    next: Cell<u64>,
    /// Next per-user sequence number, by position in the target list (send).
    user_seq: RefCell<Vec<u64>>,
    report: RefCell<PubReport>,
    /// Closed loop: free places, and the events holding the others, oldest first.
    places: Semaphore,
    in_flight: RefCell<VecDeque<(u64, Instant)>>,
    workers_done: Rc<Signal>,
}

async fn publish(spec: PubSpec) -> PubReport {
    let start = Instant::now();
    let user_seq = match &spec.kind {
        Kind::Send { targets } => vec![0; targets.len()],
        Kind::Broadcast { .. } => Vec::new(),
    };
    let workers = spec.window.max(1);
    let places = spec.closed.as_ref().map_or(0, |c| c.limit as u64);
    let state = Rc::new(State {
        deadline: start + spec.duration,
        schedule: Schedule { start, start_us: unix_micros(), rate: spec.rate },
        spec,
        next: Cell::new(0),
        user_seq: RefCell::new(user_seq),
        report: RefCell::new(PubReport::default()),
        places: Semaphore::new(places),
        in_flight: RefCell::new(VecDeque::new()),
        workers_done: Rc::new(Signal::default()),
    });
    let reaper = state.spec.closed.is_some().then(|| glommio::spawn_local(reap(state.clone())));
    let tasks: Vec<_> = (0..workers).map(|_| glommio::spawn_local(worker(state.clone()))).collect();
    for task in tasks {
        task.await;
    }
    state.workers_done.fire();
    if let Some(reaper) = reaper {
        reaper.await;
    }
    let mut report = state.report.take();
    report.elapsed = start.elapsed();
    report
}

type Sender = SendRequest<Full<Bytes>>;

async fn worker(state: Rc<State>) {
    let spec = &state.spec;
    let mut conn: Option<Sender> = None;
    let mut failures = 0;
    loop {
        let seq = state.next.get();
        if seq >= spec.count {
            break;
        }
        if spec.rate > 0.0 {
            let due = state.schedule.due(seq);
            if due >= state.deadline {
                break;
            }
            state.next.set(seq + 1);
            let now = Instant::now();
            if due > now {
                glommio::timer::sleep(due - now).await;
            }
        } else {
            if Instant::now() >= state.deadline {
                break;
            }
            state.next.set(seq + 1);
        }
        let place = match Place::take(&state).await {
            Ok(place) => place,
            Err(()) => break,
        };
        if failures >= MAX_FAILURES_IN_ROW {
            break;
        }
        if conn.as_ref().is_none_or(|s| s.is_closed()) {
            conn = None;
            match open(&spec.target).await {
                Ok(sender) => {
                    state.report.borrow_mut().connections += 1;
                    conn = Some(sender);
                }
                Err(_) => {
                    failures += 1;
                    state.report.borrow_mut().failed += 1;
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let Some(sender) = conn.as_mut() else { continue };
        let request = state.request(seq, state.schedule.sent_at(seq));
        let place = place.hold(seq);
        let sent = Instant::now();
        state.report.borrow_mut().first_sent_us.get_or_insert_with(unix_micros);
        let answer = futures_lite::future::or(
            async {
                sender.ready().await.ok()?;
                let response = sender.send_request(request).await.ok()?;
                let status = response.status().as_u16();
                response.into_body().collect().await.ok()?;
                Some(status)
            },
            async {
                glommio::timer::sleep(REQUEST_LIMIT).await;
                None
            },
        )
        .await;
        let mut report = state.report.borrow_mut();
        match answer {
            Some(status) => {
                failures = 0;
                report.latency.record(sent.elapsed().as_micros() as u64);
                *report.status.entry(status).or_default() += 1;
                if status == 202 {
                    report.accepted += 1;
                    place.keep();
                } else {
                    report.rejected += 1;
                }
            }
            None => {
                failures += 1;
                report.failed += 1;
                conn = None;
            }
        }
    }
}

/// A worker's place in the closed loop's window (nothing in the open
/// loop). Given back on drop, unless the event it holds was taken by the
/// server: then the event keeps it until the reaper sees it delivered.
struct Place<'a> {
    state: &'a State,
    closed: Option<&'a ClosedLoop>,
    seq: Option<u64>,
}

impl<'a> Place<'a> {
    /// Waits for a free place, at most until the end of the run.
    async fn take(state: &'a State) -> Result<Place<'a>, ()> {
        let closed = state.spec.closed.as_ref();
        if closed.is_some() {
            let left = state.deadline.saturating_duration_since(Instant::now());
            let taken = futures_lite::future::or(async { state.places.acquire(1).await.is_ok() }, async {
                glommio::timer::sleep(left).await;
                false
            })
            .await;
            if !taken {
                return Err(());
            }
        }
        Ok(Place { state, closed, seq: None })
    }

    /// The place now holds event `seq`, about to be published.
    fn hold(mut self, seq: u64) -> Self {
        if let Some(c) = self.closed {
            c.window.open(seq, c.receivers);
            self.state.in_flight.borrow_mut().push_back((seq, Instant::now()));
            self.seq = Some(seq);
        }
        self
    }

    /// The server took the event: its place stays taken.
    fn keep(mut self) {
        self.closed = None;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let Some(c) = self.closed else { return };
        if let Some(seq) = self.seq {
            c.window.abandon(seq);
            self.state.in_flight.borrow_mut().retain(|&(s, _)| s != seq);
        }
        self.state.places.signal(1);
    }
}

/// Gives the places of events that every receiver has (or that ran out of
/// time) back to the workers, until the workers are done.
async fn reap(state: Rc<State>) {
    let Some(closed) = &state.spec.closed else { return };
    let mut done = state.workers_done.wait();
    while !state.workers_done.is_fired() {
        // Read before the scan, so that a completion during it ends the wait below.
        let seen = closed.window.completions();
        let now = Instant::now();
        let (mut freed, mut late) = (0, 0);
        state.in_flight.borrow_mut().retain(|&(seq, at)| {
            if closed.window.is_complete(seq) {
                freed += 1;
                false
            } else if now >= at + closed.timeout {
                closed.window.abandon(seq);
                late += 1;
                false
            } else {
                true
            }
        });
        state.report.borrow_mut().timed_out += late;
        state.places.signal(freed + late);
        let oldest = state.in_flight.borrow().front().map(|&(_, at)| at);
        let wait = oldest.map_or(closed.timeout, |at| (at + closed.timeout).saturating_duration_since(now));
        futures_lite::future::or(
            closed.window.completed_after(seen),
            futures_lite::future::or(&mut done, glommio::timer::sleep(wait)),
        )
        .await;
    }
}

impl State {
    /// The request for event `seq`, stamped `sent_at` (µs since the Unix epoch).
    fn request(&self, seq: u64, sent_at: u64) -> Request<Full<Bytes>> {
        let (path, body) = match &self.spec.kind {
            Kind::Broadcast { rooms } => {
                let room = &rooms[seq as usize % rooms.len()];
                let body = serde_json::json!({
                    "room": room, "type": "bench", "payload": self.payload(seq, sent_at),
                });
                ("/api/notifications/broadcast", body)
            }
            Kind::Send { targets } => {
                let pick = rand::rng().random_range(0..targets.len());
                let mut seqs = self.user_seq.borrow_mut();
                let k = seqs[pick];
                seqs[pick] += 1;
                let user = token::user_id(targets[pick] as usize);
                let body = serde_json::json!({
                    "userId": user, "type": "bench", "payload": self.payload(k, sent_at),
                });
                ("/api/notifications/send", body)
            }
        };
        let mut builder = Request::post(path)
            .header(hyper::header::HOST, &self.spec.target.host)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.spec.api_key {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        // Method, path and headers are all valid: building cannot fail.
        builder.body(Full::new(Bytes::from(body.to_string()))).unwrap_or_default()
    }

    fn payload(&self, seq: u64, sent_at: u64) -> serde_json::Value {
        match self.spec.pad {
            0 => serde_json::json!({ "seq": seq, "sentAt": sent_at }),
            pad => serde_json::json!({ "seq": seq, "sentAt": sent_at, "pad": "x".repeat(pad) }),
        }
    }
}

/// When each event is due. At a fixed rate an event's `sentAt` is the time
/// it was scheduled for, not when a free worker got round to sending it: a
/// saturated publisher (or server) then shows as latency instead of
/// silently sending later (coordinated omission).
struct Schedule {
    start: Instant,
    /// `start` in µs since the Unix epoch, the clock of `sentAt`.
    start_us: u64,
    /// Events per second; 0 = as fast as the window allows (no schedule).
    rate: f64,
}

impl Schedule {
    /// When event `seq` should go out (rate > 0).
    fn due(&self, seq: u64) -> Instant {
        self.start + self.offset(seq)
    }

    /// The `sentAt` of event `seq`: its scheduled time at a fixed rate, now otherwise.
    fn sent_at(&self, seq: u64) -> u64 {
        if self.rate > 0.0 {
            self.start_us + self.offset(seq).as_micros() as u64
        } else {
            unix_micros()
        }
    }

    fn offset(&self, seq: u64) -> Duration {
        Duration::from_secs_f64(seq as f64 / self.rate)
    }
}

/// The body of `GET path` from the server (its metrics), over a connection
/// of its own on an executor of its own; bounded like a publish.
pub fn get(target: &Target, path: &str) -> anyhow::Result<String> {
    let (target, path) = (target.clone(), path.to_owned());
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("bench-get")
        .io_memory(IO_MEMORY)
        .spawn(move || async move {
            let fetch = async {
                let mut sender = open(&target).await?;
                let request =
                    Request::get(path).header(hyper::header::HOST, &target.host).body(Full::default())?;
                let body = sender.send_request(request).await?.into_body().collect().await?.to_bytes();
                Ok(String::from_utf8_lossy(&body).into_owned())
            };
            futures_lite::future::or(fetch, async {
                glommio::timer::sleep(REQUEST_LIMIT).await;
                Err(anyhow!("no answer within {} s", REQUEST_LIMIT.as_secs()))
            })
            .await
        })
        .map_err(|e| anyhow!("cannot start an executor: {e}"))?;
    handle.join().map_err(|e| anyhow!("the request failed: {e}"))?
}

/// A keep-alive HTTP/1.1 connection to the server; its driver runs as a task.
async fn open(target: &Target) -> anyhow::Result<Sender> {
    let stream = target::connect(target.addr, None, Duration::from_secs(5)).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(FuturesIo::new(stream)).await?;
    glommio::spawn_local(async move {
        let _ = connection.await;
    })
    .detach();
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_a_rate_an_event_is_stamped_when_it_was_due_not_when_it_went_out() {
        // Scheduled a minute ago: every event is late by now, and says when it was due.
        let schedule = Schedule { start: Instant::now(), start_us: unix_micros() - 60_000_000, rate: 1000.0 };
        assert_eq!(schedule.sent_at(0), schedule.start_us);
        assert_eq!(schedule.sent_at(2500), schedule.start_us + 2_500_000);
        assert_eq!(schedule.due(2500), schedule.start + Duration::from_millis(2500));
    }

    #[test]
    fn without_a_rate_an_event_is_stamped_when_it_goes_out() {
        let before = unix_micros();
        let schedule = Schedule { start: Instant::now(), start_us: before - 60_000_000, rate: 0.0 };
        let stamped = schedule.sent_at(2500);
        assert!(stamped >= before && stamped <= unix_micros());
    }
}
