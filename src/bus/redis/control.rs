//! The control channel's log (README, Presence and control): every control
//! message the API sends is numbered and kept, like an event with history,
//! in `<prefix>:control:seq` and `<prefix>:control:log`, so that a shard
//! whose subscriber was away when it was published hands it on when it comes
//! back (`catch_up`). A 202 for a disconnect thus means that every session
//! concerned closes, on every instance, blip or not.

use std::time::Duration;

use redis::Value;
use tracing::warn;

use super::channels::Channels;
use super::history::{life_lua, sequenced_lua};
use super::publisher::{Publisher, Unavailable};

/// Control messages the log holds: far more disconnects than a subscriber's
/// longest reconnection (5 s of backoff) sees at any plausible rate, each at
/// most ~400 bytes (a user id and a reason), 4 MB at the most.
const LOG_SIZE: usize = 10_000;
/// The log expires this long after its last message.
const LOG_TTL: Duration = Duration::from_secs(3600);

/// ARGV[1], a JSON object, published on ARGV[2] with the channel's next
/// sequence number and kept in its log (KEYS: its sequence and log, and the
/// life, of the Redis process ARGV[6]).
const SEND_SCRIPT: &str = concat!(
    life_lua!(),
    sequenced_lua!(),
    r#"
local life = life_now(KEYS[3], ARGV[5], ARGV[6])
publish_sequenced(KEYS[1], KEYS[2], tonumber(ARGV[3]), ARGV[4], life, ARGV[5], ARGV[2], string.sub(ARGV[1], 1, -2))
return 1
"#
);

/// Sends `message` (a JSON object) on the control channel; `Ok` once Redis
/// has kept and published it.
pub async fn send(publisher: &Publisher, channels: &Channels, message: &str) -> Result<(), Unavailable> {
    let channel = &channels.control;
    // Rare (an API call each), so sent by text: no script to load.
    let command = redis::cmd("EVAL")
        .arg(SEND_SCRIPT)
        .arg(3)
        .arg(format!("{channel}:seq"))
        .arg(format!("{channel}:log"))
        .arg(&channels.life)
        .arg(message)
        .arg(channel)
        .arg(LOG_SIZE)
        .arg(LOG_TTL.as_secs())
        .arg(ulid::Ulid::new().to_string())
        .arg(&*publisher.run_id()?)
        .get_packed_command();
    match publisher.command(command).await? {
        Value::Int(_) => Ok(()),
        other => {
            warn!(reply = ?other, "redis refused a control message");
            Err(Unavailable)
        }
    }
}
