//! The history answers a shard's subscribes wait for, with Redis (README,
//! History and recovery). A fetch is sent on the shard's *subscriber*
//! connection, which speaks RESP3: its reply comes in order with the
//! messages pushed on the channels, so the shard handles the answer exactly
//! between the events the answer holds and those it does not. The shard
//! queues fetches here; the subscriber's task writes them and hands each
//! answer back. Both live on the shard's thread.
//!
//! Redis closes a subscriber whose unread replies pass its
//! `client-output-buffer-limit pubsub` (32 MB, or 8 MB for a minute, by
//! default), and with it every answer in flight. So each fetch carries a
//! budget, the most bytes of events its answer may hold (what its session
//! can take: past it, Redis sends none and the answer is not recovered),
//! and the fetches sent and not yet answered on one connection hold at most
//! [`BUDGET_IN_FLIGHT`] bytes of budget together; the others wait their
//! turn here.

use std::cell::Cell;

/// The most bytes of budget a shard's fetches in flight hold together:
/// half of Redis's default soft output limit for a subscriber, so that the
/// events flowing meanwhile have room too.
pub const BUDGET_IN_FLIGHT: usize = 4 << 20;

use super::publisher::Unavailable;
use super::waiting::Waiting;
use crate::history::{Since, Ticket};

/// A subscribe waiting for its stream's answer.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub ticket: Ticket,
    pub stream: String,
    pub since: Option<Since>,
    /// The most bytes of events its answer may hold.
    pub budget: usize,
    /// Sent as `EVAL` with the script's text: Redis did not know its SHA.
    pub by_text: bool,
}

#[derive(Default)]
pub struct Recoveries {
    queue: Waiting<Fetch>,
    /// Up while the subscriber is subscribed and caught up: only then does
    /// an answer fall at its place among the events.
    listening: Cell<bool>,
    /// The budgets of the fetches sent and not yet answered.
    in_flight: Cell<usize>,
}

impl Recoveries {
    /// Asks for `stream`'s answer to `since`, with at most `budget` bytes of
    /// events; it comes back through the subscriber's `recovered` handler, in
    /// the order of the stream's events. Fails at once while the subscriber
    /// is not listening.
    pub fn fetch(
        &self,
        ticket: Ticket,
        stream: &str,
        since: Option<&Since>,
        budget: usize,
    ) -> Result<(), Unavailable> {
        if !self.listening.get() {
            return Err(Unavailable);
        }
        let fetch =
            Fetch { ticket, stream: stream.to_owned(), since: since.cloned(), budget, by_text: false };
        self.queue.push(fetch);
        Ok(())
    }

    /// The subscriber starts (`true`) or stops taking fetches. When it stops,
    /// what waited is handed back, to be answered [`Unavailable`].
    pub(super) fn listen(&self, listening: bool) -> Vec<Fetch> {
        self.listening.set(listening);
        self.in_flight.set(0);
        match listening {
            true => Vec::new(),
            false => self.queue.drain(),
        }
    }

    /// Waits for at least one fetch whose budget fits beside those in
    /// flight, and takes the oldest for as long as they fit (one at least
    /// when none is in flight, whatever its budget).
    pub(super) async fn next_batch(&self) -> Vec<Fetch> {
        self.queue
            .take_while(|fetch| {
                let held = self.in_flight.get();
                let fits = held == 0 || held + fetch.budget <= BUDGET_IN_FLIGHT;
                if fits {
                    self.in_flight.set(held + fetch.budget);
                }
                fits
            })
            .await
    }

    /// `fetch`'s answer came: its budget is free for the next ones.
    pub(super) fn answered(&self, fetch: &Fetch) {
        self.in_flight.set(self.in_flight.get().saturating_sub(fetch.budget));
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::{block_on, poll_once};

    use super::*;

    fn budgets(fetches: &[Fetch]) -> Vec<usize> {
        fetches.iter().map(|fetch| fetch.budget).collect()
    }

    #[test]
    fn fetches_in_flight_hold_at_most_the_budget_together() {
        let recoveries = Recoveries::default();
        recoveries.listen(true);
        for budget in [5 << 20, 3 << 20, 1 << 20, 0] {
            recoveries.fetch(Ticket(0), "orders", None, budget).expect("listening");
        }
        let first = block_on(recoveries.next_batch());
        assert_eq!(budgets(&first), [5 << 20], "one alone always goes");
        assert!(block_on(poll_once(recoveries.next_batch())).is_none(), "nothing fits beside it");
        recoveries.answered(&first[0]);
        assert_eq!(budgets(&block_on(recoveries.next_batch())), [3 << 20, 1 << 20, 0]);
    }
}
