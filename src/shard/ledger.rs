//! What a shard counts to know a member's first and last: its own sessions
//! per member of each room, and, for the rooms it tallies, the shards
//! holding a session of each member and so the room's members overall.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;

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
    /// Seats in `shards` per room: a tallied room's members overall.
    members: HashMap<String, u32>,
}

impl Ledger {
    /// Adds one to the seat's count (`up`) or takes one away, and gives the
    /// new count; `None` when there was nothing to take away. A count equal
    /// to `u32::from(up)` is a first (1 after adding) or a last (0 after
    /// taking away).
    pub fn count(&mut self, count: Count, seat: Seat, up: bool) -> Option<u32> {
        let room = (count == Count::Shards).then(|| seat.0.clone());
        let counts = match count {
            Count::Sessions => &mut self.sessions,
            Count::Shards => &mut self.shards,
        };
        let counted = step(counts, seat, up);
        if let (Some(room), Some(n)) = (room, counted) {
            if is_edge(n, up) {
                step(&mut self.members, room, up);
            }
        }
        counted
    }

    /// The members of a room this shard tallies, over every shard.
    pub fn members(&self, room: &str) -> usize {
        self.members.get(room).map_or(0, |&n| n as usize)
    }

    /// This shard's sessions per seat.
    pub fn seats(&self) -> impl Iterator<Item = (&Seat, u32)> {
        self.sessions.iter().map(|(seat, &n)| (seat, n))
    }
}

/// Adds one to `key`'s count or takes one away (a count never kept at 0).
fn step<K: Eq + Hash>(counts: &mut HashMap<K, u32>, key: K, up: bool) -> Option<u32> {
    match (counts.entry(key), up) {
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

    #[test]
    fn a_tallied_room_counts_its_members() {
        let mut ledger = Ledger::default();
        let seat = |user: &str| ("orders".to_owned(), user.to_owned(), Role::Seller);
        ledger.count(Count::Shards, seat("1"), true);
        ledger.count(Count::Shards, seat("1"), true);
        ledger.count(Count::Shards, seat("2"), true);
        ledger.count(Count::Sessions, seat("3"), true);
        assert_eq!(ledger.members("orders"), 2, "a member on two shards is one; sessions are not tallied");
        ledger.count(Count::Shards, seat("1"), false);
        ledger.count(Count::Shards, seat("2"), false);
        assert_eq!(ledger.members("orders"), 1);
        ledger.count(Count::Shards, seat("1"), false);
        ledger.count(Count::Shards, seat("1"), false);
        assert_eq!(
            (ledger.members("orders"), ledger.members.len()),
            (0, 0),
            "nothing kept for an empty room"
        );
    }
}
