//! With Redis and history: after this shard's subscriber came back and the
//! history no longer held all it missed on a channel, the shard's sessions
//! in that channel's rooms are told to resync (README, History and
//! recovery), implicit rooms included: `all` and each user's `user:U`.

use super::Shard;
use crate::protocol;
use crate::room;

impl Shard {
    /// Sends `resync` for every room of this shard's sessions that `lost`
    /// names, once per session and room.
    pub fn resync(&self, lost: impl Fn(&str) -> bool) {
        let index = self.index.borrow();
        for (room, members) in index.rooms().filter(|(room, _)| lost(room)) {
            let frame = protocol::resync(room);
            members.iter().for_each(|session| self.queue(session, frame.clone()));
        }
        if lost(room::ALL) {
            let frame = protocol::resync(room::ALL);
            index.sessions().for_each(|session| self.queue(session, frame.clone()));
        }
        for session in index.sessions() {
            let personal = room::personal_user_room(&session.identity.user_id);
            if lost(&personal) && !index.is_member(session, &personal) {
                self.queue(session, protocol::resync(&personal));
            }
        }
    }
}
