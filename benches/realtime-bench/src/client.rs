//! One client connection: TCP connect, WebSocket upgrade with the token in
//! `?token=`, the `connected` greeting, an optional subscribe; and the parsing
//! of the bench events it then receives.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;

use crate::recovery::{self, Position, Subscribed};
use crate::target::{self, Target};

pub type Ws = WebSocketStream<glommio::net::TcpStream>;

/// Small buffers, as the server uses: many idle clients share one process.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Why a connection could not be opened (or was lost).
#[derive(Debug)]
pub enum Failure {
    Connect(io::Error),
    /// The server answered the upgrade with this status.
    Refused(u16),
    Ws(WsError),
    /// The first message was not `connected`, or a reply was not understood.
    Unexpected(String),
    Closed,
    Timeout,
    /// A subscribe answered `unavailable`: the room's history cannot be
    /// reached yet (its Redis link is down or still connecting).
    Unavailable,
}

impl Failure {
    /// A short label for the error counts in the report.
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect(e) => match e.raw_os_error() {
                Some(libc::ECONNREFUSED) => "connect_refused".into(),
                Some(libc::EADDRNOTAVAIL) => "connect_no_ports".into(),
                Some(libc::EMFILE) | Some(libc::ENFILE) => "connect_no_fds".into(),
                _ if e.kind() == io::ErrorKind::TimedOut => "connect_timeout".into(),
                _ => format!("connect_{:?}", e.kind()).to_lowercase(),
            },
            Failure::Refused(status) => format!("http_{status}"),
            Failure::Ws(_) => "websocket".into(),
            Failure::Unexpected(_) => "unexpected_message".into(),
            Failure::Closed => "closed".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Unavailable => "history_unavailable".into(),
        }
    }

    /// Worth another try: the server was busy or the socket was reset.
    pub fn retryable(&self) -> bool {
        !matches!(self, Failure::Refused(401 | 403) | Failure::Unexpected(_))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Refused(status) => write!(f, "upgrade refused with HTTP {status}"),
            Failure::Ws(e) => write!(f, "websocket: {e}"),
            Failure::Unexpected(m) => write!(f, "unexpected message: {m}"),
            Failure::Closed => f.write_str("closed by the server"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Unavailable => f.write_str("the room's history is unavailable"),
        }
    }
}

/// Runs `fut`, failing with `Failure::Timeout` after `limit`.
pub async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    futures_lite::future::or(fut, async {
        glommio::timer::sleep(limit).await;
        Err(Failure::Timeout)
    })
    .await
}

/// Tries per connection before it counts as failed.
pub const CONNECT_TRIES: u32 = 4;

/// Runs `attempt` until it succeeds, fails for good (not `retryable`, or
/// `tries` tries, or `give_up` says so), pausing 100, 200, 400 ms and so on
/// between tries, at most a second; returns the last outcome and how many
/// retries it took.
pub async fn retrying<T, F>(
    tries: u32,
    give_up: impl Fn() -> bool,
    mut attempt: impl FnMut() -> F,
) -> (Result<T, Failure>, u32)
where
    F: std::future::Future<Output = Result<T, Failure>>,
{
    let mut tried = 0;
    loop {
        tried += 1;
        match attempt().await {
            Err(e) if tried < tries && e.retryable() && !give_up() => {
                glommio::timer::sleep(Duration::from_millis((50 << tried.min(5)).min(1000))).await;
            }
            other => return (other, tried - 1),
        }
    }
}

/// Connects, upgrades and reads `connected`.
pub async fn open(target: &Target, src: Option<IpAddr>, token: &str, limit: Duration) -> Result<Ws, Failure> {
    let stream = target::connect(target.addr, src, limit).await.map_err(Failure::Connect)?;
    let (mut ws, _) =
        async_tungstenite::client_async_with_config(target.ws_url(token), stream, Some(ws_config()))
            .await
            .map_err(|e| match e {
                WsError::Http(response) => Failure::Refused(response.status().as_u16()),
                e => Failure::Ws(e),
            })?;
    let first = next_text(&mut ws).await?;
    if message_type(&first).as_deref() != Some("connected") {
        return Err(Failure::Unexpected(first));
    }
    Ok(ws)
}

