//! A real `redis-server` child on a free loopback port, without persistence
//! unless asked (a snapshot taken and restored by hand), and clients for it
//! from the `redis` crate's sync API: one-off commands and Pub/Sub
//! subscribers read with a deadline.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};

use super::{drain, free_port, Buf, DEFAULT_DEADLINE};

/// A `redis-server` child. Killed on drop; can be killed and started again on
/// the same port.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    password: Option<String>,
    /// More `redis-server` arguments, kept for a restart.
    extra: Vec<String>,
    /// Where `SAVE` writes its snapshot, for [`RedisServer::start_saving`].
    dir: Option<PathBuf>,
    log: Buf,
}

/// The name of the snapshot file in a saving server's directory.
const SNAPSHOT: &str = "dump.rdb";

impl RedisServer {
    /// A started `redis-server`. The tests that call it are marked
    /// `#[cfg_attr(no_redis, ignore = ...)]`: where `redis-server` is not
    /// installed, `build.rs` sets `no_redis` and `cargo test` lists them as
    /// ignored (unless `REALTIME_REQUIRE_REDIS=1`, as in CI).
    pub fn start() -> RedisServer {
        RedisServer::start_inner(None, &[], false)
    }

    /// [`RedisServer::start`] with `--requirepass password`.
    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::start_inner(Some(password.to_string()), &[], false)
    }

    /// [`RedisServer::start`] with more arguments (`--name value` pairs).
    pub fn start_with(args: &[&str]) -> RedisServer {
        RedisServer::start_inner(None, args, false)
    }

    /// [`RedisServer::start`] with a directory of its own, where
    /// [`RedisServer::snapshot`] saves and from which
    /// [`RedisServer::restart_from`] loads.
    pub fn start_saving() -> RedisServer {
        RedisServer::start_inner(None, &[], true)
    }

    fn start_inner(password: Option<String>, extra: &[&str], saving: bool) -> RedisServer {
        for _ in 0..3 {
            let port = free_port();
            let dir = saving.then(|| {
                let dir = std::env::temp_dir().join(format!("realtime-redis-{}-{port}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
                dir
            });
            let mut r = RedisServer {
                child: None,
                port,
                password: password.clone(),
                extra: extra.iter().map(|a| a.to_string()).collect(),
                dir,
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
        if let Some(dir) = &self.dir {
            cmd.arg("--dir").arg(dir).args(["--dbfilename", SNAPSHOT]);
        }
        cmd.args(&self.extra);
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
        self.connect().and_then(|mut con| redis::cmd("PING").query::<String>(&mut con)).is_ok()
    }

    /// A connection, authenticated when needed, on which every read and
    /// write is bounded by the default deadline.
    fn connect(&self) -> RedisResult<Connection> {
        let con = redis::Client::open(self.url())?.get_connection_with_timeout(DEFAULT_DEADLINE)?;
        con.set_read_timeout(Some(DEFAULT_DEADLINE))?;
        con.set_write_timeout(Some(DEFAULT_DEADLINE))?;
        Ok(con)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` (SIGSTOP freezes it, SIGCONT thaws it).
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("redis-server is running");
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0, "kill({signal})");
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

    /// `SAVE`, and the snapshot's bytes (with [`RedisServer::start_saving`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let _: () = self.query(&redis::cmd("SAVE"));
        let path = self.dir.as_ref().expect("a saving redis-server").join(SNAPSHOT);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Kills the server and starts it again on the same port from
    /// `snapshot`, as a Redis restored from an older backup.
    pub fn restart_from(&mut self, snapshot: &[u8]) {
        self.kill();
        let path = self.dir.as_ref().expect("a saving redis-server").join(SNAPSHOT);
        std::fs::write(&path, snapshot).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.restart();
    }

    /// One command on a fresh connection, its reply as `T`.
    pub fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        let mut con = self.connect().expect("connect to redis-server");
        command.query(&mut con).unwrap_or_else(|e| panic!("{command:?} failed: {e}"))
    }

    /// Adds an ACL user that may do everything, and gives its URL: an
    /// instance on it can be cut off alone ([`RedisServer::lock_out`]).
    pub fn add_user(&self, name: &str, password: &str) -> String {
        let _: () = self.query(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg(name)
                .arg("on")
                .arg(format!(">{password}"))
                .arg("allkeys")
                .arg("allchannels")
                .arg("+@all"),
        );
        format!("redis://{name}:{password}@127.0.0.1:{}", self.port)
    }

    /// Closes every connection of `user` and refuses new ones until
    /// [`RedisServer::let_in`].
    pub fn lock_out(&self, user: &str) {
        let _: () = self.query(redis::cmd("ACL").arg("SETUSER").arg(user).arg("off"));
        let _: i64 = self.query(redis::cmd("CLIENT").arg("KILL").arg("USER").arg(user));
    }

    pub fn let_in(&self, user: &str) {
        let _: () = self.query(redis::cmd("ACL").arg("SETUSER").arg(user).arg("on"));
    }

    /// `CLIENT KILL TYPE pubsub USER user`: a blip of that user's
    /// subscribers only; how many were closed.
    pub fn kill_subscribers_of(&self, user: &str) -> i64 {
        self.query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").arg("USER").arg(user))
    }

    /// `PUBLISH channel message` on a fresh connection; returns how many
    /// subscribers got it.
    pub fn publish(&self, channel: &str, message: &str) -> i64 {
        self.publish_bytes(channel, message.as_bytes())
    }

    /// [`RedisServer::publish`] for a message that need not be UTF-8.
    pub fn publish_bytes(&self, channel: &str, message: &[u8]) -> i64 {
        let mut con = self.connect().expect("connect to redis-server");
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("PUBLISH to {channel} failed: {e}"))
    }

    /// A subscriber connection in Pub/Sub mode on `channels` (confirmed).
    pub fn subscriber(&self, channels: &[&str]) -> RedisSubscriber {
        self.pubsub(false, channels)
    }

    /// A subscriber connection on the glob `patterns` (confirmed).
    pub fn psubscriber(&self, patterns: &[&str]) -> RedisSubscriber {
        self.pubsub(true, patterns)
    }

    fn pubsub(&self, patterns: bool, names: &[&str]) -> RedisSubscriber {
        let mut con = self.connect().expect("connect to redis-server");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let (confirm, confirmed) = mpsc::sync_channel(1);
        let (deliver, messages) = mpsc::channel();
        // The crate's `PubSub` borrows its connection, and a read that times
        // out halfway through a message loses the part already read. So a
        // thread owns both and blocks on the socket without a timeout, and the
        // test bounds its wait on the channel instead. The thread ends when
        // Redis closes the connection (at the latest when the server is
        // killed) or when a message finds the subscriber gone.
        thread::spawn(move || {
            let mut pubsub = con.as_pubsub();
            let subscribed = if patterns { pubsub.psubscribe(&names) } else { pubsub.subscribe(&names) }
                .and_then(|()| pubsub.set_read_timeout(None));
            let ok = subscribed.is_ok();
            if confirm.send(subscribed).is_err() || !ok {
                return;
            }
            loop {
                let next = pubsub.get_message().map(|msg| PubSubMessage {
                    channel: msg.get_channel_name().to_string(),
                    payload: String::from_utf8_lossy(msg.get_payload_bytes()).into_owned(),
                });
                let failed = next.is_err();
                if deliver.send(next).is_err() || failed {
                    return;
                }
            }
        });
        let kind = if patterns { "PSUBSCRIBE" } else { "SUBSCRIBE" };
        match confirmed.recv_timeout(DEFAULT_DEADLINE) {
            Ok(Ok(())) => RedisSubscriber { messages },
            Ok(Err(e)) => panic!("{kind} failed: {e}"),
            Err(e) => panic!("{kind} not confirmed: {e}"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
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

/// A Pub/Sub connection, read on its own thread.
pub struct RedisSubscriber {
    messages: mpsc::Receiver<RedisResult<PubSubMessage>>,
}

impl RedisSubscriber {
    /// The next `message` / `pmessage` within `timeout`, or `None`.
    pub fn next_message(&mut self, timeout: Duration) -> Option<PubSubMessage> {
        match self.messages.recv_timeout(timeout) {
            Ok(Ok(m)) => Some(m),
            Ok(Err(e)) => panic!("subscriber read failed: {e}"),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the subscriber connection has ended"),
        }
    }

    /// The next message, panicking when none comes within the default deadline.
    pub fn expect_message(&mut self) -> PubSubMessage {
        self.next_message(DEFAULT_DEADLINE)
            .unwrap_or_else(|| panic!("no Pub/Sub message within {DEFAULT_DEADLINE:?}"))
    }
}
