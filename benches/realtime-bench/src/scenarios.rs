//! The scenarios: each drives a fleet (and a publisher, or the storm), reads
//! the server's /proc figures around the measured phase, and returns the
//! JSON result plus a human summary.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cli::{self, Common, Publish};
use crate::fleet::{self, Fleet, PingPlan, Progress, Readiness, WorkerReport, WorkerSpec};
use crate::procstat::{self, ServerProc};
use crate::publisher::{self, ClosedLoop, Kind, PubSpec};
use crate::recover::{Phase, RecoverSpec};
use crate::storm::{self, StormSpec};
use crate::target::Target;
use crate::token::Minter;
use crate::window::DeliveryWindow;

/// What a run prints: one JSON line (stdout) and a summary (stderr).
pub struct Outcome {
    pub json: Value,
    pub summary: String,
}

/// The common flags, checked and capped.
pub struct Settings {
    pub target: Target,
    pub secret: String,
    pub server: Option<ServerProc>,
    pub conns: usize,
    pub duration: Duration,
    pub common: Common,
}

impl Settings {
    pub fn check(common: &Common) -> anyhow::Result<Settings> {
        let target = Target::parse(&common.url)?;
        let Some(secret) = common.secret.clone().filter(|s| !s.is_empty()) else {
            bail!("--secret (or JWT_SECRET) is required to mint client tokens");
        };
        if !(common.duration > 0.0 && common.duration <= cli::MAX_DURATION_S) {
            bail!("--duration must be in (0, {}] seconds", cli::MAX_DURATION_S);
        }
        if common.conns == 0 || common.conns > cli::MAX_CONNS {
            bail!("--conns must be in 1..={}", cli::MAX_CONNS);
        }
        if common.threads == 0 || common.threads > cli::MAX_THREADS {
            bail!("--threads must be in 1..={}", cli::MAX_THREADS);
        }
        if common.connect_concurrency == 0 || common.connect_concurrency > cli::MAX_CONCURRENCY {
            bail!("--connect-concurrency must be in 1..={}", cli::MAX_CONCURRENCY);
        }
        if !(common.connect_timeout > 0.0 && common.connect_timeout <= 120.0) {
            bail!("--connect-timeout must be in (0, 120] seconds");
        }
        if common.per_process == 0 || common.per_process > cli::PROCESS_SOCKETS {
            bail!("--per-process must be in 1..={}", cli::PROCESS_SOCKETS);
        }
        Ok(Settings {
            target,
            secret,
            server: ServerProc::maybe(&common.pid)?,
            conns: common.conns,
            duration: Duration::from_secs_f64(common.duration),
            common: common.clone(),
        })
    }

    fn worker_spec(
        &self,
        subscribe: bool,
        tail: Duration,
        pings: Option<PingPlan>,
        reconnect: bool,
    ) -> WorkerSpec {
        let connect = fleet::connect_limit(self.conns);
        WorkerSpec {
            target: self.target.clone(),
            secret: self.secret.clone(),
            role: self.common.role.clone(),
            room: self.common.room.clone(),
            subscribe,
            conns: self.conns,
            index_base: 0,
            source_slot: 0,
            threads: self.common.threads,
            connect_concurrency: self.common.connect_concurrency,
            connect_timeout_ms: (self.common.connect_timeout * 1000.0) as u64,
            token_ttl_s: (connect + self.duration + tail).as_secs() + 3600,
            max_lifetime_s: (self.duration + tail + Duration::from_secs(120)).as_secs(),
            pings,
            reconnect,
        }
    }

    /// Creates `--ready-file`, if given: the measured phase begins.
    fn say_ready(&self) -> anyhow::Result<()> {
        let Some(path) = &self.common.ready_file else { return Ok(()) };
        std::fs::write(path, b"ready\n").with_context(|| format!("--ready-file {}", path.display()))
    }

    fn rss(&self) -> anyhow::Result<Option<u64>> {
        self.server.as_ref().map(ServerProc::rss_kib).transpose()
    }

    fn cpu(&self) -> anyhow::Result<Option<f64>> {
        self.server.as_ref().map(ServerProc::cpu_s).transpose()
    }
}

