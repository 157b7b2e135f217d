//! Presence in Redis, so that a query sees every instance (README, Presence and control). Each
//! shard of each instance is an *entity* (a random id) that writes only its
//! own fields:
//!
//! - `<prefix>:presence:live`, a sorted set: entity → the time (Unix ms) it
//!   is live until; refreshed every [`REFRESH_EVERY`], so an instance that
//!   dies without saying so drops out after [`ENTITY_TTL`];
//! - `<prefix>:presence:room:<room>`, a hash: `<entity> <role> <userId>` →
//!   that member's sessions in the room on that entity;
//! - `<prefix>:presence:user:<userId>`, a hash: `<entity> <role> <room>` →
//!   the same count, seen from the user (room `all`: all its sessions).
//!
//! Readers keep only the fields of live entities. Each key expires
//! [`KEY_TTL`] after the last refresh of any entity with fields in it.
//! Writing a field and deciding whether a member's first (last) session
//! anywhere joined (left) is one script, atomic in Redis, which also
//! publishes the `join`/`leave` envelope: exactly once over all instances.
//! With history the envelope is numbered and kept in its channel's log like
//! any event, so a subscriber that was away catches up on it too.

use std::rc::Rc;
use std::time::Duration;

use redis::Value;

use super::history::{life_key, life_lua, sequenced_lua};
use crate::auth::Role;
use crate::presence::{Member, RoomAnswer};

/// An entity not refreshed for this long is no longer live.
pub const ENTITY_TTL: Duration = Duration::from_secs(45);
/// How often each entity says it is live.
pub const REFRESH_EVERY: Duration = Duration::from_secs(15);
/// A presence key no live entity refreshes expires after this.
pub const KEY_TTL: Duration = Duration::from_secs(120);

/// `announce(k, a, channel, event)` publishes a `join`/`leave`: with
/// history (a log size ARGV[a] > 0), numbered and kept in the channel's log
/// like an event (sequence KEYS[k], log KEYS[k+1], life KEYS[k+2]; at most
/// ARGV[a] messages for ARGV[a+1] seconds; a fresh token ARGV[a+2]; the
/// Redis process ARGV[a+3]), so a subscriber that was away catches up on it.
macro_rules! announce_lua {
    () => {
        concat!(
            life_lua!(),
            sequenced_lua!(),
            r"
local function announce(k, a, channel, event)
  local logsize = tonumber(ARGV[a])
  if logsize > 0 then
    local fresh = ARGV[a + 2]
    local life = life_now(KEYS[k + 2], fresh, ARGV[a + 3])
    publish_sequenced(KEYS[k], KEYS[k + 1], logsize, ARGV[a + 1], life, fresh, channel, string.sub(event, 1, -2))
  else
    redis.call('PUBLISH', channel, event)
  end
end
"
        )
    };
}

/// Says the entity is live (a writer is, before its first refresh), sets
/// (count > 0) or removes (0) its field in a room and its user. With an
/// event (ARGV[7] on ARGV[6]): when the member thereby appears in the room
/// on every live entity, announces its `join` (returns 1) unless its
/// `leave` is held (KEYS[4], field ARGV[2]: taken back, returns 0); when it
/// vanishes, holds its `leave` under the stamp ARGV[10] (returns 2) for
/// [`CONFIRM_SCRIPT`] to send after `presence::LEAVE_GRACE`. Numbering (with
/// history) takes KEYS[5..=7] and ARGV[11..=14] (see `announce_lua`).
const SEAT_SCRIPT: &str = concat!(
    announce_lua!(),
    r"
local room, user, live, leaving = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local entity, member, userfield, count, now, channel, event, ttl, expiry, stamp =
  ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
redis.call('ZADD', live, expiry, entity)
local field = entity .. member
local had = redis.call('HEXISTS', room, field) == 1
if count > 0 then
  redis.call('HSET', room, field, count)
  redis.call('HSET', user, userfield, count)
else
  redis.call('HDEL', room, field)
  redis.call('HDEL', user, userfield)
end
redis.call('EXPIRE', room, ttl)
redis.call('EXPIRE', user, ttl)
if event == '' or had == (count > 0) then return 0 end
for _, other in ipairs(redis.call('ZRANGEBYSCORE', live, now, '+inf')) do
  if other ~= entity and redis.call('HEXISTS', room, other .. member) == 1 then return 0 end
end
if count == 0 then
  redis.call('HSET', leaving, member, stamp)
  redis.call('EXPIRE', leaving, ttl)
  return 2
end
if redis.call('HDEL', leaving, member) == 1 then return 0 end
announce(5, 11, channel, event)
return 1
"
);

