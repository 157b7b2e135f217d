//! History in Redis (README, History and recovery: with Redis): the Lua
//! scripts that keep a room's stream and each channel's catch-up log, the
//! keys they use, and what their replies mean. Every instance runs the same
//! scripts, and Redis runs each one atomically, so all instances agree on
//! the offsets and on the order of a channel's events.
//!
//! - `<prefix>:history-meta:<stream>`, a hash: the stream's `epoch` and
//!   latest `offset`, made by its first event;
//! - `<prefix>:history:<stream>`, a list: its last `HISTORY_SIZE` envelopes,
//!   each with its `offset` and `epoch`; both expire `HISTORY_TTL` after the
//!   stream's last event;
//! - `<channel>:seq`, a hash: the channel's own `epoch` and sequence `n`,
//!   counting every message numbered on it (no expiry: one per channel);
//! - `<channel>:log`, a list: the channel's last [`LOG_PER_HISTORY`] ×
//!   `HISTORY_SIZE` messages as published (up to 64 more), for a subscriber
//!   that comes back (`subscriber`, `catch_up`);
//! - `<prefix>:history-life`, a string: a random token, new when Redis has
//!   lost its data, that begins every stream's epoch.

use std::cell::Cell;
use std::sync::Arc;

use redis::Value;
use sha1::{Digest, Sha1};
use tracing::warn;

use super::envelope::parse;
use super::publisher::{Publisher, Unavailable};
use crate::config::Config;
use crate::history::{Recovery, Since, Window};
use crate::metrics::{HistoryScript, Metrics};

/// A channel's catch-up log holds this many times `HISTORY_SIZE` messages:
/// enough for an outage of a few seconds at thousands of events a second.
pub const LOG_PER_HISTORY: usize = 100;

