//! History and recovery (README, History and recovery): a room's stream —
//! its `epoch` and `offset`s —, what a client asks to recover (`since`),
//! the answer, and [`Store`], the in-memory history a single instance keeps
//! on the shard that orders each room's events.
//!
//! With Redis the same answers come from Redis (`bus::redis::history`); the
//! rules of [`Window::answer`] are shared.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};

use crate::event::Event;
pub use crate::event::Position;

/// The longest epoch a `since` may name. The server's own are far shorter;
/// a longer one is no position of a stream, and would only have the
/// subscribe that waits for its room's answer hold the client's bytes.
pub const EPOCH_MAX: usize = 64;

/// What a client says it has seen of a room.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Since {
    pub offset: u64,
    #[serde(deserialize_with = "short_epoch")]
    pub epoch: String,
}

fn short_epoch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let epoch = String::deserialize(deserializer)?;
    match epoch.len() <= EPOCH_MAX {
        true => Ok(epoch),
        false => Err(serde::de::Error::custom(format!("an epoch is at most {EPOCH_MAX} bytes"))),
    }
}

/// A stream's answer to `since`: where it stands, whether every event after
/// `since` could be given, and those events (none when not recovered).
#[derive(Debug, Clone)]
pub struct Recovery {
    pub position: Position,
    pub recovered: bool,
    pub events: Vec<Arc<Event>>,
}

/// A place in a stream as a session keeps it, for every room it is in: the
/// offset, and the epoch as a hash (compared at every delivery, where a
/// string would cost more; two epochs of one room sharing a hash is a
/// 2^-64 chance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    pub epoch: u64,
    pub offset: u64,
}

impl Mark {
    pub fn of(position: &Position) -> Self {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        position.epoch.hash(&mut hasher);
        Self { epoch: hasher.finish(), offset: position.offset }
    }
}

/// What a stream holds, seen from one request: its position and the offset
/// of its oldest kept event.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub epoch: &'a str,
    pub offset: u64,
    /// The oldest offset still kept (`offset + 1` when none is).
    pub first: u64,
}

impl Window<'_> {
    /// Whether every event after `since` is still kept: same epoch, and
    /// nothing between `since` and the oldest kept event is gone. A `since`
    /// ahead of the stream is not recovered either (it is not this stream's).
    pub fn covers(&self, since: &Since) -> bool {
        since.epoch == self.epoch && since.offset <= self.offset && since.offset + 1 >= self.first
    }

    pub fn position(&self) -> Position {
        Position { epoch: self.epoch.to_owned(), offset: self.offset }
    }
}

/// One room's kept events, oldest first, and its sequence.
struct Stream {
    epoch: Arc<str>,
    offset: u64,
    events: VecDeque<Arc<Event>>,
    bytes: usize,
    /// When the stream has gone `ttl` without an event.
    expires: Instant,
}

impl Stream {
    fn window(&self) -> Window<'_> {
        let first = self.offset + 1 - self.events.len() as u64;
        Window { epoch: &self.epoch, offset: self.offset, first }
    }
}

/// The history of the rooms one shard orders. Not `Sync`: each shard owns
/// its own, for the rooms that hash to it.
pub struct Store {
    size: usize,
    ttl: Duration,
    /// Names this store's epochs: unique to this instance's start and shard.
    epoch_prefix: String,
    /// Where the TTL windows that name epochs are counted from.
    start: Instant,
    streams: HashMap<Arc<str>, Stream>,
    /// Each stream once, in the order it may expire: a stream written since
    /// its entry was queued is queued again when the entry comes up, so
    /// expiring costs O(1) per stream, whatever the number of events.
    expiry: VecDeque<(Instant, Arc<str>)>,
    events: usize,
    bytes: usize,
}

impl Store {
    pub fn new(size: usize, ttl: Duration, epoch_prefix: String) -> Self {
        Self {
            size,
            ttl,
            epoch_prefix,
            start: Instant::now(),
            streams: HashMap::new(),
            expiry: VecDeque::new(),
            events: 0,
            bytes: 0,
        }
    }