/// Opens the fleet and waits for it; on failure, closes what did open.
fn open_fleet(
    s: &Settings,
    spec: WorkerSpec,
    window: Option<Arc<DeliveryWindow>>,
) -> anyhow::Result<(Fleet, Readiness, Duration)> {
    let started = Instant::now();
    let mut fleet = Fleet::launch(spec, s.common.per_process, window)?;
    match fleet.wait_ready(fleet::connect_limit(s.conns)) {
        Ok(ready) => Ok((fleet, ready, started.elapsed())),
        Err(e) => {
            let _ = fleet.stop();
            Err(e)
        }
    }
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

fn cpu_delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(round(after? - before?, 3))
}

/// Server CPU µs per counted thing (pong, delivered event), when both are known.
fn cpu_us_per(cpu: Option<f64>, count: u64) -> Option<f64> {
    cpu.filter(|_| count > 0).map(|c| round(c * 1e6 / count as f64, 2))
}

/// Deliveries per second over the span from the first publish to the last
/// delivery (so neither a drain nor a slow start inflates it), and how many
/// of them came after publishing stopped.
#[derive(Debug, PartialEq)]
struct Throughput {
    per_s: f64,
    span_s: f64,
    drained: u64,
}

fn throughput(
    delivered: u64,
    by_publish_end: u64,
    first_publish_us: Option<u64>,
    last_delivery_us: u64,
) -> Throughput {
    let span_s = first_publish_us
        .filter(|&first| last_delivery_us > first)
        .map_or(0.0, |first| (last_delivery_us - first) as f64 / 1e6);
    let per_s = if span_s > 0.0 { delivered as f64 / span_s } else { 0.0 };
    Throughput { per_s, span_s, drained: delivered.saturating_sub(by_publish_end) }
}

