//! `leave` held back (README, Presence and control): a member's last session
//! leaving a room is announced once the member has been gone for [`GRACE`];
//! back within it, neither that `leave` nor the next `join` is sent (the
//! room never saw it go). A member connecting and closing in a loop costs
//! the room one `join`, and one `leave` once it stops: at most one pair per
//! [`GRACE`] however it times its loop.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::ledger::Seat;
use crate::presence::LEAVE_GRACE as GRACE;

/// The leaves held on a tally shard.
#[derive(Default)]
pub struct Leaving {
    /// In the order they fall due; a seat back (or gone again) since is
    /// skipped when its entry no longer matches `held`.
    due: VecDeque<(Instant, Seat)>,
    held: HashMap<Seat, Instant>,
}

impl Leaving {
    /// Holds the seat's `leave` until `now` + [`GRACE`].
    pub fn hold(&mut self, seat: Seat, now: Instant) {
        let at = now + GRACE;
        self.held.insert(seat.clone(), at);
        self.due.push_back((at, seat));
    }

    /// The member is back: whether its `leave` was held (so its `join` is
    /// not news).
    pub fn back(&mut self, seat: &Seat) -> bool {
        self.held.remove(seat).is_some()
    }

    /// The seats whose `leave` falls due by `now`; they are no longer held.
    pub fn due(&mut self, now: Instant) -> Vec<Seat> {
        let mut due = Vec::new();
        while self.due.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((at, seat)) = self.due.pop_front() {
                if self.held.get(&seat) == Some(&at) {
                    self.held.remove(&seat);
                    due.push(seat);
                }
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn seat() -> Seat {
        ("orders".to_owned(), "1".to_owned(), Role::Seller)
    }

    #[test]
    fn a_leave_falls_due_after_the_grace() {
        let now = Instant::now();
        let mut leaving = Leaving::default();
        leaving.hold(seat(), now);
        assert!(leaving.due(now + GRACE / 2).is_empty());
        assert_eq!(leaving.due(now + GRACE), [seat()]);
        assert!(leaving.due(now + GRACE * 2).is_empty(), "once");
        assert!(!leaving.back(&seat()), "a join after the leave is news");
    }

    #[test]
    fn back_within_the_grace_nothing_is_sent() {
        let now = Instant::now();
        let mut leaving = Leaving::default();
        leaving.hold(seat(), now);
        assert!(leaving.back(&seat()));
        leaving.hold(seat(), now + GRACE / 2);
        assert!(leaving.due(now + GRACE).is_empty(), "the first leave was taken back");
        assert_eq!(leaving.due(now + GRACE * 2), [seat()], "the second falls due in its turn");
    }
}
