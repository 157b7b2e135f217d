//! The shard's side of history and recovery (README, History and recovery).
//!
//! With one instance, each room's events are ordered by one shard, the
//! room's owner (a hash of its name): publishes for the room pass through
//! it, it keeps the room's [`Store`], and it answers subscribes through the
//! same inboxes that carry the room's events to the other shards. So an
//! answer reaches the asking shard exactly between the events it covers and
//! the ones that follow. With Redis, the subscriber connection gives the same
//! order (`bus::redis`).
//!
//! A subscribe waits here, under its [`Ticket`], until that answer comes;
//! then the session joins the room and gets `subscribed`, then the events it
//! missed, before any later one.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Utf8Bytes;

use super::handle::SessionHandle;
use super::{Pending, PublishError, Shard, SubscribeError};
use crate::bus::local::{HistoryQuery, HistoryReply, ShardMsg};
use crate::bus::redis::Unavailable;
use crate::bus::Bus;
use crate::event::Event;
use crate::history::{replay_limit, Mark, Recovery, Since, Ticket};
use crate::metrics::DropReason;
use crate::protocol::{self, ErrorCode};
use crate::room;

/// How long a subscribe waits for its room's answer before it is given up
/// (the answer never takes this long unless it was lost).
const ANSWER_LOST_AFTER: Duration = Duration::from_secs(10);

impl Shard {
    /// One instance, history on: hands the event to the shard that orders
    /// its room. Fails when that shard's inbox is full.
    pub(super) fn publish_in_order(&self, event: Event) -> Result<(), PublishError> {
        let owner = self.owner_of(&event.stream());
        if owner == self.id {
            self.sequence(event);
            return Ok(());
        }
        let msg = ShardMsg::Sequence(Box::new(event));
        self.instance.mailboxes.post_to(owner, msg).map_err(|_| PublishError::Overloaded)
    }

    /// As the owner of the event's room: keeps it as the room's next event
    /// and delivers it on every shard.
    pub fn sequence(&self, event: Event) {
        let Some(store) = &self.history else {
            return self.publish_locally(Arc::new(event));
        };
        let stream = event.stream().into_owned();
        let kept = store.borrow_mut().append(&stream, |at| Arc::new(event.at(at.clone())), Instant::now());
        self.count_history();
        self.publish_locally(kept);
    }

    /// Subscribes with history on: asks the room's history for the position
    /// (and what followed `since`); the session joins when the answer comes.
    pub(super) fn subscribe_in_order(
        &self,
        session: &Rc<SessionHandle>,
        requested: &str,
        room: String,
        since: Option<Since>,
    ) -> Result<(), SubscribeError> {
        // Redis writes a subscriber's answers at once, and closes it when it
        // cannot: each answer is bounded by what its session can take.
        let redis = matches!(self.bus, Bus::Redis { .. });
        let pending = Pending {
            asked: Instant::now(),
            session: Rc::downgrade(session),
            requested: requested.to_owned(),
            room: room.clone(),
            since: since.clone(),
            _held: self.interest.hold(&room),
            replay: (redis && since.is_some()).then(|| session.reserve_replay()),
        };
        let budget = pending.replay.as_ref().map_or(0, |replay| replay.bytes);
        let ticket = Ticket(self.pending.borrow_mut().insert(pending));
        let asked = match &self.bus {
            Bus::Local => {
                let limit = replay_limit(since.as_ref(), self.instance.config.history_size);
                let reply = HistoryReply::Subscribe { from: self.id, ticket };
                self.ask_history(HistoryQuery { stream: room, since, limit, reply })
            }
            Bus::Redis { recoveries, .. } => recoveries.fetch(ticket, &room, since.as_ref(), budget),
        };
        if asked.is_err() {
            self.pending.borrow_mut().try_remove(ticket.0);
            return Err(SubscribeError::Unavailable);
        }
        Ok(())
    }

    /// Sends a question to the room's owner, or answers it here.
    pub(super) fn ask_history(&self, query: HistoryQuery) -> Result<(), Unavailable> {
        let owner = self.owner_of(&query.stream);
        if owner == self.id {
            self.answer_history(query);
            return Ok(());
        }
        self.instance.mailboxes.post_to(owner, ShardMsg::History(query)).map_err(|_| Unavailable)
    }

    /// What a room's history holds after `since` (the history API).
    pub async fn history(
        &self,
        stream: &str,
        since: Option<Since>,
        limit: usize,
    ) -> Result<Recovery, Unavailable> {
        match &self.bus {
            Bus::Local => {
                let (tx, rx) = futures_channel::oneshot::channel();
                let reply = HistoryReply::Api(tx);
                self.ask_history(HistoryQuery { stream: stream.to_owned(), since, limit, reply })?;
                rx.await.map_err(|_| Unavailable)
            }
            Bus::Redis { publisher, history: Some(history), .. } => {
                let metrics = &self.instance.metrics;
                history.recover(publisher, metrics, stream, since.as_ref(), limit).await
            }
            Bus::Redis { history: None, .. } => Err(Unavailable),
        }
    }

