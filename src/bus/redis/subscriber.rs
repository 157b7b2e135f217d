//! A shard's subscriber: subscribes to the four channels and hands every
//! envelope it receives to its shard (through a callback: this code never
//! sees the shard). Anything on a channel that is not an envelope is counted
//! and logged without its body.

use std::rc::Rc;

use redis::{Msg, Value};
use tracing::{info, warn};

use super::backoff::Backoff;
use super::channels::Channels;
use super::links::LinkFlag;
use super::resp::{RespConn, RespError};
use crate::config::RedisUrl;
use crate::event::{content_id, Draft, Event, EventError, Required};
use crate::metrics::{DropReason, Metrics, Source};

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

/// Keeps the shard subscribed for as long as it runs, handing each event to
/// `deliver`.
pub async fn run(subscriber: Subscriber, deliver: impl Fn(Event)) {
    let Subscriber { url, channels, link, metrics, send_queue_bytes, counts } = subscriber;
    let mut backoff = Backoff::default();
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
                info!("redis subscriber connected");
                let error =
                    listen(conn, |message| on_message(message, metrics, send_queue_bytes, counts, &deliver))
                        .await;
                link.set(false);
                warn!(error = %error, "redis subscriber disconnected");
            }
            Err(error) => warn!(error = %error, "redis subscriber cannot connect"),
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
