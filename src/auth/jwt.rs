//! The JWT check of SPEC §2: HS256 only; `exp`, `userId` (or `sub`) and `role`
//! required. Also mints tokens for `realtime token` and development mode.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::policy::Role;

/// Tokens longer than this are refused before any cryptography runs.
pub const MAX_TOKEN_LEN: usize = 4096;

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub role: Role,
}

/// Why a token was refused; `reason()` is the metric label and the log field.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token not signed with HS256")]
    Algorithm,
    #[error("invalid signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("missing claim")]
    MissingClaim,
    #[error("unknown role")]
    UnknownRole,
}

impl AuthError {
    pub const ALL: [AuthError; 7] = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::Algorithm,
        AuthError::Signature,
        AuthError::Expired,
        AuthError::MissingClaim,
        AuthError::UnknownRole,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::Algorithm => "algorithm",
            AuthError::Signature => "signature",
            AuthError::Expired => "expired",
            AuthError::MissingClaim => "missing_claim",
            AuthError::UnknownRole => "unknown_role",
        }
    }
}

/// `userId` may be a string or a number (SPEC §8); a number becomes its decimal string.
#[derive(Deserialize)]
#[serde(untagged)]
enum UserIdClaim {
    Text(String),
    Unsigned(u64),
    Signed(i64),
}

impl UserIdClaim {
    fn into_string(self) -> String {
        match self {
            UserIdClaim::Text(s) => s,
            UserIdClaim::Unsigned(n) => n.to_string(),
            UserIdClaim::Signed(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(rename = "userId")]
    user_id: Option<UserIdClaim>,
    sub: Option<String>,
    role: Option<String>,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    #[serde(rename = "userId")]
    user_id: &'a str,
    role: &'a str,
    iat: u64,
    exp: u64,
}

/// Verifies client tokens; built once per process and shared by every shard.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        // Expired means expired: publishers and this service share NTP time.
        validation.leeway = 0;
        Self { key: DecodingKey::from_secret(secret), validation }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| classify(e.kind()))?
            .claims;
        let user_id = claims
            .user_id
            .map(UserIdClaim::into_string)
            .or(claims.sub)
            .filter(|id| !id.is_empty())
            .ok_or(AuthError::MissingClaim)?;
        let role = claims.role.ok_or(AuthError::MissingClaim)?;
        let role = role.parse().map_err(|_| AuthError::UnknownRole)?;
        Ok(Identity { user_id, role })
    }
}

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::Algorithm,
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
        _ => AuthError::Malformed,
    }
}

/// Signs an HS256 token for `user_id` with `role`, valid for `ttl_secs`.
pub fn mint(
    secret: &[u8],
    user_id: &str,
    role: Role,
    ttl_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let claims = MintedClaims { user_id, role: role.as_str(), iat: now, exp: now.saturating_add(ttl_secs) };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify() {
        let token = mint(b"k", "42", Role::Seller, 60).expect("mint");
        let id = TokenVerifier::new(b"k").verify(&token).expect("valid");
        assert_eq!(id, Identity { user_id: "42".into(), role: Role::Seller });
    }

    #[test]
    fn wrong_secret_and_garbage_are_refused() {
        let token = mint(b"k", "42", Role::Seller, 60).expect("mint");
        let verifier = TokenVerifier::new(b"other");
        assert_eq!(verifier.verify(&token), Err(AuthError::Signature));
        assert_eq!(verifier.verify("a.b.c"), Err(AuthError::Malformed));
        assert_eq!(verifier.verify(""), Err(AuthError::Missing));
    }
}