/// `--drain`, checked.
fn drain_limit(seconds: f64) -> anyhow::Result<Duration> {
    if !(0.0..=60.0).contains(&seconds) {
        bail!("--drain must be in [0, 60] seconds");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// After the measured phase: waits until `done` holds for what the fleet has
/// seen, at most `limit`; how long it waited.
fn wait_drained(
    fleet: &mut Fleet,
    limit: Duration,
    done: impl Fn(&Progress) -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !done(&fleet.progress().context("progress")?) && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(started.elapsed())
}

pub fn idle(s: &Settings, subscribe: bool) -> anyhow::Result<Outcome> {
    let rss_before = s.rss()?;
    let (mut fleet, ready, connect_time) =
        open_fleet(s, s.worker_spec(subscribe, Duration::ZERO, None, false), None)?;
    if ready.connected == 0 {
        let report = fleet.stop()?;
        bail!("no connection opened (errors {:?})", report.errors);
    }
    let processes = fleet.processes();
    // Let the server finish with the last connections before measuring.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = s.rss()?;
    let cpu_before = s.cpu()?;
    let bench_before = procstat::own_cpu_s();
    let held = Instant::now();
    fleet.go()?;
    if let Err(e) = s.say_ready() {
        let _ = fleet.stop();
        return Err(e);
    }
    std::thread::sleep(s.duration);
    let cpu_after = s.cpu()?;
    let bench_own = procstat::own_cpu_s() - bench_before;
    let idle_s = held.elapsed().as_secs_f64();
    let rss_end = s.rss()?;
    let report = fleet.stop()?;

    let connected = ready.connected;
    let rss_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => Some(round((a as f64 - b as f64) / connected as f64, 3)),
        _ => None,
    };
    let cpu = cpu_delta(cpu_before, cpu_after);
    let cpu_per_conn_us = cpu.filter(|_| connected > 0).map(|c| round(c * 1e6 / connected as f64, 3));
    let json = json!({
        "scenario": "idle",
        "ok": true,
        "conns": s.conns,
        "connected": connected,
        "connect_failed": ready.connect_failed,
        "subscribe": subscribe,
        "subscribed": ready.subscribed,
        "subscribe_failed": ready.subscribe_failed,
        "processes": processes,
        "threads": s.common.threads,
        "connect_s": round(connect_time.as_secs_f64(), 3),
        "connect_latency_ms": report.connect_latency.summary_ms(),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_end_kib": rss_end,
        "rss_per_conn_kib": rss_per_conn,
        "idle_s": round(idle_s, 3),
        "server_cpu_s": cpu,
        "server_cpu_us_per_conn": cpu_per_conn_us,
        "server_cpu_pct": cpu.map(|c| round(c * 100.0 / idle_s, 3)),
        "bench_cpu_s": round(bench_own + report.worker_cpu_s, 3),
        "pings": report.pings,
        "disconnects": report.disconnects,
        "connect_retries": report.connect_retries,
        "errors": report.errors,
    });
    let mut summary = format!(
        "idle: {connected}/{} connected in {:.2} s ({} process(es)), subscribed {}, held {:.1} s, {} pings answered, {} lost",
        s.conns,
        connect_time.as_secs_f64(),
        processes,
        ready.subscribed,
        idle_s,
        report.pings,
        report.disconnects,
    );
    if let (Some(b), Some(a), Some(per)) = (rss_before, rss_after, rss_per_conn) {
        summary += &format!("\n  server RSS {b} KiB -> {a} KiB: {per:.2} KiB per connection");
    }
    if let Some(c) = cpu {
        summary += &format!(
            "\n  server CPU while idle: {c:.3} s ({:.3} µs per connection)",
            cpu_per_conn_us.unwrap_or(0.0)
        );
    }
    Ok(Outcome { json, summary })
}

pub fn storm(
    s: &Settings,
    concurrency: usize,
    count: Option<u64>,
    private_key: Option<&Path>,
    subscribe: bool,
) -> anyhow::Result<Outcome> {
    if concurrency == 0 || concurrency > cli::MAX_CONCURRENCY {
        bail!("--concurrency must be in 1..={}", cli::MAX_CONCURRENCY);
    }
    let ttl = s.duration.as_secs() + 3600;
    let minter = match private_key {
        None => Minter::new(&s.secret, &s.common.role, ttl),
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Minter::from_private_pem(&pem, &s.common.role, ttl)?
        }
    };
    let cpu_before = s.cpu()?;
    let bench_before = procstat::own_cpu_s();
    let report = storm::run(StormSpec {
        target: s.target.clone(),
        minter: Arc::new(minter),
        concurrency,
        threads: s.common.threads,
        duration: s.duration,
        count: count.unwrap_or(u64::MAX),
        attempt_limit: Duration::from_secs_f64(s.common.connect_timeout),
        room: subscribe.then(|| s.common.room.clone()),
    })?;
    let cpu_after = s.cpu()?;
    let bench_cpu = round(procstat::own_cpu_s() - bench_before, 3);
    let elapsed = report.elapsed.as_secs_f64();
    let errors: u64 = report.errors.values().sum();
    let rate = report.handshakes as f64 / elapsed;
    let cpu = cpu_delta(cpu_before, cpu_after);
    let cpu_per_hs =
        cpu.filter(|_| report.handshakes > 0).map(|c| round(c * 1e6 / report.handshakes as f64, 2));
    let json = json!({
        "scenario": "storm",
        "ok": report.handshakes > 0,
        "concurrency": concurrency,
        "threads": s.common.threads,
        "duration_s": round(elapsed, 3),
        "handshakes": report.handshakes,
        "handshakes_per_s": round(rate, 1),
        "errors": errors,
        "errors_by_kind": report.errors,
        "handshake_latency_ms": report.latency.summary_ms(),
        "server_cpu_s": cpu,
        "server_cpu_us_per_handshake": cpu_per_hs,
        "bench_cpu_s": bench_cpu,
    });
    let mut summary = format!(
        "storm: {} handshakes in {:.2} s = {:.0}/s with {concurrency} workers, {errors} errors, p50 {:.2} ms, p99 {:.2} ms",
        report.handshakes,
        elapsed,
        rate,
        report.latency.quantile(0.5) as f64 / 1000.0,
        report.latency.quantile(0.99) as f64 / 1000.0,
    );
    if let (Some(c), Some(per)) = (cpu, cpu_per_hs) {
        summary += &format!("\n  server CPU {c:.2} s: {per:.1} µs per handshake");
    }
    summary += &format!("\n  load generator CPU {bench_cpu:.2} s");
    Ok(Outcome { json, summary })
}

/// The closed loop of `fanout`: `--closed-window` and `--publishers`.
#[derive(Clone, Copy)]
pub struct Closed {
    pub window: usize,
    pub publishers: usize,
}

/// How the connections of a `fanout` take part (a `send` takes the default:
/// no subscribe, open loop, no reconnects).
#[derive(Default)]
pub struct Fanout {
    pub subscribe: bool,
    pub closed: Option<Closed>,
    pub reconnect: bool,
}

