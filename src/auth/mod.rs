//! Who a client is (`jwt`: token → [`Identity`]) and what it may join (`policy`:
//! the role table). Pure functions; any thread may call them.

pub mod jwt;
pub mod policy;

pub use jwt::{AuthError, Identity, TokenVerifier};
pub use policy::{Role, UnknownRole};
