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
    let Subscriber { url, channels, link, metrics, counts } = subscriber;
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
                    false => on_message(message, metrics, counts, &handlers.deliver),
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

fn on_message(message: &Msg, metrics: &Metrics, counts: bool, deliver: impl Fn(Event)) {
    match parse(message.get_payload_bytes()) {
        Ok(event) => {
            if counts {
                metrics.published(Source::Redis);
            }
            deliver(event);
        }
        Err(error) => {
            if counts {
                metrics.dropped(DropReason::Invalid);
                warn!(channel = message.get_channel_name(), error = %error, "ignored a message that is not an event envelope");
            }
        }
    }
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
