//! Fan-out inside one process without Redis: the shard that takes a publish
//! delivers to its own sessions and hands one shared copy of the event to
//! every other shard's inbox. No locks: each shard touches only its own index.

use std::sync::Arc;

use crate::event::Event;
use crate::metrics::DropReason;
use crate::shard::inbox::ShardMsg;
use crate::shard::Shard;

pub fn publish(shard: &Shard, event: Event) {
    let instance = shard.instance;
    let event = Arc::new(event);
    for (index, mailbox) in instance.mailboxes().iter().enumerate() {
        if index != shard.id.index() && mailbox.post(ShardMsg::Deliver(event.clone())).is_err() {
            instance.metrics.dropped(DropReason::InboxFull);
        }
    }
    shard.deliver(&event);
}
