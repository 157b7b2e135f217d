//! The history answers a shard's subscribes wait for, with Redis (README,
//! History and recovery). A fetch is sent on the shard's *subscriber*
//! connection, which speaks RESP3: its reply comes in order with the
//! messages pushed on the channels, so the shard handles the answer exactly
//! between the events the answer holds and those it does not. The shard
//! queues fetches here; the subscriber's task writes them and hands each
//! answer back. Both live on the shard's thread.

use std::cell::Cell;

use super::publisher::Unavailable;
use super::waiting::Waiting;
use crate::history::{Since, Ticket};

/// A subscribe waiting for its stream's answer.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub ticket: Ticket,
    pub stream: String,
    pub since: Option<Since>,
    /// Sent as `EVAL` with the script's text: Redis did not know its SHA.
    pub by_text: bool,
}

#[derive(Default)]
pub struct Recoveries {
    queue: Waiting<Fetch>,
    /// Up while the subscriber is subscribed and caught up: only then does
    /// an answer fall at its place among the events.
    listening: Cell<bool>,
}

impl Recoveries {
    /// Asks for `stream`'s answer to `since`; it comes back through the
    /// subscriber's `recovered` handler, in the order of the stream's events.
    /// Fails at once while the subscriber is not listening.
    pub fn fetch(&self, ticket: Ticket, stream: &str, since: Option<&Since>) -> Result<(), Unavailable> {
        if !self.listening.get() {
            return Err(Unavailable);
        }
        self.queue.push(Fetch { ticket, stream: stream.to_owned(), since: since.cloned(), by_text: false });
        Ok(())
    }

    /// The subscriber starts (`true`) or stops taking fetches. When it stops,
    /// what waited is handed back, to be answered [`Unavailable`].
    pub(super) fn listen(&self, listening: bool) -> Vec<Fetch> {
        self.listening.set(listening);
        match listening {
            true => Vec::new(),
            false => self.queue.drain(),
        }
    }

    /// Waits for at least one fetch and takes them all.
    pub(super) async fn next_batch(&self) -> Vec<Fetch> {
        self.queue.take_all().await
    }
}
