//! Presence on the shards (README, Presence and control): a shard answers for its own sessions
//! from its room index (counts cost nothing to work out; members, asked for,
//! cost the room's members here, never every connection), asks the other shards through their inboxes and merges the
//! answers; control messages (disconnect) reach every shard the same way, or
//! through Redis. Each room has a tally shard (by a hash of its name) that
//! counts, per member, the shards holding one of its sessions there: it
//! knows the room's members overall (so counts need no member list) and,
//! with `PRESENCE_EVENTS`, publishes `join` on 0 → 1 and `leave` on 1 → 0.
//! The operator page's busiest rooms are asked of the shards the same way.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use tracing::warn;

use super::handle::SessionHandle;
use super::ledger::{is_edge, Count, Seat};
use super::queries::{self, Busy, SharedPresence, Turn};
use super::{Shard, ShardId};
use crate::auth::Identity;
use crate::bus::local::{ShardMsg, TallyChange};
use crate::bus::redis::Unavailable;
use crate::bus::Bus;
use crate::metrics::{DropReason, PresenceKind};
use crate::presence::{
    self, Answer, Control, Member, Query, RoomAnswer, RoomPresence, RoomSize, UserPresence,
};
use crate::room;

/// How long a query waits for the other shards (each answers from memory,
/// in microseconds, unless its executor is stuck).
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a tally shard looks for held leaves that fell due.
const LEAVES_EVERY: Duration = Duration::from_millis(250);

/// The first [`presence::MAX_MEMBERS`] members, their connections summed.
fn first_members<'a>(sessions: impl Iterator<Item = &'a Rc<SessionHandle>>) -> Vec<Member> {
    let seats = sessions.map(|s| (s.identity.user_id.as_str(), s.identity.role));
    presence::first_members(seats, presence::MAX_MEMBERS)
}

impl Shard {
    /// This shard's own answer, from its index (and, for the rooms it
    /// tallies, the members overall).
    pub fn answer(&self, query: &Query) -> Answer {
        let index = self.index.borrow();
        match query {
            Query::Room { room, members } => {
                let all = room == room::ALL;
                let connections = if all { index.len() } else { index.members(room).len() } as u64;
                let users = (self.owner_of(room) == self.id).then(|| self.ledger.borrow().members(room));
                let members = match (members, all) {
                    (false, _) => Vec::new(),
                    (true, true) => first_members(index.sessions()),
                    (true, false) => first_members(index.members(room).iter()),
                };
                Answer::Room(RoomAnswer { connections, users, members })
            }
            Query::User(user) => {
                let sessions = index.user_sessions(user);
                let mut rooms: Vec<String> =
                    sessions.iter().flat_map(|s| index.rooms_of(s)).map(|name| name.to_string()).collect();
                rooms.sort_unstable();
                rooms.dedup();
                Answer::User { connections: sessions.len() as u32, rooms }
            }
            Query::Busiest(limit) => Answer::Busiest(presence::biggest(
                index
                    .rooms()
                    // `all` is everyone, and a personal room one user.
                    .filter(|(name, _)| presence::has_presence_events(name))
                    .map(|(name, members)| (name, members.len() as u64)),
                *limit,
            )),
        }
    }

    /// Whether `session` is in `room` (every session is in `all`).
    pub fn is_member(&self, session: &SessionHandle, room: &str) -> bool {
        room == room::ALL || self.index.borrow().is_member(session, room)
    }

    /// With Redis, every instance's answer from there; otherwise (or while
    /// Redis cannot answer) every shard's of this instance: this one's, and
    /// the others' through their inboxes (an inbox that is full or a shard that does not answer within
    /// [`QUERY_TIMEOUT`] is left out, and logged).
    async fn gather(&self, query: Query) -> Vec<Answer> {
        if let Some(answer) = self.answer_from_redis(&query).await {
            return vec![answer];
        }
        self.gather_here(query).await
    }

