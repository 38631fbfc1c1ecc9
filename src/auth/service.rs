use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use tower_service::Service;

use super::layer::AuthConfig;
use super::{Authentication, ResponseFuture, header};
use crate::decision::Decision;
use crate::error::{Rejection, RejectionKind};
use crate::rate_limit::PendingAttempt;

/// The service built by [`AuthLayer`](super::AuthLayer).
#[derive(Clone)]
pub struct Auth<S> {
    pub(super) inner: S,
    pub(super) config: Arc<AuthConfig>,
}

impl<S: fmt::Debug> fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("required", &self.config.required)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let has_authorization = match header::check_authorization(&parts.headers) {
            Ok(present) => present,
            Err(rejection) => return self.reject(rejection),
        };
        let sources = usize::from(has_authorization)
            + self
                .config
                .credential_headers
                .iter()
                .filter(|name| parts.headers.contains_key(*name))
                .count();
        if sources > 1 {
            return self.reject(header::invalid_request(
                "several_credentials",
                "Send exactly one credential.",
            ));
        }
        for authenticator in &self.config.authenticators {
            match authenticator.authenticate(&parts) {
                Authentication::NotPresent => continue,
                Authentication::Authenticated(identity) => {
                    if let Some(attempt) = parts.extensions.get::<PendingAttempt>() {
                        attempt.accepted();
                    }
                    parts.extensions.insert(identity.clone());
                    return ResponseFuture::call(
                        self.inner.call(Request::from_parts(parts, body)),
                        Some(identity),
                    );
                }
                Authentication::Rejected(rejection) => return self.reject(rejection),
                Authentication::Pending(future) => {
                    // The inner service was driven to readiness by `poll_ready`: take that one and
                    // leave a clone in its place (the usual tower pattern for deferred calls).
                    let clone = self.inner.clone();
                    let inner = std::mem::replace(&mut self.inner, clone);
                    return ResponseFuture::pending(
                        future,
                        parts,
                        body,
                        inner,
                        self.config.clone(),
                    );
                }
            }
        }
        if has_authorization {
            return self.reject(
                Rejection::new(RejectionKind::MissingCredentials)
                    .with_reason("unsupported_scheme")
                    .with_detail("This authentication scheme is not accepted here."),
            );
        }
        if self.config.required {
            return self.reject(
                Rejection::new(RejectionKind::MissingCredentials)
                    .with_reason("missing_credentials"),
            );
        }
        parts.extensions.insert(self.config.challenge.clone());
        ResponseFuture::call(self.inner.call(Request::from_parts(parts, body)), None)
    }
}

impl<S> Auth<S> {
    fn reject<B>(&self, rejection: Rejection) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>, Response = Response>,
    {
        ResponseFuture::rejected(finish_rejection(&self.config, rejection))
    }
}

/// Adds the layer's realm and, where the rejection names no scheme itself (no usable credential,
/// a malformed request, a custom authenticator's 401), a challenge for every scheme the layer
/// accepts: RFC 9110 §11.6.1 requires at least one on every 401.
pub(super) fn finish_rejection(config: &AuthConfig, mut rejection: Rejection) -> Response {
    let needs_challenge = rejection.status() == StatusCode::UNAUTHORIZED
        || rejection.kind() == RejectionKind::InvalidRequest;
    if rejection.kind() == RejectionKind::MissingCredentials
        || (needs_challenge && !rejection.has_challenges())
    {
        rejection.set_challenges(config.schemes());
    }
    rejection.set_realm(&config.realm);
    tracing::debug!(
        target: "portcullis::auth",
        kind = ?rejection.kind(),
        reason = rejection.reason(),
        "request not authenticated"
    );
    let reason = rejection.reason();
    let mut response = rejection.into_response();
    response
        .extensions_mut()
        .insert(Decision::denied("auth", reason));
    response
}
