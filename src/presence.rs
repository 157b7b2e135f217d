//! Presence and control (README, Presence and control), as values: what one shard answers about
//! a room or a user, how the answers of every shard are merged into what a
//! client or the API sees, and the control messages (`disconnect`) that
//! travel between shards and instances. No I/O; these values cross threads.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::event::{Draft, Event, EventError, Required};
use crate::room::{self, RoomName};

/// How long a member must be gone before its `leave` is sent, with or
/// without Redis: a member back within it announces neither.
pub const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// Members listed in one answer; counts stay exact beyond it.
pub const MAX_MEMBERS: usize = 1000;

/// The longest disconnect reason: a close frame's reason holds 123 bytes.
pub const MAX_REASON_BYTES: usize = 123;

/// The close reason of a disconnect without one.
pub const DEFAULT_REASON: &str = "disconnected";

/// One user (of one role) in a room, and how many of its connections are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: String,
    pub role: Role,
    pub connections: u32,
}

/// What is asked of every shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A room (already resolved: `cart:V`, not `cart`): its counts, and
    /// with `members` its first [`MAX_MEMBERS`] members.
    Room { room: String, members: bool },
    /// The sessions of a user, whatever their role.
    User(String),
    /// The rooms with the most sessions, at most this many (operator page).
    Busiest(usize),
}

/// One shard's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Room(RoomAnswer),
    User { connections: u32, rooms: Vec<String> },
    Busiest(Vec<RoomSize>),
}

/// A room and its sessions (on one shard, or summed over shards).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomSize {
    pub room: String,
    pub connections: u64,
}

/// The `limit` biggest of `rooms`, biggest first (ties by name). Picks them
/// without sorting every room: a shard may hold one room per user.
pub fn biggest<'a>(rooms: impl Iterator<Item = (&'a str, u64)>, limit: usize) -> Vec<RoomSize> {
    let by_size = |a: &(&str, u64), b: &(&str, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0));
    let mut sizes: Vec<(&str, u64)> = rooms.collect();
    if sizes.len() > limit && limit > 0 {
        sizes.select_nth_unstable_by(limit - 1, by_size);
    }
    sizes.truncate(limit);
    sizes.sort_unstable_by(by_size);
    sizes.into_iter().map(|(room, connections)| RoomSize { room: room.to_owned(), connections }).collect()
}

/// Sums each room's sessions over the shards' answers and keeps the
/// `limit` biggest. A room a shard left out of its own `limit` biggest
/// counts without that shard's sessions.
pub fn merge_busiest(answers: impl IntoIterator<Item = Vec<RoomSize>>, limit: usize) -> Vec<RoomSize> {
    let mut sums: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for size in answers.into_iter().flatten() {
        *sums.entry(size.room).or_default() += size.connections;
    }
    biggest(sums.iter().map(|(room, n)| (room.as_str(), *n)), limit)
}

/// One shard's part of a room's presence (or, with Redis, every instance's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomAnswer {
    /// Sessions in the room.
    pub connections: u64,
    /// Members over every shard: known to the shard that tallies the room
    /// (or to Redis), `None` from the others.
    pub users: Option<usize>,
    /// When asked, the first [`MAX_MEMBERS`] of its members by user id then
    /// role: a member among the first overall is among the first of every
    /// shard it is on, so no shard need send more.
    pub members: Vec<Member>,
}

/// A room's presence, merged over every shard and instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoomPresence {
    pub users: usize,
    pub connections: u64,
    /// At most [`MAX_MEMBERS`], by user id then role.
    pub members: Vec<Member>,
}

/// A user's presence, merged over every shard and instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPresence {
    pub user_id: String,
    pub online: bool,
    pub connections: u64,
    /// `all` and the personal `user:<id>` first (when online), then the
    /// others in name order.
    pub rooms: Vec<String>,
}

