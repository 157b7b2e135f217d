//! Deliveries: getting an order to its client, with the courier assigned
//! (the `delivery` role of README's Client protocol section) and the delivery's status.

use serde::{Deserialize, Serialize};

use super::client::Address;
use super::Id;

/// A delivery's status as the REST service writes it; open (see [`super::Open`]).
pub type DeliveryStatus = super::Open<KnownDeliveryStatus>;

/// The delivery statuses this service knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownDeliveryStatus {
    Pending,
    Assigned,
    PickedUp,
    InTransit,
    Delivered,
    Failed,
    Cancelled,
}

impl super::WireName for KnownDeliveryStatus {
    /// The status as written on the wire.
    fn as_str(self) -> &'static str {
        match self {
            KnownDeliveryStatus::Pending => "pending",
            KnownDeliveryStatus::Assigned => "assigned",
            KnownDeliveryStatus::PickedUp => "picked_up",
            KnownDeliveryStatus::InTransit => "in_transit",
            KnownDeliveryStatus::Delivered => "delivered",
            KnownDeliveryStatus::Failed => "failed",
            KnownDeliveryStatus::Cancelled => "cancelled",
        }
    }
}

/// The delivery of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: Id,
    pub order_id: Id,
    /// The courier (a `delivery` user), once one is assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub courier_id: Option<Id>,
    pub status: DeliveryStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// RFC 3339 timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_delivery_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::WireName;
    use serde_json::json;

    #[test]
    fn delivery_parses_with_known_and_unknown_status() {
        let d: Delivery = serde_json::from_value(json!({
            "id": 1, "orderId": "o1", "courierId": 33, "status": "in_transit", "gps": [1, 2]
        }))
        .unwrap();
        assert_eq!(d.status, KnownDeliveryStatus::InTransit.into());
        let d: Delivery =
            serde_json::from_value(json!({"id": 1, "orderId": "o1", "status": "at_locker"})).unwrap();
        assert_eq!(d.status, DeliveryStatus::Other("at_locker".into()));
        assert_eq!(d.status.to_string(), "at_locker");
        for bad in [json!(""), json!(null), json!(1)] {
            let v = json!({"id": 1, "orderId": "o1", "status": bad});
            assert!(serde_json::from_value::<Delivery>(v.clone()).is_err(), "{v} should be rejected");
        }
    }

    #[test]
    fn every_known_status_round_trips() {
        use KnownDeliveryStatus::*;
        for k in [Pending, Assigned, PickedUp, InTransit, Delivered, Failed, Cancelled] {
            let v = serde_json::to_value(k).unwrap();
            assert_eq!(v, json!(k.as_str()));
            assert_eq!(serde_json::from_value::<DeliveryStatus>(v).unwrap(), DeliveryStatus::Known(k));
        }
    }
}
