//! A shard's subscriber: subscribes to the four channels and hands every
//! envelope it receives to its shard (through callbacks: this code never
//! sees the shard), and every control message of the control channel to
//! another. Anything on a channel that is not an envelope is counted
//! and logged without its body.
//!
//! Each time it (re)subscribes it asks the channels' catch-up logs what it
//! missed while away and hands that on first (`catch_up`): the control
//! channel's always (`control`), the event channels' with history. With
//! history the connection also carries the shard's recovery fetches
//! (`recoveries`), answered in order with the events.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use redis::{PushKind, Value};
use tracing::{info, warn};

use super::backoff::Backoff;
use super::catch_up::{Message, Outcome, Seen, Step};
use super::channels::Channels;
use super::envelope::parse;
use super::history::{self, Ask, History};
use super::links::LinkFlag;
use super::outage::Outage;
use super::publisher::Unavailable;
use super::recoveries::{Fetch, Recoveries};
use super::resp::{within, Protocol, RespConn, RespError};
use crate::config::RedisUrl;
use crate::event::Event;
use crate::history::{replay_limit, Recovery, Ticket};
use crate::metrics::{DropReason, HistoryScript, Metrics, Source};
use crate::presence::Control;

/// Subscribing, loading the scripts and catching up must finish within this.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long Redis may take to answer a fetch, as for a publish.
const FETCH_TIMEOUT: Duration = super::publisher::PUBLISH_TIMEOUT;

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
    /// With history: its scripts, and the fetches the shard asks for.
    pub history: Option<(Rc<History>, Rc<Recoveries>)>,
}

/// What a shard does with what its subscriber receives.
pub struct Handlers<D, C, R, S> {
    pub deliver: D,
    pub control: C,
    /// A fetch's answer, at its place among the events.
    pub recovered: R,
    /// The events of this channel missed while away are lost: its rooms must
    /// resync.
    pub resync: S,
}

/// Keeps the shard subscribed for as long as it runs, handing each event and
/// control message to `handlers`.
pub async fn run(
    subscriber: Subscriber,
    handlers: Handlers<
        impl Fn(Event),
        impl Fn(Control),
        impl Fn(Ticket, Result<Recovery, Unavailable>),
        impl Fn(&str),
    >,
) {
    let mut backoff = Backoff::default();
    let mut outage = Outage::new("subscriber");
    let mut first = true;
    let mut seen = Seen::new(sequenced(&subscriber));
    let history = subscriber.history.as_ref().map(|(history, _)| &**history);
    let recoveries = subscriber.history.as_ref().map(|(_, recoveries)| &**recoveries);
    let mut in_flight = VecDeque::new();
    loop {
        match subscribe(&subscriber, &seen).await {
            Ok(Subscribed { conn, run, missed, held }) => {
                backoff.reset();
                if !first && subscriber.counts {
                    subscriber.metrics.redis_reconnects.inc();
                }
                first = false;
                catch_up(&subscriber, &mut seen, missed, held, &handlers);
                subscriber.link.set(true);
                if let Some(recoveries) = recoveries {
                    recoveries.listen(true);
                }
                outage.connected();
                let link = Link { conn, run, history, recoveries };
                let error = listen(link, &mut in_flight, |pushed| match pushed {
                    Pushed::Message(message) => {
                        seen.handed(&message.channel, &message.payload);
                        dispatch(&subscriber, &message, &handlers);
                    }
                    Pushed::Answer(fetch, reply) => answer(&subscriber, fetch, reply, &handlers.recovered),
                })
                .await;
                subscriber.link.set(false);
                let waiting = recoveries.map(|r| r.listen(false)).unwrap_or_default();
                for fetch in in_flight.drain(..).chain(waiting) {
                    (handlers.recovered)(fetch.ticket, Err(Unavailable));
                }
                outage.failed(&error);
            }
            Err(error) => outage.failed(&error),
        }
        glommio::timer::sleep(backoff.next_delay()).await;
    }
}

/// The channels whose messages are numbered and kept: the event channels
/// with history, and control.
fn sequenced(subscriber: &Subscriber) -> impl Iterator<Item = &str> {
    let channels = &subscriber.channels;
    let events = channels.events().into_iter().filter(|_| subscriber.history.is_some());
    events.chain([channels.control.as_str()])
}

