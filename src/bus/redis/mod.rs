//! Several instances through Redis Pub/Sub (README, Several instances). Each shard runs its own
//! subscriber (and delivers what it receives to its own sessions: no
//! cross-shard hop) and its own publisher connection. Both reconnect with
//! capped, jittered backoff; while any link of the instance is down, `/health`
//! says `disconnected` and publishes answer 503. Presence state lives in
//! Redis too (`presence`), written on the publisher connection. With
//! history, the publisher runs `history`'s script instead of a plain
//! `PUBLISH`, and the subscriber carries the shard's recovery fetches
//! (`recoveries`) and catches up after an outage (`catch_up`). Control
//! messages are always numbered and kept (`control`), so every subscriber
//! catches up on those.

pub mod backoff;
mod catch_up;
pub mod channels;
pub mod control;
mod envelope;
pub mod history;
pub mod links;
mod outage;
pub mod presence;
pub mod publisher;
pub mod recoveries;
pub mod resp;
pub mod subscriber;
mod waiting;

pub use channels::Channels;
pub use history::History;
pub use links::{LinkFlag, Links, ShardLinks};
pub use presence::PresenceKeys;
pub use publisher::{Publisher, Unavailable};
pub use recoveries::Recoveries;
pub use subscriber::{Handlers, Subscriber};
