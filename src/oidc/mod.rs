//! OpenID Connect: issuers from discovery with self-refreshing keys, token introspection and
//! revocation (feature `oidc`).
//!
//! Point portcullis at your identity provider (Keycloak, Auth0, Okta, Entra ID, Google, Cognito,
//! any certified OpenID provider) by its issuer URL, and it keeps working through key rotation and
//! provider outages:
//!
//! - [`Issuer`]: OpenID discovery (the document must name exactly this issuer), the `jwks_uri`
//!   over HTTPS with timeouts and a size cap, keys refreshed in the background
//!   (`Cache-Control: max-age` within bounds), one single-flight refetch per cool-down for an
//!   unknown `kid`, the last good keys kept while the provider is down. Every key goes through
//!   the same checks as [`JwtKey::jwk`](crate::auth::JwtKey::jwk) (`use`, `alg`, `kty`, curve),
//!   and each issuer verifies with its own [`JwtAuthenticator`](crate::auth::JwtAuthenticator).
//! - [`Introspector`]: RFC 7662 introspection for opaque tokens, cached.
//! - [`OidcAuthenticator`]: the [`Authenticator`] for the `AuthLayer`, holding one or more
//!   issuers, optionally an introspector and a [`JtiDenyList`].
//!
//! A JWKS or introspection failure never becomes a 5xx: the request gets 401 `invalid_token` and
//! the failure is logged with `tracing`.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use portcullis::oidc::{InMemoryDenyList, Issuer, OidcAuthenticator};
//! use portcullis::{Algorithm, AuthLayer, ClaimMapping, Identity};
//!
//! # async fn run() -> Result<(), portcullis::ConfigError> {
//! let keycloak = Issuer::builder("https://sso.example.com/realms/shop")
//!     .audience(["items-api"])
//!     .algorithms([Algorithm::RS256, Algorithm::ES256])
//!     .typ(["at+jwt"]) // RFC 9068 access tokens only
//!     .claim_mapping(ClaimMapping::default().roles_from(["/realm_access/roles"]))
//!     .build()
//!     .await?;
//! let opaque = keycloak
//!     .introspector("items-api", "client-secret")?
//!     .audience(["items-api"])
//!     .build()?;
//! let oidc = OidcAuthenticator::builder()
//!     .issuer(keycloak)
//!     .introspection(opaque)
//!     .deny_list(InMemoryDenyList::new(100_000))
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/me", get(|id: Identity| async move { id.subject().to_owned() }))
//!     .layer(AuthLayer::required().with(oidc));
//! # Ok(())
//! # }
//! ```
//!
//! # Which token goes where
//!
//! A bearer token made of three base64url segments is a JWT: its unverified `iss` (read from a
//! size-bounded payload and used for nothing else) picks the issuer whose keys, audience,
//! algorithms and claim mapping check it; a JWT naming no configured issuer is refused. Any other
//! token goes to the introspector, or is refused when there is none. A token from issuer A is
//! never checked with B's keys, and B's audience never admits it.

mod http;
mod introspection;
mod issuer;
mod jwks;
mod presets;

use std::fmt;
use std::sync::Arc;

use ::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use crate::auth::{InMemoryDenyList, JtiDenyList};
pub use introspection::{Introspector, IntrospectorBuilder};
pub use issuer::{Issuer, IssuerBuilder};

use crate::auth::jwt::token_digest;
use crate::auth::{Authentication, Authenticator};
use crate::error::Reason;
use crate::error::{ConfigError, Rejection, RejectionKind, Scheme};
use crate::identity::Identity;
use crate::request::credential;

/// Larger tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

pub(crate) fn invalid(reason: Reason, detail: &'static str) -> Rejection {
    Rejection::new(RejectionKind::InvalidToken)
        .with_reason(reason)
        .with_detail(detail)
        .with_challenge(Scheme::Bearer)
}

/// Bearer tokens from one or more OpenID providers (JWTs) and, optionally, opaque tokens by
/// introspection. See the [module documentation](self) for how a token finds its checker.
#[derive(Clone)]
pub struct OidcAuthenticator {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: Vec<Issuer>,
    introspector: Option<Introspector>,
    deny: Option<Arc<dyn JtiDenyList>>,
}

impl OidcAuthenticator {
    /// Starts the configuration.
    pub fn builder() -> OidcAuthenticatorBuilder {
        OidcAuthenticatorBuilder {
            issuers: Vec::new(),
            introspector: None,
            deny: None,
        }
    }

