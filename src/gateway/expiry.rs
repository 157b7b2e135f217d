//! A session's token over time (README, Tokens during a session): `token_expiring` once within
//! `TOKEN_REFRESH_NOTICE` of its `exp`, close 4001 at it. Checked by the
//! shard's once-a-second sweep and by the session when its token starts or
//! changes, so no session holds a timer of its own.

use crate::close::CloseReason;
use crate::protocol;
use crate::shard::handle::{SessionHandle, TokenTime};
use crate::shard::Shard;

/// Acts on where `session`'s token stands at `now` (Unix seconds).
pub fn check(shard: &Shard, session: &SessionHandle, now: u64) {
    match session.token_time(now, shard.instance.config.token_refresh_notice.as_secs()) {
        TokenTime::Valid => {}
        TokenTime::Expiring(left) => shard.queue(session, protocol::token_expiring(left)),
        TokenTime::Expired => session.close(CloseReason::TokenExpired),
    }
}
