//! Which streams a shard's sessions may be listening to, for the shards
//! that post events to it: a targeted event wakes only the shards that may
//! have a recipient, not every shard. At a million connections on 16 shards
//! a `send` to one user would otherwise wake all 16.
//!
//! Each shard has an [`Interest`]: a counting filter over stream names (a
//! room, or `user:U` for a user's own sessions), written by that shard alone
//! through its [`InterestWriter`] and read by publishers on any thread. Two
//! slots per name, one byte each: a name the shard holds always reads as
//! held; one it does not hold reads as held only when both its slots are
//! shared with names it holds (a wasted wake-up, nothing lost). A slot that
//! reaches 255 stays there.
//!
//! A shard holds a stream from before it can deliver on it (a user's first
//! session, a room's first member, a subscribe waiting for its room's
//! history) until after; the write comes before the shard says so to anyone
//! (`connected`, a history query), and a publisher reads it after, so no
//! event the shard should get is skipped.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Slots per shard: 128 KiB, for about a 2% false-positive rate with 10,000
/// streams held and 36% with 60,000 (a million connections on 16 shards).
const SLOTS: usize = 1 << 17;
const SATURATED: u8 = u8::MAX;

/// The read side of one shard's filter.
pub struct Interest {
    counts: Box<[AtomicU8]>,
}

/// The write side, owned by the shard's executor. Not `Clone`: one writer.
pub struct InterestWriter {
    interest: Arc<Interest>,
}

/// A stream name's two slots, worked out once for every filter it is looked
/// up in: two halves of one SipHash with fixed keys, so that every thread
/// agrees.
#[derive(Debug, Clone, Copy)]
pub struct Key([usize; 2]);

/// A stream held for as long as this lives (a subscribe waiting for its
/// room's history).
pub struct Held {
    writer: Rc<InterestWriter>,
    key: Key,
}

/// One shard's filter: the side publishers read and the one its shard writes.
pub fn filter() -> (Arc<Interest>, InterestWriter) {
    let counts = std::iter::repeat_with(|| AtomicU8::new(0)).take(SLOTS).collect();
    let interest = Arc::new(Interest { counts });
    (interest.clone(), InterestWriter { interest })
}

impl Key {
    pub fn of(stream: &str) -> Key {
        let mut hasher = DefaultHasher::new();
        stream.hash(&mut hasher);
        let hash = hasher.finish();
        Key([hash as usize % SLOTS, (hash >> 32) as usize % SLOTS])
    }
}

impl Interest {
    /// `false` only when the shard holds no session that listens to the
    /// stream.
    pub fn may_hold(&self, key: Key) -> bool {
        key.0.iter().all(|&slot| self.counts[slot].load(Ordering::Acquire) > 0)
    }
}

impl InterestWriter {
    pub fn add(&self, stream: &str) {
        self.count(Key::of(stream), |now| now.checked_add(1));
    }

    pub fn remove(&self, stream: &str) {
        self.count(Key::of(stream), |now| now.checked_sub(1));
    }

    /// Holds `stream` until the returned value is dropped.
    pub fn hold(self: &Rc<Self>, stream: &str) -> Held {
        let key = Key::of(stream);
        self.count(key, |now| now.checked_add(1));
        Held { writer: self.clone(), key }
    }

    /// Moves each of the key's counts by `step`, but for a saturated one.
    fn count(&self, key: Key, step: impl Fn(u8) -> Option<u8>) {
        for slot in key.0 {
            let count = &self.interest.counts[slot];
            let now = count.load(Ordering::Relaxed);
            if let (true, Some(next)) = (now < SATURATED, step(now)) {
                count.store(next, Ordering::Release);
            }
        }
    }
}

impl Default for InterestWriter {
    /// A filter nobody reads (an index of its own, in tests).
    fn default() -> Self {
        filter().1
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.writer.count(self.key, |now| now.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_held_from_its_first_add_to_its_last_remove() {
        let (interest, writer) = filter();
        assert!(!interest.may_hold(Key::of("orders")));
        writer.add("orders");
        writer.add("orders");
        writer.remove("orders");
        assert!(interest.may_hold(Key::of("orders")));
        writer.remove("orders");
        assert!(!interest.may_hold(Key::of("orders")));
    }

    #[test]
    fn streams_that_share_a_slot_keep_each_other_held_only_while_both_are() {
        let (interest, writer) = filter();
        let names: Vec<String> = (0..20_000).map(|i| format!("user:{i}")).collect();
        names.iter().for_each(|name| writer.add(name));
        assert!(names.iter().all(|name| interest.may_hold(Key::of(name))), "no false negative");
        let strangers = (0..10_000).filter(|i| interest.may_hold(Key::of(&format!("room:{i}")))).count();
        assert!(strangers < 1_000, "{strangers} of 10,000 names never added read as held");
        names.iter().for_each(|name| writer.remove(name));
        assert!(interest.counts.iter().all(|count| count.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn a_saturated_slot_stays_held() {
        let (interest, writer) = filter();
        (0..300).for_each(|_| writer.add("busy"));
        (0..300).for_each(|_| writer.remove("busy"));
        assert!(interest.may_hold(Key::of("busy")));
    }

    #[test]
    fn a_held_stream_is_let_go_when_dropped() {
        let (interest, writer) = filter();
        let writer = Rc::new(writer);
        let held = writer.hold("orders");
        assert!(interest.may_hold(Key::of("orders")));
        drop(held);
        assert!(!interest.may_hold(Key::of("orders")));
    }
}
