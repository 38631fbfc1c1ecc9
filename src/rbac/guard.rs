//! Typed extractor guards: the requirement is visible in the handler's signature.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use http::request::Parts;

use super::policy::Miss;
use super::service::HideDetails;
use crate::decision::LayerKind;
use crate::error::Rejection;
use crate::identity::Identity;

/// A scope known at compile time; declare one with [`scope!`](crate::scope).
pub trait Scope: Send + Sync + 'static {
    /// The scope string.
    const NAME: &'static str;
}

/// A role known at compile time; declare one with [`role!`](crate::role).
pub trait Role: Send + Sync + 'static {
    /// The role name.
    const NAME: &'static str;
}

/// Extracts only when the caller has scope `S`: 401 when anonymous, 403 `insufficient_scope`
/// otherwise, the same rejection as a [`require_scope`](super::require_scope) policy.
///
/// ```
/// use axum::{Router, routing::post};
/// use portcullis::rbac::RequireScope;
///
/// portcullis::scope!(pub ItemsWrite = "items:write");
///
/// async fn create(_: RequireScope<ItemsWrite>) -> &'static str {
///     "created"
/// }
///
/// let app: Router = Router::new().route("/items", post(create));
/// ```
pub struct RequireScope<S>(PhantomData<fn() -> S>);

/// Extracts only when the caller has role `R`: 401 when anonymous, 403 otherwise.
pub struct RequireRole<R>(PhantomData<fn() -> R>);

impl<S> std::fmt::Debug for RequireScope<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequireScope")
    }
}

impl<R> std::fmt::Debug for RequireRole<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequireRole")
    }
}

impl<S: Scope, St: Send + Sync> FromRequestParts<St> for RequireScope<S> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        let miss = match parts.extensions.get::<Identity>() {
            None => Miss::Anonymous,
            Some(identity) if identity.has_scope(S::NAME) => return Ok(Self(PhantomData)),
            Some(_) => Miss::Scope(S::NAME.into()),
        };
        let hide = parts.extensions.get::<HideDetails>().is_some();
        Err(miss
            .into_rejection(&parts.extensions, hide)
            .decided_by(LayerKind::Rbac))
    }
}

impl<R: Role, St: Send + Sync> FromRequestParts<St> for RequireRole<R> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        let miss = match parts.extensions.get::<Identity>() {
            None => Miss::Anonymous,
            Some(identity) if identity.has_role(R::NAME) => return Ok(Self(PhantomData)),
            Some(_) => Miss::Requirement(format!("any role of [{}]", R::NAME).into()),
        };
        let hide = parts.extensions.get::<HideDetails>().is_some();
        Err(miss
            .into_rejection(&parts.extensions, hide)
            .decided_by(LayerKind::Rbac))
    }
}

/// Declares a [`Scope`] marker type: `portcullis::scope!(pub ItemsWrite = "items:write");`
#[macro_export]
macro_rules! scope {
    ($(#[$meta:meta])* $vis:vis $name:ident = $value:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;
        impl $crate::rbac::Scope for $name {
            const NAME: &'static str = $value;
        }
    };
}

/// Declares a [`Role`] marker type: `portcullis::role!(pub Admin = "admin");`
#[macro_export]
macro_rules! role {
    ($(#[$meta:meta])* $vis:vis $name:ident = $value:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;
        impl $crate::rbac::Role for $name {
            const NAME: &'static str = $value;
        }
    };
}
