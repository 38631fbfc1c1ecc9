//! Helpers for your own tests (feature `test-util`): an identity provider in a line, whose
//! tokens the real stack accepts, so a test sends a request "as" a user through every layer,
//! the way Spring's `jwt()` request post-processor does.
//!
//! Never configure a [`TestIssuer`] outside tests: its key is made at random in the process,
//! and whoever holds the issuer mints any token.
//!
//! ```
//! use axum::{Router, routing::get};
//! use portcullis::test_util::TestIssuer;
//! use portcullis::rbac::{RbacLayer, require_scope};
//! use portcullis::{AuthLayer, Identity};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = TestIssuer::new();
//! let app: Router = Router::new()
//!     .route("/me", get(|identity: Identity| async move { identity.subject().to_owned() }))
//!     .layer(RbacLayer::new(require_scope("notes:read")))
//!     .layer(AuthLayer::required().with(issuer.authenticator()?));
//!
//! let request = axum::http::Request::get("/me")
//!     .header("authorization", issuer.token("alice").scopes(["notes:read"]).bearer())
//!     .body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Map, Value, json};

use crate::Algorithm;
use crate::auth::{JwtAuthenticator, JwtAuthenticatorBuilder, JwtKey};
use crate::error::ConfigError;

/// An issuer of HS256 tokens under a random key, and the authenticator that accepts them.
#[derive(Clone)]
pub struct TestIssuer {
    secret: Vec<u8>,
    issuer: String,
    audience: String,
}

impl TestIssuer {
    /// Issuer `https://issuer.test`, audience `test-api`, a random 32-byte key.
    pub fn new() -> Self {
        let mut secret = vec![0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            // Tests only: a fixed key is no weaker than the issuer itself.
            secret = b"portcullis test issuer fixed key!".to_vec();
        }
        Self {
            secret,
            issuer: "https://issuer.test".to_owned(),
            audience: "test-api".to_owned(),
        }
    }

    /// Another `iss`.
    #[must_use]
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = issuer.to_owned();
        self
    }

    /// Another `aud`.
    #[must_use]
    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = audience.to_owned();
        self
    }

    /// A [`JwtAuthenticator`] that accepts this issuer's tokens (and nothing else).
    pub fn authenticator(&self) -> Result<JwtAuthenticator, ConfigError> {
        self.authenticator_builder().build()
    }

    /// The builder of [`authenticator`](Self::authenticator), to change what it reads (claim
    /// mapping, `typ`, ...) the way your service configures its own.
    pub fn authenticator_builder(&self) -> JwtAuthenticatorBuilder {
        // The key is 32 random bytes, which `JwtKey::hmac` always accepts.
        let key = JwtKey::hmac(&self.secret, Algorithm::HS256);
        let builder = JwtAuthenticator::builder()
            .issuer(self.issuer.clone())
            .audience([self.audience.clone()]);
        match key {
            Ok(key) => builder.key(key),
            Err(_) => builder,
        }
    }

    /// A token for `subject`, valid for an hour; refine it, then [`mint`](TestToken::mint) or
    /// [`bearer`](TestToken::bearer).
    pub fn token(&self, subject: &str) -> TestToken<'_> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(self.audience));
        claims.insert("sub".into(), json!(subject));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 3600));
        TestToken {
            issuer: self,
            claims,
        }
    }
}

impl Default for TestIssuer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The claims of a token about to be minted by a [`TestIssuer`].
#[derive(Debug)]
#[must_use]
pub struct TestToken<'a> {
    issuer: &'a TestIssuer,
    claims: Map<String, Value>,
}

impl TestToken<'_> {
    /// The `scope` claim (space-separated, RFC 8693).
    pub fn scopes<I: IntoIterator<Item = T>, T: AsRef<str>>(self, scopes: I) -> Self {
        let joined: Vec<String> = scopes.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self.claim("scope", json!(joined.join(" ")))
    }

    /// The `roles` claim.
    pub fn roles<I: IntoIterator<Item = T>, T: AsRef<str>>(self, roles: I) -> Self {
        let roles: Vec<String> = roles.into_iter().map(|r| r.as_ref().to_owned()).collect();
        self.claim("roles", json!(roles))
    }

    /// Any claim (replacing one of the same name, the registered ones included).
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.to_owned(), value);
        self
    }

    /// Expires `after` from now (a zero or past expiry makes an expired token, for tests of
    /// refusals).
    pub fn expires_in(self, after: Duration) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.claim("exp", json!(now + after.as_secs()))
    }

    /// The signed token.
    pub fn mint(self) -> String {
        let key = EncodingKey::from_secret(&self.issuer.secret);
        // Encoding a JSON object with an HMAC key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &self.claims, &key).unwrap_or_default()
    }

    /// `Bearer <token>`, for the `Authorization` header.
    pub fn bearer(self) -> HeaderValue {
        let value = format!("Bearer {}", self.mint());
        // A JWT is base64url and dots: always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}
