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
use crate::bus::redis::presence::{self, Entity, SeatWrite, REFRESH_EVERY};
use crate::bus::Bus;
use crate::presence::{membership_event, Answer, Query};

/// How often the keeper looks for a new Redis connection.
const TICK: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
        let Bus::Redis { publisher, channels, .. } = &self.bus else { return };
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
        };
        let command = entity.keys.write_seat(&seat, now_ms());
        let (publisher, metrics) = (publisher.clone(), &self.instance.metrics.presence);
        // Spawned in order and queued on its first poll, so one seat's writes
        // reach Redis in the order they happened.
        glommio::spawn_local(async move {
            match publisher.command(command).await {
                Ok(Value::Int(1)) => metrics.event(joined),
                Ok(Value::ServerError(e)) => warn!(error = ?e, "redis refused a presence write"),
                // Lost with the connection: the next one rewrites every seat.
                Ok(_) | Err(_) => {}
            }
        })
        .detach();
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
        let Some(ledger) = &self.ledger else { return false };
        let Bus::Redis { publisher, .. } = &self.bus else { return false };
        let now = now_ms();
        let commands: Vec<Vec<u8>> = ledger
            .borrow()
            .seats()
            .map(|((room, user_id, role), count)| {
                let seat = SeatWrite { entity: &entity.id, room, user_id, role: *role, count, event: None };
                entity.keys.write_seat(&seat, now)
            })
            .collect();
        join_all(commands.into_iter().map(|c| publisher.command(c))).await.iter().all(Result::is_ok)
    }

    /// Says this shard is live and keeps its keys from expiring.
    async fn refresh(&self, entity: &Entity) -> bool {
        let Some(ledger) = &self.ledger else { return false };
        let Bus::Redis { publisher, .. } = &self.bus else { return false };
        let keys: BTreeSet<String> = ledger
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
        let key = match query {
            Query::Room(room) => entity.keys.room(room),
            Query::User(user) => entity.keys.user(user),
            Query::Busiest(_) => return None,
        };
        let live = publisher.command(entity.keys.live_entities(now_ms()));
        let read = publisher.command(entity.keys.read(&key));
        let (live, read) = match futures_lite::future::zip(live, read).await {
            (Ok(live), Ok(read)) => (presence::entities(&live), read),
            _ => {
                warn!("redis cannot answer a presence query: this instance answers alone");
                return None;
            }
        };
        Some(match query {
            Query::Room(_) => Answer::Room(presence::room_members(&read, &live)),
            Query::User(_) => {
                let (connections, mut rooms) = presence::user_sessions(&read, &live);
                rooms.retain(|room| room != crate::room::ALL);
                Answer::User { connections, rooms }
            }
            Query::Busiest(_) => return None,
        })
    }
}