/// `fanout` (broadcast to a room, open or closed loop) and `send` (to single users).
pub fn publish(s: &Settings, p: &Publish, send: bool, fanout: Fanout) -> anyhow::Result<Outcome> {
    let Fanout { subscribe, closed, reconnect } = fanout;
    let rate = p.rate.unwrap_or(if closed.is_some() { 0.0 } else { 20.0 });
    if !(0.0..=1e6).contains(&rate) {
        bail!("--rate must be in [0, 1000000] events/s");
    }
    if p.window == 0 || p.window > cli::MAX_WINDOW {
        bail!("--window must be in 1..={}", cli::MAX_WINDOW);
    }
    let drain = drain_limit(p.drain)?;
    if let Some(c) = closed {
        if c.window == 0 || c.window > cli::MAX_WINDOW {
            bail!("--closed-window must be in 1..={}", cli::MAX_WINDOW);
        }
        if c.publishers == 0 || c.publishers > cli::MAX_WINDOW {
            bail!("--publishers must be in 1..={}", cli::MAX_WINDOW);
        }
        if drain.is_zero() {
            bail!(
                "--closed-window needs a --drain above 0: an event not everywhere by then gives its place up"
            );
        }
    }
    let scenario = if send { "send" } else { "fanout" };
    let window = closed.map(|_| Arc::new(DeliveryWindow::default()));
    let (mut fleet, ready, connect_time) =
        open_fleet(s, s.worker_spec(subscribe, drain, None, reconnect), window.clone())?;
    let receivers = if subscribe { ready.subscribed } else { ready.connected };
    let not_ready: HashSet<u32> = ready.not_ready.iter().copied().collect();
    let targets: Vec<u32> = (0..s.conns as u32).filter(|i| !not_ready.contains(i)).collect();
    if receivers == 0 || targets.is_empty() {
        let report = fleet.stop()?;
        bail!(
            "no connection is ready to receive ({} connected, {} subscribed; errors {:?})",
            ready.connected,
            ready.subscribed,
            report.errors
        );
    }
    let kind =
        if send { Kind::Send { targets } } else { Kind::Broadcast { rooms: vec![s.common.room.clone()] } };
    let cpu_before = s.cpu()?;
    let bench_before = procstat::own_cpu_s();
    fleet.go()?;
    if let Err(e) = s.say_ready() {
        let _ = fleet.stop();
        return Err(e);
    }
    let published = publisher::run(PubSpec {
        target: s.target.clone(),
        kind,
        rate,
        window: closed.map_or(p.window, |c| c.publishers),
        closed: closed.zip(window).map(|(c, window)| ClosedLoop {
            window,
            limit: c.window,
            receivers,
            timeout: drain,
        }),
        duration: s.duration,
        count: p.count.unwrap_or(u64::MAX),
        api_key: s.common.api_key.clone(),
        pad: 0,
    });
    let published = match published {
        Ok(r) => r,
        Err(e) => {
            let _ = fleet.stop();
            return Err(e);
        }
    };
    let expected = if send { published.accepted } else { published.accepted * receivers };
    let by_publish_end = fleet.progress().context("progress")?.delivered;
    let drain_s = wait_drained(&mut fleet, drain, |progress| progress.delivered >= expected)?.as_secs_f64();
    let cpu_after = s.cpu()?;
    let bench_own = procstat::own_cpu_s() - bench_before;
    let report = fleet.stop()?;
    let bench_cpu = round(bench_own + report.worker_cpu_s, 3);

    let publish_s = published.elapsed.as_secs_f64();
    let delivered = report.unique;
    let lost = expected.saturating_sub(delivered);
    let rate_of = throughput(delivered, by_publish_end, published.first_sent_us, report.last_delivery_us);
    let per_s = rate_of.per_s;
    let cpu = cpu_delta(cpu_before, cpu_after);
    let cpu_per_million = cpu.filter(|_| delivered > 0).map(|c| round(c * 1e6 / delivered as f64, 3));
    let offered =
        if rate > 0.0 { Some(round(if send { rate } else { rate * receivers as f64 }, 1)) } else { None };
    let mut json = json!({
        "scenario": scenario,
        "ok": published.accepted > 0 && delivered > 0,
        "conns": s.conns,
        "connected": ready.connected,
        "receivers": receivers,
        "connect_failed": ready.connect_failed,
        "subscribe_failed": ready.subscribe_failed,
        "processes": fleet_processes(s),
        "threads": s.common.threads,
        "connect_s": round(connect_time.as_secs_f64(), 3),
        "rate": rate,
        "window": if closed.is_some() { None } else { Some(p.window) },
        "closed_window": closed.map(|c| c.window),
        "publishers": closed.map(|c| c.publishers),
        "events_timed_out": published.timed_out,
        "publish_s": round(publish_s, 3),
        "events_published": published.accepted,
        "publish_rate": round(published.accepted as f64 / publish_s, 1),
        "publish_rejected": published.rejected,
        "publish_failed": published.failed,
        "publish_status": published.status,
        "publish_connections": published.connections,
        "publish_latency_ms": published.latency.summary_ms(),
        "expected": expected,
        "delivered": delivered,
        "offered_deliveries_per_s": offered,
        "deliveries_per_s": round(per_s, 1),
        "delivery_s": round(rate_of.span_s, 3),
        "drain_deliveries": rate_of.drained,
        "lost": lost,
        "loss_ratio": if expected > 0 { round(lost as f64 / expected as f64, 6) } else { 0.0 },
        "duplicates": report.duplicates,
        "late": report.late,
        "skipped": report.skipped,
        "disconnects": report.disconnects,
        "drain_s": round(drain_s, 3),
        "latency_ms": report.latency.summary_ms(),
        "server_cpu_s": cpu,
        "server_cpu_s_per_million": cpu_per_million,
        "bench_cpu_s": bench_cpu,
        "errors": report.errors,
    });
    if reconnect {
        json["reconnect"] = reconnect_json(&report);
    }
    if send {
        json["cpu_us_per_event"] = json!(cpu_us_per(cpu, delivered));
    }
    let mut summary = format!(
        "{scenario}: {} events to {receivers} receivers in {publish_s:.2} s ({} rejected, {} failed); \
         delivered {delivered}/{expected} = {per_s:.0}/s from the first publish to the last delivery \
         ({:.2} s, {} of them after publishing stopped), lost {lost}, duplicates {}, late {}\n  \
         latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        published.accepted,
        published.rejected,
        published.failed,
        rate_of.span_s,
        rate_of.drained,
        report.duplicates,
        report.late,
        report.latency.quantile(0.5) as f64 / 1000.0,
        report.latency.quantile(0.99) as f64 / 1000.0,
        report.latency.quantile(0.999) as f64 / 1000.0,
        report.latency.max() as f64 / 1000.0,
    );
    if let (Some(c), Some(per)) = (cpu, cpu_per_million) {
        summary += &format!("\n  server CPU {c:.2} s: {per:.2} s per million deliveries");
    }
    if let Some(per) = json["cpu_us_per_event"].as_f64() {
        summary += &format!(", {per:.1} µs per event");
    }
    if reconnect {
        summary += &format!(
            "\n  reconnects {}, lost by offsets {}, events recovered {}, not recovered {}, offset gaps {}, away p99 {:.0} ms, max {:.0} ms",
            report.reconnects,
            report.lost_by_offsets(),
            report.recovered,
            report.not_recovered,
            report.offset_gaps,
            report.reconnect_latency.quantile(0.99) as f64 / 1000.0,
            report.reconnect_latency.max() as f64 / 1000.0,
        );
    }
    summary += &format!("\n  load generator CPU {bench_cpu:.2} s");
    Ok(Outcome { json, summary })
}