/// Hands on, before anything read later, what the channels missed while the
/// subscriber was away and what was read while that answer was awaited; or
/// has the rooms of a channel whose missed events are lost resync.
fn catch_up(
    subscriber: &Subscriber,
    seen: &mut Seen,
    missed: Vec<history::Missed>,
    held: Vec<Message>,
    handlers: &Handlers<
        impl Fn(Event),
        impl Fn(Control),
        impl Fn(Ticket, Result<Recovery, Unavailable>),
        impl Fn(&str),
    >,
) {
    let (steps, outcomes) = seen.caught_up(missed, held);
    for step in steps {
        match step {
            Step::Deliver(message) => dispatch(subscriber, &message, handlers),
            // Also after every Redis restart that lost its data, when nothing
            // may have been sent at all: said, but not as a warning.
            Step::Resync(channel) if channel == subscriber.channels.control => info!(
                "control messages sent while the subscriber was away, if any, cannot be caught up \
                 (Redis lost its data, or the log was trimmed)"
            ),
            Step::Resync(channel) => (handlers.resync)(&channel),
        }
    }
    outcomes.into_iter().for_each(|o| subscriber.metrics.caught_up(o == Outcome::Complete));
}

/// A new subscription: what its channels missed, and what was read while
/// waiting for that answer.
struct Subscribed {
    conn: RespConn,
    /// The `run_id` of its Redis: what the numbering of its channels
    /// belongs to (`history::life_key`).
    run: String,
    missed: Vec<history::Missed>,
    held: Vec<Message>,
}

/// Connects, subscribes, with history loads the scripts, and asks what was
/// missed since `seen`, in one pipeline; returns once Redis has confirmed
/// every channel and answered.
async fn subscribe(subscriber: &Subscriber, seen: &Seen) -> Result<Subscribed, RespError> {
    let mut conn = RespConn::connect(&subscriber.url, Protocol::Resp3).await?;
    let history = subscriber.history.as_ref().map(|(history, _)| history);
    let run = within(SUBSCRIBE_TIMEOUT, conn.run_id()).await?;
    let names = subscriber.channels.all();
    let mut pipeline = redis::cmd("SUBSCRIBE").arg(&names[..]).get_packed_command();
    if let Some(history) = history {
        for script in history.scripts() {
            pipeline.extend(redis::cmd("SCRIPT").arg("LOAD").arg(script).get_packed_command());
        }
    }
    pipeline.extend(history::catch_up(
        &subscriber.channels.life,
        ulid::Ulid::new().to_string(),
        &run,
        seen.asked(),
    ));
    conn.send(&pipeline).await?;
    let replies = history.map_or(0, |h| h.scripts().len()) + 1;
    let (held, last) = within(SUBSCRIBE_TIMEOUT, confirmed(&mut conn, names.len(), replies)).await?;
    let missed = last.map_or(Ok(Vec::new()), history::missed).map_err(|e| {
        subscriber.metrics.script_failed(HistoryScript::CatchUp);
        RespError::Protocol(e.to_string())
    })?;
    Ok(Subscribed { conn, run, missed, held })
}

/// Reads until `channels` subscriptions are confirmed and `replies` replies
/// are in; gives the messages read meanwhile and the last reply.
async fn confirmed(
    conn: &mut RespConn,
    channels: usize,
    replies: usize,
) -> Result<(Vec<Message>, Option<Value>), RespError> {
    let (mut confirmed, mut answered, mut held, mut last) = (0, 0, Vec::new(), None);
    while confirmed < channels || answered < replies {
        match conn.next_value().await? {
            Value::Push { kind: PushKind::Subscribe, .. } => confirmed += 1,
            Value::Push { kind, data } => held.extend(message(kind, data)),
            Value::ServerError(e) => return Err(RespError::Refused(e.to_string())),
            reply => {
                answered += 1;
                last = Some(reply);
            }
        }
    }
    Ok((held, last))
}

/// What the connection brings while listening.
enum Pushed {
    Message(Message),
    Answer(Fetch, Value),
}

enum Wake {
    Read(Result<Value, RespError>),
    Fetches(Vec<Fetch>),
}

/// A subscribed connection, and what its fetches need.
struct Link<'a> {
    conn: RespConn,
    run: String,
    history: Option<&'a History>,
    recoveries: Option<&'a Recoveries>,
}

