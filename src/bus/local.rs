//! The bus inside one process: one inbox per shard, a `crossbeam-channel`
//! plus a doorbell that wakes the owning executor. Any thread may post to a
//! shard through [`Mailboxes`]; each [`Inbox`] exists once, is moved to its
//! shard's executor at start-up and is drained there alone, in batches,
//! without ever blocking the thread (its doorbell wakes a single consumer).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use futures_util::task::AtomicWaker;

use super::interest::{self, Interest, InterestWriter, Key};
use crate::auth::KeySet;
use crate::event::Event;
use crate::history::{Recovery, Since, Ticket};
use crate::presence::{Answer, Control, Query};
use crate::shard_id::ShardId;

/// Messages are dropped (and counted by the caller) past this many waiting.
const CAPACITY: usize = 65_536;
/// Messages a shard takes from its inbox in one wake-up; a shard with more
/// waiting is behind.
pub const BATCH: usize = 256;

/// What travels between shards: owned values only.
#[derive(Debug)]
pub enum ShardMsg {
    /// Deliver to this shard's sessions in the event's audience.
    Deliver(Arc<Event>),
    /// Stop accepting, close every client with 1001, drain, stop.
    Shutdown,
    /// A new JWKS: the shard's own copy, replacing the one it had.
    Keys(KeySet),
    /// Answer a presence query about this shard's own sessions.
    Presence { query: Query, reply: futures_channel::oneshot::Sender<Answer> },
    /// Act on a control message for this shard's own sessions.
    Control(Arc<Control>),
    /// To a room's tally shard (`PRESENCE_EVENTS`): a member's first session
    /// on the sending shard joined the room, or its last one left.
    Tally(TallyChange),
    /// To the shard that orders the event's room (one instance, history on):
    /// keep it as the room's next event and deliver it everywhere.
    Sequence(Box<Event>),
    /// To the shard that orders the room: what its history holds after `since`.
    History(HistoryQuery),
    /// From the shard that orders the room, in the order of the room's
    /// events: the answer to one of this shard's subscribes.
    Recovered { ticket: Ticket, recovery: Recovery },
}

/// A question to a room's history.
#[derive(Debug)]
pub struct HistoryQuery {
    pub stream: String,
    pub since: Option<Since>,
    pub limit: usize,
    pub reply: HistoryReply,
}

/// Where a history answer goes.
#[derive(Debug)]
pub enum HistoryReply {
    /// To a shard's subscribe, through that shard's inbox (which orders it
    /// among the room's events).
    Subscribe { from: ShardId, ticket: Ticket },
    /// To the history API; order does not matter there.
    Api(futures_channel::oneshot::Sender<Recovery>),
}

/// One shard's change in a room's membership, as its tally shard counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TallyChange {
    pub room: String,
    pub user_id: String,
    pub role: crate::auth::Role,
    pub joined: bool,
}

/// The sending side of one shard's inbox, and what the shard listens to.
struct Mailbox {
    tx: Sender<ShardMsg>,
    bell: Arc<AtomicWaker>,
    interest: Arc<Interest>,
}

/// The sending sides of every shard's inbox, by [`ShardId`]: how anyone
/// reaches a shard. `Send + Sync`; shared by the whole process.
pub struct Mailboxes {
    shards: Vec<Mailbox>,
}

/// The receiving side of one shard's inbox. Not `Clone`: the shard that owns
/// it is the only one that can name it.
pub struct Inbox {
    rx: Receiver<ShardMsg>,
    bell: Arc<AtomicWaker>,
}

/// What one shard owns of the bus: its inbox, and the writer of what it
/// listens to.
pub struct ShardEnd {
    pub inbox: Inbox,
    pub interest: InterestWriter,
}

impl Mailboxes {
    /// The mailboxes of `shards` shards, and each shard's end by shard index.
    pub fn new(shards: usize) -> (Self, Vec<ShardEnd>) {
        let (shards, ends) = (0..shards)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::bounded(CAPACITY);
                let bell = Arc::new(AtomicWaker::new());
                let (interest, writer) = interest::filter();
                let mailbox = Mailbox { tx, bell: bell.clone(), interest };
                (mailbox, ShardEnd { inbox: Inbox { rx, bell }, interest: writer })
            })
            .unzip();
        (Self { shards }, ends)
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Posts the event to every shard but `from` that may have someone it
    /// is for, without blocking (safe from an executor thread); says how
    /// many inboxes were full.
    pub fn post_to_others(&self, from: ShardId, event: &Arc<Event>) -> usize {
        let key = event.audience.interest().map(|stream| Key::of(&stream));
        self.shards
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != from.index())
            .filter(|(_, mailbox)| key.is_none_or(|key| mailbox.interest.may_hold(key)))
            .filter(|(_, mailbox)| mailbox.post(ShardMsg::Deliver(event.clone())).is_err())
            .count()
    }

    /// Posts to one shard without blocking; gives the message back when its
    /// inbox is full.
    pub fn post_to(&self, to: ShardId, msg: ShardMsg) -> Result<(), ShardMsg> {
        match self.shards.get(to.index()) {
            Some(mailbox) => mailbox.post(msg).map_err(crossbeam_channel::TrySendError::into_inner),
            None => Err(msg),
        }
    }

    /// Asks every shard to shut down, waiting for room where an inbox is
    /// full. Only for threads that are not executors (the main thread). A
    /// shard whose inbox is gone has stopped already.
    pub fn shut_down_all(&self) {
        for mailbox in &self.shards {
            let _ = mailbox.tx.send(ShardMsg::Shutdown);
            mailbox.bell.wake();
        }
    }

    /// Hands every shard its own copy of a new key set, waiting for room
    /// where an inbox is full: the set must not be lost. Only for threads
    /// that are not executors (the JWKS fetcher).
    pub fn hand_keys(&self, keys: &KeySet) {
        for mailbox in &self.shards {
            let _ = mailbox.tx.send(ShardMsg::Keys(keys.clone()));
            mailbox.bell.wake();
        }
    }

    /// Messages waiting in each shard's inbox, by shard index.
    pub fn depths(&self) -> impl Iterator<Item = usize> + '_ {
        self.shards.iter().map(|mailbox| mailbox.tx.len())
    }
}

impl Mailbox {
    /// Posts without blocking; `Err` when the inbox is full.
    fn post(&self, msg: ShardMsg) -> Result<(), crossbeam_channel::TrySendError<ShardMsg>> {
        let result = self.tx.try_send(msg);
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
