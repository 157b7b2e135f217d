//! The JWT check of README's Client protocol and Tokens during a session sections: `exp`, `userId` (or `sub`) and
//! `role` required; `nbf`, `iss` and `aud` checked; the key chosen by the
//! token's `kid` (a JWKS) or its algorithm (`JWT_SECRET`, `JWT_PUBLIC_KEY`),
//! and only ever used with the algorithms the key itself accepts. Also mints
//! tokens for `realtime token` and development mode.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{KeySet, SigningKey, VerifyingKey};
use super::policy::Role;

/// Tokens longer than this are refused before any cryptography runs.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The algorithms any key here can accept; `none` is not one of them.
const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub role: Role,
}

/// A valid token: who it names and until when (`exp`, Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: Identity,
    pub exp: u64,
}

/// Why a token was refused; `reason()` is the metric label and the log field,
/// `message()` what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    Algorithm,
    UnknownKid,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    MissingClaim,
    UnknownRole,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AuthError {}

impl AuthError {
    pub const ALL: [AuthError; 11] = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::Algorithm,
        AuthError::UnknownKid,
        AuthError::Signature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::Issuer,
        AuthError::Audience,
        AuthError::MissingClaim,
        AuthError::UnknownRole,
    ];

    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "missing token",
            AuthError::Malformed => "malformed token",
            AuthError::Algorithm => "token signed with an algorithm no configured key accepts",
            AuthError::UnknownKid => "token names a key (kid) that is not in the key set",
            AuthError::Signature => "invalid signature",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::Issuer => "token issuer is not accepted",
            AuthError::Audience => "token audience is not accepted",
            AuthError::MissingClaim => "token lacks a required claim (exp, userId or sub, role)",
            AuthError::UnknownRole => "unknown role",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::Algorithm => "algorithm",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::Signature => "signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Issuer => "issuer",
            AuthError::Audience => "audience",
            AuthError::MissingClaim => "missing_claim",
            AuthError::UnknownRole => "unknown_role",
        }
    }
}

/// `userId` may be a string or a number (README, Client protocol); a number becomes its decimal string.
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
    exp: u64,
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

/// What tokens are checked against, from the configuration.
#[derive(Default)]
pub struct TrustSettings<'a> {
    /// `JWT_SECRET` (or development mode's random one): HS256.
    pub secret: Option<&'a [u8]>,
    /// `JWT_PUBLIC_KEY`.
    pub public_key: Option<VerifyingKey>,
    /// `JWKS_URL` is set: tokens with a `kid` are looked up in the key set.
    pub jwks: bool,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
}

/// Verifies client tokens; built once per process and shared by every shard.
/// The JWKS keys are not in here: each shard passes its own copy.
pub struct TokenVerifier {
    /// `JWT_SECRET` and `JWT_PUBLIC_KEY`, whatever the token's `kid`.
    fixed: Vec<VerifyingKey>,
    jwks: bool,
    /// One per algorithm of [`ALGORITHMS`], each accepting only its own.
    validations: Vec<(Algorithm, Validation)>,
}

impl TokenVerifier {
    pub fn new(settings: TrustSettings<'_>) -> Self {
        let fixed = settings.secret.map(VerifyingKey::hs256).into_iter().chain(settings.public_key).collect();
        let validations = ALGORITHMS
            .into_iter()
            .map(|alg| (alg, validation(alg, settings.issuer, settings.audience)))
            .collect();
        Self { fixed, jwks: settings.jwks, validations }
    }