    /// Checks one bearer token (without `Bearer `), refetching the issuer's keys once if the
    /// token names an unknown `kid` and the cool-down allows it.
    pub async fn verify(&self, token: &str) -> Result<Identity, Rejection> {
        match self.authenticate_token(token) {
            Authentication::Authenticated(identity) => Ok(identity),
            Authentication::Rejected(rejection) => Err(rejection),
            Authentication::Pending(future) => future.await,
            Authentication::NotPresent => {
                Err(invalid(Reason::Malformed, "The access token is malformed."))
            }
        }
    }

    fn authenticate_token(&self, token: &str) -> Authentication {
        if token.len() > MAX_TOKEN_BYTES {
            return Authentication::Rejected(invalid(
                Reason::TooLarge,
                "The access token is too large.",
            ));
        }
        if !looks_like_jwt(token) {
            return match &self.inner.introspector {
                Some(introspector) => self.deny_pending(introspector.authenticate_token(token)),
                None => Authentication::Rejected(invalid(
                    Reason::Malformed,
                    "The access token is malformed.",
                )),
            };
        }
        // A token verified before is found by its digest in its issuer's cache, without
        // decoding its payload to find the issuer.
        let digest = self
            .inner
            .issuers
            .iter()
            .any(|issuer| issuer.jwks().jwt().caches())
            .then(|| token_digest(token));
        if let Some(digest) = &digest {
            for issuer in &self.inner.issuers {
                match issuer.jwks().jwt().cached(digest) {
                    None => {}
                    Some(Ok(identity)) => return self.deny_checked(identity),
                    Some(Err(rejection)) => return Authentication::Rejected(rejection),
                }
            }
        }
        let Some(issuer) = unverified_issuer(token)
            .and_then(|iss| self.inner.issuers.iter().find(|i| i.accepts(&iss)))
        else {
            return Authentication::Rejected(invalid(
                Reason::BadIssuer,
                "The access token was issued by an untrusted issuer.",
            ));
        };
        let generation = issuer.jwks().generation();
        match issuer
            .jwks()
            .jwt()
            .verify_with_digest(token, digest.as_ref())
        {
            Ok(identity) => self.deny_checked(identity),
            Err(rejection) if rejection.reason() == Reason::UnknownKid => {
                match issuer.jwks().refresh_since(generation) {
                    // The cool-down forbids another fetch: fail closed.
                    None => Authentication::Rejected(rejection),
                    Some(refresh) => {
                        let issuer = issuer.clone();
                        let token = token.to_owned();
                        let this = self.clone();
                        Authentication::Pending(Box::pin(async move {
                            refresh.await;
                            let identity = issuer.verify(&token)?;
                            this.check_deny(identity)
                        }))
                    }
                }
            }
            Err(rejection) => Authentication::Rejected(rejection),
        }
    }

    fn check_deny(&self, identity: Identity) -> Result<Identity, Rejection> {
        if let Some(deny) = &self.inner.deny
            && let Some(jti) = identity.claim("jti").and_then(|v| v.as_str())
            && deny.is_denied(identity.issuer(), jti)
        {
            return Err(invalid(
                Reason::Revoked,
                "The access token has been revoked.",
            ));
        }
        Ok(identity)
    }

    fn deny_checked(&self, identity: Identity) -> Authentication {
        match self.check_deny(identity) {
            Ok(identity) => Authentication::Authenticated(identity),
            Err(rejection) => Authentication::Rejected(rejection),
        }
    }

    fn deny_pending(&self, authentication: Authentication) -> Authentication {
        match authentication {
            Authentication::Pending(future) if self.inner.deny.is_some() => {
                let this = self.clone();
                Authentication::Pending(Box::pin(async move { this.check_deny(future.await?) }))
            }
            Authentication::Authenticated(identity) => self.deny_checked(identity),
            other => other,
        }
    }
}

impl Authenticator for OidcAuthenticator {
    fn scheme(&self) -> Scheme {
        Scheme::Bearer
    }

    fn authenticate(&self, request: &Parts) -> Authentication {
        match credential::credentials(&request.headers, "Bearer") {
            None => Authentication::NotPresent,
            Some(token) => self.authenticate_token(token),
        }
    }
}

impl fmt::Debug for OidcAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcAuthenticator")
            .field("issuers", &self.inner.issuers)
            .field("introspector", &self.inner.introspector)
            .field("deny_list", &self.inner.deny.is_some())
            .finish()
    }
}

