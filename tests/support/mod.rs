//! Shared helpers for the black-box integration tests.
//!
//! Everything here talks to the real `realtime` binary (started as a child
//! process on a free loopback port) over real sockets. Every wait is bounded by
//! a deadline; the server guard kills its child on drop and, when a test is
//! panicking, prints what the child wrote to stdout and stderr.
#![allow(dead_code)]
// The no-locks rule (clippy.toml) is for the server's data path, not for test plumbing.
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response as WsResponse;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// The HS256 secret the tests give the server (and sign tokens with).
pub const SECRET: &str = "integration-test-secret-5b1f0c2e9d7a4f63";

/// How long to wait for `/health` to answer 200 after start.
pub const READY_DEADLINE: Duration = Duration::from_secs(15);

/// Generic bound for "something should happen soon".
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Every variable of SPEC §1; removed from the inherited environment so the
/// machine running the tests cannot influence them.
pub const CONFIG_VARS: &[&str] = &[
    "JWT_SECRET",
    "REDIS_URL",
    "REDIS_PREFIX",
    "PORT",
    "BIND_ADDR",
    "ALLOWED_ORIGINS",
    "API_KEY",
    "WS_READ_TIMEOUT",
    "WS_WRITE_TIMEOUT",
    "WS_PING_INTERVAL",
    "SHARDS",
    "MAX_CONNECTIONS",
    "MAX_MESSAGE_SIZE",
    "SEND_QUEUE_BYTES",
    "SHUTDOWN_TIMEOUT",
    "LOG_FORMAT",
    "RUST_LOG",
];

/// The roles of SPEC §3 with the rooms `connected` must list, in table order.
pub const ROLES: &[(&str, &[&str])] = &[
    ("admin", &["*"]),
    ("seller", &["orders", "inventory", "products", "notifications"]),
    ("client", &["notifications", "cart", "myOrders"]),
    ("delivery", &["deliveries", "orders"]),
];

pub fn rooms_of(role: &str) -> &'static [&'static str] {
    ROLES
        .iter()
        .find(|(r, _)| *r == role)
        .map(|(_, rooms)| *rooms)
        .unwrap_or_else(|| panic!("unknown role {role}"))
}

// ---------------------------------------------------------------------------
// Ports, temp dirs, time
// ---------------------------------------------------------------------------

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, drop it),
/// never the same one twice in this test binary: the server binds with
/// SO_REUSEPORT, so two servers given the same port would share it.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty directory removed on drop. Servers run in one so that no
/// `.env` from the crate root (or anywhere else) is read.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("realtime-it-{}-{}-{}", std::process::id(), n, nanos));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.path.join(name), contents).expect("write file in temp dir");
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Child process with captured output
// ---------------------------------------------------------------------------

/// A child's output, as far as it has been read.
pub type Buf = Arc<Mutex<String>>;

/// Copies `r` into `buf` line by line on its own thread, until EOF.
pub fn drain<R: Read + Send + 'static>(r: R, buf: Buf) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&line);
                    buf.lock().unwrap().push_str(&s);
                }
            }
        }
    })
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Builder for a `realtime` child process.
///
/// Defaults: a free `PORT`, `SHARDS=2`, `BIND_ADDR=127.0.0.1`,
/// `JWT_SECRET=SECRET`, `RUST_LOG=info`, every other config variable removed,
/// and a fresh temp dir as working directory.
#[derive(Clone)]
pub struct Builder {
    env: Vec<(String, String)>,
    unset: Vec<String>,
    args: Vec<String>,
    cwd: Option<PathBuf>,
    port: Option<u16>,
    set_port_env: bool,
}

pub fn server() -> Builder {
    Builder {
        env: vec![
            ("SHARDS".into(), "2".into()),
            ("BIND_ADDR".into(), "127.0.0.1".into()),
            ("JWT_SECRET".into(), SECRET.into()),
            ("RUST_LOG".into(), "info".into()),
        ],
        unset: Vec::new(),
        args: Vec::new(),
        cwd: None,
        port: None,
        set_port_env: true,
    }
}

