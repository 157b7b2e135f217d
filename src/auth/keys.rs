//! Keys that check and sign tokens (README, Tokens during a session). Each key carries the
//! algorithms it accepts, decided by the key itself (RSA → RS256/RS384/RS512,
//! EC P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA, a secret → HS256) and
//! never by a token's header: an RSA key cannot be made to check an HS256
//! token. Pure data; any thread may use it.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use thiserror::Error;

const RSA: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];
const P256: &[Algorithm] = &[Algorithm::ES256];
const P384: &[Algorithm] = &[Algorithm::ES384];
const ED25519: &[Algorithm] = &[Algorithm::EdDSA];
const HS256: &[Algorithm] = &[Algorithm::HS256];

/// A key that cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a PEM RSA, EC (P-256, P-384) or Ed25519 {0} key")]
    Pem(&'static str),
    #[error("a private key where the public key belongs")]
    Private,
    #[error("EC key on a curve other than P-256 or P-384")]
    Curve,
    #[error("key set: {0}")]
    Set(String),
}

/// A key that checks signatures, with the algorithms it accepts.
#[derive(Clone)]
pub struct VerifyingKey {
    key: DecodingKey,
    algorithms: &'static [Algorithm],
}

impl VerifyingKey {
    /// The `JWT_SECRET` key: HS256 only.
    pub fn hs256(secret: &[u8]) -> Self {
        Self { key: DecodingKey::from_secret(secret), algorithms: HS256 }
    }

    /// A PEM public key (`JWT_PUBLIC_KEY`); its type decides the algorithms.
    pub fn from_public_pem(pem: &[u8]) -> Result<Self, KeyError> {
        // jsonwebtoken would take an RSA private key here and then fail every
        // token: a private key in the public key's place is a mistake to name.
        if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
            return Err(KeyError::Private);
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self { key, algorithms: RSA });
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(Self { key, algorithms: ED25519 });
        }
        let key = DecodingKey::from_ec_pem(pem).map_err(|_| KeyError::Pem("public"))?;
        // The key's content is the curve point (SEC1), which only one curve accepts.
        let algorithms = curve_of_point(key.as_bytes())?;
        Ok(Self { key, algorithms })
    }

    /// A key of a JWKS. Symmetric (`oct`) keys are refused: a published set
    /// holds public keys, and a secret there would let anyone sign.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let unusable = |why: &str| KeyError::Set(why.to_owned());
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA,
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => P256,
                EllipticCurve::P384 => P384,
                _ => return Err(KeyError::Curve),
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => ED25519,
            AlgorithmParameters::OctetKeyPair(_) => return Err(unusable("OKP key that is not Ed25519")),
            AlgorithmParameters::OctetKey(_) => return Err(unusable("symmetric key")),
        };
        // A key that names its algorithm accepts only that one, if its type allows it.
        let algorithms = match jwk.common.key_algorithm {
            None => family,
            Some(named) => family
                .iter()
                .position(|alg| key_algorithm(*alg) == named)
                .map(|at| &family[at..=at])
                .ok_or_else(|| unusable("alg does not match the key type"))?,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Set(e.to_string()))?;
        Ok(Self { key, algorithms })
    }

    pub fn accepts(&self, algorithm: Algorithm) -> bool {
        self.algorithms.contains(&algorithm)
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The P-256 or P-384 algorithm of an uncompressed or compressed SEC1 point.
fn curve_of_point(point: &[u8]) -> Result<&'static [Algorithm], KeyError> {
    if p256::PublicKey::from_sec1_bytes(point).is_ok() {
        Ok(P256)
    } else if p384::PublicKey::from_sec1_bytes(point).is_ok() {
        Ok(P384)
    } else {
        Err(KeyError::Curve)
    }
}

