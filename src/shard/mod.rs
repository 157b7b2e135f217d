//! The per-core state. A [`Shard`] is created on its executor's thread and
//! never leaves it (`Rc`, `RefCell`: `!Send` by construction); it alone holds
//! its sessions and their rooms, the receiving side of its inbox and the
//! writers of its own series and backlog. Other threads reach it only
//! through its mailbox.
//!
//! - `handle`: the shard's side of a session (outbound queue, signals);
//! - `history`: rooms' events kept for recovery, and subscribes that wait
//!   for their room's answer;
//! - `index`: sessions, room → members, user → sessions;
//! - `leaving`: `leave`s held back until the member has been gone a while;
//! - `ledger`: first and last sessions per member, and tallied rooms' members;
//! - `presence`: presence queries over the shards, control messages, and
//!   the `join`/`leave` tallies;
//! - `queries`: the presence queries out, shared per room and bounded;
//! - `remote`: with Redis, this shard's presence there (every instance's);
//! - `resync`: with Redis, the rooms told to resync after an outage.

pub mod handle;
mod history;
mod index;
mod leaving;
mod ledger;
mod presence;
mod queries;
mod remote;
mod resync;

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use async_tungstenite::tungstenite::Utf8Bytes;

use crate::auth::{AuthError, KeySet, Role, Verified};
use crate::bus::interest::{Held, InterestWriter};
use crate::bus::local::{Inbox, ShardMsg};
use crate::bus::redis::{ShardLinks, Unavailable};
use crate::bus::Bus;
use crate::close::CloseReason;
use crate::event::{Audience, Event};
use crate::history::{Mark, Since, Store};
use crate::instance::backlog::BacklogWriter;
use crate::instance::{Instance, ShardParts};
use crate::metrics::{DropReason, ShardMetrics};
use crate::protocol::{self, ErrorCode};
use crate::room::{self, Implicit, JoinError};
pub use crate::shard_id::ShardId;
use handle::{Push, Reserved, SessionHandle};
use index::Index;
pub use index::{SessionKey, TooManyRooms, MAX_ROOMS_PER_SESSION};
pub use queries::Busy;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    TooMany(#[from] TooManyRooms),
    #[error("every connection stays in rooms \"all\" and its own \"user:<userId>\"")]
    LeaveAll,
    #[error("the room's history cannot be reached now; subscribe again")]
    Unavailable,
}

impl SubscribeError {
    /// The `error` frame a client gets for its (un)subscribe to `requested`.
    pub fn frame(&self, requested: &str) -> Utf8Bytes {
        match self {
            SubscribeError::Join(JoinError::Forbidden(_)) => protocol::error(
                ErrorCode::Forbidden,
                &format!("room {requested:?} is not allowed for this role"),
            ),
            SubscribeError::Unavailable => protocol::error(ErrorCode::Unavailable, &self.to_string()),
            e => protocol::error(ErrorCode::BadRequest, &e.to_string()),
        }
    }
}

/// How a subscribe was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// Joined: answer `subscribed` now.
    Now,
    /// History is on: `subscribed` is queued once the room's history has
    /// answered (README, History and recovery).
    Later,
}

/// Why a publish was refused; nothing was delivered.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    #[error(transparent)]
    Redis(#[from] Unavailable),
    #[error("the shard that orders this room's events is overloaded")]
    Overloaded,
}

/// One core's state. Borrows of `index` are short and never held across an
/// `.await`.
pub struct Shard {
    pub id: ShardId,
    pub instance: &'static Instance,
    /// How events published on this shard leave it.
    pub bus: Bus,
    /// This shard's own series; nobody else writes them.
    pub metrics: ShardMetrics,
    /// Bytes queued to this shard's clients; nobody else writes it.
    backlog: BacklogWriter,
    inbox: Inbox,
    /// What this shard's sessions listen to, as the other shards read it:
    /// written by its index, and by the subscribes waiting for history.
    interest: Rc<InterestWriter>,
    index: RefCell<Index>,
    /// This shard's copy of the JWKS keys, replaced whole from its inbox.
    /// Borrowed only for one token's check.
    keys: RefCell<KeySet>,
    /// This shard's sessions per member of each room, and the members of
    /// the rooms it tallies: for counts, `join`/`leave` and the presence
    /// kept in Redis.
    ledger: RefCell<ledger::Ledger>,
    /// The `leave`s of the rooms this shard tallies, held back.
    leaving: RefCell<leaving::Leaving>,
    /// The presence queries this shard has out.
    queries: RefCell<queries::Queries>,
    /// With Redis: this shard as presence in Redis knows it.
    entity: Option<crate::bus::redis::presence::Entity>,
    /// Its writes to presence in Redis, held `leave`s included, which a
    /// stopping shard waits for.
    presence_writes: glommio::sync::Gate,
    /// One instance with history on: the history of the rooms this shard
    /// orders.
    history: Option<RefCell<Store>>,
    /// Subscribes waiting for their room's history to answer.
    pending: RefCell<slab::Slab<Pending>>,
}

