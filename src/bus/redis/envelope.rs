//! A message on an event channel as an event: any bytes are an event or an
//! error, never a panic, and an envelope without an `id` is named from its
//! bytes alone, so every shard and instance names it alike (README, Several
//! instances). Kept envelopes from the history read the same way.

use crate::event::{content_id, Draft, Event, EventError, Required};

/// Why a message was ignored. Its text never quotes the message: serde's
/// messages may carry pieces of it.
#[derive(Debug, thiserror::Error)]
pub enum NotAnEnvelope {
    #[error("not JSON or not an envelope object (line {}, column {})", .0.line(), .0.column())]
    Json(#[from] serde_json::Error),
    #[error("invalid {kind} payload")]
    Payload { kind: String },
    #[error(transparent)]
    Event(EventError),
}

impl From<EventError> for NotAnEnvelope {
    fn from(error: EventError) -> Self {
        match error {
            EventError::Payload { kind, .. } => NotAnEnvelope::Payload { kind },
            other => NotAnEnvelope::Event(other),
        }
    }
}

pub fn parse(payload: &[u8]) -> Result<Event, NotAnEnvelope> {
    let mut draft: Draft<'_> = serde_json::from_slice(payload)?;
    if draft.id.as_deref().is_none_or(str::is_empty) {
        draft.id = Some(content_id(payload, draft.timestamp.as_deref()));
    }
    Ok(draft.into_event(Required::Either)?)
}

/// Envelopes `PUBLISH`ed by other programs (README, Several instances): any bytes are an event
/// or an error, never a panic, and an envelope without an `id` is named from
/// its bytes alone, so every shard and instance names it alike
/// (`PROPTEST_CASES` for longer runs).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    /// Each key of an envelope with the values that decide its fate.
    fn fields() -> Vec<(&'static str, Vec<Value>)> {
        vec![
            ("id", vec![json!(""), json!("evt-1"), json!(7)]),
            ("type", vec![json!("custom"), json!("broadcast"), json!("")]),
            (
                "room",
                vec![json!("orders"), json!("all"), json!("cart"), json!("orders:1"), json!("bad room")],
            ),
            ("userId", vec![json!("5"), json!(5), json!("")]),
            ("payload", vec![json!({}), json!({"message": "m"}), json!([1])]),
            ("timestamp", vec![json!("2026-11-27T18:00:00.000Z"), json!("yesterday"), json!("")]),
        ]
    }

    /// An envelope of some of those fields, and white space to put before it.
    fn envelope() -> impl Strategy<Value = (Value, String)> {
        let present: Vec<_> = fields()
            .into_iter()
            .map(|(key, values)| {
                prop::option::weighted(0.7, prop::sample::select(values))
                    .prop_map(move |v| v.map(|v| (key.to_owned(), v)))
            })
            .collect();
        (present, " {0,2}")
            .prop_map(|(present, pad)| (Value::Object(present.into_iter().flatten().collect()), pad))
    }

    proptest! {
        #[test]
        fn an_envelope_is_named_by_its_bytes((envelope, pad) in envelope()) {
            let bytes = format!("{pad}{envelope}");
            let (Ok(first), Ok(again)) = (parse(bytes.as_bytes()), parse(bytes.as_bytes())) else {
                return Ok(());
            };
            prop_assert_eq!(&first.id, &again.id);
            // A missing timestamp is each receiver's own (README, Several instances); the rest is the same.
            if envelope["timestamp"].as_str().is_some_and(|t| !t.is_empty()) {
                prop_assert_eq!(first.frame.as_str(), again.frame.as_str());
            }
            match envelope["id"].as_str().filter(|id| !id.is_empty()) {
                Some(id) => prop_assert_eq!(first.id.as_str(), id),
                None => {
                    let ulid = ulid::Ulid::from_string(&first.id).expect("a derived id is a ULID");
                    let dated = envelope["timestamp"] == json!("2026-11-27T18:00:00.000Z");
                    prop_assert_eq!(ulid.timestamp_ms(), if dated { 1_795_802_400_000 } else { 0 });
                    let other = parse(format!("{bytes} ").as_bytes()).expect("the same envelope");
                    prop_assert_ne!(first.id, other.id, "other bytes, another id");
                }
            }
        }

        #[test]
        fn any_bytes_are_an_event_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }
    }
}
