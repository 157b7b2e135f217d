//! One Redis connection over a glommio socket, speaking RESP through the
//! redis crate's encoder and incremental [`Parser`] (its own async API needs
//! tokio). Connects, authenticates, selects the database of `REDIS_URL` and
//! checks that Redis answers (a stopped Redis still accepts TCP connections).

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
    parser: Parser,
    chunk: Vec<u8>,
    /// Values parsed from the last read but not yet asked for.
    ready: VecDeque<Value>,
}

impl RespConn {
    /// Connects and prepares the connection (AUTH, SELECT) as `url` says.
    pub async fn connect(url: &RedisUrl) -> Result<Self, RespError> {
        within(CONNECT_TIMEOUT, Self::connect_unbounded(url)).await
    }

    async fn connect_unbounded(url: &RedisUrl) -> Result<Self, RespError> {
        let stream = TcpStream::connect((url.host.as_str(), url.port)).await.map_err(io::Error::from)?;
        stream.set_nodelay(true).map_err(io::Error::from)?;
        let mut conn =
            Self { stream, parser: Parser::new(), chunk: vec![0; READ_CHUNK], ready: VecDeque::new() };
        if let Some(password) = &url.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &url.user {
                auth.arg(user);
            }
            conn.command(&auth.arg(password).get_packed_command()).await?;
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

    /// Writes already-packed commands (several, for a pipeline) in one write.
    pub async fn send(&mut self, packed: &[u8]) -> Result<(), RespError> {
        self.stream.write_all(packed).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The next reply or push from the server.
    pub async fn next_value(&mut self) -> Result<Value, RespError> {
        loop {
            if let Some(value) = self.ready.pop_front() {
                return Ok(value);
            }
            let n = self.stream.read(&mut self.chunk).await?;
            if n == 0 {
                return Err(RespError::Closed);
            }
            self.parse(n)?;
        }
    }

    /// Parses every complete value in the first `n` bytes of `chunk`; the
    /// parser keeps a value cut at the end and finishes it on the next read.
    fn parse(&mut self, n: usize) -> Result<(), RespError> {
        let mut input = DryReader { bytes: &self.chunk[..n], dry: false };
        loop {
            match self.parser.parse_value(&mut input) {
                Ok(value) => self.ready.push_back(value),
                Err(_) if input.dry => return Ok(()),
                Err(e) => return Err(RespError::Protocol(e.to_string())),
            }
        }
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
