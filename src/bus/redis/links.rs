//! Which of the process's Redis connections are up. Each shard has two (a
//! subscriber and a publisher); each has one flag, on its own cache line,
//! written only by the task that owns that connection ([`LinkFlag`] is not
//! `Clone`). Everyone else reads them all through [`Links`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

type Flags = Arc<[CachePadded<AtomicBool>]>;

/// The read side: whether every connection is up.
pub struct Links {
    flags: Flags,
}

/// One connection's flag, held by the task that owns the connection.
pub struct LinkFlag {
    flags: Flags,
    at: usize,
}

/// A shard's two flags, moved to that shard at start-up.
pub struct ShardLinks {
    pub subscriber: LinkFlag,
    pub publisher: LinkFlag,
}

impl Links {
    /// The flags of `shards` shards, all down, and each shard's pair by
    /// shard index.
    pub fn new(shards: usize) -> (Self, Vec<ShardLinks>) {
        let flags: Flags = (0..2 * shards).map(|_| CachePadded::new(AtomicBool::new(false))).collect();
        let flag = |at| LinkFlag { flags: flags.clone(), at };
        let pairs =
            (0..shards).map(|i| ShardLinks { subscriber: flag(2 * i), publisher: flag(2 * i + 1) }).collect();
        (Self { flags }, pairs)
    }

    pub fn all_up(&self) -> bool {
        self.flags.iter().all(|flag| flag.load(Ordering::Acquire))
    }

    /// Each shard's (subscriber, publisher) state, by shard index.
    pub fn by_shard(&self) -> impl Iterator<Item = (bool, bool)> + '_ {
        self.flags
            .chunks_exact(2)
            .map(|pair| (pair[0].load(Ordering::Acquire), pair[1].load(Ordering::Acquire)))
    }
}

impl LinkFlag {
    pub fn set(&self, up: bool) {
        self.flags[self.at].store(up, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_only_when_every_link_is() {
        let (links, pairs) = Links::new(2);
        assert!(!links.all_up());
        for pair in &pairs {
            pair.subscriber.set(true);
            pair.publisher.set(true);
        }
        assert!(links.all_up());
        pairs[1].publisher.set(false);
        assert!(!links.all_up());
    }
}
