//! Properties of the token check (README, Client protocol) through its public entry
//! point, `TokenVerifier::verify`: a mutated token is refused or means the
//! same, claims of every shape are judged as README says, other algorithms
//! and any string are refused, and nothing panics. Case counts are
//! proptest's (`PROPTEST_CASES`); `tests/fuzz.sh jwt` runs them longer.

mod support;

use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use realtime::auth::{AuthError, Identity, KeySet, Role, TokenVerifier, TrustSettings};
use serde_json::{json, Map, Value};
use support::{b64url, mint, mint_alg, now_secs, token, unsigned_token, SECRET};

/// The check of an HS256-only deployment (no public key, no JWKS).
fn verify(token: &str) -> Result<Identity, AuthError> {
    let settings = TrustSettings {
        secret: Some(SECRET.as_bytes()),
        public_key: None,
        jwks: false,
        issuer: None,
        audience: None,
    };
    TokenVerifier::new(settings).verify(token, &KeySet::default()).map(|verified| verified.identity)
}

/// One edit of a token's text.
#[derive(Debug, Clone)]
enum Mutation {
    Replace { at: usize, with: u8 },
    Insert { at: usize, with: u8 },
    Delete { at: usize },
    Truncate { at: usize },
    SwapParts { a: usize, b: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Base64url's alphabet, the separator and a few bytes it never holds.
    let byte = prop_oneof![
        prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()),
        prop::sample::select(b"./+= \x00%".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, with)| Mutation::Replace { at, with }),
        (any::<usize>(), byte).prop_map(|(at, with)| Mutation::Insert { at, with }),
        any::<usize>().prop_map(|at| Mutation::Delete { at }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (0..3usize, 0..3usize).prop_map(|(a, b)| Mutation::SwapParts { a, b }),
    ]
}

fn mutate(token: &str, m: &Mutation) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let len = bytes.len();
    if len == 0 && !matches!(m, Mutation::Insert { .. }) {
        return String::new();
    }
    match *m {
        Mutation::Replace { at, with } => bytes[at % len] = with,
        Mutation::Insert { at, with } => bytes.insert(at % (len + 1), with),
        Mutation::Delete { at } => {
            bytes.remove(at % len);
        }
        Mutation::Truncate { at } => bytes.truncate(at % len),
        Mutation::SwapParts { a, b } => {
            let mut parts: Vec<&str> = token.split('.').collect();
            let n = parts.len();
            parts.swap(a % n, b % n);
            return parts.join(".");
        }
    }
    // Every byte used is ASCII, so the text stays UTF-8.
    String::from_utf8(bytes).expect("ASCII edits keep UTF-8")
}

/// A claim value of any shape, biased to the ones that matter.
fn claim(typical: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    let odd = prop_oneof![
        Just(Value::Null),
        Just(json!("")),
        any::<bool>().prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,6}".prop_map(Value::from),
        Just(json!([1])),
        Just(json!({"a": 1})),
    ];
    prop::option::weighted(0.9, prop_oneof![3 => typical, 1 => odd])
}

fn claims() -> impl Strategy<Value = Value> {
    let now = now_secs() as i64;
    let user = prop_oneof!["[0-9a-z]{1,8}".prop_map(Value::from), any::<u64>().prop_map(Value::from)];
    let role = prop::sample::select(vec!["admin", "seller", "client", "delivery", "Admin", "root"])
        .prop_map(Value::from);
    let exp = prop_oneof![(now + 60..now + 86_400).prop_map(Value::from), (0..now).prop_map(Value::from)];
    (claim(user.clone()), claim(user), claim(role), claim(exp)).prop_map(|(user, sub, role, exp)| {
        let fields = [("userId", user), ("sub", sub), ("role", role), ("exp", exp)];
        Value::Object(fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect::<Map<_, _>>())
    })
}

/// README's Client protocol section on claims: who the token names, or `None` when it must be refused.
fn expected_identity(claims: &Value) -> Option<Identity> {
    let exp = claims.get("exp")?.as_u64()?;
    if exp <= now_secs() {
        return None;
    }
    let user = match claims.get("userId").filter(|v| !v.is_null()) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(_) => return None,
        None => match claims.get("sub").filter(|v| !v.is_null()) {
            Some(Value::String(s)) => s.clone(),
            _ => return None,
        },
    };
    // A `sub` of the wrong type makes the claims unreadable even beside a `userId`.
    if claims.get("sub").is_some_and(|s| !s.is_null() && !s.is_string()) || user.is_empty() {
        return None;
    }
    let role = claims.get("role")?.as_str()?.parse::<Role>().ok()?;
    Some(Identity { user_id: user, role })
}

proptest! {
    #[test]
    fn a_mutated_token_is_refused_or_means_the_same(
        user in "[0-9a-z]{1,12}",
        role in prop::sample::select(vec!["admin", "seller", "client", "delivery"]),
        edits in prop::collection::vec(mutation(), 1..4),
    ) {
        let original = token(SECRET, &user, role);
        let identity = verify(&original).expect("the unmutated token verifies");
        let mutated = edits.iter().fold(original.clone(), |t, m| mutate(&t, m));
        if let Ok(seen) = verify(&mutated) {
            prop_assert_eq!(seen, identity, "{} became {}", original, mutated);
        }
    }

    #[test]
    fn claims_are_judged_as_the_spec_says(claims in claims()) {
        let verdict = verify(&mint(SECRET, &claims)).ok();
        prop_assert_eq!(verdict, expected_identity(&claims), "{}", claims);
    }

    #[test]
    fn other_algorithms_and_other_secrets_are_refused(
        claims in claims(),
        alg in prop::sample::select(vec![Algorithm::HS384, Algorithm::HS512]),
        secret in ".{0,12}",
    ) {
        prop_assert!(verify(&mint_alg(alg, SECRET, &claims)).is_err());
        prop_assert!(verify(&unsigned_token(&claims)).is_err());
        if secret != SECRET {
            prop_assert!(verify(&mint(&secret, &claims)).is_err());
        }
    }

    #[test]
    fn any_text_is_refused(text in prop_oneof![
        ".{0,64}",
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}",
        prop::collection::vec(".{0,32}", 3).prop_map(|p| p.iter().map(|s| b64url(s.as_bytes())).collect::<Vec<_>>().join(".")),
    ]) {
        prop_assert!(verify(&text).is_err());
    }
}
