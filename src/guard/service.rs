#![allow(private_bounds)] // `Check` is crate-private; see the module docs.

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::{Check, Verdict};

/// The service of every guarding layer: runs the layer's check on the request, then calls the
/// inner service or answers in its place, and finishes the inner service's response (headers,
/// extensions, counting). Each layer names it by alias: [`Auth`](crate::auth::Auth),
/// [`Rbac`](crate::rbac::Rbac), [`RateLimit`](crate::rate_limit::RateLimit),
/// [`Lockout`](crate::rate_limit::Lockout), [`Validate`](crate::validate::Validate),
/// [`TransportSecurity`](crate::transport::TransportSecurity),
/// [`ClientIpService`](crate::client_ip::ClientIpService).
///
/// The inner service must be `Clone` (as every axum `Router` and handler is): a check that
/// waits (a Redis lookup, a password hash) calls the clone that `poll_ready` readied later.
#[derive(Clone)]
pub struct Guard<S, C> {
    inner: S,
    check: C,
}

impl<S, C> Guard<S, C> {
    pub(crate) fn new(inner: S, check: C) -> Self {
        Self { inner, check }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the guard, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, C: Check + fmt::Debug> fmt::Debug for Guard<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(C::SERVICE)
            .field("inner", &self.inner)
            .field("check", &self.check)
            .finish()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for Guard<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: Check,
    ReqBody: http_body::Body,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, C, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        match self.check.check(&mut parts, &body) {
            Verdict::Allow(admit) => {
                ResponseFuture::called(self.inner.call(Request::from_parts(parts, body)), admit)
            }
            Verdict::Deny(denial) => ResponseFuture::denied(denial.into_response(C::LAYER)),
            Verdict::Defer(pending) => {
                // `poll_ready` readied this service: take it and leave a clone in its place
                // (the usual tower pattern for a call made later).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::deferred(pending, parts, body, inner, self.check.clone())
            }
        }
    }
}
