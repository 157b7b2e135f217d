//! With Redis, this shard's presence there (see `bus::redis::presence`):
//! each change of a member's session count in a room is written as it
//! happens (one script, which also publishes `join`/`leave` when the member
//! appears or vanishes over every instance), the shard says it is live every
//! few seconds, rewrites all it holds after a new Redis connection (Redis
//! may have lost it), and answers presence queries from Redis.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use redis::Value;
use tracing::warn;

use super::Shard;
use crate::auth::Identity;
use crate::auth::Role;
use crate::bus::redis::presence::{self, Entity, SeatWrite, REFRESH_EVERY};
use crate::bus::redis::{PresenceKeys, Publisher};
use crate::bus::Bus;
use crate::metrics::PresenceMetrics;
use crate::presence::{membership_event, Answer, Query, LEAVE_GRACE, MAX_MEMBERS};

/// How often the keeper looks for a new Redis connection.
const TICK: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A member's `leave` that Redis holds: sent after [`LEAVE_GRACE`] if the
/// member is still gone over every instance.
struct HeldLeave {
    keys: PresenceKeys,
    entity: String,
    room: String,
    user_id: String,
    role: Role,
    channel: String,
    held_ms: u64,
    /// With history, the channels' log bounds: the `leave` is numbered.
    log: Option<(usize, u64)>,
}

impl HeldLeave {
    async fn confirm(self, publisher: &Publisher, metrics: &PresenceMetrics) {
        let event = match membership_event(&self.room, &self.user_id, self.role, false) {
            Ok(event) => event,
            Err(e) => return warn!(error = %e, "cannot encode a presence event"),
        };
        let seat = SeatWrite {
            entity: &self.entity,
            room: &self.room,
            user_id: &self.user_id,
            role: self.role,
            count: 0,
            event: Some((&self.channel, event.frame.as_str())),
            log: self.log.and_then(|(size, ttl)| Some((size, ttl, publisher.run_id().ok()?))),
        };
        let command = self.keys.confirm_leave(&seat, self.held_ms, now_ms());
        // Lost with the connection: the member is gone without a `leave`,
        // as when an instance dies.
        if let Ok(Value::Int(1)) = publisher.command(command).await {
            metrics.event(false);
        }
    }
}

impl Shard {
    /// Writes this shard's count of the member's sessions in `room`; with
    /// `edge_event`, the script publishes `join`/`leave` if this was the
    /// member's first (last) session anywhere.
    pub(super) fn write_seat(
        &self,
        entity: &Entity,
        room: &str,
        identity: &Identity,
        count: u32,
        edge_event: bool,
    ) {
        let Bus::Redis { publisher, channels, history, .. } = &self.bus else { return };
        let joined = count > 0;
        let event = match edge_event.then(|| membership_event(room, &identity.user_id, identity.role, joined))
        {
            Some(Ok(event)) => Some(event.frame),
            Some(Err(e)) => {
                warn!(error = %e, "cannot encode a presence event");
                None
            }
            None => None,
        };
        let seat = SeatWrite {
            entity: &entity.id,
            room,
            user_id: &identity.user_id,
            role: identity.role,
            count,
            event: event.as_ref().map(|frame| (channels.for_room(Some(room)), frame.as_str())),
            log: history.as_ref().and_then(|h| {
                let (size, ttl) = h.log_bounds();
                // Down: the write fails too, and the next connection rewrites the seat.
                Some((size, ttl, publisher.run_id().ok()?))
            }),
        };
        let now = now_ms();
        let command = entity.keys.write_seat(&seat, now);
        let held = (edge_event && !joined).then(|| HeldLeave {
            keys: entity.keys.clone(),
            entity: entity.id.clone(),
            room: room.to_owned(),
            user_id: identity.user_id.clone(),
            role: identity.role,
            channel: channels.for_room(Some(room)).to_owned(),
            held_ms: now,
            log: history.as_ref().map(|h| h.log_bounds()),
        });
        let (publisher, metrics) = (publisher.clone(), &self.instance.metrics.presence);
        // Spawned in order and queued on its first poll, so one seat's writes
        // reach Redis in the order they happened. The gate closes only once
        // the shard has no sessions left to write for.
        let written = self.presence_writes.spawn(async move {
            match publisher.command(command).await {
                Ok(Value::Int(1)) => metrics.event(joined),
                Ok(Value::Int(2)) => {
                    if let Some(held) = held {
                        glommio::timer::sleep(LEAVE_GRACE).await;
                        held.confirm(&publisher, metrics).await;
                    }
                }
                Ok(Value::ServerError(e)) => warn!(error = ?e, "redis refused a presence write"),
                // Lost with the connection: the next one rewrites every seat.
                Ok(_) | Err(_) => {}
            }
        });
        if let Ok(task) = written {
            task.detach();
        }
    }