impl RoomPresence {
    /// Sums the counts and the same member's connections over the answers:
    /// a user with sessions on two shards is one member. Without the tally's
    /// answer (its shard did not answer in time) the members listed are
    /// what is known of `users`.
    pub fn merge(answers: impl IntoIterator<Item = RoomAnswer>) -> Self {
        let mut connections = 0;
        let mut users = None;
        let mut listed: Vec<Member> = Vec::new();
        for answer in answers {
            connections += answer.connections;
            users = users.or(answer.users);
            listed.extend(answer.members);
        }
        listed.sort_unstable_by(|a, b| order(a).cmp(&order(b)));
        let mut members: Vec<Member> = Vec::with_capacity(listed.len().min(MAX_MEMBERS));
        for member in listed {
            match members.last_mut() {
                Some(last) if order(last) == order(&member) => last.connections += member.connections,
                _ => members.push(member),
            }
        }
        let users = users.unwrap_or(members.len());
        members.truncate(MAX_MEMBERS);
        Self { users, connections, members }
    }
}

/// Members by user id, then role.
fn order(member: &Member) -> (&str, &'static str) {
    (&member.user_id, member.role.as_str())
}

/// The first `limit` members among `seats` (one per session: user id and
/// role), by user id then role: only those are copied.
pub fn first_members<'a>(seats: impl Iterator<Item = (&'a str, Role)>, limit: usize) -> Vec<Member> {
    let mut seats: Vec<(&str, Role)> = seats.collect();
    seats.sort_unstable_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
    let mut members: Vec<Member> = Vec::new();
    for (user_id, role) in seats {
        let full = members.len() == limit;
        match members.last_mut() {
            Some(last) if last.user_id == user_id && last.role == role => last.connections += 1,
            _ if full => break,
            _ => members.push(Member { user_id: user_id.to_owned(), role, connections: 1 }),
        }
    }
    members
}

impl UserPresence {
    pub fn merge(user_id: &str, answers: impl IntoIterator<Item = (u32, Vec<String>)>) -> Self {
        let mut connections = 0u64;
        let mut rooms = BTreeSet::new();
        for (n, names) in answers {
            connections += u64::from(n);
            rooms.extend(names);
        }
        let online = connections > 0;
        // Every session is in both without joining them: no shard lists them.
        rooms.remove(room::ALL);
        let personal = room::personal_user_room(user_id);
        rooms.remove(&personal);
        let implicit = online.then(|| [room::ALL.to_owned(), personal]).into_iter().flatten();
        let rooms = implicit.chain(rooms).collect();
        Self { user_id: user_id.to_owned(), online, connections, rooms }
    }
}

/// Rooms that never get `join`/`leave`: `all` and the personal `user:*`.
pub fn has_presence_events(room: &str) -> bool {
    RoomName::parse(room).is_ok_and(|name| !name.is_all() && name.base != "user")
}

/// The `join` (or `leave`) event of a member of `room`, as every member
/// receives it: `{"type":"join","room":"orders","payload":{"userId":"1","role":"seller"}}`
/// with the envelope's `id` and `timestamp`.
pub fn membership_event(room: &str, user_id: &str, role: Role, joined: bool) -> Result<Event, EventError> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a> {
        user_id: &'a str,
        role: Role,
    }
    let payload = serde_json::value::to_raw_value(&Payload { user_id, role })
        .map_err(|_| EventError::PayloadNotObject)?;
    let draft = Draft {
        id: None,
        kind: Some(if joined { "join" } else { "leave" }.to_owned()),
        room: Some(room.to_owned()),
        user_id: None,
        role: None,
        payload: Some(&payload),
        ..Draft::default()
    };
    draft.into_event(Required::Room)
}

/// A control message: published by the API on one instance, acted on by
/// every shard of every instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Control {
    /// Close every session of the user with 4003 and `reason`.
    Disconnect {
        #[serde(rename = "userId")]
        user_id: String,
        reason: String,
    },
}

/// Why a disconnect request cannot be taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DisconnectError {
    #[error("the reason must be at most {MAX_REASON_BYTES} bytes (a close frame's limit)")]
    ReasonTooLong,
}

impl Control {
    pub fn disconnect(user_id: &str, reason: Option<&str>) -> Result<Self, DisconnectError> {
        let reason = reason.filter(|r| !r.is_empty()).unwrap_or(DEFAULT_REASON);
        if reason.len() > MAX_REASON_BYTES {
            return Err(DisconnectError::ReasonTooLong);
        }
        Ok(Control::Disconnect { user_id: user_id.to_owned(), reason: reason.to_owned() })
    }

    pub fn encode(&self) -> String {
        // Two strings and a tag: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user: &str, role: Role, connections: u32) -> Member {
        Member { user_id: user.into(), role, connections }
    }

