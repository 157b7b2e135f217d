//! Who is where on one shard: its sessions, room → members, user → sessions.
//! Compact for many sessions: a room's members are a plain vector (fast
//! fan-out), and each session remembers its slot in every room it joined, so
//! leaving is O(1) and closing leaves nothing behind. What the other shards
//! see of it is which streams it holds (`bus::interest`): its users'
//! `user:U` and its rooms, from the first session or member to the last.

use std::collections::HashMap;
use std::rc::Rc;

use slab::Slab;

use super::handle::{Membership, RoomId, SessionHandle};
use crate::bus::interest::InterestWriter;
use crate::history::Mark;
use crate::room;

/// Rooms one connection may be in, besides `all`.
pub const MAX_ROOMS_PER_SESSION: usize = 128;

/// A session's place in the shard's registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey(usize);

struct Room {
    name: Rc<str>,
    members: Vec<Rc<SessionHandle>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("at most {MAX_ROOMS_PER_SESSION} rooms per connection")]
pub struct TooManyRooms;

#[derive(Default)]
pub struct Index {
    sessions: Slab<Rc<SessionHandle>>,
    rooms: Slab<Room>,
    room_ids: HashMap<Rc<str>, RoomId>,
    users: HashMap<Rc<str>, Vec<Rc<SessionHandle>>>,
    interest: Rc<InterestWriter>,
}

impl Index {
    /// An empty index whose streams `interest` tells the other shards.
    pub fn new(interest: Rc<InterestWriter>) -> Self {
        Self {
            sessions: Slab::new(),
            rooms: Slab::new(),
            room_ids: HashMap::new(),
            users: HashMap::new(),
            interest,
        }
    }

    pub fn insert(&mut self, session: Rc<SessionHandle>) -> SessionKey {
        let user = session.identity.user_id.as_str();
        // A user's first session names the entry; later ones reuse it.
        match self.users.get_mut(user) {
            Some(sessions) => sessions.push(session.clone()),
            None => {
                self.interest.add(&room::personal_user_room(user));
                self.users.insert(Rc::from(user), vec![session.clone()]);
            }
        }
        SessionKey(self.sessions.insert(session))
    }

    /// Removes the session from the registry, its user and every room, and
    /// hands it back.
    pub fn remove(&mut self, key: SessionKey) -> Option<Rc<SessionHandle>> {
        let session = self.sessions.try_remove(key.0)?;
        for membership in session.take_memberships() {
            self.remove_member(membership);
        }
        let user = session.identity.user_id.as_str();
        if let Some(sessions) = self.users.get_mut(user) {
            sessions.retain(|s| !Rc::ptr_eq(s, &session));
            if sessions.is_empty() {
                self.users.remove(user);
                self.interest.remove(&room::personal_user_room(user));
            }
        }
        Some(session)
    }

