//! A shard's publishing connection. Publishes wait in a queue; one task
//! writes every waiting `PUBLISH` in a single write (pipelining), then reads
//! their replies in order. While the connection is down a publish fails at
//! once, so the API can answer 503 with nothing delivered. A batch Redis has
//! not answered within [`PUBLISH_TIMEOUT`] fails, and the connection counts
//! as lost: a frozen Redis must not hold publishers, nor look healthy.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_channel::oneshot;
use redis::Value;
use tracing::warn;

use super::backoff::Backoff;
use super::links::LinkFlag;
use super::outage::Outage;
use super::resp::{within, Protocol, RespConn, RespError};
use super::waiting::Waiting;
use crate::config::RedisUrl;

/// How long Redis may take to answer a batch of publishes (it answers in
/// well under a millisecond when healthy).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// The event could not be handed to Redis; nothing was delivered.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("redis is unavailable")]
pub struct Unavailable;

struct Pending {
    command: Vec<u8>,
    reply: oneshot::Sender<Value>,
}

#[derive(Default)]
pub struct Publisher {
    queue: Waiting<Pending>,
    connected: Cell<bool>,
    /// Connections made so far: a new one means Redis may have lost what
    /// the last one wrote (presence rewrites its state then).
    connections: Cell<u64>,
    /// The `run_id` of the Redis process the connection is to, for the
    /// scripts that number messages.
    run: RefCell<Rc<str>>,
}

impl Publisher {
    /// Publishes `message` on `channel`; `Ok` once Redis has taken it.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), Unavailable> {
        match self.command(redis::cmd("PUBLISH").arg(channel).arg(message).get_packed_command()).await? {
            Value::Int(_) => Ok(()),
            other => {
                warn!(reply = ?other, "redis refused a publish");
                Err(Unavailable)
            }
        }
    }

    /// Sends one packed command in the next pipeline and hands back Redis's
    /// reply (a refusal is a `Value::ServerError`, for the caller to judge).
    /// Commands are sent in the order they are asked for.
    pub async fn command(&self, command: Vec<u8>) -> Result<Value, Unavailable> {
        if !self.connected.get() {
            return Err(Unavailable);
        }
        let (reply, answer) = oneshot::channel();
        self.queue.push(Pending { command, reply });
        answer.await.map_err(|_| Unavailable)
    }

    /// The `run_id` of the Redis the connection is to; fails while it is down.
    pub fn run_id(&self) -> Result<Rc<str>, Unavailable> {
        match self.connected.get() {
            true => Ok(self.run.borrow().clone()),
            false => Err(Unavailable),
        }
    }

    /// How many connections to Redis this publisher has made.
    pub fn connections(&self) -> u64 {
        self.connections.get()
    }

    /// Drops what waits: each caller's reply channel closes, which it reads as
    /// [`Unavailable`].
    fn fail_queued(&self) {
        self.queue.drain();
    }
}

/// Keeps the publisher connected for as long as the shard runs; `link` is
/// up while it is. Each new connection first loads `scripts`, so that calls
/// by SHA find them.
pub async fn run(publisher: Rc<Publisher>, url: RedisUrl, link: LinkFlag, scripts: Vec<&'static str>) {
    let mut backoff = Backoff::default();
    let mut outage = Outage::new("publisher");
    loop {
        match connect(&url, &scripts).await {
            Ok((conn, run)) => {
                backoff.reset();
                *publisher.run.borrow_mut() = run.into();
                publisher.connected.set(true);
                publisher.connections.set(publisher.connections.get() + 1);
                link.set(true);
                outage.connected();
                let error = serve(&publisher, conn).await;
                publisher.connected.set(false);
                link.set(false);
                publisher.fail_queued();
                outage.failed(&error);
            }
            Err(error) => outage.failed(&error),
        }
        glommio::timer::sleep(backoff.next_delay()).await;
    }
}

/// A connection with the scripts loaded, and the `run_id` of its Redis.
async fn connect(url: &RedisUrl, scripts: &[&str]) -> Result<(RespConn, String), RespError> {
    let mut conn = RespConn::connect(url, Protocol::Resp2).await?;
    // What every numbered message (events with history, control) belongs to.
    let run = within(PUBLISH_TIMEOUT, conn.run_id()).await?;
    for script in scripts {
        within(
            PUBLISH_TIMEOUT,
            conn.command(&redis::cmd("SCRIPT").arg("LOAD").arg(*script).get_packed_command()),
        )
        .await?;
    }
    Ok((conn, run))
}

enum Wake {
    Batch(Vec<Pending>),
    Lost(RespError),
}

async fn serve(publisher: &Publisher, mut conn: RespConn) -> RespError {
    loop {
        // Redis sends nothing unasked on this connection: anything read while
        // idle means it is gone, and we learn that before the next publish.
        let wake = futures_lite::future::or(async { Wake::Batch(publisher.queue.take_all().await) }, async {
            Wake::Lost(match conn.next_value().await {
                Ok(_) => RespError::Protocol("unexpected data from redis".into()),
                Err(e) => e,
            })
        })
        .await;
        let batch = match wake {
            Wake::Batch(batch) => batch,
            Wake::Lost(error) => return error,
        };
        if let Err(error) = within(PUBLISH_TIMEOUT, answer(&mut conn, batch)).await {
            return error;
        }
    }
}

/// Writes the batch in one pipeline and answers each command with Redis's
/// reply. On an error the publishes not yet answered are dropped, which their
/// callers read as [`Unavailable`].
async fn answer(conn: &mut RespConn, batch: Vec<Pending>) -> Result<(), RespError> {
    let pipeline: Vec<u8> = batch.iter().flat_map(|p| p.command.iter().copied()).collect();
    conn.send(&pipeline).await?;
    for pending in batch {
        let _ = pending.reply.send(conn.next_value().await?);
    }
    Ok(())
}