/// This Redis's history life, and the epochs made in it. The life is a
/// random token (ARGV `fresh` when a new one is needed) kept in KEYS
/// `lifekey` with the `run_id` of the Redis process that made it (ARGV `run`,
/// read by each connection from `INFO server`): a Redis that restarted,
/// whether empty or from an older snapshot, or a replica that took over, has
/// another `run_id`, and so begins a new life, and no epoch of the old one
/// goes on with offsets it may already have given.
///
/// A stream's epoch is its life and the `HISTORY_TTL` window it begins in. A
/// stream lives a whole TTL after its last event, so it begins at most once
/// per window and no two of its lives share an epoch; and the position given
/// for a room without events stays true when its first event comes in the
/// same window, without keeping anything for the question. A channel's
/// sequence epoch is its life and the token of whoever began it.
macro_rules! life_lua {
    () => {
        r#"
local function life_now(lifekey, fresh, run)
  local life = redis.call('GET', lifekey)
  local cut = life and string.find(life, ' ', 1, true)
  if cut and string.sub(life, 1, cut - 1) == run then return string.sub(life, cut + 1) end
  redis.call('SET', lifekey, run .. ' ' .. fresh)
  return fresh
end
local function of_life(epoch, life, mark)
  return epoch and string.sub(epoch, 1, #life + 1) == life .. mark
end
local function epoch_now(life, ttl)
  return life .. '-' .. math.floor(tonumber(redis.call('TIME')[1]) / tonumber(ttl))
end
"#
    };
}

/// Publishes `body .. ',"seq":N}'` on `channel`, N the channel's next
/// sequence number, and keeps it in the channel's log (trimmed back to
/// `logsize` once 64 past it, expiring `ttl` seconds after the last): what a
/// subscriber that comes back catches up from (`CATCH_UP_SCRIPT`). A
/// sequence of a past `life` (`life_lua`, which must come first) begins
/// again, with its log, under an epoch of this life.
macro_rules! sequenced_lua {
    () => {
        r#"
local function publish_sequenced(seq, log, logsize, ttl, life, fresh, channel, body)
  if not of_life(redis.call('HGET', seq, 'epoch'), life, '/') then
    redis.call('DEL', seq, log)
    redis.call('HSET', seq, 'epoch', life .. '/' .. fresh)
  end
  local n = redis.call('HINCRBY', seq, 'n', 1)
  local sent = body .. ',"seq":' .. n .. '}'
  if redis.call('RPUSH', log, sent) > logsize + 64 then redis.call('LTRIM', log, -logsize, -1) end
  redis.call('EXPIRE', log, ttl)
  redis.call('PUBLISH', channel, sent)
end
"#
    };
}
pub(super) use {life_lua, sequenced_lua};

/// Appends the envelope ARGV[1] to its stream (beginning the stream when it
/// has none, or one of a past life), and publishes it with its offset and
/// the channel's sequence on ARGV[6], keeping that in the channel's log too.
/// Returns the offset. Each `redis.call` costs Redis about 1.5 µs, so lists
/// are trimmed only once past their cap.
///
/// A stream whose meta is gone while its list is kept lost its offset (a
/// `DEL`, an eviction): it may have given out offsets in this window's
/// epoch already, so it begins again in one of its own.
const PUBLISH_SCRIPT: &str = concat!(
    life_lua!(),
    sequenced_lua!(),
    r#"
local list, meta, seq, log, lifekey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local envelope, fresh, size, ttl, logsize, channel, run =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local life = life_now(lifekey, fresh, run)
local epoch = redis.call('HGET', meta, 'epoch')
if not of_life(epoch, life, '-') then
  local lost = not epoch and redis.call('EXISTS', list) == 1
  epoch = epoch_now(life, ttl)
  if lost then epoch = epoch .. '-' .. fresh end
  redis.call('DEL', list, meta)
  redis.call('HSET', meta, 'epoch', epoch)
end
local offset = redis.call('HINCRBY', meta, 'offset', 1)
local kept = string.sub(envelope, 1, -2) .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"'
if redis.call('RPUSH', list, kept .. '}') > size then redis.call('LTRIM', list, -size, -1) end
redis.call('EXPIRE', list, ttl)
redis.call('EXPIRE', meta, ttl)
publish_sequenced(seq, log, logsize, ttl, life, fresh, channel, kept)
return offset
"#
);

/// A stream's position and up to ARGV[5] kept envelopes: the newest without
/// `since` (ARGV[3] empty), else those after it when the stream still holds
/// them all. A stream without events (or only one of a past life) answers
/// offset 0 in the epoch it would begin with now, and keeps nothing (a
/// client's questions cannot make Redis grow). The envelopes are read a page
/// at a time, and none is given once they pass ARGV[6] bytes: Redis is
/// never asked to write more than what the reader can take. Returns epoch,
/// offset, how many are kept, the envelopes, and 1 when they passed the
/// budget (else 0).
const FETCH_SCRIPT: &str = concat!(
    life_lua!(),
    r#"
local list, meta, lifekey = KEYS[1], KEYS[2], KEYS[3]
local fresh, ttl, since, since_epoch, limit, budget, run =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local life = life_now(lifekey, fresh, run)
local epoch = redis.call('HGET', meta, 'epoch')
if not of_life(epoch, life, '-') then return {epoch_now(life, ttl), 0, 0, {}, 0} end
local offset = tonumber(redis.call('HGET', meta, 'offset') or '0')
local kept = redis.call('LLEN', list)
local first = offset + 1 - kept
local from, count = 0, 0
if limit > 0 and since == '' then
  count = math.min(limit, kept)
  from = kept - count
elseif limit > 0 and since_epoch == epoch and tonumber(since) <= offset and tonumber(since) + 1 >= first then
  from = tonumber(since) + 1 - first
  count = math.min(limit, kept - from)
end
local events, bytes = {}, 0
while #events < count do
  local page = redis.call('LRANGE', list, from + #events, from + math.min(#events + 16, count) - 1)
  if #page == 0 then break end
  for _, event in ipairs(page) do
    bytes = bytes + #event
    events[#events + 1] = event
  end
  if bytes > budget then return {epoch, offset, kept, {}, 1} end
end
return {epoch, offset, kept, events, 0}
"#
);

/// For each channel (KEYS[1]: the life; then per channel its sequence and
/// log; ARGV[2i+1], ARGV[2i+2]: the epoch and last sequence a subscriber
/// handed on, empty when none), where the channel stands and what the
/// subscriber missed: epoch, sequence, 1 when the log no longer holds all of
/// it (else 0), the messages. A channel whose sequence is of a past life
/// begins a new one: whoever had the old one missed what it cannot know.
const CATCH_UP_SCRIPT: &str = concat!(
    life_lua!(),
    r#"
local fresh, out = ARGV[1], {}
local life = life_now(KEYS[1], fresh, ARGV[2])
for i = 1, (#KEYS - 1) / 2 do
  local seq, log, had, last = KEYS[2 * i], KEYS[2 * i + 1], ARGV[2 * i + 1], ARGV[2 * i + 2]
  local epoch = redis.call('HGET', seq, 'epoch')
  if not of_life(epoch, life, '/') then
    epoch = life .. '/' .. fresh
    redis.call('DEL', seq, log)
    redis.call('HSET', seq, 'epoch', epoch)
  end
  local n = tonumber(redis.call('HGET', seq, 'n') or '0')
  local missed = had == epoch and n - tonumber(last) or -1
  if had == '' then
    out[i] = {epoch, n, 0, {}}
  elseif missed < 0 or missed > redis.call('LLEN', log) then
    out[i] = {epoch, n, 1, {}}
  elseif missed == 0 then
    out[i] = {epoch, n, 0, {}}
  else
    out[i] = {epoch, n, 0, redis.call('LRANGE', log, -missed, -1)}
  end
end
return out
"#
);

/// A script and its SHA-1, for `EVALSHA`.
pub struct Script {
    pub text: &'static str,
    sha: String,
}

impl Script {
    fn new(text: &'static str) -> Self {
        let sha = Sha1::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        Self { text, sha }
    }

    /// `EVALSHA` of the script (or `EVAL` with its text, `by_text`, after
    /// Redis said `NOSCRIPT`) with `keys` and `args`.
    pub fn call(&self, keys: &[String], args: &[String], by_text: bool) -> Vec<u8> {
        let (command, script) = match by_text {
            true => ("EVAL", self.text),
            false => ("EVALSHA", self.sha.as_str()),
        };
        redis::cmd(command).arg(script).arg(keys.len()).arg(keys).arg(args).get_packed_command()
    }
}

/// Whether Redis answered that it does not know the script (flushed, or a
/// Redis that restarted between `SCRIPT LOAD` and now).
pub fn unknown_script(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// A script's reply that is not what the script returns.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from the {script} script: {reply}")]
pub struct BadReply {
    script: &'static str,
    reply: String,
}

impl BadReply {
    fn of(script: &'static str, reply: &Value) -> Self {
        // A refusal's text, or the reply's shape: never an envelope's body.
        let reply = match reply {
            Value::ServerError(e) => e.to_string(),
            other => format!("{:.80}", format!("{other:?}")),
        };
        Self { script, reply }
    }
}

/// One shard's way to the history in Redis: the keys, the scripts, and the
/// epochs it proposes for streams that have none.
pub struct History {
    prefix: String,
    size: usize,
    ttl_secs: u64,
    pub publish: Script,
    pub fetch: Script,
    /// Random, new at every start: with `made`, every epoch this shard
    /// proposes is one no stream has had.
    tag: String,
    made: Cell<u64>,
}

impl History {
    /// `None` without history (`HISTORY_SIZE=0`).
    pub fn new(config: &Config) -> Option<Self> {
        (config.history_size > 0).then(|| Self {
            prefix: config.redis_prefix.clone(),
            size: config.history_size,
            ttl_secs: config.history_ttl.as_secs().max(1),
            publish: Script::new(PUBLISH_SCRIPT),
            fetch: Script::new(FETCH_SCRIPT),
            tag: ulid::Ulid::new().to_string()[18..].to_ascii_lowercase(),
            made: Cell::new(0),
        })
    }

    /// Events kept per stream: what a recovery may give at most.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Every script's text, to `SCRIPT LOAD` on a new connection.
    pub fn scripts(&self) -> [&'static str; 2] {
        [self.publish.text, self.fetch.text]
    }

    /// How many messages a channel's log keeps, and for how many seconds
    /// after its last.
    pub fn log_bounds(&self) -> (usize, u64) {
        (self.size * LOG_PER_HISTORY, self.ttl_secs)
    }

    /// An epoch for a stream or channel that has none; used only then.
    fn fresh_epoch(&self) -> String {
        self.made.set(self.made.get() + 1);
        format!("{}{}", self.tag, self.made.get())
    }

    /// The script call that appends `envelope` to `stream` and publishes it
    /// on `channel`, for the Redis process `run`.
    pub fn append(&self, stream: &str, channel: &str, envelope: &str, run: &str, by_text: bool) -> Vec<u8> {
        let keys = [
            self.list(stream),
            self.meta(stream),
            format!("{channel}:seq"),
            format!("{channel}:log"),
            self.life(),
        ];
        let (log_size, ttl_secs) = self.log_bounds();
        let args = [
            envelope.to_owned(),
            self.fresh_epoch(),
            self.size.to_string(),
            ttl_secs.to_string(),
            log_size.to_string(),
            channel.to_owned(),
            run.to_owned(),
        ];
        self.publish.call(&keys, &args, by_text)
    }

    /// Keeps `envelope` in `stream` and publishes it on `channel` (README,
    /// History and recovery: with Redis); `Ok` with its offset once Redis has
    /// done both.
    pub async fn publish(
        &self,
        publisher: &Publisher,
        metrics: &Metrics,
        stream: &str,
        channel: &str,
        envelope: &str,
    ) -> Result<u64, Unavailable> {
        let run = publisher.run_id()?;
        let mut reply = publisher.command(self.append(stream, channel, envelope, &run, false)).await?;
        if unknown_script(&reply) {
            reply = publisher.command(self.append(stream, channel, envelope, &run, true)).await?;
        }
        appended(&reply).map_err(|error| {
            metrics.script_failed(HistoryScript::Publish);
            warn!(error = %error, "redis refused a publish");
            Unavailable
        })
    }

    /// `stream`'s answer to `since`, asked on the publisher connection: for
    /// a reader outside any shard's order (the history API).
    pub async fn recover(
        &self,
        publisher: &Publisher,
        metrics: &Metrics,
        stream: &str,
        since: Option<&Since>,
        limit: usize,
    ) -> Result<Recovery, Unavailable> {
        // The publisher connection has no output limit of its own, and
        // `limit` bounds the answer.
        let ask = Ask { stream, since, limit, budget: usize::MAX };
        let run = publisher.run_id()?;
        let mut reply = publisher.command(self.ask(&ask, &run, false)).await?;
        if unknown_script(&reply) {
            reply = publisher.command(self.ask(&ask, &run, true)).await?;
        }
        recovery(reply, since).map_err(|error| {
            metrics.script_failed(HistoryScript::Fetch);
            warn!(error = %error, "a history fetch failed");
            Unavailable
        })
    }

    /// The script call that answers `ask` for the Redis process `run`.
    pub fn ask(&self, ask: &Ask<'_>, run: &str, by_text: bool) -> Vec<u8> {
        let keys = [self.list(ask.stream), self.meta(ask.stream), self.life()];
        let (offset, epoch) =
            ask.since.map_or((String::new(), String::new()), |s| (s.offset.to_string(), s.epoch.clone()));
        let args = [
            self.fresh_epoch(),
            self.ttl_secs.to_string(),
            offset,
            epoch,
            ask.limit.to_string(),
            ask.budget.to_string(),
            run.to_owned(),
        ];
        self.fetch.call(&keys, &args, by_text)
    }

    fn list(&self, stream: &str) -> String {
        format!("{}:history:{stream}", self.prefix)
    }

    fn meta(&self, stream: &str) -> String {
        format!("{}:history-meta:{stream}", self.prefix)
    }

    fn life(&self) -> String {
        life_key(&self.prefix)
    }
}

/// The key of the history life (see `life_lua`): read by every script that
/// numbers or keeps, with or without history.
pub fn life_key(prefix: &str) -> String {
    format!("{prefix}:history-life")
}

/// What a history read asks of one stream.
pub struct Ask<'a> {
    pub stream: &'a str,
    pub since: Option<&'a Since>,
    /// The most events to give.
    pub limit: usize,
    /// The most bytes of envelopes to give: past it, none is given and the
    /// answer is not recovered.
    pub budget: usize,
}

/// The script call that says what a subscriber missed on each channel
/// since `seen` (per channel: the sequence's epoch and last number), for the
/// Redis process `run` and the life kept at `life_key` (a sequence of
/// another life begins again); `fresh`
/// is the token of a life or sequence that has none. Used once per
/// connection, so sent by text.
pub fn catch_up<'a>(
    life_key: &str,
    fresh: String,
    run: &str,
    seen: impl IntoIterator<Item = (&'a str, Option<(&'a str, u64)>)>,
) -> Vec<u8> {
    let mut keys = vec![life_key.to_owned()];
    let mut args = vec![fresh, run.to_owned()];
    for (channel, seen) in seen {
        keys.extend([format!("{channel}:seq"), format!("{channel}:log")]);
        let (epoch, last) =
            seen.map_or((String::new(), String::new()), |(e, n)| (e.to_owned(), n.to_string()));
        args.extend([epoch, last]);
    }
    redis::cmd("EVAL").arg(CATCH_UP_SCRIPT).arg(keys.len()).arg(keys).arg(args).get_packed_command()
}

/// The fetch script's reply as a recovery for `since`. Each kept envelope
/// carries its offset and epoch, so it becomes an event at that position;
/// envelopes past the read's budget are not recovered.
pub fn recovery(reply: Value, since: Option<&Since>) -> Result<Recovery, BadReply> {
    let bad = || BadReply::of("fetch", &reply);
    let Value::Array(items) = &reply else { return Err(bad()) };
    let [epoch, offset, kept, events, too_large] = items.as_slice() else { return Err(bad()) };
    let (Some(epoch), Value::Int(offset), Value::Int(kept), Value::Array(events), Value::Int(too_large)) =
        (text(epoch), offset, kept, events, too_large)
    else {
        return Err(bad());
    };
    let (offset, kept) =
        (u64::try_from(*offset).map_err(|_| bad())?, u64::try_from(*kept).map_err(|_| bad())?);
    let window = Window { epoch: &epoch, offset, first: (offset + 1).saturating_sub(kept) };
    let recovered = *too_large == 0 && since.is_none_or(|since| window.covers(since));
    let events = match recovered {
        true => events.iter().filter_map(|e| parse(bytes(e)?).ok()).map(Arc::new).collect(),
        false => Vec::new(),
    };
    Ok(Recovery { position: window.position(), recovered, events })
}

/// The publish script's reply: the event's offset.
fn appended(reply: &Value) -> Result<u64, BadReply> {
    match reply {
        Value::Int(offset) => u64::try_from(*offset).map_err(|_| BadReply::of("publish", reply)),
        other => Err(BadReply::of("publish", other)),
    }
}

/// What a subscriber missed on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// The channel's sequence epoch and latest number, as of the script.
    pub epoch: String,
    pub latest: u64,
    /// The messages after what the subscriber had seen, oldest first; `None`
    /// when the log no longer holds them all (or the sequence was lost).
    pub messages: Option<Vec<Vec<u8>>>,
}

/// The catch-up script's reply: one [`Missed`] per channel, in the order asked.
pub fn missed(reply: Value) -> Result<Vec<Missed>, BadReply> {
    let bad = || BadReply::of("catch-up", &reply);
    let Value::Array(channels) = &reply else { return Err(bad()) };
    channels
        .iter()
        .map(|channel| {
            let Value::Array(fields) = channel else { return Err(bad()) };
            let [epoch, latest, gap, messages] = fields.as_slice() else { return Err(bad()) };
            let (Some(epoch), Value::Int(latest), Value::Int(gap), Value::Array(messages)) =
                (text(epoch), latest, gap, messages)
            else {
                return Err(bad());
            };
            let messages =
                (*gap == 0).then(|| messages.iter().filter_map(|m| bytes(m).map(<[u8]>::to_vec)).collect());
            Ok(Missed { epoch, latest: u64::try_from(*latest).map_err(|_| bad())?, messages })
        })
        .collect()
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    bytes(value).map(|b| String::from_utf8_lossy(b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Position;

    #[test]
    fn a_recovery_follows_the_window_rule() {
        let answer = |kept: i64, too_large: i64| {
            Value::Array(vec![
                Value::BulkString(b"e1".to_vec()),
                Value::Int(10),
                Value::Int(kept),
                Value::Array(vec![Value::BulkString(b"x".to_vec())]),
                Value::Int(too_large),
            ])
        };
        let reply = |kept| answer(kept, 0);
        let since = |offset, epoch: &str| Since { offset, epoch: epoch.into() };
        let r = recovery(reply(5), Some(&since(5, "e1"))).expect("valid");
        assert!(r.recovered, "6..10 are kept");
        assert_eq!(r.position, Position { epoch: "e1".into(), offset: 10 });
        assert!(!recovery(reply(5), Some(&since(4, "e1"))).expect("valid").recovered, "5 is gone");
        assert!(!recovery(reply(5), Some(&since(9, "e0"))).expect("valid").recovered, "other epoch");
        assert!(!recovery(reply(5), Some(&since(11, "e1"))).expect("valid").recovered, "ahead");
        assert!(recovery(reply(0), None).expect("valid").recovered);
        assert!(!recovery(answer(5, 1), Some(&since(5, "e1"))).expect("valid").recovered, "past the budget");
        assert!(recovery(Value::Int(3), None).is_err());
    }

    #[test]
    fn a_gap_has_no_messages() {
        let channel = |gap| {
            Value::Array(vec![
                Value::BulkString(b"s1".to_vec()),
                Value::Int(7),
                Value::Int(gap),
                Value::Array(vec![Value::BulkString(b"m".to_vec())]),
            ])
        };
        let got = missed(Value::Array(vec![channel(0), channel(1)])).expect("valid");
        assert_eq!(got[0].messages, Some(vec![b"m".to_vec()]));
        assert_eq!(got[1], Missed { epoch: "s1".into(), latest: 7, messages: None });
    }

    #[test]
    fn the_sha_is_the_scripts() {
        // SHA-1 of "return 1", as `redis-cli SCRIPT LOAD "return 1"` gives it.
        assert_eq!(Script::new("return 1").sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
