//! Products: an item a seller lists in the catalogue.

use serde::{Deserialize, Serialize};

use super::Id;

/// A product listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: Id,
    pub seller_id: Id,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub price: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcategory_id: Option<Id>,
    /// Units in stock, when the REST service includes it (see
    /// [`super::inventory::Inventory`] for the full record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<f64>,
    /// Image URLs; empty when absent.
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
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
    fn product_parses() {
        let p: Product = serde_json::from_value(json!({
            "id": 10, "sellerId": "s1", "name": "Mug", "price": 4.5, "categoryId": 2,
            "images": ["/a.png"], "rating": 4.8
        }))
        .unwrap();
        assert_eq!(p.images, vec!["/a.png".to_string()]);
        assert_eq!(p.subcategory_id, None);
        assert!(
            serde_json::from_value::<Product>(json!({"id": 10, "sellerId": "s1", "name": "Mug"})).is_err()
        );
    }
}