    /// Every session's key.
    pub fn keys(&self) -> Vec<SessionKey> {
        self.sessions.iter().map(|(key, _)| SessionKey(key)).collect()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Joins `room` at its offset `joined_at`; `Ok(false)` when already a member.
    pub fn join(
        &mut self,
        session: &Rc<SessionHandle>,
        room: &str,
        joined_at: Mark,
    ) -> Result<bool, TooManyRooms> {
        if self.room_id(room).is_some_and(|id| session.membership(id).is_some()) {
            return Ok(false);
        }
        if session.membership_count() >= MAX_ROOMS_PER_SESSION {
            return Err(TooManyRooms);
        }
        let id = self.room_id(room).unwrap_or_else(|| self.open_room(room));
        let members = &mut self.rooms[id.0 as usize].members;
        session.add_membership(Membership { room: id, slot: members.len() as u32, joined_at });
        members.push(session.clone());
        Ok(true)
    }

    /// Leaves `room`; `false` when not a member.
    pub fn leave(&mut self, session: &SessionHandle, room: &str) -> bool {
        let Some(id) = self.room_id(room) else { return false };
        match session.remove_membership(id) {
            Some(membership) => {
                self.remove_member(membership);
                true
            }
            None => false,
        }
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Rc<SessionHandle>> {
        self.sessions.iter().map(|(_, s)| s)
    }

    pub fn members(&self, room: &str) -> &[Rc<SessionHandle>] {
        self.room_id(room).map_or(&[], |id| &self.rooms[id.0 as usize].members)
    }

    /// Every room with members here, and its members.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, &[Rc<SessionHandle>])> {
        self.rooms.iter().map(|(_, room)| (&*room.name, room.members.as_slice()))
    }

    /// The room's offset when the session joined it, if it is a member.
    pub fn joined_at(&self, session: &SessionHandle, room: &str) -> Option<Mark> {
        self.room_id(room).and_then(|id| session.membership(id)).map(|m| m.joined_at)
    }

    pub fn session(&self, key: SessionKey) -> Option<&Rc<SessionHandle>> {
        self.sessions.get(key.0)
    }

    /// The names of the rooms `session` is in, besides `all`.
    pub fn rooms_of(&self, session: &SessionHandle) -> Vec<Rc<str>> {
        session
            .room_ids()
            .into_iter()
            .filter_map(|id| self.rooms.get(id.0 as usize))
            .map(|r| r.name.clone())
            .collect()
    }

    pub fn user_sessions(&self, user: &str) -> &[Rc<SessionHandle>] {
        self.users.get(user).map_or(&[], Vec::as_slice)
    }

    pub fn is_member(&self, session: &SessionHandle, room: &str) -> bool {
        self.room_id(room).is_some_and(|id| session.membership(id).is_some())
    }

    fn room_id(&self, room: &str) -> Option<RoomId> {
        self.room_ids.get(room).copied()
    }

    fn open_room(&mut self, room: &str) -> RoomId {
        self.interest.add(room);
        let name: Rc<str> = Rc::from(room);
        let id = RoomId(self.rooms.insert(Room { name: name.clone(), members: Vec::new() }) as u32);
        self.room_ids.insert(name, id);
        id
    }

    /// Swap-removes a member; the member moved into its slot learns its new one.
    fn remove_member(&mut self, membership: Membership) {
        let index = membership.room.0 as usize;
        let room = &mut self.rooms[index];
        let slot = membership.slot as usize;
        room.members.swap_remove(slot);
        if let Some(moved) = room.members.get(slot) {
            moved.move_membership(membership.room, membership.slot);
        }
        if room.members.is_empty() {
            let room = self.rooms.remove(index);
            self.room_ids.remove(&room.name);
            self.interest.remove(&room.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::auth::{Identity, Role};

    fn session(user: &str) -> Rc<SessionHandle> {
        let identity = Identity { user_id: user.into(), role: Role::Admin };
        Rc::new(SessionHandle::new(identity, u64::MAX, 1024, Instant::now()))
    }

    #[test]
    fn joins_leaves_and_closes_leave_nothing_behind() {
        let mut index = Index::default();
        let (a, b, c) = (session("1"), session("2"), session("1"));
        let keys: Vec<_> = [&a, &b, &c].iter().map(|s| index.insert((*s).clone())).collect();
        for s in [&a, &b, &c] {
            assert_eq!(index.join(s, "orders", Mark::default()), Ok(true));
        }
        assert_eq!(index.join(&a, "orders", Mark::default()), Ok(false));
        assert_eq!(index.join(&b, "orders:1", Mark::default()), Ok(true));
        assert_eq!(index.user_sessions("1").len(), 2);

        assert!(index.leave(&a, "orders"));
        assert!(!index.leave(&a, "orders"));
        let members: Vec<_> = index.members("orders").iter().map(|s| s.identity.user_id.clone()).collect();
        assert_eq!(members.len(), 2);
        assert!(index.is_member(&c, "orders") && !index.is_member(&a, "orders"));

        for key in keys {
            assert!(index.remove(key).is_some());
        }
        assert_eq!((index.len(), index.rooms.len(), index.user_sessions("1").len()), (0, 0, 0));
    }

    #[test]
    fn users_and_rooms_are_held_from_their_first_session_to_their_last() {
        use crate::bus::interest::{filter, Key};
        let (interest, writer) = filter();
        let mut index = Index::new(Rc::new(writer));
        let (a, b) = (session("1"), session("1"));
        let (key_a, key_b) = (index.insert(a.clone()), index.insert(b.clone()));
        for s in [&a, &b] {
            index.join(s, "orders", Mark::default()).expect("room");
        }
        assert!(interest.may_hold(Key::of("user:1")) && interest.may_hold(Key::of("orders")));
        assert!(index.leave(&a, "orders"));
        index.remove(key_a);
        assert!(
            interest.may_hold(Key::of("user:1")) && interest.may_hold(Key::of("orders")),
            "b is still here"
        );
        index.remove(key_b);
        assert!(!interest.may_hold(Key::of("user:1")) && !interest.may_hold(Key::of("orders")));
    }

    #[test]
    fn slots_stay_right_after_swap_removes() {
        let mut index = Index::default();
        let sessions: Vec<_> = (0..5).map(|i| session(&i.to_string())).collect();
        let keys: Vec<_> = sessions.iter().map(|s| index.insert(s.clone())).collect();
        for s in &sessions {
            index.join(s, "r", Mark::default()).expect("room");
        }
        index.remove(keys[0]);
        index.remove(keys[2]);
        assert!(index.leave(&sessions[4], "r"));
        let left: Vec<_> = index.members("r").iter().map(|s| s.identity.user_id.as_str()).collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&"1") && left.contains(&"3"));
    }

    #[test]
    fn room_limit_holds() {
        let mut index = Index::default();
        let s = session("1");
        index.insert(s.clone());
        for i in 0..MAX_ROOMS_PER_SESSION {
            index.join(&s, &format!("r{i}"), Mark::default()).expect("under the limit");
        }
        assert_eq!(index.join(&s, "one-more", Mark::default()), Err(TooManyRooms));
    }
}

/// The index against a plain model: random insert, join, leave and remove
/// sequences must leave exactly the members, user lists and rooms that a
/// `HashMap<room, HashSet<session>>` says (`PROPTEST_CASES` for longer runs).
#[cfg(test)]
mod properties {
    use std::collections::{HashMap, HashSet};
    use std::time::Instant;

    use proptest::prelude::*;

    use super::*;
    use crate::auth::{Identity, Role};

    #[derive(Debug, Clone)]
    enum Op {
        Insert { user: u8 },
        Join { session: usize, room: u8 },
        Leave { session: usize, room: u8 },
        Remove { session: usize },
    }

    /// Few users and rooms, so that sequences share them.
    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => (0..4u8).prop_map(|user| Op::Insert { user }),
            4 => (any::<usize>(), 0..6u8).prop_map(|(session, room)| Op::Join { session, room }),
            2 => (any::<usize>(), 0..6u8).prop_map(|(session, room)| Op::Leave { session, room }),
            1 => any::<usize>().prop_map(|session| Op::Remove { session }),
        ]
    }