    /// An HS256-only verifier (tests, benches).
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(TrustSettings { secret: Some(secret), ..TrustSettings::default() })
    }

    /// Checks `token` against the fixed keys and `jwks` (this shard's copy).
    /// [`AuthError::UnknownKid`] asks the caller for a fresh key set.
    pub fn verify(&self, token: &str, jwks: &KeySet) -> Result<Verified, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| classify(e.kind()))?;
        let key = self.key_for(&header, jwks)?;
        let validation = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .map(|(_, validation)| validation)
            .ok_or(AuthError::Algorithm)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key.decoding_key(), validation)
            .map_err(|e| classify(e.kind()))?
            .claims;
        // README's Client protocol section: a token whose `exp` is now is expired already.
        if claims.exp <= now_secs() {
            return Err(AuthError::Expired);
        }
        let user_id = claims
            .user_id
            .map(UserIdClaim::into_string)
            .or(claims.sub)
            .filter(|id| !id.is_empty())
            .ok_or(AuthError::MissingClaim)?;
        let role = claims.role.ok_or(AuthError::MissingClaim)?;
        let role = role.parse().map_err(|_| AuthError::UnknownRole)?;
        Ok(Verified { identity: Identity { user_id, role }, exp: claims.exp })
    }

    /// The key that must have signed this token. A `kid` found in the JWKS
    /// decides; otherwise a fixed key that accepts the header's algorithm.
    fn key_for<'k>(&'k self, header: &Header, jwks: &'k KeySet) -> Result<&'k VerifyingKey, AuthError> {
        let kid = header.kid.as_deref().filter(|_| self.jwks);
        if let Some(key) = kid.and_then(|kid| jwks.find(kid)) {
            return match key.accepts(header.alg) {
                true => Ok(key),
                false => Err(AuthError::Algorithm),
            };
        }
        if let Some(key) = self.fixed.iter().find(|key| key.accepts(header.alg)) {
            return Ok(key);
        }
        match (self.jwks, header.alg) {
            (true, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | (false, _) => {
                Err(AuthError::Algorithm)
            }
            (true, _) => Err(AuthError::UnknownKid),
        }
    }
}

fn validation(alg: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut validation = Validation::new(alg);
    let mut required = vec!["exp"];
    validation.validate_nbf = true;
    validation.validate_aud = false;
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    if let Some(audience) = audience {
        validation.set_audience(&[audience]);
        validation.validate_aud = true;
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    // Expired means expired: publishers and this service share NTP time.
    validation.leeway = 0;
    validation
}

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::Algorithm,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => AuthError::Issuer,
            "aud" => AuthError::Audience,
            _ => AuthError::MissingClaim,
        },
        _ => AuthError::Malformed,
    }
}

/// Seconds since the Unix epoch, as `exp` counts them.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs a token for `user_id` with `role`, valid for `ttl_secs`, naming
/// `kid` in its header when given (for a key published in a JWKS).
pub fn mint(
    key: &SigningKey,
    kid: Option<&str>,
    user_id: &str,
    role: Role,
    ttl_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = now_secs();
    let claims = MintedClaims { user_id, role: role.as_str(), iat: now, exp: now.saturating_add(ttl_secs) };
    let mut header = Header::new(key.algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &key.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256(secret: &[u8], user: &str, ttl: u64) -> String {
        mint(&SigningKey::hs256(secret), None, user, Role::Seller, ttl).expect("mint")
    }

    #[test]
    fn minted_tokens_verify() {
        let token = hs256(b"k", "42", 60);
        let verified = TokenVerifier::hs256(b"k").verify(&token, &KeySet::default()).expect("valid");
        assert_eq!(verified.identity, Identity { user_id: "42".into(), role: Role::Seller });
        assert!(verified.exp > now_secs());
    }

    #[test]
    fn wrong_secret_and_garbage_are_refused() {
        let token = hs256(b"k", "42", 60);
        let verifier = TokenVerifier::hs256(b"other");
        let none = KeySet::default();
        assert_eq!(verifier.verify(&token, &none), Err(AuthError::Signature));
        assert_eq!(verifier.verify("a.b.c", &none), Err(AuthError::Malformed));
        assert_eq!(verifier.verify("", &none), Err(AuthError::Missing));
    }

    #[test]
    fn a_token_expiring_now_is_expired() {
        let token = hs256(b"k", "42", 0);
        assert_eq!(TokenVerifier::hs256(b"k").verify(&token, &KeySet::default()), Err(AuthError::Expired));
    }

    #[test]
    fn without_a_secret_hs256_is_no_algorithm_of_ours() {
        let token = hs256(b"k", "42", 60);
        let verifier = TokenVerifier::new(TrustSettings { jwks: true, ..TrustSettings::default() });
        assert_eq!(verifier.verify(&token, &KeySet::default()), Err(AuthError::Algorithm));
    }
}
