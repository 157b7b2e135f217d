//! What one shard's subscriber has handed on of each event channel (the
//! channel's sequence epoch and last number), kept across its reconnections,
//! and the merge that makes a reconnection lose nothing: what the channel's
//! log says was missed, in order, then the messages read while that answer
//! was awaited, each handed on once. Only the subscriber's task touches it.

use super::history::Missed;

/// A message as the subscriber hands it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub channel: String,
    pub payload: Vec<u8>,
}

/// What to do, in order, once a catch-up answer is in.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Deliver(Message),
    /// The log no longer holds what was missed on this channel.
    Resync(String),
}

/// How one channel came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every missed message was handed on.
    Complete,
    /// The rooms of the channel were told to resync.
    Gap,
}

/// Per event channel, the sequence epoch and the last number handed on
/// (`None` before the first connection).
pub struct Seen {
    channels: Vec<(String, Option<(String, u64)>)>,
}

impl Seen {
    pub fn new<'a>(channels: impl IntoIterator<Item = &'a str>) -> Self {
        Self { channels: channels.into_iter().map(|c| (c.to_owned(), None)).collect() }
    }

    /// Each channel and what was handed on of it, for the catch-up script.
    pub fn asked(&self) -> impl Iterator<Item = (&str, Option<(&str, u64)>)> {
        self.channels.iter().map(|(c, seen)| (c.as_str(), seen.as_ref().map(|(e, n)| (e.as_str(), *n))))
    }

    /// A live message was handed on.
    pub fn handed(&mut self, channel: &str, payload: &[u8]) {
        let Some(number) = sequence(payload) else { return };
        if let Some((_, Some((_, last)))) = self.channels.iter_mut().find(|(c, _)| c == channel) {
            *last = number;
        }
    }

    /// The steps that follow the catch-up script's answer (`missed`, one per
    /// channel in the order of [`Seen::asked`]) and the messages `held`
    /// while it was awaited, with each reconnected channel's outcome.
    pub fn caught_up(&mut self, missed: Vec<Missed>, held: Vec<Message>) -> (Vec<Step>, Vec<Outcome>) {
        let mut steps = Vec::new();
        let mut outcomes = Vec::new();
        // Per channel, the number up to which a held message was already
        // handed on from the log (0: hand on every held message).
        let mut handed_to = Vec::with_capacity(self.channels.len());
        for ((channel, seen), missed) in self.channels.iter_mut().zip(missed) {
            let before = seen.replace((missed.epoch, missed.latest));
            match (before, missed.messages) {
                (None, _) => handed_to.push(0),
                (Some(_), None) => {
                    steps.push(Step::Resync(channel.clone()));
                    outcomes.push(Outcome::Gap);
                    handed_to.push(0);
                }
                (Some((_, last)), Some(messages)) => {
                    let after = |m: &Vec<u8>| sequence(m).is_none_or(|n| n > last);
                    steps.extend(
                        messages
                            .into_iter()
                            .filter(after)
                            .map(|payload| Step::Deliver(Message { channel: channel.clone(), payload })),
                    );
                    outcomes.push(Outcome::Complete);
                    handed_to.push(missed.latest);
                }
            }
        }
        for message in held {
            let handed = self.channels.iter().zip(&handed_to).find(|((c, _), _)| *c == message.channel);
            let already = handed.is_some_and(|(_, to)| sequence(&message.payload).is_some_and(|n| n <= *to));
            if !already {
                self.handed(&message.channel, &message.payload);
                steps.push(Step::Deliver(message));
            }
        }
        (steps, outcomes)
    }
}

/// The channel sequence a message carries: the publish script ends what it
/// publishes with `,"seq":N}`. `None` for a message published otherwise.
pub fn sequence(payload: &[u8]) -> Option<u64> {
    let body = payload.strip_suffix(b"}")?;
    let start = body.iter().rposition(|b| !b.is_ascii_digit())? + 1;
    let digits = &body[start..];
    if digits.is_empty() || !body[..start].ends_with(b",\"seq\":") {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(channel: &str, n: u64) -> Message {
        Message { channel: channel.into(), payload: format!(r#"{{"id":"{n}","seq":{n}}}"#).into_bytes() }
    }

    fn missed(latest: u64, from: Option<u64>) -> Missed {
        let messages = from.map(|from| (from..=latest).map(|n| message("c", n).payload).collect());
        Missed { epoch: "s".into(), latest, messages }
    }

    fn delivered(steps: &[Step]) -> Vec<u64> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Deliver(m) => sequence(&m.payload),
                Step::Resync(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_sequence_is_read_from_the_tail_only() {
        assert_eq!(sequence(br#"{"id":"a","offset":3,"epoch":"e","seq":42}"#), Some(42));
        assert_eq!(sequence(br#"{"id":"a"}"#), None);
        assert_eq!(sequence(br#"{"payload":{"seq":4}}"#), None);
        assert_eq!(sequence(br#"{"noseq":4}"#), None);
        assert_eq!(sequence(br#"{"seq":}"#), None);
        assert_eq!(sequence(b"}"), None);
    }

    #[test]
    fn the_first_connection_hands_on_what_it_read() {
        let mut seen = Seen::new(["c"]);
        let (steps, outcomes) = seen.caught_up(vec![missed(5, None)], vec![message("c", 4), message("c", 5)]);
        assert_eq!(delivered(&steps), [4, 5]);
        assert!(outcomes.is_empty());
        assert_eq!(seen.asked().collect::<Vec<_>>(), [("c", Some(("s", 5)))]);
    }

    #[test]
    fn a_reconnection_hands_on_the_missed_then_the_new_once() {
        let mut seen = Seen::new(["c"]);
        seen.caught_up(vec![missed(2, None)], vec![]);
        seen.handed("c", &message("c", 3).payload);
        // Missed 4..7; 6 and 7 were also read live before the answer.
        let (steps, outcomes) =
            seen.caught_up(vec![missed(7, Some(4))], vec![message("c", 6), message("c", 7)]);
        assert_eq!(delivered(&steps), [4, 5, 6, 7]);
        assert_eq!(outcomes, [Outcome::Complete]);
        seen.handed("c", &message("c", 8).payload);
        assert_eq!(seen.asked().collect::<Vec<_>>(), [("c", Some(("s", 8)))]);
    }

    #[test]
    fn a_gap_resyncs_then_hands_on_what_was_read() {
        let mut seen = Seen::new(["c", "d"]);
        seen.caught_up(vec![missed(2, None), missed(0, None)], vec![]);
        let (steps, outcomes) =
            seen.caught_up(vec![missed(9, None), missed(0, Some(1))], vec![message("c", 9)]);
        assert_eq!(steps[0], Step::Resync("c".into()));
        assert_eq!(delivered(&steps), [9]);
        assert_eq!(outcomes, [Outcome::Gap, Outcome::Complete]);
    }
}