    /// As the room's owner: what its history holds after `since`.
    pub fn answer_history(&self, query: HistoryQuery) {
        let HistoryQuery { stream, since, limit, reply } = query;
        let Some(store) = &self.history else { return };
        let recovery = store.borrow().recover(&stream, since.as_ref(), limit, Instant::now());
        match reply {
            HistoryReply::Api(tx) => {
                let _ = tx.send(recovery);
            }
            HistoryReply::Subscribe { from, ticket } if from == self.id => {
                self.recovered(ticket, Ok(recovery))
            }
            HistoryReply::Subscribe { from, ticket } => {
                let msg = ShardMsg::Recovered { ticket, recovery };
                if self.instance.mailboxes.post_to(from, msg).is_err() {
                    self.instance.metrics.dropped(DropReason::InboxFull);
                }
            }
        }
    }

    /// The room's answer to a subscribe, in the order of the room's events:
    /// the session joins (if it is not in the room yet), then gets
    /// `subscribed` and the events after `since` that it may see and has not
    /// had live, oldest first.
    pub fn recovered(&self, ticket: Ticket, answer: Result<Recovery, Unavailable>) {
        let Some(pending) = self.pending.borrow_mut().try_remove(ticket.0) else { return };
        let Some(session) = pending.session.upgrade() else { return };
        let recovery = match answer {
            Ok(recovery) => recovery,
            Err(e) => {
                let message = format!("{e}: the room's history cannot be read now; subscribe again");
                return self.queue(&session, protocol::error(ErrorCode::Unavailable, &message));
            }
        };
        let latest = Mark::of(&recovery.position);
        let (live_from, joined) = match self.live_from(&session, &pending.room, latest) {
            Some(live_from) => (live_from, false),
            None => match self.join(&session, &pending.room, latest) {
                Ok(joined) => (latest.offset + 1, joined),
                Err(e) => return self.queue(&session, e.frame(&pending.requested)),
            },
        };
        let asked = pending.since.is_some();
        let (recovered, replay) = match asked && recovery.recovered {
            true => replay(&session, &recovery, live_from),
            false => (recovery.recovered, Vec::new()),
        };
        if asked {
            self.instance.metrics.recovery(recovered);
        }
        let answer =
            protocol::subscribed(&pending.requested, Some(&recovery.position), asked.then_some(recovered));
        self.queue(&session, answer);
        for frame in replay {
            self.queue(&session, frame);
        }
        if joined {
            self.member_joined(&pending.room, &session.identity);
        }
    }

    /// The session's subscribes to `room` still waiting for their answer are
    /// given up: an unsubscribe sent after them is the client's last word,
    /// and their answer, which comes later, must not join it again.
    pub(super) fn give_up_pending(&self, session: &SessionHandle, room: &str) {
        self.pending
            .borrow_mut()
            .retain(|_, pending| !(pending.room == room && std::ptr::eq(pending.session.as_ptr(), session)));
    }

    /// `None` when the session is not in the room; otherwise the offset from
    /// which it has had live the events of the room's epoch at `latest`.
    /// Offsets of another epoch say nothing of this one's: a session that
    /// joined in an earlier epoch has been in the room for all of this one,
    /// and one that had no event of this epoch live yet, in a room it is
    /// always in, had none before `latest`.
    fn live_from(&self, session: &SessionHandle, room: &str, latest: Mark) -> Option<u64> {
        if let Some(slot) = room::implicit_slot(&session.identity, room) {
            return Some(match session.first_live(slot) {
                Some(first) if first.epoch == latest.epoch => first.offset,
                _ => latest.offset + 1,
            });
        }
        let joined = self.index.borrow().joined_at(session, room)?;
        Some(if joined.epoch == latest.epoch { joined.offset + 1 } else { 1 })
    }

    /// Forgets the rooms that went `HISTORY_TTL` without an event, and the
    /// subscribes whose answer was lost (an inbox that was full): their
    /// clients are told to subscribe again.
    pub fn sweep_history(&self, now: Instant) {
        if let Some(store) = &self.history {
            store.borrow_mut().expire(now);
            self.count_history();
        }
        let mut lost = Vec::new();
        self.pending.borrow_mut().retain(|_, pending| {
            let waiting = now.saturating_duration_since(pending.asked) < ANSWER_LOST_AFTER;
            if let (false, Some(session)) = (waiting, pending.session.upgrade()) {
                lost.push((session, SubscribeError::Unavailable.frame(&pending.requested)));
            }
            waiting
        });
        for (session, frame) in lost {
            self.queue(&session, frame);
        }
    }

    fn count_history(&self) {
        if let Some(store) = &self.history {
            let (events, bytes) = store.borrow().size();
            self.metrics.history_events.set(events as i64);
            self.metrics.history_bytes.set(bytes as i64);
        }
    }
}

/// The frames of the events the session missed and may see, before those it
/// had live. A replay that would take more than half of what is left of the
/// session's queue is not sent (`false`: the client reloads the room
/// instead of being closed as slow).
fn replay(session: &SessionHandle, recovery: &Recovery, live_from: u64) -> (bool, Vec<Utf8Bytes>) {
    let frames: Vec<Utf8Bytes> = recovery
        .events
        .iter()
        .filter(|e| e.position.as_ref().is_some_and(|p| p.offset < live_from))
        .filter(|e| session.may_see(e))
        .map(|e| e.frame.clone())
        .collect();
    let bytes: usize = frames.iter().map(|frame| frame.len()).sum();
    match bytes <= session.room_left() / 2 {
        true => (true, frames),
        false => (false, Vec::new()),
    }
}