    /// Every shard's answer of this instance.
    async fn gather_here(&self, query: Query) -> Vec<Answer> {
        let mailboxes = &self.instance.mailboxes;
        let mut waiting = Vec::with_capacity(mailboxes.len());
        for other in (0..mailboxes.len()).map(ShardId::new).filter(|&s| s != self.id) {
            let (reply, answer) = oneshot::channel();
            match mailboxes.post_to(other, ShardMsg::Presence { query: query.clone(), reply }) {
                Ok(()) => waiting.push(answer),
                Err(_) => self.instance.metrics.dropped(DropReason::InboxFull),
            }
        }
        let mut answers = vec![self.answer(&query)];
        let asked = waiting.len();
        let collect = async {
            for answer in waiting {
                if let Ok(answer) = answer.await {
                    answers.push(answer);
                }
            }
            Ok(())
        };
        if glommio::timer::timeout(QUERY_TIMEOUT, collect).await.is_err() || answers.len() <= asked {
            warn!(asked = asked + 1, answered = answers.len(), "a presence query went without some shards");
        }
        answers
    }

    /// Who is in `room` (already resolved: `cart:V`), on every shard: the
    /// counts, and with `members` the first members. Shares the answer of
    /// the same query already out on this shard.
    pub async fn room_presence(&self, room: &str, members: bool) -> Result<Rc<SharedPresence>, Busy> {
        let key = (room.to_owned(), members);
        let gathering = loop {
            match queries::room(&self.queries, key.clone())? {
                Turn::Wait(answer) => {
                    if let Ok(presence) = answer.await {
                        self.instance.metrics.presence.queried(PresenceKind::Room);
                        return Ok(presence);
                    }
                }
                Turn::Gather(gathering) => break gathering,
            }
        };
        let started = Instant::now();
        let answers = self.gather(Query::Room { room: key.0, members }).await;
        let merged =
            Rc::new(SharedPresence::new(RoomPresence::merge(answers.into_iter().filter_map(|answer| {
                match answer {
                    Answer::Room(room) => Some(room),
                    _ => None,
                }
            }))));
        gathering.answered(&merged);
        self.observe_query(PresenceKind::Room, started);
        Ok(merged)
    }

    /// Where `user` is connected, on every shard.
    pub async fn user_presence(&self, user: &str) -> Result<UserPresence, Busy> {
        let _gathering = queries::user(&self.queries)?;
        let started = Instant::now();
        let answers = self.gather(Query::User(user.to_owned())).await;
        let merged = UserPresence::merge(
            user,
            answers.into_iter().filter_map(|answer| match answer {
                Answer::User { connections, rooms } => Some((connections, rooms)),
                _ => None,
            }),
        );
        self.observe_query(PresenceKind::User, started);
        Ok(merged)
    }

    /// The `limit` rooms of this instance with the most sessions (`all` and
    /// personal rooms left out), for the operator page: each shard picks its
    /// own `limit` biggest from its room index, through its inbox like any
    /// presence query.
    pub async fn busiest_rooms(&self, limit: usize) -> Vec<RoomSize> {
        let answers = self.gather_here(Query::Busiest(limit)).await;
        presence::merge_busiest(
            answers.into_iter().filter_map(|answer| match answer {
                Answer::Busiest(rooms) => Some(rooms),
                _ => None,
            }),
            limit,
        )
    }

    fn observe_query(&self, kind: PresenceKind, started: Instant) {
        let metrics = &self.instance.metrics.presence;
        metrics.queried(kind);
        metrics.query_seconds.observe(started.elapsed().as_secs_f64());
    }

    /// Acts on a control message for this shard's own sessions.
    pub fn control(&self, control: &Control) {
        match control {
            Control::Disconnect { user_id, reason } => {
                let text: Rc<str> = Rc::from(reason.as_str());
                let index = self.index.borrow();
                let sessions = index.user_sessions(user_id);
                sessions.iter().for_each(|s| s.disconnect(text.clone()));
                self.instance.metrics.presence.disconnected_sessions.inc_by(sessions.len() as u64);
            }
        }
    }