fn key_algorithm(algorithm: Algorithm) -> KeyAlgorithm {
    match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::RS384 => KeyAlgorithm::RS384,
        Algorithm::RS512 => KeyAlgorithm::RS512,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        Algorithm::ES384 => KeyAlgorithm::ES384,
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
        Algorithm::HS256 => KeyAlgorithm::HS256,
        Algorithm::HS384 => KeyAlgorithm::HS384,
        Algorithm::HS512 => KeyAlgorithm::HS512,
        Algorithm::PS256 => KeyAlgorithm::PS256,
        Algorithm::PS384 => KeyAlgorithm::PS384,
        Algorithm::PS512 => KeyAlgorithm::PS512,
    }
}

/// The keys of a JWKS by `kid`. Each shard holds its own copy, replaced
/// whole when a fetch brings a new set.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<(String, VerifyingKey)>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(kid, _)| kid)).finish()
    }
}

impl KeySet {
    /// The usable signing keys of a JWKS document. Keys without a `kid`, for
    /// encryption, or of a type this server does not know are left out (one
    /// at a time: a provider may publish keys of other kinds beside ours); a
    /// set with none left is an error, so a bad document never replaces a
    /// good set.
    pub fn from_jwks(json: &str) -> Result<Self, KeyError> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_str(json).map_err(|e| KeyError::Set(format!("not a JWKS: {e}")))?;
        let keys: Vec<_> = document
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, VerifyingKey::from_jwk(&jwk).ok()?)))
            .collect();
        if keys.is_empty() {
            return Err(KeyError::Set("no usable signing key with a kid".to_owned()));
        }
        Ok(Self { keys })
    }

    pub fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|(id, _)| id == kid).map(|(_, key)| key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A key that signs tokens, with the algorithm its type implies.
pub struct SigningKey {
    pub(super) key: EncodingKey,
    pub(super) algorithm: Algorithm,
}

impl SigningKey {
    pub fn hs256(secret: &[u8]) -> Self {
        Self { key: EncodingKey::from_secret(secret), algorithm: Algorithm::HS256 }
    }

    /// A PEM private key (PKCS#8, or PKCS#1 for RSA): RSA → RS256, EC P-256 →
    /// ES256, P-384 → ES384, Ed25519 → EdDSA.
    pub fn from_private_pem(pem: &[u8]) -> Result<Self, KeyError> {
        if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            return Ok(Self { key, algorithm: Algorithm::RS256 });
        }
        if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            return Ok(Self { key, algorithm: Algorithm::EdDSA });
        }
        let key = EncodingKey::from_ec_pem(pem).map_err(|_| KeyError::Pem("private (PKCS#8)"))?;
        use p256::pkcs8::DecodePrivateKey;
        let algorithm = if p256::SecretKey::from_pkcs8_der(key.inner()).is_ok() {
            Algorithm::ES256
        } else if p384::SecretKey::from_pkcs8_der(key.inner()).is_ok() {
            Algorithm::ES384
        } else {
            return Err(KeyError::Curve);
        };
        Ok(Self { key, algorithm })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_no_key() {
        assert!(VerifyingKey::from_public_pem(b"not a key").is_err());
        assert!(SigningKey::from_private_pem(b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
            .is_err());
    }

    #[test]
    fn a_jwks_without_usable_keys_is_refused() {
        assert!(KeySet::from_jwks("{}").is_err());
        assert!(KeySet::from_jwks(r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#).is_err());
        let ed = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"e","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let set = KeySet::from_jwks(ed).expect("an Ed25519 key");
        assert!(set.find("e").is_some_and(|k| k.accepts(Algorithm::EdDSA) && !k.accepts(Algorithm::HS256)));
        assert!(set.find("other").is_none());
    }

    #[test]
    fn a_named_alg_narrows_the_key() {
        let rsa = r#"{"keys":[{"kty":"RSA","kid":"r","alg":"RS384","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}"#;
        let set = KeySet::from_jwks(rsa).expect("an RSA key");
        let key = set.find("r").expect("kid r");
        assert!(key.accepts(Algorithm::RS384) && !key.accepts(Algorithm::RS256));
    }
}
