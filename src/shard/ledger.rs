//! With `PRESENCE_EVENTS`, what a shard counts to know a member's first and
//! last: its own sessions per member of each room, and, for the rooms it
//! tallies, the shards holding a session of each member.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::auth::Role;

/// A member of a room: (room, user id, role).
pub type Seat = (String, String, Role);

/// Which count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// This shard's sessions per seat.
    Sessions,
    /// Shards holding a session per seat, for the rooms this shard tallies.
    Shards,
}

#[derive(Default)]
pub struct Ledger {
    sessions: HashMap<Seat, u32>,
    shards: HashMap<Seat, u32>,
}

impl Ledger {
    /// Adds one to the seat's count (`up`) or takes one away; `true` when
    /// that was its first or its last.
    pub fn count(&mut self, count: Count, seat: Seat, up: bool) -> bool {
        let counts = match count {
            Count::Sessions => &mut self.sessions,
            Count::Shards => &mut self.shards,
        };
        match (counts.entry(seat), up) {
            (Entry::Occupied(mut n), true) => {
                *n.get_mut() += 1;
                false
            }
            (Entry::Vacant(slot), true) => {
                slot.insert(1);
                true
            }
            (Entry::Occupied(mut n), false) if *n.get() > 1 => {
                *n.get_mut() -= 1;
                false
            }
            (Entry::Occupied(n), false) => {
                n.remove();
                true
            }
            (Entry::Vacant(_), false) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_only() {
        let mut ledger = Ledger::default();
        let seat = || ("orders".to_owned(), "1".to_owned(), Role::Seller);
        assert!(ledger.count(Count::Sessions, seat(), true));
        assert!(!ledger.count(Count::Sessions, seat(), true));
        assert!(ledger.count(Count::Shards, seat(), true), "the counts are apart");
        assert!(!ledger.count(Count::Sessions, seat(), false));
        assert!(ledger.count(Count::Sessions, seat(), false));
        assert!(!ledger.count(Count::Sessions, seat(), false), "never below zero");
    }
}