impl Shard {
    /// The shard made of its parts; its Redis link flags are handed back for
    /// the tasks that own its Redis connections.
    pub fn new(instance: &'static Instance, parts: ShardParts) -> (Self, ShardLinks) {
        let ShardParts { id, inbox, interest, backlog, metrics, redis_links, keys } = parts;
        let interest = Rc::new(interest);
        let shard = Self {
            id,
            instance,
            bus: Bus::new(&instance.config),
            metrics,
            backlog,
            inbox,
            index: RefCell::new(Index::new(interest.clone())),
            interest,
            keys: RefCell::new(keys),
            ledger: RefCell::default(),
            leaving: RefCell::default(),
            queries: RefCell::default(),
            entity: instance
                .config
                .redis
                .as_ref()
                .map(|_| crate::bus::redis::presence::Entity::new(&instance.config.redis_prefix)),
            presence_writes: glommio::sync::Gate::new(),
            history: local_history(instance, id),
            pending: RefCell::default(),
        };
        (shard, redis_links)
    }

    /// Waits for messages from other threads and moves up to `max` into
    /// `batch`.
    pub async fn recv_inbox(&self, batch: &mut Vec<ShardMsg>, max: usize) {
        self.inbox.recv_batch(batch, max).await;
    }

    /// Checks a client's token against the instance's keys and this shard's
    /// key set; a `kid` not in the set asks for a fresh one.
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let result = self.instance.verifier.verify(token, &self.keys.borrow());
        if result == Err(AuthError::UnknownKid) {
            self.instance.jwks.ask();
        }
        result
    }

    /// A new key set from the JWKS fetcher.
    pub fn replace_keys(&self, keys: KeySet) {
        *self.keys.borrow_mut() = keys;
    }

    /// Whether rooms' events are kept and subscribes wait for their room's
    /// history (README, History and recovery).
    fn keeps_history(&self) -> bool {
        self.instance.config.history_size > 0
    }

    /// The shard that owns a room's order: its events' sequence and history
    /// (one instance), its member tally (`PRESENCE_EVENTS`).
    pub(crate) fn owner_of(&self, room: &str) -> ShardId {
        use std::hash::{DefaultHasher, Hash, Hasher};
        // SipHash with fixed keys: every shard of the process agrees.
        let mut hasher = DefaultHasher::new();
        room.hash(&mut hasher);
        ShardId::new((hasher.finish() % self.instance.shard_count() as u64) as usize)
    }

    /// Queues one frame of the server's own to a session, counted as owed
    /// like an event's.
    pub fn queue(&self, session: &SessionHandle, frame: Utf8Bytes) {
        let mut fanout = Fanout { frame, ..Fanout::default() };
        fanout.offer(session);
        self.settle(&fanout);
    }

    /// Adds a session; every session is in the room `all` by being here.
    pub fn register(&self, handle: Rc<SessionHandle>) -> SessionKey {
        self.metrics.connections.inc();
        self.member_joined(room::ALL, &handle.identity);
        self.index.borrow_mut().insert(handle)
    }

    /// Removes a session. Nothing is queued to it from here on, so what it
    /// still holds will never be written: it no longer counts as owed.
    pub fn unregister(&self, key: SessionKey) {
        let rooms = {
            let index = self.index.borrow();
            let mut rooms = index.session(key).map(|session| index.rooms_of(session)).unwrap_or_default();
            rooms.push(Rc::from(room::ALL));
            rooms
        };
        let removed = self.index.borrow_mut().remove(key);
        if let Some(session) = removed {
            self.metrics.connections.dec();
            self.backlog.remove(session.in_backlog());
            rooms.iter().for_each(|room| self.member_left(room, &session.identity));
        }
    }

    /// Removes every session still registered (a drain that timed out), so
    /// that nothing is left to unregister when their tasks are dropped with
    /// the executor: unregistering may spawn work (presence in Redis), which
    /// only a running executor can take.
    pub fn forget_sessions(&self) {
        let keys = self.index.borrow().keys();
        keys.into_iter().for_each(|key| self.unregister(key));
    }

    /// `bytes` of the backlog are no longer owed by this shard's writers:
    /// taken for writing.
    pub fn release_backlog(&self, bytes: usize) {
        self.backlog.remove(bytes);
    }

    pub fn session_count(&self) -> usize {
        self.index.borrow().len()
    }

    /// Visits every session. `visit` must not register or unregister.
    pub fn for_each_session(&self, mut visit: impl FnMut(&SessionHandle)) {
        for session in self.index.borrow().sessions() {
            visit(session);
        }
    }

    /// Asks every session to close with `reason`.
    pub fn close_all(&self, reason: CloseReason) {
        self.for_each_session(|s| s.close(reason));
    }

    /// Subscribes the session to the room it asked for (README, Client protocol); with
    /// history on, once its room's history has answered.
    pub fn subscribe(
        &self,
        session: &Rc<SessionHandle>,
        requested: &str,
        since: Option<Since>,
    ) -> Result<Subscribed, SubscribeError> {
        crate::fault::panic_on(requested);
        let room = room::room_to_join(&session.identity, requested)?;
        if self.keeps_history() {
            self.subscribe_in_order(session, requested, room, since)?;
            return Ok(Subscribed::Later);
        }
        if self.join(session, &room, Mark::default())? {
            self.member_joined(&room, &session.identity);
        }
        Ok(Subscribed::Now)
    }

    /// Joins the room, at its position `at`, unless the session is always in
    /// it; `true` when the session is new to the room (its presence is for
    /// the caller to announce, after what it queues to the session itself).
    fn join(&self, session: &Rc<SessionHandle>, room: &str, at: Mark) -> Result<bool, SubscribeError> {
        let implicit = room::implicit_slot(&session.identity, room).is_some();
        Ok(!implicit && self.index.borrow_mut().join(session, room, at)?)
    }

    pub fn unsubscribe(&self, session: &SessionHandle, requested: &str) -> Result<(), SubscribeError> {
        let room = room::room_to_join(&session.identity, requested)?;
        if room::implicit_slot(&session.identity, &room).is_some() {
            return Err(SubscribeError::LeaveAll);
        }
        self.give_up_pending(session, &room);
        if self.index.borrow_mut().leave(session, &room) {
            self.member_left(&room, &session.identity);
        }
        Ok(())
    }

    /// Sends the event on its way to every session that should get it, on
    /// every shard (and, with Redis, every instance). Fails, with nothing
    /// delivered, while any of the instance's Redis links is down.
    pub async fn publish(&self, event: Event) -> Result<(), PublishError> {
        match &self.bus {
            Bus::Local if self.keeps_history() => self.publish_in_order(event)?,
            Bus::Local => self.publish_locally(Arc::new(event)),
            Bus::Redis { publisher, channels, history, .. } => {
                // Another shard's subscriber being down would lose the event
                // for that shard's sessions: refuse it rather than answer 202.
                if self.instance.redis_connected() == Some(false) {
                    return Err(PublishError::Redis(Unavailable));
                }
                let started = Instant::now();
                let channel = channels.for_room(event.room.as_deref());
                match history {
                    Some(history) => {
                        let metrics = &self.instance.metrics;
                        history
                            .publish(publisher, metrics, &event.stream(), channel, event.frame.as_str())
                            .await?;
                    }
                    None => publisher.publish(channel, event.frame.as_str()).await?,
                }
                self.metrics.redis_publish.observe(started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    /// Hands the event to every other shard's inbox and delivers it here.
    fn publish_locally(&self, event: Arc<Event>) {
        let full = self.instance.mailboxes.post_to_others(self.id, &event);
        for _ in 0..full {
            self.instance.metrics.dropped(DropReason::InboxFull);
        }
        self.deliver(&event);
    }

    /// Queues the event to every local session in its audience. The frame is
    /// copied once into this shard's memory so that the per-recipient
    /// reference counts stay on this core.
    pub fn deliver(&self, event: &Event) {
        let frame = Utf8Bytes::from(event.frame.as_str().to_owned());
        let index = self.index.borrow();
        let mut fanout = Fanout { frame, role: event.role, ..Fanout::default() };
        let at = event.position.as_ref().map(Mark::of);
        let implicit = |room| at.map(|at| (room, at));
        match &event.audience {
            Audience::Everyone => {
                fanout.implicit = implicit(Implicit::All);
                index.sessions().for_each(|s| fanout.offer(s));
            }
            Audience::Room(room) => index.members(room).iter().for_each(|s| fanout.offer(s)),
            Audience::User(user) => {
                fanout.implicit = implicit(Implicit::All);
                index.user_sessions(user).iter().for_each(|s| fanout.offer(s));
            }
            Audience::Personal(user) => {
                fanout.implicit = implicit(Implicit::User);
                index.user_sessions(user).iter().for_each(|s| fanout.offer(s));
                fanout.implicit = None;
                // Admins watching the room; the user's own sessions are in it
                // without joining.
                index.members(&room::personal_user_room(user)).iter().for_each(|s| fanout.offer(s));
            }
            Audience::UserInRoom { user, room } => index
                .user_sessions(user)
                .iter()
                .filter(|s| index.is_member(s, room))
                .for_each(|s| fanout.offer(s)),
        }
        self.settle(&fanout);
        self.instance.metrics.deliveries.inc_by(fanout.queued);
        self.metrics.deliveries.inc_by(fanout.queued);
    }

    /// What a fan-out owes the backlog, and the clients it closed as slow.
    fn settle(&self, fanout: &Fanout) {
        self.backlog.add(fanout.counted);
        if fanout.slow > 0 {
            self.instance.metrics.slow_client_closes.inc_by(fanout.slow);
        }
    }
}

/// One instance with history on: the history of the rooms this shard
/// orders, its epochs named for this start and shard.
fn local_history(instance: &Instance, id: ShardId) -> Option<RefCell<Store>> {
    let config = &instance.config;
    if config.history_size == 0 || config.redis.is_some() {
        return None;
    }
    let start = ulid::Ulid::new().to_string();
    let prefix = format!("{}{}-", &start[start.len() - 8..], id.index());
    Some(RefCell::new(Store::new(config.history_size, config.history_ttl, prefix)))
}

/// A subscribe waiting for its room's answer.
struct Pending {
    asked: Instant,
    session: Weak<SessionHandle>,
    /// The room as the client named it, for the answer.
    requested: String,
    room: String,
    since: Option<Since>,
    /// The room is held from before the question until the session has
    /// joined, so that the events after the answer are posted here.
    _held: Held,
    /// With Redis and `since`: what the replay may take of the session's
    /// queue, set aside until the answer comes.
    replay: Option<Reserved>,
}

/// One event's delivery on one shard: the role it is for, if any, and its
/// counts, added to the shared counters and the backlog once.
#[derive(Default)]
struct Fanout {
    role: Option<Role>,
    /// When the event is of a room the sessions offered are always in, and
    /// kept: that room and the event's place in it.
    implicit: Option<(Implicit, Mark)>,
    frame: Utf8Bytes,
    queued: u64,
    slow: u64,
    /// Bytes the backlog gains.
    counted: usize,
}

impl Fanout {
    fn offer(&mut self, session: &SessionHandle) {
        if self.role.is_some_and(|role| role != session.identity.role) {
            return;
        }
        match session.push(self.frame.clone()) {
            Push::Queued(counted) => {
                self.queued += 1;
                if let Some((room, at)) = self.implicit {
                    session.had_live(room, at);
                }
                self.counted += counted;
            }
            Push::Overflow => self.slow += 1,
            Push::Closing => {}
        }
    }
}
