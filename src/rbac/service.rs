use std::convert::Infallible;

use axum::extract::MatchedPath;
use http::Response;
use http::header::ALLOW;
use http::request::Parts;

use super::layer::{RbacConfig, RbacLayer, Rules};
use super::policy;
use super::table::Rule;
use crate::decision::{Decision, LayerKind};
use crate::error::{Reason, Rejection, RejectionKind};
use crate::guard::{self, Check, Denial, Never, Verdict};
use crate::identity::Identity;

/// The service built by [`RbacLayer`].
pub type Rbac<S> = guard::Guard<S, RbacLayer>;

/// Response future of [`Rbac`].
pub type ResponseFuture<S, B> = guard::ResponseFuture<S, RbacLayer, B>;

impl Check for RbacLayer {
    const LAYER: LayerKind = LayerKind::Rbac;
    const SERVICE: &'static str = "Rbac";
    /// The allow, recorded in the response unless an inner layer or guard refused.
    type Admit = Decision;
    type Ready = Infallible;
    type Pending = Never;

    fn check<B>(&self, parts: &mut Parts, _: &B) -> Verdict<Self::Admit, Self::Pending> {
        match decide(&self.config, parts) {
            Ok(decision) => {
                parts.extensions.insert(decision.clone());
                if self.config.hide_details {
                    // The handler's guards answer as vaguely as the layer.
                    parts.extensions.insert(HideDetails);
                }
                Verdict::Allow(decision)
            }
            Err(rejection) => {
                tracing::debug!(
                    target: "portcullis::rbac",
                    reason = rejection.reason().as_str(),
                    "request not authorized"
                );
                Verdict::Deny(Denial::Refuse(rejection))
            }
        }
    }

    fn finish<B>(decision: Self::Admit, response: &mut Response<B>) {
        // An inner layer or guard that refused has the last word on why.
        if response.extensions().get::<Decision>().is_none() {
            response.extensions_mut().insert(decision);
        }
    }
}

/// Left in the request extensions by an [`RbacLayer`](super::RbacLayer) with `hide_details`, so
/// the extractor guards behind it hide their details too.
#[derive(Clone, Copy, Debug)]
pub(super) struct HideDetails;

/// The decision for one request: allowed, or the rejection to answer with (its reason is the
/// reason of the denied `Decision` the guard records).
fn decide(config: &RbacConfig, request: &Parts) -> Result<Decision, Rejection> {
    let extensions = &request.extensions;
    let policy = match &config.rules {
        Rules::Single(policy) => policy,
        Rules::Table(table) => {
            let path = extensions.get::<MatchedPath>().map(MatchedPath::as_str);
            match table.rule(&request.method, path) {
                Rule::Policy(policy) => policy,
                Rule::MethodNotAllowed(allow) => {
                    let rejection = Rejection::new(RejectionKind::MethodNotAllowed)
                        .with_reason(Reason::MethodNotListed)
                        .with_header(ALLOW, allow.clone());
                    return Err(rejection);
                }
                Rule::Unlisted { allowed: true } => {
                    return Ok(Decision::allowed(LayerKind::Rbac, Reason::UnlistedRoute));
                }
                Rule::Unlisted { allowed: false } => {
                    report_unlisted(config, &request.method, path);
                    let mut rejection =
                        Rejection::new(RejectionKind::Forbidden).with_reason(Reason::UnlistedRoute);
                    if config.hide_details {
                        rejection = rejection.hide_reason();
                    } else {
                        rejection = rejection.with_detail("No access policy covers this route.");
                    }
                    return Err(rejection);
                }
                Rule::NoRoute => {
                    let rejection =
                        Rejection::new(RejectionKind::NotFound).with_reason(Reason::NoRoute);
                    return Err(rejection);
                }
            }
        }
    };
    let cx = policy::Context::new(extensions.get::<Identity>(), &config.roles);
    match policy.evaluate(&cx) {
        Ok(()) => Ok(Decision::allowed(LayerKind::Rbac, Reason::Policy)),
        Err(miss) => Err(miss.into_rejection(extensions, config.hide_details)),
    }
}

/// A route the router has and the table lacks is a mistake to fix, not an attack: say so, at
/// most once a minute (route patterns come from the router, but requests from anyone).
fn report_unlisted(config: &RbacConfig, method: &http::Method, path: Option<&str>) {
    use std::sync::atomic::Ordering;
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60);
    if config.unlisted_reported.swap(minute, Ordering::Relaxed) != minute {
        tracing::warn!(
            target: "portcullis::rbac",
            %method,
            route = path.unwrap_or_default(),
            "a route has no row in the route table and is refused with 403; add its row, or \
             declare routes with their policies in a PolicyRouter"
        );
    }
}