/// Reads messages and replies, and writes the shard's fetches as they come
/// (`in_flight`: those sent and not yet answered, oldest first), until the
/// connection fails.
async fn listen(
    mut link: Link<'_>,
    in_flight: &mut VecDeque<Fetch>,
    mut on: impl FnMut(Pushed),
) -> RespError {
    let recoveries = link.recoveries;
    loop {
        // While a fetch waits, Redis owes us a reply: a Redis that says
        // nothing for that long is frozen, and the subscribes must not wait
        // on it forever.
        let conn = &mut link.conn;
        let read = async {
            match in_flight.is_empty() {
                true => Wake::Read(conn.next_value().await),
                false => Wake::Read(within(FETCH_TIMEOUT, conn.next_value()).await),
            }
        };
        // Dropping a pending read loses nothing: a read that got bytes has
        // parsed them before it returns.
        let wake = match recoveries {
            Some(recoveries) => {
                futures_lite::future::or(read, async { Wake::Fetches(recoveries.next_batch().await) }).await
            }
            None => read.await,
        };
        let value = match wake {
            Wake::Read(Ok(value)) => value,
            Wake::Read(Err(error)) => return error,
            Wake::Fetches(fetches) => match send(&mut link, fetches, in_flight).await {
                Ok(()) => continue,
                Err(error) => return error,
            },
        };
        match value {
            Value::Push { kind, data } => {
                message(kind, data).into_iter().for_each(|m| on(Pushed::Message(m)))
            }
            reply => {
                let Some(mut fetch) = in_flight.pop_front() else {
                    return RespError::Protocol("a reply nobody asked for".into());
                };
                if history::unknown_script(&reply) && !fetch.by_text {
                    fetch.by_text = true;
                    if let Err(error) = send(&mut link, vec![fetch], in_flight).await {
                        return error;
                    }
                    continue;
                }
                if let Some(recoveries) = recoveries {
                    recoveries.answered(&fetch);
                }
                on(Pushed::Answer(fetch, reply));
            }
        }
    }
}

/// Writes `fetches` in one pipeline; they join `in_flight` first, so that a
/// failed write answers them too.
async fn send(
    link: &mut Link<'_>,
    fetches: Vec<Fetch>,
    in_flight: &mut VecDeque<Fetch>,
) -> Result<(), RespError> {
    let Some(history) = link.history else { return Ok(()) };
    let mut pipeline = Vec::new();
    for fetch in fetches {
        let since = fetch.since.as_ref();
        let ask = Ask {
            stream: &fetch.stream,
            since,
            limit: replay_limit(since, history.size()),
            budget: fetch.budget,
        };
        pipeline.extend(history.ask(&ask, &link.run, fetch.by_text));
        in_flight.push_back(fetch);
    }
    link.conn.send(&pipeline).await
}

/// The channel and payload of a pushed `message`; `None` for other pushes.
fn message(kind: PushKind, data: Vec<Value>) -> Option<Message> {
    if kind != PushKind::Message {
        return None;
    }
    let mut data = data.into_iter();
    match (data.next()?, data.next()?) {
        (Value::BulkString(channel), Value::BulkString(payload)) => {
            Some(Message { channel: String::from_utf8_lossy(&channel).into_owned(), payload })
        }
        _ => None,
    }
}

fn dispatch(
    subscriber: &Subscriber,
    message: &Message,
    handlers: &Handlers<
        impl Fn(Event),
        impl Fn(Control),
        impl Fn(Ticket, Result<Recovery, Unavailable>),
        impl Fn(&str),
    >,
) {
    match message.channel == subscriber.channels.control {
        true => on_control(&message.payload, &handlers.control),
        false => on_message(
            message,
            subscriber.metrics,
            subscriber.send_queue_bytes,
            subscriber.counts,
            &handlers.deliver,
        ),
    }
}

/// Hands a fetch's answer to the shard; a reply that is not one answers
/// [`Unavailable`].
fn answer(
    subscriber: &Subscriber,
    fetch: Fetch,
    reply: Value,
    recovered: impl Fn(Ticket, Result<Recovery, Unavailable>),
) {
    let recovery = history::recovery(reply, fetch.since.as_ref());
    let recovery = recovery.map_err(|error| {
        subscriber.metrics.script_failed(HistoryScript::Fetch);
        warn!(error = %error, "a history fetch failed");
        Unavailable
    });
    recovered(fetch.ticket, recovery);
}

fn on_message(
    message: &Message,
    metrics: &Metrics,
    send_queue_bytes: usize,
    counts: bool,
    deliver: impl Fn(Event),
) {
    let channel = message.channel.as_str();
    let event = match parse(&message.payload) {
        Ok(event) => event,
        Err(error) => {
            if counts {
                metrics.dropped(DropReason::Invalid);
                warn!(channel, error = %error, "ignored a message that is not an event envelope");
            }
            return;
        }
    };
    if let Err(too_large) = event.fits(send_queue_bytes) {
        if counts {
            metrics.dropped(DropReason::TooLarge);
            warn!(channel, id = %event.id, error = %too_large, "dropped an event from Redis");
        }
        return;
    }
    if counts {
        metrics.published(Source::Redis);
    }
    deliver(event);
}

fn on_control(payload: &[u8], control: impl Fn(Control)) {
    match serde_json::from_slice::<Control>(payload) {
        Ok(message) => control(message),
        Err(e) => warn!(line = e.line(), column = e.column(), "ignored a control message that is not one"),
    }
}
