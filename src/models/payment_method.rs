//! Payment methods a client saved for checkout. Only what the REST service
//! exposes: a card's brand and last four digits, never its number.

use serde::{Deserialize, Serialize};

use super::Id;

/// The kind of a payment method; open (see [`super::Open`]).
pub type PaymentMethodKind = super::Open<KnownPaymentMethodKind>;

/// The payment method kinds this service knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownPaymentMethodKind {
    Card,
    BankTransfer,
    Paypal,
    Wallet,
    CashOnDelivery,
}

impl super::WireName for KnownPaymentMethodKind {
    /// The kind as written on the wire.
    fn as_str(self) -> &'static str {
        match self {
            KnownPaymentMethodKind::Card => "card",
            KnownPaymentMethodKind::BankTransfer => "bank_transfer",
            KnownPaymentMethodKind::Paypal => "paypal",
            KnownPaymentMethodKind::Wallet => "wallet",
            KnownPaymentMethodKind::CashOnDelivery => "cash_on_delivery",
        }
    }
}

/// A saved payment method (JSON key `type` for its kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethod {
    pub id: Id,
    pub client_id: Id,
    #[serde(rename = "type")]
    pub kind: PaymentMethodKind,
    /// Card brand (`visa`, `mastercard`…), for cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_month: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_year: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_default: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payment_method_parses() {
        let p: PaymentMethod = serde_json::from_value(json!({
            "id": 1, "clientId": "123", "type": "card", "brand": "visa", "last4": "4242",
            "expiryMonth": 12, "expiryYear": 2030, "isDefault": true, "fingerprint": "abc"
        }))
        .unwrap();
        assert_eq!(p.kind, KnownPaymentMethodKind::Card.into());
        assert_eq!(p.is_default, Some(true));
        assert_eq!(serde_json::to_value(&p).unwrap()["type"], json!("card"));

        let p: PaymentMethod =
            serde_json::from_value(json!({"id": 2, "clientId": 5, "type": "crypto"})).unwrap();
        assert_eq!(p.kind.as_str(), "crypto");
        assert!(serde_json::from_value::<PaymentMethod>(json!({"id": 2, "clientId": 5, "type": ""})).is_err());
    }
}
