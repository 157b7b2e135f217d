//! A reconnecting client's side of history and recovery (README "History and
//! recovery"): the `offset`/`epoch` of the last event a connection saw in its
//! room, the `subscribe` with `since` it sends after reconnecting, and the
//! per-connection accounting by offsets: events replayed, gaps between the
//! offsets it saw, answers that could not recover.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A place in a room's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// What a `subscribed` answer says about the room's history.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Subscribed {
    /// The room's latest place (history on).
    pub latest: Option<Position>,
    /// Present when the subscribe carried `since`.
    pub recovered: Option<bool>,
}

impl Subscribed {
    /// The answer in `text`, if it is a `subscribed`.
    pub fn parse(text: &str) -> Option<Subscribed> {
        let value: Value = serde_json::from_str(text).ok()?;
        if value.get("type")?.as_str()? != "subscribed" {
            return None;
        }
        let latest =
            match (value.get("offset").and_then(Value::as_u64), value.get("epoch").and_then(Value::as_str)) {
                (Some(offset), Some(epoch)) => Some(Position { offset, epoch: epoch.to_owned() }),
                _ => None,
            };
        Some(Subscribed { latest, recovered: value.get("recovered").and_then(Value::as_bool) })
    }
}

/// The `subscribe` request, with `since` when the connection has a place to resume from.
pub fn subscribe_request(room: &str, since: Option<&Position>) -> String {
    match since {
        Some(p) => serde_json::json!({ "type": "subscribe", "room": room, "since": p }),
        None => serde_json::json!({ "type": "subscribe", "room": room }),
    }
    .to_string()
}

/// `(offset, epoch)` of an event, found without a full JSON parse. Both come
/// after the payload, so the last occurrence of each key is the envelope's.
pub fn event_position(text: &str) -> Option<(u64, &str)> {
    let after = &text[text.rfind("\"offset\"")? + "\"offset\"".len()..];
    let digits = after.trim_start().strip_prefix(':')?.trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    let offset = digits[..end].parse().ok()?;
    let after = &text[text.rfind("\"epoch\"")? + "\"epoch\"".len()..];
    let quoted = after.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some((offset, &quoted[..quoted.find('"')?]))
}

/// One connection's place in its room, kept across its reconnects.
#[derive(Debug, Default)]
pub struct RoomTrack {
    last: Option<Position>,
    /// After a recovering subscribe: offsets up to this one are replays.
    replay_until: u64,
    /// Events that came through a recovery.
    pub recovered: u64,
    /// Offsets skipped between two events this connection saw (lost).
    pub gaps: u64,
    /// Subscribes with `since` answered `recovered:false`.
    pub not_recovered: u64,
    /// Events of another epoch than the one before them.
    pub epoch_changes: u64,
}

impl RoomTrack {
    /// Where a reconnect resumes from.
    pub fn since(&self) -> Option<&Position> {
        self.last.as_ref()
    }

    /// The offset of the last event seen (or of the `subscribed` answer).
    pub fn end(&self) -> Option<u64> {
        self.last.as_ref().map(|p| p.offset)
    }

    /// The answer to this connection's subscribe (with `since` if it had one).
    pub fn subscribed(&mut self, answer: &Subscribed) {
        match (answer.recovered, &answer.latest) {
            // The replay moves `last` forward event by event.
            (Some(true), Some(latest)) => self.replay_until = latest.offset,
            (recovered, latest) => {
                self.not_recovered += u64::from(recovered == Some(false));
                self.last = latest.clone();
            }
        }
    }

    /// An event at `offset` of `epoch`.
    pub fn event(&mut self, offset: u64, epoch: &str) {
        match &mut self.last {
            Some(last) if last.epoch == epoch => {
                if offset <= last.offset {
                    return;
                }
                self.gaps += offset - last.offset - 1;
                self.recovered += u64::from(offset <= self.replay_until);
                last.offset = offset;
            }
            last => {
                self.epoch_changes += u64::from(last.is_some());
                *last = Some(Position { offset, epoch: epoch.to_owned() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> Position {
        Position { offset, epoch: "e1".into() }
    }

    #[test]
    fn reads_an_events_place() {
        let text = r#"{"id":"1","type":"bench","room":"orders","payload":{"seq":3,"sentAt":9},"timestamp":"t","offset":42,"epoch":"e1"}"#;
        assert_eq!(event_position(text), Some((42, "e1")));
        assert_eq!(event_position(r#"{"type":"bench","payload":{"seq":3}}"#), None);
    }

    #[test]
    fn reads_a_subscribed_answer() {
        let answer = Subscribed::parse(
            r#"{"type":"subscribed","room":"orders","offset":45,"epoch":"e1","recovered":true}"#,
        );
        assert_eq!(answer, Some(Subscribed { latest: Some(at(45)), recovered: Some(true) }));
        let plain = Subscribed::parse(r#"{"type":"subscribed","room":"orders"}"#);
        assert_eq!(plain, Some(Subscribed::default()));
        assert_eq!(Subscribed::parse(r#"{"type":"error"}"#), None);
    }

    #[test]
    fn the_request_carries_since_once_there_is_a_place() {
        assert_eq!(subscribe_request("orders", None), r#"{"room":"orders","type":"subscribe"}"#);
        let with = subscribe_request("orders", Some(&at(41)));
        assert_eq!(with, r#"{"room":"orders","since":{"epoch":"e1","offset":41},"type":"subscribe"}"#);
    }

    #[test]
    fn counts_replays_gaps_and_failed_recoveries() {
        let mut t = RoomTrack::default();
        t.subscribed(&Subscribed { latest: Some(at(40)), recovered: None });
        t.event(41, "e1");
        assert_eq!(t.since(), Some(&at(41)));
        // Reconnected: 42..=45 replayed, then live from 46, a duplicate ignored.
        t.subscribed(&Subscribed { latest: Some(at(45)), recovered: Some(true) });
        for offset in [42, 43, 44, 45, 46, 46] {
            t.event(offset, "e1");
        }
        assert_eq!((t.recovered, t.gaps), (4, 0));
        t.event(49, "e1");
        assert_eq!(t.gaps, 2, "47 and 48 never came");
        t.subscribed(&Subscribed { latest: Some(at(60)), recovered: Some(false) });
        assert_eq!((t.not_recovered, t.since()), (1, Some(&at(60))));
        t.event(1, "e2");
        assert_eq!((t.epoch_changes, t.gaps), (1, 2));
    }
}
