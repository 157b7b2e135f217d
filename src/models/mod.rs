//! The payloads of the event types the publish API checks (README, Publish
//! API): `notification`, `order_update`, `inventory_alert`, `broadcast`, as
//! the marketplace's REST service writes them. Every other type's payload
//! is passed through as the publisher wrote it, so the server keeps no
//! other type of the REST service's.
//!
//! Conventions, shared by every file here:
//! - JSON keys are camelCase; unknown keys are ignored, so the REST service
//!   may add fields without breaking us;
//! - optional fields are `Option<T>`: absent or `null` reads as `None`, and
//!   `None` is left out when written;
//! - identifiers are [`Id`]: a JSON string or an integer;
//! - enums whose values come from the REST service are *open*: a `Known`
//!   variant for the values we know, and an `Other` variant that keeps any
//!   other non-empty string, so a new value upstream still parses. An empty
//!   string is never a valid value.

pub mod inventory;
pub mod message;
pub mod notification;
pub mod order;

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// An identifier as the REST service writes it: a JSON string (`"12345"`)
/// or an integer (`12345`). Written back the way it was read.
///
/// Reading rejects `null`, the empty string, fractional numbers and
/// integers outside `i64`. [`fmt::Display`] gives the string itself, or the
/// number in decimal — the form the event envelope uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Id {
    Text(String),
    Number(i64),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Text(s) => f.write_str(s),
            Id::Number(n) => write!(f, "{n}"),
        }
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Number(n)
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::Text(s)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::Text(s.to_owned())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = Id;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-empty string or an integer id")
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Id, E> {
                Ok(Id::Number(n))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Id, E> {
                i64::try_from(n)
                    .map(Id::Number)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &"an id within i64"))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id, E> {
                if s.is_empty() {
                    return Err(E::invalid_value(de::Unexpected::Str(s), &self));
                }
                Ok(Id::Text(s.to_owned()))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<Id, E> {
                if s.is_empty() {
                    return Err(E::invalid_value(de::Unexpected::Str(&s), &self));
                }
                Ok(Id::Text(s))
            }
        }

        deserializer.deserialize_any(IdVisitor)
    }
}

/// A value from the REST service's vocabulary that this service does not
/// own: the values it knows by name in `Known`, anything else (but the empty
/// string) kept as written in `Other`, so a new status upstream never breaks
/// parsing here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Open<K> {
    Known(K),
    Other(#[serde(deserialize_with = "non_empty_string")] String),
}

/// The wire name of a known value.
pub trait WireName: Copy {
    fn as_str(self) -> &'static str;
}

impl<K: WireName> Open<K> {
    /// The value as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Open::Known(k) => k.as_str(),
            Open::Other(s) => s,
        }
    }
}

impl<K: WireName> fmt::Display for Open<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<K: WireName> From<K> for Open<K> {
    fn from(known: K) -> Self {
        Open::Known(known)
    }
}

/// `deserialize_with` helper for the `Other` variant of the open enums: any
/// string but the empty one.
pub(crate) fn non_empty_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let s = String::deserialize(deserializer)?;
    if s.is_empty() {
        return Err(de::Error::invalid_value(de::Unexpected::Str(&s), &"a non-empty string"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_reads_strings_and_integers() {
        assert_eq!(serde_json::from_str::<Id>(r#""abc-1""#).unwrap(), Id::Text("abc-1".into()));
        assert_eq!(serde_json::from_str::<Id>("42").unwrap(), Id::Number(42));
        assert_eq!(serde_json::from_str::<Id>("-7").unwrap(), Id::Number(-7));
        assert_eq!(serde_json::from_str::<Id>("9223372036854775807").unwrap(), Id::Number(i64::MAX));
    }

    #[test]
    fn id_rejects_empty_null_and_non_integers() {
        for bad in [r#""""#, "null", "1.5", "18446744073709551615", "true", "[]", "{}"] {
            assert!(serde_json::from_str::<Id>(bad).is_err(), "{bad} should not be an id");
        }
    }

    #[test]
    fn id_displays_and_writes_back_as_read() {
        assert_eq!(Id::Number(12345).to_string(), "12345");
        assert_eq!(Id::from("u-1").to_string(), "u-1");
        assert_eq!(serde_json::to_string(&Id::Number(5)).unwrap(), "5");
        assert_eq!(serde_json::to_string(&Id::from("5")).unwrap(), r#""5""#);
    }

    #[test]
    fn non_empty_string_rejects_empty() {
        #[derive(Deserialize)]
        struct W(#[serde(deserialize_with = "non_empty_string")] String);
        assert_eq!(serde_json::from_str::<W>(r#""x""#).unwrap().0, "x");
        assert!(serde_json::from_str::<W>(r#""""#).is_err());
    }
}