    /// What the index must agree with: open sessions by number, and room → members.
    #[derive(Default)]
    struct Model {
        open: Vec<(usize, SessionKey, Rc<SessionHandle>)>,
        rooms: HashMap<String, HashSet<usize>>,
        next: usize,
    }

    impl Model {
        fn pick(&self, n: usize) -> Option<(usize, SessionKey, Rc<SessionHandle>)> {
            (!self.open.is_empty()).then(|| self.open[n % self.open.len()].clone())
        }
    }

    fn room_name(room: u8) -> String {
        // Two names share a base, so scoped and unscoped rooms mix.
        if room % 2 == 0 {
            format!("orders:{room}")
        } else {
            format!("r{room}")
        }
    }

    fn apply(index: &mut Index, model: &mut Model, op: Op) {
        match op {
            Op::Insert { user } => {
                let identity = Identity { user_id: user.to_string(), role: Role::Admin };
                let handle = Rc::new(SessionHandle::new(identity, u64::MAX, 1024, Instant::now()));
                let key = index.insert(handle.clone());
                model.open.push((model.next, key, handle));
                model.next += 1;
            }
            Op::Join { session, room } => {
                let Some((id, _, handle)) = model.pick(session) else { return };
                let fresh = model.rooms.entry(room_name(room)).or_default().insert(id);
                assert_eq!(index.join(&handle, &room_name(room), Mark::default()), Ok(fresh));
            }
            Op::Leave { session, room } => {
                let Some((id, _, handle)) = model.pick(session) else { return };
                let name = room_name(room);
                let was = model.rooms.get_mut(&name).is_some_and(|m| m.remove(&id));
                model.rooms.retain(|_, members| !members.is_empty());
                assert_eq!(index.leave(&handle, &name), was);
            }
            Op::Remove { session } => {
                let Some((id, key, handle)) = model.pick(session) else { return };
                model.open.retain(|(open, _, _)| *open != id);
                for members in model.rooms.values_mut() {
                    members.remove(&id);
                }
                model.rooms.retain(|_, members| !members.is_empty());
                let removed = index.remove(key).expect("an open session is in the index");
                assert!(Rc::ptr_eq(&removed, &handle));
                assert!(index.remove(key).is_none(), "a key is removed once");
            }
        }
    }

    fn assert_agrees(index: &Index, model: &Model) {
        assert_eq!(index.len(), model.open.len());
        assert_eq!(index.rooms.len(), model.rooms.len(), "no empty room is kept");
        let number = |s: &Rc<SessionHandle>| {
            model.open.iter().find(|(_, _, h)| Rc::ptr_eq(h, s)).map(|(id, _, _)| *id)
        };
        for room in (0..6).map(room_name) {
            let members = index.members(&room);
            let in_index: HashSet<usize> = members.iter().map(|s| number(s).expect("open")).collect();
            assert_eq!(in_index.len(), members.len(), "{room}: a member listed twice");
            assert_eq!(in_index, model.rooms.get(&room).cloned().unwrap_or_default(), "{room}");
            for (id, _, handle) in &model.open {
                assert_eq!(index.is_member(handle, &room), in_index.contains(id));
            }
        }
        for user in 0..4u8 {
            let user = user.to_string();
            let mut in_index: Vec<usize> =
                index.user_sessions(&user).iter().map(|s| number(s).expect("open")).collect();
            let mut expected: Vec<usize> = model
                .open
                .iter()
                .filter(|(_, _, h)| h.identity.user_id == user)
                .map(|(id, _, _)| *id)
                .collect();
            in_index.sort_unstable();
            expected.sort_unstable();
            assert_eq!(in_index, expected, "sessions of user {user}");
        }
        assert_eq!(index.users.len(), index.users.values().filter(|s| !s.is_empty()).count());
    }

    proptest! {
        #[test]
        fn index_agrees_with_a_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut index = Index::default();
            let mut model = Model::default();
            for op in ops {
                apply(&mut index, &mut model, op);
                assert_agrees(&index, &model);
            }
        }
    }
}
