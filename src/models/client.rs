//! Clients (buyers) of the marketplace, and the postal `Address` that
//! clients, orders and deliveries share.

use serde::{Deserialize, Serialize};

use super::Id;

/// A postal address. Every part is optional: the REST service decides what
/// it requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A client account: the `client` role of README's Client protocol section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    pub id: Id,
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default)]
    pub addresses: Vec<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_parses_with_and_without_optionals() {
        let c: Client = serde_json::from_value(json!({"id": 3, "name": "Ana", "email": "a@x.io"})).unwrap();
        assert!(c.addresses.is_empty());
        assert_eq!(c.phone, None);
        let c: Client = serde_json::from_value(json!({
            "id": "c3", "name": "Ana", "email": "a@x.io", "phone": null,
            "addresses": [{"city": "Porto", "postalCode": "4000"}], "loyalty": 5
        }))
        .unwrap();
        assert_eq!(c.addresses[0].postal_code.as_deref(), Some("4000"));
        assert!(serde_json::from_value::<Client>(json!({"id": 3, "name": "Ana"})).is_err());
    }
}
