//! Checks composed without nesting services: an optional check, and one check after another.
//! The fused [`Portcullis`](crate::Portcullis) stack is one [`Guard`](super::Guard) over a chain
//! of these, with the same behaviour as the layers nested in the same order.

#![allow(private_bounds)] // `Check` is crate-private; see the module docs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http::request::Parts;
use pin_project_lite::pin_project;

use super::{Check, Denial, Verdict};
use crate::decision::LayerKind;

/// A configured check or none: `None` lets every request through, as an absent layer does.
impl<C: Check> Check for Option<C> {
    const LAYER: LayerKind = C::LAYER;
    const SERVICE: &'static str = C::SERVICE;
    type Admit = Option<C::Admit>;
    type Ready = C::Ready;
    type Pending = C::Pending;

    fn check<B: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &B,
    ) -> Verdict<Self::Admit, Self::Pending> {
        match self {
            Some(check) => some(check.check(parts, body)),
            None => Verdict::Allow(None),
        }
    }

    fn resume<B: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &B,
        ready: Self::Ready,
    ) -> Verdict<Self::Admit, Self::Pending> {
        match self {
            Some(check) => some(check.resume(parts, body, ready)),
            None => unreachable!("only a configured check defers"),
        }
    }

    fn finish<B>(admit: Self::Admit, response: &mut Response<B>) {
        if let Some(admit) = admit {
            C::finish(admit, response);
        }
    }
}

/// A check shared behind one `Arc`: the fused stack's chain of checks is cloned with every
/// service clone (axum clones the service for each request), so one reference count is
/// touched instead of one per layer.
impl<C: Check> Check for std::sync::Arc<C> {
    const LAYER: LayerKind = C::LAYER;
    const SERVICE: &'static str = C::SERVICE;
    type Admit = C::Admit;
    type Ready = C::Ready;
    type Pending = C::Pending;

    fn check<B: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &B,
    ) -> Verdict<Self::Admit, Self::Pending> {
        C::check(self, parts, body)
    }

    fn resume<B: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &B,
        ready: Self::Ready,
    ) -> Verdict<Self::Admit, Self::Pending> {
        C::resume(self, parts, body, ready)
    }

    fn finish<B>(admit: Self::Admit, response: &mut Response<B>) {
        C::finish(admit, response);
    }
}

fn some<A, D>(verdict: Verdict<A, D>) -> Verdict<Option<A>, D> {
    match verdict {
        Verdict::Allow(admit) => Verdict::Allow(Some(admit)),
        Verdict::Deny(denial) => Verdict::Deny(denial),
        Verdict::Defer(pending) => Verdict::Defer(pending),
    }
}

/// `A`, then `B` on what `A` let through, as `A`'s layer around `B`'s would: a refusal by `B`
/// gets `A`'s response step too (its headers, its counting), and `B`'s response step runs
/// before `A`'s.
///
/// One difference from nesting, on purpose: a refusal by `B` gets `A`'s response step when it
/// is made (in `call`, or when a deferred check resolves), not when the response future is
/// first polled. A lockout outside counts a refused guess even if the future is then dropped
/// unpolled, where nested layers would have released the attempt uncounted.
///
/// Public in a private module: [`PortcullisService`](crate::stack::PortcullisService)'s
/// future names it, users cannot.
#[derive(Clone, Debug)]
#[allow(unreachable_pub)]
pub struct Chain<A, B> {
    pub(crate) first: A,
    pub(crate) then: B,
}

impl<A, B> Chain<A, B> {
    pub(crate) fn new(first: A, then: B) -> Self {
        Self { first, then }
    }
}

impl<A: Check, B: Check> Chain<A, B> {
    /// `A` let the request through: run `B`.
    fn then(
        &self,
        first: A::Admit,
        verdict: Verdict<B::Admit, B::Pending>,
    ) -> Verdict<(A::Admit, B::Admit), ChainPending<A, B>> {
        match verdict {
            Verdict::Allow(then) => Verdict::Allow((first, then)),
            Verdict::Deny(denial) => {
                // Rendered now, with `B`'s layer, so that `A`'s response step can run on it.
                let mut response = denial.into_response::<Bytes>(B::LAYER);
                A::finish(first, &mut response);
                Verdict::Deny(Denial::Answer(Box::new(response)))
            }
            Verdict::Defer(pending) => Verdict::Defer(ChainPending::Then {
                first: Some(first),
                pending,
            }),
        }
    }

