//! `benches/scale_out.sh` at a small size, so that the 100,000-connection
//! scenarios cannot rot: a deployment of two server processes sharing one
//! port through a real `redis-server`, a few hundred connections held by two
//! load-generator processes, every scenario through the same script and
//! generator as the full runs, and a rolling restart under fan-out that
//! must lose and repeat nothing. Without `redis-server` each test says so
//! and passes, unless `REALTIME_REQUIRE_REDIS=1`.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// Far above what a run below takes (a few seconds each, in a debug build).
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The load generator of this build, beside the server binary.
fn bench_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_realtime")).with_file_name("realtime-bench");
    assert!(
        bench.is_file(),
        "no load generator at {}: run plain `cargo test` (or `cargo build`) at the workspace root, \
         which builds it beside the server",
        bench.display()
    );
    bench
}

/// Runs `benches/scale_out.sh scenario` with two servers and `conns`
/// connections (two generator processes) and `env`; its JSON line.
fn scale_out(scenario: &str, conns: usize, env: &[(&str, &str)]) -> Value {
    let per_process = conns.div_ceil(2).to_string();
    let mut child = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/scale_out.sh"))
        .arg(scenario)
        .env("REALTIME", env!("CARGO_BIN_EXE_realtime"))
        .env("BENCH", bench_binary())
        .envs([("SERVERS", "2"), ("CONNS", &conns.to_string()), ("PER_PROCESS", &per_process)])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start benches/scale_out.sh");
    let (stdout, stderr) = (Buf::default(), Buf::default());
    let readers = [
        drain(child.stdout.take().expect("stdout"), Arc::clone(&stdout)),
        drain(child.stderr.take().expect("stderr"), Arc::clone(&stderr)),
    ];
    let status = wait_child(&mut child, RUN_LIMIT);
    if status.is_none() {
        // SIGTERM: the script's trap stops the servers, Redis and the generator it started.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = wait_child(&mut child, Duration::from_secs(20));
    }
    for reader in readers {
        let _ = reader.join();
    }
    let (stdout, stderr) = (stdout.lock().unwrap().clone(), stderr.lock().unwrap().clone());
    assert!(status.is_some(), "scale_out.sh {scenario} ran past {RUN_LIMIT:?}\n{stdout}\n{stderr}");
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no result line\n{stderr}"));
    let result: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{stderr}"));
    assert_eq!(result["ok"], true, "{line}\n{stderr}");
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {line}\n{stderr}");
    result
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn idle_fanout_and_storm_across_two_processes() {
    let idle = scale_out("idle", 300, &[("DURATION", "1")]);
    assert_eq!(idle["result"]["connected"], 300, "{idle}");
    assert_eq!(idle["result"]["processes"], 2, "two generator processes: {idle}");
    assert!(idle["rss_per_conn_kib"].is_number(), "RSS summed over both servers: {idle}");
    // Machine-wide figures (other programs open and close sockets meanwhile): read, not judged.
    assert!(idle["kernel_slab_kib_per_conn"].is_number(), "{idle}");

    let fanout = scale_out("fanout", 300, &[("DURATION", "2"), ("RATE", "5")]);
    let events = fanout["result"]["events_published"].as_u64().unwrap_or(0);
    assert!(events > 0, "{fanout}");
    assert_eq!(fanout["result"]["delivered"].as_u64(), Some(events * 300), "{fanout}");
    assert_eq!(
        (fanout["lost"].as_u64(), fanout["result"]["duplicates"].as_u64()),
        (Some(0), Some(0)),
        "{fanout}"
    );
    assert!(fanout["server_cpu_s_per_million"].is_number(), "CPU summed over both servers: {fanout}");
    // Every event reaches Redis's two subscribers (one per server process): more than two envelopes' worth out.
    assert!(fanout["redis_output_bytes_per_event"].as_f64().is_some_and(|b| b > 200.0), "{fanout}");

    let storm = scale_out("storm", 300, &[("STORM_COUNT", "300")]);
    assert_eq!((storm["handshakes"].as_u64(), storm["errors"].as_u64()), (Some(300), Some(0)), "{storm}");
}

#[test]
#[cfg_attr(no_redis, ignore = "redis-server is not installed")]
fn a_rolling_restart_under_fan_out_loses_and_repeats_nothing() {
    // 50 events a second: every client away for longer than 20 ms misses live ones and must recover them.
    let rolling = scale_out("rolling", 300, &[("RATE", "50"), ("ROLL_SECONDS", "12"), ("STEP_PAUSE", "1")]);
    assert_eq!(rolling["restarts_under_load"], true, "{rolling}");
    assert_eq!((rolling["lost"].as_u64(), rolling["duplicates"].as_u64()), (Some(0), Some(0)), "{rolling}");
    // By offsets, which also count the events whose publish a stopping server left unanswered.
    assert_eq!(rolling["lost_by_offsets"], 0, "{rolling}");
    assert!(rolling["result"]["reconnect"]["last_offset"].as_u64().is_some_and(|n| n > 0), "{rolling}");
    assert!(
        rolling["reconnects"].as_u64().is_some_and(|n| n >= 300),
        "every client was closed at least once: {rolling}"
    );
    assert!(
        rolling["recovered"].as_u64().is_some_and(|n| n > 0),
        "events came back through `since`: {rolling}"
    );
    assert_eq!(
        (rolling["not_recovered"].as_u64(), rolling["offset_gaps"].as_u64()),
        (Some(0), Some(0)),
        "{rolling}"
    );
    assert_eq!(rolling["disconnects"], 0, "{rolling}");
    let steps = rolling["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 2, "{rolling}");
    assert!(rolling["all_back_s"].is_number(), "{rolling}");
}
