//! The shard's side of a session: what the shard may ask of a connection
//! (queue a frame, send a ping, close) without touching its socket. The
//! session task (in the gateway) owns the socket and acts on these signals
//! when woken. Its room memberships are the index's to keep: only this
//! module's parent can change them.
//!
//! Every byte the server holds for the client counts against its
//! `SEND_QUEUE_BYTES`, whatever it is: events waiting in the outbox, events
//! taken for writing, replies and pongs not yet in the socket. A client that
//! sends without reading thus fills only its own queue, and is closed as
//! slow when that is full.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use async_tungstenite::tungstenite::Utf8Bytes;

use crate::auth::Identity;
use crate::close::CloseReason;
use crate::event::Event;
use crate::history::Mark;
use crate::instance::backlog::counted_share;
use crate::room::Implicit;

/// A room of this shard, by its slot in the shard's index (valid while the
/// room has members).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomId(pub(super) u32);

/// One room a session is in, where in the room's member list it sits, and
/// the room's position when it joined (its events after it came live).
#[derive(Debug, Clone, Copy)]
pub struct Membership {
    pub(super) room: RoomId,
    pub(super) slot: u32,
    pub(super) joined_at: Mark,
}

pub struct SessionHandle {
    pub identity: Identity,
    /// Encoded frames waiting for the writer; shared bytes, never copied.
    outbox: RefCell<VecDeque<Utf8Bytes>>,
    /// Bytes in `outbox`; the shard's backlog counts them up to a quarter of
    /// `queue_limit` ([`counted_share`]), so that a client that never reads
    /// weighs no more there than one a quarter behind.
    queued_bytes: Cell<usize>,
    /// Bytes taken by the writer (events, replies, pongs) and not yet flushed
    /// to the socket.
    writing_bytes: Cell<usize>,
    /// `SEND_QUEUE_BYTES`: the most `queued_bytes + writing_bytes` may reach.
    queue_limit: usize,
    /// Set once; the session closes with it at its next wake-up.
    close: Cell<Option<CloseReason>>,
    /// The close frame's text when it is not the reason's own (a disconnect's).
    close_text: Cell<Option<Rc<str>>>,
    ping_due: Cell<bool>,
    /// Whether `token_expiring` was sent for the token's current `exp`.
    expiry_told: Cell<bool>,
    /// The token's `exp` (Unix seconds); a refresh moves it (README, Tokens during a session).
    token_exp: Cell<u64>,
    next_ping: Cell<Instant>,
    /// When the client last sent a frame (any frame, pongs included).
    last_seen: Cell<Instant>,
    waker: RefCell<Option<Waker>>,
    /// The rooms this session is in and its slot in each; kept by the
    /// shard's index.
    memberships: RefCell<Vec<Membership>>,
    /// The first event of `all` and of its own `user:U` that it had live in
    /// the room's current epoch (offset 0: none yet), so that a recovery of
    /// those rooms, which it is always in, replays only what came before.
    first_live: [Cell<Mark>; 2],
    /// Bytes set aside for the replays of its subscribes waiting for Redis.
    replays_reserved: Cell<usize>,
}

/// Bytes of a session's queue set aside for one replay; given back on drop.
pub struct Reserved {
    session: Weak<SessionHandle>,
    pub bytes: usize,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(session) = self.session.upgrade() {
            session.replays_reserved.set(session.replays_reserved.get().saturating_sub(self.bytes));
        }
    }
}

/// What became of a frame offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued; the shard's backlog counts this many more bytes for it (none
    /// once the session counts its whole share).
    Queued(usize),
    /// The session is closing; the frame is not needed.
    Closing,
    /// The queue would pass `SEND_QUEUE_BYTES`: the session is now closing as slow.
    Overflow,
}

/// What woke the session, in the order it should be handled.
pub enum Signal {
    Close(CloseReason),
    Outbound,
    Ping,
}

/// Where a session's token stands at a given second (README, Tokens during a session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTime {
    Valid,
    /// Within the notice, not yet told: the seconds left, told now.
    Expiring(u64),
    Expired,
}

