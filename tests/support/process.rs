//! Plumbing for child processes: free ports, throwaway working directories,
//! and output captured by reader threads and polled with a deadline.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Calls `probe` every `every` until `done` holds on what it returned, or
/// `timeout` passes; `Err` then carries the last value, for the caller's
/// message.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> Result<T, T> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = probe();
        if done(&v) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(v);
        }
        thread::sleep(every);
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    poll(timeout, Duration::from_millis(20), || child.try_wait().ok().flatten(), Option::is_some)
        .unwrap_or_else(|none| none)
}

/// Polls `buf` until `pred` holds on what it holds; `None` after `timeout`.
pub(super) fn wait_buf(buf: &Buf, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
    poll(timeout, Duration::from_millis(20), || buf.lock().unwrap().clone(), |s| pred(s)).ok()
}

pub fn non_empty_lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}