    /// Sends a control message to every shard of this instance, and with
    /// Redis of every instance (through the control channel, which every
    /// shard's subscriber receives, and its log, which a subscriber that was
    /// away catches up from).
    pub async fn send_control(&self, control: Control) -> Result<(), Unavailable> {
        match &self.bus {
            Bus::Local => {
                let control = Arc::new(control);
                let mailboxes = &self.instance.mailboxes;
                for other in (0..mailboxes.len()).map(ShardId::new).filter(|&s| s != self.id) {
                    if mailboxes.post_to(other, ShardMsg::Control(control.clone())).is_err() {
                        self.instance.metrics.dropped(DropReason::InboxFull);
                    }
                }
                self.control(&control);
            }
            Bus::Redis { publisher, channels, .. } => {
                crate::bus::redis::control::send(publisher, channels, &control.encode()).await?;
            }
        }
        Ok(())
    }

    /// A session joined `room`: a member's first session here is told to
    /// the room's tally shard (and, with Redis, every change is written there).
    pub(super) fn member_joined(&self, room: &str, identity: &Identity) {
        self.member_moved(room, identity, true);
    }

    /// A session left `room` (or closed): a member's last one here is told.
    pub(super) fn member_left(&self, room: &str, identity: &Identity) {
        self.member_moved(room, identity, false);
    }

    fn member_moved(&self, room: &str, identity: &Identity, joined: bool) {
        let seat = (room.to_owned(), identity.user_id.clone(), identity.role);
        let Some(count) = self.ledger.borrow_mut().count(Count::Sessions, seat, joined) else { return };
        let edge = is_edge(count, joined);
        if let Some(entity) = &self.entity {
            let events = self.instance.config.presence_events && presence::has_presence_events(room);
            self.write_seat(entity, room, identity, count, events && edge);
        }
        // With Redis too: the instance answers alone while Redis cannot.
        if edge {
            self.tell_tally(room, identity, joined);
        }
    }

    fn tell_tally(&self, room: &str, identity: &Identity, joined: bool) {
        let change = TallyChange {
            room: room.to_owned(),
            user_id: identity.user_id.clone(),
            role: identity.role,
            joined,
        };
        let tally = self.owner_of(room);
        if tally == self.id {
            self.tally(change);
        } else if self.instance.mailboxes.post_to(tally, ShardMsg::Tally(change)).is_err() {
            self.instance.metrics.dropped(DropReason::InboxFull);
        }
    }

    /// Counts a shard's first or last session of a member in a room this
    /// shard tallies; the room's first overall is published, its last held
    /// back (see `leaving`).
    pub fn tally(&self, change: TallyChange) {
        let TallyChange { room, user_id, role, joined } = change;
        let seat = (room, user_id, role);
        let overall = self.ledger.borrow_mut().count(Count::Shards, seat.clone(), joined);
        let events = self.instance.config.presence_events && presence::has_presence_events(&seat.0);
        // With Redis, its script publishes them, over every instance.
        if !events || self.entity.is_some() || overall.is_none_or(|count| !is_edge(count, joined)) {
            return;
        }
        if !joined {
            self.leaving.borrow_mut().hold(seat, Instant::now());
        } else if !self.leaving.borrow_mut().back(&seat) {
            self.announce(&seat, true);
        }
    }

    /// Sends the leaves held for `presence::LEAVE_GRACE` of members still gone,
    /// for as long as the shard runs (with `PRESENCE_EVENTS`, without Redis).
    pub async fn announce_leaves(self: Rc<Self>) {
        if !self.instance.config.presence_events || self.entity.is_some() {
            return;
        }
        loop {
            glommio::timer::sleep(LEAVES_EVERY).await;
            let due = self.leaving.borrow_mut().due(Instant::now());
            due.iter().for_each(|seat| self.announce(seat, false));
        }
    }

    fn announce(&self, (room, user_id, role): &Seat, joined: bool) {
        match presence::membership_event(room, user_id, *role, joined) {
            Ok(event) => {
                self.instance.metrics.presence.event(joined);
                self.publish_locally(std::sync::Arc::new(event));
            }
            Err(e) => warn!(error = %e, "cannot encode a presence event"),
        }
    }
}
