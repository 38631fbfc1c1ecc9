use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::response::{IntoResponse, Response};
use http::Request;
use http::header::ALLOW;
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::{RbacConfig, Rules};
use super::policy;
use super::table::Rule;
use crate::decision::{Decision, LayerKind};
use crate::error::{Rejection, RejectionKind};
use crate::identity::Identity;

/// The service built by [`RbacLayer`](super::RbacLayer).
#[derive(Clone)]
pub struct Rbac<S> {
    pub(super) inner: S,
    pub(super) config: Arc<RbacConfig>,
}

impl<S: fmt::Debug> fmt::Debug for Rbac<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rbac")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for Rbac<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match decide(&self.config, &request) {
            Ok(decision) => {
                request.extensions_mut().insert(decision.clone());
                if self.config.hide_details {
                    // The handler's guards answer as vaguely as the layer.
                    request.extensions_mut().insert(HideDetails);
                }
                ResponseFuture::call(self.inner.call(request), decision)
            }
            Err((decision, rejection)) => {
                tracing::debug!(
                    target: "portcullis::rbac",
                    reason = rejection.reason(),
                    "request not authorized"
                );
                let mut response = rejection.into_response();
                response.extensions_mut().insert(decision);
                ResponseFuture::rejected(response)
            }
        }
    }
}

/// Left in the request extensions by an [`RbacLayer`](super::RbacLayer) with `hide_details`, so
/// the extractor guards behind it hide their details too.
#[derive(Clone, Copy, Debug)]
pub(super) struct HideDetails;

/// The decision for one request: allowed, or the decision and the rejection to answer with.
fn decide<B>(config: &RbacConfig, request: &Request<B>) -> Result<Decision, (Decision, Rejection)> {
    let extensions = request.extensions();
    let policy = match &config.rules {
        Rules::Single(policy) => policy,
        Rules::Table(table) => {
            let path = extensions.get::<MatchedPath>().map(MatchedPath::as_str);
            match table.rule(request.method(), path) {
                Rule::Policy(policy) => policy,
                Rule::MethodNotAllowed(allow) => {
                    let rejection = Rejection::new(RejectionKind::MethodNotAllowed)
                        .with_reason("method_not_listed")
                        .with_header(ALLOW, allow.clone());
                    return Err((
                        Decision::denied(LayerKind::Rbac, "method_not_listed"),
                        rejection,
                    ));
                }
                Rule::Unlisted { allowed: true } => {
                    return Ok(Decision::allowed(LayerKind::Rbac, "unlisted_route"));
                }
                Rule::Unlisted { allowed: false } => {
                    let mut rejection =
                        Rejection::new(RejectionKind::Forbidden).with_reason("unlisted_route");
                    if !config.hide_details {
                        rejection = rejection.with_detail("No access policy covers this route.");
                    }
                    return Err((
                        Decision::denied(LayerKind::Rbac, "unlisted_route"),
                        rejection,
                    ));
                }
                Rule::NoRoute => {
                    let rejection = Rejection::new(RejectionKind::NotFound).with_reason("no_route");
                    return Err((Decision::denied(LayerKind::Rbac, "no_route"), rejection));
                }
            }
        }
    };
    let cx = policy::Context::new(extensions.get::<Identity>(), &config.roles);
    match policy.evaluate(&cx) {
        Ok(()) => Ok(Decision::allowed(LayerKind::Rbac, "policy")),
        Err(miss) => {
            let rejection = miss.into_rejection(extensions, config.hide_details);
            Err((
                Decision::denied(LayerKind::Rbac, rejection.reason()),
                rejection,
            ))
        }
    }
}