/// Three non-empty segments of base64url characters.
fn looks_like_jwt(token: &str) -> bool {
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        if segment.is_empty()
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    segments == 3
}

/// The `iss` of a JWT payload, unverified: only used to pick the key set, which then verifies
/// the token (including `iss` itself). The caller bounds the token size.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Peek>(&bytes).ok()?.iss
}

/// Configures an [`OidcAuthenticator`].
#[must_use]
pub struct OidcAuthenticatorBuilder {
    issuers: Vec<Issuer>,
    introspector: Option<Introspector>,
    deny: Option<Arc<dyn JtiDenyList>>,
}

impl fmt::Debug for OidcAuthenticatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcAuthenticatorBuilder")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

impl OidcAuthenticatorBuilder {
    /// Trusts JWTs from this issuer (each issuer with its own audience, algorithms and mapping).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Checks tokens that are not JWTs by introspection.
    pub fn introspection(mut self, introspector: Introspector) -> Self {
        self.introspector = Some(introspector);
        self
    }

    /// Refuses tokens whose `jti` this list denies (consulted on every request). Pass an `Arc`
    /// of the list and keep a clone of it to revoke tokens at run time.
    pub fn deny_list(mut self, list: impl JtiDenyList) -> Self {
        self.deny = Some(Arc::new(list));
        self
    }

    /// Like [`deny_list`](Self::deny_list), which now takes an `Arc` too.
    #[deprecated(since = "0.2.0", note = "use `deny_list` with an `Arc` of the list")]
    pub fn shared_deny_list(mut self, list: Arc<dyn JtiDenyList>) -> Self {
        self.deny = Some(list);
        self
    }

    /// Checks the configuration: at least one issuer or an introspector, no issuer twice.
    pub fn build(self) -> Result<OidcAuthenticator, ConfigError> {
        if self.issuers.is_empty() && self.introspector.is_none() {
            return Err(ConfigError::new(
                "an OidcAuthenticator needs an issuer or an introspector",
            ));
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            // Two issuers accepting one `iss` would leave routing to the order of the list.
            if self.issuers[..i]
                .iter()
                .any(|o| issuer.accepted().issuers.keys().any(|iss| o.accepts(iss)))
            {
                return Err(ConfigError::new(format!(
                    "issuer {:?} is configured twice",
                    issuer.issuer()
                )));
            }
        }
        Ok(OidcAuthenticator {
            inner: Arc::new(Inner {
                issuers: self.issuers,
                introspector: self.introspector,
                deny: self.deny,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(
            "gR8duaubaG_45jeDGa8-rvTOCa0o6B7iskm2uqpRTgB"
        ));
        assert!(!looks_like_jwt("a.b+.c"));
    }

    #[test]
    fn unverified_issuer_is_read_and_nothing_else() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://a.example","sub":1}"#);
        let token = format!("e30.{payload}.sig");
        assert_eq!(
            unverified_issuer(&token).as_deref(),
            Some("https://a.example")
        );
        let duplicate = URL_SAFE_NO_PAD.encode(br#"{"iss":"a","iss":"b"}"#);
        assert_eq!(unverified_issuer(&format!("e30.{duplicate}.sig")), None);
        assert_eq!(unverified_issuer("e30.!!!.sig"), None);
    }

    #[test]
    fn max_age_parsing() {
        let mut headers = ::http::HeaderMap::new();
        headers.insert(
            "cache-control",
            "public, max-age=300, must-revalidate".parse().unwrap(),
        );
        assert_eq!(
            http::max_age(&headers),
            Some(std::time::Duration::from_secs(300))
        );
        headers.insert("cache-control", "no-store".parse().unwrap());
        assert_eq!(http::max_age(&headers), Some(std::time::Duration::ZERO));
        headers.clear();
        assert_eq!(http::max_age(&headers), None);
    }

    #[test]
    fn deny_list_is_bounded() {
        let list = InMemoryDenyList::new(2);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(list.deny(Some("i"), "1", later));
        assert!(list.deny(Some("i"), "2", later));
        assert!(!list.deny(Some("i"), "3", later));
        assert!(list.is_denied(Some("i"), "1"));
        assert!(!list.is_denied(Some("j"), "1"));
        assert!(!list.is_denied(Some("i"), "3"));
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        let expiring = InMemoryDenyList::new(1);
        assert!(expiring.deny(None, "old", past));
        assert!(!expiring.is_denied(None, "old"));
        assert!(expiring.deny(None, "new", later)); // the expired entry made room
    }
}
