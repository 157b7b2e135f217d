//! The `realtime` child process: how it is started (environment, port,
//! working directory), waited for, signalled, and killed on drop with its
//! output printed when a test fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{
    drain, free_port, non_empty_lines, poll, try_http, wait_buf, wait_child, Buf, TempDir, READY_DEADLINE,
    SECRET,
};

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
    nofile: Option<u64>,
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
        nofile: None,
    }
}

impl Builder {
    /// Set (or replace) an environment variable.
    /// History off (`HISTORY_SIZE=0`). With it on, one instance orders each
    /// room's events on the shard that owns the room, so events of different
    /// rooms may reach a client in either order (README, History and
    /// recovery); a test that reads "everything before the marker" across
    /// rooms needs the whole-instance order that history off keeps.
    pub fn without_history(self) -> Self {
        self.env("HISTORY_SIZE", "0")
    }

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

    /// Start the process with this many file descriptors (`RLIMIT_NOFILE`).
    pub fn nofile(mut self, limit: u64) -> Self {
        self.nofile = Some(limit);
        self
    }

    /// Spawn the process without waiting for anything.
    pub fn spawn(self) -> Server {
        let port = self.port.unwrap_or_else(free_port);
        let dir = if self.cwd.is_none() { Some(TempDir::new()) } else { None };
        let cwd = self.cwd.clone().unwrap_or_else(|| dir.as_ref().unwrap().path().to_path_buf());

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_realtime"));
        // Every variable the server reads, so the machine running the tests cannot
        // influence it.
        for v in realtime::cli::variables() {
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
        if let Some(limit) = self.nofile {
            let limit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
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

/// Guard around a running `realtime` child. Kills it on drop. What tests do
/// with it over HTTP, WebSocket and `/metrics` is in `api`, `protocol` and
/// `metrics`.
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

    /// The most memory the process has had resident so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
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
        let outcome = poll(
            READY_DEADLINE,
            Duration::from_millis(50),
            || match self.try_exit() {
                Some(_) => Some(false),
                None => try_http(self.port, "GET", "/health", &[], None)
                    .is_ok_and(|r| r.status == 200)
                    .then_some(true),
            },
            Option::is_some,
        );
        match outcome {
            Ok(Some(up)) => up,
            _ => panic!("/health did not answer 200 within {READY_DEADLINE:?}\n{}", self.output_dump()),
        }
    }

    pub fn wait_healthy(&mut self) {
        if !self.wait_healthy_or_exit() {
            self.join_readers();
            let st = self.exit.expect("wait_healthy_or_exit saw the exit");
            panic!("server exited ({st}) before /health answered 200\n{}", self.output_dump());
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
