//! The one service every guarding layer runs as.
//!
//! [`AuthLayer`](crate::AuthLayer), [`RbacLayer`](crate::RbacLayer),
//! [`RateLimitLayer`](crate::RateLimitLayer), [`LockoutLayer`](crate::rate_limit::LockoutLayer),
//! [`ValidateLayer`](crate::ValidateLayer),
//! [`TransportSecurityLayer`](crate::TransportSecurityLayer) and
//! [`ClientIpLayer`](crate::client_ip::ClientIpLayer) are configuration plus a check: a decision
//! on the request (let it through, refuse it, or wait for a backend first) and a step on the
//! response (headers, extensions, counting). [`Guard`] runs any of them; its [`ResponseFuture`]
//! is the one response future. Each layer's module names both by alias (`Auth<S>`,
//! `auth::ResponseFuture<S, B>`, ...), so you rarely write `Guard` yourself.
//!
//! Every refusal is a [`Rejection`] rendered as problem+json, carrying a
//! [`Decision`](crate::Decision) with the refusing layer's [`LayerKind`].

mod chain;
mod future;
mod service;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::Response;
use http::request::Parts;

use crate::decision::LayerKind;
use crate::error::Rejection;

// `Guard` and `ResponseFuture` are public so each layer can name its service by alias; their
// bound, `Check`, stays crate-private on purpose (the `private_bounds` allowances in both
// files): users configure layers, they do not write checks.
pub(crate) use chain::Chain;
#[allow(unused_imports)] // Used only when a layer's feature is off.
pub(crate) use chain::Disabled;
pub use future::ResponseFuture;
pub use service::Guard;

/// What a check decided on the request.
pub(crate) enum Verdict<A, D> {
    /// Call the inner service; `A` is handed to [`Check::finish`] with its response.
    Allow(A),
    /// Answer without calling the inner service.
    Deny(Denial),
    /// Decide when this future resolves (a network backend, a remote key set); then
    /// [`Check::resume`] decides.
    Defer(D),
}

/// An answer in place of the inner service's.
pub(crate) enum Denial {
    /// A refusal: rendered as problem+json, with the checking layer's [`Decision`](crate::Decision).
    Refuse(Rejection),
    /// A ready answer that is no refusal body (a redirect); it carries its own `Decision`.
    Answer(Box<Response<Bytes>>),
}

impl<A, D> From<Result<A, Denial>> for Verdict<A, D> {
    fn from(result: Result<A, Denial>) -> Self {
        match result {
            Ok(admit) => Self::Allow(admit),
            Err(denial) => Self::Deny(denial),
        }
    }
}

impl From<Rejection> for Denial {
    fn from(rejection: Rejection) -> Self {
        Self::Refuse(rejection)
    }
}

/// A check that never defers: its `Pending` type.
pub(crate) type Never = std::future::Pending<Infallible>;

/// The decision logic of one guarding layer, testable without tower. Implemented by the
/// layer type itself, which is its configuration (cheap to clone: an `Arc` inside).
pub(crate) trait Check: Clone + Send + Sync + 'static {
    /// The layer recorded in the `Decision` of every refusal this check makes.
    const LAYER: LayerKind;
    /// The service's name in `Debug` output (`Auth`, `RateLimit`, ...).
    const SERVICE: &'static str;
    /// What the response step needs from the request step.
    type Admit: Send + 'static;
    /// What a deferred check resolves to.
    type Ready;
    /// A deferred check.
    type Pending: Future<Output = Self::Ready> + Send;

    /// Decides on the request parts, and what the body says of itself without being read;
    /// may add request extensions.
    fn check<B: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &B,
    ) -> Verdict<Self::Admit, Self::Pending>;

    /// Decides once a deferred check has resolved (and may defer again: a chain of checks
    /// goes on with its next one). A check that never defers (`Pending` is [`Never`], which
    /// never resolves) keeps this default, which is then never called.
    fn resume<B: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &B,
        ready: Self::Ready,
    ) -> Verdict<Self::Admit, Self::Pending> {
        let _ = (parts, body, ready);
        unreachable!("{} never defers", Self::SERVICE)
    }

    /// The response step for an allowed request: headers, response extensions, counting.
    /// Not called when the inner service fails; `admit` is dropped then.
    fn finish<B>(admit: Self::Admit, response: &mut Response<B>);
}

impl Denial {
    /// The response, with the refusal's `Decision` recorded under `layer`.
    pub(crate) fn into_response<B: From<Bytes>>(self, layer: LayerKind) -> Response<B> {
        match self {
            Self::Refuse(rejection) => rejection.decided_by(layer).into_http(),
            Self::Answer(response) => (*response).map(B::from),
        }
    }
}
