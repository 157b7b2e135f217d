//! HS256 client tokens, minted here with the server's secret.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    #[serde(rename = "userId")]
    user_id: &'a str,
    role: &'a str,
    exp: u64,
}

/// Mints tokens for one role, all valid until the same time.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    role: String,
    exp: u64,
}

impl Minter {
    /// Tokens stay valid for `ttl_secs` from now.
    pub fn new(secret: &str, role: &str, ttl_secs: u64) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            role: role.to_owned(),
            exp: now + ttl_secs,
        }
    }

    pub fn token(&self, user_id: &str) -> String {
        let claims = Claims { user_id, role: &self.role, exp: self.exp };
        // Encoding a small struct with an HMAC key cannot fail.
        jsonwebtoken::encode(&self.header, &claims, &self.key).unwrap_or_default()
    }
}

/// The user id of connection `index` (global across processes): distinct per connection.
pub fn user_id(index: usize) -> String {
    format!("bench{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_the_secret() {
        let token = Minter::new("s3cret", "seller", 60).token("bench7");
        let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &v,
        )
        .expect("valid");
        assert_eq!(data.claims["userId"], "bench7");
        assert_eq!(data.claims["role"], "seller");
    }
}
