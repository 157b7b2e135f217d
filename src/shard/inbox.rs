//! A shard's inbox: a `crossbeam-channel` plus a doorbell that wakes the
//! owning executor. Any thread may post to a [`Mailbox`]; only the owning shard
//! drains its [`Inbox`], in batches, without ever blocking its thread.

use std::future::poll_fn;
use std::sync::Arc;

use crate::event::Event;
use std::task::Poll;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use futures_util::task::AtomicWaker;

/// Messages are dropped (and counted by the caller) past this many waiting.
const CAPACITY: usize = 65_536;

/// What travels between shards: owned values only.
#[derive(Debug)]
pub enum ShardMsg {
    /// Deliver to this shard's sessions in the event's audience.
    Deliver(Arc<Event>),
    /// Stop accepting, close every client with 1001, drain, stop.
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
#[error("shard inbox is full or gone")]
pub struct Undeliverable(pub ShardMsg);

/// The sending side; `Send + Sync`, cheap to share.
#[derive(Clone)]
pub struct Mailbox {
    tx: Sender<ShardMsg>,
    bell: Arc<AtomicWaker>,
}

/// The receiving side; used by the owning shard only.
#[derive(Clone)]
pub struct Inbox {
    rx: Receiver<ShardMsg>,
    bell: Arc<AtomicWaker>,
}

pub fn pair() -> (Mailbox, Inbox) {
    let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
    let bell = Arc::new(AtomicWaker::new());
    (Mailbox { tx, bell: bell.clone() }, Inbox { rx, bell })
}

impl Mailbox {
    /// Posts without blocking; safe from an executor thread.
    pub fn post(&self, msg: ShardMsg) -> Result<(), Undeliverable> {
        let result = self.tx.try_send(msg).map_err(|e| Undeliverable(e.into_inner()));
        self.bell.wake();
        result
    }

    /// Posts, waiting for room if the inbox is full. Only for threads that are
    /// not executors (the main thread's shutdown).
    pub fn post_blocking(&self, msg: ShardMsg) -> Result<(), Undeliverable> {
        let result = self.tx.send(msg).map_err(|e| Undeliverable(e.into_inner()));
        self.bell.wake();
        result
    }
}

impl Inbox {
    /// Waits until at least one message is there, then moves up to `max` into
    /// `batch`. The mailboxes live as long as the process, so this never ends
    /// for lack of senders.
    pub async fn recv_batch(&self, batch: &mut Vec<ShardMsg>, max: usize) {
        poll_fn(|cx| {
            if self.drain(batch, max) {
                return Poll::Ready(());
            }
            self.bell.register(cx.waker());
            // A post between the drain and the registration would be missed
            // without this second look.
            match self.drain(batch, max) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
        .await
    }

    /// Messages waiting now (for the metrics).
    pub fn waiting(&self) -> usize {
        self.rx.len()
    }

    fn drain(&self, batch: &mut Vec<ShardMsg>, max: usize) -> bool {
        let before = batch.len();
        while batch.len() - before < max {
            match self.rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        batch.len() > before
    }
}
