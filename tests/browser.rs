//! A real browser against the real server (README, Client protocol and Publish API, its Origin
//! rules): headless Chromium loads a page that connects with `new WebSocket()`
//! and a token and subscribes; a Node script publishes with axios, as the
//! seed's REST service does; the page must show the events. The same page
//! served from an origin that `ALLOWED_ORIGINS` does not list must get no
//! socket (the server answers the upgrade with 403).
//!
//! The browser side is `tests/browser/e2e.mjs` (playwright-core driving
//! `/usr/bin/chromium`). Without `tests/browser/node_modules` (`npm ci
//! --prefix tests/browser`), `node` or Chromium the build marks the test
//! ignored (see `build.rs`), unless `REALTIME_REQUIRE_BROWSER=1`, as in CI,
//! where it runs and fails, saying what is missing.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Bound on the whole Node run (browser start, page loads, every wait).
const NODE_DEADLINE: Duration = Duration::from_secs(60);
/// Bound on each wait inside the Node script.
const STEP_WAIT_MS: u64 = 15_000;
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
const API_KEY: &str = "browser-e2e-api-key-0d9c41";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("browser")
}

fn chromium_path() -> PathBuf {
    std::env::var_os("REALTIME_E2E_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| DEFAULT_CHROMIUM.into())
}

/// Why the browser test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let modules = browser_dir().join("node_modules");
    if !modules.join("playwright-core").is_dir() || !modules.join("axios").is_dir() {
        return Some(format!(
            "{} lacks playwright-core or axios (run `npm ci --prefix tests/browser`)",
            modules.display()
        ));
    }
    let chromium = chromium_path();
    if !chromium.is_file() {
        return Some(format!("{} is missing (apt-get install chromium)", chromium.display()));
    }
    let node = Command::new("node").arg("--version").stdin(Stdio::null()).output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("`node` is not on PATH or does not run".into());
    }
    None
}

