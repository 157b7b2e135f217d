//! The client's `presence` message (README, Presence and control): a member of a room asks who
//! else is in it; everyone gets the counts, admins the members too. A room
//! the client is not in is `forbidden`; a query beyond the session's
//! presence bucket is `rate_limited`, one the shard has no room for
//! `unavailable`.

use async_tungstenite::tungstenite::Utf8Bytes;

use crate::auth::Role;
use crate::protocol::{self, ErrorCode};
use crate::room::{self, JoinError};
use crate::shard::handle::SessionHandle;
use crate::shard::Shard;

/// The answer to `{"type":"presence","room":...}` from `session`.
pub async fn answer(shard: &Shard, session: &SessionHandle, requested: &str) -> Utf8Bytes {
    let room = match room::room_to_join(&session.identity, requested) {
        Ok(room) => room,
        Err(JoinError::Invalid(e)) => return protocol::error(ErrorCode::BadRequest, &e.to_string()),
        Err(JoinError::Forbidden(_)) => return not_a_member(requested),
    };
    if !shard.is_member(session, &room) {
        return not_a_member(requested);
    }
    let admin = session.identity.role == Role::Admin;
    match shard.room_presence(&room, admin).await {
        // Members only for admins, and admins' queries are shared apart.
        Ok(shared) => shared.frame(requested, |presence| protocol::presence(requested, presence, admin)),
        Err(busy) => protocol::error(ErrorCode::Unavailable, &busy.to_string()),
    }
}

/// The refusal of a query beyond the session's presence bucket.
pub fn rate_limited() -> Utf8Bytes {
    protocol::error(ErrorCode::RateLimited, "too many presence queries: at most 10 at once, then 2 a second")
}

fn not_a_member(room: &str) -> Utf8Bytes {
    protocol::error(ErrorCode::Forbidden, &format!("not in room {room:?}: presence is for its members"))
}
