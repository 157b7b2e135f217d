//! A `realtime` server for the load generator to run against: the binary of
//! the workspace's server crate, started as a child on a free loopback port.
//!
//! Cargo only tells a test where its own package's binaries are, so the
//! server is looked up next to `realtime-bench` in the shared target
//! directory: plain `cargo test` at the workspace root builds both. Every
//! wait is bounded; the guard kills the child on drop and, when the test is
//! panicking, prints what the server wrote.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The HS256 secret the server is given and the load generator signs with.
pub const SECRET: &str = "bench-tool-test-secret-8c41d9e07f2b5a36";

/// How long the server has to answer `/health` with 200 after start.
const READY_DEADLINE: Duration = Duration::from_secs(15);

/// Bound on one HTTP exchange with the server.
const HTTP_DEADLINE: Duration = Duration::from_secs(5);

/// The server binary of this build (same profile, same target directory).
fn server_binary() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_realtime-bench"));
    let server = bench.with_file_name("realtime");
    assert!(
        server.is_file(),
        "the server binary {} is missing: run `cargo build` (or plain `cargo test`) at the workspace root \
         first, so that the `realtime` crate is built next to realtime-bench",
        server.display()
    );
    server
}

/// A running `realtime` child. Killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Server {
    /// Starts the server (two shards, `JWT_SECRET` = [`SECRET`]) and waits
    /// until `/health` answers 200.
    pub fn start() -> Server {
        let binary = server_binary();
        let dir = scratch_dir();
        let port = free_port();
        // The environment is cleared so that no setting of the machine (an
        // API_KEY, say) reaches the server, and it runs in an empty directory
        // so that no `.env` is found either (dotenvy looks in parents too).
        let child = Command::new(binary)
            .env_clear()
            .envs([
                ("JWT_SECRET", SECRET),
                ("PORT", &port.to_string()),
                ("BIND_ADDR", "127.0.0.1"),
                ("SHARDS", "2"),
                ("RUST_LOG", "info"),
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            // Files rather than pipes: nothing has to drain them while it runs.
            .stdout(File::create(dir.join("stdout")).expect("create stdout file"))
            .stderr(File::create(dir.join("stderr")).expect("create stderr file"))
            .spawn()
            .expect("spawn the realtime binary");
        let mut server = Server { child, port, dir };
        server.wait_healthy();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /health`, asserted 200; its JSON body.
    pub fn health(&self) -> Value {
        let (status, body) = get(self.port, "/health")
            .unwrap_or_else(|e| panic!("GET /health failed: {e}\n{}", self.output()));
        assert_eq!(status, 200, "/health: {body}\n{}", self.output());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/health body is not JSON ({e}): {body}"))
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}) before /health answered\n{}", self.output());
            }
            if matches!(get(self.port, "/health"), Ok((200, _))) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("/health did not answer 200 within {READY_DEADLINE:?}\n{}", self.output());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- realtime on port {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
            self.port,
            read("stdout"),
            read("stderr")
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("{}", self.output());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command` to completion like [`Command::output`], but kills it and
/// panics (with what it wrote) once `limit` has passed: the load generator
/// bounds its own runs, this bounds one that hangs anyway.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let Some(status) = status else {
        panic!(
            "{command:?} still ran after {limit:?} and was killed\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output { status, stdout, stderr }
}

/// Reads `pipe` to its end on its own thread, so that a child never blocks on
/// a full pipe while the caller polls it.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A port that was free a moment ago. Only one server runs per test binary,
/// so no two can be handed the same port (and share it: the server binds
/// with SO_REUSEPORT).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn scratch_dir() -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("realtime-bench-it-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// One `GET` with `Connection: close`: status and body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_DEADLINE)?;
    stream.set_read_timeout(Some(HTTP_DEADLINE))?;
    stream.set_write_timeout(Some(HTTP_DEADLINE))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad response: {response:?}"));
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((status, body.to_string()))
}