/// Written straight to stderr, past the test harness's capture, so that the
/// browser's version shows in a plain `cargo test`.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Waits for the child up to `timeout`; past it asks it to stop (SIGTERM,
/// so playwright closes the browser it started), then kills it.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    if let Some(status) = wait_child(child, timeout) {
        return Some(status);
    }
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    if wait_child(child, Duration::from_secs(5)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

/// Runs `tests/browser/<script>` with `envs` (plus the browser and the step
/// bound), bounded by [`NODE_DEADLINE`], and returns the JSON line it
/// printed last; panics, with its output (`secrets` and the API key
/// replaced), unless it succeeded with `"ok":true`.
fn run_node(script: &str, envs: &[(&str, String)], secrets: &[&str]) -> Value {
    let mut command = Command::new("node");
    command
        .arg(browser_dir().join(script))
        .current_dir(browser_dir())
        .env("REALTIME_E2E_CHROMIUM", chromium_path())
        .env("REALTIME_E2E_WAIT_MS", STEP_WAIT_MS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn node tests/browser/{script}: {e}"));
    let (stdout, stderr) = (Buf::default(), Buf::default());
    let readers = [
        drain(child.stdout.take().expect("node stdout"), stdout.clone()),
        drain(child.stderr.take().expect("node stderr"), stderr.clone()),
    ];
    let status = wait_bounded(&mut child, NODE_DEADLINE);
    // The readers end at EOF; bounded, as a straggling browser process could
    // hold the pipes open.
    let read_by = Instant::now() + Duration::from_secs(5);
    while !readers.iter().all(|r| r.is_finished()) && Instant::now() < read_by {
        thread::sleep(Duration::from_millis(20));
    }

    // The script redacts secrets itself; this is the second belt.
    let clean = |buf: &Buf| {
        let text = buf.lock().unwrap().replace(API_KEY, "<api key>");
        secrets.iter().fold(text, |text, secret| text.replace(secret, "<secret>"))
    };
    let (stdout, stderr) = (clean(&stdout), clean(&stderr));
    let dump = format!("--- {script} stdout ---\n{stdout}\n--- {script} stderr ---\n{stderr}\n--- end ---");

    let status = status.unwrap_or_else(|| panic!("{script} did not finish within {NODE_DEADLINE:?}\n{dump}"));
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{'));
    let result: Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{script} printed no JSON result ({status})\n{dump}"));
    assert!(status.success(), "{script} failed ({status}): {}\n{dump}", result["error"]);
    assert_eq!(result["ok"], true, "{dump}");
    result
}

#[test]
#[cfg_attr(no_browser, ignore = "needs node, Chromium and `npm ci --prefix tests/browser`")]
fn browser_gets_events_published_with_axios_and_foreign_origin_is_refused() {
    if let Some(reason) = missing_prerequisite() {
        panic!("the browser test cannot run: {reason}");
    }

    // The page's origin must be known before the server starts: it goes into
    // ALLOWED_ORIGINS. The foreign origin differs only in its port.
    let page_port = free_port();
    let foreign_port = free_port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let s = server().env("ALLOWED_ORIGINS", &page_origin).env("API_KEY", API_KEY).start();
    let user_id = "browser-user-7";
    let token = token(SECRET, user_id, "seller");

    let started = Instant::now();
    let result = run_node(
        "e2e.mjs",
        &[
            ("REALTIME_E2E_SERVER_PORT", s.port.to_string()),
            ("REALTIME_E2E_PAGE_PORT", page_port.to_string()),
            ("REALTIME_E2E_FOREIGN_PORT", foreign_port.to_string()),
            ("REALTIME_E2E_TOKEN", token.clone()),
            ("REALTIME_E2E_USER_ID", user_id.to_owned()),
            ("REALTIME_E2E_API_KEY", API_KEY.to_owned()),
        ],
        &[&token],
    );
    let elapsed = started.elapsed();

    // The page got both events, with the ids the API handed out.
    let events = result["events"].as_array().unwrap_or_else(|| panic!("no events in {result}"));
    assert_eq!(events.len(), 2, "{result}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["order_update", "notification"], "{result}");
    assert_eq!(events[0]["room"], "orders", "{result}");
    assert_eq!(events[1]["userId"], user_id, "{result}");
    assert!(events.iter().all(|e| e["id"].as_str().is_some_and(|id| !id.is_empty())), "{result}");
    assert_eq!(result["shown"], 2, "the page shows both events: {result}");

    // The unlisted origin: the browser saw the socket fail, the server said 403.
    assert_eq!(result["foreign"]["origin"], format!("http://127.0.0.1:{foreign_port}"), "{result}");
    assert_eq!(result["foreign"]["closeCode"], 1006, "{result}");
    assert_eq!(result["foreign"]["handshakeStatus"], 403, "{result}");

    // The browser is gone, and so are its connections.
    s.wait_connections(0);
    say(&format!(
        "browser end-to-end test: passed in {:.1} s (Chromium {})",
        elapsed.as_secs_f64(),
        result["browser"].as_str().unwrap_or("?")
    ));
}

/// Where the operator page's test leaves its screenshot.
fn admin_screenshot() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("admin-page.png")
}

#[test]
#[cfg_attr(no_browser, ignore = "needs node, Chromium and `npm ci --prefix tests/browser`")]
fn operator_page_shows_connections_publishes_and_disconnects() {
    if let Some(reason) = missing_prerequisite() {
        panic!("the browser test cannot run: {reason}");
    }
    let s = server().env("API_KEY", API_KEY).start();
    let clients: Vec<(String, String)> = (0..3)
        .map(|i| {
            let user = format!("operator-client-{i}");
            let token = token(SECRET, &user, "seller");
            (user, token)
        })
        .collect();
    let listed: Vec<Value> =
        clients.iter().map(|(user, token)| serde_json::json!({"userId": user, "token": token})).collect();
    let screenshot = admin_screenshot();
    let _ = std::fs::remove_file(&screenshot);
    let tokens: Vec<&str> = clients.iter().map(|(_, token)| token.as_str()).collect();
    let result = run_node(
        "admin.mjs",
        &[
            ("REALTIME_E2E_SERVER_PORT", s.port.to_string()),
            ("REALTIME_E2E_API_KEY", API_KEY.to_owned()),
            ("REALTIME_E2E_CLIENTS", Value::from(listed).to_string()),
            ("REALTIME_E2E_SCREENSHOT", screenshot.display().to_string()),
        ],
        &tokens,
    );
    assert_eq!(result["close"]["code"], 4003, "{result}");
    assert_eq!(result["disconnected"], clients[0].0, "{result}");
    assert_eq!(result["shown"]["total"], "2", "the page shows the two clients left: {result}");
    assert_eq!(result["shown"]["shards"], 2, "{result}");
    let png = std::fs::read(&screenshot).unwrap_or_else(|e| panic!("{}: {e}", screenshot.display()));
    assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", screenshot.display());
    // The key went only in headers: no log line holds it.
    s.wait_connections(0);
    assert!(!s.stderr().contains(API_KEY) && !s.stdout().contains(API_KEY), "{}", s.output_dump());
    say(&format!("operator page: {result}; screenshot {}", screenshot.display()));
}