/// Announces a held `leave` (ARGV[4] on ARGV[3]) if it is still held under
/// its stamp ARGV[2] (the member did not come back, nor go again) and no
/// live entity (scored from ARGV[5]) holds member ARGV[1]. Returns 1 when
/// sent. Numbering (with history) takes KEYS[4..=6] and ARGV[6..=9].
const CONFIRM_SCRIPT: &str = concat!(
    announce_lua!(),
    r"
local room, live, leaving = KEYS[1], KEYS[2], KEYS[3]
local member, stamp, channel, event, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HGET', leaving, member) ~= stamp then return 0 end
redis.call('HDEL', leaving, member)
for _, other in ipairs(redis.call('ZRANGEBYSCORE', live, now, '+inf')) do
  if redis.call('HEXISTS', room, other .. member) == 1 then return 0 end
end
announce(4, 6, channel, event)
return 1
"
);

/// A room's members and sessions on the live entities (KEYS[2] scored from
/// ARGV[1]), and its first ARGV[2] members by user id then role, worked out
/// in Redis: the reply is `users, connections`, then `userId, role,
/// connections` per member listed, never the room's hash.
const ROOM_SCRIPT: &str = r"
local live = {}
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')) do live[e] = true end
local fields = redis.call('HGETALL', KEYS[1])
local counts, users, connections = {}, 0, 0
for i = 1, #fields, 2 do
  local entity, role, user = string.match(fields[i], '^(%S+) (%S+) (.*)$')
  local n = tonumber(fields[i + 1])
  if entity and n and live[entity] then
    connections = connections + n
    local member = user .. '\0' .. role
    if counts[member] then counts[member] = counts[member] + n else counts[member] = n; users = users + 1 end
  end
