//! Room names and who may join them (README, Client protocol): the name rules, personal rooms
//! (`cart`, `myOrders`), and the room a subscription really joins. The role
//! table itself is [`crate::auth::policy`].

use thiserror::Error;

use crate::auth::Identity;

/// The room every connection is in.
pub const ALL: &str = "all";
/// The base of the personal room every connection is in: `user:U`.
const USER: &str = "user";
/// Rooms whose events belong to one user: U's `cart` is `cart:U`.
const PERSONAL: [&str; 2] = ["cart", "myOrders"];
const MAX_PART: usize = 64;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid room name {0:?}: expected 1-64 of [A-Za-z0-9_-], optionally ':' and a scope of 1-64 of [A-Za-z0-9_.-]")]
pub struct InvalidRoom(pub String);

/// A syntactically valid room name, split at its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomName<'a> {
    pub base: &'a str,
    pub scope: Option<&'a str>,
}

impl<'a> RoomName<'a> {
    pub fn parse(name: &'a str) -> Result<Self, InvalidRoom> {
        let (base, scope) = match name.split_once(':') {
            Some((base, scope)) => (base, Some(scope)),
            None => (name, None),
        };
        let base_ok = valid_part(base, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let scope_ok =
            scope.is_none_or(|s| valid_part(s, |c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
        if base_ok && scope_ok {
            Ok(Self { base, scope })
        } else {
            Err(InvalidRoom(name.to_owned()))
        }
    }

    pub fn is_personal(self) -> bool {
        PERSONAL.contains(&self.base)
    }

    pub fn is_all(self) -> bool {
        self.base == ALL && self.scope.is_none()
    }

    /// `user` or `user:U`, a user's personal room.
    pub fn is_user_room(self) -> bool {
        self.base == USER
    }
}

fn valid_part(part: &str, allowed: impl Fn(char) -> bool) -> bool {
    (1..=MAX_PART).contains(&part.len()) && part.chars().all(allowed)
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JoinError {
    #[error(transparent)]
    Invalid(#[from] InvalidRoom),
    #[error("room {0:?} is not allowed for this role")]
    Forbidden(String),
}

/// The room a client who asks for `requested` joins: U's `cart` is `cart:U`;
/// a non-admin may not name another user's personal room.
pub fn room_to_join(identity: &Identity, requested: &str) -> Result<String, JoinError> {
    let name = RoomName::parse(requested)?;
    if name.is_all() {
        return Ok(ALL.to_owned());
    }
    let forbidden = || JoinError::Forbidden(requested.to_owned());
    if name.is_user_room() {
        return match name.scope {
            None => Ok(personal_user_room(&identity.user_id)),
            Some(owner) if owner == identity.user_id || identity.role.sees_every_room() => {
                Ok(requested.to_owned())
            }
            Some(_) => Err(forbidden()),
        };
    }
    if !identity.role.may_join(name.base) {
        return Err(forbidden());
    }
    if !name.is_personal() {
        return Ok(requested.to_owned());
    }
    match name.scope {
        None => Ok(personal_room(name.base, &identity.user_id)),
        Some(owner) if owner == identity.user_id || identity.role.sees_every_room() => {
            Ok(requested.to_owned())
        }
        Some(_) => Err(forbidden()),
    }
}

/// Where an event for `room` with `user` goes: `cart` with user V is `cart:V`.
/// `None` for a personal room without a user (which nobody may receive).
pub fn event_room(name: RoomName<'_>, user: Option<&str>) -> Option<String> {
    match (name.is_personal(), name.scope, user) {
        (true, None, Some(user)) => Some(personal_room(name.base, user)),
        (true, None, None) => None,
        _ => Some(match name.scope {
            Some(scope) => format!("{}:{scope}", name.base),
            None => name.base.to_owned(),
        }),
    }
}

fn personal_room(base: &str, user: &str) -> String {
    format!("{base}:{user}")
}

/// `user:U`, the room every connection of user U is in.
pub fn personal_user_room(user: &str) -> String {
    personal_room(USER, user)
}

/// The rooms a connection is always in, without joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implicit {
    All,
    /// Its own `user:U`.
    User,
}

/// Which of the rooms a connection of `identity` is always in `room` is (a
/// name as [`room_to_join`] gives it), if any.
pub fn implicit_slot(identity: &Identity, room: &str) -> Option<Implicit> {
    if room == ALL {
        return Some(Implicit::All);
    }
    (room.strip_prefix("user:") == Some(identity.user_id.as_str())).then_some(Implicit::User)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn who(user: &str, role: Role) -> Identity {
        Identity { user_id: user.into(), role }
    }

    #[test]
    fn names_follow_the_rules() {
        assert!(RoomName::parse("orders").is_ok());
        assert!(RoomName::parse("orders:12345").is_ok());
        assert!(RoomName::parse("orders:v1.2-x_y").is_ok());
        for bad in ["", "or ders", "orders:", ":x", "a:b:c", "ordérs", &"x".repeat(65), "a.b"] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn personal_rooms_are_per_user() {
        let client = who("7", Role::Client);
        assert_eq!(room_to_join(&client, "cart"), Ok("cart:7".into()));
        assert_eq!(room_to_join(&client, "cart:7"), Ok("cart:7".into()));
        assert!(matches!(room_to_join(&client, "cart:8"), Err(JoinError::Forbidden(_))));
        assert_eq!(room_to_join(&who("1", Role::Admin), "myOrders:8"), Ok("myOrders:8".into()));
        assert!(matches!(room_to_join(&client, "orders"), Err(JoinError::Forbidden(_))));
        assert_eq!(room_to_join(&client, "user"), Ok("user:7".into()));
        assert_eq!(room_to_join(&client, "user:7"), Ok("user:7".into()));
        assert!(matches!(room_to_join(&client, "user:8"), Err(JoinError::Forbidden(_))));
        assert_eq!(room_to_join(&who("1", Role::Admin), "user:8"), Ok("user:8".into()));
        assert_eq!(implicit_slot(&client, "user:7"), Some(Implicit::User));
        assert_eq!(implicit_slot(&client, "all"), Some(Implicit::All));
        assert_eq!(implicit_slot(&client, "user:8"), None);
    }

    #[test]
    fn events_for_personal_rooms_need_a_user() {
        let cart = RoomName::parse("cart").expect("valid");
        assert_eq!(event_room(cart, Some("9")), Some("cart:9".into()));
        assert_eq!(event_room(cart, None), None);
        assert_eq!(
            event_room(RoomName::parse("orders:1").expect("valid"), Some("9")),
            Some("orders:1".into())
        );
    }
}
