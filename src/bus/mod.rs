//! Where events travel: between the shards of this process (`local`, their
//! inboxes) or, with `REDIS_URL`, between instances (`redis`: every event
//! goes through Redis and each shard delivers what its own subscriber
//! receives). The bus never sees a shard's sessions: it hands events back to
//! whoever owns them.

pub mod interest;
pub mod local;
pub mod redis;

use std::rc::Rc;

use crate::config::Config;

/// A shard's way out for the events published on it.
pub enum Bus {
    /// To the other shards' inboxes; the publishing shard delivers to its own
    /// sessions itself.
    Local,
    /// To Redis; every shard, this one included, delivers what its subscriber
    /// receives.
    Redis {
        publisher: Rc<redis::Publisher>,
        channels: Rc<redis::Channels>,
        /// With `HISTORY_SIZE` > 0: events are kept in Redis as they are
        /// published, and subscribes ask it for their answer.
        history: Option<Rc<redis::History>>,
        /// The answers subscribes wait for, fetched on the subscriber
        /// connection.
        recoveries: Rc<redis::Recoveries>,
    },
}

impl Bus {
    pub fn new(config: &Config) -> Self {
        match config.redis {
            None => Bus::Local,
            Some(_) => Bus::Redis {
                publisher: Rc::default(),
                channels: Rc::new(redis::Channels::new(&config.redis_prefix)),
                history: redis::History::new(config).map(Rc::new),
                recoveries: Rc::default(),
            },
        }
    }
}
