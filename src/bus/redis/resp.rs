//! One Redis connection over a glommio socket, speaking RESP through the
//! redis crate's encoder and incremental [`Parser`] (its own async API needs
//! tokio). Connects, authenticates, selects the database of `REDIS_URL` and
//! checks that Redis answers (a stopped Redis still accepts TCP connections).
//! A subscriber speaks RESP3, where pushed messages are told apart from
//! replies, so it can send commands while subscribed.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use redis::{Parser, Value};
use thiserror::Error;

use crate::config::RedisUrl;

/// Connecting (TCP, AUTH, SELECT, PING) must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, Error)]
pub enum RespError {
    #[error("redis i/o: {0}")]
    Io(#[from] io::Error),
    #[error("redis closed the connection")]
    Closed,
    #[error("redis protocol error: {0}")]
    Protocol(String),
    #[error("redis refused: {0}")]
    Refused(String),
    #[error("redis did not answer within {0:?}")]
    TimedOut(Duration),
}

pub struct RespConn {
    stream: TcpStream,
    chunk: Vec<u8>,
    replies: Replies,
}

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    /// `HELLO 3`: pushes (`Value::Push`) apart from replies.
    Resp3,
}

impl RespConn {
    /// Connects and prepares the connection (protocol, AUTH, SELECT) as `url`
    /// says.
    pub async fn connect(url: &RedisUrl, protocol: Protocol) -> Result<Self, RespError> {
        within(CONNECT_TIMEOUT, Self::connect_unbounded(url, protocol)).await
    }

    async fn connect_unbounded(url: &RedisUrl, protocol: Protocol) -> Result<Self, RespError> {
        let stream = TcpStream::connect((url.host.as_str(), url.port)).await.map_err(io::Error::from)?;
        stream.set_nodelay(true).map_err(io::Error::from)?;
        let mut conn = Self { stream, chunk: vec![0; READ_CHUNK], replies: Replies::default() };
        if let Some(password) = &url.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &url.user {
                auth.arg(user);
            }
            conn.command(&auth.arg(password).get_packed_command()).await?;
        }
        if protocol == Protocol::Resp3 {
            // After AUTH: Redis refuses HELLO to a client not yet
            // authenticated.
            conn.command(&redis::cmd("HELLO").arg(3).get_packed_command()).await?;
        }
        if url.db != 0 {
            conn.command(&redis::cmd("SELECT").arg(url.db).get_packed_command()).await?;
        }
        conn.command(&redis::cmd("PING").get_packed_command()).await?;
        Ok(conn)
    }

    /// Sends one command and waits for its reply; a server error is `Refused`.
    pub async fn command(&mut self, packed: &[u8]) -> Result<Value, RespError> {
        self.send(packed).await?;
        match self.next_value().await? {
            Value::ServerError(e) => Err(RespError::Refused(e.to_string())),
            value => Ok(value),
        }
    }

    /// The `run_id` of the Redis process on the other end (`INFO server`):
    /// new at every start of Redis, and another one on another server, so it
    /// tells whether Redis's data may have gone back in time (History with
    /// Redis).
    pub async fn run_id(&mut self) -> Result<String, RespError> {
        let info = match self.command(&redis::cmd("INFO").arg("server").get_packed_command()).await? {
            Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Value::VerbatimString { text, .. } => text,
            other => return Err(RespError::Protocol(format!("INFO answered {:.80}", format!("{other:?}")))),
        };
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| RespError::Protocol("INFO server gave no run_id".into()))
    }

    /// Writes already-packed commands (several, for a pipeline) in one write.
    pub async fn send(&mut self, packed: &[u8]) -> Result<(), RespError> {
        self.stream.write_all(packed).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The next reply or push from the server.
    pub async fn next_value(&mut self) -> Result<Value, RespError> {
        loop {
            if let Some(value) = self.replies.pop() {
                return Ok(value);
            }
            let n = self.stream.read(&mut self.chunk).await?;
            if n == 0 {
                return Err(RespError::Closed);
            }
            self.replies.feed(&self.chunk[..n])?;
        }
    }
}

/// The reading side's state, apart from the socket: the redis crate's
/// incremental parser and the values it has finished.
struct Replies {
    parser: Parser,
    /// Values parsed from the last read but not yet asked for.
    ready: VecDeque<Value>,
}

impl Default for Replies {
    fn default() -> Self {
        Self { parser: Parser::new(), ready: VecDeque::new() }
    }
}

impl Replies {
    /// Parses every complete value in `bytes`; the parser keeps a value cut
    /// at the end and finishes it on the next read.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), RespError> {
        let mut input = DryReader { bytes, dry: false };
        loop {
            match self.parser.parse_value(&mut input) {
                Ok(value) => self.ready.push_back(value),
                Err(_) if input.dry => return Ok(()),
                Err(e) => return Err(RespError::Protocol(e.to_string())),
            }
        }
    }

    fn pop(&mut self) -> Option<Value> {
        self.ready.pop_front()
    }
}