impl SessionHandle {
    pub fn new(identity: Identity, token_exp: u64, queue_limit: usize, first_ping: Instant) -> Self {
        Self {
            identity,
            expiry_told: Cell::new(false),
            token_exp: Cell::new(token_exp),
            outbox: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            writing_bytes: Cell::new(0),
            queue_limit,
            close: Cell::new(None),
            close_text: Cell::new(None),
            ping_due: Cell::new(false),
            next_ping: Cell::new(first_ping),
            last_seen: Cell::new(Instant::now()),
            waker: RefCell::new(None),
            memberships: RefCell::new(Vec::new()),
            first_live: [Cell::new(Mark::default()), Cell::new(Mark::default())],
            replays_reserved: Cell::new(0),
        }
    }

    /// The session had, live, the event at `at` of one of the rooms it is
    /// always in; the first of a new epoch starts the count again.
    pub fn had_live(&self, room: Implicit, at: Mark) {
        let first = &self.first_live[room as usize];
        if first.get().offset == 0 || first.get().epoch != at.epoch {
            first.set(at);
        }
    }

    pub fn first_live(&self, room: Implicit) -> Option<Mark> {
        Some(self.first_live[room as usize].get()).filter(|at| at.offset > 0)
    }

    /// Whether the event would reach this session live: its role, and its
    /// user when it is for one user of a shared room.
    pub fn may_see(&self, event: &Event) -> bool {
        event.role.is_none_or(|role| role == self.identity.role)
            && event.audience.only_user().is_none_or(|user| user == self.identity.user_id)
    }

    /// Bytes the session's queue can still take.
    pub fn room_left(&self) -> usize {
        self.queue_limit.saturating_sub(self.queued_bytes.get() + self.writing_bytes.get())
    }

    /// Sets aside what a replay asked for now may take: half of what the
    /// queue can take beside the replays already asked for, so that however
    /// many a client asks for at once, they fit its queue together.
    pub fn reserve_replay(self: &Rc<Self>) -> Reserved {
        let bytes = self.room_left().saturating_sub(self.replays_reserved.get()) / 2;
        self.replays_reserved.set(self.replays_reserved.get() + bytes);
        Reserved { session: Rc::downgrade(self), bytes }
    }

    /// Queues a frame; a client whose queue would pass the limit is closed as
    /// slow instead.
    pub fn push(&self, frame: Utf8Bytes) -> Push {
        if self.close.get().is_some() {
            return Push::Closing;
        }
        let len = frame.len();
        if !self.fits(len) {
            self.close(CloseReason::SlowClient);
            return Push::Overflow;
        }
        let counted = self.in_backlog();
        self.queued_bytes.set(self.queued_bytes.get() + len);
        let mut outbox = self.outbox.borrow_mut();
        outbox.push_back(frame);
        // Only the first frame needs a wake-up; the writer takes them all.
        let first = outbox.len() == 1;
        drop(outbox);
        if first {
            self.wake();
        }
        Push::Queued(self.in_backlog() - counted)
    }

    /// Whether `bytes` more stay within `SEND_QUEUE_BYTES`.
    fn fits(&self, bytes: usize) -> bool {
        self.queued_bytes.get() + self.writing_bytes.get() + bytes <= self.queue_limit
    }

    /// The bytes the shard's backlog counts for this session.
    pub fn in_backlog(&self) -> usize {
        counted_share(self.queued_bytes.get(), self.queue_limit)
    }

