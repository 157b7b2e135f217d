//! Client tokens, minted here with the server's secret (HS256) or, for the
//! storm, a private key whose public half the server holds.

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
    /// HS256 tokens that stay valid for `ttl_secs` from now.
    pub fn new(secret: &str, role: &str, ttl_secs: u64) -> Self {
        Self::with_key(EncodingKey::from_secret(secret.as_bytes()), Algorithm::HS256, role, ttl_secs)
    }

    /// Tokens signed with a PEM private key, the algorithm following its
    /// type as the server's does: RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA.
    pub fn from_private_pem(pem: &[u8], role: &str, ttl_secs: u64) -> anyhow::Result<Self> {
        let (key, algorithm) = if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            (key, Algorithm::RS256)
        } else if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            (key, Algorithm::EdDSA)
        } else {
            let key = EncodingKey::from_ec_pem(pem)
                .map_err(|_| anyhow::anyhow!("not a PEM RSA, EC P-256 or Ed25519 private key (PKCS#8)"))?;
            (key, Algorithm::ES256)
        };
        let minter = Self::with_key(key, algorithm, role, ttl_secs);
        // A key that cannot sign (an EC key on another curve) fails here, not per connection.
        jsonwebtoken::encode(
            &minter.header,
            &Claims { user_id: "probe", role, exp: minter.exp },
            &minter.key,
        )
        .map_err(|e| anyhow::anyhow!("cannot sign with the private key: {e}"))?;
        Ok(minter)
    }

    fn with_key(key: EncodingKey, algorithm: Algorithm, role: &str, ttl_secs: u64) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { key, header: Header::new(algorithm), role: role.to_owned(), exp: now + ttl_secs }
    }

    pub fn token(&self, user_id: &str) -> String {
        let claims = Claims { user_id, role: &self.role, exp: self.exp };
        // Encoding a small struct cannot fail with a key that signed the probe.
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
