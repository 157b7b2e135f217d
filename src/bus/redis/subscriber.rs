//! A shard's subscriber: subscribes to the four channels and hands every
//! envelope it receives to its shard (through a callback: this code never
//! sees the shard), and every control message of the control channel to
//! another. Anything on a channel that is not an envelope is counted
//! and logged without its body.

use std::rc::Rc;

use redis::{Msg, Value};
use tracing::warn;

use super::backoff::Backoff;
use super::channels::Channels;
use super::links::LinkFlag;
use super::outage::Outage;
use super::resp::{RespConn, RespError};
use crate::config::RedisUrl;
use crate::event::{content_id, Draft, Event, EventError, Required};
use crate::metrics::{DropReason, Metrics, Source};
use crate::presence::Control;

/// What one shard's subscriber needs.
pub struct Subscriber {
    pub url: RedisUrl,
    pub channels: Rc<Channels>,
    /// Up while subscribed.
    pub link: LinkFlag,
    pub metrics: &'static Metrics,
    /// A client's `SEND_QUEUE_BYTES`: a larger event is dropped here.
    pub send_queue_bytes: usize,
    /// Every shard receives every message: only one of them counts what is
    /// instance-wide (messages published, ignored, reconnections).
    pub counts: bool,
}

/// What a shard does with what its subscriber receives.
pub struct Handlers<D, C> {
    pub deliver: D,
    pub control: C,
}

/// Keeps the shard subscribed for as long as it runs, handing each event and
/// control message to `handlers`.
pub async fn run(subscriber: Subscriber, handlers: Handlers<impl Fn(Event), impl Fn(Control)>) {
    let Subscriber { url, channels, link, metrics, send_queue_bytes, counts } = subscriber;
    let mut backoff = Backoff::default();
    let mut outage = Outage::new("subscriber");
    let mut first = true;
    loop {
        match subscribe(&url, &channels).await {
            Ok(conn) => {
                backoff.reset();
                if !first && counts {
                    metrics.redis_reconnects.inc();
                }
                first = false;
                link.set(true);
                outage.connected();
                let error = listen(conn, |message| match message.get_channel_name() == channels.control {
                    true => on_control(message, &handlers.control),
                    false => on_message(message, metrics, send_queue_bytes, counts, &handlers.deliver),
                })
                .await;
                link.set(false);
                outage.failed(&error);
            }
            Err(error) => outage.failed(&error),
        }
        glommio::timer::sleep(backoff.next_delay()).await;
    }
}

/// Connects and subscribes; returns once Redis has confirmed every channel.
async fn subscribe(url: &RedisUrl, channels: &Channels) -> Result<RespConn, RespError> {
    let mut conn = RespConn::connect(url).await?;
    let names = channels.all();
    conn.send(&redis::cmd("SUBSCRIBE").arg(&names[..]).get_packed_command()).await?;
    let mut confirmed = 0;
    while confirmed < names.len() {
        match conn.next_value().await? {
            Value::ServerError(e) => return Err(RespError::Refused(e.to_string())),
            _ => confirmed += 1,
        }
    }
    Ok(conn)
}

async fn listen(mut conn: RespConn, on_message: impl Fn(&Msg)) -> RespError {
    loop {
        match conn.next_value().await {
            Ok(value) => {
                if let Some(message) = Msg::from_owned_value(value) {
                    on_message(&message);
                }
            }
            Err(error) => return error,
        }
    }
}

fn on_message(
    message: &Msg,
    metrics: &Metrics,
    send_queue_bytes: usize,
    counts: bool,
    deliver: impl Fn(Event),
) {
    let event = match parse(message.get_payload_bytes()) {
        Ok(event) => event,
        Err(error) => {
            if counts {
                metrics.dropped(DropReason::Invalid);
                warn!(channel = message.get_channel_name(), error = %error, "ignored a message that is not an event envelope");
            }
            return;
        }
    };
    if let Err(too_large) = event.fits(send_queue_bytes) {
        if counts {
            metrics.dropped(DropReason::TooLarge);
            warn!(channel = message.get_channel_name(), id = %event.id, error = %too_large, "dropped an event from Redis");
        }
        return;
    }
    if counts {
        metrics.published(Source::Redis);
    }
    deliver(event);
}

fn on_control(message: &Msg, control: impl Fn(Control)) {
    match serde_json::from_slice::<Control>(message.get_payload_bytes()) {
        Ok(message) => control(message),
        Err(e) => warn!(line = e.line(), column = e.column(), "ignored a control message that is not one"),
    }
}

/// Why a message was ignored. Its text never quotes the message: serde's
/// messages may carry pieces of it.
#[derive(Debug, thiserror::Error)]
enum NotAnEnvelope {
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

fn parse(payload: &[u8]) -> Result<Event, NotAnEnvelope> {
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