    /// Keeps `event` as the next one of `stream`, trimming the oldest past
    /// the size, and gives its position.
    pub fn append(
        &mut self,
        stream: &str,
        event: impl FnOnce(&Position) -> Arc<Event>,
        now: Instant,
    ) -> Arc<Event> {
        let (ttl, size) = (self.ttl, self.size);
        let stream = self.stream(stream, now);
        stream.expires = now + ttl;
        stream.offset += 1;
        let position = Position { epoch: stream.epoch.to_string(), offset: stream.offset };
        let event = event(&position);
        stream.bytes += event.frame.len();
        stream.events.push_back(event.clone());
        let (mut removed, mut removed_bytes) = (0, 0);
        while stream.events.len() > size {
            if let Some(old) = stream.events.pop_front() {
                removed += 1;
                removed_bytes += old.frame.len();
            }
        }
        stream.bytes -= removed_bytes;
        self.events = self.events + 1 - removed;
        self.bytes = self.bytes + event.frame.len() - removed_bytes;
        event
    }

    /// The answer to a reader that has seen `since` of `stream`: the events
    /// after it, oldest first, at most `limit`. Without `since`, the newest
    /// `limit` events (a client asks for none: it only wants the position).
    pub fn recover(&self, stream: &str, since: Option<&Since>, limit: usize, now: Instant) -> Recovery {
        let Some(stream) = self.streams.get(stream).filter(|s| s.expires > now) else {
            return self.unborn(since, now);
        };
        let window = stream.window();
        let position = window.position();
        let (recovered, events) = match since {
            None => {
                let skip = stream.events.len().saturating_sub(limit);
                (true, stream.events.iter().skip(skip).cloned().collect())
            }
            Some(since) if window.covers(since) => {
                let skip = stream.events.len() - (stream.offset - since.offset) as usize;
                (true, stream.events.iter().skip(skip).take(limit).cloned().collect())
            }
            Some(_) => (false, Vec::new()),
        };
        Recovery { position, recovered, events }
    }

    /// A stream without events (none yet, or forgotten): offset 0, in the
    /// epoch it will have if an event comes before the current TTL window
    /// ends. Asking makes nothing, so no client can make the store grow.
    fn unborn(&self, since: Option<&Since>, now: Instant) -> Recovery {
        let epoch = self.epoch_at(now);
        let window = Window { epoch: &epoch, offset: 0, first: 1 };
        let recovered = since.is_none_or(|since| window.covers(since));
        Recovery { position: window.position(), recovered, events: Vec::new() }
    }

    /// A stream's epoch names the TTL window it began in: a stream begins at
    /// most once per window (it ends a whole TTL after its last event), so
    /// no two lives of a room share an epoch, and a position given out for a
    /// room without events stays true if its first event comes in the same
    /// window.
    fn epoch_at(&self, now: Instant) -> String {
        let window = now.saturating_duration_since(self.start).as_secs() / self.ttl.as_secs().max(1);
        format!("{}{window}", self.epoch_prefix)
    }

    /// The stream, begun when there is none or its time is up.
    fn stream(&mut self, name: &str, now: Instant) -> &mut Stream {
        if self.streams.get(name).is_some_and(|s| s.expires <= now) {
            self.forget(name);
        }
        if !self.streams.contains_key(name) {
            let (name, expires): (Arc<str>, _) = (Arc::from(name), now + self.ttl);
            let epoch = Arc::from(self.epoch_at(now));
            let stream = Stream { epoch, offset: 0, events: VecDeque::new(), bytes: 0, expires };
            self.streams.insert(name.clone(), stream);
            self.expiry.push_back((expires, name));
        }
        self.streams.get_mut(name).expect("made above when missing")
    }

    fn forget(&mut self, name: &str) {
        if let Some(stream) = self.streams.remove(name) {
            self.events -= stream.events.len();
            self.bytes -= stream.bytes;
        }
    }

    /// Forgets the streams that have gone `ttl` without an event (a stream
    /// past its time is new to any reader already; this frees its memory).
    /// Entries are queued in roughly the order they come due, so a stream
    /// is freed at most two `ttl`s after its last event.
    pub fn expire(&mut self, now: Instant) {
        while self.expiry.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, name)) = self.expiry.pop_front() else { return };
            match self.streams.get(&name).map(|s| s.expires) {
                Some(expires) if expires > now => self.expiry.push_back((expires, name)),
                Some(_) => self.forget(&name),
                None => {}
            }
        }
    }

    /// Events and bytes of frames kept.
    pub fn size(&self) -> (usize, usize) {
        (self.events, self.bytes)
    }
}