impl Builder {
    /// Set (or replace) an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.unset.retain(|key| key != k);
        self.env.push((k.into(), v.into()));
        self
    }

    /// Make sure the variable is not in the child's environment.
    pub fn unset(mut self, k: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        if k == "PORT" {
            self.set_port_env = false;
        }
        self.unset.push(k.into());
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }

    /// Run in this directory instead of a fresh temp dir.
    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// The port the tests will talk to. With `PORT` not otherwise set, it is
    /// also passed as `PORT`.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Do not pass `PORT` (e.g. when it comes from `.env` or a flag); the
    /// port the tests talk to must then be given with [`Builder::port`].
    pub fn no_port_env(mut self) -> Self {
        self.set_port_env = false;
        self
    }

    /// Spawn the process without waiting for anything.
    pub fn spawn(self) -> Server {
        let port = self.port.unwrap_or_else(free_port);
        let dir = if self.cwd.is_none() { Some(TempDir::new()) } else { None };
        let cwd = self.cwd.clone().unwrap_or_else(|| dir.as_ref().unwrap().path().to_path_buf());

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_realtime"));
        for v in CONFIG_VARS {
            cmd.env_remove(v);
        }
        let explicit_port = self.env.iter().any(|(k, _)| k == "PORT");
        if self.set_port_env && !explicit_port {
            cmd.env("PORT", port.to_string());
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for k in &self.unset {
            cmd.env_remove(k);
        }
        cmd.args(&self.args)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn realtime binary");
        let stdout: Buf = Arc::default();
        let stderr: Buf = Arc::default();
        let t1 = drain(child.stdout.take().unwrap(), stdout.clone());
        let t2 = drain(child.stderr.take().unwrap(), stderr.clone());
        Server {
            child,
            port,
            stdout,
            stderr,
            readers: vec![t1, t2],
            exit: None,
            _dir: dir,
            describe: format!("env={:?} unset={:?} args={:?}", self.env, self.unset, self.args),
        }
    }

    /// Spawn and wait until `GET /health` answers 200 (15 s deadline).
    ///
    /// When the port was picked here (not given by the test) and another
    /// process took it between the pick and the server's bind, the server is
    /// started again on a new port (at most 3 tries).
    pub fn start(self) -> Server {
        let own_port = self.port.is_none() && self.set_port_env && !self.env.iter().any(|(k, _)| k == "PORT");
        for _ in 0..3 {
            let mut s = self.clone().spawn();
            if !own_port {
                s.wait_healthy();
                return s;
            }
            if s.wait_healthy_or_exit() {
                return s;
            }
            s.join_readers();
            if !s.stderr().contains("in use") {
                s.wait_healthy(); // panics with the output
            }
        }
        panic!("server could not bind a free port in 3 tries");
    }

    /// Run to completion (e.g. a config error or the `token` subcommand),
    /// bounded by `timeout`; panics (with the output) if it does not exit.
    pub fn run(self, timeout: Duration) -> Finished {
        let mut s = self.spawn();
        let status = s
            .wait_exit(timeout)
            .unwrap_or_else(|| panic!("process did not exit within {:?}\n{}", timeout, s.output_dump()));
        s.join_readers();
        Finished { status, stdout: s.stdout(), stderr: s.stderr() }
    }
}

/// A process that ran to completion.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        non_empty_lines(&self.stderr)
    }

    pub fn stdout_lines(&self) -> Vec<&str> {
        non_empty_lines(&self.stdout)
    }
}

pub fn non_empty_lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Guard around a running `realtime` child. Kills it on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    stdout: Buf,
    stderr: Buf,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
    _dir: Option<TempDir>,
    describe: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn output_dump(&self) -> String {
        format!(
            "--- realtime ({}) port {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
            self.describe,
            self.port,
            self.stdout(),
            self.stderr()
        )
    }

    /// Exit status if the process has ended (non-blocking).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st);
            }
        }
        self.exit
    }

    /// Poll until the process exits or `timeout` passes.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = wait_child(&mut self.child, timeout);
        }
        self.exit
    }

    /// Wait (bounded) for the output pipes to reach EOF after exit.
    fn join_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.readers.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// true once `/health` answers 200; false if the process exits first.
    /// Panics when neither happens within 15 s.
    fn wait_healthy_or_exit(&mut self) -> bool {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if self.try_exit().is_some() {
                return false;
            }
            if let Ok(r) = try_http(self.port, "GET", "/health", &[], None) {
                if r.status == 200 {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                panic!("/health did not answer 200 within {:?}\n{}", READY_DEADLINE, self.output_dump());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(st) = self.try_exit() {
                self.join_readers();
                panic!("server exited ({st}) before /health answered 200\n{}", self.output_dump());
            }
            if let Ok(r) = try_http(self.port, "GET", "/health", &[], None) {
                if r.status == 200 {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!("/health did not answer 200 within {:?}\n{}", READY_DEADLINE, self.output_dump());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send a signal (e.g. `libc::SIGTERM`) to the child.
    pub fn signal(&self, sig: libc::c_int) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.child.id());
    }

    /// Poll stdout until `pred` holds; returns the stdout seen.
    pub fn wait_stdout(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        wait_buf(&self.stdout, timeout, pred)
            .unwrap_or_else(|| panic!("stdout condition not met\n{}", self.output_dump()))
    }

    /// Poll stderr until `pred` holds; returns the stderr seen.
    pub fn wait_stderr(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        wait_buf(&self.stderr, timeout, pred)
            .unwrap_or_else(|| panic!("stderr condition not met\n{}", self.output_dump()))
    }

    // ---- HTTP conveniences -------------------------------------------------

    pub fn get(&self, path: &str) -> HttpResponse {
        http(self.port, "GET", path, &[], None)
    }

    pub fn health(&self) -> Value {
        let r = self.get("/health");
        assert_eq!(r.status, 200, "/health: {r:?}\n{}", self.output_dump());
        r.json()
    }

    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {r:?}\n{}", self.output_dump());
        r.body
    }

    /// Poll `/health` until `connections` equals `n` (bounded).
    pub fn wait_connections(&self, n: u64) -> Value {
        let deadline = Instant::now() + DEFAULT_DEADLINE;
        loop {
            let h = self.health();
            if h["connections"].as_u64() == Some(n) {
                return h;
            }
            if Instant::now() >= deadline {
                panic!(
                    "/health connections stayed {} (wanted {n})\n{}",
                    h["connections"],
                    self.output_dump()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    // ---- WebSocket conveniences ---------------------------------------------

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?token={}", self.port, token)
    }

    /// Connect with `?token=` and return the socket with `connected` consumed.
    pub fn connect(&self, user_id: &str, role: &str) -> (Ws, Value) {
        let token = token(SECRET, user_id, role);
        self.connect_token(&token)
    }

    pub fn connect_token(&self, token: &str) -> (Ws, Value) {
        let mut ws = ws_connect(&self.ws_url(token))
            .unwrap_or_else(|e| panic!("ws connect failed: {e}\n{}", self.output_dump()));
        let hello = next_json(&mut ws, DEFAULT_DEADLINE);
        assert_eq!(hello["type"], "connected", "first message: {hello}");
        (ws, hello)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            self.join_readers();
            eprintln!("{}", self.output_dump());
        }
    }
}

fn wait_buf(buf: &Buf, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = buf.lock().unwrap().clone();
        if pred(&s) {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 over std TcpStream
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Asserts the body is `{"error": "<non-empty string>"}` and returns the message.
    pub fn error_message(&self) -> String {
        let v = self.json();
        let msg =
            v["error"].as_str().unwrap_or_else(|| panic!("no string \"error\" in body {:?}", self.body));
        assert!(!msg.is_empty(), "empty error message in {:?}", self.body);
        msg.to_string()
    }
}

fn connect_tcp(port: u16) -> std::io::Result<TcpStream> {
    let s =
        TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(DEFAULT_DEADLINE))?;
    s.set_write_timeout(Some(DEFAULT_DEADLINE))?;
    s.set_nodelay(true)?;
    Ok(s)
}

pub fn build_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    close: bool,
) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    if let Some(b) = body {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    } else if method == "POST" || method == "PUT" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    req
}

/// One HTTP request with `Connection: close`.
pub fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let mut s = connect_tcp(port)?;
    s.write_all(build_request(port, method, path, headers, body, true).as_bytes())?;
    let mut r = BufReader::new(s);
    read_response(&mut r, method == "HEAD")
}

pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    try_http(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("HTTP {method} {path} on port {port} failed: {e}"))
}

/// A persistent HTTP/1.1 connection (keep-alive).
pub struct HttpConn {
    port: u16,
    reader: BufReader<TcpStream>,
}

impl HttpConn {
    pub fn open(port: u16) -> HttpConn {
        let s = connect_tcp(port).expect("connect for keep-alive");
        HttpConn { port, reader: BufReader::new(s) }
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        let req = build_request(self.port, method, path, headers, body, false);
        self.reader.get_mut().write_all(req.as_bytes()).expect("write request");
        read_response(&mut self.reader, method == "HEAD").expect("read response")
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "connection closed before the response"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Read exactly one response (Content-Length, chunked, or until EOF).
pub fn read_response(r: &mut impl BufRead, head: bool) -> std::io::Result<HttpResponse> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        // no body
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let size_line = read_line(r)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // trailers
                loop {
                    if read_line(r)?.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            read_line(r)?;
        }
    } else if let Some(len) = get("content-length") {
        let len: usize =
            len.parse().map_err(|_| std::io::Error::other(format!("bad content-length {len:?}")))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// HS256 token for `userId` + `role`, valid for an hour.
pub fn token(secret: &str, user_id: &str, role: &str) -> String {
    mint(secret, &json!({"userId": user_id, "role": role, "exp": now_secs() + 3600}))
}

/// HS256 token with arbitrary claims.
pub fn mint(secret: &str, claims: &Value) -> String {
    mint_alg(Algorithm::HS256, secret, claims)
}

pub fn mint_alg(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("encode JWT")
}

/// An unsigned token with `"alg":"none"`.
pub fn unsigned_token(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    format!("{}.{}.", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()))
}

/// base64url without padding.
pub fn b64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// WebSocket client (sync tungstenite over a std TcpStream)
// ---------------------------------------------------------------------------

pub type Ws = WebSocket<TcpStream>;

/// How long a single blocking read waits before the deadline is re-checked.
const POLL_READ: Duration = Duration::from_millis(200);

/// Connect with a URL (`ws://127.0.0.1:PORT/ws?...`).
pub fn ws_connect(url: &str) -> Result<Ws, tungstenite::Error> {
    ws_connect_with(url, &[]).map(|(ws, _)| ws)
}

/// Connect with extra request headers; returns the socket and the 101 response.
/// A rejected handshake is `Err(tungstenite::Error::Http(response))`.
pub fn ws_connect_with(url: &str, headers: &[(&str, &str)]) -> Result<(Ws, WsResponse), tungstenite::Error> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    let host = req.uri().authority().expect("url with authority").as_str().to_string();
    let stream = TcpStream::connect(host.as_str()).map_err(tungstenite::Error::Io)?;
    stream.set_nodelay(true).map_err(tungstenite::Error::Io)?;
    stream.set_read_timeout(Some(DEFAULT_DEADLINE)).map_err(tungstenite::Error::Io)?;
    stream.set_write_timeout(Some(DEFAULT_DEADLINE)).map_err(tungstenite::Error::Io)?;
    match tungstenite::client::client(req, stream) {
        Ok((ws, resp)) => {
            ws.get_ref().set_read_timeout(Some(POLL_READ)).map_err(tungstenite::Error::Io)?;
            Ok((ws, resp))
        }
        Err(HandshakeError::Failure(e)) => Err(e),
        Err(HandshakeError::Interrupted(_)) => {
            Err(tungstenite::Error::Io(std::io::Error::new(ErrorKind::TimedOut, "handshake timed out")))
        }
    }
}

