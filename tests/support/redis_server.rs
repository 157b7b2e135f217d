//! A real `redis-server` child on a free loopback port, without persistence,
//! and a raw RESP client for it: one-off commands and Pub/Sub subscribers
//! read with a deadline.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{connect_tcp, drain, free_port, read_line, Buf, DEFAULT_DEADLINE};

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
