//! The Redis channels of README's Several instances section and which one an event travels on, and the
//! control channel (README, Presence and control: disconnects) that every shard also listens to.

use crate::room::RoomName;

/// The four channels, under a prefix (`realtime` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    pub notifications: String,
    pub orders: String,
    pub inventory: String,
    pub broadcasts: String,
    /// `<prefix>:control`: control messages, never events.
    pub control: String,
    /// `<prefix>:history-life`, not a channel: the key of the Redis life
    /// that every channel's numbering belongs to (`history::life_key`).
    pub life: String,
}

impl Channels {
    pub fn new(prefix: &str) -> Self {
        Self {
            notifications: format!("{prefix}:notifications"),
            orders: format!("{prefix}:orders"),
            inventory: format!("{prefix}:inventory"),
            broadcasts: format!("{prefix}:broadcasts"),
            control: format!("{prefix}:control"),
            life: super::history::life_key(prefix),
        }
    }

    /// Every channel a shard subscribes to: the four of events, and control.
    pub fn all(&self) -> [&str; 5] {
        [&self.notifications, &self.orders, &self.inventory, &self.broadcasts, &self.control]
    }

    /// The four channels of events (not control).
    pub fn events(&self) -> [&str; 4] {
        [&self.notifications, &self.orders, &self.inventory, &self.broadcasts]
    }

    /// The channel for an event with this room (`None` or `user:U`: a `send`
    /// without a room). A scoped room uses its base's channel.
    pub fn for_room(&self, room: Option<&str>) -> &str {
        let base = room.map(|r| RoomName::parse(r).map_or(r, |name| name.base));
        match base {
            None | Some("notifications" | "user") => &self.notifications,
            Some("orders" | "myOrders" | "deliveries") => &self.orders,
            Some("inventory" | "products") => &self.inventory,
            Some(_) => &self.broadcasts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_follows_the_spec() {
        let c = Channels::new("realtime");
        assert_eq!(c.for_room(None), "realtime:notifications");
        assert_eq!(c.for_room(Some("notifications")), "realtime:notifications");
        assert_eq!(c.for_room(Some("user:5")), "realtime:notifications");
        for room in ["orders", "myOrders", "deliveries", "orders:123"] {
            assert_eq!(c.for_room(Some(room)), "realtime:orders", "{room}");
        }
        for room in ["inventory", "products:9"] {
            assert_eq!(c.for_room(Some(room)), "realtime:inventory", "{room}");
        }
        for room in ["all", "cart", "promos"] {
            assert_eq!(c.for_room(Some(room)), "realtime:broadcasts", "{room}");
        }
    }
}
