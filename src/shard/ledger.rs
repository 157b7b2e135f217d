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
    /// Adds one to the seat's count (`up`) or takes one away, and gives the
    /// new count; `None` when there was nothing to take away. A count equal
    /// to `u32::from(up)` is a first (1 after adding) or a last (0 after
    /// taking away).
    pub fn count(&mut self, count: Count, seat: Seat, up: bool) -> Option<u32> {
        let counts = match count {
            Count::Sessions => &mut self.sessions,
            Count::Shards => &mut self.shards,
        };
        match (counts.entry(seat), up) {
            (Entry::Occupied(mut n), true) => {
                *n.get_mut() += 1;
                Some(*n.get())
            }
            (Entry::Vacant(slot), true) => Some(*slot.insert(1)),
            (Entry::Occupied(mut n), false) if *n.get() > 1 => {
                *n.get_mut() -= 1;
                Some(*n.get())
            }
            (Entry::Occupied(n), false) => {
                n.remove();
                Some(0)
            }
            (Entry::Vacant(_), false) => None,
        }
    }

    /// This shard's sessions per seat.
    pub fn seats(&self) -> impl Iterator<Item = (&Seat, u32)> {
        self.sessions.iter().map(|(seat, &n)| (seat, n))
    }
}

/// Whether a count that [`Ledger::count`] gave is a first or a last.
pub fn is_edge(count: u32, up: bool) -> bool {
    count == u32::from(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_only() {
        let mut ledger = Ledger::default();
        let seat = || ("orders".to_owned(), "1".to_owned(), Role::Seller);
        assert_eq!(ledger.count(Count::Sessions, seat(), true), Some(1));
        assert_eq!(ledger.count(Count::Sessions, seat(), true), Some(2));
        assert_eq!(ledger.count(Count::Shards, seat(), true), Some(1), "the counts are apart");
        assert_eq!(ledger.count(Count::Sessions, seat(), false), Some(1));
        assert_eq!(ledger.count(Count::Sessions, seat(), false), Some(0));
        assert_eq!(ledger.count(Count::Sessions, seat(), false), None, "never below zero");
        assert!(is_edge(1, true) && is_edge(0, false) && !is_edge(2, true) && !is_edge(1, false));
    }
}
