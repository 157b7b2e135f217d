//! The role table of README's Client protocol section, kept here as data and nowhere else.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Seller,
    Client,
    Delivery,
}

/// Which room bases each role may subscribe to, in the table's order (the
/// `connected` message lists them in this order). `None` means every room.
const ROOM_TABLE: [(Role, Option<&[&str]>); 4] = [
    (Role::Admin, None),
    (Role::Seller, Some(&["orders", "inventory", "products", "notifications"])),
    (Role::Client, Some(&["notifications", "cart", "myOrders"])),
    (Role::Delivery, Some(&["deliveries", "orders"])),
];

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Seller, Role::Client, Role::Delivery];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Seller => "seller",
            Role::Client => "client",
            Role::Delivery => "delivery",
        }
    }

    /// The room bases this role may join; `None` for every room.
    pub fn rooms(self) -> Option<&'static [&'static str]> {
        ROOM_TABLE.iter().find(|(role, _)| *role == self).and_then(|(_, rooms)| *rooms)
    }

    /// Admins may join every room, other users' personal rooms included.
    pub fn sees_every_room(self) -> bool {
        self.rooms().is_none()
    }

    /// May this role subscribe to rooms with this base?
    pub fn may_join(self, base: &str) -> bool {
        self.rooms().is_none_or(|rooms| rooms.contains(&base))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {0:?} (expected admin, seller, client or delivery)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_spec() {
        assert!(Role::Admin.may_join("anything"));
        assert!(Role::Seller.may_join("inventory") && !Role::Seller.may_join("cart"));
        assert!(Role::Client.may_join("myOrders") && !Role::Client.may_join("orders"));
        assert_eq!(Role::Delivery.rooms(), Some(&["deliveries", "orders"][..]));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
