//! Product categories: the top level of the catalogue tree.

use serde::{Deserialize, Serialize};

use super::Id;

/// A product category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Category {
    pub id: Id,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn category_parses() {
        let c: Category =
            serde_json::from_value(json!({"id": 2, "name": "Kitchen", "imageUrl": "/k.png", "order": 1}))
                .unwrap();
        assert_eq!(c.image_url.as_deref(), Some("/k.png"));
        assert!(serde_json::from_value::<Category>(json!({"id": 2})).is_err());
    }
}