    /// Moves every queued frame into `batch` (which must be empty), for one
    /// batched write; they count against the queue until [`Self::flushed`].
    /// Says how many bytes leave the shard's backlog. The two queues trade
    /// places, so neither allocates again once both have grown to the usual
    /// batch.
    pub fn take_outbound(&self, batch: &mut VecDeque<Utf8Bytes>) -> usize {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut *self.outbox.borrow_mut(), batch);
        let counted = self.in_backlog();
        let taken = self.queued_bytes.replace(0);
        self.writing_bytes.set(self.writing_bytes.get() + taken);
        counted
    }

    /// Counts `bytes` the session writes of its own accord (a reply, a pong)
    /// against the queue; `false`, and the session is closing as slow, when
    /// they do not fit.
    pub fn owe(&self, bytes: usize) -> bool {
        if !self.fits(bytes) {
            self.close(CloseReason::SlowClient);
            return false;
        }
        self.writing_bytes.set(self.writing_bytes.get() + bytes);
        true
    }

    /// Everything taken for writing is in the socket.
    pub fn flushed(&self) {
        self.writing_bytes.set(0);
    }

    /// Asks the session to close; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self.close.get().is_none() {
            self.close.set(Some(reason));
            self.wake();
        }
    }

    /// Asks the session to close with 4003 and `text` (the disconnect API),
    /// unless it is closing already.
    pub fn disconnect(&self, text: Rc<str>) {
        if self.close.get().is_none() {
            self.close_text.set(Some(text));
            self.close(CloseReason::Disconnected);
        }
    }

    /// The close frame's text, when the close reason does not say it.
    pub fn take_close_text(&self) -> Option<Rc<str>> {
        self.close_text.take()
    }

    pub fn ping(&self, next: Instant) {
        self.next_ping.set(next);
        self.ping_due.set(true);
        self.wake();
    }

    /// The token's state at `now` (Unix seconds) with `notice` seconds of
    /// warning; `Expiring` comes once per `exp`, and counts as told.
    pub fn token_time(&self, now: u64, notice: u64) -> TokenTime {
        let exp = self.token_exp.get();
        if now >= exp {
            TokenTime::Expired
        } else if exp - now <= notice && !self.expiry_told.replace(true) {
            TokenTime::Expiring(exp - now)
        } else {
            TokenTime::Valid
        }
    }

    /// A refreshed token: the session goes on until its `exp`.
    pub fn renew(&self, token_exp: u64) {
        self.token_exp.set(token_exp);
        self.expiry_told.set(false);
    }

    pub fn token_exp(&self) -> u64 {
        self.token_exp.get()
    }

    pub fn next_ping(&self) -> Instant {
        self.next_ping.get()
    }

    pub fn last_seen(&self) -> Instant {
        self.last_seen.get()
    }

    pub fn saw_frame(&self) {
        self.last_seen.set(Instant::now());
    }

    pub(super) fn membership(&self, room: RoomId) -> Option<Membership> {
        self.memberships.borrow().iter().copied().find(|m| m.room == room)
    }

    /// The rooms this session is in, besides `all`.
    pub(super) fn room_ids(&self) -> Vec<RoomId> {
        self.memberships.borrow().iter().map(|m| m.room).collect()
    }

    pub(super) fn membership_count(&self) -> usize {
        self.memberships.borrow().len()
    }

    pub(super) fn add_membership(&self, membership: Membership) {
        self.memberships.borrow_mut().push(membership);
    }

    pub(super) fn remove_membership(&self, room: RoomId) -> Option<Membership> {
        let mut memberships = self.memberships.borrow_mut();
        let at = memberships.iter().position(|m| m.room == room)?;
        Some(memberships.swap_remove(at))
    }

    /// The index moved this session to another slot of `room`.
    pub(super) fn move_membership(&self, room: RoomId, slot: u32) {
        if let Some(m) = self.memberships.borrow_mut().iter_mut().find(|m| m.room == room) {
            m.slot = slot;
        }
    }

    pub(super) fn take_memberships(&self) -> Vec<Membership> {
        std::mem::take(&mut *self.memberships.borrow_mut())
    }

    /// Resolves once the session is asked to close.
    pub async fn closing(&self) -> CloseReason {
        poll_fn(|cx| match self.close.get() {
            Some(reason) => Poll::Ready(reason),
            None => {
                self.register(cx);
                Poll::Pending
            }
        })
        .await
    }

    /// The next signal, or `None` after registering `cx` to be woken.
    pub fn poll_signal(&self, cx: &Context<'_>) -> Option<Signal> {
        if let Some(reason) = self.close.get() {
            return Some(Signal::Close(reason));
        }
        if !self.outbox.borrow().is_empty() {
            return Some(Signal::Outbound);
        }
        if self.ping_due.replace(false) {
            return Some(Signal::Ping);
        }
        self.register(cx);
        None
    }

    fn register(&self, cx: &Context<'_>) {
        let mut waker = self.waker.borrow_mut();
        match waker.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
    }

    fn wake(&self) {
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}
