//! Server pings, the read timeout and token expiry, for every session of a
//! shard, from one sweep a second instead of timers per connection: an idle
//! connection then costs no timer and no wake-up until something is due.
//! The sweep also frees the history of rooms that went `HISTORY_TTL`
//! without an event, and gives up subscribes whose answer was lost.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::auth::jwt::now_secs;
use crate::close::CloseReason;
use crate::gateway::expiry;
use crate::shard::Shard;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub async fn run(shard: Rc<Shard>) {
    let config = &shard.instance.config;
    loop {
        glommio::timer::sleep(SWEEP_EVERY).await;
        let now = Instant::now();
        let unix_now = now_secs();
        shard.for_each_session(|session| {
            if now.duration_since(session.last_seen()) >= config.ws_read_timeout {
                session.close(CloseReason::ReadTimeout);
            } else if now >= session.next_ping() {
                session.ping(now + config.ws_ping_interval);
            }
            expiry::check(&shard, session, unix_now);
        });
        shard.sweep_history(now);
    }
}
