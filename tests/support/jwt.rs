//! Tokens: signed JWTs as a client would bring them, unsigned and forged ones
//! for the rejection tests, and reading the claims of a token the server made.

use std::time::{SystemTime, UNIX_EPOCH};

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

/// base64url without padding.
pub fn b64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64url (padding optional); `None` on a bad character.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// The claims of a JWT, without verifying it.
pub fn unverified_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT with a payload part");
    let bytes = b64url_decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}
