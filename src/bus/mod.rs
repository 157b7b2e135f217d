//! Where events travel: between the shards of this process (`local`, through
//! their inboxes) or, with `REDIS_URL`, between instances (`redis`: every
//! event goes through Redis and each shard delivers what its own subscriber
//! receives).

pub mod local;
pub mod redis;

use std::rc::Rc;
use std::time::Instant;

use thiserror::Error;

use crate::config::Config;
use crate::event::Event;
use crate::shard::Shard;

/// The event could not be handed on; nothing was delivered.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("redis is unavailable")]
pub struct Unavailable;

/// A shard's way out for the events it takes.
pub enum Bus {
    Local,
    Redis { publisher: Rc<redis::Publisher>, channels: Rc<redis::Channels> },
}

impl Bus {
    pub fn new(config: &Config) -> Self {
        match config.redis {
            None => Bus::Local,
            Some(_) => Bus::Redis {
                publisher: Rc::default(),
                channels: Rc::new(redis::Channels::new(&config.redis_prefix)),
            },
        }
    }

    /// Sends the event on its way to every session that should get it, on
    /// every shard (and, with Redis, every instance).
    pub async fn publish(&self, shard: &Shard, event: Event) -> Result<(), Unavailable> {
        match self {
            Bus::Local => {
                local::publish(shard, event);
                Ok(())
            }
            Bus::Redis { publisher, channels } => {
                let started = Instant::now();
                publisher.publish(channels.for_room(event.room.as_deref()), event.frame.as_str()).await?;
                shard.metrics.redis_publish.observe(started.elapsed().as_secs_f64());
                Ok(())
            }
        }
    }
}
