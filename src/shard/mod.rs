//! The per-core owner. A [`Shard`] is created on its executor's thread and
//! never leaves it (`Rc`, `RefCell`: `!Send` by construction); it alone holds
//! its sessions. Other threads reach it only through its [`inbox`].
//!
//! - `runtime`: executors, the accept loop, the inbox loop, shutdown;
//! - `listener`: the SO_REUSEPORT sockets, built with socket2;
//! - `inbox`: crossbeam channel + doorbell;
//! - `keepalive`: server pings and the read timeout.

pub mod inbox;
pub mod keepalive;
pub mod listener;
pub mod runtime;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use prometheus_client::metrics::gauge::Gauge;
use slab::Slab;

use crate::gateway::close::CloseReason;
use crate::gateway::handle::SessionHandle;
use crate::instance::Instance;

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

/// A session's place in its shard's registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey(usize);

/// One core's state. Borrows of `sessions` are short and never held across
/// an `.await`.
pub struct Shard {
    pub id: ShardId,
    pub instance: &'static Instance,
    sessions: RefCell<Slab<Rc<SessionHandle>>>,
    connections: Gauge,
}

impl Shard {
    pub fn new(id: ShardId, instance: &'static Instance) -> Self {
        Self {
            id,
            instance,
            sessions: RefCell::new(Slab::new()),
            connections: instance.metrics.shard_connections(id.index()),
        }
    }

    /// Adds a session; every session is in the room `all` by being here.
    pub fn register(&self, handle: Rc<SessionHandle>) -> SessionKey {
        self.connections.inc();
        SessionKey(self.sessions.borrow_mut().insert(handle))
    }

    pub fn unregister(&self, key: SessionKey) {
        if self.sessions.borrow_mut().try_remove(key.0).is_some() {
            self.connections.dec();
        }
    }

    pub fn session_count(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Visits every session. `visit` must not register or unregister.
    pub fn for_each_session(&self, mut visit: impl FnMut(&SessionHandle)) {
        for (_, handle) in self.sessions.borrow().iter() {
            visit(handle);
        }
    }

    /// Asks every session to close with `reason`.
    pub fn close_all(&self, reason: CloseReason) {
        self.for_each_session(|s| s.close(reason));
    }
}