/// Subscribes to `room`, resuming `since` a place when given: the
/// `subscribed` answer, or `None` when the server refuses it;
/// `Failure::Unavailable` when it asks for the subscribe again later.
pub async fn subscribe(
    ws: &mut Ws,
    room: &str,
    since: Option<&Position>,
) -> Result<Option<Subscribed>, Failure> {
    let request = recovery::subscribe_request(room, since);
    ws.send(Message::Text(request.into())).await.map_err(Failure::Ws)?;
    // Events for `all` may come first; skip a few.
    for _ in 0..64 {
        let text = next_text(ws).await?;
        if let Some(answer) = Subscribed::parse(&text) {
            return Ok(Some(answer));
        }
        if message_type(&text).as_deref() == Some("error") {
            return if text.contains("\"code\":\"unavailable\"") {
                Err(Failure::Unavailable)
            } else {
                Ok(None)
            };
        }
    }
    Err(Failure::Unexpected("no answer to subscribe".into()))
}

/// The next text message, answering pings on the way (tungstenite queues the
/// pong and sends it on the next read).
pub async fn next_text(ws: &mut Ws) -> Result<String, Failure> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => return Err(Failure::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Failure::Ws(e)),
        }
    }
}

/// Sends a close frame and waits (bounded) for the server to finish the
/// closing handshake, so the server hangs up first.
pub async fn close(mut ws: Ws, limit: Duration) {
    let _ = within(limit, async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
        Ok(())
    })
    .await;
}

fn message_type(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("type")?.as_str().map(str::to_owned)
}

/// Microseconds since the Unix epoch: the `sentAt` clock, shared by every
/// process on this machine.
pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// `(seq, sentAt)` of a bench event, found without a full JSON parse (the
/// load generator shares the machine with the server, so it reads cheaply).
pub fn parse_event(text: &str) -> Option<(u64, u64)> {
    if !text.contains("\"type\":\"bench\"") {
        return None;
    }
    let payload = &text[text.find("\"payload\"")?..];
    Some((number_after(payload, "\"seq\"")?, number_after(payload, "\"sentAt\"")?))
}

/// What answers a client `ping`.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Pong,
    /// An `error` (the server's flood control refusing it).
    Refused,
}