/// `ping`: N connections open, the first `busy` sending client pings.
pub fn ping(s: &Settings, busy: usize, rate: f64, drain_s: f64) -> anyhow::Result<Outcome> {
    if busy == 0 || busy > s.conns {
        bail!("--busy must be in 1..={} (--conns)", s.conns);
    }
    if !(rate > 0.0 && rate <= 1e6) {
        bail!("--rate must be in (0, 1000000] pings/s");
    }
    let per_conn = rate / busy as f64;
    if per_conn > cli::CLIENT_MESSAGES_PER_S {
        bail!(
            "--rate {rate} over --busy {busy} is {per_conn:.0} pings/s per connection; the server refuses more than {} \
             (its flood control): raise --busy",
            cli::CLIENT_MESSAGES_PER_S
        );
    }
    let drain_limit = drain_limit(drain_s)?;
    let plan = PingPlan { busy, rate, for_ms: s.duration.as_millis() as u64 };
    let (mut fleet, ready, connect_time) =
        open_fleet(s, s.worker_spec(false, drain_limit, Some(plan), false), None)?;
    let busy_ready = busy - ready.not_ready.iter().filter(|&&i| (i as usize) < busy).count();
    if busy_ready == 0 {
        let report = fleet.stop()?;
        bail!("no busy connection opened ({} connected; errors {:?})", ready.connected, report.errors);
    }
    let cpu_before = s.cpu()?;
    let bench_before = procstat::own_cpu_s();
    fleet.go()?;
    std::thread::sleep(s.duration);
    let drain_s =
        wait_drained(&mut fleet, drain_limit, |p| p.pinging == 0 && p.pongs >= p.pings_sent)?.as_secs_f64();
    let cpu_after = s.cpu()?;
    let bench_own = procstat::own_cpu_s() - bench_before;
    let report = fleet.stop()?;
    let bench_cpu = round(bench_own + report.worker_cpu_s, 3);

    let (sent, pongs) = (report.pings_sent, report.pongs);
    let lost = sent.saturating_sub(pongs);
    let cpu = cpu_delta(cpu_before, cpu_after);
    let per_ping = cpu_us_per(cpu, pongs);
    let json = json!({
        "scenario": "ping",
        "ok": pongs > 0,
        "conns": s.conns,
        "connected": ready.connected,
        "connect_failed": ready.connect_failed,
        "processes": fleet_processes(s),
        "threads": s.common.threads,
        "connect_s": round(connect_time.as_secs_f64(), 3),
        "busy": busy,
        "busy_connected": busy_ready,
        "rate": rate,
        "duration_s": round(s.duration.as_secs_f64(), 3),
        "pings_sent": sent,
        "pings_per_s": round(sent as f64 / s.duration.as_secs_f64(), 1),
        "pongs": pongs,
        "lost": lost,
        "loss_ratio": if sent > 0 { round(lost as f64 / sent as f64, 6) } else { 0.0 },
        "drain_s": round(drain_s, 3),
        "rtt_ms": report.pong_rtt.summary_ms(),
        "server_cpu_s": cpu,
        "cpu_us_per_ping": per_ping,
        "bench_cpu_s": bench_cpu,
        "disconnects": report.disconnects,
        "errors": report.errors,
    });
    let mut summary = format!(
        "ping: {sent} pings from {busy_ready}/{busy} busy of {} connections in {:.2} s; {pongs} pongs, lost {lost}\n  \
         round trip p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ready.connected,
        s.duration.as_secs_f64(),
        report.pong_rtt.quantile(0.5) as f64 / 1000.0,
        report.pong_rtt.quantile(0.99) as f64 / 1000.0,
        report.pong_rtt.max() as f64 / 1000.0,
    );
    if let (Some(c), Some(per)) = (cpu, per_ping) {
        summary += &format!("\n  server CPU {c:.3} s: {per:.1} µs per ping");
    }
    summary += &format!("\n  load generator CPU {bench_cpu:.2} s");
    Ok(Outcome { json, summary })
}

