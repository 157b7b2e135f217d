//! The payload of the `notification` event type (README, Publish API).

use serde::{Deserialize, Serialize};

/// How urgent a notification is. Closed: anything but `low`, `normal` or
/// `high` is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
}

impl Priority {
    /// The priority as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// Payload of a `notification` event:
/// `{"title": "...", "message": "...", "priority": "high"?, "action": {...}?}`.
/// `title` and `message` are required strings; `priority` and `action` may be
/// absent or `null`. `action` is any JSON value (a link, a button…), passed
/// through untouched. Extra fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPayload {
    pub title: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<NotificationPayload, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn minimal_payload_parses() {
        let p = parse(json!({"title": "Hi", "message": "Your order shipped"})).unwrap();
        assert_eq!(p.title, "Hi");
        assert_eq!(p.message, "Your order shipped");
        assert_eq!(p.priority, None);
        assert_eq!(p.action, None);
    }

    #[test]
    fn full_payload_parses_and_extra_fields_are_ignored() {
        let p = parse(json!({
            "title": "Sale", "message": "20% off", "priority": "high",
            "action": {"url": "/sale", "label": "Open"}, "icon": "tag", "orderId": 5
        }))
        .unwrap();
        assert_eq!(p.priority, Some(Priority::High));
        assert_eq!(p.action, Some(json!({"url": "/sale", "label": "Open"})));
        let p: NotificationPayload =
            serde_json::from_str(r#"{"title":"t","message":"m","priority":"low","action":"/x"}"#).unwrap();
        assert_eq!(p.priority, Some(Priority::Low));
        assert_eq!(p.action, Some(json!("/x")));
    }

    #[test]
    fn null_optionals_read_as_absent() {
        let p = parse(json!({"title": "t", "message": "m", "priority": null, "action": null})).unwrap();
        assert_eq!(p.priority, None);
        assert_eq!(p.action, None);
    }

    #[test]
    fn every_priority_parses() {
        for (s, want) in [("low", Priority::Low), ("normal", Priority::Normal), ("high", Priority::High)] {
            let p = parse(json!({"title": "t", "message": "m", "priority": s})).unwrap();
            assert_eq!(p.priority, Some(want));
            assert_eq!(want.as_str(), s);
        }
    }

    #[test]
    fn bad_priority_is_an_error() {
        for bad in [json!("urgent"), json!("HIGH"), json!("High"), json!(""), json!(1), json!(true)] {
            let v = json!({"title": "t", "message": "m", "priority": bad});
            assert!(parse(v.clone()).is_err(), "{v} should be rejected");
        }
    }

    #[test]
    fn missing_null_or_non_string_required_fields_are_errors() {
        for bad in [
            json!({"message": "m"}),
            json!({"title": "t"}),
            json!({}),
            json!({"title": null, "message": "m"}),
            json!({"title": "t", "message": null}),
            json!({"title": 1, "message": "m"}),
            json!({"title": "t", "message": {"text": "m"}}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn writes_without_absent_optionals() {
        let p = NotificationPayload { title: "t".into(), message: "m".into(), priority: None, action: None };
        assert_eq!(serde_json::to_value(&p).unwrap(), json!({"title": "t", "message": "m"}));
        let p = NotificationPayload { priority: Some(Priority::Normal), ..p };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"title": "t", "message": "m", "priority": "normal"})
        );
    }
}
