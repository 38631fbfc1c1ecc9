//! portcullis: composable tower layers that make an axum API secure.
//!
//! Read it top-down: [`identity`] (who the caller is, as handlers see it), [`error`] (the one
//! rejection type, rendered as RFC 9457 problem+json), then one module per layer:
//!
//! | module | layer | answers |
//! |---|---|---|
//! | [`auth`] | [`AuthLayer`] | who is calling: JWT bearer tokens, API keys, Basic |
//! | [`rbac`] | [`RbacLayer`] | what they may do: scopes, roles, permissions, route policies |
//! | [`rate_limit`] | [`RateLimitLayer`], [`LockoutLayer`] | how often: GCRA quotas, brute-force lockout |
//! | [`client_ip`] | [`ClientIpLayer`] | the real client address behind trusted proxies |
//! | [`validate`] | [`ValidateLayer`], [`Valid`] | is the request well-formed: methods, sizes, hosts; typed, validated bodies, queries and paths |
//! | [`redact`] | [`RedactLayer`] | what leaves: sensitive fields, paths and detected secrets masked in JSON responses; `Sensitive<T>` and header marking for logs |
//! | [`stack`] | [`Portcullis`] | all of the above in one layer, in the recommended order |
//! | [`audit`] | [`AuditLayer`] | what happened: one sealed, hash-chained audit event per request, security alerts, metrics |
//! | [`transport`] | [`TransportSecurityLayer`] | is the connection safe: HTTPS only, served here or behind trusted proxies; HSTS and API security headers |
//! | `oidc` (feature `oidc`) | `OidcAuthenticator` in the [`AuthLayer`] | tokens from OpenID providers: discovery, JWKS rotation, introspection, revocation |
//!
//! Every layer is secure by default and fails closed: a request it cannot judge is refused with a
//! clear 4xx problem+json response that leaks no secret, never a panic or a 5xx.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use portcullis::{Algorithm, AuthLayer, Identity};
//! use portcullis::auth::{JwtAuthenticator, JwtKey};
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let jwt = JwtAuthenticator::builder()
//!     .key(JwtKey::hmac(b"a secret of at least thirty-two bytes!!", Algorithm::HS256)?)
//!     .issuer("https://issuer.example")
//!     .audience(["items-api"])
//!     .build()?;
//!
//! async fn me(identity: Identity) -> String {
//!     identity.subject().to_owned()
//! }
//!
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .layer(AuthLayer::required().with(jwt));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "audit")]
pub mod audit;
#[cfg(feature = "auth")]
pub mod auth;
pub mod client_ip;

/// Declares the shared modules below the layers. With some layers' features off, what only
/// those layers use is unused there (every item is used with the default features); the layer
/// modules themselves are checked for dead code in every feature set.
macro_rules! shared_modules {
    ($($vis:vis mod $name:ident;)*) => {$(
        #[cfg_attr(
            not(all(
                feature = "auth-jwt",
                feature = "auth-basic",
                feature = "rbac",
                feature = "rate-limit",
                feature = "validate",
                feature = "redact",
                feature = "audit",
                feature = "transport"
            )),
            allow(dead_code, unused_imports)
        )]
        $vis mod $name;
    )*};
}

shared_modules! {
    mod decision;
    pub mod error;
    pub mod guard;
    pub mod identity;
    mod request;
}
#[cfg(feature = "oidc")]
pub mod oidc;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "rbac")]
pub mod rbac;
#[cfg(feature = "redact")]
pub mod redact;
#[cfg(feature = "redact")]
mod scrub;
pub mod stack;
#[cfg(all(feature = "test-util", feature = "auth-jwt"))]
pub mod test_util;
#[cfg(feature = "transport")]
pub mod transport;
#[cfg(feature = "validate")]
pub mod validate;

#[cfg(feature = "audit")]
pub use audit::AuditLayer;
#[cfg(feature = "auth")]
pub use auth::AuthLayer;
pub use client_ip::{ClientIp, ClientIpLayer, TrustedProxies};
pub use decision::{Decision, LayerKind};
pub use error::{
    ConfigError, Realm, Reason, Rejection, RejectionKind, RenderRejectionLayer, Scheme,
};
pub use identity::{
    AuthMethod, ClaimMapping, ClaimSource, Claims, Identity, Principal, PrincipalKind,
};
#[cfg(feature = "oidc")]
pub use oidc::{InMemoryDenyList, Introspector, Issuer, JtiDenyList, OidcAuthenticator};
#[cfg(feature = "rate-limit")]
pub use rate_limit::{KeyBy, LockoutLayer, Quota, RateLimitLayer};
#[cfg(feature = "rbac")]
pub use rbac::{PolicyRouter, RbacLayer, RouteTable};
#[cfg(feature = "redact")]
pub use redact::{RedactLayer, Redactions, Rule, Sensitive};
pub use stack::Portcullis;
#[cfg(feature = "transport")]
pub use transport::TransportSecurityLayer;
#[cfg(feature = "validate")]
pub use validate::{Valid, ValidateLayer};

/// `jsonwebtoken`'s algorithm names, re-exported so you can configure keys without depending on
/// the same version yourself.
#[cfg(feature = "auth-jwt")]
pub use jsonwebtoken::Algorithm;

// Compiles the README's examples as doctests so they cannot drift from the API (they use the
// default layers).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "default"))]
struct ReadmeDoctests;