/// `recover`'s shape: clients spread over `rooms`, `missed` events per room
/// published while they are away, each padded with `pad` characters,
/// `window` publish requests in flight.
pub struct RecoverStorm {
    pub rooms: usize,
    pub missed: u64,
    pub pad: usize,
    pub window: usize,
}

/// `recover`: join, publish while away, reconnect at once with `since`.
pub fn recover(s: &Settings, storm: RecoverStorm, client_limit_s: f64) -> anyhow::Result<Outcome> {
    if storm.rooms == 0 || storm.rooms > cli::MAX_CONNS {
        bail!("--rooms must be in 1..={}", cli::MAX_CONNS);
    }
    let events = (storm.rooms as u64).saturating_mul(storm.missed);
    if storm.missed == 0 || events > cli::MAX_RECOVER_EVENTS {
        bail!("--missed must be at least 1, and --rooms × --missed at most {}", cli::MAX_RECOVER_EVENTS);
    }
    if storm.pad > 60_000 {
        bail!("--pad must be at most 60000 characters");
    }
    if storm.window == 0 || storm.window > cli::MAX_WINDOW {
        bail!("--window must be in 1..={}", cli::MAX_WINDOW);
    }
    if !(client_limit_s > 0.0 && client_limit_s <= 600.0) {
        bail!("--client-limit must be in (0, 600] seconds");
    }
    if s.conns > s.common.per_process {
        bail!("recover holds its clients in one process: --conns must be at most {}", s.common.per_process);
    }
    let client_limit = Duration::from_secs_f64(client_limit_s);
    let spec = Arc::new(RecoverSpec {
        target: s.target.clone(),
        minter: Minter::new(&s.secret, &s.common.role, 3600 + 4 * client_limit.as_secs()),
        conns: s.conns,
        room: s.common.room.clone(),
        rooms: storm.rooms,
        threads: s.common.threads,
        connect_concurrency: s.common.connect_concurrency,
        client_limit,
    });

    let joining = Phase::join(spec.clone())?;
    let waited = joining.wait();
    let joined = joining.close()?;
    let join_s = waited?.as_secs_f64();
    let positions = joined.positions;
    let joined_count = positions.iter().flatten().count();
    if joined_count == 0 {
        bail!("no client joined its room (errors {:?})", joined.errors);
    }

    let rss_before = s.rss()?;
    let history_before = history_bytes(s);
    let published = publisher::run(PubSpec {
        target: s.target.clone(),
        kind: Kind::Broadcast { rooms: (0..storm.rooms).map(|k| spec.room_name(k)).collect() },
        rate: 0.0,
        window: storm.window,
        closed: None,
        duration: Duration::from_secs_f64(cli::MAX_DURATION_S),
        count: events,
        api_key: s.common.api_key.clone(),
        pad: storm.pad,
    })?;
    let rss_after = s.rss()?;
    let history_after = history_bytes(s);
    if published.accepted != events {
        bail!(
            "{} of {events} events were accepted ({} rejected, {} failed: statuses {:?}): the clients could not know what they missed",
            published.accepted,
            published.rejected,
            published.failed,
            published.status
        );
    }

    let cpu_before = s.cpu()?;
    let bench_before = procstat::own_cpu_s();
    let reconnecting = Phase::recover(spec, positions)?;
    let waited = reconnecting.wait();
    let cpu_after = s.cpu()?;
    let bench_cpu = round(procstat::own_cpu_s() - bench_before, 3);
    let report = reconnecting.close()?;
    let storm_s = waited?.as_secs_f64();

    let cpu = cpu_delta(cpu_before, cpu_after);
    let history_added = history_before.zip(history_after).map(|(b, a)| a.saturating_sub(b));
    let rss_added = rss_before.zip(rss_after).map(|(b, a)| a.saturating_sub(b));
    let per_event = |total: Option<u64>| total.map(|t| round(t as f64 / events as f64, 1));
    let failed = joined_count as u64 - report.recovered - report.not_recovered;
    let publish_s = published.elapsed.as_secs_f64();
    let json = json!({
        "scenario": "recover",
        "ok": report.recovered > 0 && report.gaps == 0 && report.duplicates == 0,
        "conns": s.conns,
        "rooms": storm.rooms,
        "missed_per_room": storm.missed,
        "threads": s.common.threads,
        "connect_concurrency": s.common.connect_concurrency,
        "joined": joined_count,
        "join_s": round(join_s, 3),
        "events_published": published.accepted,
        "publish_s": round(publish_s, 3),
        "publish_rate": round(published.accepted as f64 / publish_s, 1),
        "server_rss_kib_before_publish": rss_before,
        "server_rss_kib_after_publish": rss_after,
        "history_bytes_before_publish": history_before,
        "history_bytes_after_publish": history_after,
        "rss_bytes_per_event": per_event(rss_added.map(|k| k * 1024)),
        "history_bytes_per_event": per_event(history_added),
        "reconnected": report.connected,
        "recovered": report.recovered,
        "not_recovered": report.not_recovered,
        "failed": failed,
        "missed": report.missed,
        "replayed": report.replayed,
        "event_bytes_mean": (report.replayed > 0).then(|| round(report.event_bytes as f64 / report.replayed as f64, 1)),
        "gaps": report.gaps,
        "duplicates": report.duplicates,
        "connect_retries": report.connect_retries,
        "storm_s": round(storm_s, 3),
        "all_recovered_s": round(report.last_done_us as f64 / 1e6, 3),
        "client_recovery_ms": report.client_time.summary_ms(),
        "server_cpu_s": cpu,
        "server_cpu_us_per_client": cpu_us_per(cpu, report.recovered),
        "bench_cpu_s": bench_cpu,
        "errors": report.errors,
    });
    let mut summary = format!(
        "recover: {joined_count}/{} clients joined {} rooms in {join_s:.2} s; {} events published while away in {publish_s:.2} s\n  \
         reconnected {}: {} recovered, {} not recovered, {failed} failed; {}/{} missed events replayed, {} gaps, {} duplicates\n  \
         all recovered {:.2} s after the storm began; per client p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        s.conns,
        storm.rooms,
        published.accepted,
        report.connected,
        report.recovered,
        report.not_recovered,
        report.replayed,
        report.missed,
        report.gaps,
        report.duplicates,
        report.last_done_us as f64 / 1e6,
        report.client_time.quantile(0.5) as f64 / 1000.0,
        report.client_time.quantile(0.99) as f64 / 1000.0,
        report.client_time.max() as f64 / 1000.0,
    );
    if let (Some(b), Some(a)) = (history_before, history_after) {
        summary += &format!("\n  history {b} -> {a} bytes");
    }
    if let (Some(b), Some(a)) = (rss_before, rss_after) {
        summary += &format!(", server RSS {b} -> {a} KiB while publishing");
    }
    if let Some(c) = cpu {
        summary += &format!("\n  server CPU for the storm {c:.3} s");
    }
    summary += &format!("\n  load generator CPU {bench_cpu:.2} s");
    Ok(Outcome { json, summary })
}