/// `text` as the answer to a client `ping`, if it is one; found as cheaply
/// as `parse_event` finds events.
pub fn ping_answer(text: &str) -> Option<Answer> {
    if text.contains("\"type\":\"pong\"") {
        Some(Answer::Pong)
    } else if text.contains("\"type\":\"error\"") {
        Some(Answer::Refused)
    } else {
        None
    }
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = text[text.find(key)? + key.len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What one received sequence number was.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    New,
    /// Seen before on this connection.
    Duplicate,
    /// Seen for the first time, after the window had given up on it.
    Late,
}

/// Sequence numbers one connection has seen, to tell new events from
/// duplicates while allowing reordering. Everything below `low` has been
/// seen (or was given up on, `skipped`); a bitmap covers the rest, up to
/// `WINDOW_WORDS * 64` numbers ahead.
#[derive(Default)]
pub struct SeqTracker {
    low: u64,
    words: VecDeque<u64>,
    /// Numbers given up on when the window had to move past them.
    pub skipped: u64,
    /// The numbers given up on, by the first number of their word, so that
    /// one arriving after all is told from a duplicate. The oldest are
    /// forgotten past `GIVEN_UP_WORDS` (one arriving then counts as a duplicate).
    given_up: BTreeMap<u64, u64>,
}

const WINDOW_WORDS: usize = 64;
const GIVEN_UP_WORDS: usize = 1024;

impl SeqTracker {
    pub fn see(&mut self, seq: u64) -> Seen {
        if seq < self.low {
            return self.see_below_window(seq);
        }
        let mut offset = seq - self.low;
        while offset >= (WINDOW_WORDS * 64) as u64 {
            let word = self.words.pop_front().unwrap_or(0);
            self.give_up(!word);
            self.low += 64;
            offset -= 64;
        }
        let (w, bit) = ((offset / 64) as usize, offset % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.words[w] & mask != 0 {
            return Seen::Duplicate;
        }
        self.words[w] |= mask;
        while self.words.front() == Some(&u64::MAX) {
            self.words.pop_front();
            self.low += 64;
        }
        Seen::New
    }

    /// The word at `low` leaves the window with these numbers unseen.
    fn give_up(&mut self, unseen: u64) {
        if unseen == 0 {
            return;
        }
        self.skipped += u64::from(unseen.count_ones());
        self.given_up.insert(self.low, unseen);
        if self.given_up.len() > GIVEN_UP_WORDS {
            self.given_up.pop_first();
        }
    }

    fn see_below_window(&mut self, seq: u64) -> Seen {
        let (base, mask) = (seq - seq % 64, 1u64 << (seq % 64));
        match self.given_up.get_mut(&base) {
            Some(unseen) if *unseen & mask != 0 => {
                *unseen &= !mask;
                if *unseen == 0 {
                    self.given_up.remove(&base);
                }
                Seen::Late
            }
            _ => Seen::Duplicate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_seq_and_sent_at() {
        let text = r#"{"id":"01J","type":"bench","room":"orders","payload":{"sentAt":1700000000123456,"seq":42},"timestamp":"x"}"#;
        assert_eq!(parse_event(text), Some((42, 1_700_000_000_123_456)));
        let spaced = r#"{"type":"bench","payload":{"seq": 7, "sentAt": 9}}"#;
        assert_eq!(parse_event(spaced), Some((7, 9)));
        assert_eq!(parse_event(r#"{"type":"pong"}"#), None);
        assert_eq!(parse_event(r#"{"type":"bench","payload":{"seq":1}}"#), None);
    }

    #[test]
    fn tells_a_ping_answer() {
        assert_eq!(ping_answer(r#"{"type":"pong"}"#), Some(Answer::Pong));
        let refused = r#"{"type":"error","payload":{"code":"rate_limited","message":"slow down"}}"#;
        assert_eq!(ping_answer(refused), Some(Answer::Refused));
        assert_eq!(ping_answer(r#"{"type":"bench","payload":{"seq":1,"sentAt":2}}"#), None);
    }

    #[test]
    fn tracker_tells_new_from_duplicate() {
        let mut t = SeqTracker::default();
        for seq in [0, 2, 1, 3, 200, 64, 65] {
            assert_eq!(t.see(seq), Seen::New, "{seq}");
        }
        assert_eq!(t.see(2), Seen::Duplicate);
        assert_eq!(t.see(200), Seen::Duplicate);
        for seq in 4..64 {
            assert_eq!(t.see(seq), Seen::New);
        }
        assert_eq!(t.low, 64);
        assert_eq!(t.see(5), Seen::Duplicate);
        // Far ahead: the window moves and counts what it gave up on.
        assert_eq!(t.see(1_000_000), Seen::New);
        assert!(t.skipped > 0);
        assert_eq!(t.see(1_000_000), Seen::Duplicate);
    }

    #[test]
    fn a_late_arrival_is_not_a_duplicate() {
        let mut t = SeqTracker::default();
        for seq in (0..10).filter(|&s| s != 3) {
            assert_eq!(t.see(seq), Seen::New);
        }
        // 4096 numbers ahead: the window gives 3 up.
        assert_eq!(t.see(64 * 64 + 5), Seen::New);
        assert_eq!(t.skipped, 64 - 9);
        assert_eq!(t.see(3), Seen::Late, "given up on, then arrived: late, not a duplicate");
        assert_eq!(t.see(3), Seen::Duplicate, "the second time it is a duplicate");
        assert_eq!(t.see(4), Seen::Duplicate, "seen before the window moved");
        assert_eq!(t.see(40), Seen::Late);
    }
}