    /// `A` decided.
    fn first<Body: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &Body,
        verdict: Verdict<A::Admit, A::Pending>,
    ) -> Verdict<(A::Admit, B::Admit), ChainPending<A, B>> {
        match verdict {
            Verdict::Allow(first) => {
                let verdict = self.then.check(parts, body);
                self.then(first, verdict)
            }
            // Refusals of `A` keep their layer: this chain's is `A`'s.
            Verdict::Deny(denial) => Verdict::Deny(denial),
            Verdict::Defer(pending) => Verdict::Defer(ChainPending::First { pending }),
        }
    }
}

impl<A: Check, B: Check> Check for Chain<A, B> {
    const LAYER: LayerKind = A::LAYER;
    const SERVICE: &'static str = "Guard";
    type Admit = (A::Admit, B::Admit);
    type Ready = ChainReady<A, B>;
    type Pending = ChainPending<A, B>;

    fn check<Body: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &Body,
    ) -> Verdict<Self::Admit, Self::Pending> {
        let verdict = self.first.check(parts, body);
        self.first(parts, body, verdict)
    }

    fn resume<Body: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &Body,
        ready: Self::Ready,
    ) -> Verdict<Self::Admit, Self::Pending> {
        match ready {
            ChainReady::First(ready) => {
                let verdict = self.first.resume(parts, body, ready);
                self.first(parts, body, verdict)
            }
            ChainReady::Then(first, ready) => {
                let verdict = self.then.resume(parts, body, ready);
                self.then(first, verdict)
            }
        }
    }

    fn finish<Body>((first, then): Self::Admit, response: &mut Response<Body>) {
        B::finish(then, response);
        A::finish(first, response);
    }
}

/// What a chain waited for.
pub(crate) enum ChainReady<A: Check, B: Check> {
    First(A::Ready),
    /// `B` waited, after `A` let the request through.
    Then(A::Admit, B::Ready),
}

pin_project! {
    /// A chain waiting for one of its checks.
    #[project = ChainPendingProj]
    pub(crate) enum ChainPending<A: Check, B: Check> {
        First {
            #[pin]
            pending: A::Pending,
        },
        Then {
            // An `Option` so it can be moved out once `B` has decided.
            first: Option<A::Admit>,
            #[pin]
            pending: B::Pending,
        },
    }
}

impl<A: Check, B: Check> Future for ChainPending<A, B> {
    type Output = ChainReady<A, B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ChainPendingProj::First { pending } => {
                Poll::Ready(ChainReady::First(ready!(pending.poll(cx))))
            }
            ChainPendingProj::Then { first, pending } => {
                let ready = ready!(pending.poll(cx));
                // Taken only when polled again after `Ready`: a caller's bug, never request input.
                let first = first
                    .take()
                    .expect("portcullis chain polled after completion");
                Poll::Ready(ChainReady::Then(first, ready))
            }
        }
    }
}

/// A layer left out at compile time (its feature is off): a slot of the fused stack that can
/// never hold one. Public in a private module, like [`Chain`].
#[derive(Clone, Debug)]
#[allow(unreachable_pub, dead_code)] // Used only when a layer's feature is off.
pub enum Disabled {}

impl Check for Disabled {
    const LAYER: LayerKind = LayerKind::ClientIp;
    const SERVICE: &'static str = "Disabled";
    type Admit = std::convert::Infallible;
    type Ready = std::convert::Infallible;
    type Pending = super::Never;

    fn check<B: http_body::Body>(
        &self,
        _: &mut Parts,
        _: &B,
    ) -> Verdict<Self::Admit, Self::Pending> {
        match *self {}
    }

    fn resume<B: http_body::Body>(
        &self,
        _: &mut Parts,
        _: &B,
        _: Self::Ready,
    ) -> Verdict<Self::Admit, Self::Pending> {
        match *self {}
    }

    fn finish<B>(admit: Self::Admit, _: &mut Response<B>) {
        match admit {}
    }
}

impl<S> tower_layer::Layer<S> for Disabled {
    type Service = S;

    fn layer(&self, _: S) -> S {
        match *self {}
    }
}
