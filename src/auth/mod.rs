//! Authentication: who is calling.
//!
//! [`AuthLayer`] tries its [`Authenticator`]s in the order they were added. The first one that
//! finds *its* kind of credential in the request decides: it either produces an
//! [`Identity`], which is put into the request extensions for the handler, or
//! rejects the request with 401 (or 400 for a malformed `Authorization` header). A credential that
//! is present but wrong is never retried with the next authenticator, and a request that carries
//! two credentials (say a bearer token and an `X-Api-Key`) is refused with 400 rather than judged
//! by whichever authenticator comes first.
//!
//! When no authenticator finds a credential, a [`required`](AuthLayer::required) layer answers
//! 401 with one `WWW-Authenticate` challenge per accepted scheme, and an
//! [`optional`](AuthLayer::optional) layer lets the anonymous request through without an
//! identity. An `Authorization` header of a scheme no authenticator accepts is refused in both
//! modes: a client that sends credentials expects them to count.
//!
//! Built in:
//! - [`JwtAuthenticator`]: signed JWT bearer tokens with keys given in code, strict header and
//!   claim checks, and a verified-token cache that makes repeat requests almost free;
//! - [`ApiKeyAuthenticator`]: API keys from a header or `Authorization: ApiKey`, stored only as
//!   SHA-256 hashes in an [`ApiKeyStore`];
//! - [`BasicAuthenticator`]: user names with argon2 password hashes.
//!
//! Tokens are read only from the `Authorization` header: a token in the query string
//! (`?access_token=`) or in a cookie is never looked at, and no credential is ever logged.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use portcullis::auth::{AuthLayer, JwtAuthenticator, JwtKey};
//! use portcullis::{Algorithm, Identity};
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let jwt = JwtAuthenticator::builder()
//!     .key(JwtKey::hmac(b"a secret of at least thirty-two bytes!!", Algorithm::HS256)?)
//!     .issuer("https://issuer.example")
//!     .audience(["items-api"])
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/me", get(|identity: Identity| async move { identity.subject().to_owned() }))
//!     .layer(AuthLayer::required().with(jwt));
//! # Ok(())
//! # }
//! ```
//!
//! Per-route authentication works with axum's `route_layer`, and a public route can sit next to
//! protected ones behind an optional layer, reading `Option<Identity>`.

mod api_key;
#[cfg(feature = "auth-basic")]
mod basic;
#[cfg(feature = "auth-jwt")]
mod deny;
#[cfg(feature = "auth-jwt")]
pub(crate) mod jwt;
mod layer;
mod service;
#[cfg(all(feature = "auth-jwt", feature = "redis"))]
mod shared_deny;

use std::future::Future;
use std::pin::Pin;

use http::HeaderName;
use http::request::Parts;

use crate::error::{Rejection, Scheme};
use crate::identity::Identity;

pub use api_key::{
    ApiKey, ApiKeyAuthenticator, ApiKeyDenyList, ApiKeyGrant, ApiKeyHash, ApiKeyStore,
    InMemoryKeyStore,
};
#[cfg(feature = "auth-basic")]
pub use basic::{BasicAuthenticator, BasicAuthenticatorBuilder, BasicUser, hash_password};
#[cfg(feature = "auth-jwt")]
pub use deny::{InMemoryDenyList, JtiDenyList};
#[cfg(feature = "auth-jwt")]
pub use jwt::{JwtAuthenticator, JwtAuthenticatorBuilder, JwtKey};
pub use layer::AuthLayer;
pub use service::{Auth, ResponseFuture};
#[cfg(all(feature = "auth-jwt", feature = "redis"))]
pub use shared_deny::{RedisDenyList, RedisDenyListBuilder, RevokeError};

/// A boxed future for authenticators that must wait (for a password hash, a database, a network
/// call).
pub type BoxAuthFuture = Pin<Box<dyn Future<Output = Result<Identity, Rejection>> + Send>>;

/// What an [`Authenticator`] made of a request.
pub enum Authentication {
    /// The request carries no credential of this authenticator's kind: ask the next one.
    NotPresent,
    /// The credential is valid.
    Authenticated(Identity),
    /// The credential is present and not valid: the request is refused.
    Rejected(Rejection),
    /// The credential is present and is being checked asynchronously. The future must own what it
    /// needs from the request.
    Pending(BoxAuthFuture),
}

/// One way of proving who you are.
///
/// Implement it for your own credentials; return [`Authentication::NotPresent`] quickly when the
/// request does not carry your kind of credential, so that the next authenticator gets its turn.
/// Rejections you return should not say more than needed: never put a credential in them.
pub trait Authenticator: Send + Sync + 'static {
    /// The scheme named in `WWW-Authenticate` challenges for this authenticator.
    fn scheme(&self) -> Scheme;

    /// A header other than `Authorization` that carries this authenticator's credential (like
    /// `X-Api-Key`). The layer refuses requests that carry more than one credential, whatever
    /// the order of authenticators, and needs to know where credentials can be.
    fn credential_header(&self) -> Option<&HeaderName> {
        None
    }

    /// Looks at the request's credentials.
    fn authenticate(&self, request: &Parts) -> Authentication;
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotPresent => f.write_str("NotPresent"),
            Self::Authenticated(identity) => {
                f.debug_tuple("Authenticated").field(identity).finish()
            }
            Self::Rejected(rejection) => f.debug_tuple("Rejected").field(rejection).finish(),
            Self::Pending(_) => f.write_str("Pending"),
        }
    }
}