/// Expect the handshake to be refused; returns (status, body).
pub fn ws_reject(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match ws_connect_with(url, headers) {
        Ok((_, resp)) => {
            panic!("handshake to {url} with {headers:?} unexpectedly succeeded ({})", resp.status())
        }
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body =
                resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            (status, body)
        }
        Err(e) => panic!("handshake to {url} failed without an HTTP answer: {e}"),
    }
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::WouldBlock || io.kind() == ErrorKind::TimedOut)
}

/// What a read produced, for the bounded readers below.
#[derive(Debug)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Pong,
    /// A close frame with its code (`None`: a close frame without a code).
    Close(Option<u16>),
    /// The connection ended without a close frame (EOF / reset).
    Eof(String),
}

/// The next event within `timeout`, or `None` if nothing came.
pub fn next_event(ws: &mut Ws, timeout: Duration) -> Option<Event> {
    let deadline = Instant::now() + timeout;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(Event::Text(t.as_str().to_string())),
            Ok(Message::Binary(b)) => return Some(Event::Binary(b.to_vec())),
            Ok(Message::Ping(_)) => {
                // the pong is queued by tungstenite; push it out now
                let _ = ws.flush();
                return Some(Event::Ping);
            }
            Ok(Message::Pong(_)) => return Some(Event::Pong),
            Ok(Message::Close(f)) => {
                let _ = ws.flush();
                return Some(Event::Close(f.map(|f| u16::from(f.code))));
            }
            Ok(Message::Frame(_)) => continue,
            Err(e) if is_timeout(&e) => {
                if Instant::now() >= deadline {
                    return None;
                }
            }
            Err(e) => return Some(Event::Eof(e.to_string())),
        }
    }
}

/// The next text message parsed as JSON, skipping pings/pongs; panics on
/// timeout, close, or anything else.
pub fn next_json(ws: &mut Ws, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(ws, left) {
            Some(Event::Text(t)) => {
                return serde_json::from_str(&t)
                    .unwrap_or_else(|e| panic!("text frame is not JSON ({e}): {t:?}"))
            }
            Some(Event::Ping) | Some(Event::Pong) => continue,
            Some(other) => panic!("expected a JSON text message, got {other:?}"),
            None => panic!("no message within {timeout:?}"),
        }
    }
}

/// Read until the connection closes (skipping anything else); returns the
/// close code (`Some(code)`), `None` for a close frame without code or a
/// plain EOF. Panics if nothing closes within `timeout`.
pub fn expect_close(ws: &mut Ws, timeout: Duration) -> Event {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(ws, left) {
            Some(ev @ Event::Close(_)) | Some(ev @ Event::Eof(_)) => return ev,
            Some(_) => continue,
            None => panic!("connection not closed within {timeout:?}"),
        }
    }
}

pub fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send text");
}

pub fn send_json(ws: &mut Ws, v: &Value) {
    send_text(ws, &v.to_string());
}

/// Send `{"type":"ping"}` and expect `{"type":"pong"}` as the next message.
pub fn assert_ping_pong(ws: &mut Ws) {
    send_json(ws, &json!({"type": "ping"}));
    let v = next_json(ws, DEFAULT_DEADLINE);
    assert_eq!(v, json!({"type": "pong"}), "answer to ping");
}

/// Close politely (best effort).
pub fn close(mut ws: Ws) {
    let _ = ws.close(None);
    let _ = ws.flush();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => continue,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break,
        }
    }
}

pub fn close_code(code: u16) -> CloseCode {
    CloseCode::from(code)
}