    /// Waits (at most [`LEAVE_GRACE`] and a second) for this shard's presence
    /// writes: a stopping shard sends the `leave`s it holds, unless the
    /// members come back elsewhere meanwhile.
    pub async fn finish_presence_writes(&self) {
        let bound = LEAVE_GRACE + Duration::from_secs(1);
        if glommio::timer::timeout(bound, self.presence_writes.close()).await.is_err() {
            warn!("a stopping shard gave up on some presence writes");
        }
    }

    /// Keeps this shard live in Redis for as long as it runs.
    pub async fn keep_presence(self: Rc<Self>) {
        let (Some(entity), Bus::Redis { publisher, .. }) = (&self.entity, &self.bus) else { return };
        let mut written = 0;
        let mut last_refresh: Option<Instant> = None;
        loop {
            let connection = publisher.connections();
            if connection != written && self.rewrite_seats(entity).await {
                written = connection;
                last_refresh = None;
            }
            if last_refresh.is_none_or(|at| at.elapsed() >= REFRESH_EVERY) && self.refresh(entity).await {
                last_refresh = Some(Instant::now());
            }
            glommio::timer::sleep(TICK).await;
        }
    }

    /// Writes every seat this shard holds (no events: nothing changed).
    async fn rewrite_seats(&self, entity: &Entity) -> bool {
        let Bus::Redis { publisher, .. } = &self.bus else { return false };
        let now = now_ms();
        let commands: Vec<Vec<u8>> = self
            .ledger
            .borrow()
            .seats()
            .map(|((room, user_id, role), count)| {
                let seat = SeatWrite {
                    entity: &entity.id,
                    room,
                    user_id,
                    role: *role,
                    count,
                    event: None,
                    log: None,
                };
                entity.keys.write_seat(&seat, now)
            })
            .collect();
        join_all(commands.into_iter().map(|c| publisher.command(c))).await.iter().all(Result::is_ok)
    }

    /// Says this shard is live and keeps its keys from expiring.
    async fn refresh(&self, entity: &Entity) -> bool {
        let Bus::Redis { publisher, .. } = &self.bus else { return false };
        let keys: BTreeSet<String> = self
            .ledger
            .borrow()
            .seats()
            .flat_map(|((room, user_id, _), _)| [entity.keys.room(room), entity.keys.user(user_id)])
            .collect();
        let commands = entity.keys.refresh_entity(&entity.id, now_ms()).into_iter();
        let commands = commands.chain(keys.iter().map(|key| entity.keys.keep(key)));
        join_all(commands.map(|c| publisher.command(c))).await.iter().all(Result::is_ok)
    }

    /// A shard that stops is no longer live, at once.
    pub async fn leave_presence(&self) {
        if let (Some(entity), Bus::Redis { publisher, .. }) = (&self.entity, &self.bus) {
            let _ = publisher.command(entity.keys.leave_entity(&entity.id)).await;
        }
    }

    /// Every instance's answer, from Redis; `None` without Redis or while it
    /// cannot answer.
    pub(super) async fn answer_from_redis(&self, query: &Query) -> Option<Answer> {
        let (Some(entity), Bus::Redis { publisher, .. }) = (&self.entity, &self.bus) else { return None };
        let answer = match query {
            Query::Room { room, members } => {
                let limit = if *members { MAX_MEMBERS } else { 0 };
                let reply = publisher.command(entity.keys.read_room(room, limit, now_ms())).await;
                reply.ok().as_ref().and_then(presence::room_answer).map(Answer::Room)
            }
            Query::User(user) => {
                let live = publisher.command(entity.keys.live_entities(now_ms()));
                let read = publisher.command(entity.keys.read(&entity.keys.user(user)));
                match futures_lite::future::zip(live, read).await {
                    (Ok(live), Ok(read)) => {
                        let (connections, mut rooms) =
                            presence::user_sessions(&read, &presence::entities(&live));
                        rooms.retain(|room| room != crate::room::ALL);
                        Some(Answer::User { connections, rooms })
                    }
                    _ => None,
                }
            }
            // Each shard answers it from its own room index.
            Query::Busiest(_) => return None,
        };
        if answer.is_none() {
            warn!("redis cannot answer a presence query: this instance answers alone");
        }
        answer
    }
}
