//! The payload of the `order_update` event type (README, Publish API) and
//! the order statuses it names.

use serde::{Deserialize, Serialize};

use super::Id;

/// An order's status as the REST service writes it; open (see [`super::Open`]).
pub type OrderStatus = super::Open<KnownOrderStatus>;

/// The order statuses this service knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownOrderStatus {
    Pending,
    Confirmed,
    Processing,
    Shipped,
    OutForDelivery,
    Delivered,
    Cancelled,
    Refunded,
}

impl super::WireName for KnownOrderStatus {
    /// The status as written on the wire.
    fn as_str(self) -> &'static str {
        match self {
            KnownOrderStatus::Pending => "pending",
            KnownOrderStatus::Confirmed => "confirmed",
            KnownOrderStatus::Processing => "processing",
            KnownOrderStatus::Shipped => "shipped",
            KnownOrderStatus::OutForDelivery => "out_for_delivery",
            KnownOrderStatus::Delivered => "delivered",
            KnownOrderStatus::Cancelled => "cancelled",
            KnownOrderStatus::Refunded => "refunded",
        }
    }
}

/// Payload of an `order_update` event: `{"orderId": "12345", "status": "shipped"}`.
/// Both fields are required; extra fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderUpdatePayload {
    pub order_id: Id,
    pub status: OrderStatus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::WireName;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<OrderUpdatePayload, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn parses_known_status_with_string_or_number_id() {
        let p = parse(json!({"orderId": "12345", "status": "shipped"})).unwrap();
        assert_eq!(p.order_id, Id::Text("12345".into()));
        assert_eq!(p.status, OrderStatus::Known(KnownOrderStatus::Shipped));

        let p = parse(json!({"orderId": 12345, "status": "out_for_delivery"})).unwrap();
        assert_eq!(p.order_id, Id::Number(12345));
        assert_eq!(p.status, OrderStatus::Known(KnownOrderStatus::OutForDelivery));
    }

    #[test]
    fn parses_from_text_too() {
        let p: OrderUpdatePayload = serde_json::from_str(r#"{"orderId":"A1","status":"refunded"}"#).unwrap();
        assert_eq!(p.status, KnownOrderStatus::Refunded.into());
    }

    #[test]
    fn unknown_status_is_kept() {
        let p = parse(json!({"orderId": "1", "status": "awaiting_pickup"})).unwrap();
        assert_eq!(p.status, OrderStatus::Other("awaiting_pickup".into()));
        assert_eq!(p.status.to_string(), "awaiting_pickup");
    }

    #[test]
    fn extra_fields_are_ignored() {
        let p = parse(json!({"orderId": "1", "status": "pending", "eta": "tomorrow", "total": 9.5})).unwrap();
        assert_eq!(p.status.as_str(), "pending");
    }

    #[test]
    fn missing_null_or_empty_fields_are_errors() {
        for bad in [
            json!({"status": "shipped"}),
            json!({"orderId": "1"}),
            json!({"orderId": null, "status": "shipped"}),
            json!({"orderId": "1", "status": null}),
            json!({"orderId": "", "status": "shipped"}),
            json!({"orderId": "1", "status": ""}),
            json!({"orderId": "1", "status": 3}),
            json!({"orderId": 1.5, "status": "shipped"}),
            json!({}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn writes_camel_case_and_round_trips() {
        let p = OrderUpdatePayload { order_id: Id::Number(7), status: KnownOrderStatus::Delivered.into() };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v, json!({"orderId": 7, "status": "delivered"}));
        assert_eq!(parse(v).unwrap(), p);

        let other = OrderUpdatePayload { order_id: "x".into(), status: OrderStatus::Other("held".into()) };
        assert_eq!(serde_json::to_value(&other).unwrap(), json!({"orderId": "x", "status": "held"}));
    }

    #[test]
    fn every_known_status_round_trips() {
        use KnownOrderStatus::*;
        for k in [Pending, Confirmed, Processing, Shipped, OutForDelivery, Delivered, Cancelled, Refunded] {
            let v = serde_json::to_value(k).unwrap();
            assert_eq!(v, json!(k.as_str()));
            assert_eq!(serde_json::from_value::<OrderStatus>(v).unwrap(), OrderStatus::Known(k));
        }
    }
}