/// How many of a room's kept events a subscribe asks for: all it may have
/// missed with `since`, none without (it wants only the position).
pub fn replay_limit(since: Option<&Since>, size: usize) -> usize {
    match since {
        Some(_) => size,
        None => 0,
    }
}

/// A subscribe waiting for its room's answer, as the shard that asked
/// numbers it; carried through the bus and back unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(pub usize);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Draft, Required};

    fn event(n: u64) -> Event {
        let body = format!(r#"{{"room":"orders","type":"t","payload":{{"n":{n}}}}}"#);
        serde_json::from_str::<Draft<'_>>(&body).expect("draft").into_event(Required::Room).expect("event")
    }

    fn store(size: usize) -> Store {
        Store::new(size, Duration::from_secs(10), "e".into())
    }

    fn append(store: &mut Store, n: u64, now: Instant) -> Arc<Event> {
        store.append("orders", |at| Arc::new(event(n).at(at.clone())), now)
    }

    fn offsets(recovery: &Recovery) -> Vec<u64> {
        recovery.events.iter().filter_map(|e| e.position.as_ref().map(|p| p.offset)).collect()
    }

    #[test]
    fn offsets_count_from_one_and_the_frame_says_so() {
        let mut store = store(3);
        let now = store.start;
        let first = append(&mut store, 0, now);
        let v: serde_json::Value = serde_json::from_str(first.frame.as_str()).expect("json");
        assert_eq!((v["offset"].as_u64(), v["epoch"].as_str()), (Some(1), Some("e0")));
        assert_eq!(v["payload"]["n"], 0);
        for n in 1..5 {
            append(&mut store, n, now);
        }
        let since = |offset| Since { offset, epoch: "e0".into() };
        let kept = store.recover("orders", Some(&since(2)), 10, now);
        assert!(kept.recovered);
        assert_eq!((kept.position.offset, offsets(&kept)), (5, vec![3, 4, 5]));
        assert!(!store.recover("orders", Some(&since(1)), 10, now).recovered, "offset 2 is gone");
        assert!(!store.recover("orders", Some(&since(6)), 10, now).recovered, "ahead of the stream");
        assert_eq!(offsets(&store.recover("orders", Some(&since(2)), 2, now)), [3, 4], "a page");
        assert_eq!(offsets(&store.recover("orders", None, 2, now)), [4, 5], "the newest");
        assert_eq!(store.size().0, 3);
    }

    #[test]
    fn a_stream_past_its_time_is_a_new_one_and_is_freed() {
        let mut store = store(3);
        let now = store.start;
        append(&mut store, 0, now);
        let later = now + Duration::from_secs(11);
        let fresh = store.recover("orders", Some(&Since { offset: 1, epoch: "e0".into() }), 10, later);
        assert!(!fresh.recovered);
        assert_eq!(fresh.position, Position { epoch: "e1".into(), offset: 0 });
        store.expire(later + Duration::from_secs(11));
        assert_eq!(store.size(), (0, 0));
        assert!(store.streams.is_empty() && store.expiry.is_empty());
    }

    #[test]
    fn asking_about_a_room_without_events_keeps_nothing_and_stays_true() {
        let mut store = store(3);
        let now = store.start;
        let asked = store.recover("quiet", None, 0, now);
        assert_eq!(asked.position, Position { epoch: "e0".into(), offset: 0 });
        assert!(store.streams.is_empty(), "a question makes no stream");
        let since = Since { offset: 0, epoch: "e0".into() };
        store.append("quiet", |at| Arc::new(event(1).at(at.clone())), now + Duration::from_secs(5));
        let recovered = store.recover("quiet", Some(&since), 10, now + Duration::from_secs(6));
        assert!(recovered.recovered, "the first event came in the same window");
        assert_eq!(offsets(&recovered), [1]);
    }
}