/// Checks `connected` per SPEC §2 for `user_id`/`role`.
pub fn assert_connected(v: &Value, user_id: &str, role: &str) {
    assert_eq!(v["type"], "connected", "{v}");
    assert_eq!(v["payload"]["userId"], json!(user_id), "userId in {v}");
    assert_eq!(v["payload"]["role"], json!(role), "role in {v}");
    assert_eq!(v["payload"]["rooms"], json!(rooms_of(role)), "rooms in {v}");
    let ts = v["timestamp"].as_str().unwrap_or_else(|| panic!("timestamp is not a string in {v}"));
    assert!(is_rfc3339_millis_utc(ts), "timestamp {ts:?} in {v}");
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`
pub fn is_rfc3339_millis_utc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 24 {
        return false;
    }
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    digits.iter().all(|&i| b[i].is_ascii_digit())
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
}

// ---------------------------------------------------------------------------
// Raw WebSocket client (hand-made handshake, hand-parsed frames)
// ---------------------------------------------------------------------------

/// A WebSocket client that does the handshake by hand and then only reads:
/// it never answers pings and never writes anything.
pub struct RawWs {
    reader: BufReader<TcpStream>,
}

/// A frame as the server sent it.
#[derive(Debug)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub enum RawRead {
    Frame(RawFrame),
    Eof,
    Timeout,
}

impl RawWs {
    pub fn connect(port: u16, token: &str) -> RawWs {
        let s = connect_tcp(port).expect("raw connect");
        let req = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut reader = BufReader::new(s);
        reader.get_mut().write_all(req.as_bytes()).expect("write handshake");
        let status = read_line(&mut reader).expect("handshake status line");
        assert!(status.starts_with("HTTP/1.1 101"), "raw handshake answered {status:?}");
        let mut accept = None;
        loop {
            let line = read_line(&mut reader).expect("handshake header");
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("sec-websocket-accept") {
                    accept = Some(v.trim().to_string());
                }
            }
        }
        // RFC 6455's example key and accept value.
        assert_eq!(accept.as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "Sec-WebSocket-Accept");
        reader.get_ref().set_read_timeout(Some(POLL_READ)).expect("set read timeout");
        RawWs { reader }
    }

    /// Read one frame, waiting at most until `deadline`.
    pub fn read_frame(&mut self, deadline: Instant) -> RawRead {
        // Wait for the first byte, polling so the deadline is honoured.
        let mut b0 = [0u8; 1];
        loop {
            match self.reader.read(&mut b0) {
                Ok(0) => return RawRead::Eof,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    if Instant::now() >= deadline {
                        return RawRead::Timeout;
                    }
                }
                Err(_) => return RawRead::Eof,
            }
        }
        // The rest of a frame follows quickly; allow a generous bound.
        self.reader.get_ref().set_read_timeout(Some(DEFAULT_DEADLINE)).expect("set read timeout");
        let rest = (|| -> std::io::Result<RawFrame> {
            let mut b1 = [0u8; 1];
            self.reader.read_exact(&mut b1)?;
            let masked = b1[0] & 0x80 != 0;
            let mut len = (b1[0] & 0x7f) as u64;
            if len == 126 {
                let mut l = [0u8; 2];
                self.reader.read_exact(&mut l)?;
                len = u16::from_be_bytes(l) as u64;
            } else if len == 127 {
                let mut l = [0u8; 8];
                self.reader.read_exact(&mut l)?;
                len = u64::from_be_bytes(l);
            }
            let mut mask = [0u8; 4];
            if masked {
                self.reader.read_exact(&mut mask)?;
            }
            let mut payload = vec![0u8; len as usize];
            self.reader.read_exact(&mut payload)?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            Ok(RawFrame { fin: b0[0] & 0x80 != 0, opcode: b0[0] & 0x0f, payload })
        })();
        let _ = self.reader.get_ref().set_read_timeout(Some(POLL_READ));
        match rest {
            Ok(f) => RawRead::Frame(f),
            Err(_) => RawRead::Eof,
        }
    }

    pub fn shutdown(&self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Both);
    }
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// Every sample of an OpenMetrics exposition, parsed by a real parser (which
/// also rejects a malformed exposition), keyed `name{label="value",...}` with
/// the labels sorted; counters under `name_total`, histograms as
/// `name_count` and `name_sum`.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    use openmetrics_parser::OpenMetricsValue;
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics ({e:?}):\n{text}"));
    let mut out = HashMap::new();
    for (name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let labelset = sample.get_labelset().expect("a sample's labels match its family");
            let mut labels: Vec<_> = labelset.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            labels.sort();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let mut put = |suffix: &str, v: f64| out.insert(format!("{name}{suffix}{labels}"), v);
            match &sample.value {
                OpenMetricsValue::Counter(c) => put("_total", c.value.as_f64()),
                OpenMetricsValue::Gauge(v) | OpenMetricsValue::Unknown(v) => put("", v.as_f64()),
                OpenMetricsValue::Histogram(h) => {
                    put("_count", h.count.unwrap_or(0) as f64);
                    put("_sum", h.sum.as_ref().map_or(0.0, |s| s.as_f64()))
                }
                other => panic!("unexpected metric kind for {name}: {other:?}"),
            };
        }
    }
    out
}

/// Sum of every sample of metric `name` (any labels).
pub fn metric_sum(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples.iter().filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{"))).map(|(_, v)| v).sum()
}

/// Decodes base64url (padding optional); `None` on a bad character.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// The claims of a JWT, without verifying it.
pub fn unverified_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT with a payload part");
    let bytes = b64url_decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

// ---------------------------------------------------------------------------
// Rooms and events on the WebSocket side
// ---------------------------------------------------------------------------

/// Sends `subscribe` for `room` and returns the answer.
pub fn subscribe_answer(ws: &mut Ws, room: &str) -> Value {
    send_json(ws, &json!({"type": "subscribe", "room": room}));
    next_json(ws, DEFAULT_DEADLINE)
}

/// Subscribes and asserts `{"type":"subscribed","room":<room>}`.
pub fn subscribe(ws: &mut Ws, room: &str) {
    let v = subscribe_answer(ws, room);
    assert_eq!(v, json!({"type": "subscribed", "room": room}), "answer to subscribe {room:?}");
}

/// Sends `unsubscribe` for `room` and returns the answer.
pub fn unsubscribe_answer(ws: &mut Ws, room: &str) -> Value {
    send_json(ws, &json!({"type": "unsubscribe", "room": room}));
    next_json(ws, DEFAULT_DEADLINE)
}

/// Unsubscribes and asserts `{"type":"unsubscribed","room":<room>}`.
pub fn unsubscribe(ws: &mut Ws, room: &str) {
    let v = unsubscribe_answer(ws, room);
    assert_eq!(v, json!({"type": "unsubscribed", "room": room}), "answer to unsubscribe {room:?}");
}

/// Asserts `v` is `{"type":"error","payload":{"code":<code>,"message":<non-empty>}}`.
pub fn assert_error(v: &Value, code: &str, what: &str) {
    assert_eq!(v["type"], "error", "{what}: {v}");
    assert_eq!(v["payload"]["code"], code, "{what}: {v}");
    assert!(v["payload"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: message in {v}");
}

/// The next message (pings skipped) must be the event with this `id`.
pub fn expect_event(ws: &mut Ws, id: &str) -> Value {
    let v = next_json(ws, DEFAULT_DEADLINE);
    assert_eq!(v["id"], id, "expected the event {id}, got {v}");
    v
}

/// Reads messages (pings skipped) until the one whose `id` is `marker`;
/// returns the messages that came before it. Panics when the marker does not
/// arrive within the default deadline.
pub fn read_until_marker(ws: &mut Ws, marker: &str) -> Vec<Value> {
    let deadline = Instant::now() + DEFAULT_DEADLINE;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(ws, left) {
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t)
                    .unwrap_or_else(|e| panic!("text frame is not JSON ({e}): {t:?}"));
                if v["id"] == marker {
                    return before;
                }
                before.push(v);
            }
            Some(Event::Ping) | Some(Event::Pong) => continue,
            Some(other) => panic!("waiting for marker {marker}: got {other:?} after {before:?}"),
            None => {
                panic!("marker {marker} not received within {DEFAULT_DEADLINE:?}; got before it: {before:?}")
            }
        }
    }
}

/// The ids of `events`, in order.
pub fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|v| v["id"].as_str().unwrap_or("<no id>").to_string()).collect()
}

/// Marker proof: the next message is the marker, nothing came before it.
pub fn expect_only_marker(ws: &mut Ws, marker: &str, who: &str) {
    let before = read_until_marker(ws, marker);
    assert!(before.is_empty(), "{who}: received before the marker: {before:?}");
}

/// A bounded read that expects nothing but pings for `dur`. Use it only
/// after a marker proof (something published later did arrive), never as
/// the only evidence that something does not arrive.
pub fn assert_no_message_within(ws: &mut Ws, dur: Duration) {
    let deadline = Instant::now() + dur;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match next_event(ws, left) {
            None => return,
            Some(Event::Ping) | Some(Event::Pong) => continue,
            Some(other) => panic!("expected no message within {dur:?}, got {other:?}"),
        }
    }
}

/// A WebSocket client over an already connected stream (e.g. one made with
/// socket2 to set buffer sizes); `url` gives the path and host.
pub fn ws_connect_over(url: &str, stream: TcpStream) -> Result<Ws, tungstenite::Error> {
    let req = url.into_client_request()?;
    stream.set_nodelay(true).map_err(tungstenite::Error::Io)?;
    stream.set_read_timeout(Some(DEFAULT_DEADLINE)).map_err(tungstenite::Error::Io)?;
    stream.set_write_timeout(Some(DEFAULT_DEADLINE)).map_err(tungstenite::Error::Io)?;
    match tungstenite::client::client(req, stream) {
        Ok((ws, _)) => {
            ws.get_ref().set_read_timeout(Some(POLL_READ)).map_err(tungstenite::Error::Io)?;
            Ok(ws)
        }
        Err(HandshakeError::Failure(e)) => Err(e),
        Err(HandshakeError::Interrupted(_)) => {
            Err(tungstenite::Error::Io(std::io::Error::new(ErrorKind::TimedOut, "handshake timed out")))
        }
    }
}

/// A TCP connection to `127.0.0.1:port` from the local address `from`
/// (port 0), with an optional receive buffer size set before connecting.
pub fn tcp_from(from: &str, port: u16, recv_buffer: Option<usize>) -> TcpStream {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let local: std::net::SocketAddr = format!("{from}:0").parse().expect("local address");
    socket.bind(&SockAddr::from(local)).unwrap_or_else(|e| panic!("bind {local}: {e}"));
    let remote: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("remote address");
    socket.connect_timeout(&SockAddr::from(remote), Duration::from_secs(5)).expect("connect");
    socket.into()
}

// ---------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------

pub const SEND: &str = "/api/notifications/send";
pub const BROADCAST: &str = "/api/notifications/broadcast";

/// `POST path` with a JSON body (as text) and extra headers.
pub fn publish(port: u16, path: &str, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http(port, "POST", path, headers, Some(body))
}

/// Asserts a 202 `{"id":<non-empty string>,"status":"accepted"}` and returns the id.
pub fn accepted_id(r: &HttpResponse, what: &str) -> String {
    assert_eq!(r.status, 202, "{what}: {r:?}");
    let v = r.json();
    assert_eq!(v["status"], "accepted", "{what}: {v}");
    let id = v["id"].as_str().unwrap_or_else(|| panic!("{what}: no string id in {v}"));
    assert!(!id.is_empty(), "{what}: empty id in {v}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{what}: unexpected keys in {v}");
    id.to_string()
}

/// A body for `broadcast` with a type that takes any payload.
pub fn room_event(room: &str, n: u64) -> Value {
    json!({"room": room, "type": "test_event", "payload": {"n": n}})
}

impl Server {
    /// `POST path` with a JSON body, no extra headers.
    pub fn publish(&self, path: &str, body: &Value) -> HttpResponse {
        publish(self.port, path, &body.to_string(), &[])
    }

    /// Publishes and asserts 202; returns the event id.
    pub fn publish_ok(&self, path: &str, body: &Value) -> String {
        let r = self.publish(path, body);
        if r.status != 202 {
            panic!("POST {path} {body} answered {r:?}\n{}", self.output_dump());
        }
        accepted_id(&r, &format!("POST {path} {body}"))
    }

    pub fn broadcast(&self, body: Value) -> String {
        self.publish_ok(BROADCAST, &body)
    }

    pub fn send(&self, body: Value) -> String {
        self.publish_ok(SEND, &body)
    }

    /// Broadcasts a `marker` event to `all` (every connection gets it).
    pub fn marker(&self) -> String {
        self.broadcast(json!({"room": "all", "type": "marker", "payload": {}}))
    }

    /// Connects and subscribes to every room in `rooms`.
    pub fn subscriber(&self, user_id: &str, role: &str, rooms: &[&str]) -> Ws {
        let (mut ws, _) = self.connect(user_id, role);
        for room in rooms {
            subscribe(&mut ws, room);
        }
        ws
    }

    /// Every sample of `/metrics`.
    pub fn metric_samples(&self) -> HashMap<String, f64> {
        parse_metrics(&self.metrics())
    }

    /// Sum of every sample of metric `name`.
    pub fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.metric_samples(), name)
    }

    /// Polls `/metrics` until `pred(sum of name)` holds (bounded); returns it.
    pub fn wait_metric(&self, name: &str, timeout: Duration, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric(name);
            if pred(v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("metric {name} stayed {v} for {timeout:?}\n{}", self.output_dump());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `realtime_connections{shard="0"}` and `{shard="1"}`.
    pub fn shard_gauges(&self) -> (f64, f64) {
        let m = self.metric_samples();
        let g = |i: u32| m.get(&format!("realtime_connections{{shard=\"{i}\"}}")).copied().unwrap_or(0.0);
        (g(0), g(1))
    }

    /// Opens connections with `open(i)` (at least `min`, at most 64) until
    /// both shards hold some of them. Counts through the shard gauges: the
    /// difference before and after, so other open connections do not count.
    pub fn connect_on_both_shards(&self, min: usize, mut open: impl FnMut(usize) -> Ws) -> Vec<Ws> {
        let before = self.shard_gauges();
        let base = self.health()["connections"].as_u64().expect("connections");
        let mut out = Vec::new();
        loop {
            while out.len() < min {
                out.push(open(out.len()));
            }
            self.wait_connections(base + out.len() as u64);
            let after = self.shard_gauges();
            let (a, b) = (after.0 - before.0, after.1 - before.1);
            if a > 0.0 && b > 0.0 {
                return out;
            }
            assert!(out.len() < 64, "{} connections all landed on one shard ({a}, {b})", out.len());
            out.push(open(out.len()));
        }
    }

    /// Polls `/health` until `field` equals `value` (bounded); returns it.
    pub fn wait_health(&self, field: &str, value: &Value, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.health();
            if &h[field] == value {
                return h;
            }
            if Instant::now() >= deadline {
                panic!(
                    "/health {field} stayed {} (wanted {value}) for {timeout:?}\n{}",
                    h[field],
                    self.output_dump()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------
// Redis: a real redis-server on a free port, and a raw RESP client
// ---------------------------------------------------------------------------

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A command as a RESP array of bulk strings.
pub fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one RESP value (RESP2 and the RESP3 types Redis 7 may send).
pub fn read_resp(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| std::io::Error::other("empty RESP line"))?;
    let num = || rest.parse::<i64>().map_err(|_| std::io::Error::other(format!("bad RESP line {line:?}")));
    Ok(match kind {
        "+" => Resp::Simple(rest.to_string()),
        "-" => Resp::Error(rest.to_string()),
        ":" => Resp::Int(num()?),
        "$" => {
            let n = num()?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Resp::Bulk(Some(buf))
            }
        }
        "*" | ">" => {
            let n = num()?;
            if n < 0 {
                Resp::Array(None)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_resp(r)?);
                }
                Resp::Array(Some(items))
            }
        }
        _ => return Err(std::io::Error::other(format!("unexpected RESP line {line:?}"))),
    })
}

fn redis_connect(port: u16, password: Option<&str>) -> std::io::Result<BufReader<TcpStream>> {
    let s = connect_tcp(port)?;
    let mut r = BufReader::new(s);
    if let Some(pw) = password {
        r.get_mut().write_all(&resp_command(&[b"AUTH", pw.as_bytes()]))?;
        match read_resp(&mut r)? {
            Resp::Simple(ok) if ok == "OK" => {}
            other => return Err(std::io::Error::other(format!("AUTH answered {other:?}"))),
        }
    }
    Ok(r)
}

/// A `redis-server` child on a free loopback port, without persistence.
/// Killed on drop; can be killed and started again on the same port.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    password: Option<String>,
    log: Buf,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_inner(None)
    }

    /// With `--requirepass password`.
    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::start_inner(Some(password.to_string()))
    }

    fn start_inner(password: Option<String>) -> RedisServer {
        for _ in 0..3 {
            let mut r = RedisServer {
                child: None,
                port: free_port(),
                password: password.clone(),
                log: Arc::default(),
            };
            if r.spawn_and_wait() {
                return r;
            }
        }
        panic!("redis-server could not start on a free port in 3 tries");
    }

    /// `redis://[:password@]127.0.0.1:port`
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Spawns on `self.port`; true once it answers, false if it exited first.
    fn spawn_and_wait(&mut self) -> bool {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child =
            cmd.spawn().unwrap_or_else(|e| panic!("cannot run redis-server (is it installed?): {e}"));
        drain(child.stdout.take().unwrap(), self.log.clone());
        drain(child.stderr.take().unwrap(), self.log.clone());
        self.child = Some(child);
        let deadline = Instant::now() + DEFAULT_DEADLINE;
        loop {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if self.ping() {
                return true;
            }
            if Instant::now() >= deadline {
                panic!("redis-server on port {} did not answer PING\n{}", self.port, self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut r) = redis_connect(self.port, None) else { return false };
        if r.get_mut().write_all(&resp_command(&[b"PING"])).is_err() {
            return false;
        }
        // PONG, or NOAUTH when a password is required: either way it is up.
        matches!(read_resp(&mut r), Ok(Resp::Simple(_)) | Ok(Resp::Error(_)))
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL and wait; the port is free afterwards.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart: redis-server is still running");
        let deadline = Instant::now() + DEFAULT_DEADLINE;
        // The port was ours a moment ago; retry briefly if the bind races.
        while !self.spawn_and_wait() {
            assert!(
                Instant::now() < deadline,
                "redis-server could not start again on {}\n{}",
                self.port,
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// One command on a fresh connection (authenticated when needed).
    pub fn command(&self, args: &[&[u8]]) -> Resp {
        let mut r = redis_connect(self.port, self.password.as_deref()).expect("connect to redis-server");
        r.get_mut().write_all(&resp_command(args)).expect("write to redis-server");
        read_resp(&mut r).expect("read from redis-server")
    }

    /// `PUBLISH channel message`; returns how many subscribers got it.
    pub fn publish(&self, channel: &str, message: &str) -> i64 {
        match self.command(&[b"PUBLISH", channel.as_bytes(), message.as_bytes()]) {
            Resp::Int(n) => n,
            other => panic!("PUBLISH answered {other:?}"),
        }
    }

    /// A subscriber connection in Pub/Sub mode on `channels` (confirmed).
    pub fn subscriber(&self, channels: &[&str]) -> RedisSubscriber {
        self.pubsub("SUBSCRIBE", channels)
    }

    /// A subscriber connection on the glob `patterns` (confirmed).
    pub fn psubscriber(&self, patterns: &[&str]) -> RedisSubscriber {
        self.pubsub("PSUBSCRIBE", patterns)
    }

    fn pubsub(&self, command: &str, names: &[&str]) -> RedisSubscriber {
        let mut reader = redis_connect(self.port, self.password.as_deref()).expect("connect to redis-server");
        let mut args: Vec<&[u8]> = vec![command.as_bytes()];
        args.extend(names.iter().map(|n| n.as_bytes()));
        reader.get_mut().write_all(&resp_command(&args)).expect("write to redis-server");
        for _ in names {
            match read_resp(&mut reader).expect("subscription confirmation") {
                Resp::Array(Some(_)) => {}
                other => panic!("{command} answered {other:?}"),
            }
        }
        RedisSubscriber { reader }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("--- redis-server port {} ---\n{}\n--- end ---", self.port, self.log());
        }
    }
}

/// A message seen by a [`RedisSubscriber`].
#[derive(Debug, Clone)]
pub struct PubSubMessage {
    pub channel: String,
    pub payload: String,
}

/// A raw Pub/Sub connection.
pub struct RedisSubscriber {
    reader: BufReader<TcpStream>,
}

impl RedisSubscriber {
    /// The next `message` / `pmessage` within `timeout`, or `None`.
    pub fn next_message(&mut self, timeout: Duration) -> Option<PubSubMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            // Wait for the first byte with the caller's bound, then read the
            // whole value with the generous one (so nothing is cut in half).
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            self.reader.get_ref().set_read_timeout(Some(left)).expect("set read timeout");
            match self.reader.fill_buf() {
                Ok([]) => panic!("redis closed the subscriber connection"),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return None
                }
                Err(e) => panic!("subscriber read failed: {e}"),
            }
            self.reader.get_ref().set_read_timeout(Some(DEFAULT_DEADLINE)).expect("set read timeout");
            let v = read_resp(&mut self.reader).expect("read a Pub/Sub message");
            let Resp::Array(Some(items)) = v else { panic!("unexpected Pub/Sub value {v:?}") };
            let texts: Vec<String> = items.iter().map(|i| i.text().unwrap_or_default()).collect();
            match texts.first().map(String::as_str) {
                Some("message") if items.len() == 3 => {
                    return Some(PubSubMessage { channel: texts[1].clone(), payload: texts[2].clone() })
                }
                Some("pmessage") if items.len() == 4 => {
                    return Some(PubSubMessage { channel: texts[2].clone(), payload: texts[3].clone() })
                }
                _ => continue,
            }
        }
    }

    /// The next message, panicking when none comes within the default deadline.
    pub fn expect_message(&mut self) -> PubSubMessage {
        self.next_message(DEFAULT_DEADLINE)
            .unwrap_or_else(|| panic!("no Pub/Sub message within {DEFAULT_DEADLINE:?}"))
    }
}
