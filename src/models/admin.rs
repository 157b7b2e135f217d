//! Administrators of the marketplace: the `admin` role of README's Client protocol section.

use serde::{Deserialize, Serialize};

use super::Id;

/// An administrator account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Admin {
    pub id: Id,
    pub name: String,
    pub email: String,
    /// Permission names as the REST service grants them; empty when absent.
    #[serde(default)]
    pub permissions: Vec<String>,
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
    fn admin_parses() {
        let a: Admin =
            serde_json::from_value(json!({"id": 1, "name": "Root", "email": "r@x.io", "superuser": true}))
                .unwrap();
        assert!(a.permissions.is_empty());
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v, json!({"id": 1, "name": "Root", "email": "r@x.io", "permissions": []}));
        assert!(serde_json::from_value::<Admin>(json!({"id": "", "name": "R", "email": "e"})).is_err());
    }
}
