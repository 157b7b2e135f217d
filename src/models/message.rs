//! The payload of the `broadcast` event type (README, Publish API).

use serde::{Deserialize, Serialize};

/// Payload of a `broadcast` event: `{"message": "..."}`. `message` is a
/// required string; extra fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastPayload {
    pub message: String,
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
}
