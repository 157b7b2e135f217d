//! The payload of the `inventory_alert` event type (README, Publish API): a
//! product's stock level, its threshold and what the alert says.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Id;

/// What an inventory alert says. Open: a known level, any other non-empty
/// string, or a plain boolean (`true` = the alert is raised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AlertLevel {
    Known(KnownAlertLevel),
    Other(#[serde(deserialize_with = "super::non_empty_string")] String),
    Flag(bool),
}

impl fmt::Display for AlertLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertLevel::Known(k) => f.write_str(k.as_str()),
            AlertLevel::Other(s) => f.write_str(s),
            AlertLevel::Flag(b) => write!(f, "{b}"),
        }
    }
}

impl From<KnownAlertLevel> for AlertLevel {
    fn from(k: KnownAlertLevel) -> Self {
        AlertLevel::Known(k)
    }
}

/// The alert levels this service knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownAlertLevel {
    LowStock,
    OutOfStock,
    Restocked,
}

impl KnownAlertLevel {
    /// The level as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            KnownAlertLevel::LowStock => "low_stock",
            KnownAlertLevel::OutOfStock => "out_of_stock",
            KnownAlertLevel::Restocked => "restocked",
        }
    }
}

/// Payload of an `inventory_alert` event:
/// `{"productId": "p1", "stockLevel": 3, "threshold": 5, "alert": "low_stock"}`.
/// All four fields are required and none may be `null`; extra fields are
/// ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryAlertPayload {
    pub product_id: Id,
    pub stock_level: f64,
    pub threshold: f64,
    pub alert: AlertLevel,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<InventoryAlertPayload, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn parses_with_string_or_number_id() {
        let p =
            parse(json!({"productId": "p1", "stockLevel": 3, "threshold": 5, "alert": "low_stock"})).unwrap();
        assert_eq!(p.product_id, Id::Text("p1".into()));
        assert_eq!(p.stock_level, 3.0);
        assert_eq!(p.threshold, 5.0);
        assert_eq!(p.alert, AlertLevel::Known(KnownAlertLevel::LowStock));

        let p: InventoryAlertPayload =
            serde_json::from_str(r#"{"productId":42,"stockLevel":0,"threshold":2.5,"alert":"out_of_stock"}"#)
                .unwrap();
        assert_eq!(p.product_id, Id::Number(42));
        assert_eq!(p.threshold, 2.5);
        assert_eq!(p.alert, KnownAlertLevel::OutOfStock.into());
    }

    #[test]
    fn unknown_and_boolean_alerts_are_accepted() {
        let p = parse(json!({"productId": 1, "stockLevel": 1, "threshold": 1, "alert": "critical"})).unwrap();
        assert_eq!(p.alert, AlertLevel::Other("critical".into()));
        assert_eq!(p.alert.to_string(), "critical");
        let p = parse(json!({"productId": 1, "stockLevel": 1, "threshold": 1, "alert": true})).unwrap();
        assert_eq!(p.alert, AlertLevel::Flag(true));
        let p = parse(json!({"productId": 1, "stockLevel": 9, "threshold": 1, "alert": false})).unwrap();
        assert_eq!(p.alert, AlertLevel::Flag(false));
    }

    #[test]
    fn extra_fields_are_ignored() {
        let p = parse(json!({
            "productId": "p1", "stockLevel": 10, "threshold": 5, "alert": "restocked",
            "sellerId": 7, "productName": "Mug"
        }))
        .unwrap();
        assert_eq!(p.alert, KnownAlertLevel::Restocked.into());
    }

    #[test]
    fn missing_null_or_wrong_fields_are_errors() {
        let good = json!({"productId": "p1", "stockLevel": 3, "threshold": 5, "alert": "low_stock"});
        for key in ["productId", "stockLevel", "threshold", "alert"] {
            let mut missing = good.clone();
            missing.as_object_mut().unwrap().remove(key);
            assert!(parse(missing).is_err(), "missing {key} should be rejected");
            let mut null = good.clone();
            null[key] = serde_json::Value::Null;
            assert!(parse(null).is_err(), "null {key} should be rejected");
        }
        for (key, bad) in [
            ("productId", json!("")),
            ("productId", json!(1.5)),
            ("stockLevel", json!("3")),
            ("threshold", json!([5])),
            ("alert", json!("")),
            ("alert", json!(3)),
            ("alert", json!({"level": "low_stock"})),
        ] {
            let mut v = good.clone();
            v[key] = bad;
            assert!(parse(v.clone()).is_err(), "{v} should be rejected");
        }
    }

    #[test]
    fn writes_camel_case_and_round_trips() {
        let p = InventoryAlertPayload {
            product_id: Id::from("p1"),
            stock_level: 0.0,
            threshold: 5.0,
            alert: KnownAlertLevel::OutOfStock.into(),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            json!({"productId": "p1", "stockLevel": 0.0, "threshold": 5.0, "alert": "out_of_stock"})
        );
        assert_eq!(parse(v).unwrap(), p);
        let flag = InventoryAlertPayload { alert: AlertLevel::Flag(true), ..p };
        assert_eq!(serde_json::to_value(&flag).unwrap()["alert"], json!(true));
    }

    #[test]
    fn every_known_level_round_trips() {
        use KnownAlertLevel::*;
        for k in [LowStock, OutOfStock, Restocked] {
            let v = serde_json::to_value(k).unwrap();
            assert_eq!(v, json!(k.as_str()));
            assert_eq!(serde_json::from_value::<AlertLevel>(v).unwrap(), AlertLevel::Known(k));
        }
    }
}
