//! Messages: a chat message between marketplace users, and the payload of
//! the `broadcast` event type (README, Publish API).

use serde::{Deserialize, Serialize};

use super::Id;

/// Payload of a `broadcast` event: `{"message": "..."}`. `message` is a
/// required string; extra fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastPayload {
    pub message: String,
}

/// A chat message, e.g. between a client and a seller about an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Id>,
    pub sender_id: Id,
    /// `admin`, `seller`, `client` or `delivery`, as the REST service writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Id>,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<BroadcastPayload, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn valid_payloads_parse() {
        assert_eq!(parse(json!({"message": "Maintenance at 2am"})).unwrap().message, "Maintenance at 2am");
        let p: BroadcastPayload = serde_json::from_str(r#"{"message":"hi","level":"info","id":3}"#).unwrap();
        assert_eq!(p, BroadcastPayload { message: "hi".into() });
    }

    #[test]
    fn missing_null_or_non_string_message_is_an_error() {
        for bad in [json!({}), json!({"message": null}), json!({"message": 5}), json!({"text": "hi"})] {
            assert!(parse(bad.clone()).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn writes_camel_case() {
        let p = BroadcastPayload { message: "x".into() };
        assert_eq!(serde_json::to_value(&p).unwrap(), json!({"message": "x"}));
    }

    #[test]
    fn chat_message_parses() {
        let m: Message = serde_json::from_value(json!({
            "id": "m1", "senderId": 4, "recipientId": "9", "content": "Is it in stock?",
            "senderRole": "client", "createdAt": "2026-11-27T18:00:00Z", "attachments": []
        }))
        .unwrap();
        assert_eq!(m.sender_id, Id::Number(4));
        assert_eq!(m.recipient_id, Some(Id::from("9")));
        assert!(serde_json::from_value::<Message>(json!({"id": "m1", "senderId": 4})).is_err());
    }
}
