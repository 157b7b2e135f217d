//! Who a client is (`jwt`: token → [`Identity`]), with which keys (`keys`:
//! public keys, JWKS sets and signing keys, each with the algorithms its type
//! allows), and what it may join (`policy`: the role table). Pure functions;
//! any thread may call them.

pub mod jwt;
pub mod keys;
pub mod policy;

pub use jwt::{AuthError, Identity, TokenVerifier, TrustSettings, Verified};
pub use keys::{KeySet, SigningKey, VerifyingKey};
pub use policy::{Role, UnknownRole};
