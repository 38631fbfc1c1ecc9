//! The one check core under the guarding layers.
//!
//! A guarding layer is configuration plus a check: a decision on the request parts (allow,
//! deny with a typed rejection, or defer to a future), and a response-side `finish` step for
//! headers and counting. [`Guard`] is the one service and [`ResponseFuture`] the one response
//! future built on it: the "check, then call the inner service" state machine, the clone/swap of
//! a service made ready by `poll_ready`, the refusal rendering with its [`Decision`] and the
//! poll-after-completion policy are written here once.
//!
//! [`Decision`]: crate::Decision

mod future;
mod service;

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
    /// What the response step needs from the request step.
    type Admit: Send + 'static;
    /// What a deferred check resolves to.
    type Ready;
    /// A deferred check.
    type Pending: Future<Output = Self::Ready> + Send;

    /// Decides on the request parts; may add request extensions.
    fn check(&self, parts: &mut Parts) -> Verdict<Self::Admit, Self::Pending>;

    /// Decides once a deferred check has resolved.
    fn resume(&self, parts: &mut Parts, ready: Self::Ready) -> Result<Self::Admit, Denial>;

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
