//! The publishing side: POSTs to the HTTP API over keep-alive HTTP/1.1
//! connections (hyper's client over glommio sockets), at a fixed rate or as
//! fast as a bounded window of requests in flight allows, on an executor
//! thread of its own.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use rand::Rng;
use smol_hyper::rt::FuturesIo;

use crate::client::unix_micros;
use crate::fleet::{IO_MEMORY, RING_DEPTH};
use crate::hist::Histogram;
use crate::target::{self, Target};
use crate::token;

/// What each event is.
pub enum Kind {
    /// `POST /api/notifications/broadcast` to one room.
    Broadcast { room: String },
    /// `POST /api/notifications/send` to a random one of these connection
    /// indices (each its own user); `seq` counts per user.
    Send { targets: Vec<u32> },
}

pub struct PubSpec {
    pub target: Target,
    pub kind: Kind,
    /// Events per second; 0 = as fast as the window allows.
    pub rate: f64,
    /// Requests in flight at most (one keep-alive connection each).
    pub window: usize,
    pub duration: Duration,
    /// At most this many events.
    pub count: u64,
    pub api_key: Option<String>,
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
    /// Request round trips, µs.
    pub latency: Histogram,
    pub connections: u64,
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
    start: Instant,
    deadline: Instant,
    next: Cell<u64>,
    /// Next per-user sequence number, by position in the target list (send).
    user_seq: RefCell<Vec<u64>>,
    report: RefCell<PubReport>,
}

async fn publish(spec: PubSpec) -> PubReport {
    let start = Instant::now();
    let user_seq = match &spec.kind {
        Kind::Send { targets } => vec![0; targets.len()],
        Kind::Broadcast { .. } => Vec::new(),
    };
    let workers = spec.window.max(1);
    let state = Rc::new(State {
        deadline: start + spec.duration,
        spec,
        start,
        next: Cell::new(0),
        user_seq: RefCell::new(user_seq),
        report: RefCell::new(PubReport::default()),
    });
    let tasks: Vec<_> = (0..workers).map(|_| glommio::spawn_local(worker(state.clone()))).collect();
    for task in tasks {
        task.await;
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
            let due = state.start + Duration::from_secs_f64(seq as f64 / spec.rate);
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
        let request = state.request(seq);
        let sent = Instant::now();
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

impl State {
    /// The request for event `seq`.
    fn request(&self, seq: u64) -> Request<Full<Bytes>> {
        let now = unix_micros();
        let (path, body) = match &self.spec.kind {
            Kind::Broadcast { room } => {
                let body = serde_json::json!({
                    "room": room, "type": "bench", "payload": { "seq": seq, "sentAt": now },
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
                    "userId": user, "type": "bench", "payload": { "seq": k, "sentAt": now },
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