/// `work`, or [`RespError::TimedOut`] once `limit` has passed (`work` is
/// dropped then: the connection is to be closed, its replies are out of step).
pub async fn within<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, RespError>>,
) -> Result<T, RespError> {
    glommio::timer::timeout(limit, async { Ok(work.await) }).await.unwrap_or(Err(RespError::TimedOut(limit)))
}

/// Hands the parser what we have, then says "would block" instead of EOF,
/// so a value cut in two waits for the rest.
struct DryReader<'a> {
    bytes: &'a [u8],
    dry: bool,
}

impl Read for DryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.bytes.is_empty() {
            self.dry = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Read::read(&mut self.bytes, buf)
    }
}

/// The reader on generated replies: every value comes out whole and in
/// order however the stream is cut into reads, and arbitrary bytes are
/// values or an error, never a panic (`PROPTEST_CASES` for longer runs).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A RESP2 reply as Redis writes it.
    #[derive(Debug, Clone, PartialEq)]
    enum Reply {
        Simple(String),
        Error {
            code: String,
            detail: Option<String>,
        },
        Int(i64),
        Bulk(Vec<u8>),
        /// `$-1` or `*-1`: the parser reads both as nil.
        Nil {
            array: bool,
        },
        Array(Vec<Reply>),
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            "[A-Za-z0-9 ]{0,12}".prop_map(Reply::Simple),
            ("[A-Z]{1,8}", prop::option::of("[a-z0-9]{1,8}"))
                .prop_map(|(code, detail)| Reply::Error { code, detail }),
            any::<i64>().prop_map(Reply::Int),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Bulk),
            any::<bool>().prop_map(|array| Reply::Nil { array }),
        ];
        leaf.prop_recursive(3, 32, 5, |inner| prop::collection::vec(inner, 0..5).prop_map(Reply::Array))
    }

    fn encode(reply: &Reply, out: &mut Vec<u8>) {
        match reply {
            Reply::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error { code, detail: Some(d) } => {
                out.extend_from_slice(format!("-{code} {d}\r\n").as_bytes())
            }
            Reply::Error { code, detail: None } => out.extend_from_slice(format!("-{code}\r\n").as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(bytes) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil { array } => out.extend_from_slice(if *array { b"*-1\r\n" } else { b"$-1\r\n" }),
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                items.iter().for_each(|item| encode(item, out));
            }
        }
    }

    /// What the parser's value says, in the model's terms.
    fn as_reply(value: &Value) -> Reply {
        match value {
            Value::Okay => Reply::Simple("OK".into()),
            Value::SimpleString(s) => Reply::Simple(s.clone()),
            Value::ServerError(e) => {
                Reply::Error { code: e.code().to_owned(), detail: e.details().map(str::to_owned) }
            }
            Value::Int(n) => Reply::Int(*n),
            Value::BulkString(bytes) => Reply::Bulk(bytes.clone()),
            Value::Nil => Reply::Nil { array: false },
            Value::Array(items) => Reply::Array(items.iter().map(as_reply).collect()),
            other => panic!("RESP2 never gives {other:?}"),
        }
    }

    fn normal(reply: &Reply) -> Reply {
        match reply {
            Reply::Nil { .. } => Reply::Nil { array: false },
            Reply::Array(items) => Reply::Array(items.iter().map(normal).collect()),
            other => other.clone(),
        }
    }

    /// Feeds `stream` in the given pieces and returns every value read.
    fn read_in_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Reply>, RespError> {
        let mut replies = Replies::default();
        let mut read = Vec::new();
        for piece in pieces {
            replies.feed(piece)?;
            while let Some(value) = replies.pop() {
                read.push(as_reply(&value));
            }
        }
        Ok(read)
    }

    proptest! {
        #[test]
        fn every_value_survives_a_cut_at_every_byte(sent in prop::collection::vec(reply(), 1..6)) {
            let mut stream = Vec::new();
            sent.iter().for_each(|reply| encode(reply, &mut stream));
            let expected: Vec<Reply> = sent.iter().map(normal).collect();
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                prop_assert_eq!(&read_in_pieces([a, b]).expect("valid RESP"), &expected, "cut at {}", cut);
            }
        }

        #[test]
        fn every_value_survives_many_small_reads(
            sent in prop::collection::vec(reply(), 1..8),
            sizes in prop::collection::vec(1..8usize, 1..64),
        ) {
            let mut stream = Vec::new();
            sent.iter().for_each(|reply| encode(reply, &mut stream));
            let mut pieces = Vec::new();
            let mut rest = stream.as_slice();
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at((*size).min(rest.len()));
                pieces.push(piece);
                rest = tail;
            }
            let expected: Vec<Reply> = sent.iter().map(normal).collect();
            prop_assert_eq!(read_in_pieces(pieces).expect("valid RESP"), expected);
        }

        #[test]
        fn any_bytes_are_values_or_an_error(
            bytes in prop::collection::vec(any::<u8>(), 0..128),
            cut in any::<usize>(),
        ) {
            let (a, b) = bytes.split_at(cut % (bytes.len() + 1));
            let _ = read_in_pieces([a, b]);
        }
    }
}
