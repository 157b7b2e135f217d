//! A shard's subscriber: subscribes to the four channels and delivers every
//! envelope it receives to this shard's own sessions. Anything on a channel
//! that is not an envelope is counted and logged without its body.

use std::rc::Rc;

use redis::{Msg, Value};
use tracing::{info, warn};

use super::resp::{RespConn, RespError};
use super::{Backoff, Channels};
use crate::event::{content_id, Draft, Event, EventError, Required};
use crate::metrics::{DropReason, Source};
use crate::shard::Shard;

/// Keeps the shard subscribed for as long as it runs.
pub async fn run(shard: Rc<Shard>, channels: Rc<Channels>) {
    let instance = shard.instance;
    let Some(url) = instance.config.redis.as_ref() else { return };
    let mut backoff = Backoff::default();
    let mut first = true;
    loop {
        match subscribe(url, &channels).await {
            Ok(conn) => {
                backoff.reset();
                if !first && shard.id.index() == 0 {
                    instance.metrics.redis_reconnects.inc();
                }
                first = false;
                instance.redis_link_up();
                info!("redis subscriber connected");
                let error = listen(&shard, conn).await;
                instance.redis_link_down();
                warn!(error = %error, "redis subscriber disconnected");
            }
            Err(error) => warn!(error = %error, "redis subscriber cannot connect"),
        }
        glommio::timer::sleep(backoff.next_delay()).await;
    }
}

/// Connects and subscribes; returns once Redis has confirmed every channel.
async fn subscribe(url: &crate::config::RedisUrl, channels: &Channels) -> Result<RespConn, RespError> {
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

async fn listen(shard: &Shard, mut conn: RespConn) -> RespError {
    loop {
        match conn.next_value().await {
            Ok(value) => {
                if let Some(message) = Msg::from_owned_value(value) {
                    on_message(shard, &message);
                }
            }
            Err(error) => return error,
        }
    }
}

fn on_message(shard: &Shard, message: &Msg) {
    // Every shard receives every message; one of them counts it.
    let counts = shard.id.index() == 0;
    let metrics = &shard.instance.metrics;
    match parse(message.get_payload_bytes()) {
        Ok(event) => {
            if counts {
                metrics.published(Source::Redis);
            }
            shard.deliver(&event);
        }
        Err(error) => {
            if counts {
                metrics.dropped(DropReason::Invalid);
                warn!(channel = message.get_channel_name(), error = %error, "ignored a message that is not an event envelope");
            }
        }
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
