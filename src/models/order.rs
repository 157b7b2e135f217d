//! Orders: the `Order` entity with its items and status, and the payload of
//! the `order_update` event type (README, Publish API).

use serde::{Deserialize, Serialize};

use super::client::Address;
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

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: Id,
    pub quantity: u32,
    /// Unit price at the time of the order.
    pub price: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtotal: Option<f64>,
}

/// An order placed by a client with a seller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Id,
    pub client_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<Id>,
    #[serde(default)]
    pub items: Vec<OrderItem>,
    pub total: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub status: OrderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<Id>,
    /// RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
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

    #[test]
    fn order_entity_parses() {
        let o: Order = serde_json::from_value(json!({
            "id": 1, "clientId": "c1", "sellerId": 9,
            "items": [{"productId": "p1", "quantity": 2, "price": 4.5, "name": "Mug"}],
            "total": 9.0, "status": "confirmed", "createdAt": "2026-11-27T18:00:00Z",
            "shippingAddress": {"street": "1 Main St", "city": "Lyon"},
            "somethingNew": true
        }))
        .unwrap();
        assert_eq!(o.items.len(), 1);
        assert_eq!(o.items[0].quantity, 2);
        assert_eq!(o.status, KnownOrderStatus::Confirmed.into());
        assert_eq!(o.seller_id, Some(Id::Number(9)));
        let back = serde_json::to_value(&o).unwrap();
        assert!(back.get("updatedAt").is_none());
        assert_eq!(back["clientId"], json!("c1"));
    }
}
