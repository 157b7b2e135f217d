//! Product subcategories: the second level of the catalogue tree, each under
//! one category.

use serde::{Deserialize, Serialize};

use super::Id;

/// A subcategory of a [`super::category::Category`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subcategory {
    pub id: Id,
    pub category_id: Id,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
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
    fn subcategory_parses() {
        let s: Subcategory =
            serde_json::from_value(json!({"id": "s1", "categoryId": 2, "name": "Mugs", "slug": "mugs"}))
                .unwrap();
        assert_eq!(s.category_id, Id::Number(2));
        assert!(serde_json::from_value::<Subcategory>(json!({"id": "s1", "name": "Mugs"})).is_err());
    }
}
