//! The per-core owner. A [`Shard`] is created on its executor's thread and
//! never leaves it (`Rc`, `RefCell`: `!Send` by construction); it alone holds
//! its sessions and their rooms. Other threads reach it only through its
//! [`inbox`].
//!
//! - `runtime`: executors, the accept loop, the inbox loop, shutdown;
//! - `listener`: the SO_REUSEPORT sockets, built with socket2;
//! - `inbox`: crossbeam channel + doorbell;
//! - `backlog`: bytes each shard owes its clients, and publishers' wait;
//! - `index`: sessions, room → members, user → sessions;
//! - `keepalive`: server pings and the read timeout.

pub mod backlog;
pub mod inbox;
pub mod index;
pub mod keepalive;
pub mod listener;
pub mod runtime;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use async_tungstenite::tungstenite::Utf8Bytes;

use crate::bus::Bus;
use crate::event::{Audience, Event};
use crate::gateway::close::CloseReason;
use crate::gateway::handle::{Push, SessionHandle};
use crate::instance::Instance;
use crate::metrics::ShardMetrics;
use crate::room::{self, JoinError};
use index::{Index, SessionKey, TooManyRooms};

/// Which shard: `0..SHARDS`, the index into the instance's mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardId(usize);

impl ShardId {
    pub fn new(index: usize) -> Self {
        Self(index)
    }

    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    TooMany(#[from] TooManyRooms),
    #[error("every connection stays in room \"all\"")]
    LeaveAll,
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
    index: RefCell<Index>,
}

impl Shard {
    pub fn new(id: ShardId, instance: &'static Instance) -> Self {
        Self {
            id,
            instance,
            bus: Bus::new(&instance.config),
            metrics: instance.metrics.shard(id.index()),
            index: RefCell::new(Index::default()),
        }
    }

    /// Adds a session; every session is in the room `all` by being here.
    pub fn register(&self, handle: Rc<SessionHandle>) -> SessionKey {
        self.metrics.connections.inc();
        self.index.borrow_mut().insert(handle)
    }

    /// Removes a session. Nothing is queued to it from here on, so what it
    /// still holds will never be written: it no longer counts as owed.
    pub fn unregister(&self, key: SessionKey) {
        let removed = self.index.borrow_mut().remove(key);
        if let Some(session) = removed {
            self.metrics.connections.dec();
            self.instance.backlogs.remove(self.id, session.queued_bytes());
        }
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

    /// Subscribes the session to the room it asked for (SPEC §3).
    pub fn subscribe(&self, session: &Rc<SessionHandle>, requested: &str) -> Result<(), SubscribeError> {
        let room = room::room_to_join(&session.identity, requested)?;
        if room != room::ALL {
            self.index.borrow_mut().join(session, &room)?;
        }
        Ok(())
    }

    pub fn unsubscribe(&self, session: &SessionHandle, requested: &str) -> Result<(), SubscribeError> {
        let room = room::room_to_join(&session.identity, requested)?;
        if room == room::ALL {
            return Err(SubscribeError::LeaveAll);
        }
        self.index.borrow_mut().leave(session, &room);
        Ok(())
    }

    /// Queues the event to every local session in its audience. The frame is
    /// copied once into this shard's memory so that the per-recipient
    /// reference counts stay on this core.
    pub fn deliver(&self, event: &Event) {
        let frame = Utf8Bytes::from(event.frame.as_str().to_owned());
        let index = self.index.borrow();
        let mut fanout = Fanout::default();
        match &event.audience {
            Audience::Everyone => index.sessions().for_each(|s| fanout.offer(s, &frame)),
            Audience::Room(room) => index.members(room).iter().for_each(|s| fanout.offer(s, &frame)),
            Audience::User(user) => index.user_sessions(user).iter().for_each(|s| fanout.offer(s, &frame)),
            Audience::UserInRoom { user, room } => index
                .user_sessions(user)
                .iter()
                .filter(|s| index.is_member(s, room))
                .for_each(|s| fanout.offer(s, &frame)),
        }
        self.instance.backlogs.add(self.id, fanout.queued as usize * frame.len());
        let metrics = &self.instance.metrics;
        metrics.deliveries.inc_by(fanout.queued);
        self.metrics.deliveries.inc_by(fanout.queued);
        if fanout.slow > 0 {
            metrics.slow_client_closes.inc_by(fanout.slow);
        }
    }
}

/// Counts of one event's delivery on one shard, added to the shared
/// counters once.
#[derive(Default)]
struct Fanout {
    queued: u64,
    slow: u64,
}

impl Fanout {
    fn offer(&mut self, session: &SessionHandle, frame: &Utf8Bytes) {
        match session.push(frame.clone()) {
            Push::Queued => self.queued += 1,
            Push::Overflow => self.slow += 1,
            Push::Closing => {}
        }
    }
}