end
local reply = {users, connections}
local limit = tonumber(ARGV[2])
if limit > 0 then
  local names = {}
  for member in pairs(counts) do names[#names + 1] = member end
  table.sort(names)
  for i = 1, math.min(limit, #names) do
    local user, role = string.match(names[i], '^(.*)%z(.-)$')
    reply[#reply + 1] = user
    reply[#reply + 1] = role
    reply[#reply + 1] = counts[names[i]]
  end
end
return reply
";

/// One shard of one instance, as presence in Redis knows it.
pub struct Entity {
    /// Random, new at every start.
    pub id: String,
    pub keys: PresenceKeys,
}

impl Entity {
    pub fn new(prefix: &str) -> Self {
        Self { id: ulid::Ulid::new().to_string(), keys: PresenceKeys::new(prefix) }
    }
}

/// The presence keys under a prefix.
#[derive(Debug, Clone)]
pub struct PresenceKeys {
    prefix: String,
    live: String,
}

/// One entity's count of a member's sessions in a room.
pub struct SeatWrite<'a> {
    pub entity: &'a str,
    pub room: &'a str,
    pub user_id: &'a str,
    pub role: Role,
    pub count: u32,
    /// `(channel, envelope)` of the `join`/`leave` to publish if this is the
    /// member's first (last) session in the room anywhere.
    pub event: Option<(&'a str, &'a str)>,
    /// With history, the channels' log bounds (`History::log_bounds`) and
    /// the `run_id` of the Redis process the write goes to.
    pub log: Option<(usize, u64, Rc<str>)>,
}

impl PresenceKeys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned(), live: format!("{prefix}:presence:live") }
    }

    pub fn room(&self, room: &str) -> String {
        format!("{}:presence:room:{room}", self.prefix)
    }

    pub fn user(&self, user_id: &str) -> String {
        format!("{}:presence:user:{user_id}", self.prefix)
    }

    fn leaving(&self, room: &str) -> String {
        format!("{}:presence:leaving:{room}", self.prefix)
    }

    /// The keys `announce_lua` numbers an event's `join`/`leave` with.
    fn numbering_keys(&self, event: Option<(&str, &str)>) -> [String; 3] {
        let channel = event.map_or("", |(channel, _)| channel);
        [format!("{channel}:seq"), format!("{channel}:log"), life_key(&self.prefix)]
    }

    /// The script that writes one seat (see [`SEAT_SCRIPT`]).
    pub fn write_seat(&self, seat: &SeatWrite<'_>, now_ms: u64) -> Vec<u8> {
        let (channel, event) = seat.event.unwrap_or(("", ""));
        redis::cmd("EVAL")
            .arg(SEAT_SCRIPT)
            .arg(7)
            .arg(self.room(seat.room))
            .arg(self.user(seat.user_id))
            .arg(&self.live)
            .arg(self.leaving(seat.room))
            .arg(&self.numbering_keys(seat.event)[..])
            .arg(seat.entity)
            .arg(member_field(seat.role, seat.user_id))
            .arg(format!("{} {} {}", seat.entity, seat.role.as_str(), seat.room))
            .arg(seat.count)
            .arg(now_ms)
            .arg(channel)
            .arg(event)
            .arg(KEY_TTL.as_secs())
            .arg(now_ms + ENTITY_TTL.as_millis() as u64)
            .arg(leave_stamp(seat.entity, now_ms))
            .arg(&numbering_args(seat.log.as_ref())[..])
            .get_packed_command()
    }

    /// Sends the `leave` that [`write_seat`](Self::write_seat) held at
    /// `held_ms`, if the member is still gone (see [`CONFIRM_SCRIPT`]).
    pub fn confirm_leave(&self, seat: &SeatWrite<'_>, held_ms: u64, now_ms: u64) -> Vec<u8> {
        let (channel, event) = seat.event.unwrap_or(("", ""));
        redis::cmd("EVAL")
            .arg(CONFIRM_SCRIPT)
            .arg(6)
            .arg(self.room(seat.room))
            .arg(&self.live)
            .arg(self.leaving(seat.room))
            .arg(&self.numbering_keys(seat.event)[..])
            .arg(member_field(seat.role, seat.user_id))
            .arg(leave_stamp(seat.entity, held_ms))
            .arg(channel)
            .arg(event)
            .arg(now_ms)
            .arg(&numbering_args(seat.log.as_ref())[..])
            .get_packed_command()
    }

    /// Says `entity` is live for [`ENTITY_TTL`] more, and forgets the
    /// entities that are not.
    pub fn refresh_entity(&self, entity: &str, now_ms: u64) -> [Vec<u8>; 2] {
        let until = now_ms + ENTITY_TTL.as_millis() as u64;
        [
            redis::cmd("ZADD").arg(&self.live).arg(until).arg(entity).get_packed_command(),
            redis::cmd("ZREMRANGEBYSCORE").arg(&self.live).arg("-inf").arg(now_ms).get_packed_command(),
        ]
    }

    /// An entity that stops (shutdown) is no longer live at once.
    pub fn leave_entity(&self, entity: &str) -> Vec<u8> {
        redis::cmd("ZREM").arg(&self.live).arg(entity).get_packed_command()
    }

    /// Keeps a key with this entity's fields from expiring.
    pub fn keep(&self, key: &str) -> Vec<u8> {
        redis::cmd("EXPIRE").arg(key).arg(KEY_TTL.as_secs()).get_packed_command()
    }

    pub fn live_entities(&self, now_ms: u64) -> Vec<u8> {
        redis::cmd("ZRANGEBYSCORE").arg(&self.live).arg(now_ms).arg("+inf").get_packed_command()
    }

    /// A room's counts on the live entities, and its first `members`
    /// members (see [`ROOM_SCRIPT`]; read with [`room_answer`]).
    pub fn read_room(&self, room: &str, members: usize, now_ms: u64) -> Vec<u8> {
        redis::cmd("EVAL")
            .arg(ROOM_SCRIPT)
            .arg(2)
            .arg(self.room(room))
            .arg(&self.live)
            .arg(now_ms)
            .arg(members)
            .get_packed_command()
    }

    pub fn read(&self, key: &str) -> Vec<u8> {
        redis::cmd("HGETALL").arg(key).get_packed_command()
    }
}

/// A member's part of its fields in a room's hash, after the entity.
fn member_field(role: Role, user_id: &str) -> String {
    format!(" {} {user_id}", role.as_str())
}

/// The arguments `announce_lua` numbers with: none (a log size of 0)
/// without history.
fn numbering_args(log: Option<&(usize, u64, Rc<str>)>) -> [String; 4] {
    let (size, ttl, run) = log.map_or((0, 0, ""), |(size, ttl, run)| (*size, *ttl, &**run));
    [size.to_string(), ttl.to_string(), ulid::Ulid::new().to_string(), run.to_owned()]
}

/// Which hold of a `leave` it is: the entity that held it, and when.
fn leave_stamp(entity: &str, held_ms: u64) -> String {
    format!("{entity} {held_ms}")
}

/// The live entities of a `ZRANGEBYSCORE` reply.
pub fn entities(reply: &Value) -> Vec<String> {
    match reply {
        Value::Array(items) => items.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

/// The fields of live entities in an `HGETALL` reply: (the field after its
/// entity, split at spaces into two parts, and the count).
fn live_fields<'a>(reply: &'a Value, live: &'a [String]) -> impl Iterator<Item = (Role, String, u32)> + 'a {
    let pairs: Vec<(String, u32)> = match reply {
        Value::Map(pairs) => {
            pairs.iter().filter_map(|(k, v)| Some((text(k)?, text(v)?.parse().ok()?))).collect()
        }
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|pair| Some((text(&pair[0])?, text(&pair[1])?.parse().ok()?)))
            .collect(),
        _ => Vec::new(),
    };
    pairs.into_iter().filter_map(move |(field, count)| {
        let mut parts = field.splitn(3, ' ');
        let (entity, role, rest) = (parts.next()?, parts.next()?, parts.next()?);
        live.iter().any(|e| e == entity).then_some(())?;
        Some((role.parse().ok()?, rest.to_owned(), count))
    })
}

/// The answer of [`PresenceKeys::read_room`], over every instance; `None`
/// for a reply that is not one.
pub fn room_answer(reply: &Value) -> Option<RoomAnswer> {
    let Value::Array(items) = reply else { return None };
    let (counts, listed) = items.split_at_checked(2)?;
    let number = |v: &Value| text(v)?.parse::<u64>().ok();
    let members = listed
        .chunks_exact(3)
        .filter_map(|m| {
            let connections = number(&m[2])?.try_into().ok()?;
            Some(Member { user_id: text(&m[0])?, role: text(&m[1])?.parse().ok()?, connections })
        })
        .collect();
    Some(RoomAnswer {
        users: Some(number(&counts[0])?.try_into().ok()?),
        connections: number(&counts[1])?,
        members,
    })
}

/// A user's connections (its fields for `all`) and rooms on the live entities.
pub fn user_sessions(reply: &Value, live: &[String]) -> (u32, Vec<String>) {
    let mut connections = 0;
    let mut rooms = Vec::new();
    for (_, room, count) in live_fields(reply, live) {
        if room == crate::room::ALL {
            connections += count;
        }
        rooms.push(room);
    }
    (connections, rooms)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn only_live_entities_count() {
        let hash =
            Value::Array(vec![bulk("e1 seller all"), bulk("2"), bulk("dead seller orders:2"), bulk("5")]);
        let live = ["e1".to_owned(), "e2".to_owned()];
        let user =
            Value::Array(vec![bulk("e1 seller all"), bulk("2"), bulk("e1 seller orders:1"), bulk("1")]);
        assert_eq!(user_sessions(&user, &live), (2, vec!["all".into(), "orders:1".into()]));
        assert_eq!(user_sessions(&hash, &live), (2, vec!["all".into()]));
    }

    #[test]
    fn a_room_answer_is_counts_then_members() {
        let reply =
            Value::Array(vec![Value::Int(3), Value::Int(4), bulk("7"), bulk("seller"), Value::Int(2)]);
        let answer = room_answer(&reply).expect("an answer");
        assert_eq!((answer.users, answer.connections), (Some(3), 4));
        assert_eq!(answer.members, [Member { user_id: "7".into(), role: Role::Seller, connections: 2 }]);
        assert_eq!(room_answer(&Value::Array(vec![Value::Int(1)])), None);
    }
}
