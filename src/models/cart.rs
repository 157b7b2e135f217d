//! Shopping carts: a client's `Cart` and its `CartItem`s (the personal
//! `cart` room of README's Client protocol section carries their changes).

use serde::{Deserialize, Serialize};

use super::Id;

/// One product in a cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItem {
    pub product_id: Id,
    pub quantity: u32,
    /// Unit price as last seen by the REST service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<Id>,
}

/// A client's cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    pub client_id: Id,
    #[serde(default)]
    pub items: Vec<CartItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cart_parses() {
        let c: Cart = serde_json::from_value(json!({
            "clientId": "123",
            "items": [{"productId": 1, "quantity": 3, "price": 2.5}, {"productId": "p2", "quantity": 1}],
            "total": 8.5, "coupon": null
        }))
        .unwrap();
        assert_eq!(c.id, None);
        assert_eq!(c.items.len(), 2);
        assert_eq!(c.items[1].price, None);
        let empty: Cart = serde_json::from_value(json!({"clientId": 5})).unwrap();
        assert!(empty.items.is_empty());
        assert!(serde_json::from_value::<CartItem>(json!({"productId": 1, "quantity": -1})).is_err());
    }
}
