//! Access tokens: HMAC-signed JWTs (HS256) whose claims say what their bearer may do — publish to
//! channels matching some patterns, subscribe to others, or everything (`admin`) — until they
//! expire. The server checks them ([`Verifier`]); `trickle token` mints them ([`mint`]).
//!
//! A pattern is a channel name (`cam-1`), a prefix ending in `*` (`cam-*`), or `*` for any channel.
//! `admin` allows every action on every channel and the changefeed (`_changes`), which nothing
//! else allows.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Shortest secret accepted: HS256 with fewer bytes of key is guessable.
pub const MIN_SECRET_BYTES: usize = 16;

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `POST` and `DELETE` of a channel or segment.
    Publish,
    /// `GET` of a segment or of `/next`.
    Subscribe,
    /// Anything about the server as a whole, such as the changefeed.
    Admin,
}

/// The claims of a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Channel patterns the bearer may publish to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Channel patterns the bearer may subscribe to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
    /// Everything, the changefeed included.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

impl Claims {
    /// Whether these claims allow `action` on channel `name`.
    pub fn allows(&self, action: Action, name: &str) -> bool {
        if self.admin {
            return true;
        }
        let patterns = match action {
            Action::Publish => &self.publish,
            Action::Subscribe => &self.subscribe,
            Action::Admin => return false,
        };
        patterns.iter().any(|p| pattern_matches(p, name))
    }
}

/// `*` matches any name, `prefix*` names starting with `prefix`, anything else only itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Why a token was refused. The server answers every one of them with the same `401`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the secret must be at least {MIN_SECRET_BYTES} bytes long")]
    ShortSecret,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// The shared secret tokens are signed with.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Secret, AuthError> {
        let bytes = bytes.as_ref();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(AuthError::ShortSecret);
        }
        Ok(Secret(bytes.into()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Checks tokens signed with one secret.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier")
    }
}

impl Verifier {
    pub fn new(secret: &Secret) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        Verifier {
            key: DecodingKey::from_secret(&secret.0),
            validation,
        }
    }

    /// The claims of a valid, unexpired token signed with our secret.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        Ok(jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?.claims)
    }
}

/// A token with `claims`, signed with `secret`.
pub fn mint(secret: &Secret, claims: &Claims) -> Result<String, AuthError> {
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&secret.0),
    )?)
}

/// The `exp` of a token valid for `ttl` from now.
pub fn expiry_in(ttl: Duration) -> u64 {
    (SystemTime::now() + ttl)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a path segment has the shape of a JWT (three base64url parts joined by dots), so that
/// `/{token}/{channel}/{seq}` can be told from `/{channel}/{seq}`.
pub fn looks_like_token(segment: &str) -> bool {
    let base64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    segment.split('.').count() == 3 && segment.split('.').all(base64url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("cam-*", "cam-1"));
        assert!(pattern_matches("cam-*", "cam-"));
        assert!(!pattern_matches("cam-*", "cam"));
        assert!(pattern_matches("cam-1", "cam-1"));
        assert!(!pattern_matches("cam-1", "cam-10"));
    }

    #[test]
    fn a_minted_token_verifies_and_scopes() {
        let claims = Claims {
            exp: expiry_in(Duration::from_secs(60)),
            publish: vec!["cam-*".into()],
            subscribe: vec!["*".into()],
            admin: false,
        };
        let token = mint(&secret(), &claims).unwrap();
        assert!(looks_like_token(&token));
        let got = Verifier::new(&secret()).verify(&token).unwrap();
        assert_eq!(got, claims);
        assert!(got.allows(Action::Publish, "cam-7"));
        assert!(!got.allows(Action::Publish, "other"));
        assert!(got.allows(Action::Subscribe, "other"));
        assert!(!got.allows(Action::Admin, "_changes"));
        let admin = Claims {
            admin: true,
            ..Claims::default()
        };
        assert!(admin.allows(Action::Admin, "_changes"));
        assert!(admin.allows(Action::Publish, "x"));
    }

    #[test]
    fn expired_foreign_and_malformed_tokens_are_refused() {
        let verifier = Verifier::new(&secret());
        let expired = mint(
            &secret(),
            &Claims {
                exp: 1,
                admin: true,
                ..Claims::default()
            },
        )
        .unwrap();
        assert!(verifier.verify(&expired).is_err());
        let other = Secret::new("another secret, long enough").unwrap();
        let foreign = mint(
            &other,
            &Claims {
                exp: expiry_in(Duration::from_secs(60)),
                admin: true,
                ..Claims::default()
            },
        )
        .unwrap();
        assert!(verifier.verify(&foreign).is_err());
        assert!(verifier.verify("a.b.c").is_err());
        assert!(Secret::new("short").is_err());
        assert!(!looks_like_token("cam-1"));
        assert!(!looks_like_token("a.b"));
        assert!(!looks_like_token("a..c"));
    }
}