/// `realtime_history_bytes` summed over the shards, from the server's
/// metrics; `None` when they cannot be read.
fn history_bytes(s: &Settings) -> Option<u64> {
    let metrics = publisher::get(&s.target, "/metrics").ok()?;
    metric_sum(&metrics, "realtime_history_bytes")
}

/// The sum of a family's samples in Prometheus text.
fn metric_sum(text: &str, family: &str) -> Option<u64> {
    let samples: Vec<u64> = text
        .lines()
        .filter(|line| line.strip_prefix(family).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// What `--reconnect` saw: the connections that came back, the events they
/// recovered, what could not be, the loss counted by offsets (which, unlike
/// `lost`, also knows the events whose publish got no answer from a
/// stopping server but went through), and how long each was away; `outages` by
/// when they were closed (Unix ms), for a script that knows when it stopped
/// which server.
fn reconnect_json(report: &WorkerReport) -> Value {
    json!({
        "reconnects": report.reconnects,
        "lost_by_offsets": report.lost_by_offsets(),
        "last_offset": report.offset_end_max,
        "recovered": report.recovered,
        "not_recovered": report.not_recovered,
        "offset_gaps": report.offset_gaps,
        "epoch_changes": report.epoch_changes,
        "away_ms": report.reconnect_latency.summary_ms(),
        "outages": report.outages,
    })
}

fn fleet_processes(s: &Settings) -> usize {
    s.conns.div_ceil(s.common.per_process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_runs_from_the_first_publish_to_the_last_delivery() {
        // 10 s of publishing, 600k delivered by then and 400k in a 5 s drain:
        // 1M over 15 s, not over the 10 s of publishing.
        let t = throughput(1_000_000, 600_000, Some(1_000_000_000), 1_015_000_000);
        assert_eq!(t, Throughput { per_s: 1_000_000.0 / 15.0, span_s: 15.0, drained: 400_000 });
    }

    #[test]
    fn sums_a_family_over_its_labels() {
        let text = "# TYPE realtime_history_bytes gauge\nrealtime_history_bytes{shard=\"0\"} 300\n\
                    realtime_history_bytes{shard=\"1\"} 45\nrealtime_history_bytes_other 7\n";
        assert_eq!(metric_sum(text, "realtime_history_bytes"), Some(345));
        assert_eq!(metric_sum(text, "realtime_history_events"), None);
    }

    #[test]
    fn throughput_without_deliveries_is_zero() {
        assert_eq!(throughput(0, 0, Some(5), 0), Throughput { per_s: 0.0, span_s: 0.0, drained: 0 });
        assert_eq!(throughput(0, 0, None, 0).per_s, 0.0);
    }
}
