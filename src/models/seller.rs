//! Sellers: merchants who list products, the `seller` role of README's Client protocol section.

use serde::{Deserialize, Serialize};

use super::client::Address;
use super::Id;

/// A seller account and its storefront.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seller {
    pub id: Id,
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Average rating, typically 0–5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<f64>,
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
    fn seller_parses() {
        let s: Seller = serde_json::from_value(json!({
            "id": 7, "name": "Bo", "email": "b@x.io", "storeName": "Bo's", "rating": 4.5,
            "address": {"city": "Oslo"}, "payoutAccount": "hidden"
        }))
        .unwrap();
        assert_eq!(s.store_name.as_deref(), Some("Bo's"));
        assert_eq!(s.address.and_then(|a| a.city).as_deref(), Some("Oslo"));
    }
}