    fn listing(connections: u64, users: Option<usize>, members: Vec<Member>) -> RoomAnswer {
        RoomAnswer { connections, users, members }
    }

    fn sizes(rooms: &[(&str, u64)]) -> Vec<RoomSize> {
        rooms.iter().map(|&(room, connections)| RoomSize { room: room.into(), connections }).collect()
    }

    #[test]
    fn the_busiest_rooms_are_summed_over_shards_biggest_first() {
        let one = biggest([("a", 1), ("b", 5), ("c", 3), ("d", 5)].into_iter(), 3);
        assert_eq!(one, sizes(&[("b", 5), ("d", 5), ("c", 3)]));
        let merged = merge_busiest([one, sizes(&[("c", 4), ("e", 2)])], 2);
        assert_eq!(merged, sizes(&[("c", 7), ("b", 5)]));
        assert_eq!(biggest([("a", 1)].into_iter(), 0), []);
    }

    #[test]
    fn a_user_on_two_shards_counts_once() {
        let merged = RoomPresence::merge([
            listing(3, Some(3), vec![member("1", Role::Seller, 2), member("2", Role::Client, 1)]),
            listing(2, None, vec![member("1", Role::Seller, 1), member("1", Role::Client, 1)]),
        ]);
        assert_eq!((merged.users, merged.connections), (3, 5));
        assert_eq!(merged.members[0], member("1", Role::Client, 1));
        assert_eq!(merged.members[1], member("1", Role::Seller, 3));
    }

    #[test]
    fn counts_need_no_members() {
        let merged = RoomPresence::merge([listing(4, None, vec![]), listing(6, Some(7), vec![])]);
        assert_eq!((merged.users, merged.connections, merged.members.len()), (7, 10, 0));
    }

    #[test]
    fn sessions_become_members_up_to_the_limit() {
        let seats = [("2", Role::Seller), ("1", Role::Seller), ("2", Role::Seller), ("2", Role::Client)];
        assert_eq!(
            first_members(seats.into_iter(), 10),
            [member("1", Role::Seller, 1), member("2", Role::Client, 1), member("2", Role::Seller, 2)]
        );
        assert_eq!(
            first_members(seats.into_iter(), 2),
            [member("1", Role::Seller, 1), member("2", Role::Client, 1)],
            "the last one listed keeps all its connections"
        );
    }

    #[test]
    fn members_are_capped_counts_are_not() {
        let many = (0..MAX_MEMBERS + 5).map(|i| member(&i.to_string(), Role::Seller, 1)).collect();
        let merged = RoomPresence::merge([listing(1005, Some(MAX_MEMBERS + 5), many)]);
        assert_eq!((merged.users, merged.members.len()), (MAX_MEMBERS + 5, MAX_MEMBERS));
    }

    #[test]
    fn user_rooms_start_with_all_and_its_own() {
        let p = UserPresence::merge("5", [(1, vec!["orders".into()]), (2, vec!["all".into(), "a".into()])]);
        assert_eq!(p.rooms, ["all", "user:5", "a", "orders"]);
        assert!(p.online && p.connections == 3);
        assert_eq!(UserPresence::merge("5", []), UserPresence { user_id: "5".into(), ..Default::default() });
    }

    #[test]
    fn no_events_for_all_and_personal_rooms() {
        assert!(has_presence_events("orders") && has_presence_events("cart:7"));
        assert!(!has_presence_events("all") && !has_presence_events("user:7"));
    }

    #[test]
    fn join_events_carry_the_member() {
        let event = membership_event("cart:7", "7", Role::Client, true).expect("event");
        let v: serde_json::Value = serde_json::from_str(event.frame.as_str()).expect("json");
        assert_eq!((v["type"].as_str(), v["room"].as_str()), (Some("join"), Some("cart:7")));
        assert_eq!(v["payload"], serde_json::json!({"userId": "7", "role": "client"}));
        assert_eq!(event.audience, crate::event::Audience::Room("cart:7".into()));
    }

    #[test]
    fn control_round_trips_and_bounds_the_reason() {
        let c = Control::disconnect("5", None).expect("default reason");
        assert_eq!(serde_json::from_str::<Control>(&c.encode()).expect("json"), c);
        assert_eq!(Control::disconnect("5", Some(&"x".repeat(124))), Err(DisconnectError::ReasonTooLong));
    }
}
