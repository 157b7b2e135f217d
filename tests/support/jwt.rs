//! Tokens: signed JWTs as a client would bring them, unsigned and forged ones
//! for the rejection tests, and reading the claims of a token the server made.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// HS256 token for `userId` + `role`, valid for an hour.
pub fn token(secret: &str, user_id: &str, role: &str) -> String {
    mint(secret, &json!({"userId": user_id, "role": role, "exp": now_secs() + 3600}))
}

/// HS256 token with arbitrary claims.
pub fn mint(secret: &str, claims: &Value) -> String {
    mint_alg(Algorithm::HS256, secret, claims)
}

pub fn mint_alg(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("encode JWT")
}

/// An unsigned token with `"alg":"none"`.
pub fn unsigned_token(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    format!("{}.{}.", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()))
}

/// base64url without padding, as the parts of a JWT are written.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes unpadded base64url; `None` when it is not.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// The claims of a JWT, without verifying it.
pub fn unverified_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT with a payload part");
    let bytes = b64url_decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}
